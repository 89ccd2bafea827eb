/**
 * The I/O side of the trunk's rate controller (core/rate-controller.ts): every
 * RATE_SAMPLE_MS it reads each subflow's TCP_INFO, hands the figures to the controller, and
 * applies the decision with SO_MAX_PACING_RATE on each subflow socket. Once the trunk's min RTT
 * says it is a long path it hands each subflow once to `onLongPath` (trunk.congestion = auto
 * then moves it to tandem). It is also the trunk's `SendGate`: the sender asks it before each
 * frame whether the in-flight cap has room.
 */
import type { Socket } from 'node:net'
import { LONG_PATH_RTT_MS } from '../common/congestion.js'
import { RateController, type RateState, type SubflowRateSample } from '../core/rate-controller.js'
import type { SendGate } from '../core/sender.js'
import type { Membership } from './membership.js'
import type { Subflow } from './subflow.js'
import { Ticker } from './ticker.js'

/**
 * How often the subflows are sampled, in ms: several samples per round trip of a long link
 * (the kernel's delivery rate is itself a per-RTT figure), and a few getsockopt calls per
 * subflow per second are nothing against the data path.
 */
export const RATE_SAMPLE_MS = 100

/** After a refused frame, the sender tries again this much later, in ms. */
const GATE_RETRY_MS = 5

/**
 * A new pacing rate is applied only when it differs from the one set by more than this
 * fraction: the estimate moves a little at every sample, and the socket need not follow each.
 */
const PACING_CHANGE_FRACTION = 0.02

/** One subflow socket's figures (TCP_INFO), as the loop needs them. */
export interface TcpRateFigures {
  /** tcpi_delivery_rate, bytes per second. */
  readonly deliveryRateBytesPerSec: number
  /** tcpi_min_rtt, ms. */
  readonly minRttMs: number
  /** tcpi_rtt, ms. */
  readonly srttMs: number
  /** Bytes in the network: sent, not acknowledged, not SACKed, not lost (plus retransmissions). */
  readonly unackedBytes: number
  /** Bytes delivered over the connection's life (tcpi_delivered × MSS; SACKed ones included). */
  readonly deliveredBytes: number
  /** tcpi_total_retrans, segments. */
  readonly retransmits: number
  /** Bytes written and not yet sent by the kernel (tcpi_notsent_bytes). */
  readonly notsentBytes: number
  /** tcpi_snd_cwnd, segments. */
  readonly cwndSegments: number
}

/** What the loop does to sockets; the runtime passes the native one, tests a fake. */
export interface RateProbe {
  /** TCP_INFO figures of a subflow socket. Throws when the socket is closing. */
  read(socket: Socket): TcpRateFigures
  /** SO_MAX_PACING_RATE, bytes per second; 0 lifts the cap. Throws when the socket is closing. */
  setPacing(socket: Socket, bytesPerSec: number): void
}

/** A trunk's rate loop over `members`, or undefined when it has no probe (tests without the addon). */
export function rateLoopFor(
  members: Membership,
  probe: RateProbe | undefined,
  now: () => number,
  linkRateBytesPerSec: number,
  onLongPath?: (socket: Socket) => void
): RateLoop | undefined {
  return probe === undefined
    ? undefined
    : new RateLoop({ members, probe, now, linkRateBytesPerSec, onLongPath })
}

/** The sampling loop of one trunk. */
export class RateLoop implements SendGate {
  readonly controller: RateController
  private readonly members: Membership
  private readonly probe: RateProbe
  private readonly now: () => number
  private readonly applied = new WeakMap<Subflow, number>()
  private readonly lastReceived = new WeakMap<Subflow, number>()
  private readonly lastDelivered = new WeakMap<Subflow, number>()
  private sentSinceSample = 0
  /** The in-flight cap refused a frame since the last sample. */
  private heldBack = false
  private readonly onLongPath: ((socket: Socket) => void) | undefined
  /** Subflows handed to `onLongPath` already. */
  private readonly handedOver = new WeakSet<Subflow>()
  private readonly ticker = new Ticker(RATE_SAMPLE_MS, () => {
    this.sample()
  })

