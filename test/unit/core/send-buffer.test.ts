/**
 * SendBuffer: frame sizes within payload and credit limits, payloads as views of the
 * application's chunks, coalescing of small writes, FIN placement, acknowledgements, and exact
 * re-sends after a subflow dies (checked end to end through a ReorderBuffer).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import { ReorderBuffer } from '../../../src/core/reorder-buffer.js'
import { SendBuffer, type DataToSend } from '../../../src/core/send-buffer.js'
import { concat, patternBytes, rng } from '../../helpers/frames.js'

/** Every frame `next()` hands out with credit `limit` on `subflow`. */
function takeAll(sb: SendBuffer, limit: number, subflow = 0): DataToSend[] {
  const out: DataToSend[] = []
  for (let d = sb.next(limit, subflow); d !== undefined; d = sb.next(limit, subflow)) out.push(d)
  return out
}

function bytesOf(frames: readonly DataToSend[]): Uint8Array {
  return concat(frames.map((f) => f.payload))
}

describe('SendBuffer: framing', () => {
  it('frames never exceed maxPayload, the credit limit, or one appended chunk', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 4096, max: 20_000 }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 9000 }),
        fc.array(fc.integer({ min: 1, max: 30_000 }), { minLength: 1, maxLength: 10 }),
        (sizes, maxPayload, creditSteps) => {
          const chunks = sizes.map((n, i) => patternBytes(n, i + 1))
          const total = sizes.reduce((a, b) => a + b, 0)
          const sb = new SendBuffer(maxPayload)
          const starts: number[] = []
          let at = 0
          for (const c of chunks) {
            starts.push(at)
            at += c.length
            sb.append(c)
          }
          let limit = 0
          const frames: DataToSend[] = []
          for (const step of [...creditSteps, total]) {
            limit = Math.min(total, limit + step)
            for (const d of takeAll(sb, limit)) {
              assert.ok(d.payload.length >= 1 && d.payload.length <= maxPayload)
              assert.ok(d.offset + d.payload.length <= limit)
              assert.equal(d.resend, false)
              // The payload is a view into the one chunk that holds its first byte.
              let k = starts.length - 1
              while (starts[k]! > d.offset) k--
              const chunk = chunks[k]!
              assert.equal(d.payload.buffer, chunk.buffer)
              assert.equal(d.payload.byteOffset, chunk.byteOffset + d.offset - starts[k]!)
              assert.ok(d.offset + d.payload.length <= starts[k]! + chunk.length)
              frames.push(d)
            }
            assert.equal(sb.sentOffset, limit)
          }
          assert.ok(Buffer.from(bytesOf(frames)).equals(Buffer.from(concat(chunks))))
          assert.equal(sb.hasSendable(total), false)
        }
      ),
      { numRuns: 200 }
    )
  })

  it('offsets are consecutive and the credit limit stops fresh data exactly', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(10_000, 1))
    assert.equal(sb.hasSendable(0), false)
    assert.equal(sb.next(0, 0), undefined)
    const first = takeAll(sb, 250)
    assert.deepEqual(
      first.map((d) => [d.offset, d.payload.length]),
      [
        [0, 100],
        [100, 100],
        [200, 50]
      ]
    )
    assert.equal(sb.hasSendable(250), false)
    assert.ok(sb.hasSendable(251))
  })

  it('small appends coalesce into one frame while unsent', () => {
    const sb = new SendBuffer(16_384)
    const parts = Array.from({ length: 10 }, (_, i) => patternBytes(100, i))
    for (const p of parts) sb.append(p)
    const frames = takeAll(sb, 1 << 20)
    assert.equal(frames.length, 1)
    assert.ok(Buffer.from(frames[0]!.payload).equals(Buffer.from(concat(parts))))
    // After a send, a new small write starts a new frame (sent bytes are never rewritten).
    sb.append(patternBytes(10, 1))
    sb.append(patternBytes(10, 2))
    const more = takeAll(sb, 1 << 20)
    assert.deepEqual(
      more.map((d) => [d.offset, d.payload.length]),
      [[1000, 20]]
    )
  })

  it('coalescing stops at maxPayload', () => {
    const sb = new SendBuffer(250)
    for (let i = 0; i < 10; i++) sb.append(patternBytes(100, i))
    const frames = takeAll(sb, 1 << 20)
    assert.ok(frames.every((f) => f.payload.length <= 250))
    assert.equal(bytesOf(frames).length, 1000)
  })

  it('empty appends are ignored; append after end throws', () => {
    const sb = new SendBuffer(100)
    sb.append(new Uint8Array(0))
    assert.equal(sb.appendedBytes, 0)
    sb.end()
    assert.throws(() => {
      sb.append(Uint8Array.of(1))
    }, RangeError)
  })
})

