/**
 * rx_proxy is no relay to itself: a peer that holds the key asks for loopback, unspecified and
 * the box's own addresses in their IPv4-mapped, IPv4-compatible and NAT64 forms, and each OPEN
 * is refused with POLICY_DENIED and its code while a listener on every address of this box
 * (`::`, dual-stack) sees no connection. Then through real proxies, as the review did:
 * `--destination [::ffff:127.0.0.1]:PORT` reaches nothing.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Server } from 'node:net'
import { networkInterfaces } from 'node:os'
import { after, before, describe, it } from 'node:test'

import { queryStatus } from '../../src/app/control.js'
import { ResetReason, type Endpoint, type Frame } from '../../src/common/wire/frame.js'
import { HostileDialer, keyBytes } from '../helpers/hostile.js'
import { startPair, TEST_PSK, type ProxyPair } from '../helpers/proxies.js'
import { readAll } from '../helpers/transfer.js'

/** A listener on every address of this box, both families, counting connections. */
async function listenEverywhere(): Promise<{ server: Server; port: number; count: () => number }> {
  let n = 0
  const server = createServer((s) => {
    n++
    s.on('error', () => undefined)
    s.end('you reached a service on the rx box\n')
  })
  await new Promise<void>((resolve) =>
    server.listen({ port: 0, host: '::', ipv6Only: false }, resolve)
  )
  const a = server.address()
  return { server, port: typeof a === 'object' && a !== null ? a.port : 0, count: () => n }
}

/** IPv4 bytes of dotted `text` as the tail of an IPv6 text: `7f00:1` for 127.0.0.1. */
function v4Tail(text: string): string {
  const b = text.split('.').map(Number)
  return `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`
}

/** The box's own non-loopback addresses (the container's or namespace's interfaces). */
function ownAddresses(): { v4: string[]; v6: string[] } {
  const all = Object.values(networkInterfaces()).flatMap((l) => l ?? [])
  return {
    v4: all.filter((i) => !i.internal && i.family === 'IPv4').map((i) => i.address),
    v6: all
      .filter((i) => !i.internal && i.family === 'IPv6' && !i.address.startsWith('fe80'))
      .map((i) => i.address)
  }
}

/** The attacks: an OPEN destination and the refusal code rx_proxy must answer with. */
function attacks(): [Endpoint['family'], string, string][] {
  const own = ownAddresses()
  const list: [Endpoint['family'], string, string][] = [
    [4, '127.0.0.1', 'DST_LOOPBACK'],
    [6, '::ffff:127.0.0.1', 'DST_LOOPBACK'],
    [6, '::ffff:7f00:1', 'DST_LOOPBACK'],
    [6, '::127.0.0.1', 'DST_LOOPBACK'],
    [6, '::ffff:127.1.2.3', 'DST_LOOPBACK'],
    [6, '::1', 'DST_LOOPBACK'],
    [6, '64:ff9b::7f00:1', 'DST_EMBEDDED_IPV4'],
    [6, '64:ff9b::0.0.0.0', 'DST_EMBEDDED_IPV4'],
    [4, '0.0.0.0', 'DST_UNSPECIFIED'],
    [6, '::ffff:0.0.0.0', 'DST_UNSPECIFIED'],
    [6, '::', 'DST_UNSPECIFIED'],
    [6, '::ffff:169.254.169.254', 'DST_DENIED_SUBNET']
  ]
  for (const a of own.v4) {
    list.push(
      [4, a, 'DST_OWN_ADDRESS'],
      [6, `::ffff:${a}`, 'DST_OWN_ADDRESS'],
      [6, `::ffff:${v4Tail(a)}`, 'DST_OWN_ADDRESS'],
      [6, `::${a}`, 'DST_OWN_ADDRESS'],
      [6, `64:ff9b::${a}`, 'DST_EMBEDDED_IPV4']
    )
  }
  for (const a of own.v6) list.push([6, a, 'DST_OWN_ADDRESS'])
  return list
}

