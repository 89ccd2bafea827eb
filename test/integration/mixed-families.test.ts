/**
 * A client and a destination of different address families never crash tx_proxy: in static mode
 * with an IPv6 (or IPv4-mapped) destination, a client that comes over IPv4 gets its flow carried
 * (sha256 equal both ways) with the source left out of the OPEN, and the next flows are served.
 * An OPEN that cannot be encoded at all resets that one client, counted and logged.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Server } from 'node:net'
import { after, before, describe, it } from 'node:test'

import { loadConfig } from '../../src/common/config/load.js'
import { createLogger } from '../../src/common/log/winston.js'
import type { Endpoint } from '../../src/common/wire/frame.js'
import { queryStatus } from '../../src/app/control.js'
import { TxProxy } from '../../src/tx-proxy/tx-proxy.js'
import { freePort, spawnProxy, startPair, TEST_PSK, type ProxyPair } from '../helpers/proxies.js'
import { randomSizer, readAll, writeBytes, type ReadResult } from '../helpers/transfer.js'

const MiB = 1024 * 1024

/** A destination on `host` that reads everything, then answers with `replyBytes` and a FIN. */
async function startEcho(
  host: string,
  replyBytes: number
): Promise<{
  server: Server
  port: number
  results: Promise<{ got: ReadResult; sent: string }>[]
}> {
  const results: Promise<{ got: ReadResult; sent: string }>[] = []
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined)
    const got = readAll(s)
    results.push(
      got.then(async (g) => ({
        got: g,
        sent: await writeBytes(s, replyBytes, randomSizer(5, 1, 65536))
      }))
    )
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const a = server.address()
  return { server, port: typeof a === 'object' && a !== null ? a.port : 0, results }
}

/** One flow over IPv4 to tx_proxy: `size` bytes up, the reply down; both digests. */
async function flow(
  txPort: number,
  size: number,
  seed: number
): Promise<{ sent: string | undefined; got: ReadResult }> {
  const client = connect({ port: txPort, host: '127.0.0.1', allowHalfOpen: true })
  const got = readAll(client)
  // A reset may come before 'connect' is seen: then nothing was sent.
  const up = await Promise.race([
    new Promise<boolean>((resolve) =>
      client.once('connect', () => {
        resolve(true)
      })
    ),
    got.then(() => false)
  ])
  const sent = up
    ? await writeBytes(client, size, randomSizer(seed, 1, 65536)).catch(() => undefined)
    : undefined
  return { sent, got: await got }
}

describe('an IPv4 client, an IPv6 destination (static mode)', () => {
  for (const [name, host, destination] of [
    ['IPv6 [::1]', '::1', (p: number) => `[::1]:${p}`],
    ['IPv4-mapped [::ffff:127.0.0.1]', '127.0.0.1', (p: number) => `[::ffff:127.0.0.1]:${p}`]
  ] as const) {
    describe(name, () => {
      let echo: Awaited<ReturnType<typeof startEcho>>
      let pair: ProxyPair
      before(async () => {
        echo = await startEcho(host, 2 * MiB)
        pair = await startPair({
          destinationPort: echo.port,
          destination: destination(echo.port),
          subflows: 2
        })
      })
      after(async () => {
        await pair.stop()
        echo.server.close()
      })

      it('three flows in a row: no crash, bytes exact both ways', async () => {
        for (let i = 0; i < 3; i++) {
          const c = await flow(pair.txPort, 1 * MiB + i, 10 + i)
          const d = await echo.results[i]!
          assert.equal(d.got.bytes, 1 * MiB + i)
          assert.equal(d.got.sha256, c.sent, 'client → destination')
          assert.equal(c.got.bytes, 2 * MiB)
          assert.equal(c.got.sha256, d.sent, 'destination → client')
          assert.equal(c.got.ending, 'end')
        }
        assert.equal(pair.tx.child.exitCode, null, 'tx_proxy is still running')
        const tx = await queryStatus(pair.txControl)
        assert.equal(tx.counters.flows_opened, 3)
        if (host === '::1') assert.equal(tx.counters.flows_source_omitted, 3)
      })
    })
  }
})

describe('an OPEN that cannot be encoded', () => {
  it('resets that client only, counted and logged; the next client is served', async () => {
    const dest = await startEcho('127.0.0.1', 1000)
    const rxPort = await freePort()
    const rx = spawnProxy('rx-proxy', [
      ...['-c', '/dev/null', '--set', `security.psk=${TEST_PSK}`],
      ...['--set', 'rx_proxy.allow_loopback=true', '--set', 'rx_proxy.control_socket='],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(rxPort)]
    ])
    await rx.waitFor(/listening on/)
    const config = loadConfig(
      undefined,
      new Map([
        ['security.psk', TEST_PSK],
        ['tx_proxy.local_ip', '127.0.0.1'],
        ['tx_proxy.local_port', String(await freePort())],
        ['tx_proxy.rx_proxy_ip', '127.0.0.1'],
        ['tx_proxy.rx_proxy_port', String(rxPort)],
        ['tx_proxy.subflows', '1'],
        ['tx_proxy.control_socket', ''],
        ['log.level', 'error']
      ])
    )
    // The first client's destination is not an address at all (a resolver gone wrong).
    const destinations: Endpoint[] = [
      { family: 6, address: 'not-an-address', port: dest.port },
      { family: 4, address: '127.0.0.1', port: dest.port }
    ]
    let n = 0
    const tx = new TxProxy(config, createLogger('tx_proxy', 'error'), () => destinations[n++]!)
    const { port } = await tx.start()
    try {
      const bad = await flow(port, 1000, 1)
      assert.notEqual(bad.got.ending, 'end', 'the first client is reset')
      assert.equal(tx.counters.get('flows_failed_PEP_ERR_MALFORMED_FRAME'), 1)
      const good = await flow(port, 5000, 2)
      const d = await dest.results[0]!
      assert.equal(d.got.sha256, good.sent)
      assert.equal(good.got.sha256, d.sent)
      assert.equal(good.got.ending, 'end')
    } finally {
      await tx.stop()
      await rx.stop()
      dest.server.close()
    }
  })
})
