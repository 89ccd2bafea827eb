/**
 * ReorderBuffer (quic-go frame_sorter_test.go): 1000 shuffled frames with duplicates and
 * overlapping re-cuts reassemble to the original; byte accounting checked against a model after
 * every insert; FIN rules; the credit limit; the gap cap. A fast-check version at the end.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import { PepErrorCodes, ProtocolError, type PepErrorCode } from '../../../src/common/errors.js'
import { ResetReason } from '../../../src/common/wire/frame.js'
import { ReorderBuffer } from '../../../src/core/reorder-buffer.js'
import { concat, patternBytes, rng, shuffle } from '../../helpers/frames.js'

interface Piece {
  readonly offset: number
  readonly data: Uint8Array
  readonly fin: boolean
}

/**
 * `count` frames cutting `stream` at random points, plus `dups` exact duplicates and `recuts`
 * ranges of the same bytes cut differently (partially overlapping the frames), shuffled.
 */
function pieces(
  stream: Uint8Array,
  count: number,
  dups: number,
  recuts: number,
  random: () => number
): Piece[] {
  const cuts = new Set<number>()
  while (cuts.size < count - 1) cuts.add(1 + Math.floor(random() * (stream.length - 1)))
  const points = [0, ...[...cuts].sort((a, b) => a - b), stream.length]
  const frames: Piece[] = []
  for (let i = 0; i + 1 < points.length; i++) {
    const [a, b] = [points[i]!, points[i + 1]!]
    frames.push({ offset: a, data: stream.subarray(a, b), fin: b === stream.length })
  }
  const extra: Piece[] = []
  for (let i = 0; i < dups; i++) extra.push(frames[Math.floor(random() * frames.length)]!)
  for (let i = 0; i < recuts; i++) {
    const a = Math.floor(random() * stream.length)
    const b = Math.min(stream.length, a + 1 + Math.floor(random() * 64))
    extra.push({ offset: a, data: stream.subarray(a, b), fin: b === stream.length })
  }
  return shuffle([...frames, ...extra], random)
}

/** What a correct buffer knows: which bytes it has, how far it delivered (kept incrementally). */
class Model {
  private readonly have: Uint8Array
  private deliveredOffset = 0
  private receivedOffset = 0
  private heldCount = 0
  constructor(size: number) {
    this.have = new Uint8Array(size)
  }
  /** Marks [offset, offset + length) received; returns how many bytes were new. */
  insert(offset: number, length: number): number {
    let fresh = 0
    for (let i = offset; i < offset + length; i++) {
      if (this.have[i] === 0) {
        fresh++
        this.have[i] = 1
      }
    }
    this.heldCount += fresh
    while (this.receivedOffset < this.have.length && this.have[this.receivedOffset] === 1) {
      this.receivedOffset++
    }
    return fresh
  }
  deliver(length: number): void {
    this.deliveredOffset += length
    this.heldCount -= length
  }
  get delivered(): number {
    return this.deliveredOffset
  }
  get received(): number {
    return this.receivedOffset
  }
  get held(): number {
    return this.heldCount
  }
}

function checkInvariants(rb: ReorderBuffer, model: Model, limit: number): void {
  assert.equal(rb.delivered, model.delivered)
  assert.equal(rb.received, model.received)
  assert.equal(rb.heldBytes, model.held)
  assert.ok(rb.received >= rb.delivered)
  assert.ok(rb.heldBytes <= limit - rb.delivered)
}

function drain(rb: ReorderBuffer, model?: Model): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let c = rb.shift(); c !== undefined; c = rb.shift()) {
    out.push(c)
    model?.deliver(c.length)
  }
  return out
}

function assertCode(fn: () => unknown, code: PepErrorCode, closeReason: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, String(err))
    assert.equal(err.code, code)
    assert.equal(err.closeReason, closeReason)
    return true
  })
}

