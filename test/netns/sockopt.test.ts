/**
 * Native socket calls that need netfilter state (root only, in a throwaway namespace):
 * SO_ORIGINAL_DST after REDIRECT for IPv4 and IPv6, and transparentConnect's SO_MARK and
 * timeout.
 */
import assert from 'node:assert/strict'
import { constants } from 'node:os'
import { describe, test } from 'node:test'

import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { ruleCounter, runChild } from '../helpers/netns-child.js'

const LISTEN_PORT = 8080
const REDIRECTED_PORT = 9000
const BLACKHOLE_PORT = 9999
const MARK = 0x2
const MARK_COMMENT = 'tandem-test-so-mark'

async function namespace(t: { after(fn: () => void): void }): Promise<Netns> {
  const ns = createNetns('tso', t)
  await ns.exec(['ip', 'link', 'set', 'lo', 'up'])
  return ns
}

describe('native socket options in a network namespace', { skip: netnsUnavailableReason() }, () => {
  test('getOriginalDst returns the pre-REDIRECT IPv4 destination', async (t) => {
    const ns = await namespace(t)
    await ns.exec(
      ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '127.0.0.2'].concat([
        '--dport',
        `${REDIRECTED_PORT}`,
        '-j',
        'REDIRECT',
        '--to-ports',
        `${LISTEN_PORT}`
      ])
    )
    const result = await runChild(ns, {
      mode: 'origdst',
      family: 4,
      listenAddress: '127.0.0.1',
      listenPort: LISTEN_PORT,
      connectAddress: '127.0.0.2',
      connectPort: REDIRECTED_PORT
    })
    assert.deepEqual(result.originalDst, { address: '127.0.0.2', port: REDIRECTED_PORT })
  })

  test('getOriginalDst returns the pre-REDIRECT IPv6 destination', async (t) => {
    const ns = await namespace(t)
    await ns.exec(
      ['ip6tables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '::1'].concat([
        '--dport',
        `${REDIRECTED_PORT}`,
        '-j',
        'REDIRECT',
        '--to-ports',
        `${LISTEN_PORT}`
      ])
    )
    const result = await runChild(ns, {
      mode: 'origdst',
      family: 6,
      listenAddress: '::1',
      listenPort: LISTEN_PORT,
      connectAddress: '::1',
      connectPort: REDIRECTED_PORT
    })
    assert.deepEqual(result.originalDst, { address: '::1', port: REDIRECTED_PORT })
  })

  test('transparentConnect applies SO_MARK', async (t) => {
    const ns = await namespace(t)
    await ns.exec(
      ['iptables', '-A', 'OUTPUT', '-p', 'tcp', '--syn', '--dport', `${LISTEN_PORT}`].concat([
        '-m',
        'mark',
        '--mark',
        `${MARK}`,
        '-m',
        'comment',
        '--comment',
        MARK_COMMENT
      ])
    )
    const result = await runChild(ns, {
      mode: 'transparent',
      family: 4,
      address: '127.0.0.1',
      remotePort: LISTEN_PORT,
      listen: true,
      mark: MARK,
      timeoutMs: 5000
    })
    assert.equal(result.connected, 1)
    assert.equal(result.peer?.address, '127.0.0.1')
    assert.equal(await ruleCounter(ns, 'filter', 'OUTPUT', MARK_COMMENT), 1)
  })

  test('transparentConnect over IPv6 connects', async (t) => {
    const ns = await namespace(t)
    const result = await runChild(ns, {
      mode: 'transparent',
      family: 6,
      address: '::1',
      remotePort: LISTEN_PORT,
      listen: true,
      mark: MARK,
      timeoutMs: 5000
    })
    assert.equal(result.connected, 1)
    assert.equal(result.peer?.address, '::1')
  })

  test('transparentConnect rejects with ETIMEDOUT when SYNs are dropped', async (t) => {
    const ns = await namespace(t)
    await ns.exec([
      'iptables',
      '-A',
      'OUTPUT',
      '-p',
      'tcp',
      '--dport',
      `${BLACKHOLE_PORT}`,
      '-j',
      'DROP'
    ])
    const result = await runChild(ns, {
      mode: 'transparent',
      family: 4,
      address: '127.0.0.1',
      remotePort: BLACKHOLE_PORT,
      listen: false,
      mark: MARK,
      timeoutMs: 300
    })
    assert.equal(result.connected, 0)
    assert.equal(result.errno, constants.errno.ETIMEDOUT)
  })
})
