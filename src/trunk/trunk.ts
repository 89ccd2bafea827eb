/**
 * A trunk: the subflows between this proxy and its peer, and every flow carried over them.
 * The same class serves both roles; they differ only in who dials and who opens flows.
 *
 * Sending is pulled, like quic-go's framer: flows with something to send sit in a ready set;
 * `pump()` takes one frame per flow per round and gives it to the subflow the scheduler picks,
 * until no subflow can take more. Backpressure is a chain of booleans: a full subflow is not
 * writable until 'drain'; a flow without credit is not ready; a full flow pauses its own
 * application socket. A subflow is never paused for one flow's sake.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Counters } from '../common/counters.js'
import type { ProtocolError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import {
  ResetReason,
  resetReasonName,
  type AckFrame,
  type Endpoint,
  type Frame,
  type OpenFrame,
  type ResetFrame
} from '../common/wire/frame.js'
import { Flow, type AppPort, type TrunkPort } from '../core/flow.js'
import type { MemoryBudget } from '../core/memory-budget.js'
import type { Scheduler, SubflowView } from '../core/scheduler/scheduler.js'
import type { PortRange } from '../common/policy.js'
import type { SubflowStatus, TrunkStatus } from '../edge/control.js'
import type { SubflowKeys } from './handshake.js'
import { Subflow } from './subflow.js'

/**
 * How long a redundant flow waits for a slot on another path before it sends alone, in ms: long
 * enough to ride out a full queue, short against the ping timeout that declares a path dead.
 */
const REDUNDANT_WAIT_MS = 250

/** Settings a trunk needs (a slice of the parsed config). */
export interface TrunkSettings {
  /** Largest DATA payload we send, in bytes (also capped by the peer's max frame body). */
  readonly maxPayloadBytes: number
  /** Largest frame body we accept, in bytes (announced in our hello). */
  readonly maxFrameBodyBytes: number
  /** Credit we grant per flow, in bytes (announced in our hello). */
  readonly flowWindowBytes: number
  /** Most credit per flow, in bytes (the window grows towards it). */
  readonly maxFlowWindowBytes: number
  /** Bytes per flow read from its application and not yet sent before it is paused. */
  readonly sendBufferBytes: number
  readonly maxReorderSegments: number
  readonly maxFlows: number
  readonly subflowQueueBytes: number
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  /** How long flows survive with no subflow at all, in milliseconds. */
  readonly outageGraceMs: number
  /** Flows to these destination ports send every frame on two subflows. */
  readonly redundantPorts: readonly PortRange[]
  /** Every flow sends its first N bytes redundantly (0: off). */
  readonly redundantFirstBytes: number
  /** Flows idle this long are reset, in ms (0: never). */
  readonly idleTimeoutMs: number
}

/** What the peer announced in its hello. */
export interface PeerParams {
  readonly flowWindowBytes: number
  readonly maxFrameBodyBytes: number
}

/** Everything a trunk is given. */
export interface TrunkOptions {
  readonly role: 'tx' | 'rx'
  readonly trunkId: Uint8Array
  readonly settings: TrunkSettings
  readonly scheduler: Scheduler
  readonly budget: MemoryBudget
  readonly counters: Counters
  readonly log: Logger
  readonly now: () => number
  /** rx: a flow was opened by the peer; connect it and call `attachApp`, or abort it. */
  readonly onOpen?: (trunk: Trunk, flow: Flow, frame: OpenFrame) => void
  /** Delivery rate of a subflow socket in bytes/s (TCP_INFO), for the weighted scheduler. */
  readonly sampleRate?: (socket: Socket) => number
  /** Bytes a subflow socket holds in the kernel and has not sent (SIOCOUTQNSD), for schedulers. */
  readonly kernelUnsent?: (socket: Socket) => number
  /** Tunes each subflow socket as it joins (congestion control, NOTSENT_LOWAT, buffers). */
  readonly tuneSocket?: (socket: Socket) => void
  /**
   * Sets an application socket's close to abortive (SO_LINGER 0) or back to graceful. While a
   * flow runs its sockets are abortive, so that if this process dies the applications see a
   * reset, never a clean end of a truncated stream; the flow's own FIN makes them graceful.
   */
  readonly setAbortiveClose?: (socket: Socket, abortive: boolean) => void
  /** The trunk has no subflow left and its grace ran out (its flows were reset). */
  readonly onLost?: (trunk: Trunk) => void
}

