/**
 * SIGTERM is graceful (issue 7): no new flows, running ones get `shutdown_grace_ms` to finish;
 * those that finish are complete, the others see a reset, and the process exits in time.
 */
import assert from 'node:assert/strict'
import { connect, createServer } from 'node:net'
import { test } from 'node:test'
import { freePort, startPair } from '../helpers/proxies.js'
import { readAll, writeBytes, type ReadResult } from '../helpers/transfer.js'

const MiB = 1024 * 1024
// Generous, so that the fast transfers finish inside it on a loaded machine as well.
const GRACE_MS = 4000

for (const victim of ['tx', 'rx'] as const) {
  test(`SIGTERM to ${victim}_proxy during ten transfers: finished ones complete, the rest reset, exit in time`, async () => {
    const destPort = await freePort()
    let opened = 0
    const server = createServer({ allowHalfOpen: true }, (s) => {
      opened++
      s.on('error', () => undefined)
      void readAll(s).then((r) => {
        if (r.ending === 'end') s.end(`${r.bytes} ${r.sha256}\n`)
      })
    })
    await new Promise<void>((r) => server.listen(destPort, '127.0.0.1', r))
    const pair = await startPair({
      destinationPort: destPort,
      subflows: 2,
      extra: ['--set', `trunk.shutdown_grace_ms=${GRACE_MS}`]
    })
    try {
      const clients = Array.from({ length: 10 }, (_, i) => {
        const c = connect({ port: pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
        c.on('error', () => undefined)
        const chunks: Buffer[] = []
        c.on('data', (d: Buffer) => chunks.push(d))
        const done: Promise<ReadResult> = readAll(c)
        const fast = i % 2 === 0
        let stop = false
        // Fast transfers trickle until SIGTERM, then send their rest at once; slow ones trickle past
        // the deadline.
        const sent = writeBytes(
          c,
          fast ? 4 * MiB : 64 * MiB,
          () => 16 * 1024,
          true,
          async () => {
            if (!stop) await new Promise((r) => setTimeout(r, fast ? 4 : 10))
          }
        ).catch(() => '')
        return { fast, done, sent, chunks, halt: () => (stop = true) }
      })
      // Every flow reached the destination before SIGTERM (a flow opened after it is refused,
      // rightly; on a loaded machine ten connects can take longer than a fixed sleep).
      const deadline = performance.now() + 10_000
      while (opened < clients.length && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20))
      }
      assert.equal(opened, clients.length, 'not every flow reached the destination')
      await new Promise((r) => setTimeout(r, 200))
      const proc = victim === 'tx' ? pair.tx : pair.rx
      const t0 = performance.now()
      proc.child.kill('SIGTERM')
      // The fast transfers send their rest at once: under load a 4 ms pause can take 15, and
      // their finish must not hang on timer resolution.
      for (const c of clients) if (c.fast) c.halt()
      await proc.waitFor(/SIGTERM: stopping/)
      await new Promise<void>((resolve) =>
        proc.child.once('exit', () => {
          resolve()
        })
      )
      const exitMs = performance.now() - t0
      assert.ok(exitMs < GRACE_MS + 1500, `exit took ${exitMs} ms`)
      assert.equal(proc.child.exitCode, 0)
      for (const c of clients) {
        const r = await c.done
        if (c.fast) {
          assert.equal(r.ending, 'end', `a fast client saw ${r.ending} after ${r.bytes} B`)
          assert.equal(Buffer.concat(c.chunks).toString(), `${4 * MiB} ${await c.sent}\n`)
        } else {
          assert.notEqual(r.ending, 'end', 'a cut-off transfer must see a reset')
        }
      }
    } finally {
      await pair.stop()
      server.close()
    }
  })
}
