/**
 * sd_notify: the notifier's messages (READY=1 once, STATUS=, WATCHDOG=1 at half of
 * WATCHDOG_USEC, STOPPING=1) with a fake sender, and the addon's datagram to a real AF_UNIX
 * receiver at a path and at an abstract name.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { sdNotify } from '../../../native/index.js'
import { NativeError } from '../../../src/common/errors.js'
import { silentLogger } from '../../../src/common/log/logger.js'
import { ServiceNotifier, waitUntilReady, watchdogIntervalMs } from '../../../src/app/systemd.js'
import { datagramReceiver } from '../../helpers/observe.js'

function recorder(): { sent: [string, string][]; send: (p: string, m: string) => void } {
  const sent: [string, string][] = []
  return { sent, send: (p, m) => sent.push([p, m]) }
}

describe('ServiceNotifier', () => {
  test('outside systemd (no NOTIFY_SOCKET) it sends nothing', () => {
    const r = recorder()
    const n = new ServiceNotifier(silentLogger, {}, r.send, 42)
    assert.equal(n.enabled, false)
    n.ready('up')
    n.status('x')
    n.startWatchdog()
    n.stopping('bye')
    assert.deepEqual(r.sent, [])
  })

  test('READY=1 once with its status; STATUS=; STOPPING=1; newlines cannot inject keys', () => {
    const r = recorder()
    const n = new ServiceNotifier(silentLogger, { NOTIFY_SOCKET: '@sd' }, r.send, 42)
    n.ready('trunk up\nREADY=0')
    n.ready('again')
    n.status('trunk down')
    n.stopping('stopping (SIGTERM)')
    assert.deepEqual(r.sent, [
      ['@sd', 'READY=1\nSTATUS=trunk up READY=0'],
      ['@sd', 'STATUS=trunk down'],
      ['@sd', 'STOPPING=1\nSTATUS=stopping (SIGTERM)']
    ])
  })

  test('the watchdog period is WATCHDOG_USEC, for this pid only', () => {
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000' }, 7), 20_000)
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '7' }, 7), 20_000)
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '8' }, 7), undefined)
    assert.equal(watchdogIntervalMs({}, 7), undefined)
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }, 7), undefined)
  })

  test('WATCHDOG=1 at once and then every half period, until stopping', async () => {
    const r = recorder()
    const n = new ServiceNotifier(
      silentLogger,
      { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '100000' },
      r.send,
      1
    )
    n.startWatchdog()
    await new Promise((res) => setTimeout(res, 180))
    const pings = r.sent.filter(([, m]) => m === 'WATCHDOG=1').length
    // At 0, 50, 100, 150 ms: four, give or take one on a busy machine.
    assert.ok(pings >= 3 && pings <= 5, `${pings} keep-alives in 180 ms`)
    n.stopping('bye')
    const after = r.sent.length
    await new Promise((res) => setTimeout(res, 120))
    assert.equal(r.sent.length, after)
  })

  test('a failing socket is reported once per run of failures, and never throws', () => {
    const lines: string[] = []
    const log = { ...silentLogger, warn: (m: string) => lines.push(m) }
    let fail = true
    const n = new ServiceNotifier(log, { NOTIFY_SOCKET: '/run/none' }, () => {
      if (fail) throw new NativeError('sendto(NOTIFY_SOCKET): ENOENT', 2)
    })
    n.status('a')
    n.status('b')
    assert.equal(lines.length, 1)
    assert.match(lines[0]!, /sd_notify to \/run\/none failed: .*ENOENT/)
    fail = false
    n.status('c')
    fail = true
    n.status('d')
    assert.equal(lines.length, 2)
  })

  test('waitUntilReady: true as soon as ready, false after the bounded wait', async () => {
    let ready = false
    setTimeout(() => (ready = true), 50)
    assert.equal(await waitUntilReady(() => ready, 5000, 10), true)
    const t0 = performance.now()
    assert.equal(await waitUntilReady(() => false, 100, 10), false)
    assert.ok(performance.now() - t0 >= 95)
  })
})

describe('sdNotify (native addon)', () => {
  test('sends one datagram to a socket path', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-notify-'))
    t.after(() => {
      rmSync(dir, { recursive: true, force: true })
    })
    const path = join(dir, 'notify')
    const rx = await datagramReceiver(path)
    try {
      sdNotify(path, 'READY=1\nSTATUS=hello')
      assert.equal(await rx.waitFor(/READY/), 'READY=1\nSTATUS=hello')
    } finally {
      rx.close()
    }
  })

  test('sends to an abstract socket named with @', async () => {
    const name = `@tandem-notify-${process.pid}`
    const rx = await datagramReceiver(name)
    try {
      sdNotify(name, 'WATCHDOG=1')
      assert.equal(await rx.waitFor(/WATCHDOG/), 'WATCHDOG=1')
    } finally {
      rx.close()
    }
  })

  test('nobody listening: a NativeError with the errno; bad arguments: TypeError', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-notify-'))
    t.after(() => {
      rmSync(dir, { recursive: true, force: true })
    })
    const path = join(dir, 'absent')
    assert.throws(
      () => {
        sdNotify(path, 'READY=1')
      },
      (err: unknown) => err instanceof NativeError && /ENOENT/.test(err.message)
    )
    assert.throws(() => {
      sdNotify('relative', 'READY=1')
    }, TypeError)
    assert.throws(() => {
      sdNotify(`/${'x'.repeat(200)}`, 'READY=1')
    }, TypeError)
  })
})