describe('ReorderBuffer: shuffled frames with duplicates and overlaps', () => {
  for (const seed of [1, 2, 3]) {
    it(`1000 frames + 300 duplicates + 500 re-cuts reassemble (seed ${seed})`, () => {
      const random = rng(seed)
      const stream = patternBytes(40_000 + Math.floor(random() * 20_000), seed)
      const all = pieces(stream, 1000, 300, 500, random)
      const rb = new ReorderBuffer(100_000)
      const model = new Model(stream.length)
      const limit = stream.length
      const out: Uint8Array[] = []
      let newTotal = 0
      let dupTotal = 0
      let insertedTotal = 0
      for (const p of all) {
        const fresh = model.insert(p.offset, p.data.length)
        const r = rb.insert(p.offset, p.data, p.fin, limit)
        assert.equal(r.newBytes, fresh)
        assert.equal(r.newBytes + r.duplicateBytes, p.data.length)
        newTotal += r.newBytes
        dupTotal += r.duplicateBytes
        insertedTotal += p.data.length
        checkInvariants(rb, model, limit)
        // Deliver now and then, as an application that reads at its own pace.
        if (random() < 0.2) out.push(...drain(rb, model))
        checkInvariants(rb, model, limit)
      }
      out.push(...drain(rb, model))
      assert.equal(newTotal, stream.length)
      assert.equal(dupTotal, insertedTotal - stream.length)
      assert.ok(Buffer.from(concat(out)).equals(Buffer.from(stream)))
      assert.equal(rb.heldBytes, 0)
      assert.equal(rb.fin, stream.length)
      assert.ok(rb.finReceived)
      assert.ok(rb.finDelivered)
      assert.equal(rb.shift(), undefined)
    })
  }

  it('each byte is shifted out exactly once, in order, even when re-sent after delivery', () => {
    const stream = patternBytes(1000, 9)
    const rb = new ReorderBuffer(1000)
    rb.insert(0, stream.subarray(0, 600), false, 1000)
    const first = drain(rb)
    // A re-send of everything arrives after the first part was delivered.
    const r = rb.insert(0, stream, true, 1000)
    assert.deepEqual(r, { newBytes: 400, duplicateBytes: 600 })
    const second = drain(rb)
    assert.ok(Buffer.from(concat([...first, ...second])).equals(Buffer.from(stream)))
    assert.deepEqual(rb.insert(0, stream, true, 1000), { newBytes: 0, duplicateBytes: 1000 })
    assert.equal(rb.shift(), undefined)
  })

  it('shift() returns undefined while the next byte is missing', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(5, patternBytes(5, 1), false, 100)
    assert.equal(rb.shift(), undefined)
    assert.equal(rb.received, 0)
    assert.equal(rb.heldBytes, 5)
    rb.insert(0, patternBytes(5, 2), false, 100)
    assert.equal(rb.received, 10)
    assert.equal(
      drain(rb).reduce((n, c) => n + c.length, 0),
      10
    )
    assert.equal(rb.delivered, 10)
  })

  it('a frame overlapping held ranges on both sides only adds the gaps', () => {
    const s = patternBytes(100, 3)
    const rb = new ReorderBuffer(16)
    rb.insert(10, s.subarray(10, 20), false, 100)
    rb.insert(30, s.subarray(30, 40), false, 100)
    assert.deepEqual(rb.insert(5, s.subarray(5, 45), false, 100), {
      newBytes: 20,
      duplicateBytes: 20
    })
    assert.equal(rb.heldBytes, 40)
    rb.insert(0, s.subarray(0, 5), false, 100)
    assert.equal(rb.received, 45)
    assert.ok(Buffer.from(concat(drain(rb))).equals(Buffer.from(s.subarray(0, 45))))
  })

  it('clear() drops what is held and returns its size', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(3, patternBytes(7, 1), false, 100)
    rb.insert(20, patternBytes(4, 1), false, 100)
    assert.equal(rb.clear(), 11)
    assert.equal(rb.heldBytes, 0)
    assert.equal(rb.shift(), undefined)
  })
})

