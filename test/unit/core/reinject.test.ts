/**
 * Head-of-line reinjection: the SendBuffer names the frame that holds the in-order point (the
 * copy sent last, and when), sends it once more on another subflow, never a third time, and the
 * stream stays exact when both copies reach a ReorderBuffer (checked over random schedules).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import { ReorderBuffer } from '../../../src/core/reorder-buffer.js'
import { SendBuffer } from '../../../src/core/send-buffer.js'
import {
  REINJECT_MIN_EXTRA_MS,
  reinjectAfterMs,
  reinjectTarget
} from '../../../src/trunk/reinject.js'
import type { Subflow } from '../../../src/trunk/subflow.js'
import { concat, patternBytes } from '../../helpers/frames.js'

describe('SendBuffer: the stalled head', () => {
  it('is the frame at the in-order point, on the subflow and at the time it was sent', () => {
    const sb = new SendBuffer(1000)
    sb.append(patternBytes(3000, 1))
    sb.next(1e9, 1, 1000, 10) // [0, 1000) on 1 at t=10
    sb.next(1e9, 2, 1000, 20) // [1000, 2000) on 2 at t=20
    sb.next(1e9, 3, 1000, 30) // [2000, 3000) on 3 at t=30
    assert.deepEqual(sb.stalledHead(), { subflow: 1, sentAt: 10 })
    sb.onAck(1000, false)
    assert.deepEqual(sb.stalledHead(), { subflow: 2, sentAt: 20 })
    sb.onAck(1500, false) // mid-frame: still the frame [1000, 2000)
    assert.deepEqual(sb.stalledHead(), { subflow: 2, sentAt: 20 })
    sb.onAck(3000, false)
    assert.equal(sb.stalledHead(), undefined)
  })

  it('is reinjected once, from the in-order point to the end of its frame, on the given subflow', () => {
    const data = patternBytes(3000, 2)
    const sb = new SendBuffer(1000)
    sb.append(data)
    sb.next(1e9, 1, 1000, 0)
    sb.next(1e9, 2, 1000, 0)
    sb.onAck(400, false)
    const d = sb.reinjectHead(2, 50)
    assert.ok(d !== undefined)
    assert.equal(d.offset, 400)
    assert.equal(d.resend, true)
    assert.deepEqual(d.payload, data.subarray(400, 1000))
    // Not a third time, from either copy.
    assert.equal(sb.stalledHead(), undefined)
    assert.equal(sb.reinjectHead(3, 60), undefined)
    // The next head is a new frame and may be reinjected in its turn.
    sb.onAck(1000, false)
    assert.deepEqual(sb.stalledHead(), { subflow: 2, sentAt: 0 })
  })

  it('a reinjected copy on a subflow that dies is sent again like any frame', () => {
    const sb = new SendBuffer(1000)
    sb.append(patternBytes(1000, 3))
    sb.next(1e9, 1, 1000, 0)
    sb.reinjectHead(2, 5)
    assert.equal(sb.onSubflowLost(2), 1000)
    assert.equal(sb.onSubflowLost(1), 1000)
    const again = sb.next(1e9, 3, 1000, 9)
    assert.equal(again?.offset, 0)
    assert.equal(again?.payload.length, 1000)
  })

  it('a FIN that waits is the head too', () => {
    const sb = new SendBuffer(1000)
    sb.append(patternBytes(500, 4))
    sb.end()
    const d = sb.next(1e9, 1, 1000, 7)
    assert.equal(d?.fin, true)
    sb.onAck(500, false)
    assert.deepEqual(sb.stalledHead(), { subflow: 1, sentAt: 7 })
    const r = sb.reinjectHead(2, 9)
    assert.equal(r?.fin, true)
    assert.equal(r?.payload.length, 0)
    sb.onAck(500, true)
    assert.equal(sb.stalledHead(), undefined)
  })

  it('nothing stalls while the head is queued for a re-send anyway', () => {
    const sb = new SendBuffer(1000)
    sb.append(patternBytes(2000, 5))
    sb.next(1e9, 1, 1000, 0)
    sb.next(1e9, 2, 1000, 0)
    sb.onSubflowLost(1)
    assert.equal(sb.stalledHead(), undefined)
  })

  it('the stream stays exact when originals, reinjections and re-sends all arrive, in any order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20_000 }),
        fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (size, steps, seed) => {
          const data = patternBytes(size, seed)
          const sb = new SendBuffer(700)
          sb.append(data)
          sb.end()
          const rb = new ReorderBuffer(1_000_000)
          const out: Uint8Array[] = []
          const wire: { offset: number; payload: Uint8Array; fin: boolean }[] = []
          let t = 0
          let sub = 0
          let x = seed
          const deliverSome = (): void => {
            // Deliver a pseudo-random frame from the wire, out of order.
            if (wire.length === 0) return
            x = (x * 1103515245 + 12345) >>> 0
            const [f] = wire.splice(x % wire.length, 1)
            rb.insert(f!.offset, f!.payload, f!.fin, 1e12)
            for (let c = rb.shift(); c !== undefined; c = rb.shift()) out.push(c)
            sb.onAck(rb.received, rb.finReceived)
          }
          for (const step of steps) {
            t += 10
            if (step === 0) {
              const d = sb.next(1e12, sub++ % 4, 700, t)
              if (d !== undefined) wire.push(d)
            } else if (step === 1) {
              const d = sb.reinjectHead(sub++ % 4, t)
              if (d !== undefined) wire.push(d)
            } else if (step === 2) {
              sb.onSubflowLost(sub % 4)
            } else {
              deliverSome()
            }
          }
          // Drain: send everything left and deliver it all.
          for (let i = 0; i < 10_000 && !sb.finished; i++) {
            const d = sb.next(1e12, i % 4, 700, t)
            if (d !== undefined) wire.push(d)
            deliverSome()
          }
          assert.equal(sb.finished, true)
          assert.deepEqual(concat(out), data)
        }
      ),
      { numRuns: 200 }
    )
  })
})

describe('Reinjector: when and where', () => {
  it('waits one and a half round trips of the carrier plus a slack, and at least 200 ms past one', () => {
    assert.equal(reinjectAfterMs(600, 600), 920)
    // A short path: one round trip and TCP_RTO_MIN (the carrier's own recovery), not 1.5.
    assert.equal(reinjectAfterMs(66, 66), 66 + REINJECT_MIN_EXTRA_MS + 20)
    assert.equal(reinjectAfterMs(0, 100), 320) // no sample yet: the fastest subflow's
  })

  it('a carrier whose cwnd collapsed (PROBE_RTT, an RTO): one round trip of its TCP', () => {
    // PING round trip 1500 ms (queues, recovery), TCP's own 700 ms: 720, not 2270.
    assert.equal(reinjectAfterMs(1500, 600, 700), 720)
    assert.equal(reinjectAfterMs(1500, 600, 0), 2270)
  })

  it('picks another subflow with room, the fastest first, then the emptiest', () => {
    const sub = (id: number, srttMs: number, queuedBytes: number): Subflow =>
      ({ id, srttMs, queuedBytes, isClosed: false }) as unknown as Subflow
    const subs = [sub(1, 100, 0), sub(2, 300, 0), sub(3, 100, 5000), sub(4, 50, 1_000_000)]
    assert.equal(reinjectTarget(1, subs, 65536)?.id, 3) // 4 is full, 1 is the carrier
    assert.equal(reinjectTarget(3, subs, 65536)?.id, 1)
    assert.equal(reinjectTarget(1, [sub(1, 100, 0)], 65536), undefined)
  })

  it('never picks a subflow whose cwnd collapsed', () => {
    const sub = (id: number, srttMs: number, cwndSegments: number): Subflow =>
      ({ id, srttMs, cwndSegments, queuedBytes: 0, isClosed: false }) as unknown as Subflow
    const subs = [sub(1, 100, 2000), sub(2, 50, 4), sub(3, 80, 1)]
    assert.equal(reinjectTarget(3, subs, 65536)?.id, 1) // 2 is faster but in PROBE_RTT
    assert.equal(reinjectTarget(1, subs, 65536), undefined)
  })
})
