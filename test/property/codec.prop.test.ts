/**
 * Codec properties (yamux's "chaotic" decode case, quic-go's FuzzFrames seeded with valid
 * encodings): any frames, split anywhere, decode to themselves; and no input, random or a mutated
 * valid encoding, makes a decoder throw anything but a ProtocolError or hold more than one frame.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import { ProtocolError } from '../../src/common/errors.js'
import { FrameDecoder, HelloDecoder } from '../../src/common/wire/decode.js'
import { encodeFrame, encodeHello, frameLength } from '../../src/common/wire/encode.js'
import { HelloKind, type Frame } from '../../src/common/wire/frame.js'
import {
  comparable,
  concat,
  frameArb,
  helloArb,
  refEncodeFrame,
  splitAt
} from '../helpers/frames.js'

/** Large enough for the biggest arbitrary DATA frame (8 + 70000 bytes). */
const MAX_BODY = 128 * 1024

describe('codec properties', () => {
  it('decode(concat(encode(frames))) split anywhere equals the frames', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb(), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 24 }),
        (frames, cuts) => {
          const encoded = frames.map(encodeFrame)
          encoded.forEach((bytes, i) => {
            assert.equal(bytes.length, frameLength(frames[i]!))
          })
          const d = new FrameDecoder(MAX_BODY)
          const out: Frame[] = []
          for (const piece of splitAt(concat(encoded), cuts)) out.push(...d.push(piece))
          d.end()
          assert.deepEqual(out.map(comparable), frames.map(comparable))
        }
      ),
      { numRuns: 2000 }
    )
  })

  it('encodeFrame equals the reference encoder on every frame', () => {
    fc.assert(
      fc.property(frameArb(2000), (frame) => {
        assert.deepEqual(Buffer.from(encodeFrame(frame)), Buffer.from(refEncodeFrame(frame)))
      }),
      { numRuns: 3000 }
    )
  })

  it('hellos round-trip, with frames behind them in rest', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<1 | 2>(1, 2).chain(helloArb),
        fc.array(frameArb(100), { maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (hello, frames, cuts) => {
          const after = concat(frames.map(encodeFrame))
          const d = new HelloDecoder(hello.kind)
          let result
          const later: Uint8Array[] = []
          for (const piece of splitAt(concat([encodeHello(hello), after]), cuts)) {
            if (result === undefined) result = d.push(piece)
            else later.push(piece)
          }
          assert.ok(result)
          assert.deepEqual(result.hello, hello)
          assert.deepEqual(Buffer.from(concat([result.rest, ...later])), Buffer.from(after))
        }
      ),
      { numRuns: 500 }
    )
  })
})

/** One change to a byte string. */
type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  | { readonly op: 'insert'; readonly at: number; readonly value: number }
  | { readonly op: 'delete'; readonly at: number; readonly count: number }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({
    op: fc.constant('delete' as const),
    at: fc.nat(),
    count: fc.integer({ min: 1, max: 8 })
  })
)

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let out = Array.from(bytes)
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % (out.length + (m.op === 'insert' ? 1 : 0))
    switch (m.op) {
      case 'flip':
        if (out.length > 0) out[at] = out[at]! ^ (1 << m.bit)
        break
      case 'set':
        if (out.length > 0) out[at] = m.value
        break
      case 'insert':
        out.splice(at, 0, m.value)
        break
      case 'delete':
        out = [...out.slice(0, at), ...out.slice(at + m.count)]
        break
    }
  }
  return Uint8Array.from(out)
}

/** Small frames for fuzzing (the decoder's limits matter here, not bulk payloads). */
const smallFrames = fc.array(frameArb(300), { minLength: 1, maxLength: 6 })

/** Byte strings: random, and valid encodings (sometimes behind a hello) mutated. */
const hostileBytes = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  fc
    .tuple(smallFrames, fc.array(mutationArb, { minLength: 1, maxLength: 6 }))
    .map(([frames, ms]) => mutate(concat(frames.map(encodeFrame)), ms)),
  fc
    .tuple(helloArb(1), smallFrames, fc.array(mutationArb, { maxLength: 4 }))
    .map(([h, frames, ms]) => mutate(concat([encodeHello(h), ...frames.map(encodeFrame)]), ms))
)

/** The error, when `fn` throws; asserts it is a ProtocolError. */
function onlyProtocolErrors(fn: () => void): void {
  try {
    fn()
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      assert.fail(
        `not a ProtocolError: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`
      )
    }
  }
}

describe('hostile input', () => {
  // 3 properties × 7,000 runs: more than 20,000 inputs in all.
  const RUNS = 7000

  it('FrameDecoder throws only ProtocolError and buffers at most one frame plus one chunk', () => {
    fc.assert(
      fc.property(
        hostileBytes,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(64, 100, 300, 1024),
        (bytes, cuts, maxFrameBody) => {
          const d = new FrameDecoder(maxFrameBody)
          onlyProtocolErrors(() => {
            for (const piece of splitAt(bytes, cuts)) {
              try {
                d.push(piece)
              } finally {
                assert.ok(d.bufferedBytes <= 12 + maxFrameBody + piece.length)
              }
            }
            d.end()
          })
        }
      ),
      { numRuns: RUNS }
    )
  })

  it('HelloDecoder throws only ProtocolError and buffers at most one hello plus one chunk', () => {
    fc.assert(
      fc.property(
        hostileBytes,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(HelloKind.HELLO, HelloKind.REPLY),
        (bytes, cuts, kind) => {
          const d = new HelloDecoder(kind)
          onlyProtocolErrors(() => {
            for (const piece of splitAt(bytes, cuts)) {
              let done
              try {
                done = d.push(piece)
              } finally {
                assert.ok(d.bufferedBytes <= 40 + 1024 + piece.length)
              }
              if (done) break
            }
          })
        }
      ),
      { numRuns: RUNS }
    )
  })

  it('a hello, then frames, mutated: the subflow decoder chain throws only ProtocolError', () => {
    fc.assert(
      fc.property(
        helloArb(2),
        smallFrames,
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (hello, frames, ms, cuts) => {
          const bytes = mutate(concat([encodeHello(hello), ...frames.map(encodeFrame)]), ms)
          const hd = new HelloDecoder(HelloKind.REPLY)
          let fd: FrameDecoder | undefined
          let maxBody = 0
          onlyProtocolErrors(() => {
            for (const piece of splitAt(bytes, cuts)) {
              if (fd === undefined) {
                const r = hd.push(piece)
                if (r === undefined) continue
                maxBody = r.hello.maxFrameBody
                fd = new FrameDecoder(maxBody)
                fd.push(r.rest)
                assert.ok(fd.bufferedBytes <= 12 + maxBody + r.rest.length)
              } else {
                fd.push(piece)
                assert.ok(fd.bufferedBytes <= 12 + maxBody + piece.length)
              }
            }
          })
        }
      ),
      { numRuns: RUNS }
    )
  })
})
