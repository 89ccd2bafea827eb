/**
 * One sending-rate decision per trunk. Pure: the trunk samples its subflows (TCP_INFO) and
 * hands the figures in with the time; this file keeps no clock and makes no syscall.
 *
 * Why: a trunk's N subflows share one bottleneck, but each runs its own congestion control.
 * Eight BBR senders that know nothing of one another each probe for the whole pipe (STARTUP at
 * a pacing gain of 2.89), overfill the bottleneck queue and lose to tail drops far more than
 * the link's own loss; cubic senders halve on every random loss. One estimate of the path,
 * shared by all subflows, caps what they send together.
 *
 * The model is BBR's (Cardwell et al., "BBR: Congestion-Based Congestion Control", ACM Queue
 * 2016), applied to the sum of the subflows instead of one connection:
 *
 *   BtlBw  = max over the last RATE_WINDOW_MS of  the path's delivery rate       (max filter)
 *            where the delivery rate is the bytes the subflows delivered (tcpi_delivered,
 *            SACKed segments included, as BBR counts them) over the last
 *            max(RTprop, MIN_BTLBW_INTERVAL_MS), summed over the path. Not the sum of each
 *            subflow's tcpi_delivery_rate: each is that subflow's best recent burst, measured
 *            over its own interval, and their sum overstated a 100 Mbit/s link as 125.
 *   RTprop = min over the last MIN_RTT_WINDOW_MS of  min_i min_rtt_i           (min filter)
 *   (in STARTUP, BtlBw also counts the best delivery rate over MIN_RATE_INTERVAL_MS alone: a
 *   reply shorter than a long path's round trip shows the bottleneck's rate in its ACKs, and
 *   over the RTT only itself spread over the RTT; PathEstimate.burst)
 *   rate   = link_rate × 0.95       when the operator set it (it is known, not guessed; the
 *                                   share leaves room for the headers, LINK_PAYLOAD_SHARE),
 *            max(BtlBw * STARTUP_INFLIGHT_GAIN, first-flight pace)   while a path is in
 *                                   STARTUP (below), the first-flight pace starting at
 *                                   floor / (RTprop * FIRST_FLIGHT_RTT_SHARE); none before the
 *                                   path's RTT is known,
 *            BtlBw * gain           once its pipe is full, the gain cycling like BBR's
 *                                   PROBE_BW through GAIN_CYCLE, one RTprop per phase: 1.25
 *                                   lets the estimate grow (a sender paced at exactly its
 *                                   estimate never measures more), 0.75 drains the queue
 *                                   the probe built, then 1 for six rounds
 *   BDP    = rate_estimate * RTprop, with rate_estimate = link_rate or BtlBw (per path, summed)
 *   pacing_i      = rate / live subflows of the path              (see `split` for why even),
 *                   times PACING_HEADROOM on a learned path (the cap then holds the total)
 *   inflight cap  = BDP * (1 + INFLIGHT_MARGIN), or BDP * STARTUP_INFLIGHT_GAIN in STARTUP,
 *                   and never below a floor per live subflow (larger in STARTUP: the floor is
 *                   an idle trunk's first flight) nor below MIN_INFLIGHT_TIME_MS of the rate
 *
 * STARTUP (learned rate only): each subflow runs under its own congestion control while the
 * trunk's BtlBw still grows; the in-flight cap (two BDPs of what was learned so far) keeps
 * their overshoot within the bottleneck's queue when the pipe fills, and the trunk is paced at
 * the rate that cap allows (two BtlBw), so the cap's bytes leave spread over the round trip
 * instead of in bursts. A burst queues at the bottleneck for a moment and raises the RTT the
 * exit rule below reads: unpaced, subflows with no congestion control of their own (`tandem`)
 * ended STARTUP at about 22 Mbit/s on a 100 Mbit/s, 600 ms link. While the cap is the floor
 * (an idle or just-started trunk) the floor is a first flight, and a short reply leaves at once:
 * within FIRST_FLIGHT_RTT_SHARE of the round trip, until a burst built a queue at the
 * bottleneck. A path leaves STARTUP when, as in BBR, three rounds (of one min RTT each) in a row
 * raised BtlBw by less than FULL_PIPE_GROWTH, counting only rounds in which the trunk had a
 * backlog through a whole rate interval (bytes unsent in some subflow, or held back by the
 * in-flight cap, at every sample of it): a trunk that is idle, whose flows wait for credit, or
 * that sends short replies in bursts shorter than the interval, has not shown what the path
 * carries (PathEstimate.backlogThrough). It also leaves when the subflows' RTT stood
 * above STARTUP_EXIT_RTT_RATIO times the min RTT through a whole backlogged round (the queue is
 * building: HyStart's signal). Capping from the first byte instead, at PROBE_GAIN × BtlBw,
 * would grow the rate 1.25× per round trip: 25 round trips (15 s at 600 ms) to fill a
 * 100 Mbit/s pipe from a PING's delivery rate.
 *
 * Each path (a set of subflows over one physical route) has its own estimate; the trunk's
 * figures are the sums over its paths (RTprop: the smallest). `link_rate` is the rate of each
 * path's bottleneck.
 *
 * Warm trunk: the estimates are never cleared when flows end or the trunk goes idle. Samples
 * without a backlog through their interval count only when they beat the estimate (BBR's rule
 * for app-limited samples), and a filter always keeps its newest sample, so an idle trunk keeps
 * its BtlBw however long it idles. A new flow therefore starts at the learned rate, and its
 * credit is sized from the learned BDP.
 *
 * What it does not do (yet): BBR's periodic drain of the queue (PROBE_RTT); the subflows' own
 * congestion control still runs inside each subflow under the cap (`tandem` on a long path
 * leaves the rate to this controller).
 */

