/**
 * A proxy killed with SIGKILL mid-transfer: both applications see an error (RST), never a clean
 * end of a truncated stream (issue 5's last test; SO_LINGER 0 while a flow runs, plus the
 * outage grace on the surviving proxy).
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { test } from 'node:test'
import { freePort, startPair } from '../helpers/proxies.js'
import { deferred, readAll, writeBytes, type ReadResult } from '../helpers/transfer.js'

const MiB = 1024 * 1024

for (const victim of ['tx', 'rx'] as const) {
  test(`SIGKILL of ${victim}_proxy mid-transfer: client and destination both see a reset`, async () => {
    const destPort = await freePort()
    const atDest = deferred<ReadResult>()
    let destBytes = 0
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined)
      s.on('data', (d: Buffer) => (destBytes += d.length))
      void readAll(s).then(atDest.resolve)
      // A slow trickle the other way, so both directions are mid-stream.
      void writeBytes(s, 512 * MiB, () => 4096).catch(() => undefined)
    })
    await new Promise<void>((r) => server.listen(destPort, '127.0.0.1', r))
    const pair = await startPair({
      destinationPort: destPort,
      subflows: 2,
      extra: ['--set', 'trunk.outage_grace_ms=500']
    })
    try {
      const client: Socket = connect({ port: pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
      client.on('error', () => undefined)
      let clientBytes = 0
      client.on('data', (d: Buffer) => (clientBytes += d.length))
      const atClient = readAll(client)
      void writeBytes(client, 1024 * MiB).catch(() => undefined)
      // Mid-transfer means bytes have crossed both ways (a fixed sleep was too short on a cold,
      // loaded CI machine): then kill.
      const deadline = Date.now() + 10_000
      while ((destBytes < MiB || clientBytes < 64 * 1024) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50))
      }
      const before = `before the kill: destination had ${destBytes} B, client ${clientBytes} B`
      ;(victim === 'tx' ? pair.tx : pair.rx).child.kill('SIGKILL')
      const [c, d] = await Promise.all([atClient, atDest.promise])
      const why = (who: string): string =>
        `${who} saw a clean EOF of a truncated stream (${before}; client ${c.ending} after ` +
        `${c.bytes} B, destination ${d.ending} after ${d.bytes} B)\n` +
        `tx log:\n${pair.tx.log().slice(-3000)}\nrx log:\n${pair.rx.log().slice(-3000)}`
      assert.notEqual(c.ending, 'end', why('client'))
      assert.notEqual(d.ending, 'end', why('destination'))
      assert.ok(c.bytes < 512 * MiB && d.bytes < 1024 * MiB)
    } finally {
      await pair.stop()
      server.close()
    }
  })
}