describe('ReorderBuffer: FIN', () => {
  it('finReceived once every byte before the FIN is in, finDelivered once shifted out', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(5, patternBytes(5, 1), true, 100)
    assert.equal(rb.fin, 10)
    assert.equal(rb.finReceived, false)
    rb.insert(0, patternBytes(5, 2), false, 100)
    assert.ok(rb.finReceived)
    assert.equal(rb.finDelivered, false)
    drain(rb)
    assert.ok(rb.finDelivered)
  })

  it('a bare FIN (no payload) at the end of the data', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(8, 1), false, 100)
    drain(rb)
    assert.deepEqual(rb.insert(8, new Uint8Array(0), true, 100), { newBytes: 0, duplicateBytes: 0 })
    assert.ok(rb.finReceived)
    assert.ok(rb.finDelivered)
  })

  it('a FIN on an empty stream is received and delivered at once', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, new Uint8Array(0), true, 0)
    assert.equal(rb.fin, 0)
    assert.ok(rb.finReceived)
    assert.ok(rb.finDelivered)
  })

  it('the same FIN twice is fine', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(4, 1), true, 100)
    rb.insert(0, patternBytes(4, 1), true, 100)
    rb.insert(4, new Uint8Array(0), true, 100)
    assert.equal(rb.fin, 4)
  })

  it('a FIN that moves → FLOW_STATE', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(10, 1), true, 100)
    assertCode(
      () => rb.insert(0, patternBytes(5, 1), true, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
    const rb2 = new ReorderBuffer(16)
    rb2.insert(0, patternBytes(10, 1), true, 100)
    assertCode(
      () => rb2.insert(10, patternBytes(5, 1), true, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
  })

  it('data beyond the FIN → FLOW_STATE', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(10, 1), true, 100)
    assertCode(
      () => rb.insert(8, patternBytes(5, 1), false, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
    assertCode(
      () => rb.insert(11, new Uint8Array(0), false, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
  })

  it('a FIN below data already received or held → FLOW_STATE', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(20, 1), false, 100)
    assertCode(
      () => rb.insert(0, patternBytes(10, 1), true, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
    const rb2 = new ReorderBuffer(16)
    rb2.insert(30, patternBytes(10, 1), false, 100)
    assertCode(
      () => rb2.insert(0, patternBytes(10, 1), true, 100),
      PepErrorCodes.FLOW_STATE,
      ResetReason.PROTOCOL_ERROR
    )
  })
})

describe('ReorderBuffer: limits', () => {
  it('data ending exactly at the limit is accepted; one byte more → CREDIT_EXCEEDED (reason 13)', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(90, patternBytes(10, 1), false, 100)
    assertCode(
      () => rb.insert(95, patternBytes(6, 1), false, 100),
      PepErrorCodes.CREDIT_EXCEEDED,
      ResetReason.CREDIT_EXCEEDED
    )
    assert.equal(ResetReason.CREDIT_EXCEEDED, 13)
    assertCode(
      () => rb.insert(100, new Uint8Array(0), false, 99),
      PepErrorCodes.CREDIT_EXCEEDED,
      ResetReason.CREDIT_EXCEEDED
    )
    assert.equal(rb.heldBytes, 10)
  })

  it('the limit is checked against the end of the frame, even for duplicate bytes', () => {
    const rb = new ReorderBuffer(16)
    rb.insert(0, patternBytes(10, 1), false, 10)
    assertCode(
      () => rb.insert(0, patternBytes(11, 1), false, 10),
      PepErrorCodes.CREDIT_EXCEEDED,
      13
    )
  })

  it('maxSegments separate ranges are held; one more → TOO_MANY_GAPS', () => {
    const rb = new ReorderBuffer(16)
    for (let i = 0; i < 16; i++) rb.insert(2 + 2 * i, Uint8Array.of(i), false, 1000)
    assert.equal(rb.heldBytes, 16)
    assertCode(
      () => rb.insert(100, Uint8Array.of(1), false, 1000),
      PepErrorCodes.TOO_MANY_GAPS,
      ResetReason.PROTOCOL_ERROR
    )
  })

  it('delivered ranges no longer count against the cap', () => {
    const rb = new ReorderBuffer(16)
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 16; i++) rb.insert(round * 16 + i, Uint8Array.of(i), false, 1000)
      assert.equal(drain(rb).length, 16)
    }
    assert.equal(rb.delivered, 160)
  })

  it('in-order data held for a slow reader is one range, not a range per frame', () => {
    const rb = new ReorderBuffer(16)
    for (let i = 0; i < 17; i++) rb.insert(i, Uint8Array.of(i), false, 1000)
    assert.equal(rb.received, 17)
    assert.equal(rb.heldBytes, 17)
    // Filling the gap between two held ranges joins them: no new range either.
    const rb2 = new ReorderBuffer(16)
    for (let i = 0; i < 16; i++) rb2.insert(2 + 2 * i, Uint8Array.of(i), false, 1000)
    rb2.insert(0, Uint8Array.of(9, 9), false, 1000)
    assert.equal(rb2.received, 3)
  })
})

describe('ReorderBuffer: property', () => {
  it('any cut, duplication, re-cut and order of a stream reassembles exactly', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 60 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 200 })), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.nat(),
        fc.boolean(),
        (size, cutSeeds, recutSeeds, dupSeeds, seed, interleave) => {
          const stream = patternBytes(size, seed)
          const points = [...new Set([0, size, ...cutSeeds.map((c) => c % size)])].sort(
            (a, b) => a - b
          )
          const frames: Piece[] = []
          for (let i = 0; i + 1 < points.length; i++) {
            const [a, b] = [points[i]!, points[i + 1]!]
            frames.push({ offset: a, data: stream.subarray(a, b), fin: b === size })
          }
          for (const d of dupSeeds) frames.push(frames[d % frames.length]!)
          for (const [start, len] of recutSeeds) {
            const a = start % size
            const b = Math.min(size, a + len)
            frames.push({ offset: a, data: stream.subarray(a, b), fin: b === size })
          }
          const order = shuffle(frames, rng(seed))
          const rb = new ReorderBuffer(10_000)
          const model = new Model(size)
          const out: Uint8Array[] = []
          let fresh = 0
          for (const p of order) {
            model.insert(p.offset, p.data.length)
            fresh += rb.insert(p.offset, p.data, p.fin, size).newBytes
            if (interleave) out.push(...drain(rb, model))
            checkInvariants(rb, model, size)
          }
          out.push(...drain(rb, model))
          assert.equal(fresh, size)
          assert.ok(Buffer.from(concat(out)).equals(Buffer.from(stream)))
          assert.ok(rb.finDelivered)
        }
      ),
      { numRuns: 300 }
    )
  })
})
