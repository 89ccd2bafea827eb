/**
 * One carried TCP flow: its state machine, both streams, credit and re-send bookkeeping. One
 * `transition()` checks every state change against a table, so no helper changes the state on
 * the side. Pure: it reaches the application socket and the trunk only through the ports it is
 * given, and gets the time from them.
 */
import { PepErrorCodes, ProtocolError, type PepErrorCode } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { escapePeerText } from '../common/log/escape.js'
import {
  ResetReason,
  resetReasonName,
  type ResetReasonCode,
  type AckFrame,
  type DataFrame,
  type OpenFrame,
  type ReleaseFrame,
  type ResetFrame
} from '../common/wire/frame.js'
import type { MemoryBudget } from './memory-budget.js'
import { ReceiveWindow } from './receive-window.js'
import { ReorderBuffer } from './reorder-buffer.js'
import { SendBuffer, type DataToSend, type SubflowId } from './send-buffer.js'

/**
 * Share of the global budget (limits.max_buffered_bytes) a flow never takes for credit beyond its
 * first window (the trunk's hint, a window an earlier flow grew to, its own doublings): it stays
 * for new flows' first credit, which admission requires free.
 */
export const BUDGET_KEPT_FOR_NEW_FLOWS = 0.25

/**
 * Bytes a flow may hold from its application not yet sent against the whole global budget;
 * beyond them it reads only while BUDGET_KEPT_FOR_NEW_FLOWS stays free. Reading is optional (a
 * paused application is slowed by its own TCP) while a new flow's first credit is not: clients
 * that write faster than the trunk carries filled the budget and new flows were refused. Bytes
 * in flight do not count here: the peer's credit bounds them, and the flow's rate needs them.
 */
export const UNSENT_BYTES_FROM_WHOLE_BUDGET = 256 * 1024

/** An unanswered RELEASE goes again after two round trips, and never sooner than this, in ms. */
export const RELEASE_RESEND_MIN_MS = 1000

/** Frame-size ramp (see `Flow.nextData`): small frames for the first bytes of a burst. */
const SMALL_FRAME_BYTES = 16 * 1024
const RAMP_BYTES = 1024 * 1024
const RAMP_IDLE_MS = 1000

/** Life of a flow. `local-fin`: our application ended its stream. `remote-fin`: the peer's FIN was handed to our application. */
export type FlowState =
  'connecting' | 'open' | 'local-fin' | 'remote-fin' | 'both-fin' | 'closed' | 'reset'

/** Allowed transitions; anything else is a bug and throws. */
const TRANSITIONS: Readonly<Record<FlowState, readonly FlowState[]>> = {
  connecting: ['open', 'reset'],
  open: ['local-fin', 'remote-fin', 'reset'],
  'local-fin': ['both-fin', 'reset'],
  'remote-fin': ['both-fin', 'reset'],
  'both-fin': ['closed', 'reset'],
  closed: [],
  reset: []
}

/** The local application socket as the flow sees it. */
export interface AppPort {
  /** Hand in-order bytes over; false when the socket is full (wait for `onAppDrain`). */
  write(chunk: Uint8Array): boolean
  /** Shut the socket's sending side (FIN). */
  end(): void
  /** Abort the socket (RST). */
  reset(): void
  /** Stop reading from the application. */
  pause(): void
  /** Read from the application again. */
  resume(): void
}