describe('SendBuffer: FIN', () => {
  it('rides on the last data frame when the stream ended before it was sent', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(250, 1))
    sb.end()
    const frames = takeAll(sb, 1000)
    assert.deepEqual(
      frames.map((f) => [f.offset, f.payload.length, f.fin]),
      [
        [0, 100, false],
        [100, 100, false],
        [200, 50, true]
      ]
    )
    assert.equal(sb.next(1000, 0), undefined)
  })

  it('waits for credit for the last byte', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(100, 1))
    sb.end()
    assert.equal(sb.next(60, 0)?.fin, false)
    assert.equal(sb.hasSendable(60), false)
    const last = sb.next(100, 0)
    assert.deepEqual([last?.offset, last?.payload.length, last?.fin], [60, 40, true])
  })

  it('is a bare frame when the data went out before the end', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(50, 1))
    assert.equal(takeAll(sb, 1000).length, 1)
    sb.end()
    assert.ok(sb.hasSendable(0))
    const fin = sb.next(0, 0)
    assert.deepEqual(
      [fin?.offset, fin?.payload.length, fin?.fin, fin?.resend],
      [50, 0, true, false]
    )
    assert.equal(sb.next(1000, 0), undefined)
  })

  it('an empty stream sends a bare FIN at offset 0', () => {
    const sb = new SendBuffer(100)
    sb.end()
    assert.ok(sb.ended)
    const fin = sb.next(0, 0)
    assert.deepEqual([fin?.offset, fin?.payload.length, fin?.fin], [0, 0, true])
    assert.equal(sb.finished, false)
    sb.onAck(0, true)
    assert.ok(sb.finished)
  })

  it('finished only when the FIN and every byte are acknowledged', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(150, 1))
    sb.end()
    takeAll(sb, 1000)
    sb.onAck(100, true)
    assert.equal(sb.finished, false)
    sb.onAck(150, false)
    assert.equal(sb.finished, false)
    sb.onAck(150, true)
    assert.ok(sb.finished)
    assert.equal(sb.bufferedBytes, 0)
  })
})

describe('SendBuffer: acknowledgements', () => {
  it('onAck frees bytes and returns how many; old and repeated ACKs free nothing', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(5000, 1))
    takeAll(sb, 1000)
    assert.equal(sb.bufferedBytes, 5000)
    assert.equal(sb.onAck(300, false), 300)
    assert.equal(sb.acked, 300)
    assert.equal(sb.bufferedBytes, 4700)
    assert.equal(sb.onAck(300, false), 0)
    assert.equal(sb.onAck(200, false), 0)
    assert.equal(sb.onAck(1000, false), 700)
    assert.equal(sb.bufferedBytes, 4000)
  })

  it('an ACK beyond what was sent frees only what was sent', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(500, 1))
    takeAll(sb, 200)
    assert.equal(sb.onAck(10_000, false), 200)
    assert.equal(sb.acked, 200)
    const next = sb.next(1000, 0)
    assert.equal(next?.offset, 200)
  })

  it('many appends, sends and ACKs keep handing out the right bytes', () => {
    const sb = new SendBuffer(1000)
    const all: Uint8Array[] = []
    const sent: Uint8Array[] = []
    for (let i = 0; i < 300; i++) {
      const c = patternBytes(4096 + i, i)
      all.push(c)
      sb.append(c)
      sent.push(...takeAll(sb, sb.appendedBytes).map((f) => f.payload))
      sb.onAck(sb.sentOffset - 100, false)
    }
    assert.ok(Buffer.from(concat(sent)).equals(Buffer.from(concat(all))))
    assert.equal(sb.bufferedBytes, 100)
  })
})

