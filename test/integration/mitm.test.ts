/**
 * A man in the middle between a real tx_proxy and a real rx_proxy: a relay on loopback changes
 * one handshake field per connection (REPLY flags, parameters and status; HELLO parameters and
 * flags; CHALLENGE and AUTH bytes). Every changed handshake must be refused, and nothing may
 * cross the relay after it: no OPEN, no destination, no client byte, in clear or not. rx_proxy
 * runs with `security.encrypt = false` so that only tx_proxy asks for encryption, which is the
 * case where a changed flag could switch it off. At the end the relay stops changing anything,
 * and the subflow comes up encrypted: the client's bytes reach the destination, and the relay
 * never sees them in clear.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { queryStatus } from '../../src/app/control.js'
import {
  HELLO_FLAG_ENCRYPT,
  HelloStatus,
  REPLY_FLAG_TRUNK_NEW
} from '../../src/common/wire/frame.js'
import { sleep } from '../helpers/hostile.js'
import { HandshakeRelay, type Tamper } from '../helpers/mitm-relay.js'
import { freePort, spawnProxy, TEST_PSK, type ProxyProcess } from '../helpers/proxies.js'

/** Put a big-endian u32 at `at`. */
function u32(at: number, value: number): (b: Uint8Array) => void {
  return (b) => {
    new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, value)
  }
}

function flip(at: number, mask: number): (b: Uint8Array) => void {
  return (b) => {
    b[at] = b[at]! ^ mask
  }
}

/** Field offsets of the 40-byte fixed part (docs/protocol.md §2). */
const STATUS = 7
const MAX_FRAME_BODY = 28
const FLOW_WINDOW = 32
const PATH_ID = 36
const FLAGS = 37
const RESERVED = 38
const AUTH_DATA = 40

const CASES: readonly Tamper[] = [
  {
    name: 'REPLY flag ENCRYPT cleared',
    direction: 'down',
    message: 1,
    change: flip(FLAGS, HELLO_FLAG_ENCRYPT)
  },
  {
    name: 'REPLY flag TRUNK_NEW flipped',
    direction: 'down',
    message: 1,
    change: flip(FLAGS, REPLY_FLAG_TRUNK_NEW)
  },
  { name: 'REPLY flow window', direction: 'down', message: 1, change: u32(FLOW_WINDOW, 1) },
  { name: 'REPLY max frame body', direction: 'down', message: 1, change: u32(MAX_FRAME_BODY, 64) },
  {
    name: 'REPLY status',
    direction: 'down',
    message: 1,
    change: (b) => void (b[STATUS] = HelloStatus.LIMIT)
  },
  { name: 'REPLY reserved byte', direction: 'down', message: 1, change: flip(RESERVED, 1) },
  { name: 'HELLO max frame body', direction: 'up', message: 0, change: u32(MAX_FRAME_BODY, 64) },
  { name: 'HELLO flow window', direction: 'up', message: 0, change: u32(FLOW_WINDOW, 1) },
  { name: 'HELLO path id', direction: 'up', message: 0, change: flip(PATH_ID, 1) },
  {
    name: 'HELLO flag ENCRYPT cleared',
    direction: 'up',
    message: 0,
    change: flip(FLAGS, HELLO_FLAG_ENCRYPT)
  },
  { name: 'HELLO padding byte', direction: 'up', message: 0, change: flip(AUTH_DATA + 40, 1) },
  { name: 'CHALLENGE reserved byte', direction: 'down', message: 0, change: flip(RESERVED, 1) },
  { name: 'CHALLENGE server nonce', direction: 'down', message: 0, change: flip(AUTH_DATA, 1) },
  {
    name: 'CHALLENGE max frame body',
    direction: 'down',
    message: 0,
    change: u32(MAX_FRAME_BODY, 4096)
  },
  { name: 'AUTH reserved byte', direction: 'up', message: 1, change: flip(RESERVED, 1) },
  { name: 'AUTH flow window', direction: 'up', message: 1, change: u32(FLOW_WINDOW, 12345) }
]