/** Window of the bottleneck-rate max filter, in ms: about ten round trips of a GEO hop. */
export const RATE_WINDOW_MS = 10_000

/** Window of the min-RTT filter, in ms (BBR's 10 s). */
export const MIN_RTT_WINDOW_MS = 10_000

/** Pacing gains over BtlBw, one RTprop each, once a learned path's pipe is full (BBR's PROBE_BW). */
export const GAIN_CYCLE: readonly number[] = [1.25, 0.75, 1, 1, 1, 1, 1, 1]

/** Shortest interval a delivery rate is measured over, in ms: ACKs come in clumps. */
export const MIN_RATE_INTERVAL_MS = 200

/**
 * Shortest interval a sample of the bottleneck estimate (BtlBw) spans, in ms; a longer RTprop
 * is used where the path has one (600 ms: unchanged). The backlog a sample needs and the
 * receive rate are measured over the same interval. The max filter takes the luckiest
 * sample, and on a 200 ms link samples of one round trip overstated it: in five snapshots
 * 20 s into a flow at 200 ms, 1 % loss each way, 100 Mbit/s (`lab/bench/snapshot.ts`), samples
 * of 200 ms gave estimates of 112.9, 118.5, 100.5, 144.5 and 98.7 Mbit/s, and the in-flight
 * cap built on them held the subflows' TCP RTT at up to 314–334 ms, once 397–402 ms; samples
 * of 400 ms gave 98.2, 98.2, 97.2 and 102.7 Mbit/s and 249–262 ms. Bench goodput did not move
 * (alternated twice, `bench --rtt 50,200 --loss 1,2 --systems tandem-8-unset`: 92.5 / 93.0 /
 * 90.7 / 90.7 and 91.6 / 92.6 / 92.0 / 89.9 at 50/1, 50/2, 200/1, 200/2, against 91.6 / 91.5
 * / 92.6 / 90.8 and 92.7 / 93.5 / 91.7 / 92.0 with 200 ms samples), nor did short replies.
 */
export const MIN_BTLBW_INTERVAL_MS = 400

/**
 * Shortest interval the rate told to the peer for credit (`RateState.sendRateBytesPerSec`) is
 * measured over, in ms: one sample interval of the rate loop (100 ms) at least this long.
 */
export const BURST_INTERVAL_MS = 50

/**
 * Least trunk rate ever set, in bytes per second (2 Mbit/s): the subflows also carry credit
 * updates and PINGs, which must never wait behind a pace learned from a trickle.
 */
export const MIN_TARGET_BYTES_PER_SEC = 250_000

/**
 * Unsent bytes on a path above which a round counts as backlogged, in bytes: one full frame.
 * PINGs, PONGs and ACK frames sitting in a socket for a moment are not a backlog.
 */
export const BACKLOG_BYTES = 64 * 1024

/**
 * Share of a configured link rate the subflows are paced to, as a fraction. `link_rate` is what
 * the link carries on the wire; pacing counts TCP payload, and every 1448-byte segment costs 52
 * bytes of IP and TCP headers (with timestamps) besides, 3.5 %, so pacing at the link rate itself
 * kept a standing queue at the bottleneck (a 600 ms path measured 1.3 s). The rest is margin
 * for the link layer's own framing.
 */
export const LINK_PAYLOAD_SHARE = 0.95

/** A round that raises BtlBw by less than this factor counts towards a full pipe (BBR's 1.25). */
export const FULL_PIPE_GROWTH = 1.25

/** Rounds in a row without FULL_PIPE_GROWTH after which the pipe is full (BBR's 3). */
export const FULL_PIPE_ROUNDS = 3

/** In-flight allowed above one BDP, as a fraction: room for ACK aggregation and jitter. */
export const INFLIGHT_MARGIN = 0.25

/**
 * In-flight cap while a learned path starts up, in BDPs of the BtlBw learned so far. The
 * subflows are not paced then, and each one's own STARTUP (BBR's cwnd gain 2.89, or slow start)
 * overshot the whole trunk past the bottleneck's queue when the pipe filled: on a 600 ms, 1 %
 * link with a one-BDP queue, 4,083 packets were tail-dropped within two seconds (against 1,700
 * random drops over the 25 s transfer), and their recovery stalled the flow's in-order point.
 * Two BDPs still let the trunk's rate grow about 1.6x per round trip (the estimate lags about
 * one and a half round trips behind the sending rate), and bound the queue the trunk can build
 * to one BDP when the pipe fills.
 */
export const STARTUP_INFLIGHT_GAIN = 2

