/**
 * Observability of a real pair on loopback: the metrics pass `promtool check metrics` and
 * follow Prometheus' conventions, `/healthz` and `/readyz` answer, `status` names the flows and
 * the trunk, the Grafana dashboard queries only metrics that exist, the trunk going down and
 * coming back is logged once each way, SIGHUP names the keys that need a restart, and the log
 * can be JSON or carry journald priorities.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { queryStatus } from '../../src/app/control.js'
import { COUNTER_SPECS } from '../../src/app/metric-counters.js'
import { httpGet, promtool, samples, types } from '../helpers/observe.js'
import {
  freePort,
  ROOT,
  spawnProxy,
  startPair,
  TEST_PSK,
  type ProxyPair,
  type ProxyProcess
} from '../helpers/proxies.js'
import { spawn } from 'node:child_process'

const execFileP = promisify(execFile)
const MiB = 1024 * 1024

/** A destination that discards what it gets and answers 64 KiB at once. */
async function startSink(): Promise<{ server: Server; port: number }> {
  const port = await freePort()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined)
    s.resume()
    s.write(Buffer.alloc(64 * 1024, 7))
    s.on('end', () => s.end())
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  return { server, port }
}

async function dial(port: number): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      resolve(s)
    })
    s.once('error', reject)
  })
}

