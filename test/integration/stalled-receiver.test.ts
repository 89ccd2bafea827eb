/**
 * A destination that stops reading for 10 s during a 1 GiB push stalls only its own flow:
 * proxies' memory stays within the configured bounds, a second flow keeps moving, and after the
 * stall every byte arrives (issue 2).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect, createServer, type Socket } from 'node:net'
import { test } from 'node:test'
import { freePort, startPair } from '../helpers/proxies.js'
import { deferred, readAll, writeBytes } from '../helpers/transfer.js'

const MiB = 1024 * 1024
/** Global cap given to each proxy for this test. */
const MAX_BUFFERED = 64 * MiB
/** Room for Node's own heap growth, code and socket objects beyond the buffered bytes. */
const RSS_SLACK = 96 * MiB
const STALL_MS = 10_000

test('a stalled destination stalls only its own flow, within the memory bounds', async () => {
  const destPort = await freePort()
  let stalledFlow:
    { socket: Socket; hash: ReturnType<typeof createHash>; bytes: number } | undefined
  const stallDone = deferred<void>()
  const flowADone = deferred<{ bytes: number; sha256: string }>()
  const flowBDone = deferred<{ bytes: number; sha256: string }>()
  let connections = 0
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections++
    if (connections === 1) {
      const hash = createHash('sha256')
      stalledFlow = { socket: s, hash, bytes: 0 }
      const st = stalledFlow
      s.on('data', (d: Buffer) => {
        st.bytes += d.length
        hash.update(d)
        if (st.bytes >= 64 * MiB && !stallStarted) {
          stallStarted = true
          s.pause()
          stallBegan.resolve()
          setTimeout(() => {
            s.resume()
            stallDone.resolve()
          }, STALL_MS)
        }
      })
      s.on('end', () => {
        flowADone.resolve({ bytes: st.bytes, sha256: hash.digest('hex') })
        s.end()
      })
    } else {
      void readAll(s).then((r) => {
        flowBDone.resolve(r)
        s.end()
      })
    }
  })
  let stallStarted = false
  const stallBegan = deferred<void>()
  await new Promise<void>((r) => server.listen(destPort, '127.0.0.1', r))
  const limits = ['--set', `limits.max_buffered_bytes=${MAX_BUFFERED}`]
  const pair = await startPair({ destinationPort: destPort, subflows: 4, extra: limits })
  try {
    const baseTx = pair.tx.rssBytes()
    const baseRx = pair.rx.rssBytes()
    const clientA = connect({ port: pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
    const endA = readAll(clientA)
    const sentA = writeBytes(clientA, 1024 * MiB)
    await stallBegan.promise

    let maxTx = 0
    let maxRx = 0
    const sampler = setInterval(() => {
      maxTx = Math.max(maxTx, pair.tx.rssBytes())
      maxRx = Math.max(maxRx, pair.rx.rssBytes())
    }, 100)
    // Flow B starts while A is stalled and must finish while A is still stalled.
    const t0 = performance.now()
    const clientB = connect({ port: pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
    const endB = readAll(clientB)
    const sentB = await writeBytes(clientB, 256 * MiB)
    const gotB = await flowBDone.promise
    const bSeconds = (performance.now() - t0) / 1000
    const stillStalled = await Promise.race([
      stallDone.promise.then(() => false),
      Promise.resolve(true)
    ])
    assert.equal(gotB.sha256, sentB)
    assert.ok(stillStalled, 'flow B did not finish while flow A was stalled')
    const aBytesDuringStall = stalledFlow?.bytes ?? 0

    await stallDone.promise
    clearInterval(sampler)
    const hashA = await sentA
    const gotA = await flowADone.promise
    assert.equal(gotA.bytes, 1024 * MiB)
    assert.equal(gotA.sha256, hashA)
    assert.equal((await endA).ending, 'end')
    assert.equal((await endB).ending, 'end')
    process.stdout.write(
      `# flow B during the stall: 256 MiB in ${bSeconds.toFixed(2)} s (${(256 / bSeconds).toFixed(0)} MB/s); ` +
        `flow A delivered ${(aBytesDuringStall / MiB).toFixed(0)} MiB before it stalled\n` +
        `# RSS tx ${(baseTx / MiB).toFixed(0)} -> max ${(maxTx / MiB).toFixed(0)} MiB, ` +
        `rx ${(baseRx / MiB).toFixed(0)} -> max ${(maxRx / MiB).toFixed(0)} MiB ` +
        `(bound: base + max_buffered_bytes ${MAX_BUFFERED / MiB} MiB + ${RSS_SLACK / MiB} MiB)\n`
    )
    assert.ok(maxTx <= baseTx + MAX_BUFFERED + RSS_SLACK, `tx RSS ${maxTx} over bound`)
    assert.ok(maxRx <= baseRx + MAX_BUFFERED + RSS_SLACK, `rx RSS ${maxRx} over bound`)
  } finally {
    await pair.stop()
    server.close()
  }
})
