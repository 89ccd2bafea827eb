/**
 * Wire codec round trips (yamux test/codec.spec.ts): a table of frames of every type is encoded,
 * compared byte for byte with the naive reference encoder in test/helpers/frames.ts and decoded
 * back; the 2^53 "no wrap" boundary of offsets; HELLO and HELLO_REPLY.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { PepErrorCodes, ProtocolError } from '../../../src/common/errors.js'
import { formatEndpoint } from '../../../src/common/endpoint.js'
import { FrameDecoder, HelloDecoder } from '../../../src/common/wire/decode.js'
import {
  encodeDataHeader,
  encodeFrame,
  encodeHello,
  frameBodyLength,
  frameLength
} from '../../../src/common/wire/encode.js'
import {
  HelloKind,
  MAX_MAX_FRAME_BODY,
  ResetReason,
  resetReasonName,
  type DataFrame,
  type Frame,
  type Endpoint,
  type Hello,
  PROTOCOL_VERSION
} from '../../../src/common/wire/frame.js'
import {
  MAX_OFFSET,
  comparable,
  concat,
  hex,
  patternBytes,
  refEncodeFrame,
  refEncodeHello
} from '../../helpers/frames.js'

const MAX_BODY = 1024 * 1024

/** Decode `bytes` pushed whole into a fresh decoder; the stream must end at a frame boundary. */
function decodeAll(bytes: Uint8Array, maxFrameBody = MAX_BODY): Frame[] {
  const d = new FrameDecoder(maxFrameBody)
  const frames = d.push(bytes)
  d.end()
  return frames
}

function data(offset: number, payload: Uint8Array, fin = false, flowId = 7): DataFrame {
  return { type: 'data', flowId, offset, fin, payload }
}

const TABLE: readonly { readonly name: string; readonly frame: Frame }[] = [
  {
    name: 'OPEN IPv4 without source',
    frame: {
      type: 'open',
      flowId: 1,
      dst: { family: 4, address: '10.1.2.3', port: 443 },
      src: undefined
    }
  },
  {
    name: 'OPEN IPv4 with source',
    frame: {
      type: 'open',
      flowId: 0xffffffff,
      dst: { family: 4, address: '255.255.255.255', port: 65535 },
      src: { family: 4, address: '0.0.0.0', port: 0 }
    }
  },
  {
    name: 'OPEN IPv6 without source',
    frame: {
      type: 'open',
      flowId: 0x12345678,
      dst: { family: 6, address: '2001:db8::1', port: 80 },
      src: undefined
    }
  },
  {
    name: 'OPEN IPv6 with source',
    frame: {
      type: 'open',
      flowId: 2,
      dst: { family: 6, address: '::', port: 1 },
      src: { family: 6, address: 'fe80:0:0:1::2', port: 50000 }
    }
  },
  {
    name: 'OPEN IPv4-mapped IPv6',
    frame: {
      type: 'open',
      flowId: 3,
      dst: { family: 6, address: '::ffff:1.2.3.4', port: 8080 },
      src: { family: 6, address: '1:2:3:4:5:6:7:8', port: 9 }
    }
  },
  { name: 'DATA empty', frame: data(0, new Uint8Array(0)) },
  { name: 'DATA bare FIN', frame: data(1000, new Uint8Array(0), true) },
  { name: 'DATA 1 byte', frame: data(5, Uint8Array.of(0xab)) },
  { name: 'DATA 70000 bytes with FIN', frame: data(123456, patternBytes(70000, 1), true) },
  { name: 'DATA at 2^32 - 1', frame: data(2 ** 32 - 1, patternBytes(10, 2)) },
  { name: 'DATA at 2^32', frame: data(2 ** 32, patternBytes(10, 3)) },
  { name: 'DATA ending at 2^53 - 1', frame: data(MAX_OFFSET - 3, patternBytes(3, 4)) },
  {
    name: 'ACK',
    frame: {
      type: 'ack',
      flowId: 9,
      received: 100,
      limit: 4 * 1024 * 1024,
      finReceived: false,
      epoch: 0
    }
  },
  {
    name: 'ACK FIN_RECEIVED at the limits',
    frame: {
      type: 'ack',
      flowId: 9,
      received: MAX_OFFSET,
      limit: MAX_OFFSET,
      finReceived: true,
      epoch: 2 ** 32 - 1
    }
  },
  { name: 'RELEASE', frame: { type: 'release', flowId: 9, epoch: 1, limit: 14_000 } },
  {
    name: 'RELEASE at the limits',
    frame: { type: 'release', flowId: 0xffffffff, epoch: 2 ** 32 - 1, limit: MAX_OFFSET }
  },
  {
    name: 'RESET ascii',
    frame: { type: 'reset', flowId: 4, reason: ResetReason.APP_RESET, message: 'ECONNRESET' }
  },
  {
    name: 'RESET empty message, unknown reason',
    frame: { type: 'reset', flowId: 4, reason: 0xffff, message: '' }
  },
  {
    name: 'RESET multibyte message of exactly 256 bytes',
    frame: { type: 'reset', flowId: 4, reason: 13, message: '€'.repeat(85) + '!' }
  },
  {
    name: 'RESET 4-byte characters, 256 bytes',
    frame: { type: 'reset', flowId: 4, reason: 11, message: '😀'.repeat(64) }
  },
  { name: 'PING', frame: { type: 'ping', flowId: 0, token: 0 } },
  { name: 'PING max token', frame: { type: 'ping', flowId: 0, token: MAX_OFFSET } },
  { name: 'PONG', frame: { type: 'pong', flowId: 0, token: 2 ** 32 + 5, sendRate: 12_500_000 } },
  {
    name: 'PONG, send rate unknown',
    frame: { type: 'pong', flowId: 0, token: 1, sendRate: 0 }
  },
  {
    name: 'GOAWAY',
    frame: { type: 'goaway', flowId: 0, reason: ResetReason.SHUTDOWN, message: 'bye, ça va' }
  }
]