/** Poll `pred` every 50 ms; on a timeout the error carries what `explain` says. */
async function until(
  pred: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  explain?: () => Promise<string>
): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await pred())) {
    if (performance.now() > deadline) {
      const why = explain === undefined ? '' : `:\n${await explain()}`
      throw new Error(`condition not met within ${timeoutMs} ms${why}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe(
  'metrics, health, status and the dashboard of a running pair',
  { timeout: 120_000 },
  () => {
    let sink: { server: Server; port: number }
    let pair: ProxyPair
    let txMetrics: number
    let rxMetrics: number
    let client: Socket
    /** Scrapes taken before the first flow. */
    let firstTx = ''
    let firstRx = ''

    before(async () => {
      sink = await startSink()
      txMetrics = await freePort()
      rxMetrics = await freePort()
      pair = await startPair({
        destinationPort: sink.port,
        subflows: 3,
        extra: [
          '--set',
          `tx_proxy.metrics_listen=127.0.0.1:${txMetrics}`,
          '--set',
          `rx_proxy.metrics_listen=127.0.0.1:${rxMetrics}`
        ]
      })
      firstTx = (await httpGet(txMetrics, '/metrics')).body
      firstRx = (await httpGet(rxMetrics, '/metrics')).body
      // A flow that stays open while the tests look: 3 MiB sent, the reply read.
      client = await dial(pair.txPort)
      client.on('error', () => undefined)
      client.resume()
      client.write(Buffer.alloc(3 * MiB, 1))
      await until(async () => {
        const s = await queryStatus(pair.rxControl)
        return s.totals.bytesToApp >= 3 * MiB
      })
    })
    after(async () => {
      client.destroy()
      await pair.stop()
      sink.server.close()
    })

    test('a scrape of each proxy passes promtool check metrics', async () => {
      for (const port of [txMetrics, rxMetrics]) {
        const r = await httpGet(port, '/metrics')
        assert.equal(r.status, 200)
        const lint = promtool(r.body)
        assert.equal(lint.status, 0, `promtool on :${port}:\n${lint.output}`)
        assert.equal(lint.output, '')
      }
    })

    test('promtool fails a scrape with a name that breaks the rules', async () => {
      const good = (await httpGet(txMetrics, '/metrics')).body
      // A counter without _total, a time in milliseconds, a gauge ending in _total.
      const broken = [
        good.replaceAll('tandem_app_bytes_total', 'tandem_app_bytes'),
        good.replaceAll('tandem_subflow_tcp_rtt_seconds', 'tandem_subflow_tcp_rtt_ms'),
        good.replaceAll('tandem_flows_active', 'tandem_flows_active_total')
      ]
      const expected = [
        /tandem_app_bytes counter metrics should have "_total" suffix/,
        /tandem_subflow_tcp_rtt_ms metric names should not contain abbreviated units/,
        /tandem_flows_active_total non-counter metrics should not have "_total" suffix/
      ]
      broken.forEach((text, i) => {
        const lint = promtool(text)
        assert.notEqual(lint.status, 0)
        assert.match(lint.output, expected[i]!)
      })
    })

    test('conventions: base units, _total on counters only, every counter at 0 from the start, build info', () => {
      for (const [text, role] of [
        [firstTx, 'tx_proxy'],
        [firstRx, 'rx_proxy']
      ] as const) {
        const t = types(text)
        const s = samples(text)
        for (const [name, kind] of t) {
          if (!name.startsWith('tandem_')) continue
          assert.equal(kind === 'counter', name.endsWith('_total'), `${name} is a ${kind}`)
          assert.doesNotMatch(name, /_(ms|milliseconds|us|kib|mib|kb|mb)(_|$)/, name)
        }
        for (const spec of COUNTER_SPECS) {
          if (spec.role !== undefined && spec.role !== role) continue
          const name = `tandem_${spec.name}_total`
          assert.equal(t.get(name), 'counter', `${role}: ${name} missing before the first event`)
          if (spec.label === undefined) assert.match(s.get(name)?.[0] ?? '', /^\d+$/, name)
          for (const v of spec.values ?? []) {
            assert.ok(s.get(name)?.includes(`{${spec.label!}="${v}"} 0`), `${name}{${v}} not at 0`)
          }
        }
        // No flow yet: its counters are there, at 0.
        assert.deepEqual(s.get('tandem_flows_opened_total'), ['0'])
        assert.deepEqual(s.get('tandem_flows_reset_total'), ['0'])
        assert.match(
          text,
          new RegExp(
            `^tandem_build_info\\{version="\\d+\\.\\d+\\.\\d+[^"]*",role="${role}",node_version="v\\d+[^"]*"\\} 1$`,
            'm'
          )
        )
        // The default collectors of prom-client: process and Node metrics.
        assert.ok(s.has('process_cpu_user_seconds_total'))
        assert.ok(s.has('process_resident_memory_bytes'))
        assert.ok(s.has('nodejs_eventloop_lag_seconds'))
      }
    })

    test('one series per quantity, and the trunk labelled by its peer', async () => {
      const tx = (await httpGet(txMetrics, '/metrics')).body
      const rx = (await httpGet(rxMetrics, '/metrics')).body
      // No bytes inside an events counter, and no second bytes series.
      assert.doesNotMatch(tx, /^tandem_events_total/m)
      assert.doesNotMatch(tx, /^tandem_bytes_total/m)
      assert.equal(tx.match(/^tandem_credit_stalls_total /gm)?.length, 1)
      const txStatus = await queryStatus(pair.txControl)
      const rxStatus = await queryStatus(pair.rxControl)
      assert.equal(txStatus.trunks[0]?.peer, `127.0.0.1:${pair.rxPort}`)
      assert.equal(rxStatus.trunks[0]?.peer, '127.0.0.1')
      assert.match(
        tx,
        new RegExp(`^tandem_trunk_up\\{peer="127\\.0\\.0\\.1:${pair.rxPort}"\\} 1$`, 'm')
      )
      assert.match(rx, /^tandem_trunk_up\{peer="127\.0\.0\.1"\} 1$/m)
      assert.match(tx, /^tandem_subflows_up\{peer="[^"]+"\} 3$/m)
      assert.match(tx, /^tandem_flows_active\{peer="[^"]+"\} 1$/m)
      for (const name of [
        'tandem_subflow_tcp_rtt_seconds',
        'tandem_subflow_ping_rtt_seconds',
        'tandem_subflow_cwnd_segments',
        'tandem_subflow_retransmits_total'
      ]) {
        assert.equal(
          tx.match(new RegExp(`^${name}\\{peer="[^"]+",subflow="\\d",path="default"\\} `, 'gm'))
            ?.length,
          3,
          name
        )
      }
      assert.match(tx, /^# TYPE tandem_subflow_retransmits_total counter$/m)
      const fromApp = /^tandem_app_bytes_total\{direction="from_app"\} (\d+)$/m.exec(tx)
      assert.ok(fromApp)
      assert.ok(Number(fromApp[1]) >= 3 * MiB)
    })

    test('/healthz and /readyz on the metrics listener', async () => {
      for (const port of [txMetrics, rxMetrics]) {
        const h = await httpGet(port, '/healthz')
        assert.equal(h.status, 200)
        assert.match(h.body, /^ok: event loop lag \d+ ms max/)
        const r = await httpGet(port, '/readyz')
        assert.equal(r.status, 200, r.body)
        assert.match(r.body, /^ready: trunk/)
        assert.equal((await httpGet(port, '/nothing')).status, 404)
      }
      assert.match((await httpGet(txMetrics, '/metrics')).body, /^tandem_ready 1$/m)
    })

    test('status names each flow client → destination, the peer, mode, encryption and subflow states; --json the same', async () => {
      const { stdout } = await execFileP(join(ROOT, 'tx_proxy'), [
        'status',
        '--control',
        pair.txControl
      ])
      const clientAddr = `127.0.0.1:${client.localPort ?? 0}`
      assert.match(
        stdout,
        new RegExp(
          `trunk peer 127\\.0\\.0\\.1:${pair.rxPort}: up, static, encrypted, 3 of 3 subflow\\(s\\) up, 1 flow\\(s\\)`
        )
      )
      assert.match(stdout, new RegExp(`${clientAddr} → 127\\.0\\.0\\.1:${sink.port}\\s+open`))
      assert.match(stdout, /subflow\s+path\s+state\s+rtt ms\s+tcp rtt\s+cwnd\s+retrans/)
      assert.equal(stdout.match(/^\s+\d\s+default\s+up\s+/gm)?.length, 3)
      const { stdout: json } = await execFileP(join(ROOT, 'tx_proxy'), [
        'status',
        '--json',
        '--control',
        pair.txControl
      ])
      const s = JSON.parse(json) as Awaited<ReturnType<typeof queryStatus>>
      const t = s.trunks[0]!
      assert.equal(t.peer, `127.0.0.1:${pair.rxPort}`)
      assert.equal(t.mode, 'static')
      assert.equal(t.encrypted, true)
      assert.equal(t.state, 'up')
      assert.deepEqual(
        t.subflows.map((f) => [f.index, f.state]),
        [
          [0, 'up'],
          [1, 'up'],
          [2, 'up']
        ]
      )
      for (const f of t.subflows) {
        assert.equal(typeof f.tcpRttMs, 'number')
        assert.ok((f.cwndSegments ?? 0) > 0)
        assert.equal(typeof f.retransmits, 'number')
      }
      const flow = t.topFlows[0]!
      assert.equal(flow.client, clientAddr)
      assert.equal(flow.destination, `127.0.0.1:${sink.port}`)
      assert.equal(flow.bytesFromApp, 3 * MiB)
      assert.equal(flow.bytesToApp, 64 * 1024)
      assert.equal(typeof flow.rateFromAppBps, 'number')
      assert.ok((flow.subflowsUsed ?? []).length >= 1)
      // rx_proxy knows the same flow by the addresses in its OPEN.
      const rx = await queryStatus(pair.rxControl)
      assert.equal(rx.trunks[0]?.topFlows[0]?.client, clientAddr)
      assert.equal(rx.trunks[0]?.topFlows[0]?.destination, `127.0.0.1:${sink.port}`)
    })

    test('every metric the Grafana dashboard queries is in a real scrape', async () => {
      const dashboard = JSON.parse(
        readFileSync(join(ROOT, 'deploy', 'grafana', 'tandem.json'), 'utf8')
      ) as { panels: { title: string; targets: { expr: string }[] }[]; templating: unknown }
      const scraped = new Set([
        ...types((await httpGet(txMetrics, '/metrics')).body).keys(),
        ...types((await httpGet(rxMetrics, '/metrics')).body).keys()
      ])
      const exprs = [
        ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
        JSON.stringify(dashboard.templating)
      ]
      const names = new Set(
        exprs.flatMap((e) =>
          [...e.matchAll(/\b((?:tandem|nodejs|process)_[a-z0-9_]+)/g)].map((m) => m[1]!)
        )
      )
      assert.ok(names.size >= 10, `only ${names.size} metrics queried`)
      for (const n of names)
        assert.ok(scraped.has(n), `the dashboard queries ${n}, which no proxy exports`)
      const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('|')
      for (const want of [
        'goodput',
        'flows',
        'rtt',
        'congestion window',
        'retransmissions',
        'credit stalls',
        'reorder',
        'refused handshakes'
      ]) {
        assert.ok(titles.includes(want), `no panel about ${want}`)
      }
    })
  }
)

