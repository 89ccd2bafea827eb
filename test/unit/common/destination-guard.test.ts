/**
 * rx_proxy's relay guard (src/common/destination-guard.ts) and the address normaliser under it
 * (src/common/ip.ts): every textual form of loopback, unspecified and own addresses (mapped,
 * compatible, NAT64, bracketed, spelled out) is refused with its own code, whatever
 * deny_subnets says; only allow_loopback lifts the loopback refusal.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { findKey } from '../../../src/common/config/config.js'
import {
  checkDestination,
  DestinationRefusal,
  type DestinationGuardOptions
} from '../../../src/common/destination-guard.js'
import { openEndpoints } from '../../../src/common/flow-endpoints.js'
import { formatIp, normalizeIp, parseIp } from '../../../src/common/ip.js'
import {
  inSubnet,
  parseSubnetList,
  policyAccepts,
  type Policy
} from '../../../src/common/policy.js'

/** Normalised text of `text`, or 'invalid'. */
function norm(text: string): string {
  const ip = parseIp(text)
  return ip === undefined ? 'invalid' : `${normalizeIp(ip).family}/${formatIp(normalizeIp(ip))}`
}

describe('address normaliser', () => {
  it('turns mapped and compatible IPv6 into the IPv4 address they reach, in every spelling', () => {
    const table: [string, string][] = [
      ['127.0.0.1', '4/127.0.0.1'],
      ['::ffff:127.0.0.1', '4/127.0.0.1'],
      ['::FFFF:127.0.0.1', '4/127.0.0.1'],
      ['[::ffff:127.0.0.1]', '4/127.0.0.1'],
      ['::ffff:7f00:1', '4/127.0.0.1'],
      ['::ffff:7f00:0001', '4/127.0.0.1'],
      ['0:0:0:0:0:ffff:7f00:1', '4/127.0.0.1'],
      ['0000:0000:0000:0000:0000:ffff:7f00:0001', '4/127.0.0.1'],
      ['0::ffff:127.0.0.1', '4/127.0.0.1'],
      ['::ffff:0.0.0.0', '4/0.0.0.0'],
      ['[::ffff:0.0.0.0]', '4/0.0.0.0'],
      ['::ffff:0:0', '4/0.0.0.0'],
      ['::ffff:169.254.169.254', '4/169.254.169.254'],
      ['::ffff:a9fe:a9fe', '4/169.254.169.254'],
      ['::127.0.0.1', '4/127.0.0.1'],
      ['::7f00:1', '4/127.0.0.1'],
      ['[::7f00:1]', '4/127.0.0.1'],
      ['::192.0.2.2', '4/192.0.2.2'],
      ['::0.0.0.2', '4/0.0.0.2'],
      ['::ffff:127.0.0.1%lo', '4/127.0.0.1'],
      // Stay IPv6: unspecified and loopback are not 0.0.0.0 and 0.0.0.1.
      ['::', '6/::'],
      ['::0', '6/::'],
      ['0:0:0:0:0:0:0:0', '6/::'],
      ['::1', '6/::1'],
      ['[::1]', '6/::1'],
      ['0:0:0:0:0:0:0:1', '6/::1'],
      ['::0.0.0.1', '6/::1'],
      // Embed IPv4 but are not mapped or compatible: stay IPv6 (the guard refuses them).
      ['64:ff9b::7f00:1', '6/64:ff9b::7f00:1'],
      ['64:ff9b::127.0.0.1', '6/64:ff9b::7f00:1'],
      ['::ffff:0:7f00:1', '6/::ffff:0:7f00:1'],
      ['2001:db8::1', '6/2001:db8::1'],
      ['fe80::1%eth0', '6/fe80::1'],
      // Not addresses.
      ['localhost', 'invalid'],
      ['127.1', 'invalid'],
      ['0x7f000001', 'invalid'],
      ['2130706433', 'invalid'],
      ['[127.0.0.1', 'invalid'],
      ['::ffff:127.0.0.256', 'invalid'],
      ['', 'invalid']
    ]
    for (const [text, want] of table) assert.equal(norm(text), want, text)
  })

  it('subnets and policies compare normalised bytes, across families', () => {
    const [v4] = parseSubnetList('k', '10.0.0.0/8')
    assert.ok(inSubnet(v4!, '::ffff:10.1.2.3'))
    assert.ok(inSubnet(v4!, '::ffff:a01:203'))
    assert.ok(!inSubnet(v4!, '::ffff:11.1.2.3'))
    const [mapped] = parseSubnetList('k', '::ffff:10.0.0.0/104')
    assert.equal(mapped!.family, 4)
    assert.equal(mapped!.prefix, 8)
    assert.ok(inSubnet(mapped!, '10.9.9.9'))
    const policy: Policy = {
      ports: [],
      subnets: [],
      excludePorts: [],
      excludeSubnets: parseSubnetList('k', '169.254.0.0/16')
    }
    assert.ok(!policyAccepts(policy, '::ffff:169.254.169.254', 80))
    assert.ok(policyAccepts(policy, '::ffff:192.0.2.9', 80))
  })

  it('an OPEN drops the source when the families differ, after normalising both', () => {
    const dst6 = { family: 6 as const, address: '2001:db8::1', port: 80 }
    const src4 = { family: 4 as const, address: '192.0.2.7', port: 40000 }
    assert.deepEqual(openEndpoints(dst6, src4), { dst: dst6, src: undefined, srcDropped: true })
    const mappedDst = { family: 6 as const, address: '::ffff:192.0.2.9', port: 80 }
    const o = openEndpoints(mappedDst, src4)
    assert.deepEqual(o.dst, { family: 4, address: '192.0.2.9', port: 80 })
    assert.deepEqual(o.src, src4)
    assert.equal(o.srcDropped, false)
  })
})