/** A snapshot of one subflow, for status and tests. */
export type SubflowStats = SubflowStatus

/** A flow's view of one application socket, with module-level-style named handlers. */
class SocketAppPort implements AppPort {
  constructor(
    private readonly socket: Socket,
    private readonly setAbortive: ((socket: Socket, abortive: boolean) => void) | undefined
  ) {}
  write(chunk: Uint8Array): boolean {
    return this.socket.write(chunk)
  }
  end(): void {
    // Every byte was handed over before this FIN: from here a close may be graceful.
    this.setAbortive?.(this.socket, false)
    this.socket.end()
  }
  reset(): void {
    if (!this.socket.destroyed) this.socket.resetAndDestroy()
  }
  pause(): void {
    this.socket.pause()
  }
  resume(): void {
    this.socket.resume()
  }
}

/** Subflows plus flows between one pair of proxies. */
export class Trunk implements TrunkPort {
  readonly role: 'tx' | 'rx'
  readonly trunkId: Uint8Array
  private readonly opts: TrunkOptions
  private readonly settings: TrunkSettings
  private readonly log: Logger
  private readonly counters: Counters
  private readonly subflows: Subflow[] = []
  private readonly flows = new Map<number, Flow>()
  private readonly ready = new Set<Flow>()
  private readonly ackDue = new Set<Flow>()
  private readonly budgetWaiters = new Set<Flow>()
  private readonly appSockets = new Map<Flow, Socket>()
  /** Flows whose destination port asks for redundant sending. */
  private readonly redundantFlows = new Set<Flow>()
  /** Redundant flows waiting for a copy slot on another path, since when (ms). */
  private readonly redundantWaiting = new Map<Flow, number>()
  private retryTimer: NodeJS.Timeout | undefined
  /**
   * rx: flows that ended lately (id → when). An OPEN is sent on every subflow, so a late copy
   * may come in after its flow has already ended; it must not open a second connection.
   */
  private readonly recentlyClosed = new Map<number, number>()
  private peer: PeerParams | undefined
  private nextSubflowId = 1
  private pumpScheduled = false
  private graceTimer: NodeJS.Timeout | undefined
  private idleTimer: NodeJS.Timeout | undefined
  private closed = false
  private peerDrainingValue = false
  private drainingValue = false

  constructor(opts: TrunkOptions) {
    this.opts = opts
    this.role = opts.role
    this.trunkId = opts.trunkId
    this.settings = opts.settings
    this.log = opts.log
    this.counters = opts.counters
    if (opts.settings.idleTimeoutMs > 0) {
      this.idleTimer = setInterval(
        () => {
          this.resetIdleFlows()
        },
        Math.min(1000, opts.settings.idleTimeoutMs)
      )
      this.idleTimer.unref()
    }
  }

  private resetIdleFlows(): void {
    const now = this.opts.now()
    for (const flow of [...this.flows.values()]) {
      if (flow.idleMs(now) > this.settings.idleTimeoutMs) {
        this.counters.inc('flows_idle_timeout')
        flow.abort(
          ResetReason.IDLE_TIMEOUT,
          `no byte either way for ${this.settings.idleTimeoutMs} ms`
        )
      }
    }
  }

  /** Trunk id in hex, for logs and maps. */
  get idHex(): string {
    return Buffer.from(this.trunkId).toString('hex')
  }

  /** Live subflows. */
  get subflowCount(): number {
    return this.subflows.length
  }

