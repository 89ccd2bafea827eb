/**
 * Fuzzing the three incremental parsers a peer's bytes meet first (issue 6): FrameDecoder,
 * HelloDecoder and RecordOpener get random bytes, structured noise, and valid encodings with
 * flips, overwrites, inserts, deletes and truncations, pushed in random pieces. For every input:
 * nothing but a ProtocolError escapes; after every push that returns, the bytes held stay within
 * the documented bound; and progress is always made: everything before the first changed byte
 * that forms complete frames, hellos or records comes out, at the push that completes it, and a
 * record never yields anything but what was sealed. More than 100,000 inputs in all.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'

import fc from 'fast-check'

import { ProtocolError } from '../../src/common/errors.js'
import { FrameDecoder, HelloDecoder } from '../../src/common/wire/decode.js'
import { encodeFrame, encodeHello } from '../../src/common/wire/encode.js'
import {
  FRAME_HEADER_LENGTH,
  HELLO_FIXED_LENGTH,
  HelloKind,
  HelloStatus,
  MAX_AUTH_LENGTH,
  MAX_MAX_FRAME_BODY,
  MIN_MAX_FRAME_BODY,
  type Frame,
  type Hello
} from '../../src/common/wire/frame.js'
import {
  RECORD_HEADER_LENGTH,
  RecordOpener,
  RecordSealer,
  TAG_LENGTH
} from '../../src/common/wire/record.js'
import {
  byteMutationArb,
  comparable,
  concat,
  frameArb,
  helloArb,
  mutateBytes,
  patternBytes,
  splitAt
} from '../helpers/frames.js'

/** Inputs tried so far, over every property of this file. */
let inputs = 0

/** Cut points: up to 12, anywhere. */
const cutsArb = fc.array(fc.nat(), { maxLength: 12 })

/** Run `fn`; any throw other than a ProtocolError fails the property. Returns the error, if any. */
function onlyProtocolErrors(fn: () => void): ProtocolError | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    if (err instanceof ProtocolError) return err
    assert.fail(
      `not a ProtocolError: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`
    )
  }
}

/** End offsets of each part when `parts` are laid end to end. */
function ends(parts: readonly Uint8Array[]): number[] {
  let at = 0
  return parts.map((p) => (at += p.length))
}

/** A received frame is one the protocol allows (whatever bytes it came from). */
function assertWellFormed(f: Frame): void {
  const trunkFrame = f.type === 'ping' || f.type === 'pong' || f.type === 'goaway'
  assert.equal(f.flowId === 0, trunkFrame, `${f.type} with flow id ${f.flowId}`)
  assert.ok(Number.isInteger(f.flowId) && f.flowId >= 0 && f.flowId <= 0xffffffff)
  switch (f.type) {
    case 'data':
      assert.ok(f.offset + f.payload.length <= Number.MAX_SAFE_INTEGER)
      break
    case 'ack':
      assert.ok(Number.isSafeInteger(f.received) && Number.isSafeInteger(f.limit))
      assert.ok(Number.isInteger(f.epoch) && f.epoch >= 0 && f.epoch <= 0xffffffff)
      break
    case 'release':
      assert.ok(Number.isSafeInteger(f.limit))
      assert.ok(Number.isInteger(f.epoch) && f.epoch >= 0 && f.epoch <= 0xffffffff)
      break
    case 'ping':
      assert.ok(Number.isSafeInteger(f.token))
      break
    case 'pong':
      assert.ok(Number.isSafeInteger(f.token) && Number.isSafeInteger(f.sendRate))
      break
    case 'open':
      assert.equal(f.src === undefined || f.src.family === f.dst.family, true)
      break
    case 'reset':
    case 'goaway':
      break
  }
}

// ---- FrameDecoder ---------------------------------------------------------------------------

/** A 12-byte header of any type, flags, flow id and length, then up to 48 body bytes. */
const headerishArb = fc
  .record({
    type: fc.integer({ min: 0, max: 10 }),
    flags: fc.nat(255),
    flowId: fc.oneof(fc.constantFrom(0, 1, 0xffffffff), fc.nat({ max: 0xffffffff })),
    length: fc.oneof(
      fc.nat(48),
      fc.constantFrom(0, 2, 8, 12, 16, 20, 24, 40, 258, 259, 64, 65, 1024, 1025, 0xffffffff),
      fc.nat({ max: 0xffffffff })
    ),
    seed: fc.nat()
  })
  .map(({ type, flags, flowId, length, seed }) => {
    const head = new Uint8Array(FRAME_HEADER_LENGTH)
    const v = new DataView(head.buffer)
    v.setUint8(0, type)
    v.setUint8(1, flags)
    v.setUint32(4, flowId)
    v.setUint32(8, length)
    return concat([head, patternBytes(Math.min(length, 48), seed)])
  })