describe('rx_proxy is no relay to itself', () => {
  let target: Awaited<ReturnType<typeof listenEverywhere>>
  let pair: ProxyPair

  before(async () => {
    target = await listenEverywhere()
    // The default policy: loopback not allowed, deny_subnets as shipped.
    pair = await startPair({ destinationPort: target.port, subflows: 1, allowLoopback: false })
  })
  after(async () => {
    await pair.stop()
    target.server.close()
  })

  it('mapped, compatible and NAT64 forms of loopback, unspecified and own addresses: each refused with its code', async () => {
    const list = attacks()
    const d = await HostileDialer.dial(pair.rxPort, {
      psk: keyBytes(TEST_PSK),
      trunkId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i)
    })
    assert.ok(d.accepted, 'the peer holds the key')
    const frames: Frame[] = list.map(([family, address], i) => ({
      type: 'open',
      flowId: 0x5ec0_0000 + i,
      dst: { family, address, port: target.port },
      src: undefined
    }))
    await d.sendFrames(frames)
    const resetOf = (i: number): Frame | undefined =>
      d.frames.find((f) => f.type === 'reset' && f.flowId === 0x5ec0_0000 + i)
    await d.waitFor(() => list.every((_, i) => resetOf(i) !== undefined), 10_000)
    assert.equal(target.count(), 0, 'nothing reached the listener on this box')
    const want = new Map<string, number>()
    list.forEach(([, address, code], i) => {
      const r = resetOf(i)
      assert.ok(r?.type === 'reset', `no RESET for ${address}`)
      assert.equal(r.reason, ResetReason.POLICY_DENIED, address)
      assert.ok(r.message.includes(code), `${address}: ${code} not in ${JSON.stringify(r.message)}`)
      want.set(code, (want.get(code) ?? 0) + 1)
      process.stdout.write(`${address} -> ${r.message}\n`)
    })
    d.close()
    assert.equal(target.count(), 0, 'nothing reached the listener on this box')
    const rx = await queryStatus(pair.rxControl)
    assert.equal(rx.counters.flows_refused_destination, list.length)
    for (const [code, n] of want)
      assert.equal(rx.counters[`flows_refused_destination_${code}`], n, code)
    assert.equal(rx.counters.connects ?? 0, 0)
  })

  it('port 0 is refused', async () => {
    const d = await HostileDialer.dial(pair.rxPort, {
      psk: keyBytes(TEST_PSK),
      trunkId: Uint8Array.from({ length: 16 }, (_, i) => 0xb0 + i)
    })
    await d.sendFrames([
      {
        type: 'open',
        flowId: 77,
        dst: { family: 4, address: '192.0.2.200', port: 0 },
        src: undefined
      }
    ])
    assert.ok(
      await d.waitFrame(
        (f) => f.type === 'reset' && f.flowId === 77 && f.message.includes('DST_PORT_ZERO')
      )
    )
    d.close()
  })
})

describe("the review's attack through real proxies", () => {
  for (const [destination, code] of [
    ['[::ffff:127.0.0.1]', 'DST_LOOPBACK'],
    ['[::ffff:7f00:1]', 'DST_LOOPBACK'],
    ['[::ffff:0.0.0.0]', 'DST_UNSPECIFIED'],
    ['[::127.0.0.1]', 'DST_LOOPBACK']
  ] as const) {
    it(`tx_proxy --destination ${destination}:PORT reaches nothing while a listener is there (${code})`, async () => {
      const target = await listenEverywhere()
      const pair = await startPair({
        destinationPort: target.port,
        destination: `${destination}:${target.port}`,
        subflows: 1,
        allowLoopback: false,
        // An IPv6 client, so that the OPEN carries its source: one family throughout.
        txLocalIp: '::1'
      })
      try {
        const client = connect({ port: pair.txPort, host: '::1' })
        client.on('error', () => undefined)
        client.end('GET / HTTP/1.0\r\n\r\n')
        const got = await readAll(client)
        assert.equal(got.bytes, 0, 'no byte from the service came back')
        assert.notEqual(got.ending, 'end', 'the client is reset, not closed as if served')
        assert.equal(target.count(), 0, 'the listener saw no connection')
        const rx = await queryStatus(pair.rxControl)
        assert.equal(rx.counters[`flows_refused_destination_${code}`], 1)
        await pair.tx.waitFor(new RegExp(`POLICY_DENIED.*${code}|${code}.*POLICY_DENIED`))
      } finally {
        await pair.stop()
        target.server.close()
      }
    })
  }
})