/**
 * Each subflow's pace, as a multiple of its even share of the path's rate. The in-flight cap,
 * not the pace, holds the trunk to its rate: a subflow whose own congestion control sends less
 * than its share (a BBR whose estimate fell after a loss burst climbs back 1.25x per eight
 * round trips, 5 s at 600 ms) left that share unused, the delivered rate fell below the pace,
 * and the learned rate followed it down (99 to 86 Mbit/s over 20 s on a 100 Mbit/s, 600 ms
 * link). With the headroom the others take up the slack, the delivered rate stays at the link's,
 * and the queue the cap allows (its margin, a quarter of the BDP) stays well inside 1.5 RTT.
 */
export const PACING_HEADROOM = 1.25

/**
 * A backlogged STARTUP round whose subflows' median smoothed RTT is this many times the path's
 * min RTT ends STARTUP at once (HyStart's delay signal): the queue is building, so the pipe is
 * full, and the pace that follows drains it before it overflows.
 */
export const STARTUP_EXIT_RTT_RATIO = 1.25

/**
 * ... and at least this many ms above it (HyStart++'s floor, RFC 9406's MIN_RTT_THRESH): on a
 * path of a few ms the ratio alone is a fraction of a millisecond, which timer and scheduling
 * jitter crosses without any queue. On a 2 ms path it held STARTUP's first-flight pace at
 * twice a short reply's delivery rate (25 Mbit/s on a 100 Mbit/s link): a 100 KB reply took
 * 63 ms.
 */
export const STARTUP_EXIT_MIN_QUEUE_MS = 4

/**
 * The in-flight cap is never below this many bytes per live subflow (the default largest frame
 * body): on a short path (a LAN, loopback) the BDP is a few kilobytes, and a cap below a frame
 * per subflow would let one frame out at a time, like BBR's floor of four packets of cwnd.
 */
export const MIN_INFLIGHT_PER_SUBFLOW_BYTES = 64 * 1024

/**
 * The in-flight cap is never below this much time at the path's estimated rate, in ms: the
 * proxy does not refill its subflows the moment an ACK frees room (a Node event-loop turn, a
 * garbage collection, the other box's turn to read), and on a path whose BDP is a few kilobytes
 * (a LAN, the bench's clean link) a cap of one BDP, or of one frame per subflow, left the pipe
 * empty between refills: eight 64 KiB floors held a clean veth link to 450-650 Mbit/s where a
 * 2 MiB cap gave 650-800 (the bench's ceiling, both run side by side). A path whose BDP is
 * larger than this (50 ms at 100 Mbit/s: 600 KB against 250 KB) is not affected, and the queue
 * it allows is at most this long.
 */
export const MIN_INFLIGHT_TIME_MS = 20

/**
 * The floor per live subflow while its path is in STARTUP (a learned rate, the pipe not yet
 * seen full). An idle trunk has learned only its RTT (from PINGs), so its cap is the floor, and
 * the floor is the trunk's first flight: with 64 KiB for each of 8 subflows a 1 MB reply needed
 * two round trips (0.98 s at 600 ms without loss, median of 5), with 256 KiB one (0.81 s; the
 * bench's short flows, run on both builds one after the other). Once the pipe is full the
 * 64 KiB floor applies again: at 50 ms eight 256 KiB floors are more than two BDPs, and they
 * kept that queue standing at the bottleneck.
 */
export const STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES = 256 * 1024

/**
 * STARTUP's first flight (a path whose cap is its floor: an idle trunk, or one that carried only
 * short replies) is paced so that the floor leaves within this share of the min RTT: not at
 * line rate, and not spread over the round trip. On `tandem` subflows the trunk's pace is the
 * only one (native/bpf/tandem_cc.bpf.c); unpaced, they fell back to slow start's pace of twice
 * their window per RTT, and a subflow that had only carried short replies kept a window of
 * about 100 segments: a 1 MB reply took 270 ms to leave a 600 ms, 100 Mbit/s link (`ss -tin` on
 * rx's subflows during lab/bench/short-trace.ts). A quarter lets eight 256 KiB floors out at
 * 112 Mbit/s at 600 ms. A learned STARTUP rate is never paced below it either: a reply's
 * delivery rate, measured over a round trip, is a fraction of the link's, and pacing at twice it
 * held the next reply back just the same. A burst that builds a queue at the bottleneck drops
 * that pace (PathEstimate.startupPace) to twice the learned rate: on a 10 Mbit/s,
 * 600 ms link the floor's pace overfilled the bottleneck's queue at every reply (1 MB in 2.12 s
 * against 1.44 before, short-trace alternating builds). Not the subflows' delivery rates: a
 * short reply's are those of an app-limited flight, far below a 100 Mbit/s link's.
 */
export const FIRST_FLIGHT_RTT_SHARE = 0.25

/**
 * A subflow whose congestion window is at most this many segments sends next to nothing: BBR
 * holds its cwnd at 4 in PROBE_RTT, for 200 ms and a round trip once its in-flight drained
 * (about a second at 600 ms), whenever its min RTT went 10 s without a lower sample, which on a
 * loaded trunk is every 10 s; an RTO drops any cwnd to 1. Its share of the pace goes to the
 * others meanwhile (`split`): paced at rate/N each, the other N-1 could not carry the rate, and
 * subflows that entered PROBE_RTT together (they were all last refreshed by one idle spell)
 * took the trunk from 97 Mbit/s to 30 for a second and a half on a 600 ms link.
 */
