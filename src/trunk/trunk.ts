/**
 * A trunk: the subflows between this proxy and its peer, and every flow carried over them.
 * The same class serves both roles; they differ only in who dials and who opens flows. It wires
 * parts with one job each: `Membership` (subflows and their views), `FlowTable`, `Admission`
 * (limits, refusals, ids of flows that ended lately), `Dispatcher` (frames from the peer),
 * `Sender` (core/sender.ts: the pure decision of what goes where) run by `Pump`, `AckBatch`,
 * `IdleReaper`, `AppSocket` (application sockets) and the status snapshots.
 *
 * Backpressure is a chain of booleans: a full subflow is not writable until 'drain'; a flow
 * without credit is not ready; a full flow pauses its own application socket. A subflow is
 * never paused for one flow's sake.
 */
import type { Socket } from 'node:net'
import type { Counters } from '../common/counters.js'
import type { PepErrorCode, ProtocolError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import {
  ResetReason,
  type AckFrame,
  type Endpoint,
  type Frame,
  type OpenFrame,
  type ReleaseFrame,
  type ResetFrame,
  type ResetReasonCode
} from '../common/wire/frame.js'
import type { Flow, TrunkPort } from '../core/flow.js'
import type { TrunkOptions } from './options.js'
import { RedundancyPolicy } from '../core/redundancy.js'
import type { RateState } from '../core/rate-controller.js'
import { Sender } from '../core/sender.js'
import { AckBatch } from './ack-batch.js'
import { Admission } from './admission.js'
import { abortSocket, AppSocket } from './app-socket.js'
import { ConnectFailed, type Connector } from './connector.js'
import { Dispatcher } from './dispatch.js'
import { FlowTable, type PeerParams } from './flow-table.js'
import type { SubflowKeys } from './handshake.js'
import { IdleReaper, OutageGrace } from './idle.js'
import { Reinjector } from './reinject.js'
import { Membership } from './membership.js'
import { Pump } from './pump.js'
import { rateLoopFor, type RateLoop } from './rate-loop.js'
import type { TrunkSettings } from './settings.js'
import { flowTotals, type FlowTotals } from './status.js'
import type { Subflow } from './subflow.js'
import { Ticker } from './ticker.js'

/** How often flows look at whether to give idle credit back (RELEASE), in ms. */
const CREDIT_CHECK_MS = 1000

export type { TrunkOptions } from './options.js'

/** Subflows plus flows between one pair of proxies. */
export class Trunk implements TrunkPort {
  readonly role: 'tx' | 'rx'
  readonly trunkId: Uint8Array
  private readonly opts: TrunkOptions
  private readonly settings: TrunkSettings
  private readonly log: Logger
  private readonly counters: Counters
  private readonly members: Membership
  private readonly flows: FlowTable
  private readonly admission: Admission
  private readonly redundancy: RedundancyPolicy<Flow>
  private readonly sender: Sender<Flow>
  private readonly pump: Pump
  private readonly rate: RateLoop | undefined
  private readonly acks = new AckBatch()
  private readonly dispatcher: Dispatcher
  private readonly idle: IdleReaper
  private readonly reinjector: Reinjector
  /** Idle flows give the peer's credit back (`Flow.tickCredit`). */
  private readonly creditTicker: Ticker
  private readonly grace: OutageGrace
  /** Largest receive window a flow of this trunk grew to past the hint, bytes (noteWindowGrown). */
  private largestGrownWindow = 0
  private closed = false

  constructor(opts: TrunkOptions) {
    this.opts = opts
    this.role = opts.role
    this.trunkId = opts.trunkId
    this.settings = opts.settings
    this.log = opts.log
    this.counters = opts.counters
    this.members = new Membership(opts)
    this.flows = new FlowTable(opts)
    this.admission = new Admission(opts)
    this.redundancy = new RedundancyPolicy<Flow>({
      everyFrame: opts.scheduler.copiesEveryFrame === true,
      ports: opts.settings.redundantPorts,
      firstBytes: opts.settings.redundantFirstBytes
    })
    const link = opts.settings.linkRateBytesPerSec
    this.rate = rateLoopFor(this.members, opts.rateProbe, opts.now, link, opts.tuneLongPath)
    this.sender = new Sender<Flow>({
      scheduler: opts.scheduler,
      redundancy: this.redundancy,
      maxPayloadBytes: opts.settings.maxPayloadBytes,
      gate: this.rate
    })
    this.pump = new Pump({
      members: this.members,
      sender: this.sender,
      counters: opts.counters,
      now: opts.now
    })
    // Only rx connects flows; tx refuses every OPEN (a peer has no business opening flows here).
    const connect = opts.role === 'rx' ? opts.connect : undefined
    this.dispatcher = new Dispatcher({
      flows: this.flows,
      acks: this.acks,
      admission: this.admission,
      members: this.members,
      counters: opts.counters,
      log: opts.log,
      queueLimitBytes: opts.settings.subflowQueueBytes,
      sendRate: () => this.rate?.controller.state.sendRateBytesPerSec ?? 0,
      onPeerSendRate: (bytesPerSec) => this.rate?.controller.notePeerSendRate(bytesPerSec),
      onOpen:
        connect === undefined
          ? undefined
          : (frame) => {
              this.acceptOpen(frame, connect)
            }
    })
    this.reinjector = new Reinjector({
      subflows: () => this.members.all,
      flows: () => this.flows.values(),
      queueLimitBytes: opts.settings.subflowQueueBytes,
      counters: opts.counters
    })
    this.creditTicker = new Ticker(CREDIT_CHECK_MS, () => {
      const now = opts.now()
      for (const flow of this.flows.values()) flow.tickCredit(now)
    }).start()
    this.grace = new OutageGrace(opts.settings.outageGraceMs, () => {
      if (this.members.size > 0) return
      this.log.warn(
        `trunk lost: no subflow for ${this.settings.outageGraceMs} ms, resetting ${this.flows.size} flow(s)`
      )
      this.counters.inc('trunk_outages')
      this.resetAllFlows(ResetReason.TRUNK_LOST, 'no subflow left')
      this.opts.onLost?.(this)
    })
    this.idle = new IdleReaper(
      opts.settings.idleTimeoutMs,
      opts.now,
      () => this.flows.values(),
      () => {
        this.counters.inc('flows_idle_timeout')
      }
    )
  }

  /** Trunk id in hex, for logs and maps. */
  get idHex(): string {
    return Buffer.from(this.trunkId).toString('hex')
  }

  /** Live subflows. */
  get subflowCount(): number {
    return this.members.size
  }

  /** Live flows. */
  get flowCount(): number {
    return this.flows.size
  }

  /** True after the peer sent GOAWAY: it takes no new flows (it is shutting down). */
  get peerDraining(): boolean {
    return this.dispatcher.peerDraining
  }

  /**
   * Graceful shutdown, first step: tell the peer (GOAWAY on every subflow) that this side takes
   * no new flows; running flows go on. New OPENs are refused from now on.
   */
  drain(reason: ResetReasonCode, message: string): void {
    this.dispatcher.draining = true
    for (const sub of this.members.all)
      sub.writeFrame({ type: 'goaway', flowId: 0, reason, message })
  }

  /** Monotonic milliseconds (TrunkPort). */
  now(): number {
    return this.opts.now()
  }

  /** Smoothed RTT of the fastest subflow, ms; 0 before any sample (TrunkPort). */
  srttMs(): number {
    return this.members.minSrttMs()
  }

  /** Bytes a flow's credit should cover: 2 × the trunk's BDP, 0 while unknown (TrunkPort). */
  windowHintBytes(): number {
    return this.rate?.controller.windowHintBytes() ?? 0
  }

  /** A flow's window grew past the hint (TrunkPort): remember the largest. */
  noteWindowGrown(bytes: number): void {
    if (bytes > this.largestGrownWindow) this.largestGrownWindow = bytes
  }

  /** The largest window a flow grew to past the hint, bytes; 0: none yet (TrunkPort). */
  grownWindowBytes(): number {
    return this.largestGrownWindow
  }

  /** The rate controller's last decision, or undefined when the trunk does not pace. */
  rateState(): RateState | undefined {
    return this.rate?.controller.state
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
    this.flows.peer = peer
    // A subflow that joins after a GOAWAY comes from a peer that restarted and takes flows again.
    this.dispatcher.peerDraining = false
    this.opts.tuneSocket?.(socket)
    const sub = this.members.join(socket, { index, pathId, weight, keys }, this)
    this.counters.inc('subflows_joined')
    this.rate?.start()
    if (this.grace.cancel()) {
      this.log.info('trunk back after an outage', { subflows: this.members.size })
    }
    this.log.info('subflow up', { subflow: sub.id, index, remote: sub.remote })
    // Flows waiting for a subflow get their OPEN (and cumulative ACKs) now.
    for (const flow of this.flows.values()) {
      this.pump.announce(flow)
      this.acks.add(flow)
      if (flow.hasSendable()) this.sender.markReady(flow)
    }
    sub.feed(rest)
    this.pump.schedule()
    return sub
  }

  /**
   * tx: true when a new flow would be refused now (a limit here, or the peer refused one for a
   * limit lately): its SYN should pass directly.
   */
  atCapacity(): boolean {
    return this.admission.atCapacity(this.flows.size)
  }

  /** tx: carry a new client connection to `dst`. Returns undefined when a limit refused it. */
  openFlow(socket: Socket, dst: Endpoint, src: Endpoint | undefined): Flow | undefined {
    const refusal = this.admission.limitRefusal(this.flows.size)
    if (refusal !== undefined) {
      this.admission.noteRefusal(refusal, undefined)
      abortSocket(socket)
      return undefined
    }
    const flowId = this.flows.newId()
    const flow = this.flows.create(flowId, { type: 'open', flowId, dst, src }, this)
    this.redundancy.admit(flow, dst.port)
    this.flows.logOpen(flowId, dst, src)
    this.attachApp(flow, socket)
    this.pump.announce(flow)
    if (this.members.size === 0 && !this.closed) this.grace.start()
    return flow
  }

  /**
   * The peer restarted (a new subflow's REPLY says it does not know this trunk). Flows it may
   * have known are lost with it and reset; flows it never heard of (opened while no subflow was
   * up) go on over the new subflows. Subflows of the old peer still up are closed. Returns how
   * many flows were lost.
   */
  peerRestarted(): number {
    let lost = 0
    for (const flow of this.flows.list()) {
      if (!flow.peerMayKnow) continue
      lost++
      flow.abort(ResetReason.PEER_RESTARTED, 'peer lost the trunk')
    }
    for (const sub of [...this.members.all]) sub.close('the peer restarted', undefined)
    return lost
  }

  /** Reset every flow (trunk lost, shutdown). */
  resetAllFlows(reason: ResetReasonCode, message: string): void {
    for (const flow of this.flows.list()) flow.abort(reason, message)
  }

  /** Close everything: flows reset, subflows sent GOAWAY. */
  close(reason: ResetReasonCode, message: string): void {
    if (this.closed) return
    this.resetAllFlows(reason, message)
    this.closed = true
    this.grace.cancel()
    this.pump.close()
    this.rate?.close()
    this.idle.close()
    this.reinjector.close()
    this.creditTicker.stop()
    for (const sub of [...this.members.all]) sub.goAway(reason, message)
  }

  /** Sums over the live flows (closed flows are in the counters). */
  liveTotals(): FlowTotals {
    return flowTotals(this.flows.values())
  }

  /** The live flows (status reads them). */
  flowList(): Flow[] {
    return this.flows.list()
  }

  /** The subflow objects (metrics read TCP_INFO from their sockets; tests kill them). */
  liveSubflows(): readonly Subflow[] {
    return this.members.all
  }

  // ---- TrunkPort ---------------------------------------------------------------------------

  /** @inheritdoc */
  sendControl(flow: Flow, frame: AckFrame | ReleaseFrame | ResetFrame): void {
    const sub = flow.peerSeen ? this.members.leastQueued() : this.pump.announce(flow)
    if (sub === undefined) return // re-sent when a subflow comes (ACKs are cumulative)
    sub.writeFrame(frame)
    if (frame.type === 'reset') this.counters.inc('resets_sent')
    if (frame.type === 'release') this.counters.inc('releases_sent')
    // Credit must not wait behind a lost segment on one subflow: an ACK or a RELEASE goes on a
    // second one too (a late copy changes nothing: ACKs are cumulative, a RELEASE's epoch is
    // taken once).
    const second =
      frame.type !== 'reset' && flow.peerSeen ? this.members.secondLeastQueued(sub) : undefined
    second?.writeFrame(frame)
    if (second !== undefined && frame.type === 'ack') this.counters.inc('acks_duplicated')
  }

  /** @inheritdoc */
  countError(code: PepErrorCode): void {
    this.counters.inc(`errors_${code}`)
  }

  /** @inheritdoc */
  markReady(flow: Flow): void {
    this.sender.markReady(flow)
    this.pump.schedule()
  }

  /** @inheritdoc */
  waitForBudget(flow: Flow): void {
    this.flows.waitForBudget(flow)
  }

  /** @inheritdoc */
  onFinished(flow: Flow): void {
    this.flows.finished(flow)
    this.sender.forget(flow)
    this.acks.delete(flow)
    if (!flow.opener) this.admission.rememberClosed(flow.id)
    this.flows.wakeBudgetWaiters()
  }

  // ---- SubflowEvents -----------------------------------------------------------------------

  /** Frames from one read of one subflow. */
  onFrames(sub: Subflow, frames: readonly Frame[]): void {
    for (const frame of frames) this.dispatcher.dispatch(sub, frame)
    this.acks.flush()
    this.pump.schedule()
  }

  /** A subflow drained. */
  onWritable(): void {
    this.pump.schedule()
  }

  /** A subflow died: re-send what it carried, re-send ACKs, maybe start the outage grace. */
  onClosed(sub: Subflow, why: string, error: ProtocolError | undefined): void {
    if (!this.members.remove(sub)) return
    this.counters.inc('subflows_lost')
    if (error) this.counters.inc(`errors_${error.code}`)
    if (!this.closed) {
      const log = error ? this.log.warn.bind(this.log) : this.log.info.bind(this.log)
      log(`subflow ${sub.id} down: ${why}`, { subflows: this.members.size })
    }
    for (const flow of this.flows.values()) {
      flow.onSubflowLost(sub.id)
      this.acks.add(flow)
      this.pump.announce(flow)
    }
    this.acks.flush()
    if (this.members.size === 0 && !this.closed) this.grace.start()
    this.pump.schedule()
  }

  // ---- internals ---------------------------------------------------------------------------

  /** rx: an OPEN the dispatcher let through: make the flow and connect it. */
  private acceptOpen(frame: OpenFrame, connect: Connector): void {
    const flow = this.flows.create(frame.flowId, undefined, this)
    this.redundancy.admit(flow, frame.dst.port)
    this.acks.add(flow)
    this.flows.logOpen(frame.flowId, frame.dst, frame.src)
    connect(frame, flow).then(
      (socket) => {
        this.attachApp(flow, socket)
      },
      (err: unknown) => {
        const failed =
          err instanceof ConnectFailed
            ? err
            : new ConnectFailed(ResetReason.CONNECT_UNREACHABLE, String(err))
        flow.abort(failed.reason, failed.message)
      }
    )
  }

  /** Give the flow its application socket (tx: the client; rx: the connected destination). */
  private attachApp(flow: Flow, socket: Socket): void {
    const app = AppSocket.attach(socket, flow, {
      setAbortiveClose: this.opts.setAbortiveClose,
      onDrain: () => {
        this.acks.flush()
      }
    })
    if (app !== undefined) this.acks.flush()
  }
}
