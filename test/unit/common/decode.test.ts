/**
 * Incremental decoding (yamux test/decode.spec.ts): one multi-frame byte string split every way
 * decodes to the same frames; malformed input, as hex bytes, fails with the right code and close
 * reason (ws test/receiver.test.js), at header time and without buffering the body.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { PepErrorCodes, ProtocolError, type PepErrorCode } from '../../../src/common/errors.js'
import {
  FrameDecoder,
  HelloDecoder,
  VersionMismatchError
} from '../../../src/common/wire/decode.js'
import { encodeFrame, encodeHello } from '../../../src/common/wire/encode.js'
import {
  HelloKind,
  PROTOCOL_VERSION,
  ResetReason,
  type Frame,
  type Hello
} from '../../../src/common/wire/frame.js'
import { comparable, concat, hex, patternBytes, rng, splitAt } from '../../helpers/frames.js'

const MAX_BODY = 64 * 1024

const FRAMES: readonly Frame[] = [
  {
    type: 'open',
    flowId: 11,
    dst: { family: 6, address: '2001:db8::5', port: 443 },
    src: { family: 6, address: 'fd00::1', port: 40000 }
  },
  { type: 'data', flowId: 11, offset: 0, fin: false, payload: patternBytes(1, 1) },
  { type: 'data', flowId: 11, offset: 1, fin: false, payload: patternBytes(3000, 2) },
  { type: 'ack', flowId: 12, received: 77, limit: 1 << 22, finReceived: false, epoch: 0 },
  { type: 'ping', flowId: 0, token: 42 },
  { type: 'data', flowId: 11, offset: 3001, fin: true, payload: new Uint8Array(0) },
  { type: 'reset', flowId: 13, reason: ResetReason.CONNECT_REFUSED, message: 'refusé' },
  { type: 'pong', flowId: 0, token: 2 ** 40, sendRate: 2 ** 33 },
  { type: 'goaway', flowId: 0, reason: ResetReason.SHUTDOWN, message: '' },
  {
    type: 'open',
    flowId: 14,
    dst: { family: 4, address: '192.0.2.1', port: 80 },
    src: undefined
  },
  { type: 'data', flowId: 14, offset: 0, fin: false, payload: patternBytes(MAX_BODY - 8, 3) }
]
const ENCODED = FRAMES.map(encodeFrame)
const BYTES = concat(ENCODED)
const EXPECTED = FRAMES.map(comparable)

/** Push `pieces` one after the other; returns every frame, checks the end is a boundary. */
function feed(pieces: readonly Uint8Array[]): Frame[] {
  const d = new FrameDecoder(MAX_BODY)
  const out: Frame[] = []
  for (const p of pieces) {
    out.push(...d.push(p))
    assert.ok(d.bufferedBytes <= 12 + MAX_BODY + p.length)
  }
  assert.ok(d.atBoundary)
  d.end()
  return out
}

function pieces(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size))
  return out
}

