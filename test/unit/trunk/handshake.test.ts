/**
 * dialSubflow / acceptSubflow on loopback: both sides end with the same traffic keys and the
 * dialer's parameters; a REPLY with a valid MAC that leaves out the encryption the dialer asked
 * for is refused as an attack.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type Socket } from 'node:net'
import { describe, it } from 'node:test'

import { PepErrorCodes } from '../../../src/common/errors.js'
import { HELLO_FLAG_ENCRYPT, HelloStatus } from '../../../src/common/wire/frame.js'
import {
  acceptSubflow,
  dialSubflow,
  helloReply,
  type AcceptedHandshake,
  type LocalHelloParams
} from '../../../src/trunk/handshake.js'
import { acceptAsFakeRx, fakeServer } from '../../helpers/hostile.js'

const PSK = randomBytes(32)

function local(encrypt: boolean): LocalHelloParams {
  return {
    trunkId: randomBytes(16),
    maxFrameBodyBytes: 4096,
    flowWindowBytes: 123_456,
    psk: PSK,
    encrypt
  }
}

describe('subflow handshake', () => {
  it('completes with matching keys, every parameter as sent', async () => {
    let resolveAccepted: (hs: AcceptedHandshake) => void = () => undefined
    const accepted = new Promise<AcceptedHandshake>((resolve) => {
      resolveAccepted = resolve
    })
    const server = createServer((socket: Socket) => {
      server.close()
      void acceptSubflow(socket, { timeoutMs: 3000, psk: PSK, encrypt: false }).then((hs) => {
        socket.write(
          helloReply(
            hs,
            { trunkId: hs.peer.trunkId, maxFrameBodyBytes: 8192, flowWindowBytes: 777 },
            HelloStatus.OK,
            hs.keys !== undefined ? HELLO_FLAG_ENCRYPT : 0
          )
        )
        resolveAccepted(hs)
      })
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const a = server.address()
    const port = typeof a === 'object' && a !== null ? a.port : 0
    const mine = local(true)
    const dialed = await dialSubflow({
      host: '127.0.0.1',
      port,
      index: 3,
      pathId: 2,
      timeoutMs: 3000,
      local: mine
    })
    const acc = await accepted
    assert.equal(acc.peer.subflowIndex, 3)
    assert.equal(acc.peer.pathId, 2)
    assert.equal(acc.peer.maxFrameBody, 4096)
    assert.equal(acc.peer.flowWindow, 123_456)
    assert.equal(dialed.peer.maxFrameBody, 8192)
    assert.equal(dialed.peer.flowWindow, 777)
    assert.ok(dialed.keys && acc.keys, 'the dialer asked: both encrypt')
    assert.deepEqual(dialed.keys.send, acc.keys.receive)
    assert.deepEqual(dialed.keys.receive, acc.keys.send)
    dialed.socket.destroy()
    acc.socket.destroy()
  })

  it('an authentic REPLY without the encryption we asked for is refused as an attack', async () => {
    const fake = await fakeServer(async (conn) => {
      await acceptAsFakeRx(conn, PSK, { flags: 0 })
    })
    try {
      await assert.rejects(
        dialSubflow({
          host: '127.0.0.1',
          port: fake.port,
          index: 0,
          pathId: 0,
          timeoutMs: 3000,
          local: local(true)
        }),
        (err: unknown) => {
          assert.equal((err as { code?: string }).code, PepErrorCodes.HANDSHAKE_TAMPERED)
          assert.match((err as Error).message, /without encryption/)
          return true
        }
      )
    } finally {
      fake.server.close()
    }
  })

  it('a dialer that did not ask takes encryption when the acceptor turns it on', async () => {
    const fake = await fakeServer(async (conn) => {
      await acceptAsFakeRx(conn, PSK)
    })
    try {
      const hs = await dialSubflow({
        host: '127.0.0.1',
        port: fake.port,
        index: 0,
        pathId: 0,
        timeoutMs: 3000,
        local: local(false)
      })
      assert.ok(hs.keys)
      hs.socket.destroy()
    } finally {
      fake.server.close()
    }
  })
})