  /** Live flows. */
  get flowCount(): number {
    return this.flows.size
  }

  /** True after the peer sent GOAWAY: it takes no new flows (it is shutting down). */
  get peerDraining(): boolean {
    return this.peerDrainingValue
  }

  /**
   * Graceful shutdown, first step: tell the peer (GOAWAY on every subflow) that this side takes
   * no new flows; running flows go on. New OPENs are refused from now on.
   */
  drain(reason: number, message: string): void {
    this.drainingValue = true
    for (const sub of this.subflows) sub.writeFrame({ type: 'goaway', flowId: 0, reason, message })
  }

  /** True once the peer's hello parameters are known (one subflow was up). */
  get hasPeer(): boolean {
    return this.peer !== undefined
  }

  /** Monotonic milliseconds (TrunkPort). */
  now(): number {
    return this.opts.now()
  }

  /** Smoothed RTT of the fastest subflow, ms; 0 before any sample (TrunkPort). */
  srttMs(): number {
    let min = 0
    for (const s of this.subflows) if (s.srttMs > 0 && (min === 0 || s.srttMs < min)) min = s.srttMs
    return min
  }

  /** Add a subflow whose handshake just completed; `rest` are bytes that followed the hello. */
  addSubflow(
    socket: Socket,
    peer: PeerParams,
    index: number,
    pathId: number,
    rest: Uint8Array,
    weight = 1,
    keys?: SubflowKeys
  ): Subflow {
    this.peer = peer
    // A subflow that joins after a GOAWAY comes from a peer that restarted and takes flows again.
    this.peerDrainingValue = false
    this.opts.tuneSocket?.(socket)
    const sub = new Subflow(
      socket,
      {
        id: this.nextSubflowId++,
        index,
        pathId,
        maxFrameBody: this.settings.maxFrameBodyBytes,
        queueLimitBytes: this.settings.subflowQueueBytes,
        pingIntervalMs: this.settings.pingIntervalMs,
        pingTimeoutMs: this.settings.pingTimeoutMs,
        now: this.opts.now,
        weight,
        keys,
        ...(this.opts.sampleRate !== undefined ? { sampleRate: this.opts.sampleRate } : {}),
        ...(this.opts.kernelUnsent !== undefined ? { kernelUnsent: this.opts.kernelUnsent } : {})
      },
      this
    )
    this.subflows.push(sub)
    this.subflows.sort((a, b) => a.id - b.id)
    this.counters.inc('subflows_joined')
    if (this.graceTimer) {
      clearTimeout(this.graceTimer)
      this.graceTimer = undefined
      this.log.info('trunk back after an outage', { subflows: this.subflows.length })
    }
    this.log.info('subflow up', { subflow: sub.id, index, remote: sub.remote })
    // Flows waiting for a subflow get their OPEN (and cumulative ACKs) now.
    for (const flow of this.flows.values()) {
      this.ensureOpenSent(flow)
      this.ackDue.add(flow)
      if (flow.hasSendable()) this.ready.add(flow)
    }
    sub.feed(rest)
    this.schedulePump()
    return sub
  }

  /** tx: carry a new client connection to `dst`. Returns undefined when a limit refused it. */
  openFlow(socket: Socket, dst: Endpoint, src: Endpoint | undefined): Flow | undefined {
    if (this.flows.size >= this.settings.maxFlows) {
      this.counters.inc('flows_refused_limit')
      this.log.warn(`flow refused: max_flows (${this.settings.maxFlows}) reached`)
      socket.resetAndDestroy()
      return undefined
    }
    if (this.opts.budget.free < this.settings.flowWindowBytes) {
      this.counters.inc('flows_refused_memory')
      this.log.warn('flow refused: max_buffered_bytes reached')
      socket.resetAndDestroy()
      return undefined
    }
    const flowId = this.newFlowId()
    const openFrame: OpenFrame = { type: 'open', flowId, dst, src }
    const flow = this.createFlow(flowId, true, openFrame)
    if (this.portIsRedundant(dst.port)) this.redundantFlows.add(flow)
    this.log.info('flow open', {
      flow: flowId,
      src: src ? formatEndpoint(src) : undefined,
      dst: formatEndpoint(dst)
    })
    this.attachApp(flow, socket)
    this.ensureOpenSent(flow)
    if (this.subflows.length === 0) this.startGraceIfIdle()
    return flow
  }

