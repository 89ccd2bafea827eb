/**
 * The flows of one trunk by id: making them (ids, per-flow settings from ours and the peer's
 * hello), their end (counters and the one log line), and the flows waiting for the memory
 * budget to free bytes.
 */
import { randomBytes } from 'node:crypto'
import type { Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import {
  DATA_HEADER_LENGTH,
  FRAME_HEADER_LENGTH,
  type Endpoint,
  type OpenFrame
} from '../common/wire/frame.js'
import { Flow, type TrunkPort } from '../core/flow.js'
import type { MemoryBudget } from '../core/memory-budget.js'
import type { TrunkSettings } from './settings.js'

/** What the peer announced in its hello. */
export interface PeerParams {
  readonly flowWindowBytes: number
  readonly maxFrameBodyBytes: number
}

/** Live flows of a trunk. */
export class FlowTable {
  private readonly flows = new Map<number, Flow>()
  private readonly budgetWaiters = new Set<Flow>()
  /** The waiters being woken now: one that waits again goes on waiting (not a new wait). */
  private waking: ReadonlySet<Flow> | undefined
  private readonly settings: TrunkSettings
  private readonly budget: MemoryBudget
  private readonly counters: Counters
  private readonly log: Logger
  /** What the peer announced; undefined before the first subflow. */
  peer: PeerParams | undefined

  constructor(opts: {
    settings: TrunkSettings
    budget: MemoryBudget
    counters: Counters
    log: Logger
  }) {
    this.settings = opts.settings
    this.budget = opts.budget
    this.counters = opts.counters
    this.log = opts.log
  }

  /** How many flows are live. */
  get size(): number {
    return this.flows.size
  }

  /** The flow with `id`, if live. */
  get(id: number): Flow | undefined {
    return this.flows.get(id)
  }

  /** The live flows (a copy: safe to end flows while walking it). */
  list(): Flow[] {
    return [...this.flows.values()]
  }

  /** The live flows, not copied. */
  values(): IterableIterator<Flow> {
    return this.flows.values()
  }

  /** A random non-zero flow id not in use (unguessable by design: see docs/protocol.md §1). */
  newId(): number {
    for (;;) {
      const id = randomBytes(4).readUInt32BE(0)
      if (id !== 0 && !this.flows.has(id)) return id
    }
  }

  /** Make a flow and list it. `openFrame`: ours to send (tx); none for a flow the peer opened. */
  create(flowId: number, openFrame: OpenFrame | undefined, trunk: TrunkPort): Flow {
    const s = this.settings
    const peer = this.peer
    const peerBody = peer?.maxFrameBodyBytes ?? s.maxFrameBodyBytes
    const flow = new Flow({
      flowId,
      opener: openFrame !== undefined,
      openFrame,
      localWindowBytes: s.flowWindowBytes,
      maxWindowBytes: s.maxFlowWindowBytes,
      // Before the first subflow, assume the peer grants what we do; the first ACK corrects it.
      peerWindowBytes: peer?.flowWindowBytes ?? s.flowWindowBytes,
      maxPayloadBytes: Math.min(
        s.maxPayloadBytes,
        peerBody - (DATA_HEADER_LENGTH - FRAME_HEADER_LENGTH)
      ),
      sendBufferBytes: s.sendBufferBytes,
      maxReorderSegments: s.maxReorderSegments,
      creditReleaseIdleMs: s.creditReleaseIdleMs,
      budget: this.budget,
      trunk,
      log: this.log.child({ flow: flowId })
    })
    this.flows.set(flowId, flow)
    this.counters.inc('flows_opened')
    return flow
  }

  /** One log line for a new flow. */
  logOpen(flowId: number, dst: Endpoint, src: Endpoint | undefined): void {
    this.log.info('flow open', {
      flow: flowId,
      src: src ? formatEndpoint(src) : undefined,
      dst: formatEndpoint(dst)
    })
  }

  /** `flow` ended: unlist it, add its figures to the counters, log one line. */
  finished(flow: Flow): void {
    this.flows.delete(flow.id)
    this.budgetWaiters.delete(flow)
    const s = flow.stats()
    this.counters.inc(flow.state === 'closed' ? 'flows_closed' : 'flows_reset')
    this.counters.inc('bytes_from_app', s.bytesFromApp)
    this.counters.inc('bytes_to_app', s.bytesToApp)
    this.counters.inc('duplicate_bytes', s.duplicateBytes)
    this.counters.inc('credit_stalls', s.creditStalls)
    this.counters.inc('flow_bytes_resent', s.resentBytes)
    this.log.info(flow.state === 'closed' ? 'flow closed' : `flow reset: ${flow.endReason}`, {
      flow: flow.id,
      sent: s.bytesFromApp,
      received: s.bytesToApp,
      resent: s.resentBytes,
      durationMs: Math.round(s.ageMs)
    })
  }

  /** `flow` waits for the budget to free bytes (counted once per wait, not per retry). */
  waitForBudget(flow: Flow): void {
    if (!this.budgetWaiters.has(flow) && this.waking?.has(flow) !== true) {
      this.counters.inc('budget_waits')
    }
    this.budgetWaiters.add(flow)
  }

  /** Bytes were freed: every waiting flow tries again (those still short wait again). */
  wakeBudgetWaiters(): void {
    if (this.budgetWaiters.size === 0 || this.budget.free === 0) return
    const waiting = new Set(this.budgetWaiters)
    this.budgetWaiters.clear()
    // A flow that ends on the way wakes the waiters again from inside this loop.
    const outer = this.waking
    this.waking = waiting
    try {
      for (const flow of waiting) flow.onBudgetFreed()
    } finally {
      this.waking = outer
    }
  }
}
