/**
 * The real NFQUEUE binding, in a throwaway network namespace (root only): the queue sees the
 * SYN of a loopback connection, parses it, and an accept verdict with a mark lets it through
 * carrying that mark; with nothing bound, --queue-bypass keeps connections working.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { ruleCounter, runChild } from '../helpers/netns-child.js'

/** Listener port inside the namespace (fresh namespace: nothing else uses it). */
const PORT = 8080
/** A second port whose queue rule has no --queue-bypass. */
const PORT_NO_BYPASS = 8081
const QUEUE_NUM = 3
const MARK = 0x1
const MARK_COMMENT = 'tandem-test-mark'

async function queueNamespace(t: { after(fn: () => void): void }): Promise<Netns> {
  const ns = createNetns('tnq', t)
  await ns.exec(['ip', 'link', 'set', 'lo', 'up'])
  // Queue only connection openings, as the tx proxy does.
  await ns.exec(
    ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--syn', '--dport', `${PORT}`].concat(
      ['-j', 'NFQUEUE', '--queue-num', `${QUEUE_NUM}`, '--queue-bypass']
    )
  )
  // Counts SYNs that leave the queue carrying our mark (filter runs after mangle).
  await ns.exec(
    ['iptables', '-t', 'filter', '-A', 'OUTPUT', '-p', 'tcp', '--syn', '--dport', `${PORT}`].concat(
      ['-m', 'mark', '--mark', `${MARK}`, '-m', 'comment', '--comment', MARK_COMMENT]
    )
  )
  return ns
}

describe('NFQUEUE in a network namespace', { skip: netnsUnavailableReason() }, () => {
  test('sees exactly the SYN and accepts it with a mark', async (t) => {
    const ns = await queueNamespace(t)
    const result = await runChild(ns, {
      mode: 'queue',
      queueNum: QUEUE_NUM,
      port: PORT,
      connections: 1,
      mark: MARK,
      batch: false
    })
    assert.equal(result.connected, 1)
    assert.equal(result.rebound, true)
    const packets = result.packets ?? []
    assert.equal(packets.length, 1, `exactly one packet queued: ${JSON.stringify(packets)}`)
    const syn = packets[0]!
    assert.equal(syn.hwProtocol, 0x0800)
    assert.equal(syn.mark, 0)
    assert.ok(syn.parsed, 'the queued payload parses as IPv4 + TCP')
    assert.equal(syn.parsed.family, 4)
    assert.deepEqual(syn.parsed.flags, { syn: true, ack: false, fin: false, rst: false })
    assert.equal(syn.parsed.srcAddress, '127.0.0.1')
    assert.equal(syn.parsed.dstAddress, '127.0.0.1')
    assert.equal(syn.parsed.dstPort, PORT)
    assert.equal(syn.parsed.srcPort, result.clientPorts?.[0])
    assert.equal(syn.parsed.totalLength, syn.payloadBytes)
    assert.equal(await ruleCounter(ns, 'filter', 'OUTPUT', MARK_COMMENT), 1)
  })

  test('verdictBatch accepts several SYNs at once', async (t) => {
    const ns = await queueNamespace(t)
    const result = await runChild(ns, {
      mode: 'queue',
      queueNum: QUEUE_NUM,
      port: PORT,
      connections: 3,
      mark: MARK,
      batch: true
    })
    assert.equal(result.connected, 3)
    const packets = result.packets ?? []
    assert.equal(packets.length, 3)
    assert.deepEqual(
      packets.map((p) => p.parsed?.srcPort).sort(),
      [...(result.clientPorts ?? [])].sort()
    )
    assert.ok(packets.every((p) => p.parsed?.flags.syn === true))
    assert.equal(await ruleCounter(ns, 'filter', 'OUTPUT', MARK_COMMENT), 3)
  })

  test('--queue-bypass lets connections through when no reader is bound', async (t) => {
    const ns = await queueNamespace(t)
    // Control: the same rule without --queue-bypass holds the SYN with no reader to release it.
    await ns.exec(
      ['iptables', '-t', 'mangle', '-A', 'OUTPUT', '-p', 'tcp', '--syn'].concat([
        '--dport',
        `${PORT_NO_BYPASS}`,
        '-j',
        'NFQUEUE',
        '--queue-num',
        `${QUEUE_NUM}`
      ])
    )
    const blocked = await runChild(ns, { mode: 'connect', port: PORT_NO_BYPASS, timeoutMs: 1000 })
    assert.equal(blocked.connected, 0)
    const bypassed = await runChild(ns, { mode: 'connect', port: PORT, timeoutMs: 5000 })
    assert.equal(bypassed.connected, 1)
    assert.equal(await ruleCounter(ns, 'filter', 'OUTPUT', MARK_COMMENT), 0)
  })
})