/** Random bytes, or headers of every kind with short bodies. */
const frameNoiseArb = fc.oneof(
  fc.uint8Array({ maxLength: 96 }),
  fc.array(headerishArb, { minLength: 1, maxLength: 4 }).map(concat)
)

/** Frames small enough that every one fits a 1024-byte maximum body. */
const smallFramesArb = fc.array(frameArb(64), { minLength: 1, maxLength: 5 })
const SMALL_MAX_BODY = 1024

/**
 * Feed `pieces` to a FrameDecoder with `maxBody`, checking the buffer bound after each push that
 * returns. Returns every frame returned, how many bytes went in through pushes that returned,
 * and the error that stopped it.
 */
function feedFrames(
  pieces: readonly Uint8Array[],
  maxBody: number
): { frames: Frame[]; fedOk: number; error: ProtocolError | undefined } {
  const d = new FrameDecoder(maxBody)
  const frames: Frame[] = []
  let fedOk = 0
  const error = onlyProtocolErrors(() => {
    for (const piece of pieces) {
      frames.push(...d.push(piece))
      fedOk += piece.length
      assert.ok(
        d.bufferedBytes <= FRAME_HEADER_LENGTH + maxBody,
        `${d.bufferedBytes} bytes held with a ${maxBody}-byte maximum body`
      )
    }
  })
  for (const f of frames) assertWellFormed(f)
  return { frames, fedOk, error }
}

describe('fuzzing FrameDecoder', () => {
  it('random bytes and random headers: only ProtocolError, bounded, well-formed frames', () => {
    fc.assert(
      fc.property(
        frameNoiseArb,
        cutsArb,
        fc.constantFrom(64, 100, 1024, 65536),
        (bytes, cuts, maxBody) => {
          inputs++
          feedFrames(splitAt(bytes, cuts), maxBody)
        }
      ),
      { numRuns: 25_000 }
    )
  })

  it('valid frames mutated: the unchanged prefix still comes out, frame for frame', () => {
    fc.assert(
      fc.property(
        smallFramesArb,
        fc.array(byteMutationArb, { minLength: 1, maxLength: 4 }),
        cutsArb,
        (frames, mutations, cuts) => {
          inputs++
          const encoded = frames.map(encodeFrame)
          const { bytes, unchanged } = mutateBytes(concat(encoded), mutations)
          const r = feedFrames(splitAt(bytes, cuts), SMALL_MAX_BODY)
          // Every frame lying wholly in the unchanged prefix and in what was fed without error.
          const limit = Math.min(unchanged, r.fedOk)
          const due = ends(encoded).filter((e) => e <= limit).length
          assert.ok(r.frames.length >= due, `${r.frames.length} frames out, ${due} due`)
          assert.deepEqual(
            r.frames.slice(0, due).map(comparable),
            frames.slice(0, due).map(comparable)
          )
        }
      ),
      { numRuns: 25_000 }
    )
  })

  it('valid frames in random pieces: each frame comes out at the push that completes it', () => {
    fc.assert(
      fc.property(smallFramesArb, cutsArb, (frames, cuts) => {
        inputs++
        const encoded = frames.map(encodeFrame)
        const frameEnds = ends(encoded)
        const d = new FrameDecoder(SMALL_MAX_BODY)
        const out: Frame[] = []
        let fed = 0
        for (const piece of splitAt(concat(encoded), cuts)) {
          out.push(...d.push(piece))
          fed += piece.length
          assert.equal(out.length, frameEnds.filter((e) => e <= fed).length)
          assert.equal(d.atBoundary, frameEnds.includes(fed) || fed === 0)
          assert.ok(d.bufferedBytes <= FRAME_HEADER_LENGTH + SMALL_MAX_BODY)
        }
        d.end()
        assert.deepEqual(out.map(comparable), frames.map(comparable))
      }),
      { numRuns: 10_000 }
    )
  })

  it('a 64 KiB frame trickled one byte at a time costs linear time', () => {
    const frame: Frame = {
      type: 'data',
      flowId: 9,
      offset: 0,
      fin: false,
      payload: patternBytes(65536, 3)
    }
    const bytes = encodeFrame(frame)
    const d = new FrameDecoder(MAX_MAX_FRAME_BODY)
    const t0 = performance.now()
    const out: Frame[] = []
    for (let i = 0; i < bytes.length; i++) out.push(...d.push(bytes.subarray(i, i + 1)))
    const ms = performance.now() - t0
    assert.equal(out.length, 1)
    assert.ok(ms < 1000, `${bytes.length} one-byte pushes took ${ms.toFixed(0)} ms`)
  })
})