export const COLLAPSED_CWND_SEGMENTS = 4

/** True when a subflow's congestion window says it can send next to nothing (0: unknown). */
export function cwndCollapsed(cwndSegments: number | undefined): boolean {
  return cwndSegments !== undefined && cwndSegments > 0 && cwndSegments <= COLLAPSED_CWND_SEGMENTS
}

/**
 * Samples below this rate are ignored by the max filter, in bytes per second: an idle subflow
 * reports 0 or a trickle of PINGs, and recording them would only push real samples out.
 */
const IDLE_RATE_BYTES_PER_SEC = 1000

/** One subflow's figures at one sample round (from TCP_INFO and the subflow's own counters). */
export interface SubflowRateSample {
  /** The subflow's id in the trunk. */
  readonly id: number
  /** Path the subflow runs over. */
  readonly pathId: number
  /** Latest delivery rate estimate (tcpi_delivery_rate), bytes per second (status only). */
  readonly deliveryRateBytesPerSec: number
  /** Bytes delivered since the previous sample (tcpi_delivered delta, SACKed included). */
  readonly deliveredBytes: number
  /** Lowest RTT the kernel saw (tcpi_min_rtt), ms; 0 when unknown. */
  readonly minRttMs: number
  /** Smoothed RTT (tcpi_rtt), ms; 0 when unknown. */
  readonly srttMs: number
  /** Bytes sent and not acknowledged plus bytes queued and not sent, in bytes. */
  readonly inFlightBytes: number
  /** Segments retransmitted over the connection's life (tcpi_total_retrans). */
  readonly retransmits: number
  /** Bytes received from the peer since the previous sample, for the receive-side estimate. */
  readonly receivedBytes: number
  /** Bytes written to the subflow and not sent yet (user space and kernel), in bytes. */
  readonly unsentBytes: number
  /** Congestion window (tcpi_snd_cwnd), segments; undefined or 0 when unknown. */
  readonly cwndSegments?: number
}

/** Settings of a controller. */
export interface RateControllerOptions {
  /** Operator-set rate of each path's bottleneck, bytes per second; 0: learn it. */
  readonly linkRateBytesPerSec: number
}

/**
 * Where the trunk's rate comes from: the operator, the subflows once the pipe was seen full,
 * the subflows while still starting up (not paced yet), or nowhere yet.
 */
export type RateSource = 'configured' | 'learned' | 'startup' | 'none'

/** The controller's decision for one subflow. */
export interface SubflowPacing {
  readonly id: number
  /** SO_MAX_PACING_RATE to set, bytes per second; 0: do not pace (no estimate yet). */
  readonly pacingBytesPerSec: number
}

/** What the controller decided, and on what. */
export interface RateState {
  /** The trunk's sending rate (sum of the pacing rates), bytes per second; 0: no estimate. */
  readonly targetBytesPerSec: number
  /** The bottleneck estimate without probing headroom, bytes per second; 0: unknown. */
  readonly estimateBytesPerSec: number
  /** Sum of the subflows' latest tcpi_delivery_rate, bytes per second (for comparison). */
  readonly kernelDeliveryBytesPerSec: number
  /** Highest rate at which the peer delivered to us lately, bytes per second (receive side). */
  readonly receiveBytesPerSec: number
  /** The rate the peer says it can send to us at (its send rate, in its last PONG), bytes/s. */
  readonly peerSendBytesPerSec: number
  /**
   * The rate we tell the peer we can send at (our PONGs), bytes per second; 0: unknown. The
   * estimate, or the best rate a burst of ours was delivered at over one sample interval
   * (PathEstimate.sampleBurst) when that is higher; `link_rate` when set.
   */
  readonly sendRateBytesPerSec: number
  readonly source: RateSource
  /** Windowed minimum RTT, ms; 0: unknown. */
  readonly minRttMs: number
  /** Bandwidth-delay product of our sending, bytes: the estimate × min RTT. */
  readonly bdpBytes: number
  /** Bandwidth-delay product of what the peer sends us, bytes: the receive estimate × min RTT. */
  readonly receiveBdpBytes: number
  /** Most bytes the trunk should keep in flight, bytes; 0: no cap (no estimate yet). */
  readonly inflightCapBytes: number
  /** Bytes in flight at the last sample, summed over subflows. */
  readonly inFlightBytes: number
  /** Retransmitted segments over the subflows' lives, summed. */
  readonly retransmits: number
  /** Per-subflow pacing, in subflow id order. */
  readonly subflows: readonly SubflowPacing[]
}

interface Sample {
  readonly t: number
  readonly v: number
}

/**
 * A windowed extreme filter over (time, value) samples: a monotonic deque, so `best` is O(1)
 * and `add` amortised O(1). `better(a, b)` is true when a beats b (max: a >= b, min: a <= b).
 */
export class WindowedFilter {
  private readonly samples: Sample[] = []

  constructor(
    private readonly windowMs: number,
    private readonly better: (a: number, b: number) => boolean
  ) {}

  /** Record `v` at `t`. */
  add(t: number, v: number): void {
    while (this.samples.length > 0 && this.better(v, this.samples[this.samples.length - 1]!.v)) {
      this.samples.pop()
    }
    this.samples.push({ t, v })
    this.expire(t)
  }

