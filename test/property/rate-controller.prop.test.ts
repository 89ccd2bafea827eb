/**
 * The rate controller under random sample sequences (subflows joining and leaving, paths,
 * delivery rates, RTTs, backlogs, link_rate set or not): the subflows' pacing never adds up to
 * more than the trunk's target (times PACING_HEADROOM on a learned rate, whose total the in-flight
 * cap holds), the in-flight cap is never below the BDP it is made from, and
 * every figure stays finite and non-negative.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import {
  PACING_HEADROOM,
  RateController,
  type SubflowRateSample
} from '../../src/core/rate-controller.js'

const sampleArb = fc.record({
  pathId: fc.integer({ min: 0, max: 2 }),
  deliveryRateBytesPerSec: fc.integer({ min: 0, max: 2_000_000_000 }),
  deliveredBytes: fc.integer({ min: 0, max: 200_000_000 }),
  minRttMs: fc.double({ min: 0, max: 5000, noNaN: true }),
  srttMs: fc.double({ min: 0, max: 5000, noNaN: true }),
  inFlightBytes: fc.integer({ min: 0, max: 1 << 30 }),
  retransmits: fc.integer({ min: 0, max: 1e6 }),
  receivedBytes: fc.integer({ min: 0, max: 200_000_000 }),
  unsentBytes: fc.integer({ min: 0, max: 1 << 24 })
})

const roundArb = fc.record({
  stepMs: fc.integer({ min: 1, max: 3000 }),
  subflows: fc.array(sampleArb, { minLength: 0, maxLength: 12 })
})

describe('rate controller properties', () => {
  it('pacing sums to at most the target (with the headroom when learned); the in-flight cap is at least the BDP', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.constant(0), fc.integer({ min: 12_500, max: 125_000_000_000 })),
        fc.array(roundArb, { minLength: 1, maxLength: 80 }),
        (link, rounds) => {
          const c = new RateController({ linkRateBytesPerSec: link })
          let now = 0
          for (const r of rounds) {
            now += r.stepMs
            const samples: SubflowRateSample[] = r.subflows.map((s, i) => ({ ...s, id: i + 1 }))
            const st = c.onSample(now, samples)
            const sum = st.subflows.reduce((a, p) => a + p.pacingBytesPerSec, 0)
            // (the state's target is rounded: half a byte per second of slack)
            const most =
              link > 0 ? st.targetBytesPerSec : (st.targetBytesPerSec + 0.5) * PACING_HEADROOM
            assert.ok(sum <= most, `pacing ${sum} > ${most} (target ${st.targetBytesPerSec})`)
            assert.equal(st.subflows.length, samples.length)
            for (const p of st.subflows) {
              assert.ok(Number.isFinite(p.pacingBytesPerSec) && p.pacingBytesPerSec >= 0)
            }
            if (st.inflightCapBytes > 0) assert.ok(st.inflightCapBytes >= st.bdpBytes)
            if (link > 0) {
              assert.equal(st.source, 'configured')
              // A configured rate paces every subflow (0 would lift the cap).
              for (const p of st.subflows) assert.ok(p.pacingBytesPerSec >= 1)
              if (samples.length > 0) assert.ok(st.targetBytesPerSec <= link * 3)
            }
            for (const v of [
              st.targetBytesPerSec,
              st.estimateBytesPerSec,
              st.receiveBytesPerSec,
              st.minRttMs,
              st.bdpBytes,
              st.receiveBdpBytes,
              st.inflightCapBytes,
              c.windowHintBytes()
            ]) {
              assert.ok(Number.isFinite(v) && v >= 0, `figure ${v}`)
            }
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
