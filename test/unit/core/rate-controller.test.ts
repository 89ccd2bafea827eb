/**
 * The trunk's rate controller (core/rate-controller.ts) driven with a fake clock: STARTUP and
 * learning, the link_rate cap, the min-RTT window, the split over subflows, the in-flight gate,
 * a warm trunk keeping its estimate, and the credit hint from the receive side.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  BURST_INTERVAL_MS,
  FIRST_FLIGHT_RTT_SHARE,
  GAIN_CYCLE,
  INFLIGHT_MARGIN,
  IntervalRate,
  LINK_PAYLOAD_SHARE,
  MIN_INFLIGHT_PER_SUBFLOW_BYTES,
  MIN_INFLIGHT_TIME_MS,
  MIN_BTLBW_INTERVAL_MS,
  MIN_RATE_INTERVAL_MS,
  cwndCollapsed,
  MIN_RTT_WINDOW_MS,
  PACING_HEADROOM,
  RATE_WINDOW_MS,
  RateController,
  STARTUP_EXIT_MIN_QUEUE_MS,
  STARTUP_EXIT_RTT_RATIO,
  STARTUP_INFLIGHT_GAIN,
  STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES,
  WindowedFilter,
  type RateState,
  type SubflowRateSample
} from '../../../src/core/rate-controller.js'
import { FakeClock } from '../../helpers/fake-clock.js'

const STEP_MS = 100
const MBIT = 125_000

interface Link {
  /** Subflows on each path: `paths[i]` subflows on path i. */
  readonly paths?: readonly number[]
  /** Bytes per second the whole trunk delivers (split evenly over the subflows). */
  readonly deliveredPerSec: number
  readonly rttMs: number
  /** The subflows' smoothed RTT (a queue adds to it), ms; rttMs when not given. */
  readonly srttMs?: number
  /** Unsent bytes per subflow (a backlog from 64 KiB over the path). */
  readonly unsentPerSubflow?: number
  /** Bytes per second received from the peer (split evenly). */
  readonly receivedPerSec?: number
  readonly inFlightPerSubflow?: number
  /** Ids of subflows whose cwnd collapsed to 4 segments (PROBE_RTT); the others have 1000. */
  readonly collapsed?: readonly number[]
}

/** Feed `ms` of sample rounds of `link` to `c`; returns the last decision. */
function run(c: RateController, clock: FakeClock, link: Link, ms: number) {
  const paths = link.paths ?? [4]
  const n = paths.reduce((a, b) => a + b, 0)
  let state = c.state
  for (let t = 0; t < ms; t += STEP_MS) {
    clock.advance(STEP_MS)
    const samples: SubflowRateSample[] = []
    let id = 1
    paths.forEach((count, pathId) => {
      for (let i = 0; i < count; i++) {
        samples.push({
          id: id++,
          pathId,
          deliveryRateBytesPerSec: link.deliveredPerSec / n,
          deliveredBytes: (link.deliveredPerSec / n) * (STEP_MS / 1000),
          minRttMs: link.rttMs,
          srttMs: link.srttMs ?? link.rttMs,
          inFlightBytes: link.inFlightPerSubflow ?? 0,
          retransmits: 0,
          receivedBytes: ((link.receivedPerSec ?? 0) / n) * (STEP_MS / 1000),
          unsentBytes: link.unsentPerSubflow ?? 64 * 1024,
          cwndSegments: link.collapsed?.includes(id - 1) === true ? 4 : 1000
        })
      }
    })
    state = c.onSample(clock.now(), samples)
  }
  return state
}

/**
 * `rounds` 600 ms rounds whose delivery rate doubles each round from `from` (the pipe is not
 * full); returns the last decision and the rate the next round would have.
 */
function grow(c: RateController, clock: FakeClock, from: number, rounds: number) {
  let rate = from
  let state = c.state
  for (let i = 0; i < rounds; i++) {
    state = run(c, clock, { deliveredPerSec: rate, rttMs: 600 }, 600)
    rate *= 2
  }
  return { state, rate }
}

const sumPacing = (s: { subflows: readonly { pacingBytesPerSec: number }[] }): number =>
  s.subflows.reduce((a, p) => a + p.pacingBytesPerSec, 0)