  /**
   * The best sample newer than the window at `now`; the newest one when all are older (an idle
   * trunk keeps what it learned); undefined before any sample.
   */
  best(now: number): number | undefined {
    this.expire(now)
    return this.samples[0]?.v
  }

  private expire(now: number): void {
    // Keep at least one sample: a warm trunk that went quiet keeps its last estimate.
    while (this.samples.length > 1 && now - this.samples[0]!.t > this.windowMs) this.samples.shift()
  }
}

/**
 * A cumulative byte count sampled over time, read as a rate over a trailing interval. Keeps
 * only the samples the longest interval asked for needs, so one count can be read over several
 * intervals.
 */
export class IntervalRate {
  private readonly points: Sample[] = []
  private total = 0
  private longestMs = 0

  /** `bytes` more were counted by `t`. */
  add(t: number, bytes: number): void {
    this.total += bytes
    this.points.push({ t, v: this.total })
  }

  /**
   * Bytes per second over the last `intervalMs` at `now` (measured from the newest sample at
   * least that old), or undefined while the history is shorter than the interval.
   */
  rate(now: number, intervalMs: number): number | undefined {
    if (intervalMs > this.longestMs) this.longestMs = intervalMs
    // Drop points older than the one that spans the longest interval asked for.
    const points = this.points
    while (points.length > 1 && now - points[1]!.t >= this.longestMs) points.shift()
    let i = points.length - 1
    while (i >= 0 && now - points[i]!.t < intervalMs) i--
    const from = points[i]
    if (from === undefined || now === from.t) return undefined
    return ((this.total - from.v) * 1000) / (now - from.t)
  }
}

/** One path's filters and its STARTUP state. */
class PathEstimate {
  readonly delivered = new IntervalRate()
  readonly received = new IntervalRate()
  /** When the pipe was first seen full (the gain cycle's phase counts from here), ms. */
  fullPipeAtMs = 0
  readonly rate = new WindowedFilter(RATE_WINDOW_MS, (a, b) => a >= b)
  readonly receive = new WindowedFilter(RATE_WINDOW_MS, (a, b) => a >= b)
  /**
   * Best delivery rate over MIN_RATE_INTERVAL_MS alone, bytes per second: on a path whose RTT
   * is longer, a reply shorter than a round trip is delivered in a burst that the RTT-long
   * interval averages with the silence around it (1 MB replies at 600 ms taught BtlBw 16 Mbit/s
   * on a 100 Mbit/s link, and the next 10 MB reply's first flight was capped at 2.4 MB), while
   * the ACKs of the burst come at the bottleneck's rate. Used while the path is in STARTUP only
   * (its in-flight cap and pace); a full pipe is paced on BtlBw.
   */
  readonly burst = new WindowedFilter(RATE_WINDOW_MS, (a, b) => a >= b)
  /**
   * Best delivery rate over one sample interval (at least BURST_INTERVAL_MS), bytes per second:
   * what the peer's credit for our next long reply is sized by (a PONG's send rate), not our
   * pace. A 1 MB reply leaves in 85 ms at 100 Mbit/s; over MIN_RATE_INTERVAL_MS it showed
   * 45 Mbit/s, the peer granted the next 10 MB reply twice 45 Mbit/s × 600 ms, and that reply
   * waited for credit 9 to 19 times (2.7 to 3.6 s at 600 ms, 1 %, against about 2.1 s for the
   * 10 MB replies after it). Over one sample interval it is at least half the burst's rate.
   * Pacing keeps the longer interval (PathEstimate.burst): credit is only memory the peer may
   * fill, a pace is bytes on the bottleneck.
   */
  readonly sampleBurst = new WindowedFilter(RATE_WINDOW_MS, (a, b) => a >= b)
  /**
   * STARTUP's first-flight pace, bytes per second (0: not set yet). Starts at the floor's pace
   * (FIRST_FLIGHT_RTT_SHARE), falls to twice the learned rate at a sample of a burst
   * (BACKLOG_BYTES or more delivered) whose subflows' median smoothed RTT stood above
   * STARTUP_EXIT_RTT_RATIO times the min RTT (the burst built a queue: the link is slower than
   * that pace), and grows back by FULL_PIPE_GROWTH at each burst sample without, up to the
   * floor's pace again.
   */
  private firstFlightPace = 0

  /**
   * STARTUP's pace at this sample, bytes per second: the first-flight pace (above), updated by
   * this sample (`burst`: BACKLOG_BYTES or more delivered since the last; `queueing`: its median
   * smoothed RTT stood above the queue signal), never above the floor's pace `floorPace` nor
   * below STARTUP_INFLIGHT_GAIN times the learned rate.
   */
  startupPace(floorPace: number, learned: number, burst: boolean, queueing: boolean): number {
    let pace = this.firstFlightPace > 0 ? this.firstFlightPace : floorPace
    if (burst) pace = queueing ? 0 : pace * FULL_PIPE_GROWTH
    pace = Math.max(STARTUP_INFLIGHT_GAIN * learned, Math.min(floorPace, pace))
    this.firstFlightPace = pace
    return pace
  }
  readonly minRtt = new WindowedFilter(MIN_RTT_WINDOW_MS, (a, b) => a <= b)
  /** True once three backlogged rounds in a row did not raise BtlBw much. */
  fullPipe = false
  /** BtlBw at the last round that raised it by FULL_PIPE_GROWTH, bytes per second. */
  private fullBw = 0
  private fullBwRounds = 0
  private roundStartMs: number | undefined
  /** Some sample of this round had a backlog through its whole rate interval. */
  private roundBacklogged = false
  /**
   * Time of the first sample of the current run of backlogged samples, ms; undefined when the
   * last sample had no backlog.
   */
  private backlogSinceMs: number | undefined

