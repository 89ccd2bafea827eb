/**
 * AcceptGate: the limits on peers that have not proved the key (pending in all, per source,
 * allow_peers), with pending counted until 'close', and one rate-limited line per refusal that
 * names the peer.
 */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'

import { Counters } from '../../../src/common/counters.js'
import { PepError, PepErrorCodes } from '../../../src/common/errors.js'
import type { Logger } from '../../../src/common/log/logger.js'
import { parseSubnetList } from '../../../src/common/policy.js'
import { AcceptGate, normalisePeerAddress } from '../../../src/trunk/accept-gate.js'

/** Enough of a socket for the gate: an address, destroy() and 'close'. */
class FakeSocket extends EventEmitter {
  destroyed = false
  constructor(
    readonly remoteAddress: string,
    readonly remotePort = 40000
  ) {
    super()
  }
  destroy(): void {
    if (this.destroyed) return
    this.destroyed = true
    this.emit('close')
  }
}

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const log: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (m) => lines.push(m),
    error: (m) => lines.push(m),
    child: () => log,
    isDebugEnabled: () => false
  }
  return { log, lines }
}

function gate(opts: { maxPending?: number; perSource?: number; allow?: string } = {}): {
  gate: AcceptGate
  counters: Counters
  lines: string[]
} {
  const counters = new Counters()
  const { log, lines } = recordingLog()
  return {
    gate: new AcceptGate({
      maxPending: opts.maxPending ?? 100,
      maxPendingPerSource: opts.perSource ?? 100,
      allowPeers: parseSubnetList('rx_proxy.allow_peers', opts.allow ?? ''),
      counters,
      log
    }),
    counters,
    lines
  }
}

const sock = (address: string, port?: number): Socket =>
  new FakeSocket(address, port) as unknown as Socket

describe('normalisePeerAddress', () => {
  it('turns IPv4-mapped IPv6 into IPv4 and leaves the rest alone', () => {
    assert.equal(normalisePeerAddress('::ffff:192.0.2.7'), '192.0.2.7')
    assert.equal(normalisePeerAddress('::FFFF:c000:0207'), '192.0.2.7')
    assert.equal(normalisePeerAddress('192.0.2.7'), '192.0.2.7')
    assert.equal(normalisePeerAddress('2001:DB8::1'), '2001:db8::1')
    assert.equal(normalisePeerAddress('::1'), '::1')
  })
})

describe('AcceptGate', () => {
  it('caps pending handshakes per source; another source still gets in', () => {
    const { gate: g, counters, lines } = gate({ perSource: 2 })
    const a = [sock('10.0.0.1'), sock('::ffff:10.0.0.1'), sock('10.0.0.1')]
    assert.ok(g.admit(a[0]!))
    assert.ok(g.admit(a[1]!), 'the mapped form is the same source')
    assert.equal(g.admit(a[2]!), undefined)
    assert.ok((a[2] as unknown as FakeSocket).destroyed)
    assert.equal(counters.get('handshakes_refused_per_source'), 1)
    assert.match(
      lines[0]!,
      /subflow from 10\.0\.0\.1:40000 refused: max_unauthenticated_per_source/
    )
    assert.ok(g.admit(sock('10.0.0.2')))
    assert.equal(g.pendingFrom('10.0.0.1'), 2)
  })

  it('counts a socket as pending until close, not until its handshake failed', () => {
    const { gate: g } = gate({ perSource: 1 })
    const s = sock('10.0.0.1')
    const who = g.admit(s)
    assert.ok(who)
    g.failed(who, new PepError(PepErrorCodes.AUTH_FAILED, 'wrong key?', true))
    assert.equal(g.size, 1, 'still pending: its refusal may not be flushed yet')
    assert.equal(g.admit(sock('10.0.0.1')), undefined)
    s.destroy()
    assert.equal(g.size, 0)
    assert.ok(g.admit(sock('10.0.0.1')))
  })

  it('an authenticated socket stops counting at once', () => {
    const { gate: g } = gate({ maxPending: 1 })
    const s = sock('10.0.0.1')
    assert.ok(g.admit(s))
    g.authenticated(s)
    assert.ok(g.admit(sock('10.0.0.3')))
  })

  it('caps pending handshakes in all', () => {
    const { gate: g, counters } = gate({ maxPending: 2 })
    assert.ok(g.admit(sock('10.0.0.1')))
    assert.ok(g.admit(sock('10.0.0.2')))
    assert.equal(g.admit(sock('10.0.0.3')), undefined)
    assert.equal(counters.get('handshakes_refused_busy'), 1)
  })

  it('allow_peers: only listed addresses and subnets, mapped IPv6 compared as IPv4', () => {
    const { gate: g, counters, lines } = gate({ allow: '192.0.2.0/24,2001:db8::/32' })
    assert.ok(g.admit(sock('192.0.2.9')))
    assert.ok(g.admit(sock('::ffff:192.0.2.10')))
    assert.ok(g.admit(sock('2001:db8:1::5')))
    assert.equal(g.admit(sock('198.51.100.1', 5555)), undefined)
    assert.equal(g.admit(sock('::ffff:198.51.100.1')), undefined)
    assert.equal(counters.get('handshakes_refused_peer'), 2)
    assert.match(
      lines[0]!,
      /subflow from 198\.51\.100\.1:5555 refused: not in rx_proxy\.allow_peers/
    )
  })

  it('failures: counted by code, one line naming the peer, the first ten then powers of two', () => {
    const { gate: g, counters, lines } = gate()
    for (let i = 0; i < 1000; i++) {
      const s = sock('2001:db8::7', 6000)
      const who = g.admit(s)!
      g.failed(who, new PepError(PepErrorCodes.AUTH_FAILED, 'the dialer failed (wrong key?)', true))
      s.destroy()
    }
    assert.equal(counters.get('handshake_failures_PEP_ERR_AUTH_FAILED'), 1000)
    assert.equal(counters.get('auth_failures'), 1000)
    assert.equal(lines.length, 10 + 6) // 16, 32, 64, 128, 256, 512
    assert.equal(
      lines[0],
      'subflow from [2001:db8::7]:6000 refused: the dialer failed (wrong key?)'
    )
  })
})
