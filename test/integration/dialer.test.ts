/**
 * The dialer in one process against a real rx_proxy on loopback: the peer's name is resolved at
 * every dial, so a re-dial follows a changed address; a refused connect is a dial failure, not
 * a failed handshake.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { buildConfig } from '../../src/common/config/config.js'
import { Counters } from '../../src/common/counters.js'
import { silentLogger } from '../../src/common/log/logger.js'
import { ResetReason } from '../../src/common/wire/frame.js'
import { MemoryBudget } from '../../src/core/memory-budget.js'
import { createScheduler } from '../../src/core/scheduler/index.js'
import { RxProxy } from '../../src/rx-proxy/rx-proxy.js'
import { Dialer } from '../../src/trunk/dialer.js'
import { trunkSettings } from '../../src/trunk/settings.js'
import { Trunk } from '../../src/trunk/trunk.js'
import { freePort, TEST_PSK } from '../helpers/proxies.js'

test('a re-dial resolves the peer name again and follows the new address; ECONNREFUSED counts as a dial failure', async () => {
  const port = await freePort()
  // rx_proxy listens on 127.0.0.2 only; the name first resolves to 127.0.0.1, where nothing listens.
  const config = buildConfig(
    new Map([
      ['security.psk', TEST_PSK],
      ['rx_proxy.recv_ip', '127.0.0.2'],
      ['rx_proxy.recv_port', String(port)],
      ['rx_proxy.control_socket', ''],
      ['tx_proxy.rx_proxy_ip', 'rx.test'],
      ['tx_proxy.rx_proxy_port', String(port)],
      ['tx_proxy.subflows', '1'],
      ['tx_proxy.redial_min_ms', '20'],
      ['tx_proxy.redial_max_ms', '40']
    ])
  )
  const rx = new RxProxy(config, silentLogger)
  await rx.start()
  const counters = new Counters()
  const trunk = new Trunk({
    role: 'tx',
    trunkId: randomBytes(16),
    settings: trunkSettings(config),
    scheduler: createScheduler('first-free'),
    budget: new MemoryBudget(config.limits.maxBufferedBytes),
    counters,
    log: silentLogger,
    now: () => performance.now()
  })
  const asked: string[] = []
  const answers = ['127.0.0.1', '127.0.0.2']
  const dialer = new Dialer({
    trunk,
    slots: config.paths,
    hello: {
      maxFrameBodyBytes: config.limits.maxFrameBodyBytes,
      flowWindowBytes: config.limits.flowWindowBytes,
      psk: Buffer.from(TEST_PSK, 'hex'),
      encrypt: true
    },
    dialTimeoutMs: 2000,
    redialMinMs: 20,
    redialMaxMs: 40,
    counters,
    log: silentLogger,
    lookup: (host) => {
      asked.push(host)
      return Promise.resolve(answers[Math.min(asked.length, answers.length) - 1]!)
    }
  })
  try {
    dialer.start()
    const deadline = performance.now() + 5000
    while (trunk.subflowCount === 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.equal(trunk.subflowCount, 1)
    assert.deepEqual(asked, ['rx.test', 'rx.test'])
    assert.equal(counters.get('dial_failures'), 1)
    assert.equal(counters.get('handshake_failures_PEP_ERR_HELLO_REJECTED'), 0)
    assert.equal(counters.get('handshake_failures_PEP_ERR_CONNECT_FAILED'), 0)
  } finally {
    dialer.stop()
    trunk.close(ResetReason.SHUTDOWN, 'test over')
    await rx.stop()
  }
})