  /**
   * Record whether the path had a backlog at this sample; true when it had one at every sample
   * over the last `intervalMs`, so that the delivery rate measured over that interval shows
   * what the path carries, not what it was given (BBR's app-limited samples). A short reply
   * leaves in a burst shorter than the interval: on a 50 ms path each 1 MB reply measured about
   * 40 Mbit/s over 200 ms, three such replies in a row ended STARTUP, and the trunk stayed
   * paced at 44 Mbit/s on a 100 Mbit/s link (a 1 MB reply then took 230 ms instead of 150).
   */
  backlogThrough(now: number, backlogged: boolean, intervalMs: number): boolean {
    if (!backlogged) {
      this.backlogSinceMs = undefined
      return false
    }
    this.backlogSinceMs ??= now
    return now - this.backlogSinceMs >= intervalMs
  }
  /** Every sample of this round saw the subflows' RTT above STARTUP_EXIT_RTT_RATIO. */
  private roundQueueing = true

  /**
   * Account one sample for full-pipe detection. `queueing`: the subflows' median smoothed RTT
   * is above STARTUP_EXIT_RTT_RATIO times the min RTT at this sample.
   */
  onRound(now: number, rttMs: number, backlogged: boolean, bw: number, queueing: boolean): void {
    if (this.fullPipe) return
    this.roundBacklogged ||= backlogged
    this.roundQueueing &&= queueing
    if (this.roundStartMs === undefined) this.roundStartMs = now
    if (rttMs <= 0 || now - this.roundStartMs < rttMs) return
    // A round ended. A queue that stood through the whole backlogged round means the pipe is
    // full (a burst's queue drains within the round, and must not end STARTUP at a low rate:
    // at 600 ms the gain cycle needs 5 s for each 1.25x it climbs back).
    if (this.roundBacklogged && this.roundQueueing && bw > 0) {
      this.fullPipe = true
      this.fullPipeAtMs = now
    } else if (bw >= this.fullBw * FULL_PIPE_GROWTH) {
      this.fullBw = bw
      this.fullBwRounds = 0
    } else if (this.roundBacklogged) {
      this.fullBwRounds++
      if (this.fullBwRounds >= FULL_PIPE_ROUNDS) {
        this.fullPipe = true
        this.fullPipeAtMs = now
      }
    }
    this.roundStartMs = now
    this.roundBacklogged = false
    this.roundQueueing = true
  }
}

/** One trunk's rate controller. */
export class RateController {
  private readonly opts: RateControllerOptions
  private readonly paths = new Map<number, PathEstimate>()
  private lastSampleMs: number | undefined
  private stateValue: RateState
  private peerSendRate = 0

  constructor(opts: RateControllerOptions) {
    this.opts = opts
    this.stateValue = {
      targetBytesPerSec: 0,
      estimateBytesPerSec: Math.floor(opts.linkRateBytesPerSec * LINK_PAYLOAD_SHARE),
      kernelDeliveryBytesPerSec: 0,
      receiveBytesPerSec: 0,
      peerSendBytesPerSec: 0,
      sendRateBytesPerSec: 0,
      source: opts.linkRateBytesPerSec > 0 ? 'configured' : 'none',
      minRttMs: 0,
      bdpBytes: 0,
      receiveBdpBytes: 0,
      inflightCapBytes: 0,
      inFlightBytes: 0,
      retransmits: 0,
      subflows: []
    }
  }

  /** The last decision. */
  get state(): RateState {
    return this.stateValue
  }

  /**
   * Bytes a flow's credit should cover, or 0 while unknown: twice the larger BDP. Credit is
   * granted by the receiver, whose own subflows may carry little (an upload): it judges by the
   * rate it receives at as well as by the rate it sends at, and, when set, by link_rate. What
   * it receives at shows only what the peer had to send: after short replies the peer's own
   * send rate (a PONG's, notePeerSendRate) is the larger, and it is what the peer will send a
   * long reply at.
   */
  windowHintBytes(): number {
    const st = this.stateValue
    const peer = (this.peerSendRate * st.minRttMs) / 1000
    return Math.round(2 * Math.max(st.bdpBytes, st.receiveBdpBytes, peer))
  }

  /**
   * The rate the peer says it sends to us at (the last PONG's send rate), bytes per second. A
   * peer could claim any rate; what it changes is bounded: credit never exceeds
   * max_flow_window_bytes, and beyond a flow's first window never takes the last quarter of
   * the global budget (Flow.grantCredit).
   */
  notePeerSendRate(bytesPerSec: number): void {
    this.peerSendRate = Number.isFinite(bytesPerSec) && bytesPerSec > 0 ? bytesPerSec : 0
  }

