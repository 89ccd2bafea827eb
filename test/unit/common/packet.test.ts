import assert from 'node:assert/strict'
import { SocketAddress } from 'node:net'
import { describe, test } from 'node:test'

import fc from 'fast-check'

import { formatIPv6, parseIpTcp } from '../../../src/common/packet.js'

/** TCP flag bits as they sit in byte 13 of the header. */
const FIN = 0x01
const SYN = 0x02
const RST = 0x04
const ACK = 0x10

interface TcpInit {
  readonly srcPort?: number
  readonly dstPort?: number
  readonly seq?: number
  readonly flagBits?: number
  /** Options, padded by the caller to a multiple of 4 bytes. */
  readonly options?: readonly number[]
  readonly payload?: readonly number[]
}

function tcpHeader(init: TcpInit): number[] {
  const options = init.options ?? []
  assert.equal(options.length % 4, 0)
  const b = new Uint8Array(20 + options.length)
  const v = new DataView(b.buffer)
  v.setUint16(0, init.srcPort ?? 40000)
  v.setUint16(2, init.dstPort ?? 443)
  v.setUint32(4, init.seq ?? 0x01020304)
  v.setUint32(8, 0)
  b[12] = ((20 + options.length) / 4) << 4
  b[13] = init.flagBits ?? SYN
  v.setUint16(14, 64240)
  b.set(options, 20)
  return [...b, ...(init.payload ?? [])]
}

interface Ipv4Init extends TcpInit {
  readonly src?: readonly number[]
  readonly dst?: readonly number[]
  readonly protocol?: number
  readonly ipOptions?: readonly number[]
  readonly fragment?: number
  /** Overrides the total length field. */
  readonly totalLength?: number
}

/** A hand-built IPv4 packet (checksums left zero: the parser does not check them). */
function ipv4(init: Ipv4Init = {}): Uint8Array {
  const ipOptions = init.ipOptions ?? []
  assert.equal(ipOptions.length % 4, 0)
  const headerLength = 20 + ipOptions.length
  const tcp = tcpHeader(init)
  const b = new Uint8Array(headerLength + tcp.length)
  const v = new DataView(b.buffer)
  b[0] = 0x40 | (headerLength / 4)
  v.setUint16(2, init.totalLength ?? b.length)
  v.setUint16(4, 0x1234)
  v.setUint16(6, init.fragment ?? 0x4000) // DF
  b[8] = 64
  b[9] = init.protocol ?? 6
  b.set(init.src ?? [192, 0, 2, 1], 12)
  b.set(init.dst ?? [198, 51, 100, 7], 16)
  b.set(ipOptions, 20)
  b.set(tcp, headerLength)
  return b
}

interface Ipv6Init extends TcpInit {
  readonly src?: readonly number[]
  readonly dst?: readonly number[]
  /** Extension headers as [type, bytes]; each one's next-header byte is filled in. */
  readonly extensions?: readonly (readonly [number, readonly number[]])[]
  /** Next header after the last extension (6 = TCP). */
  readonly protocol?: number
  readonly payloadLength?: number
}

function ipv6Address(words: readonly number[]): number[] {
  return words.flatMap((w) => [w >> 8, w & 0xff])
}

