/**
 * The small parts of observability: the loop monitor behind /healthz, the SIGHUP diff, the
 * trunk watch's log lines, the status screen and the log line formats.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Logger } from '../../../src/common/log/logger.js'
import { formatLine } from '../../../src/common/log/winston.js'
import type { ProxyStatus, RateStatus } from '../../../src/app/control.js'
import { liveness, LoopMonitor, STUCK_LOOP_MS } from '../../../src/app/health.js'
import { describeChange, diffConfig } from '../../../src/app/reload.js'
import { formatStatus, rateLine } from '../../../src/app/status-format.js'
import { KEYS } from '../../../src/common/config/schema.js'
import { TrunkWatch } from '../../../src/app/trunk-watch.js'
import { PepError, PepErrorCodes } from '../../../src/common/errors.js'
import { FakeClock } from '../../helpers/fake-clock.js'
import { COUNTER_SPECS } from '../../../src/app/metric-counters.js'
import { ProxyMetrics } from '../../../src/app/metrics.js'
import { promtool, samples } from '../../helpers/observe.js'

/** A logger that keeps `level message` lines. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const at =
    (level: string) =>
    (m: string): void => {
      lines.push(`${level} ${m}`)
    }
  const log = {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => log,
    isDebugEnabled: () => false
  }
  return log
}

describe('LoopMonitor and /healthz', () => {
  test('a late tick is lag; a stall over the limit fails liveness for ten seconds', () => {
    const clock = new FakeClock(1_000_000)
    const m = new LoopMonitor(() => clock.now())
    // Not started: ticks are fed by hand (expected = first tick time + 100 ms).
    m.tick()
    clock.advance(100)
    m.tick()
    assert.equal(m.lagMs, 0)
    assert.equal(liveness(m).ok, true)
    clock.advance(100 + STUCK_LOOP_MS + 500)
    m.tick()
    assert.equal(m.lagMs, STUCK_LOOP_MS + 500)
    const bad = liveness(m)
    assert.equal(bad.ok, false)
    assert.match(bad.detail, /event loop stalled: \d+ ms late/)
    for (let i = 0; i < 120; i++) {
      clock.advance(100)
      m.tick()
    }
    assert.equal(liveness(m).ok, true, 'forgotten after ten seconds')
  })
})

describe('SIGHUP diff', () => {
  test('changed keys split into applied and restart-needed; defaults count as unchanged', () => {
    const before = new Map([
      ['tx_proxy.subflows', '4'],
      ['interception.exclude_ports', '22'],
      ['log.level', 'info']
    ])
    const after = new Map([
      ['tx_proxy.subflows', '8'],
      ['interception.exclude_ports', '22,80'],
      ['log.level', 'info'],
      // Its default, written out: not a change.
      ['trunk.scheduler', KEYS.find((k) => k.key === 'scheduler')!.default],
      ['security.psk', 'abcd']
    ])
    const d = diffConfig(before, after, ['log.level', 'interception.exclude_ports'])
    assert.deepEqual(
      d.applied.map((c) => c.key),
      ['interception.exclude_ports']
    )
    assert.deepEqual(
      d.needRestart.map((c) => c.key),
      ['security.psk', 'tx_proxy.subflows']
    )
    assert.equal(describeChange(d.needRestart[1]!), 'tx_proxy.subflows (4 → 8)')
    assert.equal(describeChange(d.needRestart[0]!), 'security.psk', 'secrets are not logged')
  })
})

describe('TrunkWatch', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.2:6000'), {
    code: 'ECONNREFUSED'
  })

  test('one warning while the peer is not there, one when the trunk is up, one down, one back', () => {
    const clock = new FakeClock(0)
    let subflows = 0
    let draining = false
    const log = recordingLogger()
    const w = new TrunkWatch(
      '10.0.0.2:6000',
      3,
      { subflowCount: () => subflows, peerDraining: () => draining },
      log,
      () => clock.now(),
      () => 1_700_000_000_000
    )
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 3; i++) {
        w.dialStarted(i)
        w.dialFailed(i, refused, 500)
      }
      clock.advance(500)
    }
    assert.deepEqual(log.lines, [
      'warn trunk to 10.0.0.2:6000 not up: subflow 0: connect ECONNREFUSED 10.0.0.2:6000; retrying with backoff (status shows the failed dials)'
    ])
    assert.equal(w.failedDials, 60)
    assert.deepEqual(w.lastDialError, {
      subflow: 2,
      message: 'connect ECONNREFUSED 10.0.0.2:6000',
      code: 'ECONNREFUSED',
      at: '2023-11-14T22:13:20.000Z'
    })
    assert.deepEqual(w.slot(0), { state: 'backing off', failedDials: 20, nextDialInMs: 0 })
    w.dialFailed(1, refused, 800)
    assert.deepEqual(w.slot(1), { state: 'backing off', failedDials: 21, nextDialInMs: 800 })
    subflows = 3
    w.dialSucceeded(0, true)
    w.check()
    assert.equal(
      log.lines.at(-1),
      'warn trunk to 10.0.0.2:6000 up: 3 subflow(s), after 61 failed dial(s)'
    )
    assert.equal(w.encrypted, true)
    w.check()
    draining = true
    w.check()
    assert.equal(
      log.lines.at(-1),
      'warn trunk to 10.0.0.2:6000 down: the peer is shutting down (GOAWAY); new flows pass directly until it is back'
    )
    subflows = 0
    draining = false
    const n = log.lines.length
    for (let i = 0; i < 30; i++) w.dialFailed(i % 3, refused, 100)
    assert.equal(log.lines.length, n, 'no line per retry while down')
    clock.advance(4200)
    subflows = 2
    w.check()
    assert.equal(
      log.lines.at(-1),
      'warn trunk to 10.0.0.2:6000 back after 4.2 s: 2 subflow(s), 30 failed dial(s) meanwhile'
    )
  })

  test('a wrong key is named once per outage, even while other subflows are up', () => {
    let subflows = 0
    const log = recordingLogger()
    const w = new TrunkWatch(
      'p:1',
      2,
      { subflowCount: () => subflows, peerDraining: () => false },
      log
    )
    const auth = new PepError(PepErrorCodes.AUTH_FAILED, 'rx_proxy refused our key (wrong key?)')
    w.dialFailed(0, refused, 10)
    w.dialFailed(1, auth, 10)
    w.dialFailed(0, auth, 10)
    w.dialFailed(1, auth, 10)
    assert.equal(log.lines.length, 2)
    assert.match(log.lines[1]!, /^warn trunk to p:1: subflow 1: rx_proxy refused our key/)
    subflows = 1
    w.check()
    w.dialSucceeded(1, true)
    w.dialFailed(1, refused, 10)
    w.dialFailed(1, refused, 10)
    assert.match(log.lines.at(-1)!, /^info subflow 1 to p:1 cannot connect: .*; retrying$/)
    assert.equal(log.lines.filter((l) => l.includes('cannot connect')).length, 1)
  })
})

describe('status screen', () => {
  test('flows as client → destination, trunk peer/mode/encryption, subflow states and the last dial error', () => {
    const s: ProxyStatus = {
      role: 'tx_proxy',
      pid: 77,
      uptimeMs: 61_000,
      bufferedBytes: 1024,
      maxBufferedBytes: 1024 * 1024,
      totals: {
        bytesFromApp: 10 * 1024 * 1024,
        bytesToApp: 2048,
        reorderBytes: 0,
        sendBufferedBytes: 0,
        duplicateBytes: 0,
        resentBytes: 0,
        creditStalls: 0
      },
      counters: { flows_opened: 1 },
      trunks: [
        {
          id: 'ab'.repeat(16),
          peer: '10.0.0.2:6000',
          mode: 'intercepting',
          encrypted: true,
          congestion: { setting: 'auto', algorithm: 'bbr', source: 'auto', label: 'bbr (auto)' },
          state: 'up',
          failedDials: 0,
          lastDialError: {
            subflow: 1,
            message: 'connect ECONNREFUSED',
            code: 'ECONNREFUSED',
            at: '2026-12-04T10:00:00.000Z'
          },
          flows: 1,
          subflows: [
            {
              id: 1,
              index: 0,
              pathId: 0,
              path: 'a',
              state: 'up',
              srttMs: 12.5,
              tcpRttMs: 11.9,
              cwndSegments: 87,
              retransmits: 3,
              congestion: 'bbr',
              tcpBytesSent: 1_000_000,
              tcpBytesRetrans: 13_000,
              queuedBytes: 0,
              bytesSent: 5 * 1024 * 1024,
              bytesReceived: 1024
            },
            {
              id: 0,
              index: 1,
              pathId: 0,
              path: 'a',
              state: 'backing off',
              srttMs: 0,
              queuedBytes: 0,
              bytesSent: 0,
              bytesReceived: 0,
              failedDials: 4,
              nextDialInMs: 1500
            }
          ],
          topFlows: [
            {
              id: 0xdeadbeef,
              state: 'open',
              client: '192.168.1.5:40112',
              destination: '203.0.113.7:443',
              bytesFromApp: 10 * 1024 * 1024,
              bytesToApp: 2048,
              rateFromAppBps: 12_500_000,
              rateToAppBps: 0,
              resentBytes: 0,
              ageMs: 4200,
              subflowsUsed: [0]
            }
          ]
        }
      ]
    }
    const text = formatStatus(s)
    assert.match(text, /^tx_proxy pid 77, up 61 s/)
    assert.match(
      text,
      /trunk peer 10\.0\.0\.2:6000: up, intercepting, encrypted, 1 of 2 subflow\(s\) up, 1 flow\(s\)/
    )
    assert.match(
      text,
      /last dial error: 2026-12-04T10:00:00\.000Z subflow 1: connect ECONNREFUSED \(ECONNREFUSED\)/
    )
    assert.match(text, /\n {2}congestion control: bbr \(auto\)\n/)
    assert.match(text, /\n\s+0\s+a\s+up\s+12\.5\s+11\.9\s+87\s+3 \(1\.3 %\)\s+bbr\s/)
    assert.match(text, /\n\s+1\s+a\s+backing off\s+-/)
    assert.match(text, /subflow 1: 4 failed dial\(s\), next dial in 1\.5 s/)
    assert.match(
      text,
      /deadbeef\s+192\.168\.1\.5:40112 → 203\.0\.113\.7:443\s+open\s+10\.0 MiB\s+2\.0 KiB\s+100\.0 Mbit\/s \/ 0 bit\/s\s+4\.2\s+0/
    )
  })

  test('the rate line says what a burst told the peer, only when it is above the estimate', () => {
    const r: RateStatus = {
      source: 'startup',
      targetBps: 22_000_000,
      estimateBps: 5_700_000,
      receiveBps: 0,
      peerSendBps: 150_000,
      sendRateBps: 10_400_000,
      kernelDeliveryBps: 0,
      minRttMs: 599.3,
      bdpBytes: 3_400_000,
      inflightCapBytes: 6_800_000,
      inFlightBytes: 0
    }
    const line = rateLine(r)
    assert.match(
      line,
      /estimate so far 45\.6 Mbit\/s\); bursts reached 83\.2 Mbit\/s \(told the peer\);/
    )
    assert.doesNotMatch(rateLine({ ...r, sendRateBps: r.estimateBps }), /told the peer/)
  })
})

describe('log lines', () => {
  const info = {
    level: 'warn',
    message: 'trunk down',
    timestamp: '2026-12-04T10:00:00.000Z',
    flow: 7
  }
  test('text, text under the journal, json, json under the journal', () => {
    assert.equal(
      formatLine('tx_proxy', { format: 'text', journald: false }, info),
      '2026-12-04T10:00:00.000Z warn  tx_proxy trunk down flow=7'
    )
    assert.equal(
      formatLine('tx_proxy', { format: 'text', journald: true }, info),
      '<4>warn  tx_proxy trunk down flow=7'
    )
    assert.deepEqual(
      JSON.parse(formatLine('tx_proxy', { format: 'json', journald: false }, info)),
      {
        time: '2026-12-04T10:00:00.000Z',
        level: 'warn',
        role: 'tx_proxy',
        msg: 'trunk down',
        flow: 7
      }
    )
    assert.equal(
      formatLine('rx_proxy', { format: 'json', journald: true }, { ...info, level: 'error' }),
      '<3>{"level":"error","role":"rx_proxy","msg":"trunk down","flow":7}'
    )
  })
})

describe('metrics before any event', () => {
  test('every counter is there at 0 on both roles, a new counter shows by its name, promtool passes', async () => {
    for (const role of ['tx_proxy', 'rx_proxy'] as const) {
      const counters: Record<string, number> = {}
      const status = (): ProxyStatus => ({
        role,
        pid: 1,
        uptimeMs: 0,
        bufferedBytes: 0,
        maxBufferedBytes: 1,
        trunks: [],
        totals: {
          bytesFromApp: 0,
          bytesToApp: 0,
          reorderBytes: 0,
          sendBufferedBytes: 0,
          duplicateBytes: 0,
          resentBytes: 0,
          creditStalls: 0
        },
        counters
      })
      const m = new ProxyMetrics(
        { status, readiness: () => ({ ok: false, detail: 'no trunk' }) },
        role
      )
      const text = await m.scrape()
      const s = samples(text)
      for (const spec of COUNTER_SPECS) {
        if (spec.role !== undefined && spec.role !== role) continue
        const name = `tandem_${spec.name}_total`
        if (spec.label === undefined) assert.deepEqual(s.get(name), ['0'], name)
        else {
          for (const v of spec.values ?? []) {
            assert.ok(s.get(name)?.includes(`{${spec.label}="${v}"} 0`), `${name}{${v}}`)
          }
        }
      }
      assert.deepEqual(s.get('tandem_app_bytes_total'), [
        '{direction="from_app"} 0',
        '{direction="to_app"} 0'
      ])
      assert.deepEqual(s.get('tandem_ready'), ['0'])
      const lint = promtool(text)
      assert.equal(lint.status, 0, lint.output)
      counters.widgets_made = 3
      counters.errors_PEP_ERR_DECRYPT = 2
      counters.syns_accelerated = 5
      counters.syns_seen = 5
      const later = samples(await m.scrape())
      if (role === 'tx_proxy') {
        // syns_seen is the sum of the decisions: not a decision of its own.
        assert.ok(later.get('tandem_syn_decisions_total')?.includes('{decision="accelerated"} 5'))
        assert.ok(!later.get('tandem_syn_decisions_total')?.some((l) => l.includes('"seen"')))
      }
      assert.deepEqual(later.get('tandem_widgets_made_total'), ['3'])
      assert.ok(later.get('tandem_protocol_errors_total')?.includes('{code="PEP_ERR_DECRYPT"} 2'))
    }
  })
})