/** The trunk as the flow sees it. */
export interface TrunkPort {
  /** Send a control frame of this flow (ACK, RELEASE, RESET). */
  sendControl(flow: Flow, frame: AckFrame | ReleaseFrame | ResetFrame): void
  /** The flow has DATA to send: schedule it. */
  markReady(flow: Flow): void
  /** The flow waits for the global budget to free bytes: call `onBudgetFreed` when it does. */
  waitForBudget(flow: Flow): void
  /** The flow ended (closed or reset): forget it. */
  onFinished(flow: Flow): void
  /** Monotonic time in milliseconds. */
  now(): number
  /** Smoothed round-trip time of the trunk's fastest subflow, in ms; 0 before the first sample. */
  srttMs(): number
  /**
   * Credit a flow needs so that it never limits the trunk, in bytes: twice the rate
   * controller's bandwidth-delay product (one BDP in flight, one more to cover a lost segment
   * holding the in-order point for a round trip); 0 while unknown.
   */
  windowHintBytes(): number
  /**
   * A flow's receive window grew past the hint by doubling (its application kept up with the
   * credit, or reordering held half of it): the trunk remembers the largest such window
   * (`grownWindowBytes`), so that a warm trunk's next bulk flow does not double its way up again.
   */
  noteWindowGrown(bytes: number): void
  /** The largest window a flow of this trunk grew to past the hint, in bytes; 0: none yet. */
  grownWindowBytes(): number
  /** Count a flow error by its stable code (the flow resets itself). */
  countError(code: PepErrorCode): void
}

/** Settings of one flow. */
export interface FlowOptions {
  readonly flowId: number
  /** True on the side that sent (or will send) the OPEN. */
  readonly opener: boolean
  /** OPEN to (re)send until the peer answers; opener only. */
  readonly openFrame: OpenFrame | undefined
  /** Credit we grant the peer at first, in bytes (the window announced in our hello). */
  readonly localWindowBytes: number
  /**
   * Most credit we grant, in bytes. The window doubles from `localWindowBytes` towards this
   * while the application keeps up and either reordering holds half the window (a lossy
   * subflow's recovery stalls the in-order point, and credit must cover the stall) or the
   * application took half the window in under two round trips (the window, not the link,
   * limits the rate: a long fat pipe; quic-go's auto-tuning).
   */
  readonly maxWindowBytes: number
  /** Credit the peer granted us at start, in bytes (the window in its hello). */
  readonly peerWindowBytes: number
  /** Largest DATA payload, in bytes. */
  readonly maxPayloadBytes: number
  /**
   * Most bytes read from the application and not yet sent before it is paused; all held bytes
   * (unsent plus unacknowledged) are capped at `maxWindowBytes + sendBufferBytes`.
   */
  readonly sendBufferBytes: number
  /** Most separate ranges in the reorder buffer. */
  readonly maxReorderSegments: number
  /**
   * Once the application sent nothing for this long, the flow gives the peer's credit back
   * beyond a first window (RELEASE), in ms; 0: never.
   */
  readonly creditReleaseIdleMs: number
  readonly budget: MemoryBudget
  readonly trunk: TrunkPort
  readonly log: Logger
}

/** Counters of one flow. */
export interface FlowStats {
  readonly flowId: number
  readonly state: FlowState
  /** Bytes read from the local application. */
  readonly bytesFromApp: number
  /** Bytes handed to the local application. */
  readonly bytesToApp: number
  /** Bytes sent again after a subflow loss. */
  readonly resentBytes: number
  /** Bytes sent once more on another subflow because they held the in-order point too long. */
  readonly reinjectedBytes: number
  /** Bytes received twice and dropped. */
  readonly duplicateBytes: number
  /** Bytes held in the reorder buffer. */
  readonly reorderBytes: number
  /** Bytes held in the send buffer. */
  readonly sendBufferedBytes: number
  /** Current receive window, in bytes. */
  readonly windowBytes: number
  /** Times the flow could not send for lack of credit. */
  readonly creditStalls: number
  /** Bytes of the peer's credit this flow gave back (RELEASE). */
  readonly releasedBytes: number
  /** Age, in milliseconds. */
  readonly ageMs: number
}