/** A hand-built IPv6 packet. */
function ipv6(init: Ipv6Init = {}): Uint8Array {
  const extensions = init.extensions ?? []
  const tcp = tcpHeader(init)
  const chain: number[] = []
  const types = extensions.map(([type]) => type)
  extensions.forEach(([, bytes], i) => {
    chain.push(types[i + 1] ?? init.protocol ?? 6, ...bytes.slice(1))
  })
  const b = new Uint8Array(40 + chain.length + tcp.length)
  const v = new DataView(b.buffer)
  b[0] = 0x60
  v.setUint16(4, init.payloadLength ?? chain.length + tcp.length)
  b[6] = types[0] ?? init.protocol ?? 6
  b[7] = 64
  b.set(init.src ?? ipv6Address([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 8)
  b.set(init.dst ?? ipv6Address([0x2001, 0xdb8, 0, 0, 1, 0, 0, 0x2a]), 24)
  b.set(chain, 40)
  b.set(tcp, 40 + chain.length)
  return b
}

/** An 8-byte hop-by-hop / destination options header holding a PadN option. */
const OPTIONS_8 = [0, 0, 1, 4, 0, 0, 0, 0]
/** A 24-byte type-0-style routing header (length field 2 = 2 extra 8-octet units). */
const ROUTING_24 = [0, 2, 0, 1, ...new Array<number>(20).fill(0)]
/** An AH header with a 12-byte ICV: length field 4 = (4 + 2) 4-octet units = 24 bytes. */
const AUTH_24 = [0, 4, 0, 0, ...new Array<number>(20).fill(0)]
/** MSS 1460, SACK permitted, timestamps, NOP, window scale 7: 20 bytes of options. */
const SYN_OPTIONS = [2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]

describe('parseIpTcp: IPv4', () => {
  test('reads the addresses, ports, flags and sequence of a SYN', () => {
    const p = parseIpTcp(ipv4({ srcPort: 51000, dstPort: 8080, seq: 0xfedcba98 }))
    assert.deepEqual(p, {
      family: 4,
      srcAddress: '192.0.2.1',
      dstAddress: '198.51.100.7',
      srcPort: 51000,
      dstPort: 8080,
      flags: { syn: true, ack: false, fin: false, rst: false },
      seq: 0xfedcba98,
      ipHeaderLength: 20,
      totalLength: 40
    })
  })

  test('steps over IP options (IHL > 5) and reads past TCP options', () => {
    const ipOptions = [0x94, 0x04, 0, 0, 1, 1, 1, 0] // router alert, NOP padding, EOL
    const p = parseIpTcp(ipv4({ ipOptions, options: SYN_OPTIONS, dstPort: 22 }))
    assert.equal(p?.ipHeaderLength, 28)
    assert.equal(p.dstPort, 22)
    assert.equal(p.totalLength, 28 + 40)
  })

  test('takes the longest IP header (IHL 15) with the longest TCP header (doff 15)', () => {
    const p = parseIpTcp(
      ipv4({ ipOptions: new Array<number>(40).fill(1), options: new Array<number>(40).fill(1) })
    )
    assert.equal(p?.ipHeaderLength, 60)
    assert.equal(p.totalLength, 120)
  })

  test('decodes each flag', () => {
    const cases: [number, object][] = [
      [SYN | ACK, { syn: true, ack: true, fin: false, rst: false }],
      [FIN | ACK, { syn: false, ack: true, fin: true, rst: false }],
      [RST, { syn: false, ack: false, fin: false, rst: true }],
      [0xff, { syn: true, ack: true, fin: true, rst: true }]
    ]
    for (const [flagBits, flags] of cases) {
      assert.deepEqual(parseIpTcp(ipv4({ flagBits }))?.flags, flags)
    }
  })

  test('parses a packet NFQUEUE truncated after the TCP header', () => {
    const full = ipv4({ payload: new Array<number>(1000).fill(0xab) })
    const p = parseIpTcp(full.subarray(0, 40))
    assert.equal(p?.totalLength, 1040)
    assert.equal(p.dstPort, 443)
  })

  test('reports the bytes present for a GSO packet whose length field is 0', () => {
    const p = parseIpTcp(ipv4({ totalLength: 0, payload: [1, 2, 3] }))
    assert.equal(p?.totalLength, 43)
  })

  test('works on a view into a larger buffer', () => {
    const packet = ipv4()
    const backing = new Uint8Array(packet.length + 13)
    backing.set(packet, 7)
    assert.equal(parseIpTcp(backing.subarray(7, 7 + packet.length))?.srcAddress, '192.0.2.1')
  })

  test('rejects non-TCP, fragments and malformed headers', () => {
    assert.equal(parseIpTcp(ipv4({ protocol: 17 })), undefined)
    assert.equal(parseIpTcp(ipv4({ fragment: 0x2000 })), undefined) // MF, offset 0
    assert.equal(parseIpTcp(ipv4({ fragment: 0x0010 })), undefined) // offset 16
    assert.equal(parseIpTcp(ipv4({ totalLength: 39 })), undefined)
    const badIhl = ipv4()
    badIhl[0] = 0x44
    assert.equal(parseIpTcp(badIhl), undefined)
    const badOffset = ipv4()
    badOffset[20 + 12] = 0x40
    assert.equal(parseIpTcp(badOffset), undefined)
    const badVersion = ipv4()
    badVersion[0] = 0x55
    assert.equal(parseIpTcp(badVersion), undefined)
    assert.equal(parseIpTcp(new Uint8Array(0)), undefined)
  })
})

describe('parseIpTcp: IPv6', () => {
  test('reads a SYN with compressed addresses', () => {
    const p = parseIpTcp(ipv6({ srcPort: 33000, dstPort: 80, seq: 7 }))
    assert.deepEqual(p, {
      family: 6,
      srcAddress: '2001:db8::1',
      dstAddress: '2001:db8::1:0:0:2a',
      srcPort: 33000,
      dstPort: 80,
      flags: { syn: true, ack: false, fin: false, rst: false },
      seq: 7,
      ipHeaderLength: 40,
      totalLength: 60
    })
  })

  test('steps over hop-by-hop, routing, destination options and AH headers', () => {
    const p = parseIpTcp(
      ipv6({
        extensions: [
          [0, OPTIONS_8],
          [60, OPTIONS_8],
          [43, ROUTING_24],
          [51, AUTH_24],
          [60, OPTIONS_8]
        ],
        options: SYN_OPTIONS
      })
    )
    assert.equal(p?.ipHeaderLength, 40 + 8 + 8 + 24 + 24 + 8)
    assert.equal(p.dstPort, 443)
    assert.equal(p.totalLength, 40 + 72 + 40)
  })

  test('rejects fragments, no-next-header, other protocols and endless chains', () => {
    assert.equal(parseIpTcp(ipv6({ extensions: [[44, OPTIONS_8]] })), undefined)
    assert.equal(parseIpTcp(ipv6({ extensions: [[0, OPTIONS_8]], protocol: 59 })), undefined)
    assert.equal(parseIpTcp(ipv6({ protocol: 17 })), undefined)
    const many = Array.from({ length: 9 }, (): [number, number[]] => [60, OPTIONS_8])
    assert.equal(parseIpTcp(ipv6({ extensions: many })), undefined)
    assert.equal(parseIpTcp(ipv6({ payloadLength: 19 })), undefined)
  })

  test('maps IPv4-mapped addresses to dotted form, as Node does', () => {
    const p = parseIpTcp(
      ipv6({
        src: ipv6Address([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201]),
        dst: ipv6Address([0, 0, 0, 0, 0, 0, 0, 1])
      })
    )
    assert.equal(p?.srcAddress, '::ffff:192.0.2.1')
    assert.equal(p.dstAddress, '::1')
  })
})

describe('parseIpTcp: truncation', () => {
  const packets: [string, Uint8Array, number][] = [
    ['IPv4', ipv4({ options: SYN_OPTIONS, payload: [1, 2, 3] }), 60],
    ['IPv4 with options', ipv4({ ipOptions: [1, 1, 1, 0], payload: [9] }), 44],
    ['IPv6', ipv6({ options: SYN_OPTIONS }), 80],
    [
      'IPv6 with extensions',
      ipv6({
        extensions: [
          [0, OPTIONS_8],
          [43, ROUTING_24]
        ]
      }),
      92
    ]
  ]
  for (const [name, packet, headersEnd] of packets) {
    test(`${name}: undefined before the end of the TCP header, parsed from there on`, () => {
      const whole = parseIpTcp(packet)
      assert.ok(whole)
      for (let length = 0; length <= packet.length; length++) {
        const p = parseIpTcp(packet.subarray(0, length))
        if (length < headersEnd) {
          assert.equal(p, undefined, `length ${length}`)
        } else {
          assert.deepEqual(p, whole, `length ${length}`)
        }
      }
    })
  }

  test('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0x45, 0x4f, 0x60), (b, v) => {
        parseIpTcp(b)
        if (b.length > 0) {
          b[0] = v
          parseIpTcp(b)
        }
      }),
      { numRuns: 2000 }
    )
  })
})