// ---- HelloDecoder ---------------------------------------------------------------------------

const KINDS = [HelloKind.HELLO, HelloKind.REPLY, HelloKind.CHALLENGE, HelloKind.AUTH] as const

/** A valid handshake message of any of the four kinds (helloArb makes kinds 1 and 2). */
const anyHelloArb: fc.Arbitrary<Hello> = fc
  .tuple(helloArb(1), fc.constantFrom(...KINDS))
  .map(([h, kind]) => ({ ...h, kind }))

/** Would a HelloDecoder expecting `expect` return this message (not throw)? */
function acceptable(h: Hello, expect: number): boolean {
  return h.kind === expect || (h.kind === HelloKind.REPLY && h.status !== HelloStatus.OK)
}

describe('fuzzing HelloDecoder', () => {
  it('random bytes and mutated hellos: only ProtocolError, bounded, the unchanged hello returned', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .uint8Array({ maxLength: 120 })
            .map((bytes) => ({ hello: undefined as Hello | undefined, bytes, unchanged: 0 })),
          fc
            .tuple(
              anyHelloArb,
              fc.uint8Array({ maxLength: 40 }),
              fc.array(byteMutationArb, { maxLength: 3 })
            )
            .map(([hello, trailing, ms]) => ({
              hello,
              ...mutateBytes(concat([encodeHello(hello), trailing]), ms)
            }))
        ),
        fc.constantFrom(...KINDS),
        cutsArb,
        (input, expect, cuts) => {
          inputs++
          const d = new HelloDecoder(expect)
          let result: ReturnType<HelloDecoder['push']>
          let fedOk = 0
          const error = onlyProtocolErrors(() => {
            for (const piece of splitAt(input.bytes, cuts)) {
              result = d.push(piece)
              fedOk += piece.length
              if (result !== undefined) break
              assert.ok(d.bufferedBytes < HELLO_FIXED_LENGTH + MAX_AUTH_LENGTH)
            }
          })
          if (result !== undefined) {
            const h = result.hello
            assert.ok(acceptable(h, expect), `kind ${h.kind} returned when ${expect} was expected`)
            assert.ok(h.maxFrameBody >= MIN_MAX_FRAME_BODY && h.maxFrameBody <= MAX_MAX_FRAME_BODY)
            assert.ok(h.auth.length <= MAX_AUTH_LENGTH && h.trunkId.length === 16)
          }
          // A hello whose bytes are all unchanged and were all fed must come out, as it was.
          const h = input.hello
          if (h !== undefined) {
            const length = HELLO_FIXED_LENGTH + h.auth.length
            if (input.unchanged >= length && fedOk >= length && acceptable(h, expect)) {
              assert.equal(error, undefined)
              assert.deepEqual(result?.hello, h)
            }
          }
        }
      ),
      { numRuns: 20_000 }
    )
  })

  it('a valid hello in random pieces comes out at the push that completes it, with the rest', () => {
    fc.assert(
      fc.property(
        anyHelloArb,
        fc.uint8Array({ maxLength: 60 }),
        cutsArb,
        (hello, trailing, cuts) => {
          inputs++
          const length = HELLO_FIXED_LENGTH + hello.auth.length
          const bytes = concat([encodeHello(hello), trailing])
          const d = new HelloDecoder(hello.kind)
          let fed = 0
          for (const piece of splitAt(bytes, cuts)) {
            const r = d.push(piece)
            fed += piece.length
            if (fed < length) {
              assert.equal(r, undefined)
              assert.equal(d.bufferedBytes, fed)
              continue
            }
            assert.ok(r !== undefined, `no hello after ${fed} of ${length} bytes`)
            assert.deepEqual(r.hello, hello)
            assert.deepEqual(
              Buffer.from(r.rest),
              Buffer.from(bytes.subarray(length, fed)),
              'rest is what followed the hello in the pushes so far'
            )
            return
          }
          assert.fail('the hello never completed')
        }
      ),
      { numRuns: 5_000 }
    )
  })
})

// ---- RecordOpener ---------------------------------------------------------------------------

const KEY = randomBytes(32)
const OTHER_KEY = randomBytes(32)

/** Seal `plaintexts` with `key`, one record each. */
function sealAll(key: Uint8Array, plaintexts: readonly Uint8Array[]): Uint8Array[] {
  const s = new RecordSealer(key)
  return plaintexts.map((p) => concat(s.seal([p])))
}

