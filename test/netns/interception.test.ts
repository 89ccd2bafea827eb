/**
 * Issue 3 end to end, in the five-namespace testbed built with the real bridge-setup.sh and
 * iptables/apply.sh: src talks to dst as it always did; the tx box intercepts (NFQUEUE SYN
 * verdict + mark + REDIRECT) and carries the flows through the trunk to rx_proxy; fail-open
 * when either proxy is down; policy-unmatched flows pass untouched.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { queryStatus } from '../../src/app/control.js'
import { netnsUnavailableReason } from '../helpers/netns.js'
import { dist, runIn, startIn, type NsProcess } from '../helpers/ns-process.js'
import {
  createTopology,
  PROJECT_ROOT,
  TOPOLOGY_ADDRESSES as A,
  type Topology
} from '../helpers/topology.js'

const MiB = 1024 * 1024
const unavailable = netnsUnavailableReason()
if (unavailable !== undefined) throw new Error(`netns tests cannot run: ${unavailable}`)

/** One JSON line from ./receive. */
interface Received {
  peerAddress: string
  peerPort: number
  receivedBytes: number
  receivedSha256: string
  replySha256: string
}
/** ./stream --json. */
interface Streamed {
  sentBytes: number
  sentSha256: string
  replyBytes: number
  replySha256: string
  connectMs: number
}