describe('frame codec: table', () => {
  for (const { name, frame } of TABLE) {
    it(`${name}: matches the reference encoding and round-trips`, () => {
      const bytes = encodeFrame(frame)
      assert.deepEqual(Buffer.from(bytes), Buffer.from(refEncodeFrame(frame)))
      assert.equal(frameLength(frame), bytes.length)
      assert.equal(frameBodyLength(frame), bytes.length - 12)
      const frames = decodeAll(bytes)
      assert.equal(frames.length, 1)
      assert.deepEqual(comparable(frames[0]!), comparable(frame))
    })
  }

  it('the whole table as one byte string decodes to the table', () => {
    const bytes = concat(TABLE.map((t) => encodeFrame(t.frame)))
    assert.deepEqual(
      decodeAll(bytes).map(comparable),
      TABLE.map((t) => comparable(t.frame))
    )
  })

  it('header fields are where the spec puts them', () => {
    assert.deepEqual(
      Buffer.from(encodeFrame(data(0x0102030405, Uint8Array.of(0xee), true, 0xa0b0c0d0))),
      Buffer.from(hex('02 01 0000 a0b0c0d0 00000009 | 00000001 02030405 | ee'))
    )
    assert.deepEqual(
      Buffer.from(
        encodeFrame({
          type: 'open',
          flowId: 1,
          dst: { family: 4, address: '1.2.3.4', port: 0x1f90 },
          src: { family: 4, address: '5.6.7.8', port: 0xabcd }
        })
      ),
      Buffer.from(hex('01 00 0000 00000001 00000010 | 04 01 1f90 abcd 0000 01020304 05060708'))
    )
    assert.deepEqual(
      Buffer.from(
        encodeFrame({ type: 'ack', flowId: 5, received: 1, limit: 2, finReceived: true, epoch: 7 })
      ),
      Buffer.from(hex('03 01 0000 00000005 00000014 | 0000000000000001 0000000000000002 00000007'))
    )
    assert.deepEqual(
      Buffer.from(encodeFrame({ type: 'release', flowId: 5, epoch: 0x01020304, limit: 0x0a0b })),
      Buffer.from(hex('08 00 0000 00000005 0000000c | 01020304 0000000000000a0b'))
    )
    assert.deepEqual(
      Buffer.from(encodeFrame({ type: 'goaway', flowId: 0, reason: 8, message: 'x' })),
      Buffer.from(hex('07 00 0000 00000000 00000003 | 0008 78'))
    )
  })

  it('addresses come back in canonical form', () => {
    const [f] = decodeAll(
      encodeFrame({
        type: 'open',
        flowId: 1,
        dst: { family: 6, address: '2001:0DB8:0000:0000:0000:0000:0000:0001', port: 1 },
        src: undefined
      })
    )
    assert.ok(f?.type === 'open')
    assert.equal(f.dst.address, '2001:db8::1')
  })

  it('an address that does not match its family is refused with a ProtocolError', () => {
    for (const [family, address] of [
      [4, '::1'],
      [6, '1.2.3.4'],
      [4, 'example.com']
    ] as const) {
      assert.throws(
        () =>
          encodeFrame({
            type: 'open',
            flowId: 1,
            dst: { family, address, port: 1 },
            src: undefined
          }),
        (err: unknown) => err instanceof ProtocolError && err.code === PepErrorCodes.MALFORMED_FRAME
      )
    }
  })

  it('formatEndpoint brackets IPv6', () => {
    const v4: Endpoint = { family: 4, address: '1.2.3.4', port: 80 }
    const v6: Endpoint = { family: 6, address: '::1', port: 80 }
    assert.equal(formatEndpoint(v4), '1.2.3.4:80')
    assert.equal(formatEndpoint(v6), '[::1]:80')
  })

  it('resetReasonName names known reasons and numbers unknown ones', () => {
    assert.equal(resetReasonName(13), 'CREDIT_EXCEEDED')
    assert.equal(resetReasonName(99), 'UNKNOWN_99')
  })
})