  /**
   * May more leave at `now`? The bytes in flight are projected from the last sample: plus what
   * left since (`sentSinceSampleBytes`), minus what the path drained since at the estimated
   * rate (a fluid model; the next sample corrects it). No cap while the BDP is unknown.
   */
  admits(now: number, sentSinceSampleBytes: number): boolean {
    const st = this.stateValue
    if (st.inflightCapBytes === 0 || this.lastSampleMs === undefined) return true
    const drained = (st.estimateBytesPerSec * Math.max(0, now - this.lastSampleMs)) / 1000
    // What left since the sample drains too: counting it whole until the next sample would cap
    // the trunk at one in-flight cap per sample interval (10 MB/s with a 1 MiB cap).
    const projected = Math.max(0, st.inFlightBytes + sentSinceSampleBytes - drained)
    return projected < st.inflightCapBytes
  }

  /**
   * One sample round: every live subflow's figures at `now` (ms). Returns the new decision.
   * Subflows not listed are gone; their paths keep their estimates (a warm trunk). `heldBack`:
   * the in-flight cap refused a frame since the last sample (bytes waited for the cap, not for
   * the application: a backlog on every path).
   */
  onSample(now: number, subflows: readonly SubflowRateSample[], heldBack = false): RateState {
    this.lastSampleMs = now
    const byPath = new Map<number, SubflowRateSample[]>()
    for (const s of subflows) {
      const list = byPath.get(s.pathId)
      if (list === undefined) byPath.set(s.pathId, [s])
      else list.push(s)
    }
    const link = this.opts.linkRateBytesPerSec
    let target = 0
    let kernelSum = 0
    let estimate = 0
    let sendRate = 0
    let receive = 0
    let minRtt = 0
    let bdp = 0
    let capBdp = 0
    let receiveBdp = 0
    let inFlight = 0
    let retransmits = 0
    let pacedPaths = 0
    let floor = 0
    const pacing: SubflowPacing[] = []
    for (const [pathId, list] of byPath) {
      let p = this.paths.get(pathId)
      if (p === undefined) {
        p = new PathEstimate()
        this.paths.set(pathId, p)
      }
      let sum = 0
      let delivered = 0
      let received = 0
      let unsent = 0
      let rtt = Infinity
      const srtts: number[] = []
      for (const s of list) {
        if (s.srttMs > 0) srtts.push(s.srttMs)
        sum += s.deliveryRateBytesPerSec
        delivered += s.deliveredBytes
        unsent += s.unsentBytes
        received += s.receivedBytes
        const r = s.minRttMs > 0 ? s.minRttMs : s.srttMs
        if (r > 0 && r < rtt) rtt = r
        inFlight += s.inFlightBytes
        retransmits += s.retransmits
      }
      if (rtt !== Infinity) p.minRtt.add(now, rtt)
      const interval = Math.max(MIN_BTLBW_INTERVAL_MS, p.minRtt.best(now) ?? 0)
      p.delivered.add(now, delivered)
      p.received.add(now, received)
      const bw = p.delivered.rate(now, interval)
      const burstBw = p.delivered.rate(now, MIN_RATE_INTERVAL_MS)
      if (burstBw !== undefined && burstBw >= IDLE_RATE_BYTES_PER_SEC) p.burst.add(now, burstBw)
      const sampleBw = p.delivered.rate(now, BURST_INTERVAL_MS)
      if (sampleBw !== undefined && sampleBw >= IDLE_RATE_BYTES_PER_SEC) {
        p.sampleBurst.add(now, sampleBw)
      }
      // Bytes wait in the subflows, or in the flows behind the in-flight cap.
      const backlogged = p.backlogThrough(now, heldBack || unsent >= BACKLOG_BYTES, interval)
      // As BBR does with app-limited samples: a path that had nothing waiting at some point of
      // the interval shows what it was given, not what it carries, so such a sample only
      // counts when it beats the estimate. An idle trunk thus keeps what it learned (a warm
      // trunk) however long it idles.
      if (
        bw !== undefined &&
        bw >= IDLE_RATE_BYTES_PER_SEC &&
        (backlogged || bw >= (p.rate.best(now) ?? 0))
      ) {
        p.rate.add(now, bw)
      }
      const rx = p.received.rate(now, interval)
      if (rx !== undefined && rx >= IDLE_RATE_BYTES_PER_SEC) p.receive.add(now, rx)
      const learned = p.rate.best(now) ?? 0
      const pathRtt = p.minRtt.best(now) ?? 0
      srtts.sort((a, b) => a - b)
      const medianSrtt = srtts[Math.floor(srtts.length / 2)] ?? 0
      // A queue stands at the bottleneck: the STARTUP exit rule's signal and the first flight's.
      const queueing =
        pathRtt > 0 &&
        medianSrtt > pathRtt * STARTUP_EXIT_RTT_RATIO &&
        medianSrtt - pathRtt > STARTUP_EXIT_MIN_QUEUE_MS
      p.onRound(now, pathRtt, backlogged, learned, queueing)
      const pathPaced = link > 0 || p.fullPipe
      if (pathPaced) pacedPaths++
      const paced = Math.floor(link * LINK_PAYLOAD_SHARE)
      // In STARTUP the burst rate counts too (PathEstimate.burst): what a reply's ACKs showed.
      const startupLearned = Math.max(learned, p.burst.best(now) ?? 0)
      const pathEstimate = link > 0 ? paced : p.fullPipe ? learned : startupLearned
      const pathFloor = Math.max(
        (pathPaced ? MIN_INFLIGHT_PER_SUBFLOW_BYTES : STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES) *
          list.length,
        (pathEstimate * MIN_INFLIGHT_TIME_MS) / 1000
      )
      floor += pathFloor
      let pathTarget = paced
      if (link === 0 && p.fullPipe) {
        const phase = pathRtt > 0 ? Math.floor((now - p.fullPipeAtMs) / pathRtt) : 0
        const gain = GAIN_CYCLE[phase % GAIN_CYCLE.length] ?? 1
        pathTarget = Math.max(MIN_TARGET_BYTES_PER_SEC, learned * gain)
      } else if (link === 0 && pathRtt > 0) {
        // STARTUP: paced at the rate its in-flight cap allows (see STARTUP_INFLIGHT_GAIN), so
        // that the cap's bytes leave spread over the round trip, or at the first flight's pace
        // when that is higher (PathEstimate.startupPace).
        const floorPace = (pathFloor * 1000) / (Math.max(1, pathRtt) * FIRST_FLIGHT_RTT_SHARE)
        pathTarget = p.startupPace(floorPace, startupLearned, delivered >= BACKLOG_BYTES, queueing)
      }
      const pathReceive = p.receive.best(now) ?? 0
      target += pathTarget
      kernelSum += sum
      estimate += pathEstimate
      sendRate += link > 0 ? pathEstimate : Math.max(pathEstimate, p.sampleBurst.best(now) ?? 0)
      receive += pathReceive
      if (pathRtt > 0 && (minRtt === 0 || pathRtt < minRtt)) minRtt = pathRtt
      bdp += (pathEstimate * pathRtt) / 1000
      capBdp +=
        ((pathPaced ? 1 + INFLIGHT_MARGIN : STARTUP_INFLIGHT_GAIN) * pathEstimate * pathRtt) / 1000
      receiveBdp += (pathReceive * pathRtt) / 1000
      for (const share of split(link > 0 ? pathTarget : pathTarget * PACING_HEADROOM, list))
        pacing.push(share)
    }
    pacing.sort((a, b) => a.id - b.id)
    const source: RateSource =
      link > 0 ? 'configured' : pacedPaths > 0 ? 'learned' : estimate > 0 ? 'startup' : 'none'
    this.stateValue = {
      targetBytesPerSec: Math.round(target),
      estimateBytesPerSec: Math.round(estimate),
      sendRateBytesPerSec: Math.round(sendRate),
      kernelDeliveryBytesPerSec: Math.round(kernelSum),
      receiveBytesPerSec: Math.round(receive),
      peerSendBytesPerSec: this.peerSendRate,
      source,
      minRttMs: minRtt,
      bdpBytes: Math.round(bdp),
      receiveBdpBytes: Math.round(receiveBdp),
      // Only the send side's own BDP caps what we send: the receive estimate is the peer's.
      // A paced path may have one BDP and the margin in flight, a path in STARTUP two BDPs of
      // what it learned so far; the trunk's cap is at least the sum of its paths' floors; no
      // cap before anything was learned.
      inflightCapBytes: bdp > 0 ? Math.max(floor, Math.ceil(capBdp)) : 0,
      inFlightBytes: inFlight,
      retransmits,
      subflows: pacing
    }
    return this.stateValue
  }
}