  /** Wire an application socket to a flow (tx: the client; rx: the destination once connected). */
  attachApp(flow: Flow, socket: Socket): void {
    if (flow.done) {
      socket.resetAndDestroy()
      return
    }
    this.appSockets.set(flow, socket)
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      flow.onAppData(chunk)
    })
    socket.on('end', () => {
      flow.onAppEnd()
    })
    socket.on('drain', () => {
      flow.onAppDrain()
      this.flushAcks()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      flow.onAppError(err.code ?? err.message)
    })
    socket.on('close', () => {
      flow.onAppClosed()
    })
    this.opts.setAbortiveClose?.(socket, true)
    flow.attachApp(new SocketAppPort(socket, this.opts.setAbortiveClose))
    this.flushAcks()
  }

  /** Reset every flow (peer restarted, trunk lost, shutdown). */
  resetAllFlows(reason: number, message: string): void {
    for (const flow of [...this.flows.values()]) flow.abort(reason, message)
  }

  /** Close everything: flows reset, subflows sent GOAWAY. */
  close(reason: number, message: string): void {
    if (this.closed) return
    this.resetAllFlows(reason, message)
    this.closed = true
    if (this.graceTimer) clearTimeout(this.graceTimer)
    if (this.idleTimer) clearInterval(this.idleTimer)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    for (const sub of [...this.subflows]) sub.goAway(reason, message)
  }

  /** Snapshot of the subflows. */
  subflowStats(): SubflowStats[] {
    return this.subflows.map((s) => ({
      id: s.id,
      index: s.index,
      pathId: s.pathId,
      srttMs: Math.round(s.srttMs * 10) / 10,
      queuedBytes: s.queuedBytes,
      bytesSent: s.bytesSent,
      bytesReceived: s.bytesReceived
    }))
  }

  /** Status snapshot: subflows and the `top` busiest flows. */
  status(top = 10): TrunkStatus {
    const flows = [...this.flows.values()].map((f) => {
      const st = f.stats()
      return {
        id: f.id,
        state: st.state,
        bytesFromApp: st.bytesFromApp,
        bytesToApp: st.bytesToApp,
        resentBytes: st.resentBytes,
        ageMs: Math.round(st.ageMs)
      }
    })
    flows.sort((a, b) => b.bytesFromApp + b.bytesToApp - (a.bytesFromApp + a.bytesToApp))
    return {
      id: this.idHex,
      subflows: this.subflowStats(),
      flows: this.flows.size,
      topFlows: flows.slice(0, top)
    }
  }

  /** Sums over the live flows (closed flows are in the counters). */
  liveTotals(): {
    bytesFromApp: number
    bytesToApp: number
    reorderBytes: number
    sendBufferedBytes: number
    duplicateBytes: number
    resentBytes: number
    creditStalls: number
  } {
    const t = {
      bytesFromApp: 0,
      bytesToApp: 0,
      reorderBytes: 0,
      sendBufferedBytes: 0,
      duplicateBytes: 0,
      resentBytes: 0,
      creditStalls: 0
    }
    for (const f of this.flows.values()) {
      const s = f.stats()
      t.bytesFromApp += s.bytesFromApp
      t.bytesToApp += s.bytesToApp
      t.reorderBytes += s.reorderBytes
      t.sendBufferedBytes += s.sendBufferedBytes
      t.duplicateBytes += s.duplicateBytes
      t.resentBytes += s.resentBytes
      t.creditStalls += s.creditStalls
    }
    return t
  }

  /** Live flows (for status). */
  flowList(): Flow[] {
    return [...this.flows.values()]
  }

  /** The subflow objects (tests kill them to exercise re-sending). */
  liveSubflows(): readonly Subflow[] {
    return this.subflows
  }

  // ---- TrunkPort ---------------------------------------------------------------------------

  /** @inheritdoc */
  sendControl(flow: Flow, frame: AckFrame | ResetFrame): void {
    const sub = flow.peerSeen ? this.leastQueued() : this.ensureOpenSent(flow)
    if (sub === undefined) return // re-sent when a subflow comes (ACKs are cumulative)
    sub.writeFrame(frame)
    if (frame.type === 'reset') this.counters.inc('resets_sent')
  }

  /** @inheritdoc */
  countError(code: string): void {
    this.counters.inc(`errors_${code}`)
  }

  /** @inheritdoc */
  markReady(flow: Flow): void {
    this.ready.add(flow)
    this.schedulePump()
  }

  /** @inheritdoc */
  waitForBudget(flow: Flow): void {
    this.budgetWaiters.add(flow)
  }

  /** @inheritdoc */
  onFinished(flow: Flow): void {
    this.flows.delete(flow.id)
    this.ready.delete(flow)
    this.ackDue.delete(flow)
    this.budgetWaiters.delete(flow)
    this.redundantFlows.delete(flow)
    this.redundantWaiting.delete(flow)
    if (!flow.opener) this.rememberClosed(flow.id)
    const socket = this.appSockets.get(flow)
    this.appSockets.delete(flow)
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
    if (socket && flow.state === 'reset' && !socket.destroyed) socket.resetAndDestroy()
    this.wakeBudgetWaiters()
  }

  // ---- SubflowEvents -----------------------------------------------------------------------

  /** Frames from one read of one subflow. */
  onFrames(sub: Subflow, frames: readonly Frame[]): void {
    for (const frame of frames) this.onFrame(sub, frame)
    this.flushAcks()
    this.schedulePump()
  }

  /** A subflow drained. */
  onWritable(): void {
    this.schedulePump()
  }

  /** A subflow died: re-send what it carried, re-send ACKs, maybe start the outage grace. */
  onClosed(sub: Subflow, why: string, error: ProtocolError | undefined): void {
    const i = this.subflows.indexOf(sub)
    if (i < 0) return
    this.subflows.splice(i, 1)
    this.counters.inc('subflows_lost')
    if (error) this.counters.inc(`errors_${error.code}`)
    if (!this.closed) {
      const log = error ? this.log.warn.bind(this.log) : this.log.info.bind(this.log)
      log(`subflow ${sub.id} down: ${why}`, { subflows: this.subflows.length })
    }
    for (const flow of this.flows.values()) {
      flow.onSubflowLost(sub.id)
      this.ackDue.add(flow)
      this.ensureOpenSent(flow)
    }
    this.flushAcks()
    if (this.subflows.length === 0) this.startGraceIfIdle()
    this.schedulePump()
  }

  // ---- internals ---------------------------------------------------------------------------

  private onFrame(sub: Subflow, frame: Frame): void {
    switch (frame.type) {
      case 'ping':
        // A peer that floods PINGs and never reads must not grow our queue: past four times the
        // queue limit (data alone fills it to one) the PONG is dropped; the peer loses a sample.
        if (sub.queuedBytes > 4 * this.settings.subflowQueueBytes) {
          this.counters.inc('pongs_dropped')
          return
        }
        sub.writeFrame({ type: 'pong', flowId: 0, token: frame.token })
        return
      case 'pong':
        sub.onPong(frame.token)
        return
      case 'goaway':
        if (!this.peerDrainingValue) {
          this.log.info(
            `peer is draining (${resetReasonName(frame.reason)}): no new flows on this trunk`
          )
        }
        this.peerDrainingValue = true
        return
      case 'open':
        this.onOpenFrame(frame)
        return
      case 'data':
      case 'ack':
      case 'reset': {
        const flow = this.flows.get(frame.flowId)
        if (flow === undefined) {
          // A RESET and DATA may cross; frames for forgotten flows are dropped and counted.
          this.counters.inc('frames_unknown_flow')
          return
        }
        if (frame.type === 'data') {
          flow.onData(frame)
          flow.subflowsUsed.add(sub.index)
          this.ackDue.add(flow)
        } else if (frame.type === 'ack') {
          flow.onAck(frame)
          this.wakeBudgetWaiters()
        } else {
          this.counters.inc('resets_received')
          flow.onReset(frame)
        }
        return
      }
    }
  }

  private onOpenFrame(frame: OpenFrame): void {
    if (this.flows.has(frame.flowId)) return // another copy of the OPEN
    if (this.recentlyClosed.has(frame.flowId)) {
      this.counters.inc('opens_after_close')
      return
    }
    const refuse = (reason: number, message: string, counter: string): void => {
      this.counters.inc(counter)
      // A flood must not become a flood of log lines: the first ten, then every power of two.
      const n = this.counters.get(counter)
      if (n <= 10 || (n & (n - 1)) === 0) {
        this.log.warn(`flow ${frame.flowId} refused: ${message}`, { [counter]: n })
      }
      // A flood of refused OPENs from a peer that does not read must not grow our queue.
      const sub = this.leastQueued()
      if (sub === undefined || sub.queuedBytes > 4 * this.settings.subflowQueueBytes) {
        this.counters.inc('resets_dropped')
        return
      }
      sub.writeFrame({ type: 'reset', flowId: frame.flowId, reason, message })
    }
    if (this.drainingValue) {
      refuse(ResetReason.SHUTDOWN, 'shutting down: no new flows', 'flows_refused_shutdown')
      return
    }
    if (this.role !== 'rx' || this.opts.onOpen === undefined) {
      refuse(ResetReason.POLICY_DENIED, 'this side accepts no flows', 'flows_refused_policy')
      return
    }
    if (this.flows.size >= this.settings.maxFlows) {
      refuse(
        ResetReason.FLOW_LIMIT,
        `max_flows (${this.settings.maxFlows}) reached`,
        'flows_refused_limit'
      )
      return
    }
    if (this.opts.budget.free < this.settings.flowWindowBytes) {
      refuse(ResetReason.MEMORY_LIMIT, 'max_buffered_bytes reached', 'flows_refused_memory')
      return
    }
    const flow = this.createFlow(frame.flowId, false, undefined)
    if (this.portIsRedundant(frame.dst.port)) this.redundantFlows.add(flow)
    this.ackDue.add(flow)
    this.log.info('flow open', {
      flow: frame.flowId,
      src: frame.src ? formatEndpoint(frame.src) : undefined,
      dst: formatEndpoint(frame.dst)
    })
    this.opts.onOpen(this, flow, frame)
  }

  private createFlow(flowId: number, opener: boolean, openFrame: OpenFrame | undefined): Flow {
    const peer = this.peer
    const maxPayload = Math.min(
      this.settings.maxPayloadBytes,
      (peer?.maxFrameBodyBytes ?? this.settings.maxFrameBodyBytes) - 8
    )
    const flow = new Flow({
      flowId,
      opener,
      openFrame,
      localWindowBytes: this.settings.flowWindowBytes,
      maxWindowBytes: this.settings.maxFlowWindowBytes,
      // Before the first subflow, assume the peer grants what we do; the first ACK corrects it.
      peerWindowBytes: peer?.flowWindowBytes ?? this.settings.flowWindowBytes,
      maxPayloadBytes: maxPayload,
      sendBufferBytes: this.settings.sendBufferBytes,
      maxReorderSegments: this.settings.maxReorderSegments,
      budget: this.opts.budget,
      trunk: this,
      log: this.log.child({ flow: flowId })
    })
    this.flows.set(flowId, flow)
    this.counters.inc('flows_opened')
    return flow
  }

  /** A random non-zero flow id not in use (unguessable by design: see docs/protocol.md §1). */
  private newFlowId(): number {
    for (;;) {
      const id = randomBytes(4).readUInt32BE(0)
      if (id !== 0 && !this.flows.has(id)) return id
    }
  }

  /**
   * For a flow the peer has not answered yet: send its OPEN on every live subflow that has not
   * carried it, so that the flow's frames may take any of them from its first byte (each frame
   * then follows an OPEN on its own subflow). Returns the least queued announced subflow, or
   * undefined when none is up.
   */
  private ensureOpenSent(flow: Flow): Subflow | undefined {
    if (flow.peerSeen || flow.done || flow.openFrame === undefined) return undefined
    let best: Subflow | undefined
    for (const s of this.subflows) {
      if (!flow.announcedOn.has(s.id)) {
        s.writeFrame(flow.openFrame)
        flow.announcedOn.add(s.id)
        this.ready.add(flow)
      }
      if (best === undefined || s.queuedBytes < best.queuedBytes) best = s
    }
    return best
  }

  private leastQueued(): Subflow | undefined {
    let best: Subflow | undefined
    for (const s of this.subflows) {
      if (best === undefined || s.queuedBytes < best.queuedBytes) best = s
    }
    return best
  }

  private flushAcks(): void {
    if (this.ackDue.size === 0) return
    const due = [...this.ackDue]
    this.ackDue.clear()
    for (const flow of due) flow.flushAck()
  }

  private wakeBudgetWaiters(): void {
    if (this.budgetWaiters.size === 0 || this.opts.budget.free === 0) return
    const waiting = [...this.budgetWaiters]
    this.budgetWaiters.clear()
    for (const flow of waiting) flow.onBudgetFreed()
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    // setImmediate, not a microtask: every read of this loop turn is taken in before frames go
    // out, so one pump serves many reads and frames are as full as the data allows.
    setImmediate(() => {
      this.pumpScheduled = false
      this.pump()
    })
  }

  /** Remember an ended flow id for a minute (at most 65,536 of them, oldest dropped first). */
  private rememberClosed(id: number): void {
    const now = this.opts.now()
    this.recentlyClosed.set(id, now)
    for (const [k, at] of this.recentlyClosed) {
      if (this.recentlyClosed.size <= 65536 && now - at < 60_000) break
      this.recentlyClosed.delete(k)
    }
  }

  /** Pump again after REDUNDANT_WAIT_MS (once), for flows waiting on a copy slot. */
  private retryPumpLater(): void {
    if (this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.schedulePump()
    }, REDUNDANT_WAIT_MS + 10)
    this.retryTimer.unref()
  }

  /** The least queued writable subflow other than `sub`, on another path when there is one. */
  private otherSubflow(sub: Subflow): Subflow | undefined {
    let other: Subflow | undefined
    let same: Subflow | undefined
    for (const s of this.subflows) {
      if (s.id === sub.id || !s.writable) continue
      if (s.pathId !== sub.pathId) {
        if (other === undefined || s.queuedBytes < other.queuedBytes) other = s
      } else if (same === undefined || s.queuedBytes < same.queuedBytes) {
        same = s
      }
    }
    return other ?? same
  }

  private portIsRedundant(port: number): boolean {
    return this.settings.redundantPorts.some((r) => port >= r.from && port <= r.to)
  }

  /** Does `flow` send its next frame on two subflows? */
  private isRedundant(flow: Flow): boolean {
    return (
      this.opts.scheduler.duplicate !== undefined ||
      this.redundantFlows.has(flow) ||
      (this.settings.redundantFirstBytes > 0 && flow.sentBytes < this.settings.redundantFirstBytes)
    )
  }

  /**
   * The subflows a scheduler may use now. A subflow whose RTT is far above the best one (more
   * than twice it plus 50 ms) is left out while a faster one is up: a frame sent there would
   * arrive long after the frames behind it on the fast path and stall the reorder buffer.
   */
  private eligible(): readonly SubflowView[] {
    let min = Infinity
    for (const s of this.subflows) if (s.srttMs > 0 && s.srttMs < min) min = s.srttMs
    if (min === Infinity) return this.subflows
    const limit = 2 * min + 50
    const fast = this.subflows.filter((s) => s.srttMs <= limit)
    return fast.length === this.subflows.length ? this.subflows : fast
  }

  /** Give frames to subflows until no flow can send or no subflow can take more. */
  private pump(): void {
    if (this.subflows.length === 0) return
    const now = this.opts.now()
    for (const s of this.subflows) s.markUnsentStale()
    const views = this.eligible()
    const firstPath = this.subflows[0]?.pathId
    const multiPath = this.subflows.some((s) => s.pathId !== firstPath)
    let progress = true
    while (progress && this.ready.size > 0) {
      progress = false
      for (const flow of this.ready) {
        if (!flow.hasSendable()) {
          this.ready.delete(flow)
          continue
        }
        if (!flow.peerSeen) this.ensureOpenSent(flow)
        const id = this.opts.scheduler.pick(this.settings.maxPayloadBytes, views, now)
        if (id === undefined) return // no subflow can take anything: wait for 'drain'
        const sub = this.subflows.find((s) => s.id === id)
        if (sub === undefined) continue
        // (Before the peer answered, every live subflow carries the OPEN, so copies may go anywhere.)
        const redundant = this.isRedundant(flow) && this.subflows.length > 1
        // A redundant flow goes only when a second subflow (on another path when there is one)
        // can take the copy too: it is paced by the slower of the two, and every frame is sent
        // twice. The copy is not recorded for re-sending: if `sub` dies the original is re-sent,
        // and whichever copy arrives second is dropped by offset at the far end.
        let copy: Subflow | undefined
        if (redundant) {
          const second =
            this.opts.scheduler.duplicate?.(sub.id, this.subflows) ?? this.otherSubflow(sub)?.id
          copy = this.subflows.find((s) => s.id === second && s.writable)
          // With two paths up, the copy must take the other one: two copies on one path die
          // together when that path does. The flow waits for such a slot, but not for longer
          // than REDUNDANT_WAIT_MS: a path that takes nothing (congested, or dead and not yet
          // detected) must not stall the flow, which then goes on alone on the live path.
          if (copy === undefined || (multiPath && copy.pathId === sub.pathId)) {
            copy = undefined
            const since = this.redundantWaiting.get(flow)
            if (since === undefined) {
              this.redundantWaiting.set(flow, now)
              this.retryPumpLater()
              continue
            }
            if (now - since < REDUNDANT_WAIT_MS) {
              this.retryPumpLater()
              continue
            }
          } else {
            this.redundantWaiting.delete(flow)
          }
        }
        const d = flow.nextData(sub.id)
        if (d === undefined) {
          this.ready.delete(flow)
          continue
        }
        sub.writeData(flow.id, d)
        flow.subflowsUsed.add(sub.index)
        this.counters.inc('frames_sent')
        if (d.resend) this.counters.inc('bytes_resent', d.payload.length)
        if (copy !== undefined) {
          copy.writeData(flow.id, d)
          this.counters.inc('frames_duplicated')
        }
        progress = true
      }
    }
  }

  private startGraceIfIdle(): void {
    if (this.graceTimer || this.closed) return
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined
      if (this.subflows.length > 0) return
      this.log.warn(
        `trunk lost: no subflow for ${this.settings.outageGraceMs} ms, resetting ${this.flows.size} flow(s)`
      )
      this.counters.inc('trunk_outages')
      this.resetAllFlows(ResetReason.TRUNK_LOST, 'no subflow left')
      this.opts.onLost?.(this)
    }, this.settings.outageGraceMs)
    this.graceTimer.unref()
  }
}
