/**
 * `sendTo` and `receiveOne` over loopback, in one process: the same logic the executables run.
 */

import assert from 'node:assert/strict'
import { once } from 'node:events'
import net, { type Server } from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'

import { PepError } from '../../../src/common/errors.js'
import {
  acceptOne,
  boundAddress,
  expectedSha256,
  generatedBytes,
  generatedSource,
  listen,
  parseWriteSize,
  receiveOne,
  sendTo,
  TransferError
} from '../../../src/tools/harness.js'

const MiB = 1024 * 1024
const HOST = '127.0.0.1'

/** A port nothing listens on: bind one, then close it. */
async function closedPort(): Promise<number> {
  const server = await listen({ host: HOST, port: 0 })
  const { port } = boundAddress(server)
  server.close()
  await once(server, 'close')
  return port
}

describe('loopback round trip', { timeout: 120_000 }, () => {
  let server: Server
  let port: number

  before(async () => {
    server = await listen({ host: HOST, port: 0 })
    port = boundAddress(server).port
  })
  after(() => {
    server.close()
  })

  it('carries 64 MiB in random writes and a 1 MiB reply, digests equal both ways', async () => {
    const receiving = receiveOne(server, {
      reply: { kind: 'generated', bytes: MiB, seed: 7 },
      writeSize: parseWriteSize('random:1-32KiB'),
      writeSeed: 11,
      timeoutMs: 100_000
    })
    const sent = await sendTo({
      host: HOST,
      port,
      source: generatedSource(64 * MiB, 3),
      writeSize: parseWriteSize('random:1-256KiB'),
      writeSeed: 5,
      timeoutMs: 100_000
    })
    const received = await receiving

    const dataSha256 = expectedSha256(64 * MiB, 3)
    const replySha256 = expectedSha256(MiB, 7)
    assert.equal(sent.sentBytes, 64 * MiB)
    assert.equal(received.receivedBytes, 64 * MiB)
    assert.equal(sent.sentSha256, dataSha256)
    assert.equal(received.receivedSha256, dataSha256)
    assert.equal(received.replyBytes, MiB)
    assert.equal(sent.replyBytes, MiB)
    assert.equal(received.replySha256, replySha256)
    assert.equal(sent.replySha256, replySha256)
    // Loopback without a proxy: the server sees the sender's own address and port.
    assert.equal(received.peerAddress, sent.localAddress)
    assert.equal(received.peerPort, sent.localPort)
    assert.equal(sent.remotePort, port)
    assert.ok(sent.goodputMbitPerSec > 0 && received.goodputMbitPerSec > 0)
    assert.ok(sent.deliveredMs >= sent.sendMs && sent.totalMs >= sent.deliveredMs)
    assert.ok(received.acceptToEofMs >= received.firstByteToEofMs)
  })

  it('echoes every byte back', async () => {
    const receiving = receiveOne(server, { reply: { kind: 'echo' }, timeoutMs: 30_000 })
    const sent = await sendTo({
      host: HOST,
      port,
      source: generatedSource(4 * MiB + 5, 1),
      writeSize: parseWriteSize('random:1-100000'),
      timeoutMs: 30_000
    })
    const received = await receiving
    assert.equal(sent.replyBytes, 4 * MiB + 5)
    assert.equal(sent.replySha256, sent.sentSha256)
    assert.equal(received.replySha256, received.receivedSha256)
  })

  it('writes to a slow output with backpressure, and the output gets every byte', async () => {
    const chunks: Buffer[] = []
    const output = new Writable({
      highWaterMark: 4096,
      write(chunk: Buffer, _encoding, callback): void {
        chunks.push(chunk)
        setImmediate(callback)
      }
    })
    const receiving = receiveOne(server, { output, timeoutMs: 30_000 })
    await sendTo({ host: HOST, port, source: generatedSource(MiB, 8), timeoutMs: 30_000 })
    const received = await receiving
    assert.equal(received.receivedBytes, MiB)
    assert.ok(output.writableFinished)
    assert.deepEqual(Buffer.concat(chunks), generatedBytes(MiB, 8))
  })

  it('sends nothing but still half-closes both ways', async () => {
    const receiving = receiveOne(server, { timeoutMs: 10_000 })
    const sent = await sendTo({ host: HOST, port, source: generatedSource(0, 1) })
    const received = await receiving
    assert.equal(sent.sentBytes, 0)
    assert.equal(received.receivedBytes, 0)
    assert.equal(received.acceptToFirstByteMs, undefined)
    assert.equal(received.receivedSha256, expectedSha256(0, 1))
  })

  it('reports a reset before EOF as ECONNRESET in the receive phase', async () => {
    const accepting = acceptOne(server, 10_000)
    const client = net.connect({ host: HOST, port })
    await once(client, 'connect')
    const clientPort = client.localPort
    // Reset only once the data has been read: Linux reports a reset that arrives while data
    // is still queued as a plain EOF once the data is read (tcp_recvmsg checks SOCK_DONE
    // before sk_err), which only --expect-bytes can catch.
    const receiving = receiveOne(await accepting, {
      timeoutMs: 10_000,
      onProgress: (receivedBytes) => {
        if (receivedBytes === 1000) {
          client.resetAndDestroy()
        }
      }
    })
    client.write(Buffer.alloc(1000))
    await assert.rejects(receiving, (err: unknown) => {
      assert.ok(err instanceof TransferError)
      assert.equal(err.code, 'ECONNRESET')
      assert.equal(err.phase, 'receive')
      assert.equal(
        err.message,
        `connection from ${HOST}:${clientPort} failed before EOF: ECONNRESET (received 1000 bytes)`
      )
      return true
    })
  })

  it('times out a peer that never sends EOF', async () => {
    const receiving = receiveOne(server, { timeoutMs: 200 })
    const client = net.connect({ host: HOST, port })
    await assert.rejects(receiving, (err: unknown) => {
      assert.ok(err instanceof PepError)
      assert.equal(err.code, 'PEP_ERR_TIMEOUT')
      return true
    })
    client.destroy()
  })

  it('reports a receiver that resets mid-stream as a send failure', async () => {
    // Reset once data flows, so that the sender is past its connect phase.
    void acceptOne(server, 10_000).then((socket) => {
      socket.once('data', () => socket.resetAndDestroy())
    })
    await assert.rejects(
      sendTo({ host: HOST, port, source: generatedSource(256 * MiB, 1), timeoutMs: 30_000 }),
      (err: unknown) => {
        assert.ok(err instanceof TransferError)
        assert.ok(['ECONNRESET', 'EPIPE'].includes(err.code), err.code)
        assert.equal(err.phase, 'send')
        return true
      }
    )
  })
})

describe('sendTo failures', () => {
  it('names ECONNREFUSED in one line', async () => {
    const port = await closedPort()
    await assert.rejects(
      sendTo({ host: HOST, port, source: generatedSource(10, 1) }),
      (err: unknown) => {
        assert.ok(err instanceof TransferError)
        assert.equal(err.code, 'ECONNREFUSED')
        assert.equal(err.phase, 'connect')
        assert.equal(err.message, `cannot connect to ${HOST}:${port}: ECONNREFUSED`)
        return true
      }
    )
  })
})
