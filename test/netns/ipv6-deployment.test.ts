/**
 * The README's IPv6 set-up, end to end in the five-namespace testbed (root only): br0 gets its
 * IPv6 address from `tx_bridge_address6` / `rx_bridge_address6` (bridge-setup.sh -c, no
 * command-line address), the proxies listen on `::`, the trunk runs over IPv6
 * (`rx_proxy_ip` = the rx box's IPv6 address), the rules of both families are applied with
 * the default options and the rx box is source-transparent. An IPv6 client in src is
 * intercepted and carried to dst: sha256 equal both ways, dst sees the client's own address.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { netnsUnavailableReason } from '../helpers/netns.js'
import { dist, runIn, startIn, type NsProcess } from '../helpers/ns-process.js'
import {
  APPLY_RULES,
  createTopology,
  TOPOLOGY_ADDRESSES as A,
  type Topology
} from '../helpers/topology.js'

/** One JSON line of ./receive. */
interface Received {
  readonly peerAddress: string
  readonly peerPort: number
  readonly receivedBytes: number
  readonly receivedSha256: string
  readonly replySha256: string
}
/** ./stream --json. */
interface Streamed {
  readonly localPort: number
  readonly sentBytes: number
  readonly sentSha256: string
  readonly replyBytes: number
  readonly replySha256: string
}

const MiB = 1024 * 1024
const PORT = 5401

describe('IPv6 deployment as the README describes it', { skip: netnsUnavailableReason() }, () => {
  let topo: Topology
  let dir: string
  const procs: NsProcess[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-v6-'))
    topo = await createTopology({
      prefix: 'tv6',
      applyRules: false,
      overrides: {
        'tx_proxy.local_ip': '::',
        'tx_proxy.rx_proxy_ip': A.rx.v6,
        'rx_proxy.recv_ip': '::',
        'interception.transparent': 'true',
        'tx_proxy.control_socket': join(dir, 'tx.sock'),
        'rx_proxy.control_socket': join(dir, 'rx.sock')
      }
    })
  })
  after(async () => {
    for (const p of procs.reverse()) await p.stop()
    topo.destroy()
    rmSync(dir, { recursive: true, force: true })
  })

  test('br0 carries the configured IPv6 address on both boxes', async () => {
    const log = topo.setupLog.join('')
    assert.match(log, /address fd00:2::201\/64 on br0/)
    assert.match(log, /address fd00:2::202\/64 on br0/)
    for (const [ns, address] of [
      [topo.ns.tx, `${A.tx.v6}/64`],
      [topo.ns.rx, `${A.rx.v6}/64`]
    ] as const) {
      const { stdout } = await ns.exec([
        'ip',
        '-6',
        '-o',
        'addr',
        'show',
        'dev',
        'br0',
        'scope',
        'global'
      ])
      assert.ok(stdout.includes(`inet6 ${address}`), stdout)
    }
  })

  test('an IPv6 client is intercepted and carried over an IPv6 trunk: sha256 equal, dst sees the client', async () => {
    // The rules with the default options (both families), as the deployment steps apply them.
    for (const [ns, role] of [
      [topo.ns.tx, 'tx'],
      [topo.ns.rx, 'rx']
    ] as const) {
      const r = await runIn(ns, ['sh', APPLY_RULES, '-c', topo.configPath, '--role', role])
      assert.equal(r.code, 0, r.output)
      assert.match(r.output, /applied \(iptables ip6tables\)/)
    }
    const rx = startIn(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', topo.configPath], 'rx_proxy')
    procs.push(rx)
    await rx.waitFor(/listening on/)
    const tx = startIn(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', topo.configPath], 'tx_proxy')
    procs.push(tx)
    await tx.waitFor(/subflow up(.|\n)*subflow up(.|\n)*subflow up(.|\n)*subflow up/)
    const recv = startIn(
      topo.ns.dst,
      [
        dist('tools/receive.js'),
        '--port',
        `${PORT}`,
        '--host',
        '::',
        '--keep-listening',
        '--reply-bytes',
        '4MiB',
        '--json',
        '--quiet'
      ],
      'receive'
    )
    procs.push(recv)
    await recv.waitFor(/listening on/)

    const r = await runIn(topo.ns.src, [
      dist('tools/stream.js'),
      A.dst.v6,
      `${PORT}`,
      '--bytes',
      '16MiB',
      '--json',
      '--quiet',
      '--timeout',
      '60'
    ])
    assert.equal(r.code, 0, r.output)
    const s = JSON.parse(r.output.trim().split('\n').pop() ?? '{}') as Streamed
    const line = await recv.waitFor(/^\{.*\}$/m, 30_000)
    const d = JSON.parse(line[0]) as Received
    assert.equal(d.receivedBytes, 16 * MiB)
    assert.equal(d.receivedSha256, s.sentSha256)
    assert.equal(s.replyBytes, 4 * MiB)
    assert.equal(s.replySha256, d.replySha256)
    assert.equal(d.peerAddress, A.src.v6, 'dst sees the client itself')
    assert.equal(d.peerPort, s.localPort)
    // Carried by the pair, over subflows to the rx box's IPv6 address.
    assert.match(rx.output(), /flow open .*dst=\[fd00:2::12\]:5401/)
    const trunk = await topo.ns.rx.exec(['ss', '-Htn', 'state', 'established', 'sport', '= :6000'])
    assert.match(trunk.stdout, /\[fd00:2::202\]:6000/, trunk.stdout)
    process.stdout.write(
      `IPv6 client ${A.src.v6} -> [${A.dst.v6}]:${PORT}: ${d.receivedBytes} B up, ${s.replyBytes} B back, sha256 equal; trunk ${trunk.stdout.trim().split('\n').length} subflows over IPv6\n`
    )
  })
})