describe('the trunk going down and coming back: one warning each way', { timeout: 120_000 }, () => {
  test('a peer that is not there yet, then up, then stopped and back', async () => {
    const sink = await startSink()
    const rxPort = await freePort()
    const txPort = await freePort()
    const metrics = await freePort()
    const dir = mkdtempSync(join(tmpdir(), 'tandem-watch-'))
    const common = [
      '-c',
      '/dev/null',
      '--set',
      `security.psk=${TEST_PSK}`,
      '--set',
      'rx_proxy.deny_subnets=',
      '--set',
      `rx_proxy.control_socket=${join(dir, 'rx.sock')}`,
      '--set',
      `tx_proxy.control_socket=${join(dir, 'tx.sock')}`
    ]
    const tx = spawnProxy('tx-proxy', [
      ...common,
      '--local-ip',
      '127.0.0.1',
      '--local-port',
      String(txPort),
      '--rx-proxy-ip',
      '127.0.0.1',
      '--rx-proxy-port',
      String(rxPort),
      '--destination',
      `127.0.0.1:${sink.port}`,
      '--subflows',
      '3',
      '--set',
      'tx_proxy.redial_min_ms=50',
      '--set',
      'tx_proxy.redial_max_ms=200',
      '--set',
      `tx_proxy.metrics_listen=127.0.0.1:${metrics}`
    ])
    const startRx = (): ProxyProcess =>
      spawnProxy('rx-proxy', [...common, '--recv-ip', '127.0.0.1', '--recv-port', String(rxPort)])
    let rx: ProxyProcess | undefined
    const warnings = (): string[] =>
      tx
        .log()
        .split('\n')
        .filter((l) => / warn /.test(l))
    const manyFailedDials = async (): Promise<boolean> =>
      ((await queryStatus(join(dir, 'tx.sock'))).trunks[0]?.failedDials ?? 0) >= 12
    // If the dials do not fail as they should: what tx_proxy saw and said.
    const explain = async (): Promise<string> =>
      `${JSON.stringify((await queryStatus(join(dir, 'tx.sock'))).trunks[0])}\n${tx.log()}`
    try {
      await tx.waitFor(/listening on/)
      // Many failed dials (3 subflows, 50-200 ms backoff), one warning.
      await until(manyFailedDials, 10_000, explain)
      assert.equal(warnings().length, 1, warnings().join('\n'))
      assert.match(warnings()[0]!, /trunk to 127\.0\.0\.1:\d+ not up: subflow \d: .*ECONNREFUSED/)
      const down = await queryStatus(join(dir, 'tx.sock'))
      const t = down.trunks[0]!
      assert.equal(t.state, 'down')
      assert.ok(t.subflows.every((f) => f.state === 'connecting' || f.state === 'backing off'))
      assert.ok(t.subflows.some((f) => (f.failedDials ?? 0) > 0))
      assert.match(t.lastDialError?.message ?? '', /ECONNREFUSED/)
      assert.ok(Math.abs(Date.parse(t.lastDialError?.at ?? '') - Date.now()) < 5000)
      const { stdout } = await execFileP(join(ROOT, 'tx_proxy'), [
        'status',
        '--control',
        join(dir, 'tx.sock')
      ])
      assert.match(stdout, /trunk peer 127\.0\.0\.1:\d+: down/)
      assert.match(stdout, /last dial error: \d{4}-\d\d-\d\dT[\d:.]+Z subflow \d: .*ECONNREFUSED/)
      assert.match(stdout, /backing off|connecting/)
      const notReady = await httpGet(metrics, '/readyz')
      assert.equal(notReady.status, 503)
      assert.match(notReady.body, /^trunk to 127\.0\.0\.1:\d+ down: .*ECONNREFUSED/)

      rx = startRx()
      await tx.waitFor(/trunk to 127\.0\.0\.1:\d+ up: \d subflow\(s\), after \d+ failed dial\(s\)/)
      await tx.waitFor(/subflow up/, 3)
      assert.equal((await httpGet(metrics, '/readyz')).status, 200)

      await rx.stop()
      await tx.waitFor(
        /trunk to 127\.0\.0\.1:\d+ down: (the peer is shutting down \(GOAWAY\)|no subflow left)/
      )
      const before = warnings().length
      await until(manyFailedDials, 10_000, explain)
      assert.equal(warnings().length, before, `more warnings while down:\n${warnings().join('\n')}`)
      rx = startRx()
      await tx.waitFor(
        /trunk to 127\.0\.0\.1:\d+ back after [\d.]+ s: \d subflow\(s\), \d+ failed dial\(s\) meanwhile/
      )
      assert.equal(warnings().filter((l) => /down:/.test(l)).length, 1)
    } finally {
      await tx.stop()
      await rx?.stop()
      sink.server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('configuration and log output', { timeout: 120_000 }, () => {
  test('SIGHUP names each changed key that needs a restart, and what it applied', async (t) => {
    const sink = await startSink()
    const dir = mkdtempSync(join(tmpdir(), 'tandem-hup-'))
    // After the body, whose finally stops the pair (its network.conf is in here).
    t.after(() => {
      rmSync(dir, { recursive: true, force: true })
    })
    const conf = join(dir, 'network.conf')
    const write = (subflows: number, exclude: string): void => {
      writeFileSync(
        conf,
        `[tx_proxy]\nsubflows = ${subflows}\n\n[interception]\nexclude_ports = ${exclude}\n\n[log]\nlevel = info\n`
      )
    }
    write(2, '22')
    const pair = await startPair({ destinationPort: sink.port, subflows: 2, config: conf })
    try {
      write(3, '22,5201')
      pair.tx.child.kill('SIGHUP')
      await pair.tx.waitFor(/SIGHUP: applied interception\.exclude_ports \(22 → 22,5201\)/)
      await pair.tx.waitFor(
        /warn .*SIGHUP: tx_proxy\.subflows \(2 → 3\) needs a restart to take effect \(systemctl restart tandem-tx-proxy\)/
      )
      assert.doesNotMatch(pair.tx.log(), /configuration reloaded/)
      pair.tx.child.kill('SIGHUP')
      await pair.tx.waitFor(/SIGHUP: .*network\.conf unchanged/)
    } finally {
      await pair.stop()
      sink.server.close()
    }
  })

  test('log.format = json writes one object per line; under the journal each line carries its priority', async (t) => {
    const sink = await startSink()
    const rxPort = await freePort()
    const dir = mkdtempSync(join(tmpdir(), 'tandem-log-'))
    // After the body: it reads the proxy's stderr file from here once the proxy has exited.
    t.after(() => {
      rmSync(dir, { recursive: true, force: true })
    })
    // stderr to a file whose device and inode JOURNAL_STREAM names, as systemd does for the journal.
    const file = join(dir, 'stderr')
    const fd = openSync(file, 'w')
    const st = fstatSync(fd)
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'dist', 'src', 'tx-proxy', 'main.js'),
        '-c',
        '/dev/null',
        '--set',
        `security.psk=${TEST_PSK}`,
        '--set',
        'log.format=json',
        '--set',
        `tx_proxy.control_socket=${join(dir, 'tx.sock')}`,
        '--local-ip',
        '127.0.0.1',
        '--local-port',
        String(await freePort()),
        '--rx-proxy-ip',
        '127.0.0.1',
        '--rx-proxy-port',
        String(rxPort),
        '--destination',
        `127.0.0.1:${sink.port}`
      ],
      {
        stdio: ['ignore', 'ignore', fd],
        env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` }
      }
    )
    closeSync(fd)
    try {
      await until(() => /not up/.test(readFileSync(file, 'utf8')))
    } finally {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
      sink.server.close()
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    assert.ok(lines.length >= 2)
    for (const line of lines) {
      const m = /^<(\d)>(\{.*\})$/.exec(line)
      assert.ok(m, `not <priority>json: ${line}`)
      const o = JSON.parse(m[2]!) as { level: string; msg: string; role: string; time?: string }
      assert.equal(o.role, 'tx_proxy')
      assert.equal(o.time, undefined, 'the journal stamps the time')
      assert.equal(m[1], { error: '3', warn: '4', info: '6', debug: '7' }[o.level])
    }
    assert.ok(lines.some((l) => l.startsWith('<4>{') && l.includes('not up')))
    assert.ok(lines.some((l) => l.startsWith('<6>{') && l.includes('listening on')))
  })
})