  constructor(opts: {
    members: Membership
    probe: RateProbe
    now: () => number
    linkRateBytesPerSec: number
    /** Called once per subflow when the trunk's min RTT reaches LONG_PATH_RTT_MS. */
    onLongPath?: ((socket: Socket) => void) | undefined
  }) {
    this.members = opts.members
    this.probe = opts.probe
    this.now = opts.now
    this.onLongPath = opts.onLongPath
    this.controller = new RateController({ linkRateBytesPerSec: opts.linkRateBytesPerSec })
  }

  /** Sample every RATE_SAMPLE_MS from now on. */
  start(): void {
    this.ticker.start()
  }

  /** Stop sampling. */
  close(): void {
    this.ticker.stop()
  }

  /** One round: read every subflow, decide, set each socket's pacing. Returns the decision. */
  sample(): RateState {
    const now = this.now()
    const samples: SubflowRateSample[] = []
    const live: Subflow[] = []
    for (const s of this.members.all) {
      if (s.isClosed) continue
      let f: TcpRateFigures
      try {
        f = this.probe.read(s.rawSocket)
      } catch {
        continue // closing: its 'close' event follows
      }
      const before = this.lastReceived.get(s) ?? s.bytesReceived
      this.lastReceived.set(s, s.bytesReceived)
      // A subflow's first sample counts nothing: what it delivered before is history.
      const deliveredBefore = this.lastDelivered.get(s) ?? f.deliveredBytes
      this.lastDelivered.set(s, f.deliveredBytes)
      live.push(s)
      s.noteTcp(f.srttMs, f.cwndSegments)
      samples.push({
        id: s.id,
        pathId: s.pathId,
        deliveryRateBytesPerSec: f.deliveryRateBytesPerSec,
        deliveredBytes: Math.max(0, f.deliveredBytes - deliveredBefore),
        minRttMs: f.minRttMs,
        srttMs: f.srttMs,
        inFlightBytes: f.unackedBytes,
        retransmits: f.retransmits,
        receivedBytes: s.bytesReceived - before,
        unsentBytes: f.notsentBytes + s.queuedBytes,
        cwndSegments: f.cwndSegments
      })
    }
    const state = this.controller.onSample(now, samples, this.heldBack)
    this.sentSinceSample = 0
    this.heldBack = false
    const isLongPath = this.onLongPath !== undefined && state.minRttMs >= LONG_PATH_RTT_MS
    for (const s of live) {
      if (isLongPath && !this.handedOver.has(s)) {
        this.handedOver.add(s)
        this.onLongPath?.(s.rawSocket)
      }
      const rate = state.subflows.find((p) => p.id === s.id)?.pacingBytesPerSec ?? 0
      const prev = this.applied.get(s)
      if (prev !== undefined && !changed(prev, rate)) continue
      try {
        this.probe.setPacing(s.rawSocket, rate)
        this.applied.set(s, rate)
      } catch {
        // closing: nothing to pace
      }
    }
    return state
  }

  // ---- SendGate ----------------------------------------------------------------------------

  /** @inheritdoc */
  admits(_bytes: number, now: number): boolean {
    const admitted = this.controller.admits(now, this.sentSinceSample)
    if (!admitted) this.heldBack = true
    return admitted
  }

  /** @inheritdoc */
  onSent(bytes: number): void {
    this.sentSinceSample += bytes
  }

  /** @inheritdoc */
  retryInMs(): number {
    return GATE_RETRY_MS
  }
}

function changed(prev: number, next: number): boolean {
  if (prev === 0 || next === 0) return prev !== next
  return Math.abs(next - prev) > prev * PACING_CHANGE_FRACTION
}