describe('SendBuffer: subflow loss', () => {
  it('re-queues exactly the unacknowledged ranges the lost subflow carried', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(600, 1))
    // Frames 0..5 alternate between subflows 1 and 2.
    for (let i = 0; i < 6; i++) assert.equal(sb.next(1000, 1 + (i % 2))?.offset, i * 100)
    sb.onAck(150, false)
    // Subflow 2 carried [100,200), [300,400), [500,600); [100,150) is acknowledged.
    assert.equal(sb.onSubflowLost(2), 250)
    const resent = takeAll(sb, 1000, 1)
    assert.deepEqual(
      resent.map((f) => [f.offset, f.payload.length, f.resend]),
      [
        [150, 50, true],
        [300, 100, true],
        [500, 100, true]
      ]
    )
    assert.equal(sb.onSubflowLost(2), 0)
    assert.equal(sb.onSubflowLost(7), 0)
  })

  it('a lost FIN is sent again, bare when its bytes were acknowledged', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(100, 1))
    sb.end()
    const d = sb.next(1000, 3)
    assert.equal(d?.fin, true)
    sb.onAck(100, false)
    assert.equal(sb.onSubflowLost(3), 0)
    const again = sb.next(1000, 4)
    assert.deepEqual(
      [again?.offset, again?.payload.length, again?.fin, again?.resend],
      [100, 0, true, true]
    )
    sb.onAck(100, true)
    assert.ok(sb.finished)
    assert.equal(sb.onSubflowLost(4), 0)
  })

  it('nothing is re-sent once the FIN is acknowledged', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(300, 1))
    sb.end()
    takeAll(sb, 1000, 5)
    sb.onAck(300, true)
    assert.equal(sb.onSubflowLost(5), 0)
    assert.equal(sb.hasSendable(1000), false)
  })

  /** When subflows die: after `fraction` of the stream was appended, subflow `id` dies. */
  const scenarios: readonly {
    readonly name: string
    readonly kills: readonly { fraction: number; id: number }[]
  }[] = [
    { name: 'subflow 2 dies half way', kills: [{ fraction: 0.5, id: 2 }] },
    { name: 'subflow 2 dies as the stream ends', kills: [{ fraction: 1, id: 2 }] },
    {
      name: 'subflow 2 dies, then subflow 0',
      kills: [
        { fraction: 0.3, id: 2 },
        { fraction: 0.7, id: 0 }
      ]
    }
  ]
  for (const { name, kills } of scenarios) {
    for (const seed of [1, 2, 3, 4]) {
      it(`3 subflows, ${name}: the receiver reassembles the stream exactly (seed ${seed})`, () => {
        const random = rng(seed)
        const stream = patternBytes(60_000, seed)
        const sb = new SendBuffer(1000)
        const rb = new ReorderBuffer(10_000)
        const limit = stream.length
        const inFlight = new Map<number, DataToSend[]>([
          [0, []],
          [1, []],
          [2, []]
        ])
        const alive = new Set([0, 1, 2])
        /** Bytes each subflow carried, re-sends included. */
        const carried = new Map<number, number>([
          [0, 0],
          [1, 0],
          [2, 0]
        ])
        let carriedByDead = 0
        let queued = 0
        let resentBytes = 0
        let appended = 0
        let rr = 0
        const pending = [...kills]
        for (let round = 0; !sb.finished; round++) {
          assert.ok(round < 10_000, 'no progress')
          if (appended < stream.length) {
            const n = Math.min(stream.length - appended, 4096 + Math.floor(random() * 6000))
            sb.append(stream.subarray(appended, appended + n))
            appended += n
            if (appended === stream.length) sb.end()
          }
          for (let k = 0; k < 8; k++) {
            const ids = [...alive]
            const id = ids[rr++ % ids.length]!
            const d = sb.next(limit, id)
            if (d === undefined) break
            if (d.resend) resentBytes += d.payload.length
            carried.set(id, carried.get(id)! + d.payload.length)
            inFlight.get(id)!.push(d)
          }
          // Each live subflow delivers some of its frames, in order; the receiver ACKs.
          for (const id of alive) {
            const q = inFlight.get(id)!
            for (const d of q.splice(0, Math.floor(random() * (q.length + 1)))) {
              rb.insert(d.offset, d.payload, d.fin, limit)
            }
          }
          sb.onAck(rb.received, rb.finReceived)
          const kill = pending[0]
          if (kill !== undefined && appended >= stream.length * kill.fraction) {
            pending.shift()
            // What is still in flight on the dead subflow never arrives.
            alive.delete(kill.id)
            inFlight.get(kill.id)!.length = 0
            const q = sb.onSubflowLost(kill.id)
            assert.ok(q <= carried.get(kill.id)!)
            queued += q
            carriedByDead += carried.get(kill.id)!
          }
        }
        assert.equal(pending.length, 0)
        assert.ok(resentBytes <= carriedByDead, `${resentBytes} re-sent > ${carriedByDead} carried`)
        assert.ok(resentBytes <= queued, `${resentBytes} re-sent > ${queued} queued`)
        const out: Uint8Array[] = []
        for (let c = rb.shift(); c !== undefined; c = rb.shift()) out.push(c)
        assert.ok(Buffer.from(concat(out)).equals(Buffer.from(stream)))
        assert.ok(rb.finDelivered)
        assert.equal(sb.bufferedBytes, 0)
      })
    }
  }
})

describe('SendBuffer: resendAll and clear', () => {
  it('resendAll hands out everything unacknowledged again, then fresh data', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(1000, 1))
    takeAll(sb, 400)
    sb.onAck(150, false)
    sb.resendAll()
    const frames = takeAll(sb, 1000, 9)
    assert.deepEqual(
      frames.map((f) => [f.offset, f.payload.length, f.resend]),
      [
        [150, 100, true],
        [250, 100, true],
        [350, 50, true],
        [400, 100, false],
        [500, 100, false],
        [600, 100, false],
        [700, 100, false],
        [800, 100, false],
        [900, 100, false]
      ]
    )
  })

  it('resendAll includes a FIN that was sent', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(50, 1))
    sb.end()
    takeAll(sb, 1000)
    sb.resendAll()
    const again = takeAll(sb, 1000)
    assert.deepEqual(
      again.map((f) => [f.offset, f.payload.length, f.fin, f.resend]),
      [[0, 50, true, true]]
    )
  })

  it('resendAll with nothing sent queues nothing', () => {
    const sb = new SendBuffer(100)
    sb.resendAll()
    assert.equal(sb.hasSendable(1000), false)
  })

  it('clear drops everything and returns the bytes held', () => {
    const sb = new SendBuffer(100)
    sb.append(patternBytes(700, 1))
    takeAll(sb, 300)
    sb.onAck(100, false)
    assert.equal(sb.clear(), 600)
    assert.equal(sb.bufferedBytes, 0)
    assert.equal(sb.onSubflowLost(0), 0)
  })
})
