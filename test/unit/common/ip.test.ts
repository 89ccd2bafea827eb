/**
 * Address text ↔ bytes (src/common/ip.ts): known vectors, RFC 5952 output compared with the
 * independent formatter in test/helpers/frames.ts, round trips, and texts that must be refused.
 */
import assert from 'node:assert/strict'
import { SocketAddress } from 'node:net'
import { isIPv4, isIPv6 } from 'node:net'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import { formatIPv4, formatIPv6, ipFamily, parseIPv4, parseIPv6 } from '../../../src/common/ip.js'
import { hex, refFormatIPv6 } from '../../helpers/frames.js'

function bytes6(text: string): string {
  const b = parseIPv6(text)
  return b === undefined ? 'undefined' : Buffer.from(b).toString('hex')
}

describe('IPv4', () => {
  it('parses and formats dotted quads', () => {
    for (const text of ['0.0.0.0', '1.2.3.4', '10.0.0.255', '255.255.255.255', '192.168.2.201']) {
      const b = parseIPv4(text)
      assert.ok(b, text)
      assert.equal(formatIPv4(b), text)
    }
    assert.deepEqual(parseIPv4('1.2.3.4'), Uint8Array.of(1, 2, 3, 4))
  })

  it('refuses what is not exactly four decimal bytes', () => {
    for (const text of [
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '1.2.3.256',
      '01.2.3.4',
      '1.2.3.04',
      '1.2.3.-1',
      '1.2.3.',
      '.1.2.3',
      '',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '0x1.2.3.4',
      '1e1.2.3.4',
      '1234.1.1.1',
      '::1'
    ]) {
      assert.equal(parseIPv4(text), undefined, text)
    }
  })

  it('agrees with node:net isIPv4 on any text built from address-like pieces', () => {
    const piece = fc.constantFrom('0', '1', '01', '255', '256', '.', '00', '1e1', ' ', '+1', '999')
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 9 }).map((p) => p.join('')),
        (text) => {
          assert.equal(parseIPv4(text) !== undefined, isIPv4(text), text)
        }
      ),
      { numRuns: 3000 }
    )
  })
})

describe('IPv6', () => {
  it('parses the short forms', () => {
    assert.equal(bytes6('::'), '00000000000000000000000000000000')
    assert.equal(bytes6('::1'), '00000000000000000000000000000001')
    assert.equal(bytes6('1::'), '00010000000000000000000000000000')
    assert.equal(bytes6('::ffff:1.2.3.4'), '00000000000000000000ffff01020304')
    assert.equal(bytes6('2001:DB8::A:b'), '20010db80000000000000000000a000b')
    assert.equal(bytes6('1:2:3:4:5:6:7:8'), '00010002000300040005000600070008')
    assert.equal(bytes6('1:2:3:4:5:6:7::'), '00010002000300040005000600070000')
    assert.equal(bytes6('1:2:3:4:5:6:1.2.3.4'), '00010002000300040005000601020304')
    assert.equal(bytes6('fe80::1%eth0'), 'fe800000000000000000000000000001')
  })

  it('formats as RFC 5952 (and IPv4-mapped as ::ffff:a.b.c.d)', () => {
    const cases: readonly (readonly [string, string])[] = [
      ['00000000000000000000000000000000', '::'],
      ['00000000000000000000000000000001', '::1'],
      ['00000000000000000000ffff01020304', '::ffff:1.2.3.4'],
      ['20010db8000000000000000000000001', '2001:db8::1'],
      // One zero group is not compressed.
      ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
      // The longest run wins; on a tie, the first.
      ['20010000000000010000000000000001', '2001:0:0:1::1'],
      ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
      ['00010000000000000000000000000000', '1::'],
      ['abcd000000000000000000000000ef01', 'abcd::ef01']
    ]
    for (const [b, text] of cases) {
      assert.equal(formatIPv6(hex(b)), text)
      assert.equal(refFormatIPv6(hex(b)), text)
    }
  })

  it('formatIPv6 prints as Node does (libuv: RFC 5952, plus ::a.b.c.d) and round-trips, for any 16 bytes', () => {
    const nodeFormat = (b: Uint8Array): string => {
      const words = Array.from({ length: 8 }, (_, i) =>
        ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)
      )
      return new SocketAddress({ address: words.join(':'), family: 'ipv6' }).address
    }
    const zeroHeavy = fc
      .array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
        minLength: 8,
        maxLength: 8
      })
      .map((g) => Uint8Array.from(g.flatMap((x) => [x >> 8, x & 0xff])))
    fc.assert(
      fc.property(fc.oneof(zeroHeavy, fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        const text = formatIPv6(b)
        assert.equal(text, nodeFormat(b))
        assert.ok(isIPv6(text), text)
        assert.deepEqual(parseIPv6(text), b)
        assert.deepEqual(parseIPv6(text.toUpperCase()), b)
      }),
      { numRuns: 3000 }
    )
  })

  it('refuses malformed text', () => {
    for (const text of [
      ':::',
      '1::2::3',
      ':1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7:8::',
      '1:2:3:4:5:6:7',
      '12345::',
      'g::',
      '::1.2.3',
      '::256.1.1.1',
      '::1.2.3.4:5',
      '1:2:3:4:5:6:7:1.2.3.4',
      '',
      '1.2.3.4'
    ]) {
      assert.equal(parseIPv6(text), undefined, text)
    }
  })

  it('refuses a dotted quad anywhere but at the end, and an empty zone', () => {
    for (const text of ['1.2.3.4::', '1.2.3.4::1', '1.2.3.4::1.2.3.4', '::1%']) {
      assert.equal(parseIPv6(text), undefined, text)
    }
  })
})

describe('ipFamily', () => {
  it('names the family, or undefined', () => {
    assert.equal(ipFamily('10.0.0.1'), 4)
    assert.equal(ipFamily('::'), 6)
    assert.equal(ipFamily('::ffff:1.2.3.4'), 6)
    assert.equal(ipFamily('example.com'), undefined)
    assert.equal(ipFamily('256.0.0.1'), undefined)
  })
})