describe('FrameDecoder: the same bytes split every way', () => {
  it('whole', () => {
    assert.deepEqual(feed([BYTES]).map(comparable), EXPECTED)
  })

  it('one byte at a time', () => {
    assert.deepEqual(feed(pieces(BYTES, 1)).map(comparable), EXPECTED)
  })

  it('5-byte pieces', () => {
    assert.deepEqual(feed(pieces(BYTES, 5)).map(comparable), EXPECTED)
  })

  it('frame by frame, each push returning exactly its frame', () => {
    const d = new FrameDecoder(MAX_BODY)
    ENCODED.forEach((bytes, i) => {
      const got = d.push(bytes)
      assert.equal(got.length, 1)
      assert.deepEqual(comparable(got[0]!), EXPECTED[i])
      assert.ok(d.atBoundary)
    })
  })

  it('several frames per chunk', () => {
    const chunks = [
      concat(ENCODED.slice(0, 4)),
      concat(ENCODED.slice(4, 9)),
      concat(ENCODED.slice(9))
    ]
    assert.deepEqual(feed(chunks).map(comparable), EXPECTED)
  })

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`split at random points (seed ${seed})`, () => {
      const r = rng(seed)
      const cuts = Array.from({ length: 1 + Math.floor(r() * 40) }, () =>
        Math.floor(r() * BYTES.length)
      )
      assert.deepEqual(feed(splitAt(BYTES, cuts)).map(comparable), EXPECTED)
    })
  }

  it('empty pushes change nothing', () => {
    const d = new FrameDecoder(MAX_BODY)
    assert.deepEqual(d.push(new Uint8Array(0)), [])
    assert.ok(d.atBoundary)
    const out: Frame[] = []
    for (const p of pieces(BYTES, 7)) {
      out.push(...d.push(p), ...d.push(new Uint8Array(0)))
    }
    assert.deepEqual(out.map(comparable), EXPECTED)
  })

  it('returns nothing, not an error, while a frame is incomplete', () => {
    const d = new FrameDecoder(MAX_BODY)
    const one = ENCODED[2]!
    assert.deepEqual(d.push(one.subarray(0, 11)), [])
    assert.equal(d.bufferedBytes, 11)
    assert.deepEqual(d.push(one.subarray(11, 30)), [])
    assert.equal(d.atBoundary, false)
    assert.equal(d.push(one.subarray(30)).length, 1)
    assert.equal(d.bufferedBytes, 0)
    assert.ok(d.atBoundary)
  })
})