describe('a man in the middle changes one handshake field at a time', () => {
  const marker = Buffer.from(`client-secret-${randomBytes(8).toString('hex')}`)
  let dest: Server
  let destPort = 0
  const received: Buffer[] = []
  let rx: ProxyProcess
  let tx: ProxyProcess
  let relay: HandshakeRelay
  let dir = ''
  let txControl = ''
  let client: Socket

  before(async () => {
    dest = createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (d: Buffer) => received.push(d))
      s.on('error', () => undefined)
    })
    await new Promise<void>((r) => dest.listen(0, '127.0.0.1', r))
    const a = dest.address()
    destPort = typeof a === 'object' && a !== null ? a.port : 0
    dir = mkdtempSync(join(tmpdir(), 'tandem-mitm-'))
    txControl = join(dir, 'tx.sock')
    const rxPort = await freePort()
    rx = spawnProxy('rx-proxy', [
      '-c',
      '/dev/null',
      '--set',
      `security.psk=${TEST_PSK}`,
      '--set',
      'security.encrypt=false',
      '--set',
      'rx_proxy.deny_subnets=',
      '--set',
      'rx_proxy.allow_loopback=true',
      '--set',
      `rx_proxy.control_socket=${join(dir, 'rx.sock')}`,
      '--recv-ip',
      '127.0.0.1',
      '--recv-port',
      String(rxPort)
    ])
    await rx.waitFor(/listening on/)
    relay = new HandshakeRelay(rxPort)
    relay.tamper = CASES[0]
    const relayPort = await relay.start()
    const txPort = await freePort()
    tx = spawnProxy('tx-proxy', [
      '-c',
      '/dev/null',
      '--set',
      `security.psk=${TEST_PSK}`,
      '--set',
      'security.encrypt=true',
      '--set',
      `tx_proxy.control_socket=${txControl}`,
      '--set',
      'tx_proxy.redial_min_ms=20',
      '--set',
      'tx_proxy.redial_max_ms=100',
      '--set',
      'tx_proxy.dial_timeout_ms=3000',
      '--local-ip',
      '127.0.0.1',
      '--local-port',
      String(txPort),
      '--rx-proxy-ip',
      '127.0.0.1',
      '--rx-proxy-port',
      String(relayPort),
      '--destination',
      `127.0.0.1:${destPort}`,
      '--subflows',
      '1'
    ])
    await tx.waitFor(/listening on/)
    // A client whose flow waits in tx_proxy for a subflow: if one ever came up in clear, its OPEN
    // and these bytes would cross the relay readable.
    client = connect({ host: '127.0.0.1', port: txPort })
    client.on('error', () => undefined)
    await new Promise<void>((r) =>
      client.once('connect', () => {
        r()
      })
    )
    client.write(marker)
  })

  after(async () => {
    client.destroy()
    relay.stop()
    await tx.stop()
    await rx.stop()
    dest.close()
    rmSync(dir, { recursive: true, force: true })
  })

  for (const tamper of CASES) {
    it(`${tamper.name}: the subflow is refused, nothing crosses after the handshake`, async () => {
      relay.tamper = tamper
      const session = await relay.closedSessionWith(tamper, 15_000)
      assert.ok(session, `no handshake with "${tamper.name}" ended within 15 s`)
      const up = session.all('up')
      process.stdout.write(
        `# mitm ${tamper.name}: ${up.length} bytes up, ${session.all('down').length} down; after the handshake ${session.upAfterHandshake} up, ${session.downAfterHandshake} down\n`
      )
      assert.equal(session.upAfterHandshake, 0, 'tx_proxy sent nothing after its AUTH')
      assert.equal(session.downAfterHandshake, 0, 'rx_proxy sent nothing after its REPLY')
      assert.ok(!up.includes(marker), 'no client byte crossed the relay')
      const s = await queryStatus(txControl)
      assert.equal(
        (s.trunks[0]?.subflows ?? []).filter((x) => (x.state ?? 'up') === 'up').length,
        0,
        'no subflow is up'
      )
      assert.equal(Buffer.concat(received).length, 0, 'the destination got nothing')
    })
  }

  it('tx_proxy counted and logged the attacks on the REPLY', async () => {
    const s = await queryStatus(txControl)
    const c = s.counters
    process.stdout.write(
      `# mitm counters: ${Object.entries(c)
        .filter(([k]) => /handshake|dial|auth/.test(k))
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}\n`
    )
    // Five changed REPLYs fail their MAC; the changed status reads as an unauthenticated refusal.
    assert.ok((c.handshake_attacks ?? 0) >= 5)
    assert.ok((c.handshake_failures_PEP_ERR_HANDSHAKE_TAMPERED ?? 0) >= 5)
    assert.ok((c.handshake_failures_PEP_ERR_AUTH_FAILED ?? 0) >= 10)
    assert.match(
      tx.log(),
      /the REPLY failed authentication: something on the path changed the handshake \(man in the middle\?\)/
    )
  })

  it('left alone, the relay carries an encrypted subflow: the bytes arrive, never in clear', async () => {
    relay.tamper = undefined
    await tx.waitFor(/subflow up/, 1, 15_000)
    const deadline = performance.now() + 10_000
    while (!Buffer.concat(received).includes(marker) && performance.now() < deadline)
      await sleep(50)
    assert.ok(Buffer.concat(received).includes(marker), 'the client bytes reached the destination')
    const honest = relay.sessions.filter((x) => x.tamper === undefined)
    assert.ok(honest.length >= 1)
    for (const h of honest) assert.ok(!h.all('up').includes(marker), 'never in clear on the path')
    assert.ok(
      honest.some((h) => h.upAfterHandshake > 0),
      'frames did cross (encrypted)'
    )
  })
})
