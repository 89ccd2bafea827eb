/**
 * Whether a trunk takes a new flow (flow count, memory, shutdown, role), how a refusal is
 * counted and logged, and the ids of flows that ended lately, so a late copy of an OPEN (an OPEN
 * goes out on every subflow) never opens a second connection.
 */
import type { CounterName, Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import { ResetReason, type ResetReasonCode } from '../common/wire/frame.js'
import type { MemoryBudget } from '../core/memory-budget.js'
import {
  PEER_FULL_HOLD_MS,
  RECENTLY_CLOSED_MAX,
  RECENTLY_CLOSED_MS,
  REFUSAL_LOG_FIRST,
  type TrunkSettings
} from './settings.js'

/** Why a flow is not taken. */
export interface Refusal {
  /** Reason for the RESET that answers a refused OPEN. */
  readonly reason: ResetReasonCode
  /** One line, for the log and the RESET's message. */
  readonly message: string
  /** Counter of this kind of refusal. */
  readonly counter: CounterName
}

/** Admission state of one trunk. */
export class Admission {
  private readonly settings: TrunkSettings
  private readonly budget: MemoryBudget
  private readonly counters: Counters
  private readonly log: Logger
  private readonly now: () => number
  /** Ended flows the peer opened: id → when it ended (ms), oldest first. */
  private readonly recentlyClosed = new Map<number, number>()
  /** Until when (ms) the peer is taken as full: it refused a flow for a limit lately. */
  private peerFullUntil = -Infinity

  constructor(opts: {
    settings: TrunkSettings
    budget: MemoryBudget
    counters: Counters
    log: Logger
    now: () => number
  }) {
    this.settings = opts.settings
    this.budget = opts.budget
    this.counters = opts.counters
    this.log = opts.log
    this.now = opts.now
  }

  /** Why a new flow cannot be carried now beside `flowCount` others, or undefined when it can. */
  limitRefusal(flowCount: number): Refusal | undefined {
    if (flowCount >= this.settings.maxFlows) {
      return {
        reason: ResetReason.FLOW_LIMIT,
        message: `max_flows (${this.settings.maxFlows}) reached`,
        counter: 'flows_refused_limit'
      }
    }
    // A new flow is granted its initial credit at once: refuse it when that does not fit.
    if (this.budget.free < this.settings.flowWindowBytes) {
      return {
        reason: ResetReason.MEMORY_LIMIT,
        message: 'max_buffered_bytes reached',
        counter: 'flows_refused_memory'
      }
    }
    return undefined
  }

  /**
   * True when a new flow would not be carried now: this side is at a limit, or the peer refused
   * a flow for one within the last PEER_FULL_HOLD_MS. tx_proxy then lets SYNs pass directly
   * (fail-open) rather than take the connection and reset it.
   */
  atCapacity(flowCount: number): boolean {
    return this.limitRefusal(flowCount) !== undefined || this.now() < this.peerFullUntil
  }

  /** The peer reset a flow with `reason`: a limit's refusal marks it full for a while. */
  notePeerReset(reason: number): void {
    if (reason === ResetReason.FLOW_LIMIT || reason === ResetReason.MEMORY_LIMIT) {
      this.peerFullUntil = this.now() + PEER_FULL_HOLD_MS
    }
  }

  /**
   * Why an OPEN from the peer is refused, or undefined when the flow is taken: this side is
   * shutting down, takes no flows at all (`accepts` false: tx), or is at a limit.
   */
  openRefusal(draining: boolean, accepts: boolean, flowCount: number): Refusal | undefined {
    if (draining) {
      return {
        reason: ResetReason.SHUTDOWN,
        message: 'shutting down: no new flows',
        counter: 'flows_refused_shutdown'
      }
    }
    if (!accepts) {
      return {
        reason: ResetReason.POLICY_DENIED,
        message: 'this side accepts no flows',
        counter: 'flows_refused_policy'
      }
    }
    return this.limitRefusal(flowCount)
  }

  /** Count a refusal and log it (a flood is logged sparsely: the first few, then powers of two). */
  noteRefusal(refusal: Refusal, flowId: number | undefined): void {
    this.counters.inc(refusal.counter)
    const n = this.counters.get(refusal.counter)
    if (n <= REFUSAL_LOG_FIRST || (n & (n - 1)) === 0) {
      const who = flowId === undefined ? 'flow' : `flow ${flowId}`
      this.log.warn(`${who} refused: ${refusal.message}`, { [refusal.counter]: n })
    }
  }

  /** True when flow `id` ended lately (its OPEN came again: a late copy). */
  closedLately(id: number): boolean {
    return this.recentlyClosed.has(id)
  }

  /** Remember an ended flow id for RECENTLY_CLOSED_MS (at most RECENTLY_CLOSED_MAX, oldest dropped first). */
  rememberClosed(id: number): void {
    const now = this.now()
    this.recentlyClosed.set(id, now)
    for (const [k, at] of this.recentlyClosed) {
      if (this.recentlyClosed.size <= RECENTLY_CLOSED_MAX && now - at < RECENTLY_CLOSED_MS) break
      this.recentlyClosed.delete(k)
    }
  }
}