describe('rate controller', () => {
  it('starts with nothing and paces nothing', () => {
    const c = new RateController({ linkRateBytesPerSec: 0 })
    assert.equal(c.state.source, 'none')
    assert.equal(c.state.targetBytesPerSec, 0)
    assert.equal(c.windowHintBytes(), 0)
    assert.ok(c.admits(0, 1e9))
  })

  it('learns: STARTUP paced at what its cap allows while the rate grows, then paced at the learned rate with the gain cycle', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    // Growing: each 600 ms round doubles the delivery rate: the pipe is not full.
    let s = grow(c, clock, 1 * MBIT, 6).state
    assert.equal(s.source, 'startup')
    assert.ok(s.estimateBytesPerSec > 16 * MBIT, 'the estimate follows the growth')
    // Past its floor, STARTUP is paced at the rate its cap allows (two BtlBw), so the cap's
    // bytes leave spread over the round trip; each subflow gets its share and the headroom.
    assert.ok(s.inflightCapBytes > 4 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    assert.equal(s.targetBytesPerSec, STARTUP_INFLIGHT_GAIN * s.estimateBytesPerSec)
    for (const p of s.subflows) {
      const share = (STARTUP_INFLIGHT_GAIN * s.estimateBytesPerSec * PACING_HEADROOM) / 4
      assert.ok(Math.abs(p.pacingBytesPerSec - share) <= 1, `${p.pacingBytesPerSec} vs ${share}`)
    }
    // Flat at 100 Mbit/s: once the measured rate has caught up (a rate is measured over a
    // round), three backlogged rounds without growth fill the pipe.
    s = run(c, clock, { deliveredPerSec: 100 * MBIT, rttMs: 600 }, 6 * 600)
    assert.equal(s.source, 'learned')
    assert.ok(Math.abs(s.estimateBytesPerSec - 100 * MBIT) < MBIT, `${s.estimateBytesPerSec}`)
    assert.equal(s.minRttMs, 600)
    assert.ok(Math.abs(s.bdpBytes - 7_500_000) < 100_000, `${s.bdpBytes}`)
    // Over a whole gain cycle the pace goes through 1.25, 0.75 and 1 times the estimate.
    const gains = new Set<number>()
    for (let i = 0; i < GAIN_CYCLE.length * 6; i++) {
      s = run(c, clock, { deliveredPerSec: 100 * MBIT, rttMs: 600 }, STEP_MS)
      gains.add(Math.round((s.targetBytesPerSec / s.estimateBytesPerSec) * 100) / 100)
    }
    assert.deepEqual([...gains].sort(), [0.75, 1, 1.25])
  })

  it('a 200 ms path whose ACKs come in clumps: BtlBw is the rate over MIN_BTLBW_INTERVAL_MS, not the best clump', () => {
    // 200 ms at 130 Mbit/s, then 200 ms at 70: 100 Mbit/s over every 400 ms. Samples of one
    // round trip (200 ms) would take 130 for the link.
    assert.ok(MIN_BTLBW_INTERVAL_MS >= 4 * STEP_MS && MIN_BTLBW_INTERVAL_MS > MIN_RATE_INTERVAL_MS)
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    let s = c.state
    for (let t = 0; t < 2 * RATE_WINDOW_MS; t += 4 * STEP_MS) {
      run(c, clock, { deliveredPerSec: 130 * MBIT, rttMs: 200 }, 2 * STEP_MS)
      s = run(c, clock, { deliveredPerSec: 70 * MBIT, rttMs: 200 }, 2 * STEP_MS)
    }
    assert.equal(s.source, 'learned')
    assert.ok(
      Math.abs(s.estimateBytesPerSec - 100 * MBIT) < MBIT,
      `${s.estimateBytesPerSec / MBIT}`
    )
  })

  it('STARTUP: in flight is capped at two BDPs of what was learned so far', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const grown = grow(c, clock, 10 * MBIT, 4)
    let s = grown.state
    assert.equal(s.source, 'startup')
    assert.equal(STARTUP_INFLIGHT_GAIN, 2)
    assert.ok(s.bdpBytes > 4 * MIN_INFLIGHT_PER_SUBFLOW_BYTES, `${s.bdpBytes}`)
    const cap = (s.estimateBytesPerSec * 600 * STARTUP_INFLIGHT_GAIN) / 1000
    assert.ok(Math.abs(s.inflightCapBytes - cap) <= 2, `${s.inflightCapBytes} vs ${cap}`)
    // Paced once the pipe is full: the cap falls to one BDP and the margin.
    s = run(c, clock, { deliveredPerSec: grown.rate, rttMs: 600 }, 6 * 600)
    assert.equal(s.source, 'learned')
    assert.equal(s.inflightCapBytes, Math.ceil(s.bdpBytes * (1 + INFLIGHT_MARGIN)))
  })

  it('STARTUP ends when a queue stands through a whole backlogged round, not for a burst', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const queued = 600 * (STARTUP_EXIT_RTT_RATIO + 0.1)
    // The rate doubles every round (STARTUP's own rule would go on), and each round has a
    // 200 ms burst of queueing: still STARTUP.
    let rate = 5 * MBIT
    let s = c.state
    for (let i = 0; i < 4; i++) {
      s = run(c, clock, { deliveredPerSec: rate, rttMs: 600 }, 400)
      s = run(c, clock, { deliveredPerSec: rate, rttMs: 600, srttMs: queued }, 200)
      rate *= 2
    }
    assert.equal(s.source, 'startup', 'a burst is not a full pipe')
    // A queue through a whole round: the pipe is full at what was learned, long before
    // three rounds without growth would say so.
    s = run(c, clock, { deliveredPerSec: rate, rttMs: 600, srttMs: queued }, 1300)
    assert.equal(s.source, 'learned')
    assert.ok(s.targetBytesPerSec > 0)
  })

  it('a learned rate paces each subflow at its share times the headroom; a configured one at its share', () => {
    const clock = new FakeClock()
    const learned = new RateController({ linkRateBytesPerSec: 0 })
    let s = run(learned, clock, { deliveredPerSec: 80 * MBIT, rttMs: 600 }, 10_000)
    assert.equal(s.source, 'learned')
    const share = Math.floor((s.targetBytesPerSec * PACING_HEADROOM) / 4)
    for (const p of s.subflows) assert.ok(Math.abs(p.pacingBytesPerSec - share) <= 1)
    const configured = new RateController({ linkRateBytesPerSec: 100 * MBIT })
    s = run(configured, clock, { deliveredPerSec: 80 * MBIT, rttMs: 600 }, 1000)
    assert.equal(sumPacing(s), s.targetBytesPerSec)
  })

  it('stays in STARTUP while the trunk has no backlog (an idle or credit-starved trunk has not shown the pipe)', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const s = run(c, clock, { deliveredPerSec: 20 * MBIT, rttMs: 600, unsentPerSubflow: 0 }, 20_000)
    assert.equal(s.source, 'startup')
    // 20 Mbit/s at 600 ms: twice it is less than the first flight's pace, which wins.
    const firstFlight =
      (4 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES) / (0.6 * FIRST_FLIGHT_RTT_SHARE)
    assert.ok(firstFlight > STARTUP_INFLIGHT_GAIN * s.estimateBytesPerSec)
    assert.equal(s.targetBytesPerSec, Math.round(firstFlight))
  })

  it('short replies, each a backlog shorter than the rate interval, do not end STARTUP; a backlog through the interval does', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    // A 50 ms path: one 1 MB reply every 300 ms, backlogged at one sample (it leaves in 80 ms,
    // under the 200 ms a rate is measured over), idle at the next two. Measured so, the rate is
    // a fraction of the link's; before, three such rounds ended STARTUP at it.
    const reply = { deliveredPerSec: 10 * MBIT, rttMs: 50, paths: [8] }
    let s = c.state
    for (let i = 0; i < 20; i++) {
      s = run(c, clock, reply, STEP_MS)
      s = run(c, clock, { ...reply, unsentPerSubflow: 0 }, 2 * STEP_MS)
    }
    assert.equal(s.source, 'startup', 'bursts are not a full pipe')
    // A bulk transfer: backlogged through whole intervals, three rounds without growth.
    s = run(c, clock, { ...reply, deliveredPerSec: 90 * MBIT }, 1000)
    assert.equal(s.source, 'learned')
    assert.ok(Math.abs(s.estimateBytesPerSec - 90 * MBIT) < MBIT, `${s.estimateBytesPerSec}`)
  })

  it('bytes held back by the in-flight cap are a backlog, though the subflows hold none', () => {
    const clock = new FakeClock()
    const sample = (c: RateController, heldBack: boolean): RateState => {
      clock.advance(STEP_MS)
      const samples: SubflowRateSample[] = [1, 2, 3, 4].map((id) => ({
        id,
        pathId: 0,
        deliveryRateBytesPerSec: 20 * MBIT,
        deliveredBytes: (20 * MBIT * (STEP_MS / 1000)) / 4,
        minRttMs: 100,
        srttMs: 100,
        inFlightBytes: 0,
        retransmits: 0,
        receivedBytes: 0,
        unsentBytes: 0,
        cwndSegments: 1000
      }))
      return c.onSample(clock.now(), samples, heldBack)
    }
    const held = new RateController({ linkRateBytesPerSec: 0 })
    const idle = new RateController({ linkRateBytesPerSec: 0 })
    let h = held.state
    let i = idle.state
    for (let n = 0; n < 30; n++) {
      h = sample(held, true)
      i = sample(idle, false)
    }
    assert.equal(h.source, 'learned', 'flows waited for the cap: the pipe was shown')
    assert.equal(i.source, 'startup', 'nothing waited: app-limited')
  })

  it('a queue signal needs the RTT STARTUP_EXIT_MIN_QUEUE_MS above the min, not only the ratio (a 2 ms path)', () => {
    const clock = new FakeClock()
    const floorPace =
      (8 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES) / (0.002 * FIRST_FLIGHT_RTT_SHARE)
    const reply = { deliveredPerSec: 10 * MBIT, rttMs: 2, unsentPerSubflow: 0, paths: [8] }
    // 3 ms against 2: 1.5 times the min RTT, 1 ms of jitter, no queue: the pace stays.
    const jitter = new RateController({ linkRateBytesPerSec: 0 })
    let s = run(jitter, clock, { ...reply, srttMs: 2 + STARTUP_EXIT_MIN_QUEUE_MS / 4 }, 3000)
    assert.equal(s.targetBytesPerSec, Math.round(floorPace))
    // 10 ms against 2: a queue.
    const queued = new RateController({ linkRateBytesPerSec: 0 })
    s = run(queued, clock, { ...reply, srttMs: 2 + 2 * STARTUP_EXIT_MIN_QUEUE_MS }, 3000)
    assert.equal(s.targetBytesPerSec, STARTUP_INFLIGHT_GAIN * s.estimateBytesPerSec)
  })

  it('a first flight that builds a queue at the bottleneck drops its pace to twice the learned rate; one that does not grows it back', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    // Replies on a 10 Mbit/s, 600 ms link with eight subflows (no backlog): twice the learned
    // rate is below the floor's pace, and the bursts raise the subflows' RTT to 1.5x.
    const floorPace = (8 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES) / (0.6 * FIRST_FLIGHT_RTT_SHARE)
    const slow = { deliveredPerSec: 10 * MBIT, rttMs: 600, unsentPerSubflow: 0, paths: [8] }
    let s = run(c, clock, { ...slow, srttMs: 900 }, 3000)
    assert.equal(s.source, 'startup')
    assert.equal(s.inflightCapBytes, 8 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    assert.equal(s.targetBytesPerSec, STARTUP_INFLIGHT_GAIN * s.estimateBytesPerSec)
    assert.ok(s.targetBytesPerSec < floorPace / 4)
    // Idle (PINGs only): the pace stays where the bursts left it.
    const low = s.targetBytesPerSec
    s = run(c, clock, { ...slow, deliveredPerSec: 2000 }, 20_000)
    assert.equal(s.targetBytesPerSec, low)
    // Bursts that build no queue: back to the floor's pace.
    s = run(c, clock, slow, 3000)
    assert.equal(s.targetBytesPerSec, Math.round(floorPace))
  })

  it('STARTUP at its floor: the floor is a first flight, paced to leave within a quarter of the round trip', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    // 1 Mbit/s learned at 600 ms: two BDPs (150 KB) are far below 4 × 256 KiB.
    const s = run(c, clock, { deliveredPerSec: 1 * MBIT, rttMs: 600, unsentPerSubflow: 0 }, 3000)
    assert.equal(s.source, 'startup')
    assert.equal(s.inflightCapBytes, 4 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    const firstFlight = s.inflightCapBytes / (0.6 * FIRST_FLIGHT_RTT_SHARE)
    assert.equal(s.targetBytesPerSec, Math.round(firstFlight))
    const share = Math.floor((firstFlight * PACING_HEADROOM) / 4)
    assert.ok(s.subflows.every((p) => p.pacingBytesPerSec === share))
    // Nothing is paced before the path's RTT is known.
    const d = new RateController({ linkRateBytesPerSec: 0 })
    const t = d.onSample(0, [])
    assert.equal(t.targetBytesPerSec, 0)
  })

  it('link_rate: paced at the configured rate (less the headers) from the first sample, whatever the subflows deliver', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 100 * MBIT })
    const paced = 100 * MBIT * LINK_PAYLOAD_SHARE
    let s = run(c, clock, { deliveredPerSec: 300 * MBIT, rttMs: 600 }, STEP_MS)
    assert.equal(s.source, 'configured')
    assert.equal(s.targetBytesPerSec, paced)
    assert.equal(sumPacing(s), paced)
    s = run(c, clock, { deliveredPerSec: 300 * MBIT, rttMs: 600 }, 5000)
    assert.equal(s.targetBytesPerSec, paced, 'learning never lifts a configured rate')
    assert.equal(s.estimateBytesPerSec, paced)
    assert.equal(s.bdpBytes, paced * 0.6)
    assert.equal(s.inflightCapBytes, Math.ceil(paced * 0.6 * (1 + INFLIGHT_MARGIN)))
  })

  it('a short path (loopback, a LAN): the in-flight cap never falls below a frame per subflow, nor below MIN_INFLIGHT_TIME_MS of the rate', () => {
    const clock = new FakeClock()
    // 10 Mbit/s at 0.05 ms: the BDP is 63 bytes, far less than one frame.
    const c = new RateController({ linkRateBytesPerSec: 10 * MBIT })
    let s = run(c, clock, { deliveredPerSec: 10 * MBIT, rttMs: 0.05 }, 1000)
    assert.ok(s.bdpBytes < 100)
    assert.equal(s.inflightCapBytes, 4 * MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    // 1.4 Gbit/s at 0.05 ms: the BDP is under 9 KB; the cap is 20 ms of the rate (3.3 MB).
    const d = new RateController({ linkRateBytesPerSec: 1400 * MBIT })
    s = run(d, clock, { deliveredPerSec: 1400 * MBIT, rttMs: 0.05 }, 1000)
    assert.ok(s.bdpBytes < 10_000)
    assert.equal(
      s.inflightCapBytes,
      Math.ceil((s.estimateBytesPerSec * MIN_INFLIGHT_TIME_MS) / 1000)
    )
  })

  it('splits the rate evenly over the live subflows, and per path', () => {
    const clock = new FakeClock()
    // 80 Mbit/s on the wire, 76 of payload.
    const c = new RateController({ linkRateBytesPerSec: 80 * MBIT })
    let s = run(c, clock, { deliveredPerSec: 0, rttMs: 50 }, STEP_MS)
    assert.deepEqual(
      s.subflows.map((p) => p.pacingBytesPerSec),
      [19 * MBIT, 19 * MBIT, 19 * MBIT, 19 * MBIT]
    )
    // One subflow fewer: the others take its share.
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 50, paths: [3] }, STEP_MS)
    assert.equal(s.subflows.length, 3)
    assert.ok(s.subflows.every((p) => p.pacingBytesPerSec === Math.floor((76 * MBIT) / 3)))
    // Two paths: link_rate is each path's bottleneck; each path's rate is split over its own.
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 50, paths: [2, 4] }, STEP_MS)
    assert.deepEqual(
      s.subflows.map((p) => p.pacingBytesPerSec),
      [38 * MBIT, 38 * MBIT, 19 * MBIT, 19 * MBIT, 19 * MBIT, 19 * MBIT]
    )
    assert.equal(s.targetBytesPerSec, 152 * MBIT)
  })

  it('a subflow whose cwnd collapsed (PROBE_RTT, an RTO) takes no share: the others carry the rate', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 80 * MBIT })
    // Subflows 1 and 2 in PROBE_RTT: 76 Mbit/s of payload over the other two.
    let s = run(c, clock, { deliveredPerSec: 0, rttMs: 50, collapsed: [1, 2] }, STEP_MS)
    assert.deepEqual(
      s.subflows.map((p) => p.pacingBytesPerSec),
      [38 * MBIT, 38 * MBIT, 38 * MBIT, 38 * MBIT]
    )
    // Back from PROBE_RTT: an even split again.
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 50 }, STEP_MS)
    assert.ok(s.subflows.every((p) => p.pacingBytesPerSec === 19 * MBIT))
    // All collapsed (an outage): still an even split, nothing is divided by zero.
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 50, collapsed: [1, 2, 3, 4] }, STEP_MS)
    assert.ok(s.subflows.every((p) => p.pacingBytesPerSec === 19 * MBIT))
    assert.equal(cwndCollapsed(4), true)
    assert.equal(cwndCollapsed(1), true)
    assert.equal(cwndCollapsed(5), false)
    assert.equal(cwndCollapsed(0), false) // unknown
    assert.equal(cwndCollapsed(undefined), false)
  })

  it('an idle trunk (RTT from PINGs, no rate): the STARTUP floor is its first flight, the small floor once the pipe is full', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    // Idle at 600 ms: PINGs deliver a trickle, nothing waits.
    let s = run(
      c,
      clock,
      { deliveredPerSec: 2000, rttMs: 600, unsentPerSubflow: 0, paths: [8] },
      3000
    )
    assert.equal(s.source, 'startup')
    assert.equal(s.inflightCapBytes, 8 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    assert.ok(s.inflightCapBytes > 1_000_000, 'a 1 MB reply leaves in one flight')
    // A busy 50 ms path fills: paced, and its floor is the small one (the cap is 1.25 BDP).
    const d = new RateController({ linkRateBytesPerSec: 0 })
    s = run(d, clock, { deliveredPerSec: 95 * MBIT, rttMs: 50, paths: [8] }, 3000)
    assert.equal(s.source, 'learned')
    assert.equal(s.inflightCapBytes, Math.ceil(1.25 * s.bdpBytes))
    assert.ok(s.inflightCapBytes < 8 * STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    // A tiny-BDP path once full: the small floor at a low rate, MIN_INFLIGHT_TIME_MS of the
    // rate at a high one (the proxy does not refill its subflows the instant room frees).
    const e = new RateController({ linkRateBytesPerSec: 0 })
    s = run(e, clock, { deliveredPerSec: 10 * MBIT, rttMs: 0.1, paths: [8] }, 3000)
    assert.equal(s.source, 'learned')
    assert.equal(s.inflightCapBytes, 8 * MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    const f = new RateController({ linkRateBytesPerSec: 0 })
    s = run(f, clock, { deliveredPerSec: 1000 * MBIT, rttMs: 0.1, paths: [8] }, 3000)
    assert.equal(s.source, 'learned')
    const timeFloor = Math.ceil((s.estimateBytesPerSec * MIN_INFLIGHT_TIME_MS) / 1000)
    assert.ok(timeFloor > 8 * MIN_INFLIGHT_PER_SUBFLOW_BYTES)
    assert.ok(
      Math.abs(s.inflightCapBytes - timeFloor) <= 1,
      `${s.inflightCapBytes} vs ${timeFloor}`
    )
  })

  it('a 50 ms path with eight subflows: the cap is the BDP and its margin, not the per-subflow floor', () => {
    const clock = new FakeClock()
    // 100 Mbit/s at 50 ms: a BDP of 594 KB, less than eight frame-sized floors of 256 KiB
    // (the floor once was), which kept a standing queue of two BDPs at the bottleneck.
    const c = new RateController({ linkRateBytesPerSec: 100 * MBIT })
    const s = run(c, clock, { deliveredPerSec: 95 * MBIT, rttMs: 50, paths: [8] }, 1000)
    assert.equal(s.inflightCapBytes, Math.ceil(1.25 * s.bdpBytes))
    assert.ok(s.inflightCapBytes > 8 * MIN_INFLIGHT_PER_SUBFLOW_BYTES)
  })

  it('min RTT: a lower sample wins at once, a higher one only after the old minimum leaves the window', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 10 * MBIT })
    let s = run(c, clock, { deliveredPerSec: 0, rttMs: 600 }, 1000)
    assert.equal(s.minRttMs, 600)
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 550 }, STEP_MS)
    assert.equal(s.minRttMs, 550)
    // The path moved: 700 ms from now on. The 550 ms sample holds for MIN_RTT_WINDOW_MS.
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 700 }, MIN_RTT_WINDOW_MS - 500)
    assert.equal(s.minRttMs, 550)
    s = run(c, clock, { deliveredPerSec: 0, rttMs: 700 }, 1000)
    assert.equal(s.minRttMs, 700)
    assert.equal(s.bdpBytes, Math.round(10 * MBIT * LINK_PAYLOAD_SHARE * 0.7))
  })

  it('a warm trunk keeps its learned rate through idle time, and a new flow starts at it', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    run(c, clock, { deliveredPerSec: 50 * MBIT, rttMs: 200 }, 5000)
    const learned = c.state
    assert.equal(learned.source, 'learned')
    // A minute without flows: PINGs only, nothing unsent.
    const idle = run(
      c,
      clock,
      { deliveredPerSec: 2000, rttMs: 200, unsentPerSubflow: 0 },
      3 * RATE_WINDOW_MS
    )
    assert.equal(idle.source, 'learned')
    assert.ok(Math.abs(idle.estimateBytesPerSec - 50 * MBIT) < MBIT, `${idle.estimateBytesPerSec}`)
    assert.ok(idle.targetBytesPerSec >= 0.75 * 50 * MBIT)
    // The next flow's credit is sized from the learned BDP at once.
    assert.ok(c.windowHintBytes() >= 2 * 50 * MBIT * 0.2 * 0.99)
    // A backlogged trunk at a lower rate for longer than the window does lower the estimate.
    const lower = run(c, clock, { deliveredPerSec: 20 * MBIT, rttMs: 200 }, RATE_WINDOW_MS + 1000)
    assert.ok(
      Math.abs(lower.estimateBytesPerSec - 20 * MBIT) < MBIT,
      `${lower.estimateBytesPerSec}`
    )
  })

  it('credit hint: twice the larger of the send and the receive BDP (an upload seen from the receiver)', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const s = run(
      c,
      clock,
      { deliveredPerSec: 2000, rttMs: 600, unsentPerSubflow: 0, receivedPerSec: 90 * MBIT },
      3000
    )
    assert.ok(Math.abs(s.receiveBytesPerSec - 90 * MBIT) < MBIT, `${s.receiveBytesPerSec}`)
    assert.ok(Math.abs(c.windowHintBytes() - 2 * 90 * MBIT * 0.6) < 2 * MBIT)
  })

  it("a 600 ms path: a reply shorter than a round trip teaches STARTUP the burst's rate, not the burst over the RTT; a full pipe is paced on BtlBw", () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const idle = { deliveredPerSec: 2000, rttMs: 600, unsentPerSubflow: 0, paths: [8] }
    run(c, clock, idle, 2000)
    // A 1 MB reply: its ACKs come at 40 Mbit/s for 200 ms, then nothing.
    run(c, clock, { ...idle, deliveredPerSec: 40 * MBIT }, 200)
    const s = run(c, clock, idle, 1000)
    assert.equal(s.source, 'startup')
    // Over the round trip it is 1 MB / 600 ms, 13 Mbit/s (the cap then let 2.4 MB of the next
    // 10 MB reply out in its first round trip).
    assert.ok(Math.abs(s.estimateBytesPerSec - 40 * MBIT) < MBIT, `${s.estimateBytesPerSec}`)
    assert.ok(
      Math.abs(s.inflightCapBytes - STARTUP_INFLIGHT_GAIN * 40 * MBIT * 0.6) < 0.02 * 40 * MBIT,
      `${s.inflightCapBytes}`
    )
    assert.ok(s.targetBytesPerSec >= STARTUP_INFLIGHT_GAIN * 40 * MBIT * 0.99)
    // A bulk transfer at 30 Mbit/s fills the pipe: paced on what it delivers, not on the burst.
    const bulk = run(c, clock, { ...idle, deliveredPerSec: 30 * MBIT, unsentPerSubflow: 1e6 }, 6000)
    assert.equal(bulk.source, 'learned')
    assert.ok(Math.abs(bulk.estimateBytesPerSec - 30 * MBIT) < MBIT, `${bulk.estimateBytesPerSec}`)
  })

  it('the rate told to the peer for credit counts a burst over one sample interval; the pace does not', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    const idle = { deliveredPerSec: 2000, rttMs: 600, unsentPerSubflow: 0, paths: [8] }
    run(c, clock, idle, 2000)
    // A 1 MB reply whose ACKs all came within one 100 ms sample: 80 Mbit/s over it, 40 over
    // MIN_RATE_INTERVAL_MS.
    run(c, clock, { ...idle, deliveredPerSec: 80 * MBIT }, STEP_MS)
    const s = run(c, clock, idle, 1000)
    assert.equal(s.source, 'startup')
    assert.ok(Math.abs(s.estimateBytesPerSec - 40 * MBIT) < MBIT, `${s.estimateBytesPerSec}`)
    assert.ok(Math.abs(s.sendRateBytesPerSec - 80 * MBIT) < MBIT, `${s.sendRateBytesPerSec}`)
    assert.ok(
      Math.abs(s.inflightCapBytes - STARTUP_INFLIGHT_GAIN * 40 * MBIT * 0.6) < 0.02 * 40 * MBIT,
      `capped on 40: ${s.inflightCapBytes}`
    )
    assert.ok(BURST_INTERVAL_MS <= STEP_MS && BURST_INTERVAL_MS < MIN_RATE_INTERVAL_MS)
    // link_rate is what it says, whatever a burst showed.
    const l = new RateController({ linkRateBytesPerSec: 50 * MBIT })
    run(l, clock, idle, 2000)
    run(l, clock, { ...idle, deliveredPerSec: 80 * MBIT }, STEP_MS)
    const ls = run(l, clock, idle, 1000)
    assert.equal(ls.sendRateBytesPerSec, ls.estimateBytesPerSec)
    assert.ok(ls.sendRateBytesPerSec <= 50 * MBIT)
  })

  it("credit hint: the peer's own sending rate (its PONGs) counts, once the min RTT is known", () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 0 })
    c.notePeerSendRate(90 * MBIT)
    assert.equal(c.windowHintBytes(), 0, 'no RTT yet')
    const s = run(
      c,
      clock,
      { deliveredPerSec: 2000, rttMs: 600, unsentPerSubflow: 0, receivedPerSec: 10 * MBIT },
      3000
    )
    assert.equal(s.peerSendBytesPerSec, 90 * MBIT)
    assert.ok(Math.abs(c.windowHintBytes() - 2 * 90 * MBIT * 0.6) < MBIT, `${c.windowHintBytes()}`)
    // Nonsense is unknown, not a rate: the hint falls back to what was received.
    c.notePeerSendRate(Number.NaN)
    assert.ok(Math.abs(c.windowHintBytes() - 2 * 10 * MBIT * 0.6) < MBIT, `${c.windowHintBytes()}`)
    c.notePeerSendRate(-5)
    assert.equal(run(c, clock, { deliveredPerSec: 2000, rttMs: 600 }, 100).peerSendBytesPerSec, 0)
  })

  it('in-flight gate: refuses at the cap, and lets more go as the path drains at the estimated rate', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 100 * MBIT })
    // BDP 7.125 MB (95 Mbit/s of payload), cap 8.9 MB; 4 subflows with 2.4 MB each = 9.6 MB.
    const s = run(
      c,
      clock,
      { deliveredPerSec: 100 * MBIT, rttMs: 600, inFlightPerSubflow: 2_400_000 },
      STEP_MS
    )
    assert.equal(s.inFlightBytes, 9_600_000)
    const t = clock.now()
    assert.equal(c.admits(t, 0), false)
    // 60 ms later the path drained 712 kB: room again, until about 20 kB more were sent.
    assert.equal(c.admits(t + 60, 0), true)
    assert.equal(c.admits(t + 60, 100_000), false)
  })

  it('in-flight gate: sending at the estimated rate is never held back between two samples', () => {
    const clock = new FakeClock()
    const c = new RateController({ linkRateBytesPerSec: 100 * MBIT })
    const s = run(
      c,
      clock,
      { deliveredPerSec: 100 * MBIT, rttMs: 50, inFlightPerSubflow: 100_000 },
      STEP_MS
    )
    const t = clock.now()
    // Over a whole sample interval, 1 ms steps at the estimated rate: every step admitted.
    const perMs = s.estimateBytesPerSec / 1000
    for (let ms = 1; ms < STEP_MS; ms++)
      assert.equal(c.admits(t + ms, perMs * ms), true, `at ${ms} ms`)
  })
})

describe('interval rate', () => {
  it('one count read over two intervals, the shorter first: each over its own interval', () => {
    const r = new IntervalRate()
    // 1 MB/s for 600 ms, then 10 MB/s for 200 ms, one point every 100 ms.
    for (let t = 100; t <= 800; t += 100) {
      r.add(t, t <= 600 ? 100_000 : 1_000_000)
      r.rate(t, 200)
      r.rate(t, 600)
    }
    assert.equal(r.rate(800, 200), 10_000_000)
    assert.equal(r.rate(800, 600), ((4 * 100_000 + 2 * 1_000_000) * 1000) / 600)
    assert.equal(r.rate(800, 900), undefined, 'history shorter than the interval')
  })
})

describe('windowed filter', () => {
  it('max: the best sample within the window, the newest when all are older', () => {
    const f = new WindowedFilter(1000, (a, b) => a >= b)
    assert.equal(f.best(0), undefined)
    f.add(0, 5)
    f.add(100, 3)
    assert.equal(f.best(100), 5)
    assert.equal(f.best(1050), 3, 'the 5 left the window')
    assert.equal(f.best(99_999), 3, 'the newest is kept however old')
    f.add(100_000, 1)
    assert.equal(f.best(100_000), 1)
  })
})