/**
 * The path's rate split over its live subflows: evenly. Not in proportion to the load the
 * scheduler gives each: the scheduler moves load to the subflows whose sockets take more, and
 * a paced socket takes no more than its pace, so a proportional split feeds back on itself (a
 * subflow given less pace gets less load, then less pace) until one subflow carries the trunk.
 * An even split is the fixed point of that loop when the trunk is busy (every subflow
 * backlogged, each at rate/N). When only part of the trunk is busy the idle subflows' shares go
 * unused; the scheduler then spreads even one flow over several subflows, because each paced
 * socket backs up (TCP_NOTSENT_LOWAT) and stops taking frames.
 * Subflows whose cwnd collapsed (COLLAPSED_CWND_SEGMENTS: PROBE_RTT, an RTO) take no share:
 * the rate is split over the others, and a collapsed subflow is paced like them, so it sends at
 * their pace when its window comes back (the next sample splits evenly again).
 * Rounded down, so the sum over the subflows that can send never exceeds the rate (a rate is at
 * least 1 byte/s per subflow: config allows no link rate that small, and learned rates below
 * the idle floor are ignored).
 */
function split(rate: number, list: readonly SubflowRateSample[]): SubflowPacing[] {
  if (rate <= 0) return list.map((s) => ({ id: s.id, pacingBytesPerSec: 0 }))
  const sending = list.filter((s) => !cwndCollapsed(s.cwndSegments)).length
  const share = Math.max(1, Math.floor(rate / (sending > 0 ? sending : list.length)))
  return list.map((s) => ({ id: s.id, pacingBytesPerSec: share }))
}