/** The default rx_proxy.deny_subnets, parsed. */
const DEFAULT_DENY = parseSubnetList('k', findKey('rx_proxy.deny_subnets')!.default)
const OWN = ['127.0.0.1', '::1', '192.0.2.2', 'fd00::2', 'fe80::fc:ff:fe00:1']

function guard(over: Partial<DestinationGuardOptions> = {}): DestinationGuardOptions {
  return {
    policy: { ports: [], subnets: [], excludePorts: [], excludeSubnets: DEFAULT_DENY },
    allowLoopback: false,
    ownAddresses: () => OWN,
    ...over
  }
}

function code(address: string, port = 22, opts = guard()): string {
  const v = checkDestination(address, port, opts)
  return v.ok ? `ok ${v.family}/${v.address}` : v.code
}

describe('relay guard', () => {
  const { LOOPBACK, UNSPECIFIED, OWN_ADDRESS, EMBEDDED_IPV4, DENIED_SUBNET, PORT_ZERO } =
    DestinationRefusal
  const attacks: [string, string][] = [
    ['127.0.0.1', LOOPBACK],
    ['127.3.4.5', LOOPBACK],
    ['::ffff:127.0.0.1', LOOPBACK],
    ['[::ffff:127.0.0.1]', LOOPBACK],
    ['::ffff:7f00:1', LOOPBACK],
    ['::ffff:7f03:405', LOOPBACK],
    ['0:0:0:0:0:ffff:7f00:1', LOOPBACK],
    ['::127.0.0.1', LOOPBACK],
    ['::7f00:1', LOOPBACK],
    ['::1', LOOPBACK],
    ['0:0:0:0:0:0:0:1', LOOPBACK],
    ['0.0.0.0', UNSPECIFIED],
    ['0.1.2.3', UNSPECIFIED],
    ['::ffff:0.0.0.0', UNSPECIFIED],
    ['[::ffff:0.0.0.0]', UNSPECIFIED],
    ['::ffff:0:0', UNSPECIFIED],
    ['::', UNSPECIFIED],
    ['::0.0.0.2', UNSPECIFIED],
    ['192.0.2.2', OWN_ADDRESS],
    ['::ffff:192.0.2.2', OWN_ADDRESS],
    ['::ffff:c000:202', OWN_ADDRESS],
    ['::192.0.2.2', OWN_ADDRESS],
    ['fd00::2', OWN_ADDRESS],
    ['fd00:0:0:0:0:0:0:2', OWN_ADDRESS],
    ['FD00::0002', OWN_ADDRESS],
    ['fe80::fc:ff:fe00:1', OWN_ADDRESS],
    ['fe80::99', DENIED_SUBNET],
    ['64:ff9b::7f00:1', EMBEDDED_IPV4],
    ['64:ff9b::127.0.0.1', EMBEDDED_IPV4],
    ['64:ff9b::0.0.0.0', EMBEDDED_IPV4],
    ['64:ff9b::c000:202', EMBEDDED_IPV4],
    ['64:ff9b::a9fe:a9fe', EMBEDDED_IPV4],
    ['64:ff9b:1::7f00:1', EMBEDDED_IPV4],
    ['::ffff:0:7f00:1', EMBEDDED_IPV4],
    ['169.254.169.254', DENIED_SUBNET],
    ['::ffff:169.254.169.254', DENIED_SUBNET],
    ['::ffff:a9fe:a9fe', DENIED_SUBNET],
    ['::169.254.169.254', DENIED_SUBNET]
  ]

  it('refuses every form of loopback, unspecified, own and embedded addresses, each by its code', () => {
    for (const [address, want] of attacks) assert.equal(code(address), want, address)
  })

  it('refuses port 0 whatever the address', () => {
    assert.equal(code('192.0.2.9', 0), PORT_ZERO)
    assert.equal(code('2001:db8::1', 0), PORT_ZERO)
  })

  it('lets ordinary destinations through, normalised to what is connected to', () => {
    assert.equal(code('192.0.2.9'), 'ok 4/192.0.2.9')
    assert.equal(code('::ffff:192.0.2.9'), 'ok 4/192.0.2.9')
    assert.equal(code('2001:db8::1'), 'ok 6/2001:db8::1')
  })

  it('an empty deny_subnets removes none of the built-in refusals', () => {
    const open = guard({ policy: { ports: [], subnets: [], excludePorts: [], excludeSubnets: [] } })
    for (const [address, want] of attacks) {
      const got = code(address, 22, open)
      if (want === DENIED_SUBNET) assert.match(got, /^ok /, address)
      else assert.equal(got, want, address)
    }
  })

  it('own addresses are read at each check: a new address is refused at once', () => {
    const own = ['127.0.0.1']
    const g = guard({ ownAddresses: () => own })
    assert.equal(code('198.51.100.7', 22, g), 'ok 4/198.51.100.7')
    own.push('198.51.100.7')
    assert.equal(code('::ffff:198.51.100.7', 22, g), OWN_ADDRESS)
  })

  it('allow_loopback lifts the loopback refusal only', () => {
    const g = guard({ allowLoopback: true })
    assert.equal(code('127.0.0.1', 22, g), 'ok 4/127.0.0.1')
    assert.equal(code('::ffff:127.0.0.1', 22, g), 'ok 4/127.0.0.1')
    assert.equal(code('::1', 22, g), 'ok 6/::1')
    assert.equal(code('::ffff:0.0.0.0', 22, g), UNSPECIFIED)
    assert.equal(code('::ffff:192.0.2.2', 22, g), OWN_ADDRESS)
    assert.equal(code('64:ff9b::7f00:1', 22, g), EMBEDDED_IPV4)
    assert.equal(code('127.0.0.1', 0, g), PORT_ZERO)
  })

  it('allow_subnets and allow_ports still apply, on the normalised address', () => {
    const g = guard({
      policy: {
        ports: [{ from: 80, to: 80 }],
        subnets: parseSubnetList('k', '192.0.2.0/24'),
        excludePorts: [],
        excludeSubnets: []
      }
    })
    assert.equal(code('::ffff:192.0.2.9', 80, g), 'ok 4/192.0.2.9')
    assert.equal(code('::ffff:198.51.100.1', 80, g), DestinationRefusal.NOT_ALLOWED_SUBNET)
    assert.equal(code('192.0.2.9', 81, g), DestinationRefusal.NOT_ALLOWED_PORT)
  })
})