describe('frame codec: DATA header written apart from the payload', () => {
  for (const [offset, size, fin] of [
    [0, 0, false],
    [0, 0, true],
    [17, 1, false],
    [2 ** 32, 16384, true],
    [MAX_OFFSET - 70000, 70000, false]
  ] as const) {
    it(`offset ${offset}, ${size} bytes, fin ${fin}: header + payload equals encodeFrame`, () => {
      const payload = patternBytes(size, offset + size)
      const frame = data(offset, payload, fin, 0xdeadbeef)
      const header = encodeDataHeader(frame.flowId, offset, size, fin)
      assert.equal(header.length, 20)
      assert.deepEqual(Buffer.from(concat([header, payload])), Buffer.from(encodeFrame(frame)))
      assert.equal(frameLength(frame), 20 + size)
    })
  }
})

describe('frame codec: offsets never wrap', () => {
  for (const offset of [2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 52, MAX_OFFSET]) {
    it(`offset ${offset} round-trips exactly`, () => {
      const [f] = decodeAll(encodeFrame(data(offset, new Uint8Array(0), true)))
      assert.equal(f?.type === 'data' ? f.offset : undefined, offset)
    })
  }

  function assertMalformed(bytes: Uint8Array): void {
    assert.throws(
      () => new FrameDecoder(MAX_BODY).push(bytes),
      (err: unknown) =>
        err instanceof ProtocolError &&
        err.code === PepErrorCodes.MALFORMED_FRAME &&
        err.closeReason === ResetReason.PROTOCOL_ERROR
    )
  }

  it('offset 2^53 is rejected as malformed', () => {
    assertMalformed(hex('02 00 0000 00000001 00000008 | 0020000000000000'))
    assertMalformed(refEncodeFrame(data(2 ** 53, new Uint8Array(0))))
  })

  it('offset 2^64 - 1 is rejected as malformed', () => {
    assertMalformed(hex('02 00 0000 00000001 00000008 | ffffffffffffffff'))
  })

  it('a payload that would end beyond 2^53 - 1 is rejected', () => {
    assertMalformed(hex('02 00 0000 00000001 00000009 | 001fffffffffffff | 00'))
  })

  it('ACK values, RELEASE limits, PING tokens and PONG fields at 2^53 are rejected', () => {
    assertMalformed(
      hex('03 00 0000 00000001 00000014 | 0020000000000000 0000000000000000 00000000')
    )
    assertMalformed(
      hex('03 00 0000 00000001 00000014 | 0000000000000000 0020000000000000 00000000')
    )
    assertMalformed(hex('08 00 0000 00000001 0000000c | 00000001 0020000000000000'))
    assertMalformed(hex('05 00 0000 00000000 00000008 | 0020000000000000'))
    assertMalformed(hex('06 00 0000 00000000 00000010 | 8000000000000000 0000000000000000'))
    assertMalformed(hex('06 00 0000 00000000 00000010 | 0000000000000001 0020000000000000'))
  })
})

