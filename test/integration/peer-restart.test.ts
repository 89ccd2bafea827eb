/**
 * rx_proxy restarts under a running tx_proxy. The flow the old rx_proxy knew is lost with it
 * (a reset, never a clean end); a flow opened while no subflow was up never reached the dead
 * peer, so it goes on over the new trunk and carries every byte.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { test } from 'node:test'
import { freePort, startPair } from '../helpers/proxies.js'
import { readAll, writeBytes } from '../helpers/transfer.js'

const MiB = 1024 * 1024

test('rx_proxy restart: the flow it knew is reset, the first flow opened during the outage carries its bytes (sha256 equal)', async () => {
  const destPort = await freePort()
  let connections = 0
  const server = createServer({ allowHalfOpen: true }, (s) => {
    connections++
    s.on('error', () => undefined)
    // Answer each complete request with its length and sha256.
    void readAll(s).then((r) => {
      if (r.ending === 'end') s.end(`${r.bytes} ${r.sha256}\n`)
    })
  })
  await new Promise<void>((r) => server.listen(destPort, '127.0.0.1', r))
  const pair = await startPair({
    destinationPort: destPort,
    subflows: 2,
    extra: [
      '--set',
      'trunk.outage_grace_ms=30000',
      '--set',
      'tx_proxy.redial_min_ms=50',
      '--set',
      'tx_proxy.redial_max_ms=200'
    ]
  })
  const sockets: Socket[] = []
  const open = (): Socket => {
    const c = connect({ port: pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
    c.on('error', () => undefined)
    sockets.push(c)
    return c
  }
  try {
    // A flow the old rx_proxy knows: its destination is connected, its stream not ended.
    const known = open()
    const knownResult = readAll(known)
    known.write(Buffer.alloc(64 * 1024, 1))
    while (connections < 1) await new Promise((r) => setTimeout(r, 20))

    const oldRx = pair.rx
    const exited = new Promise((r) => oldRx.child.once('exit', r))
    oldRx.child.kill('SIGKILL')
    await exited
    await pair.tx.waitFor(/subflow \d+ down/, 2)

    // Opened during the outage: its OPEN cannot reach any peer yet.
    const fresh = open()
    const chunks: Buffer[] = []
    fresh.on('data', (d: Buffer) => chunks.push(d))
    const freshResult = readAll(fresh)
    const sent = writeBytes(fresh, 2 * MiB)
    await new Promise((r) => setTimeout(r, 300))

    const newRx = pair.restartRx()
    await newRx.waitFor(/listening on/)
    await pair.tx.waitFor(/lost this trunk/)

    const r = await freshResult
    assert.equal(r.ending, 'end')
    assert.equal(Buffer.concat(chunks).toString(), `${2 * MiB} ${await sent}\n`)
    const k = await knownResult
    assert.notEqual(k.ending, 'end', 'the flow the old peer knew must see a reset')
    assert.match(pair.tx.log(), /lost this trunk \(restarted\?\): 1 flow\(s\) reset/)
  } finally {
    for (const s of sockets) s.destroy()
    await pair.stop()
    server.close()
  }
})