/** One flow's state machine. */
export class Flow {
  readonly id: number
  readonly opener: boolean
  /**
   * Subflows that carried this flow's OPEN. Until the peer has answered, frames go only on
   * these, each behind its OPEN, so the peer always learns of the flow first (docs/protocol.md
   * §3, OPEN).
   */
  readonly announcedOn = new Set<SubflowId>()
  /** True once an OPEN of this flow went out on any subflow (the peer may know the flow). */
  private announcedValue = false
  /** Indexes of the subflows that carried this flow's DATA either way (for `status`). */
  readonly subflowsUsed = new Set<number>()
  private stateValue: FlowState
  private readonly send: SendBuffer
  private readonly recv: ReorderBuffer
  private readonly opts: FlowOptions
  private readonly log: Logger
  private app: AppPort | undefined
  private appWritable = false
  private appEnded = false
  private appPaused = false
  private peerSeenValue: boolean
  private peerLimit: number
  private recvLimit: number
  /** Current receive window (grows, see `maxWindowBytes` and core/receive-window.ts). */
  private readonly window: ReceiveWindow
  private lastAckReceived = 0
  private lastAckLimit: number
  private lastAckFin = false
  /** The first ACK tells an opener that its OPEN arrived, so it is sent even with nothing new. */
  private ackedOnce = false
  /** A subflow died: our last ACK may have gone down with it, so the next flush sends one. */
  private ackMaybeLost = false
  private readonly startedMs: number
  /** Frame-size ramp: when we last sent, and the send offset where this burst began. */
  private lastSendMs = -Infinity
  private burstStart = 0
  private resent = 0
  private reinjected = 0
  /** Credit epoch of our stream: 0 for the hello's credit, then one per RELEASE we sent. */
  private sendEpoch = 0
  /** Our last RELEASE while no ACK of its epoch came back. */
  private pendingRelease: { readonly frame: ReleaseFrame; sentMs: number } | undefined
  /** Bytes of the peer's credit given back. */
  private released = 0
  /** When the application last gave us bytes (or the flow started), in ms. */
  private lastAppDataMs: number
  /** Credit epoch of the peer's stream: the epoch of the last RELEASE we took. */
  private recvEpoch = 0
  /**
   * False from a RELEASE we took until the peer's next new byte: the hint and the remembered
   * window are not granted to a stream that went idle, only the first window.
   */
  private recvActive = true
  private duplicates = 0
  private stalls = 0
  /** In a credit stall now: counted once per stall, not once per look. */
  private stalled = false
  private finishReason = ''
  /** When a byte last moved either way, in ms (for the idle timeout). */
  private lastActivity: number

  constructor(opts: FlowOptions) {
    this.opts = opts
    this.id = opts.flowId
    this.opener = opts.opener
    this.log = opts.log
    this.send = new SendBuffer(opts.maxPayloadBytes)
    this.recv = new ReorderBuffer(opts.maxReorderSegments)
    this.peerLimit = opts.peerWindowBytes
    this.recvLimit = opts.localWindowBytes
    this.lastAckLimit = opts.localWindowBytes
    this.peerSeenValue = !opts.opener
    this.stateValue = opts.opener ? 'open' : 'connecting'
    this.startedMs = opts.trunk.now()
    this.window = new ReceiveWindow(opts.localWindowBytes, opts.maxWindowBytes, this.startedMs)
    this.lastActivity = this.startedMs
    this.lastAppDataMs = this.startedMs
    // The initial credit is granted implicitly by the hello; account it against the global cap.
    opts.budget.force(opts.localWindowBytes)
  }

  /** Current state. */
  get state(): FlowState {
    return this.stateValue
  }

  /** True once any frame for this flow came from the peer (the OPEN was processed). */
  get peerSeen(): boolean {
    return this.peerSeenValue
  }

  /**
   * True when the peer may know this flow: it answered, or an OPEN went out. A flow that is
   * neither (opened while no subflow was up) is new to any peer, a restarted one too.
   */
  get peerMayKnow(): boolean {
    return this.peerSeenValue || this.announcedValue
  }

