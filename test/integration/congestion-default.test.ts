/**
 * The subflows' congestion control on a real pair over loopback, with no configuration at all:
 * `trunk.congestion` defaults to auto, each proxy logs its choice once at start, `status` (human
 * and --json) shows the trunk's choice and each subflow's own (TCP_CONGESTION read back from the
 * socket), and where the kernel offers bbr the subflows of both proxies really run it (also where
 * Tandem's own `tandem` is registered: auto moves only long paths, from LONG_PATH_RTT_MS, to it).
 * `system` leaves them on the kernel's default.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'

import { queryStatus } from '../../src/app/control.js'
import { chooseCongestion } from '../../src/common/congestion.js'
import { readCongestionSystem } from '../../src/trunk/congestion.js'
import { freePort, ROOT, startPair, type ProxyPair } from '../helpers/proxies.js'

const execFileP = promisify(execFile)

/** What this machine offers a process like the proxies (same namespace, same privileges). */
const SYSTEM = readCongestionSystem()
const EXPECTED = chooseCongestion('auto', SYSTEM, { tandemPaces: true })

async function startSink(): Promise<{ server: Server; port: number }> {
  const port = await freePort()
  const server = createServer((s) => {
    s.on('error', () => undefined)
    s.resume()
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  return { server, port }
}

describe('subflow congestion control, unconfigured', { timeout: 60_000 }, () => {
  let sink: { server: Server; port: number }
  let pair: ProxyPair

  before(async () => {
    sink = await startSink()
    pair = await startPair({ destinationPort: sink.port, subflows: 3 })
  })
  after(async () => {
    await pair.stop()
    sink.server.close()
  })

  test('each proxy logs the choice once at start', () => {
    for (const [role, log] of [
      ['tx', pair.tx.log()],
      ['rx', pair.rx.log()]
    ] as const) {
      const lines = log.split('\n').filter((l) => l.includes('subflow congestion control:'))
      assert.equal(lines.length, 1, `${role}_proxy log:\n${log}`)
      assert.ok(lines[0]!.includes(EXPECTED.label), lines[0])
    }
  })

  test('status --json: the trunk’s choice, and every subflow of both proxies runs it', async () => {
    for (const control of [pair.txControl, pair.rxControl]) {
      const s = await queryStatus(control)
      const t = s.trunks[0]!
      assert.equal(t.congestion?.setting, 'auto')
      assert.equal(t.congestion?.label, EXPECTED.label)
      assert.equal(t.subflows.length, 3)
      for (const f of t.subflows) {
        assert.equal(f.congestion, EXPECTED.algorithm, JSON.stringify(f))
        assert.equal(typeof f.tcpBytesSent, 'number')
        assert.equal(typeof f.tcpBytesRetrans, 'number')
      }
    }
  })

  test(
    'where the kernel offers bbr, the subflows run bbr by default',
    {
      skip:
        EXPECTED.source === 'auto'
          ? false
          : `bbr is not usable here: ${EXPECTED.reason ?? 'unknown'}`
    },
    async () => {
      const s = await queryStatus(pair.txControl)
      const t = s.trunks[0]!
      // 'bbr (auto)', and '; tandem from 80 ms RTT' where tandem is registered: a loopback
      // trunk is no long path, so its subflows stay on bbr.
      assert.equal(t.congestion?.label, EXPECTED.label)
      assert.match(EXPECTED.label, /^bbr \(auto\)/)
      assert.deepEqual(
        t.subflows.map((f) => f.congestion),
        ['bbr', 'bbr', 'bbr']
      )
    }
  )

  test('the human status names the choice and a cc column', async () => {
    const { stdout } = await execFileP(join(ROOT, 'tx_proxy'), [
      'status',
      '--control',
      pair.txControl
    ])
    assert.ok(stdout.includes(`  congestion control: ${EXPECTED.label}`), stdout)
    assert.match(
      stdout,
      /subflow\s+path\s+state\s+rtt ms\s+tcp rtt\s+cwnd\s+retrans\s+cc\s+pacing\s+queued/
    )
    const rows = stdout.split('\n').filter((l) => /^\s+\d\s+default\s+up\s/.test(l))
    assert.equal(rows.length, 3, stdout)
    for (const r of rows) assert.ok(r.includes(` ${EXPECTED.algorithm ?? '-'} `), r)
  })
})

describe('subflow congestion control = system', { timeout: 60_000 }, () => {
  test(
    'leaves every subflow on the kernel’s default',
    { skip: SYSTEM.systemDefault === undefined ? 'tcp_congestion_control unreadable' : false },
    async () => {
      const sink = await startSink()
      const pair = await startPair({
        destinationPort: sink.port,
        subflows: 2,
        extra: ['--set', 'trunk.congestion=system']
      })
      try {
        const t = (await queryStatus(pair.txControl)).trunks[0]!
        assert.equal(t.congestion?.source, 'system')
        assert.equal(t.congestion?.label, `${SYSTEM.systemDefault ?? ''} (system default)`)
        for (const f of t.subflows) assert.equal(f.congestion, SYSTEM.systemDefault)
      } finally {
        await pair.stop()
        sink.server.close()
      }
    }
  )
})