describe('formatIPv6', () => {
  function nodeFormat(bytes: Uint8Array): string {
    const words = Array.from({ length: 8 }, (_, i) =>
      ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)
    )
    return new SocketAddress({ address: words.join(':'), family: 'ipv6' }).address
  }

  test('matches Node on edge cases', () => {
    const cases = [
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 0, 0, 2],
      [0, 0, 0, 0, 0, 0, 0x102, 0x304],
      [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304],
      [0, 0, 0, 0, 0xffff, 0, 0x102, 0x304],
      [0, 0, 0, 0, 0, 0xffff, 0, 0],
      [0x64, 0xff9b, 0, 0, 0, 0, 0x102, 0x304],
      [1, 0, 0, 1, 0, 0, 0, 1],
      [1, 0, 0, 1, 0, 0, 1, 1],
      [1, 0, 1, 0, 1, 0, 1, 0],
      [0, 0, 1, 0, 0, 0, 0, 0],
      [0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a],
      [0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff]
    ]
    for (const words of cases) {
      const bytes = new Uint8Array(ipv6Address(words))
      assert.equal(formatIPv6(bytes, 0), nodeFormat(bytes), words.join(':'))
    }
  })

  test('matches Node on random addresses rich in zero groups', () => {
    const word = fc.oneof(
      fc.constant(0),
      fc.constant(0),
      fc.constant(0xffff),
      fc.integer({ min: 0, max: 0xffff })
    )
    fc.assert(
      fc.property(fc.array(word, { minLength: 8, maxLength: 8 }), (words) => {
        const bytes = new Uint8Array(ipv6Address(words))
        assert.equal(formatIPv6(bytes, 0), nodeFormat(bytes))
      }),
      { numRuns: 3000 }
    )
  })
})