  /** The trunk sent this flow's OPEN on `subflow`. */
  announcedOnSubflow(subflow: SubflowId): void {
    this.announcedOn.add(subflow)
    this.announcedValue = true
  }

  /** The OPEN to send on every subflow until the peer answers (opener only). */
  get openFrame(): OpenFrame | undefined {
    return this.opts.openFrame
  }

  /** True when the flow is over. */
  get done(): boolean {
    return this.stateValue === 'closed' || this.stateValue === 'reset'
  }

  /** Attach the application socket (at once on the opener; after connecting on the acceptor). */
  attachApp(app: AppPort): void {
    this.app = app
    this.appWritable = true
    if (this.stateValue === 'connecting') this.transition('open', 'destination connected')
    this.deliver()
    this.flushAck()
  }

  // ---- application events -------------------------------------------------------------------

  /** Bytes read from the application. */
  onAppData(chunk: Uint8Array): void {
    if (this.done || this.send.ended) return
    this.lastActivity = this.opts.trunk.now()
    this.lastAppDataMs = this.lastActivity
    this.send.append(chunk)
    this.opts.budget.force(chunk.length)
    this.noteCreditStall()
    this.opts.trunk.markReady(this)
    this.updateAppPause()
  }

  /** The application shut its sending side. */
  onAppEnd(): void {
    if (this.done || this.send.ended) return
    this.send.end()
    this.transition(
      this.stateValue === 'remote-fin' ? 'both-fin' : 'local-fin',
      'application sent FIN'
    )
    this.opts.trunk.markReady(this)
  }

  /** The application socket can take bytes again. */
  onAppDrain(): void {
    if (this.done) return
    this.appWritable = true
    this.deliver()
    this.flushAck()
  }

  /** The application socket failed or was reset: reset the peer's side too. */
  onAppError(message: string): void {
    this.abort(ResetReason.APP_RESET, message)
  }

  /**
   * The application socket closed. Normal after both FINs (the flow may still wait for our FIN to
   * be acknowledged); anything earlier means bytes can no longer flow: reset the peer.
   */
  onAppClosed(): void {
    if (this.done) return
    if (!this.send.ended || !this.appEnded)
      this.abort(ResetReason.APP_RESET, 'application socket closed')
  }

  // ---- frames from the peer -----------------------------------------------------------------