describe('frame codec: RESET / GOAWAY messages', () => {
  function roundTripMessage(message: string): string {
    const [f] = decodeAll(encodeFrame({ type: 'reset', flowId: 1, reason: 1, message }))
    return f?.type === 'reset' ? f.message : '(not a reset)'
  }

  it('a message over 256 bytes is cut to 256 bytes', () => {
    const bytes = encodeFrame({ type: 'reset', flowId: 1, reason: 1, message: 'a'.repeat(300) })
    assert.equal(bytes.length, 12 + 2 + 256)
    assert.equal(roundTripMessage('a'.repeat(300)), 'a'.repeat(256))
    assert.equal(roundTripMessage('é'.repeat(200)), 'é'.repeat(128))
  })

  it('undefined flag bits and reserved bytes are ignored on receipt', () => {
    const frames = decodeAll(
      hex(
        '04 fe ffff 00000001 00000004 | 000d 6f6b | 05 fe abcd 00000000 00000008 | 0000000000000001'
      )
    )
    assert.deepEqual(frames, [
      { type: 'reset', flowId: 1, reason: 13, message: 'ok' },
      { type: 'ping', flowId: 0, token: 1 }
    ])
  })

  it('a message cut inside a 4-byte character keeps whole characters only', () => {
    const message = 'a'.repeat(253) + '😀'
    const got = roundTripMessage(message)
    assert.equal(got, 'a'.repeat(253))
  })

  it('keeps a leading U+FEFF', () => {
    assert.equal(roundTripMessage('\uFEFFhello'), '\uFEFFhello')
  })
})

describe('hello codec', () => {
  const base: Hello = {
    version: PROTOCOL_VERSION,
    kind: HelloKind.HELLO,
    authMethod: 0,
    status: 0,
    trunkId: patternBytes(16, 99),
    subflowIndex: 3,
    maxFrameBody: 256 * 1024,
    flowWindow: 4 * 1024 * 1024,
    pathId: 2,
    flags: 0,
    auth: new Uint8Array(0)
  }
  const reply: Hello = {
    ...base,
    kind: HelloKind.REPLY,
    status: 1,
    subflowIndex: 65535,
    maxFrameBody: MAX_MAX_FRAME_BODY,
    flowWindow: 0xffffffff,
    pathId: 0,
    flags: 1,
    auth: patternBytes(1024, 5)
  }

  for (const [name, hello] of [
    ['HELLO', base],
    ['HELLO_REPLY with 1024 bytes of auth', reply],
    ['HELLO with the smallest max frame body', { ...base, maxFrameBody: 64 }]
  ] as const) {
    it(`${name}: matches the reference encoding and round-trips`, () => {
      const bytes = encodeHello(hello)
      assert.deepEqual(Buffer.from(bytes), Buffer.from(refEncodeHello(hello)))
      const result = new HelloDecoder(hello.kind).push(bytes)
      assert.ok(result)
      assert.deepEqual(result.hello, hello)
      assert.equal(result.rest.length, 0)
    })
  }

  it('starts with the magic and the version', () => {
    assert.deepEqual(
      Buffer.from(encodeHello(base).subarray(0, 8)),
      Buffer.from(hex('544e444d 05 01 00 00'))
    )
  })

  it('refuses a trunk id that is not 16 bytes and auth data over 1024 bytes', () => {
    assert.throws(() => encodeHello({ ...base, trunkId: new Uint8Array(15) }), RangeError)
    assert.throws(() => encodeHello({ ...base, auth: new Uint8Array(1025) }), RangeError)
  })
})
