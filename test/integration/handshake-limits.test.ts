/**
 * What a peer without the key can make rx_proxy hold: refused handshakes of every kind give
 * their descriptors back (counted in /proc/<pid>/fd, while the attacker still holds its end),
 * one source holding idle connections cannot lock out a dialer with the key from another
 * address, every refusal is logged once with the peer's address (and rate-limited), and a
 * VERSION_MISMATCH answer is never larger than what was received.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { queryStatus } from '../../src/app/control.js'
import {
  HelloKind,
  HelloStatus,
  PROOF_LENGTH,
  PROTOCOL_VERSION
} from '../../src/common/wire/frame.js'
import { dialSubflow } from '../../src/trunk/handshake.js'
import {
  dialerHello,
  handshakeMessage,
  keyBytes,
  pool,
  RawConnection,
  sleep
} from '../helpers/hostile.js'
import { freePort, spawnProxy, TEST_PSK, type ProxyProcess } from '../helpers/proxies.js'

const PSK = keyBytes(TEST_PSK)
const ATTEMPTS = 2000
const CONCURRENCY = 50
const MAX_UNAUTHENTICATED = 128
const PER_SOURCE = 64
const FIRST_BYTE_MS = 200
const HANDSHAKE_TIMEOUT_MS = 1500
/** A version this build does not speak. */
const OLD_VERSION = PROTOCOL_VERSION - 1

/** Open descriptors of a process. */
function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

/** A raw connection that keeps its side open after the peer's FIN, as an attacker would. */
function openHeld(
  port: number,
  localAddress = '127.0.0.1'
): Promise<{ socket: Socket; ended: Promise<void>; received: () => number }> {
  return new Promise((resolve, reject) => {
    let received = 0
    const socket = connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true })
    const ended = new Promise<void>((r) => {
      socket.once('end', () => {
        r()
      })
      socket.once('close', () => {
        r()
      })
    })
    socket.on('data', (d: Buffer) => {
      received += d.length
    })
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.removeListener('error', reject)
      socket.on('error', () => undefined)
      resolve({ socket, ended, received: () => received })
    })
  })
}

