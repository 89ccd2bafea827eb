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
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined)
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
      const atClient = readAll(client)
      void writeBytes(client, 1024 * MiB).catch(() => undefined)
      await new Promise((r) => setTimeout(r, 700))
      ;(victim === 'tx' ? pair.tx : pair.rx).child.kill('SIGKILL')
      const [c, d] = await Promise.all([atClient, atDest.promise])
      assert.notEqual(c.ending, 'end', 'client saw a clean EOF of a truncated stream')
      assert.notEqual(d.ending, 'end', 'destination saw a clean EOF of a truncated stream')
      assert.ok(c.bytes < 512 * MiB && d.bytes < 1024 * MiB)
    } finally {
      await pair.stop()
      server.close()
    }
  })
}