  /** DATA for this flow. */
  onData(frame: DataFrame): void {
    if (this.done) return
    this.peerSeenValue = true
    this.lastActivity = this.opts.trunk.now()
    try {
      const r = this.recv.insert(frame.offset, frame.payload, frame.fin, this.recvLimit)
      this.duplicates += r.duplicateBytes
      if (r.newBytes > 0) this.recvActive = true
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.protocolError(err)
        return
      }
      throw err
    }
    this.deliver()
  }

  /**
   * RELEASE for the peer's stream: it gives credit back, so the reservation beyond its limit
   * goes back to the budget and the window to the first one. A copy of one we took is answered
   * by the next ACK; anything else that does not fit (an epoch skipped, a limit beyond what we
   * granted or below bytes we received) is a flow error.
   */
  onRelease(frame: ReleaseFrame): void {
    if (this.done) return
    this.peerSeenValue = true
    if (frame.epoch <= this.recvEpoch) {
      this.ackMaybeLost = true
      return
    }
    // Bytes received, and a FIN's offset: the sender has sent (or will) everything below them.
    const floor = Math.max(this.recv.highestEnd, this.recv.fin ?? 0)
    const bad =
      frame.epoch !== this.recvEpoch + 1
        ? `RELEASE of credit epoch ${frame.epoch} after ${this.recvEpoch}`
        : frame.limit > this.recvLimit
          ? `RELEASE limit ${frame.limit} beyond the granted ${this.recvLimit}`
          : frame.limit < floor
            ? `RELEASE limit ${frame.limit} below bytes received (${floor})`
            : undefined
    if (bad !== undefined) {
      this.protocolError(
        new ProtocolError(PepErrorCodes.FLOW_STATE, bad, ResetReason.PROTOCOL_ERROR)
      )
      return
    }
    this.opts.budget.release(this.recvLimit - frame.limit)
    this.recvLimit = frame.limit
    this.recvEpoch = frame.epoch
    this.recvActive = false
    this.window.reset(this.opts.localWindowBytes, this.recv.delivered, this.opts.trunk.now())
    // The ACK of the new epoch tells the sender its RELEASE was taken.
    this.ackMaybeLost = true
  }

  /**
   * About once a second: give the peer's credit back beyond a first window once the
   * application sent nothing for `creditReleaseIdleMs` (all beyond what was sent once our FIN
   * is out), or send again a RELEASE no ACK of its epoch answered within two round trips.
   */
  tickCredit(now: number): void {
    if (this.done || !this.peerSeenValue) return
    const pending = this.pendingRelease
    if (pending !== undefined) {
      if (now - pending.sentMs >= Math.max(RELEASE_RESEND_MIN_MS, 2 * this.opts.trunk.srttMs())) {
        pending.sentMs = now
        this.opts.trunk.sendControl(this, pending.frame)
      }
      return
    }
    if (this.opts.creditReleaseIdleMs <= 0 || this.sendEpoch >= 0xffff_ffff) return
    const sent = this.send.sentOffset
    if (this.send.appendedBytes > sent || this.send.hasSendable(Infinity)) return
    const finOut = this.send.ended
    if (!finOut && now - this.lastAppDataMs < this.opts.creditReleaseIdleMs) return
    const keep = finOut ? sent : sent + this.opts.peerWindowBytes
    // Worth a frame only when it gives back at least a first window.
    if (this.peerLimit - keep < this.opts.peerWindowBytes) return
    this.sendEpoch++
    this.released += this.peerLimit - keep
    this.peerLimit = keep
    const frame: ReleaseFrame = {
      type: 'release',
      flowId: this.id,
      epoch: this.sendEpoch,
      limit: keep
    }
    this.pendingRelease = { frame, sentMs: now }
    this.opts.trunk.sendControl(this, frame)
  }

  /** The peer broke the protocol on this flow: log one line, count it, reset the flow. */
  private protocolError(err: ProtocolError): void {
    this.log.warn(`flow reset: ${err.message}`, { code: err.code })
    this.opts.trunk.countError(err.code)
    this.abort(err.closeReason, err.message)
  }

  /** ACK for our stream. */
  onAck(frame: AckFrame): void {
    if (this.done) return
    this.peerSeenValue = true
    if (frame.epoch > this.sendEpoch) {
      this.protocolError(
        new ProtocolError(
          PepErrorCodes.FLOW_STATE,
          `ACK of credit epoch ${frame.epoch}, beyond our ${this.sendEpoch}`,
          ResetReason.PROTOCOL_ERROR
        )
      )
      return
    }
    // A limit counts only in our current epoch: one granted before the peer took our RELEASE
    // is credit we gave back.
    if (frame.epoch === this.sendEpoch) {
      this.pendingRelease = undefined
      if (frame.limit > this.peerLimit) this.peerLimit = frame.limit
    }
    const freed = this.send.onAck(frame.received, frame.finReceived)
    if (freed > 0) this.opts.budget.release(freed)
    this.noteCreditStall()
    this.updateAppPause()
    if (this.send.hasSendable(this.peerLimit)) this.opts.trunk.markReady(this)
    this.maybeClose()
  }

  /** RESET from the peer. */
  onReset(frame: ResetFrame): void {
    if (this.done) return
    // The message is the peer's own text: escaped before it can reach a log line.
    const why = `peer reset: ${resetReasonName(frame.reason)}${frame.message ? ` (${escapePeerText(frame.message)})` : ''}`
    this.finish('reset', why)
  }

  // ---- sending --------------------------------------------------------------------------------

  /** Milliseconds since a byte last moved either way. */
  idleMs(now: number): number {
    return now - this.lastActivity
  }

  /** Bytes of our stream sent at least once. */
  get sentBytes(): number {
    return this.send.sentOffset
  }

  /** True when `nextData` would return a frame. A pure query: it changes nothing. */
  hasSendable(): boolean {
    if (this.done || this.stateValue === 'connecting') return false
    return this.send.hasSendable(this.peerLimit)
  }

  /**
   * The next DATA to put on `subflow`. Frame size ramps like TLS dynamic record sizing: the
   * first RAMP_BYTES of a burst (a flow's start, or after RAMP_IDLE_MS without sending) go in
   * frames of at most SMALL_FRAME_BYTES, so the first bytes arrive (and are decrypted) early and
   * a response spreads over several subflows; bulk data then goes in full frames, which cost
   * less CPU per byte.
   */
  nextData(subflow: SubflowId): DataToSend | undefined {
    if (this.done) return undefined
    const now = this.opts.trunk.now()
    if (now - this.lastSendMs > RAMP_IDLE_MS) this.burstStart = this.send.sentOffset
    this.lastSendMs = now
    const cap =
      this.send.sentOffset - this.burstStart < RAMP_BYTES
        ? Math.min(SMALL_FRAME_BYTES, this.opts.maxPayloadBytes)
        : this.opts.maxPayloadBytes
    const d = this.send.next(this.peerLimit, subflow, cap, now)
    if (d?.resend) this.resent += d.payload.length
    this.noteCreditStall()
    if (d !== undefined && this.appPaused) this.updateAppPause()
    return d
  }

  /**
   * The frame at this flow's in-order point when it waits for the peer: the subflow that
   * carried it and how long ago (ms). Undefined when nothing waits or it was reinjected already.
   */
  stalledHead(): { readonly subflow: SubflowId; readonly waitedMs: number } | undefined {
    if (this.done) return undefined
    const h = this.send.stalledHead()
    return h === undefined
      ? undefined
      : { subflow: h.subflow, waitedMs: this.opts.trunk.now() - h.sentAt }
  }

  /** Send the stalled head frame once more, on subflow `to` (head-of-line reinjection). */
  reinjectHead(to: SubflowId): DataToSend | undefined {
    if (this.done) return undefined
    const d = this.send.reinjectHead(to, this.opts.trunk.now(), this.opts.maxPayloadBytes)
    if (d !== undefined) this.reinjected += d.payload.length
    return d
  }

  /** `subflow` died: what it carried and nobody acknowledged goes out again. */
  onSubflowLost(subflow: SubflowId): void {
    if (this.done) return
    // Credit we granted may have been in the dead socket: a sender that used up its credit
    // waits for an ACK and never probes, so without a fresh one the flow would stall for good.
    this.ackMaybeLost = true
    const announced = this.announcedOn.delete(subflow)
    if (!this.peerSeenValue && announced && this.announcedOn.size === 0) {
      // Every OPEN may be lost with the subflows that carried it: the trunk announces the flow
      // again on the next subflows, and everything is re-sent behind it.
      this.send.resendAll()
    } else {
      this.send.onSubflowLost(subflow)
    }
    this.noteCreditStall()
    if (this.send.hasSendable(this.peerLimit)) this.opts.trunk.markReady(this)
  }

  /** Send an ACK if the peer has something new to learn. Called after each batch of frames. */
  flushAck(): void {
    if (this.done) return
    const received = this.recv.received
    const fin = this.recv.finReceived
    const window = this.window.bytes
    if (
      !this.ackedOnce ||
      this.ackMaybeLost ||
      received > this.lastAckReceived ||
      fin !== this.lastAckFin ||
      this.recvLimit - this.lastAckLimit >= window / 8
    ) {
      this.ackedOnce = true
      this.ackMaybeLost = false
      this.lastAckReceived = received
      this.lastAckFin = fin
      this.lastAckLimit = this.recvLimit
      this.opts.trunk.sendControl(this, {
        type: 'ack',
        flowId: this.id,
        received,
        limit: this.recvLimit,
        finReceived: fin,
        epoch: this.recvEpoch
      })
    }
    this.maybeClose()
  }

  /** The global budget freed bytes: grant credit or read from the application again. */
  onBudgetFreed(): void {
    if (this.done) return
    this.grantCredit()
    this.updateAppPause()
    this.flushAck()
  }

  /** Abort: RESET to the peer, RST to the application. */
  abort(reason: ResetReasonCode, message: string): void {
    if (this.done) return
    this.opts.trunk.sendControl(this, { type: 'reset', flowId: this.id, reason, message })
    this.finish('reset', `${resetReasonName(reason)}: ${message}`)
  }

  /** Counters. */
  stats(): FlowStats {
    return {
      flowId: this.id,
      state: this.stateValue,
      bytesFromApp: this.send.appendedBytes,
      bytesToApp: this.recv.delivered,
      resentBytes: this.resent,
      reinjectedBytes: this.reinjected,
      duplicateBytes: this.duplicates,
      reorderBytes: this.recv.heldBytes,
      sendBufferedBytes: this.send.bufferedBytes,
      windowBytes: this.window.bytes,
      creditStalls: this.stalls,
      releasedBytes: this.released,
      ageMs: this.opts.trunk.now() - this.startedMs
    }
  }

  /** Why the flow ended ('' while it runs). */
  get endReason(): string {
    return this.finishReason
  }

  // ---- internals ------------------------------------------------------------------------------

  private transition(next: FlowState, why: string): void {
    if (!TRANSITIONS[this.stateValue].includes(next)) {
      throw new ProtocolError(
        PepErrorCodes.FLOW_STATE,
        `flow ${this.id}: no transition ${this.stateValue} -> ${next} (${why})`,
        ResetReason.INTERNAL,
        false
      )
    }
    if (this.log.isDebugEnabled()) this.log.debug(`${this.stateValue} -> ${next}: ${why}`)
    this.stateValue = next
  }

  /** Hand in-order bytes to the application while it takes them; end it after the FIN. */
  private deliver(): void {
    const app = this.app
    if (app === undefined) return
    let delivered = 0
    while (this.appWritable) {
      const chunk = this.recv.shift()
      if (chunk === undefined) break
      delivered += chunk.length
      this.appWritable = app.write(chunk)
    }
    // Delivered bytes leave the credit reservation (limit - delivered) and the budget with it.
    if (delivered > 0) this.opts.budget.release(delivered)
    this.grantCredit()
    if (this.recv.finDelivered && !this.appEnded) {
      this.appEnded = true
      app.end()
      this.transition(
        this.stateValue === 'local-fin' ? 'both-fin' : 'remote-fin',
        'peer FIN delivered'
      )
    }
  }

  /** Raise the peer's limit to delivered + window, as far as the global budget allows. */
  private grantCredit(): void {
    const delivered = this.recv.delivered
    const t = this.opts.trunk
    const before = this.window.bytes
    // The window an earlier flow grew to, once this one has shown it is a bulk transfer (half
    // its first credit arrived: delivered, or held behind a lost segment, which on a lossy
    // path holds the in-order point for a round trip), and never into the last quarter of the
    // global budget, which stays for new flows' first credit: granted to every flow at once,
    // 32 MiB windows learned on a fast path reserved the budget and refused new flows at
    // max_buffered_bytes.
    const learned =
      this.recvActive && delivered + this.recv.heldBytes >= this.opts.localWindowBytes / 2
        ? Math.min(
            t.grownWindowBytes(),
            Math.max(0, this.recvLimit - delivered) +
              this.opts.budget.freeBeyond(BUDGET_KEPT_FOR_NEW_FLOWS)
          )
        : 0
    const hint = Math.max(this.recvActive ? t.windowHintBytes() : 0, learned)
    const window = this.window.update(
      delivered,
      this.recv.heldBytes,
      this.appWritable,
      t.now(),
      t.srttMs(),
      hint
    )
    if (window > before && window > hint) t.noteWindowGrown(window)
    // No credit beyond the peer's FIN: nothing can come there.
    const fin = this.recv.fin
    const target = fin === undefined ? delivered + window : Math.min(delivered + window, fin)
    if (target <= this.recvLimit) return
    // Credit back up to the first window comes from the whole budget; beyond it (the hint, a
    // remembered or doubled window) never from its last quarter, which stays for new flows'
    // first credit: on a warm long trunk every flow's window starts at twice the BDP, and a few
    // dozen idle flows would otherwise hold the budget and keep new flows out.
    const want = target - this.recvLimit
    const toFirst = Math.min(
      want,
      Math.max(0, delivered + this.opts.localWindowBytes - this.recvLimit)
    )
    let granted = this.opts.budget.reserve(toFirst)
    if (granted === toFirst && want > toFirst) {
      const budget = this.opts.budget
      granted += budget.reserve(
        Math.min(want - toFirst, budget.freeBeyond(BUDGET_KEPT_FOR_NEW_FLOWS))
      )
    }
    this.recvLimit += granted
    if (this.recvLimit < target) this.opts.trunk.waitForBudget(this)
  }

  /**
   * Count a credit stall when the flow has bytes it cannot send for lack of credit, once per
   * stall (not once per look): called where credit or unsent bytes change.
   */
  private noteCreditStall(): void {
    const blocked =
      !this.send.hasSendable(this.peerLimit) && this.send.sentOffset < this.send.appendedBytes
    if (blocked && !this.stalled) this.stalls++
    this.stalled = blocked
  }

  /** Pause the application when its stream holds too much; resume when it drained. */
  private updateAppPause(): void {
    const app = this.app
    if (app === undefined) return
    const unsent = this.send.appendedBytes - this.send.sentOffset
    const cap = this.opts.maxWindowBytes + this.opts.sendBufferBytes
    const budget = this.opts.budget
    const budgetShort =
      budget.free === 0 ||
      (unsent >= UNSENT_BYTES_FROM_WHOLE_BUDGET &&
        budget.freeBeyond(BUDGET_KEPT_FOR_NEW_FLOWS) === 0)
    const full =
      unsent >= this.opts.sendBufferBytes || this.send.bufferedBytes >= cap || budgetShort
    if (full && !this.appPaused) {
      this.appPaused = true
      app.pause()
      if (budgetShort) this.opts.trunk.waitForBudget(this)
    } else if (!full && this.appPaused && unsent < this.opts.sendBufferBytes / 2) {
      this.appPaused = false
      app.resume()
    } else if (full && budgetShort) {
      this.opts.trunk.waitForBudget(this)
    }
  }

  private maybeClose(): void {
    if (this.stateValue === 'both-fin' && this.send.finished && this.appEnded && this.lastAckFin) {
      this.finish('closed', 'both streams ended')
    }
  }

  private finish(state: 'closed' | 'reset', why: string): void {
    if (this.done) return
    this.transition(state, why)
    this.finishReason = why
    // The reorder buffer's bytes lie inside the credit reservation (limit - delivered).
    const reserved = Math.max(0, this.recvLimit - this.recv.delivered)
    this.recv.clear()
    this.opts.budget.release(this.send.clear() + reserved)
    this.opts.trunk.onFinished(this)
    // A reset flow aborts its application socket (RST): the application must not take a
    // truncated stream for a whole one. A closed flow's socket finishes its own graceful close.
    if (state === 'reset') this.app?.reset()
  }
}
