/**
 * Head-of-line reinjection (MPTCP's opportunistic retransmission): a frame that holds a flow's
 * in-order point is sent once more on another subflow when it has waited clearly longer than a
 * round trip of the subflow that carries it, which means that subflow's TCP is recovering a lost
 * segment (or worse, waiting for a retransmission timeout). Every frame behind it, already at
 * the peer on other subflows, waits in the peer's reorder buffer until it comes; the copy on a
 * subflow that is not in recovery usually arrives first. The peer drops whichever copy arrives
 * second (counted as duplicate bytes there). At most one copy per frame.
 */
import type { Counters } from '../common/counters.js'
import type { Flow } from '../core/flow.js'
import { cwndCollapsed } from '../core/rate-controller.js'
import type { Subflow } from './subflow.js'
import { Ticker } from './ticker.js'

/** How often the flows are looked at, in ms. */
export const REINJECT_CHECK_MS = 25

/**
 * A head frame is reinjected after REINJECT_RTT_FACTOR round trips of its subflow plus
 * REINJECT_SLACK_MS: an ACK normally comes back within one round trip (ACKs are sent at once,
 * on the least queued subflow); a fast retransmission takes a second one.
 */
export const REINJECT_RTT_FACTOR = 1.5
export const REINJECT_SLACK_MS = 20

/**
 * ... and never before this many ms past one round trip (Linux's TCP_RTO_MIN): the carrier's
 * own recovery of a lost segment, a fast retransmission or the timeout of a lost one, takes
 * about that long, and on a short path a copy sent sooner only races it. At 50 ms, 1 % loss
 * each way, copies after 1.5 round trips were about 1.2 % of the bytes sent, every one of them
 * a duplicate at the peer, and the trunk delivered 90.2 and 90.7 Mbit/s against 93.1 and 93.9
 * with copies after three round trips (alternating builds).
 */
export const REINJECT_MIN_EXTRA_MS = 200

/** Subflows whose queue holds more than this many times the queue limit take no reinjection. */
const TARGET_QUEUE_FACTOR = 1

/** What the reinjector reads and writes. */
export interface ReinjectorOptions {
  /** The live subflows. */
  readonly subflows: () => readonly Subflow[]
  /** The live flows. */
  readonly flows: () => Iterable<Flow>
  /** A subflow's queue limit, in bytes (`limits.subflow_queue_bytes`). */
  readonly queueLimitBytes: number
  readonly counters: Counters
}

/**
 * How long a head frame may wait on its carrier before it is reinjected, in ms: by default
 * REINJECT_RTT_FACTOR round trips of the carrier's PING (which already include the queues and
 * the carrier's own loss recoveries, so a normal fast retransmission is not second-guessed),
 * and at least REINJECT_MIN_EXTRA_MS more than one.
 * When the carrier's cwnd collapsed (`collapsedTcpSrttMs` > 0: PROBE_RTT, an RTO), one round
 * trip of its TCP: the frame was due by then, and the carrier will send next to nothing, its
 * retransmissions included, for about another round trip.
 */
export function reinjectAfterMs(
  carrierSrttMs: number,
  fastestSrttMs: number,
  collapsedTcpSrttMs = 0
): number {
  if (collapsedTcpSrttMs > 0) return collapsedTcpSrttMs + REINJECT_SLACK_MS
  const rtt = carrierSrttMs > 0 ? carrierSrttMs : fastestSrttMs
  return Math.max(REINJECT_RTT_FACTOR * rtt, rtt + REINJECT_MIN_EXTRA_MS) + REINJECT_SLACK_MS
}

/**
 * The subflow to reinject on: not the carrier, not one whose cwnd collapsed, with room in its
 * queue, the lowest RTT first
 * (the copy should arrive soonest), then the emptiest queue.
 */
export function reinjectTarget(
  carrier: number,
  subflows: readonly Subflow[],
  queueLimitBytes: number
): Subflow | undefined {
  let best: Subflow | undefined
  for (const s of subflows) {
    if (s.id === carrier || s.isClosed || cwndCollapsed(s.cwndSegments)) continue
    if (s.queuedBytes > TARGET_QUEUE_FACTOR * queueLimitBytes) continue
    if (
      best === undefined ||
      s.srttMs < best.srttMs ||
      (s.srttMs === best.srttMs && s.queuedBytes < best.queuedBytes)
    ) {
      best = s
    }
  }
  return best
}

/** Looks at every flow every REINJECT_CHECK_MS and reinjects stalled head frames. */
export class Reinjector {
  private readonly ticker: Ticker

  constructor(private readonly opts: ReinjectorOptions) {
    this.ticker = new Ticker(REINJECT_CHECK_MS, () => {
      this.check()
    }).start()
  }

  /** One look at every flow; returns the frames reinjected. */
  check(): number {
    const subs = this.opts.subflows()
    if (subs.length < 2) return 0
    let fastest = 0
    for (const s of subs)
      if (s.srttMs > 0 && (fastest === 0 || s.srttMs < fastest)) fastest = s.srttMs
    let n = 0
    for (const flow of this.opts.flows()) {
      const head = flow.stalledHead()
      if (head === undefined) continue
      const carrier = subs.find((s) => s.id === head.subflow)
      const collapsedRtt =
        carrier !== undefined && cwndCollapsed(carrier.cwndSegments) ? carrier.tcpSrttMs : 0
      if (head.waitedMs < reinjectAfterMs(carrier?.srttMs ?? 0, fastest, collapsedRtt)) continue
      const to = reinjectTarget(head.subflow, subs, this.opts.queueLimitBytes)
      if (to === undefined) continue
      const d = flow.reinjectHead(to.id)
      if (d === undefined) continue
      to.writeData(flow.id, d)
      flow.subflowsUsed.add(to.index)
      this.opts.counters.inc('frames_reinjected')
      this.opts.counters.inc('bytes_reinjected', d.payload.length)
      n++
    }
    return n
  }

  /** Stop looking. */
  close(): void {
    this.ticker.stop()
  }
}