const plaintextsArb = fc.array(
  fc.tuple(fc.nat(64), fc.nat()).map(([n, seed]) => patternBytes(n, seed)),
  { minLength: 1, maxLength: 4 }
)

type RecordMode = 'mutated' | 'wrong-key' | 'random' | 'replayed'

describe('fuzzing RecordOpener', () => {
  it('mutated, foreign, replayed and random records: only ProtocolError, bounded, no forgery', () => {
    fc.assert(
      fc.property(
        plaintextsArb,
        fc.constantFrom<RecordMode>('mutated', 'mutated', 'wrong-key', 'random', 'replayed'),
        fc.array(byteMutationArb, { minLength: 1, maxLength: 3 }),
        fc.uint8Array({ maxLength: 100 }),
        fc.constantFrom(64, 100, 65536),
        cutsArb,
        (plaintexts, mode, mutations, noise, maxRecord, cuts) => {
          inputs++
          const records = sealAll(KEY, plaintexts)
          let bytes: Uint8Array
          let unchanged = 0
          switch (mode) {
            case 'mutated': {
              const m = mutateBytes(concat(records), mutations)
              bytes = m.bytes
              unchanged = m.unchanged
              break
            }
            case 'wrong-key':
              bytes = concat(sealAll(OTHER_KEY, plaintexts))
              break
            case 'random':
              bytes = noise
              break
            case 'replayed':
              // The first record again where the second belongs: its counter no longer matches.
              bytes = concat([records[0]!, ...records])
              unchanged = records[0]!.length
              break
          }
          const o = new RecordOpener(KEY, maxRecord)
          const out: Uint8Array[] = []
          let fedOk = 0
          onlyProtocolErrors(() => {
            for (const piece of splitAt(bytes, cuts)) {
              out.push(...o.push(piece))
              fedOk += piece.length
              assert.ok(o.bufferedBytes < RECORD_HEADER_LENGTH + maxRecord + TAG_LENGTH)
            }
          })
          // Nothing but what was sealed, in its place.
          if (mode === 'wrong-key' || mode === 'random') assert.equal(out.length, 0)
          assert.ok(out.length <= plaintexts.length)
          out.forEach((p, i) => {
            assert.deepEqual(Buffer.from(p), Buffer.from(plaintexts[i]!), `record ${i} forged`)
          })
          // Progress: every record wholly in the unchanged prefix and fed without error.
          const limit = Math.min(unchanged, fedOk)
          const due = ends(records).filter((e) => e <= limit).length
          assert.ok(out.length >= due, `${out.length} records opened, ${due} due`)
        }
      ),
      { numRuns: 15_000 }
    )
  })

  it('valid records in random pieces: each opens at the push that completes it', () => {
    fc.assert(
      fc.property(plaintextsArb, cutsArb, (plaintexts, cuts) => {
        inputs++
        const records = sealAll(KEY, plaintexts)
        const recordEnds = ends(records)
        const o = new RecordOpener(KEY, 64)
        const out: Uint8Array[] = []
        let fed = 0
        for (const piece of splitAt(concat(records), cuts)) {
          out.push(...o.push(piece))
          fed += piece.length
          const done = recordEnds.filter((e) => e <= fed)
          assert.equal(out.length, done.length)
          assert.equal(o.bufferedBytes, fed - (done[done.length - 1] ?? 0))
        }
        assert.deepEqual(
          out.map((p) => Buffer.from(p)),
          plaintexts.map((p) => Buffer.from(p))
        )
      }),
      { numRuns: 5_000 }
    )
  })

  it('a record trickled one byte at a time costs linear time', () => {
    const o = new RecordOpener(KEY, MAX_MAX_FRAME_BODY + FRAME_HEADER_LENGTH)
    const record = sealAll(KEY, [patternBytes(12000, 5)])[0]!
    const t0 = performance.now()
    const out: Uint8Array[] = []
    for (let i = 0; i < record.length; i++) out.push(...o.push(record.subarray(i, i + 1)))
    const ms = performance.now() - t0
    assert.equal(out.length, 1)
    assert.ok(ms < 300, `${record.length} one-byte pushes took ${ms.toFixed(0)} ms`)
  })
})

describe('fuzzing, in all', () => {
  after(() => {
    process.stdout.write(`# fuzz inputs: ${inputs}\n`)
  })

  it('tried more than 100,000 inputs', () => {
    assert.ok(inputs >= 100_000, `only ${inputs} inputs`)
  })
})