/** Assert `fn` throws a ProtocolError with `code` and the PROTOCOL_ERROR close reason. */
function assertProtocolError(fn: () => unknown, code: PepErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`)
    assert.equal(err.code, code)
    assert.equal(err.closeReason, ResetReason.PROTOCOL_ERROR)
    assert.equal(err.remote, true)
    return true
  })
}

describe('FrameDecoder: malformed input', () => {
  const cases: readonly (readonly [string, string, PepErrorCode])[] = [
    ['unknown type 0x09', '09 00 0000 00000001 00000000', PepErrorCodes.UNKNOWN_FRAME_TYPE],
    ['unknown type 0x00', '00 00 0000 00000000 00000000', PepErrorCodes.UNKNOWN_FRAME_TYPE],
    ['unknown type 0xff', 'ff 00 0000 00000001 00000008', PepErrorCodes.UNKNOWN_FRAME_TYPE],
    ['ACK of 19 bytes', '03 00 0000 00000001 00000013', PepErrorCodes.MALFORMED_FRAME],
    ['ACK of 21 bytes', '03 00 0000 00000001 00000015', PepErrorCodes.MALFORMED_FRAME],
    ['ACK of 16 bytes (version 4)', '03 00 0000 00000001 00000010', PepErrorCodes.MALFORMED_FRAME],
    ['RELEASE of 11 bytes', '08 00 0000 00000001 0000000b', PepErrorCodes.MALFORMED_FRAME],
    ['RELEASE of 13 bytes', '08 00 0000 00000001 0000000d', PepErrorCodes.MALFORMED_FRAME],
    ['RELEASE with flow id 0', '08 00 0000 00000000 0000000c', PepErrorCodes.MALFORMED_FRAME],
    ['PING of 9 bytes', '05 00 0000 00000000 00000009', PepErrorCodes.MALFORMED_FRAME],
    ['PONG of 7 bytes', '06 00 0000 00000000 00000007', PepErrorCodes.MALFORMED_FRAME],
    ['PONG of 8 bytes (version 3)', '06 00 0000 00000000 00000008', PepErrorCodes.MALFORMED_FRAME],
    ['PONG of 17 bytes', '06 00 0000 00000000 00000011', PepErrorCodes.MALFORMED_FRAME],
    ['OPEN of 13 bytes', '01 00 0000 00000001 0000000d', PepErrorCodes.MALFORMED_FRAME],
    ['OPEN of 0 bytes', '01 00 0000 00000001 00000000', PepErrorCodes.MALFORMED_FRAME],
    ['DATA of 7 bytes', '02 00 0000 00000001 00000007', PepErrorCodes.MALFORMED_FRAME],
    ['RESET of 1 byte', '04 00 0000 00000001 00000001', PepErrorCodes.MALFORMED_FRAME],
    ['RESET message of 257 bytes', '04 00 0000 00000001 00000103', PepErrorCodes.MALFORMED_FRAME],
    ['GOAWAY message of 257 bytes', '07 00 0000 00000000 00000103', PepErrorCodes.MALFORMED_FRAME],
    ['DATA with flow id 0', '02 00 0000 00000000 00000008', PepErrorCodes.MALFORMED_FRAME],
    ['OPEN with flow id 0', '01 00 0000 00000000 0000000c', PepErrorCodes.MALFORMED_FRAME],
    ['ACK with flow id 0', '03 00 0000 00000000 00000010', PepErrorCodes.MALFORMED_FRAME],
    ['RESET with flow id 0', '04 00 0000 00000000 00000002', PepErrorCodes.MALFORMED_FRAME],
    ['PING with flow id 1', '05 00 0000 00000001 00000008', PepErrorCodes.MALFORMED_FRAME],
    ['PONG with flow id 2^32-1', '06 00 0000 ffffffff 00000010', PepErrorCodes.MALFORMED_FRAME],
    ['GOAWAY with flow id 7', '07 00 0000 00000007 00000002', PepErrorCodes.MALFORMED_FRAME]
  ]
  for (const [name, header, code] of cases) {
    it(`${name} → ${code}, as soon as the header is in`, () => {
      const bytes = hex(header)
      assert.equal(bytes.length, 12)
      const d = new FrameDecoder(MAX_BODY)
      assert.deepEqual(d.push(bytes.subarray(0, 11)), [])
      assertProtocolError(() => d.push(bytes.subarray(11)), code)
      assert.ok(d.bufferedBytes <= 12)
    })
  }

  it('a body over maxFrameBody → FRAME_TOO_LARGE after 12 bytes, none of the body buffered', () => {
    const d = new FrameDecoder(1024)
    const header = hex('02 00 0000 00000001 00000401')
    for (let i = 0; i < 11; i++) assert.deepEqual(d.push(header.subarray(i, i + 1)), [])
    assertProtocolError(() => d.push(header.subarray(11)), PepErrorCodes.FRAME_TOO_LARGE)
    assert.ok(d.bufferedBytes <= 12)
  })

  it('a body of 4 GiB - 1 → FRAME_TOO_LARGE', () => {
    assertProtocolError(
      () => new FrameDecoder(MAX_BODY).push(hex('02 00 0000 00000001 ffffffff')),
      PepErrorCodes.FRAME_TOO_LARGE
    )
  })

  it('a body of exactly maxFrameBody is accepted', () => {
    const d = new FrameDecoder(64)
    const frames = d.push(concat([hex('02 00 0000 00000001 00000040'), new Uint8Array(64)]))
    assert.equal(frames.length, 1)
    assert.equal(frames[0]?.type === 'data' ? frames[0].payload.length : -1, 56)
  })

  it('OPEN with address family 5 → MALFORMED', () => {
    assertProtocolError(
      () =>
        new FrameDecoder(MAX_BODY).push(
          hex('01 00 0000 00000001 0000000c | 05 00 0050 0000 0000 01020304')
        ),
      PepErrorCodes.MALFORMED_FRAME
    )
  })

  it('OPEN whose length does not fit its family and source flag → MALFORMED', () => {
    for (const bytes of [
      // IPv4, no source flag, but 8 + 8 bytes
      '01 00 0000 00000001 00000010 | 04 00 0050 0000 0000 01020304 05060708',
      // IPv4 with the source flag but only one address
      '01 00 0000 00000001 0000000c | 04 01 0050 0000 0000 01020304',
      // IPv6 family in a 12-byte body
      '01 00 0000 00000001 0000000c | 06 00 0050 0000 0000 01020304',
      // IPv4 family in a 24-byte body
      '01 00 0000 00000001 00000018 | 04 00 0050 0000 0000 00000000000000000000000000000001'
    ]) {
      assertProtocolError(
        () => new FrameDecoder(MAX_BODY).push(hex(bytes)),
        PepErrorCodes.MALFORMED_FRAME
      )
    }
  })

  it('a good frame before a bad one is not lost: the error comes on the push that completes the bad one', () => {
    const d = new FrameDecoder(MAX_BODY)
    const good = encodeFrame({ type: 'ping', flowId: 0, token: 1 })
    assert.equal(d.push(good).length, 1)
    assertProtocolError(
      () => d.push(hex('09 00 0000 00000001 00000000')),
      PepErrorCodes.UNKNOWN_FRAME_TYPE
    )
  })

  it('end() inside a header or a body → TRUNCATED; at a boundary it is fine', () => {
    const one = encodeFrame({
      type: 'ack',
      flowId: 1,
      received: 0,
      limit: 0,
      finReceived: false,
      epoch: 0
    })
    for (const cut of [1, 11, 12, 13, one.length - 1]) {
      const d = new FrameDecoder(MAX_BODY)
      d.push(one.subarray(0, cut))
      assert.equal(d.atBoundary, false)
      assertProtocolError(() => {
        d.end()
      }, PepErrorCodes.TRUNCATED)
    }
    const d = new FrameDecoder(MAX_BODY)
    d.end()
    d.push(one)
    d.end()
  })

  it('end() after a header-only frame (empty body) is at a boundary', () => {
    const d = new FrameDecoder(MAX_BODY)
    assert.equal(d.push(hex('04 00 0000 00000001 00000002 | 0001')).length, 1)
    d.end()
  })
})

describe('HelloDecoder', () => {
  const hello: Hello = {
    version: PROTOCOL_VERSION,
    kind: HelloKind.HELLO,
    authMethod: 0,
    status: 0,
    trunkId: patternBytes(16, 8),
    subflowIndex: 1,
    maxFrameBody: 1 << 18,
    flowWindow: 1 << 22,
    pathId: 0,
    flags: 0,
    auth: new Uint8Array(0)
  }
  const HELLO_BYTES = encodeHello(hello)

  /** HELLO_BYTES with `patch` written at `at`. */
  function patched(at: number, patch: Uint8Array, base = HELLO_BYTES): Uint8Array {
    const out = base.slice()
    out.set(patch, at)
    return out
  }

  it('decodes pushed whole, byte by byte, and in 7-byte pieces', () => {
    for (const size of [HELLO_BYTES.length, 1, 7]) {
      const d = new HelloDecoder(HelloKind.HELLO)
      let result
      for (let i = 0; i < HELLO_BYTES.length; i += size) {
        assert.equal(result, undefined)
        result = d.push(HELLO_BYTES.subarray(i, i + size))
      }
      assert.ok(result)
      assert.deepEqual(result.hello, hello)
      assert.deepEqual(Buffer.from(result.bytes), Buffer.from(HELLO_BYTES), 'the exact bytes')
      assert.equal(result.rest.length, 0)
    }
  })

  it('bad magic is refused at the first wrong byte', () => {
    assertProtocolError(
      () => new HelloDecoder(HelloKind.HELLO).push(hex('47')),
      PepErrorCodes.BAD_MAGIC
    )
    const d = new HelloDecoder(HelloKind.HELLO)
    assert.equal(d.push(hex('54 4e 44')), undefined)
    assertProtocolError(() => d.push(hex('58')), PepErrorCodes.BAD_MAGIC)
    assertProtocolError(
      () => new HelloDecoder(HelloKind.HELLO).push(new TextEncoder().encode('GET / HTTP/1.1\r\n')),
      PepErrorCodes.BAD_MAGIC
    )
  })

  it('another version → VersionMismatchError naming it, once the 40-byte fixed part is in', () => {
    const d = new HelloDecoder(HelloKind.HELLO)
    const other = patched(4, hex('09'))
    // A 5-byte probe learns nothing: the acceptor's answer may be no larger than what it got.
    assert.equal(d.push(other.subarray(0, 5)), undefined)
    assert.equal(d.push(other.subarray(5, 39)), undefined)
    assert.throws(
      () => d.push(other.subarray(39, 40)),
      (err: unknown) => {
        assert.ok(err instanceof VersionMismatchError)
        assert.ok(err instanceof ProtocolError)
        assert.equal(err.peerVersion, 9)
        assert.equal(err.code, PepErrorCodes.VERSION_MISMATCH)
        assert.equal(err.closeReason, ResetReason.PROTOCOL_ERROR)
        assert.match(err.message, /version 9/)
        return true
      }
    )
    assert.throws(
      () => new HelloDecoder(HelloKind.REPLY).push(patched(4, hex('00'))),
      (err: unknown) => err instanceof VersionMismatchError && err.peerVersion === 0
    )
  })

  it('auth length 1025 → MALFORMED once the fixed part is in', () => {
    const d = new HelloDecoder(HelloKind.HELLO)
    assertProtocolError(() => d.push(patched(26, hex('0401'))), PepErrorCodes.MALFORMED_FRAME)
  })

  it('auth length 1024 is waited for and accepted', () => {
    const d = new HelloDecoder(HelloKind.HELLO)
    const bytes = concat([patched(26, hex('0400')), patternBytes(1024, 3)])
    assert.equal(d.push(bytes.subarray(0, 1063)), undefined)
    const result = d.push(bytes.subarray(1063))
    assert.ok(result)
    assert.deepEqual(Buffer.from(result.hello.auth), Buffer.from(patternBytes(1024, 3)))
  })

  for (const [name, value] of [
    ['10', '0000000a'],
    ['63', '0000003f'],
    ['16 MiB + 1', '01000001'],
    ['0', '00000000']
  ] as const) {
    it(`max frame body ${name} → MALFORMED`, () => {
      assertProtocolError(
        () => new HelloDecoder(HelloKind.HELLO).push(patched(28, hex(value))),
        PepErrorCodes.MALFORMED_FRAME
      )
    })
  }

  it('the wrong kind → MALFORMED', () => {
    assertProtocolError(
      () => new HelloDecoder(HelloKind.REPLY).push(HELLO_BYTES),
      PepErrorCodes.MALFORMED_FRAME
    )
    assertProtocolError(
      () => new HelloDecoder(HelloKind.HELLO).push(patched(5, hex('03'))),
      PepErrorCodes.MALFORMED_FRAME
    )
  })

  it('bytes after the hello come back in rest, and decode as frames', () => {
    const frames = concat([
      encodeFrame({ type: 'ping', flowId: 0, token: 9 }),
      encodeFrame({ type: 'goaway', flowId: 0, reason: 8, message: 'x' })
    ])
    const all = concat([HELLO_BYTES, frames])
    const d = new HelloDecoder(HelloKind.HELLO)
    assert.equal(d.push(all.subarray(0, 30)), undefined)
    const result = d.push(all.subarray(30))
    assert.ok(result)
    assert.deepEqual(Buffer.from(result.rest), Buffer.from(frames))
    assert.equal(d.bufferedBytes, 0)
    assert.deepEqual(new FrameDecoder(MAX_BODY).push(result.rest), [
      { type: 'ping', flowId: 0, token: 9 },
      { type: 'goaway', flowId: 0, reason: 8, message: 'x' }
    ])
  })
})