/** Resolves true when `p` settles within `ms`, else false. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined
  const r = await Promise.race([
    p.then(() => true),
    new Promise<boolean>((resolve) => {
      t = setTimeout(() => {
        resolve(false)
      }, ms)
    })
  ])
  clearTimeout(t)
  return r
}

describe('refused handshakes against a real rx_proxy', () => {
  let rx: ProxyProcess
  let rxPort = 0
  let dir = ''
  let rxControl = ''
  let pid = 0
  let baseline = 0

  before(async () => {
    rxPort = await freePort()
    dir = mkdtempSync(join(tmpdir(), 'tandem-hslimits-'))
    rxControl = join(dir, 'rx.sock')
    rx = spawnProxy('rx-proxy', [
      '-c',
      '/dev/null',
      '--set',
      `security.psk=${TEST_PSK}`,
      '--set',
      `rx_proxy.control_socket=${rxControl}`,
      '--set',
      `limits.max_unauthenticated=${MAX_UNAUTHENTICATED}`,
      '--set',
      `limits.max_unauthenticated_per_source=${PER_SOURCE}`,
      '--set',
      `rx_proxy.handshake_timeout_ms=${HANDSHAKE_TIMEOUT_MS}`,
      '--set',
      `rx_proxy.first_byte_timeout_ms=${FIRST_BYTE_MS}`,
      '--recv-ip',
      '127.0.0.1',
      '--recv-port',
      String(rxPort)
    ])
    await rx.waitFor(/listening on/)
    pid = rx.child.pid ?? 0
    await queryStatus(rxControl) // the control socket's first use opens what it keeps
    await sleep(200)
    baseline = fds(pid)
  })

  after(async () => {
    await rx.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  /** The bytes each kind sends, and whether it closes its own side afterwards. */
  const kinds: readonly {
    name: string
    run: (port: number) => Promise<{ socket: Socket; ended: Promise<void> }>
  }[] = [
    {
      name: 'version mismatch, held open',
      run: async (port) => {
        const c = await openHeld(port)
        c.socket.write(
          handshakeMessage({
            version: OLD_VERSION,
            kind: HelloKind.HELLO,
            trunkId: randomBytes(16),
            auth: new Uint8Array(64)
          })
        )
        return c
      }
    },
    {
      name: 'wrong proof + one extra byte, then close',
      run: async (port) => {
        const conn = await RawConnection.open(port)
        conn.write(dialerHello({ psk: PSK, trunkId: randomBytes(16) }).bytes)
        await conn.readHello(HelloKind.CHALLENGE)
        const auth = handshakeMessage({
          kind: HelloKind.AUTH,
          trunkId: randomBytes(16),
          auth: randomBytes(PROOF_LENGTH)
        })
        conn.write(auth)
        // The extra byte apart, so that it waits unread in the refused socket.
        await sleep(2)
        conn.write(Buffer.of(0x42))
        conn.end()
        return { socket: conn.socket, ended: conn.ended.then(() => undefined) }
      }
    },
    {
      name: 'idle, no byte sent, held open',
      run: (port) => openHeld(port)
    }
  ]

  for (const kind of kinds) {
    it(`${ATTEMPTS} × ${kind.name}: rx_proxy's descriptors come back to the baseline`, async () => {
      const held: Socket[] = []
      let notClosed = 0
      const t0 = performance.now()
      await pool(ATTEMPTS, CONCURRENCY, async () => {
        const c = await kind.run(rxPort)
        held.push(c.socket)
        if (!(await within(c.ended, 3000))) notClosed++
      })
      const peak = fds(pid)
      // The attacker still holds every connection: rx_proxy must have let go by itself.
      const deadline = performance.now() + 5000
      let now = fds(pid)
      while (now > baseline + 2 && performance.now() < deadline) {
        await sleep(50)
        now = fds(pid)
      }
      process.stdout.write(
        `# ${ATTEMPTS} × ${kind.name} in ${Math.round(performance.now() - t0)} ms: rx_proxy fds baseline ${baseline}, right after ${peak}, settled ${now}; ${notClosed} not closed by rx_proxy within 3 s\n`
      )
      for (const s of held) s.destroy()
      assert.equal(notClosed, 0, 'rx_proxy closed every refused connection by itself')
      assert.ok(now <= baseline + 2, `rx_proxy holds ${now - baseline} descriptors more`)
    })
  }

  it('refusals name the peer and the likely cause, rate-limited', async () => {
    const garbage = await RawConnection.open(rxPort)
    garbage.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'))
    await garbage.ended
    await rx.waitFor(/subflow from 127\.0\.0\.1:\d+ refused: not a Tandem peer/, 1, 5000)
    const log = rx.log()
    assert.match(log, /subflow from 127\.0\.0\.1:\d+ refused: .*\(wrong key\?\)/)
    assert.doesNotMatch(log, /from \?/)
    const lines = (re: RegExp): number => log.split('\n').filter((l) => re.test(l)).length
    const version = lines(/refused: peer speaks protocol version \d+/)
    const proof = lines(/refused: the dialer failed to prove/)
    const idle = lines(/refused: no hello byte within/)
    process.stdout.write(
      `# log lines for ${ATTEMPTS} refusals each: version ${version}, proof ${proof}, idle ${idle}\n`
    )
    // The first ten, then one per power of two: 10 + log2(2000) at most.
    for (const n of [version, proof, idle]) assert.ok(n >= 1 && n <= 21, `${n} lines`)
  })

  it('a 5-byte probe gets no answer; a 40-byte hello of another version gets 40 bytes', async () => {
    const probe = await openHeld(rxPort)
    probe.socket.write(Buffer.from([0x54, 0x4e, 0x44, 0x4d, OLD_VERSION]))
    await sleep(300)
    probe.socket.end()
    assert.ok(await within(probe.ended, 3000))
    assert.equal(probe.received(), 0, 'nothing larger than the 5 bytes received, so nothing')
    const old = await openHeld(rxPort)
    const hello = handshakeMessage({
      version: OLD_VERSION,
      kind: HelloKind.HELLO,
      trunkId: randomBytes(16)
    })
    assert.equal(hello.length, 40)
    old.socket.write(hello)
    assert.ok(await within(old.ended, 3000))
    await sleep(50)
    assert.equal(old.received(), 40, 'the VERSION_MISMATCH reply is no larger than the hello')
    old.socket.destroy()
    const d = await RawConnection.open(rxPort)
    d.write(
      handshakeMessage({ version: OLD_VERSION, kind: HelloKind.HELLO, trunkId: randomBytes(16) })
    )
    const reply = await d.readHello(HelloKind.REPLY)
    assert.equal(reply?.status, HelloStatus.VERSION_MISMATCH)
    d.destroy()
  })

  it('one source holding idle connections does not lock out a dialer with the key', async () => {
    let stop = false
    const attackers = new Set<Socket>()
    // 160 idle connections from 127.0.0.1 (more than max_unauthenticated), each re-opened soon
    // after rx_proxy drops it.
    const holders = Array.from({ length: 160 }, async () => {
      while (!stop) {
        try {
          const c = await openHeld(rxPort)
          attackers.add(c.socket)
          await c.ended
          c.socket.destroy()
          attackers.delete(c.socket)
        } catch {
          // refused or reset: try again
        }
        await sleep(200)
      }
    })
    await sleep(500)
    const before = await queryStatus(rxControl)
    let ok = 0
    const results: string[] = []
    for (let i = 0; i < 5; i++) {
      try {
        const hs = await dialSubflow({
          host: '127.0.0.1',
          port: rxPort,
          localAddress: '127.0.0.2',
          index: i,
          pathId: 0,
          timeoutMs: 3000,
          local: {
            trunkId: randomBytes(16),
            maxFrameBodyBytes: 65536,
            flowWindowBytes: 65536,
            psk: PSK,
            encrypt: true
          }
        })
        ok++
        results.push('ok')
        hs.socket.destroy()
      } catch (err) {
        results.push(err instanceof Error ? err.message : String(err))
      }
      await sleep(100)
    }
    const afterStatus = await queryStatus(rxControl)
    stop = true
    for (const s of attackers) s.destroy()
    await Promise.all(holders)
    const refusedPerSource =
      (afterStatus.counters.handshakes_refused_per_source ?? 0) -
      (before.counters.handshakes_refused_per_source ?? 0)
    process.stdout.write(
      `# 160 idle connections held from 127.0.0.1: ${ok}/5 dials with the key from 127.0.0.2 succeeded (${results.join('; ')}); handshakes_refused_per_source +${refusedPerSource}, busy +${(afterStatus.counters.handshakes_refused_busy ?? 0) - (before.counters.handshakes_refused_busy ?? 0)}\n`
    )
    assert.equal(ok, 5)
    assert.ok(refusedPerSource > 0, 'the per-source cap fired')
  })
})