describe('bridged interception in five namespaces', () => {
  let topo: Topology
  let conf: string
  let dir: string
  let rx: NsProcess | undefined
  let tx: NsProcess | undefined
  const servers: NsProcess[] = []

  const startRx = async (): Promise<NsProcess> => {
    const p = startIn(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', conf], 'rx_proxy')
    await p.waitFor(/listening on/)
    return p
  }
  const startTx = async (): Promise<NsProcess> => {
    const p = startIn(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', conf], 'tx_proxy')
    await p.waitFor(/intercepting SYNs/)
    await p.waitFor(/subflow up(.|\n)*subflow up(.|\n)*subflow up(.|\n)*subflow up/)
    return p
  }
  /** A receiver in dst on `port` that replies `replyBytes` after EOF and prints JSON lines. */
  const serve = async (port: number, replyBytes: string): Promise<NsProcess> => {
    const p = startIn(
      topo.ns.dst,
      [
        dist('tools/receive.js'),
        '--port',
        String(port),
        '--host',
        '::',
        '--keep-listening',
        '--reply-bytes',
        replyBytes,
        '--json',
        '--quiet'
      ],
      `receive:${port}`
    )
    await p.waitFor(/listening on/)
    servers.push(p)
    return p
  }
  const stream = async (host: string, port: number, bytes: string): Promise<Streamed> => {
    const r = await runIn(topo.ns.src, [
      dist('tools/stream.js'),
      host,
      String(port),
      '--bytes',
      bytes,
      '--json',
      '--quiet',
      '--timeout',
      '60'
    ])
    assert.equal(r.code, 0, `stream to ${host}:${port} failed: ${r.output}`)
    return JSON.parse(r.output.trim().split('\n').pop() ?? '{}') as Streamed
  }
  /** The n-th JSON line a receiver printed. */
  const received = async (p: NsProcess, n: number): Promise<Received> => {
    const jsonLines = (): string[] =>
      p
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
    const deadline = performance.now() + 30_000
    while (jsonLines().length < n) {
      if (performance.now() > deadline)
        throw new Error(`receiver printed no result ${n}:\n${p.output()}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    return JSON.parse(jsonLines()[n - 1] ?? '{}') as Received
  }

  /** The `n`-th transfer `s` received is `r`'s bytes, and came from src itself (not carried). */
  const assertDirect = async (s: NsProcess, n: number, r: Streamed, why: string): Promise<void> => {
    const d = await received(s, n)
    assert.equal(d.receivedSha256, r.sentSha256)
    assert.equal(d.peerAddress.replace('::ffff:', ''), A.src.v4, why)
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-ic-'))
    topo = await createTopology({ prefix: 'tic' })
    conf = join(dir, 'network.conf')
    topo.writeConfig(conf, {
      'tx_proxy.local_ip': '::',
      'tx_proxy.control_socket': join(dir, 'tx.sock'),
      'rx_proxy.control_socket': join(dir, 'rx.sock'),
      'rx_proxy.recv_ip': '::',
      'interception.exclude_ports': '22,5299',
      'trunk.outage_grace_ms': '2000',
      'trunk.ping_interval_ms': '500',
      'trunk.ping_timeout_ms': '2000',
      'tx_proxy.redial_max_ms': '1000'
    })
    rx = await startRx()
    tx = await startTx()
  })
  after(async () => {
    await tx?.stop()
    await rx?.stop()
    for (const s of servers) await s.stop()
    // Before topo.destroy(), which throws if before() failed to create the topology.
    rmSync(dir, { recursive: true, force: true })
    topo.destroy()
  })

  test('64 MiB to two services, replies back: sha256 equal, carried by the pair, original destinations', async () => {
    const a = await serve(5201, '8MiB')
    const b = await serve(5202, '8MiB')
    const [ra, rb] = await Promise.all([
      stream(A.dst.v4, 5201, '64MiB'),
      stream(A.dst.v4, 5202, '64MiB')
    ])
    const [da, db] = await Promise.all([received(a, 1), received(b, 1)])
    assert.equal(da.receivedBytes, 64 * MiB)
    assert.equal(da.receivedSha256, ra.sentSha256)
    assert.equal(db.receivedSha256, rb.sentSha256)
    assert.equal(ra.replySha256, da.replySha256)
    assert.equal(rb.replySha256, db.replySha256)
    assert.equal(ra.replyBytes, 8 * MiB)
    const txs = await queryStatus(join(dir, 'tx.sock'))
    const rxs = await queryStatus(join(dir, 'rx.sock'))
    assert.ok((txs.counters.syns_accelerated ?? 0) >= 2)
    assert.ok((txs.counters.flows_closed ?? 0) >= 2)
    assert.ok(txs.totals.bytesFromApp >= 2 * 64 * MiB)
    assert.ok((rxs.counters.connects ?? 0) >= 2)
    // rx_proxy connected to the original destinations (from SO_ORIGINAL_DST, nothing configured).
    assert.match(rx?.output() ?? '', /flow open .*dst=192\.168\.2\.12:5201/)
    assert.match(rx?.output() ?? '', /flow open .*dst=192\.168\.2\.12:5202/)
    assert.equal(txs.counters.syn_table_mismatches ?? 0, 0)
    process.stdout.write(`# interception: ${JSON.stringify(txs.interception)}\n`)
  })

  test('IPv6: a flow to [fd00:2::12] is intercepted and carried too', async () => {
    const s = await serve(5203, '1MiB')
    const r = await stream(A.dst.v6, 5203, '16MiB')
    const d = await received(s, 1)
    assert.equal(d.receivedSha256, r.sentSha256)
    assert.equal(r.replySha256, d.replySha256)
    assert.match(rx?.output() ?? '', /flow open .*dst=\[fd00:2::12\]:5203/)
  })

  test('a flow the policy excludes passes untouched (dst sees src itself)', async () => {
    const s = await serve(5299, '1KiB')
    const before = (await queryStatus(join(dir, 'tx.sock'))).counters.syns_bypassed_policy ?? 0
    const r = await stream(A.dst.v4, 5299, '1MiB')
    await assertDirect(s, 1, r, 'an excluded flow is not carried')
    const after = (await queryStatus(join(dir, 'tx.sock'))).counters.syns_bypassed_policy ?? 0
    assert.equal(after, before + 1)
  })

  test('fail-open: tx_proxy killed, new flows reach dst directly; restarted, accelerated again', async () => {
    const s = await serve(5204, '64KiB')
    await tx?.stop('SIGKILL')
    const r = await stream(A.dst.v4, 5204, '4MiB')
    await assertDirect(s, 1, r, 'without tx_proxy the flow goes direct')
    tx = await startTx()
    const r2 = await stream(A.dst.v4, 5204, '4MiB')
    const d2 = await received(s, 2)
    assert.equal(d2.receivedSha256, r2.sentSha256)
    assert.equal(
      d2.peerAddress.replace('::ffff:', ''),
      A.rx.v4,
      'with tx_proxy back, the pair carries it'
    )
    // The client's connect() time: the SYN goes through the NFQUEUE verdict (intercepted) or
    // straight through --queue-bypass (no tx_proxy); the handshake completes at the tx box or at dst.
    const direct: number[] = []
    const viaQueue: number[] = []
    for (let i = 0; i < 5; i++) viaQueue.push((await stream(A.dst.v4, 5204, '1KiB')).connectMs)
    await tx?.stop('SIGKILL')
    for (let i = 0; i < 5; i++) direct.push((await stream(A.dst.v4, 5204, '1KiB')).connectMs)
    tx = await startTx()
    const median = (xs: number[]): number =>
      [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? 0
    process.stdout.write(
      `# connect() from src: intercepted (SYN verdict by tx_proxy, handshake at the tx box) median ${median(viaQueue).toFixed(2)} ms; ` +
        `tx_proxy down (--queue-bypass, handshake with dst) median ${median(direct).toFixed(2)} ms\n`
    )
  })

  test('fail-open: rx_proxy stopped, new flows pass directly within seconds; back, accelerated again', async () => {
    const s = await serve(5205, '64KiB')
    const t0 = performance.now()
    await rx?.stop('SIGKILL')
    await tx?.waitFor(/trunk down|subflow \d+ down/)
    let n = 0
    let directAfterMs = -1
    // New connections as fast as a user would retry: the first one that goes direct shows the reaction time.
    for (let i = 0; i < 30 && directAfterMs < 0; i++) {
      const r = await stream(A.dst.v4, 5205, '256KiB')
      const d = await received(s, ++n)
      assert.equal(d.receivedSha256, r.sentSha256)
      if (d.peerAddress.replace('::ffff:', '') === A.src.v4) directAfterMs = performance.now() - t0
      else await new Promise((res) => setTimeout(res, 200))
    }
    assert.ok(directAfterMs >= 0, 'flows never went direct while rx_proxy was down')
    assert.ok(directAfterMs < 5000, `fail-open took ${directAfterMs} ms`)
    process.stdout.write(
      `# fail-open after rx_proxy died: first direct flow ${directAfterMs.toFixed(0)} ms later\n`
    )
    rx = await startRx()
    await tx?.waitFor(/trunk up: new flows are accelerated again|subflow up/, 10_000)
    let accelerated = false
    for (let i = 0; i < 20 && !accelerated; i++) {
      await new Promise((res) => setTimeout(res, 300))
      const r = await stream(A.dst.v4, 5205, '256KiB')
      const d = await received(s, ++n)
      assert.equal(d.receivedSha256, r.sentSha256)
      accelerated = d.peerAddress.replace('::ffff:', '') === A.rx.v4
    }
    assert.ok(accelerated, 'flows were not accelerated again after rx_proxy came back')
  })

  test('fail-open at a limit: rx_proxy at max_flows refuses a flow, then new SYNs pass directly for a while', async () => {
    const s = await serve(5206, '1KiB')
    const txSock = join(dir, 'tx.sock')
    const trunkUp = async (): Promise<void> => {
      const deadline = performance.now() + 15_000
      for (;;) {
        const t = (await queryStatus(txSock)).trunks[0]
        if (t?.state === 'up' && t.subflows.filter((f) => f.state === 'up').length === 4) return
        if (performance.now() > deadline) throw new Error(`trunk not up: ${JSON.stringify(t)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    await rx?.stop()
    rx = startIn(
      topo.ns.rx,
      [dist('rx-proxy/main.js'), '-c', conf, '--set', 'limits.max_flows=1'],
      'rx_proxy'
    )
    await rx.waitFor(/listening on/)
    await trunkUp()
    const count = async (sock: string, key: string): Promise<number> =>
      (await queryStatus(sock)).counters[key] ?? 0
    const bypassedBefore = await count(txSock, 'syns_bypassed_capacity')
    // One connection held open through the pair takes rx_proxy's only flow.
    const holder = startIn(
      topo.ns.src,
      [
        process.execPath,
        '-e',
        `const s = require('net').connect(5206, '${A.dst.v4}', () => s.write('x')); s.on('error', () => {}); setInterval(() => {}, 1000)`
      ],
      'holder'
    )
    servers.push(holder)
    const deadline = performance.now() + 10_000
    while ((await queryStatus(join(dir, 'rx.sock'))).trunks[0]?.flows !== 1) {
      if (performance.now() > deadline) throw new Error('the held connection was not carried')
      await new Promise((r) => setTimeout(r, 100))
    }
    // The next one is refused by rx_proxy (max_flows) and reset: tx_proxy had taken it.
    const refused = await runIn(topo.ns.src, [
      dist('tools/stream.js'),
      A.dst.v4,
      '5206',
      '--bytes',
      '64KiB',
      '--json',
      '--quiet',
      '--timeout',
      '10'
    ])
    assert.notEqual(refused.code, 0, `the refused flow completed: ${refused.output}`)
    assert.equal(await count(join(dir, 'rx.sock'), 'flows_refused_limit'), 1)
    // Right after, new SYNs pass directly: dst sees src itself, and tx_proxy counts the bypass.
    const r = await stream(A.dst.v4, 5206, '256KiB')
    await assertDirect(s, 1, r, 'the flow after a refusal goes direct')
    assert.equal(await count(txSock, 'syns_bypassed_capacity'), bypassedBefore + 1)
    await holder.stop('SIGKILL')
    await rx.stop()
    rx = await startRx()
    await trunkUp()
  })
})

describe('bridged interception with source transparency (the default)', () => {
  let topo: Topology
  let dir: string
  const procs: NsProcess[] = []

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-tr-'))
    topo = await createTopology({
      prefix: 'ttr',
      overrides: { 'interception.transparent': 'true' }
    })
  })
  after(async () => {
    for (const p of procs.reverse()) await p.stop()
    // Before topo.destroy(), which throws if before() failed to create the topology.
    rmSync(dir, { recursive: true, force: true })
    topo.destroy()
  })

  test('dst sees the connection coming from src itself, bytes intact both ways', async () => {
    const conf = join(dir, 'network.conf')
    topo.writeConfig(conf, {
      'tx_proxy.local_ip': '::',
      'tx_proxy.control_socket': join(dir, 'tx.sock'),
      'rx_proxy.control_socket': join(dir, 'rx.sock'),
      'rx_proxy.recv_ip': '::',
      'interception.transparent': 'true'
    })
    // The rx box's rules (socket mark, bridge steering, policy route), applied as a user would.
    const apply = await runIn(topo.ns.rx, [
      'sh',
      join(PROJECT_ROOT, 'iptables', 'apply.sh'),
      '-c',
      conf,
      '--role',
      'rx'
    ])
    assert.equal(apply.code, 0, apply.output)
    const rx = startIn(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', conf], 'rx_proxy')
    procs.push(rx)
    await rx.waitFor(/listening on/)
    const tx = startIn(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', conf], 'tx_proxy')
    procs.push(tx)
    await tx.waitFor(/subflow up(.|\n)*subflow up(.|\n)*subflow up(.|\n)*subflow up/)
    const recv = startIn(
      topo.ns.dst,
      [
        dist('tools/receive.js'),
        '--port',
        '5301',
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
    for (const host of [A.dst.v4, A.dst.v6]) {
      const r = await runIn(topo.ns.src, [
        dist('tools/stream.js'),
        host,
        '5301',
        '--bytes',
        '32MiB',
        '--json',
        '--quiet'
      ])
      assert.equal(r.code, 0, r.output)
      const s = JSON.parse(r.output.trim().split('\n').pop() ?? '{}') as Streamed & {
        localPort: number
      }
      const lines = recv
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
      const d = JSON.parse(lines[lines.length - 1] ?? '{}') as Received
      assert.equal(d.receivedSha256, s.sentSha256)
      assert.equal(s.replySha256, d.replySha256)
      const srcAddr = host === A.dst.v4 ? A.src.v4 : A.src.v6
      assert.equal(d.peerAddress.replace('::ffff:', ''), srcAddr, 'dst must see the client itself')
      assert.equal(d.peerPort, s.localPort, 'and its own port')
    }
    const rxs = await queryStatus(join(dir, 'rx.sock'))
    assert.equal(rxs.counters.connects, 2, 'both flows went through rx_proxy')
  })

  test('a reset crosses the real path both ways', async () => {
    // dst resets its end after the first bytes; src must see ECONNRESET, not a clean end.
    const server = startIn(
      topo.ns.dst,
      [
        process.execPath,
        '-e',
        "require('net').createServer((s) => { s.on('error', () => {}); s.once('data', () => s.resetAndDestroy()) }).listen(5302, () => console.log('ready'))"
      ],
      'rst-server'
    )
    procs.push(server)
    await server.waitFor(/ready/)
    const client = await runIn(topo.ns.src, [
      process.execPath,
      '-e',
      `const s = require('net').connect(5302, '${A.dst.v4}', () => s.write('x'.repeat(1000))); s.on('data', () => {}); s.on('end', () => console.log('ending=end')); s.on('error', (e) => console.log('ending=' + e.code))`
    ])
    assert.match(client.output, /ending=ECONNRESET/)
    // And the other way: src resets; dst's server sees ECONNRESET.
    const server2 = startIn(
      topo.ns.dst,
      [
        process.execPath,
        '-e',
        "require('net').createServer((s) => { s.on('data', () => {}); s.on('end', () => console.log('ending=end')); s.on('error', (e) => console.log('ending=' + e.code)) }).listen(5303, () => console.log('ready'))"
      ],
      'rst-server2'
    )
    procs.push(server2)
    await server2.waitFor(/ready/)
    await runIn(topo.ns.src, [
      process.execPath,
      '-e',
      `const s = require('net').connect(5303, '${A.dst.v4}', () => { s.write('hello'); setTimeout(() => s.resetAndDestroy(), 300) }); s.on('error', () => {})`
    ])
    await server2.waitFor(/ending=ECONNRESET/, 10_000)
  })
})

describe('operating the pair in five namespaces (status, metrics, SIGHUP, SIGTERM)', () => {
  let topo: Topology
  let dir: string
  let conf: string
  const procs: NsProcess[] = []
  const write = (overrides: Record<string, string>): void => {
    topo.writeConfig(conf, {
      'tx_proxy.local_ip': '::',
      'tx_proxy.control_socket': join(dir, 'tx.sock'),
      'rx_proxy.control_socket': join(dir, 'rx.sock'),
      'tx_proxy.metrics_listen': '127.0.0.1:9464',
      'rx_proxy.recv_ip': '::',
      ...overrides
    })
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-op-'))
    conf = join(dir, 'network.conf')
    topo = await createTopology({ prefix: 'top' })
  })
  after(async () => {
    for (const p of procs.reverse()) await p.stop()
    // Before topo.destroy(), which throws if before() failed to create the topology.
    rmSync(dir, { recursive: true, force: true })
    topo.destroy()
  })

  test('status --json and /metrics report the bytes within 1 % during a transfer; SIGHUP policy; SIGTERM fail-open', async () => {
    write({})
    const rx = startIn(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', conf], 'rx_proxy')
    procs.push(rx)
    await rx.waitFor(/listening on/)
    const tx = startIn(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', conf], 'tx_proxy')
    procs.push(tx)
    await tx.waitFor(/subflow up(.|\n)*subflow up(.|\n)*subflow up(.|\n)*subflow up/)
    const recv = startIn(
      topo.ns.dst,
      [
        dist('tools/receive.js'),
        '--port',
        '5401',
        '--host',
        '::',
        '--keep-listening',
        '--reply-bytes',
        '1KiB',
        '--json',
        '--quiet'
      ],
      'receive'
    )
    procs.push(recv)
    await recv.waitFor(/listening on/)
    const jsonLines = (): Received[] =>
      recv
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Received)

    // A long transfer (30 s) that is running while we look.
    const long = startIn(
      topo.ns.src,
      [dist('tools/stream.js'), A.dst.v4, '5401', '--duration', '30', '--json', '--quiet'],
      'stream'
    )
    procs.push(long)
    await new Promise((r) => setTimeout(r, 3000))
    const st = await runIn(topo.ns.tx, [
      join(PROJECT_ROOT, 'tx_proxy'),
      'status',
      '--json',
      '--control',
      join(dir, 'tx.sock')
    ])
    assert.equal(st.code, 0, st.output)
    const status = JSON.parse(st.output) as {
      totals: { bytesFromApp: number }
      trunks: { subflows: unknown[]; flows: number }[]
    }
    const scrape = await runIn(topo.ns.tx, [
      process.execPath,
      '-e',
      "fetch('http://127.0.0.1:9464/metrics').then(r => r.text()).then(t => process.stdout.write(t))"
    ])
    const st2 = JSON.parse(
      (
        await runIn(topo.ns.tx, [
          join(PROJECT_ROOT, 'tx_proxy'),
          'status',
          '--json',
          '--control',
          join(dir, 'tx.sock')
        ])
      ).output
    ) as { totals: { bytesFromApp: number } }
    const m = /^tandem_app_bytes_total\{direction="from_app"\} (\d+)/m.exec(scrape.output)
    assert.ok(m, `no tandem_app_bytes_total in:\n${scrape.output.slice(0, 500)}`)
    const fromMetrics = Number(m[1])
    // The transfer runs on between the three reads: the metric lies between the two status reads.
    const lo = status.totals.bytesFromApp
    const hi = st2.totals.bytesFromApp
    assert.ok(lo > 0)
    assert.ok(
      fromMetrics >= lo * 0.99 && fromMetrics <= hi * 1.01,
      `metrics ${fromMetrics} not within [${lo}, ${hi}]`
    )
    assert.equal(status.trunks[0]?.subflows.length, 4)
    assert.equal(status.trunks[0]?.flows, 1)
    assert.match(scrape.output, /^tandem_subflows_up\{peer="[^"]+"\} 4$/m)
    assert.match(scrape.output, /^tandem_flows_active\{peer="[^"]+"\} 1$/m)
    assert.match(scrape.output, /^tandem_subflow_cwnd_segments\{/m)
    process.stdout.write(
      `# status during a transfer:\n${(await runIn(topo.ns.tx, [join(PROJECT_ROOT, 'tx_proxy'), 'status', '--control', join(dir, 'tx.sock')])).output.replace(/^/gm, '#   ')}\n`
    )

    // SIGHUP with a policy that excludes port 5401: the running flow goes on, new flows pass directly.
    write({ 'interception.exclude_ports': '22,5401' })
    tx.child.kill('SIGHUP')
    await tx.waitFor(/SIGHUP: applied interception\.exclude_ports/)
    const shortRun = await runIn(topo.ns.src, [
      dist('tools/stream.js'),
      A.dst.v4,
      '5401',
      '--bytes',
      '1MiB',
      '--json',
      '--quiet'
    ])
    assert.equal(shortRun.code, 0, shortRun.output)
    const afterHup = (await queryStatus(join(dir, 'tx.sock'))).counters
    assert.equal(afterHup.syns_bypassed_policy, 1, 'the new flow followed the new policy')
    // Untouched: still running, or (on a slow machine, past its 30 s) finished cleanly.
    assert.ok(
      long.child.exitCode === null || long.child.exitCode === 0,
      `the running flow is untouched (exit ${long.child.exitCode})`
    )

    // SIGTERM: tx_proxy drains; new flows pass directly while it does; the long flow finishes or is reset.
    write({})
    tx.child.kill('SIGTERM')
    await tx.waitFor(/SIGTERM: stopping/)
    const during = await runIn(topo.ns.src, [
      dist('tools/stream.js'),
      A.dst.v4,
      '5401',
      '--bytes',
      '256KiB',
      '--json',
      '--quiet'
    ])
    assert.equal(during.code, 0, `a new flow during shutdown must pass directly: ${during.output}`)
    await tx.exited()
    const results = jsonLines()
    assert.ok(results.length >= 2)
  })
})
