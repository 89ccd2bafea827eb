/**
 * Hostile peers against real proxies (issue 6): raw bytes to a real rx_proxy, from random hellos
 * to a malicious dialer that holds the key, and a fake rx_proxy answering a real tx_proxy's
 * dialer, while an honest flow runs through an honest pair beside them. After each attack the
 * proxy still answers `status`, the attack shows in its counters, and rx_proxy's RSS stays
 * within base + max_buffered_bytes + slack. One `# attack ...` line per attack is printed.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { queryStatus, type ProxyStatus } from '../../src/app/control.js'
import { encodeFrame } from '../../src/common/wire/encode.js'
import {
  FRAME_HEADER_LENGTH,
  HelloKind,
  HelloStatus,
  ResetReason,
  type Frame
} from '../../src/common/wire/frame.js'
import { patternBytes, rng } from '../helpers/frames.js'
import {
  acceptAsFakeRx,
  fakeServer,
  HELLO_VARIANTS,
  HostileDialer,
  handshakeMessage,
  honestWriter,
  keyBytes,
  mib,
  pool,
  randomAttempt,
  RawConnection,
  RssSampler,
  sleep,
  type HonestResult
} from '../helpers/hostile.js'
import {
  freePort,
  spawnProxy,
  startPair,
  TEST_PSK,
  type ProxyPair,
  type ProxyProcess
} from '../helpers/proxies.js'
import { deferred, readAll, type ReadResult } from '../helpers/transfer.js'

const KiB = 1024
const MiB = 1024 * KiB
/** Global cap given to each proxy. */
const MAX_BUFFERED = 64 * MiB
/** Room for Node's heap, code, sockets and per-connection objects beyond the buffered bytes. */
const RSS_SLACK = 96 * MiB
const MAX_UNAUTHENTICATED = 64
const HANDSHAKE_TIMEOUT_MS = 1500
const MAX_FLOWS = 32
const FLOW_WINDOW = 256 * KiB
/** rx_proxy's max_frame_body_bytes (the default). */
const MAX_FRAME_BODY = 256 * KiB
const RANDOM_HELLOS = 10_000
/** Rate of the honest flow, bytes per second: well below loopback speed, so attacks get CPU. */
const HONEST_RATE = 20 * MiB
/** trunk.ping_timeout_ms (the default): a longer stall of rx_proxy kills honest subflows. */
const PING_TIMEOUT_MS = 2500
/** limits.subflow_queue_bytes (the default). */
const SUBFLOW_QUEUE_BYTES = 64 * KiB

const PSK = keyBytes(TEST_PSK)

/** The counters that moved between two snapshots (bytes of the honest flow left out). */
function moved(
  before: ProxyStatus,
  after: ProxyStatus,
  only?: readonly string[]
): Record<string, number> {
  const out: Record<string, number> = {}
  const keys = only ?? Object.keys(after.counters)
  for (const k of keys) {
    if (only === undefined && /^(bytes_|frames_sent|duplicate|credit_stalls|flow_bytes)/.test(k))
      continue
    const d = (after.counters[k] ?? 0) - (before.counters[k] ?? 0)
    if (d !== 0 || only !== undefined) out[k] = d
  }
  return out
}

function show(counters: Record<string, number>): string {
  return Object.entries(counters)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')
}

/** A server that accepts connections and discards what they send. */
async function startSink(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0
  const server = createServer({ allowHalfOpen: true }, (s) => {
    n++
    s.on('error', () => undefined)
    s.resume()
    s.on('end', () => s.end())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const a = server.address()
  return {
    server,
    port: typeof a === 'object' && a !== null ? a.port : 0,
    connections: () => n
  }
}

/** rx_proxy's limits for these tests (tx_proxy gets them too). */
const LIMITS = [
  '--set',
  `limits.max_buffered_bytes=${MAX_BUFFERED}`,
  '--set',
  `limits.max_unauthenticated=${MAX_UNAUTHENTICATED}`,
  // Every attacker here is 127.0.0.1: the per-source cap would hide the global one.
  '--set',
  `limits.max_unauthenticated_per_source=${MAX_UNAUTHENTICATED}`,
  // The slow-drip test opens its connections first and drips later: no shorter first-byte limit.
  '--set',
  `rx_proxy.first_byte_timeout_ms=${HANDSHAKE_TIMEOUT_MS}`,
  '--set',
  `rx_proxy.handshake_timeout_ms=${HANDSHAKE_TIMEOUT_MS}`,
  '--set',
  `limits.max_flows=${MAX_FLOWS}`,
  '--set',
  `limits.flow_window_bytes=${FLOW_WINDOW}`,
  '--set',
  `limits.max_flow_window_bytes=${4 * MiB}`
]

/**
 * A real tx_proxy/rx_proxy pair with an honest flow running through it, rx_proxy's RSS sampled,
 * and a malicious trunk id for the attacks that hold the key.
 */
class Arena {
  pair!: ProxyPair
  rxRss!: RssSampler
  baseRss = 0
  /** Longest wait for a `status` answer since the last `attack` began, in ms. */
  slowestStatusMs = 0
  private honestDest!: Server
  private honest!: { stop(): void; readonly done: Promise<HonestResult> }
  private readonly honestReceived = deferred<ReadResult>()
  private readonly evilTrunk = randomBytes(16)
  /** The malicious trunk's id as status shows it. */
  readonly evilTrunkHex = Buffer.from(this.evilTrunk).toString('hex')
  private nextIndex = 0

  async start(): Promise<void> {
    const destPort = await freePort()
    this.honestDest = createServer({ allowHalfOpen: true }, (s) => {
      void readAll(s).then((r) => {
        this.honestReceived.resolve(r)
        s.end()
      })
    })
    await new Promise<void>((r) => this.honestDest.listen(destPort, '127.0.0.1', r))
    this.pair = await startPair({ destinationPort: destPort, subflows: 4, extra: LIMITS })
    const client = connect({ port: this.pair.txPort, host: '127.0.0.1', allowHalfOpen: true })
    client.on('error', () => undefined)
    client.resume()
    this.honest = honestWriter(client, HONEST_RATE)
    await sleep(500)
    this.rxRss = new RssSampler(this.pair.rx)
    this.baseRss = this.rxRss.sample()
  }

  async stop(): Promise<void> {
    this.honest.stop()
    this.rxRss.stop()
    await this.pair.stop()
    this.honestDest.close()
  }

  /** rx_proxy's status; records how long it took to answer. */
  async status(): Promise<ProxyStatus> {
    const t0 = performance.now()
    const s = await queryStatus(this.pair.rxControl, 30_000)
    this.slowestStatusMs = Math.max(this.slowestStatusMs, performance.now() - t0)
    return s
  }

  /** Poll status until `pred` holds (or `timeoutMs`); returns the last snapshot. */
  async statusUntil(pred: (s: ProxyStatus) => boolean, timeoutMs = 5000): Promise<ProxyStatus> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const s = await this.status()
      if (pred(s) || performance.now() > deadline) return s
      await sleep(50)
    }
  }

  /** A new authenticated subflow of the malicious trunk. */
  async evil(): Promise<HostileDialer> {
    const d = await HostileDialer.dial(this.pair.rxPort, {
      psk: PSK,
      trunkId: this.evilTrunk,
      subflowIndex: this.nextIndex++
    })
    assert.ok(d.accepted, 'the malicious dialer holds the key and must get in')
    return d
  }

  /**
   * Run one attack: snapshot counters, reset the RSS maximum, run, then check that rx_proxy
   * answered status promptly throughout (within ping_timeout_ms) and that its RSS stayed within
   * base + max_buffered_bytes + slack; print one line. Returns the counters that moved.
   */
  async attack(
    name: string,
    run: () => Promise<string | undefined>,
    keys?: readonly string[]
  ): Promise<Record<string, number>> {
    const before = await this.status()
    const startRss = this.rxRss.sample()
    this.rxRss.reset()
    this.slowestStatusMs = 0
    const note = await run()
    const after = await this.status()
    const maxRss = this.rxRss.max
    const counters = moved(before, after, keys)
    const bound = this.baseRss + MAX_BUFFERED + RSS_SLACK
    process.stdout.write(
      `# attack ${name}: ${show(counters)}; rx RSS max ${mib(maxRss)} MiB (base ${mib(this.baseRss)}, ` +
        `at start ${mib(startRss)}, bound ${mib(bound)}), buffered ${mib(after.bufferedBytes)} MiB, ` +
        `slowest status ${Math.round(this.slowestStatusMs)} ms${note !== undefined ? `; ${note}` : ''}\n`
    )
    assert.ok(
      this.slowestStatusMs <= PING_TIMEOUT_MS,
      `rx_proxy took ${Math.round(this.slowestStatusMs)} ms to answer status`
    )
    assert.ok(maxRss <= bound, `rx_proxy RSS ${mib(maxRss)} MiB over the bound ${mib(bound)} MiB`)
    return counters
  }

  /** Bytes received and queued on the malicious trunk's subflows, from a status snapshot. */
  evilSubflows(s: ProxyStatus): { received: number; queued: number } {
    const subs = s.trunks.filter((t) => t.id === this.evilTrunkHex).flatMap((t) => t.subflows)
    return {
      received: subs.reduce((n, sf) => n + sf.bytesReceived, 0),
      queued: subs.reduce((n, sf) => Math.max(n, sf.queuedBytes), 0)
    }
  }

  /** `attack`, then the honest flow's check and line whatever the attack did; then its verdict. */
  async attackBeside(name: string, run: () => Promise<string | undefined>): Promise<void> {
    let failure: Error | undefined
    try {
      await this.attack(name, run)
    } catch (err) {
      failure = err instanceof Error ? err : new Error('the attack failed')
    }
    process.stdout.write(`# honest flow beside ${name}: ${await this.finishHonest()}\n`)
    if (failure !== undefined) throw failure
  }

  /** Stop the honest flow and check it: every byte, in order, ended cleanly. */
  async finishHonest(): Promise<string> {
    this.honest.stop()
    const sent = await this.honest.done
    const got = await this.honestReceived.promise
    const rate = sent.bytes / MiB / sent.seconds
    assert.equal(got.bytes, sent.bytes)
    assert.equal(got.sha256, sent.sentSha256)
    assert.equal(got.ending, 'end')
    await this.status()
    return `${mib(sent.bytes)} MiB in ${sent.seconds.toFixed(1)} s (${rate.toFixed(1)} MiB/s, target ${HONEST_RATE / MiB} MiB/s), sha256 equal, ending ${got.ending}`
  }
}

type Sink = Awaited<ReturnType<typeof startSink>>

describe('hostile peers against real proxies, an honest flow beside them', () => {
  let sink: Sink
  let arena: Arena
  const status = (): Promise<ProxyStatus> => arena.status()
  const evil = (): Promise<HostileDialer> => arena.evil()
  const attack = (
    name: string,
    run: () => Promise<string | undefined>,
    keys?: readonly string[]
  ): Promise<Record<string, number>> => arena.attack(name, run, keys)
  const statusUntil = (
    pred: (s: ProxyStatus) => boolean,
    timeoutMs?: number
  ): Promise<ProxyStatus> => arena.statusUntil(pred, timeoutMs)
  let pair: ProxyPair

  before(async () => {
    sink = await startSink()
    arena = new Arena()
    await arena.start()
    pair = arena.pair
  })

  after(async () => {
    await arena.stop()
    sink.server.close()
  })

  it(`${RANDOM_HELLOS} random hellos over many connections: none accepted, every one counted`, async () => {
    const variants: Record<string, number> = {}
    let challenges = 0
    let challengedWanted = 0
    const counters = await attack('random-hellos', async () => {
      const before = await status()
      const random = rng(0x6005)
      await pool(RANDOM_HELLOS, 48, async (i) => {
        const variant = HELLO_VARIANTS[i % HELLO_VARIANTS.length]!
        variants[variant] = (variants[variant] ?? 0) + 1
        const r = await randomAttempt(pair.rxPort, variant, random)
        if (variant === 'random-auth') challengedWanted++
        if (r.challenged) challenges++
      })
      const failures = (s: ProxyStatus): number =>
        Object.entries(s.counters)
          .filter(([k]) => k.startsWith('handshake_failures_') || k === 'handshakes_refused_busy')
          .reduce((n, [k, v]) => n + v - (before.counters[k] ?? 0), 0)
      await statusUntil((s) => failures(s) >= RANDOM_HELLOS)
      return `${JSON.stringify(variants)}; ${challenges} CHALLENGEs for ${challengedWanted} well-formed HELLOs`
    })
    const refused = Object.entries(counters)
      .filter(([k]) => k.startsWith('handshake_failures_') || k === 'handshakes_refused_busy')
      .reduce((n, [, v]) => n + v, 0)
    assert.equal(counters.subflows_accepted, RANDOM_HELLOS)
    assert.equal(refused, RANDOM_HELLOS, 'every attempt ends in exactly one failure counter')
    assert.equal(counters.subflows_joined ?? 0, 0, 'no random hello may get in')
    assert.equal(counters.trunks_created ?? 0, 0)
    assert.equal(challenges, challengedWanted, 'every well-formed HELLO gets a CHALLENGE')
    assert.ok((counters.handshake_failures_PEP_ERR_BAD_MAGIC ?? 0) > 0)
    assert.ok((counters.handshake_failures_PEP_ERR_VERSION_MISMATCH ?? 0) > 0)
    assert.ok((counters.handshake_failures_PEP_ERR_MALFORMED_FRAME ?? 0) > 0)
    assert.ok((counters.auth_failures ?? 0) > 0)
  })

  it('a recorded HELLO+AUTH replayed on a fresh connection fails (new server nonce)', async () => {
    const trunkId = randomBytes(16)
    const counters = await attack(
      'replayed-handshake',
      async () => {
        const genuine = await HostileDialer.dial(pair.rxPort, { psk: PSK, trunkId })
        assert.ok(genuine.accepted && genuine.outcome.serverProved)
        const recorded = genuine.outcome
        genuine.close()
        const replay = await HostileDialer.dial(
          pair.rxPort,
          { psk: PSK, trunkId },
          { helloBytes: recorded.helloBytes, authBytes: recorded.authBytes! }
        )
        const oldNonce = Buffer.from(recorded.challenge!.auth.subarray(0, 32)).toString('hex')
        const newNonce = Buffer.from(replay.outcome.challenge!.auth.subarray(0, 32)).toString('hex')
        assert.notEqual(newNonce, oldNonce, 'the server nonce is fresh')
        assert.equal(replay.outcome.reply?.kind, HelloKind.REPLY)
        assert.equal(replay.outcome.reply?.status, HelloStatus.AUTH_FAILED)
        assert.ok(await replay.closedWithin(2000))
        return 'replay refused with AUTH_FAILED'
      },
      [
        'auth_failures',
        'handshake_failures_PEP_ERR_AUTH_FAILED',
        'subflows_joined',
        'trunks_created'
      ]
    )
    assert.equal(counters.auth_failures, 1)
    assert.equal(counters.handshake_failures_PEP_ERR_AUTH_FAILED, 1)
    assert.equal(counters.subflows_joined, 1, 'only the genuine handshake joined')
  })

  it('a wrong key: the dialer cannot prove itself, nor can the acceptor to it', async () => {
    const counters = await attack(
      'wrong-key',
      async () => {
        const d = await HostileDialer.dial(pair.rxPort, {
          psk: keyBytes('77'.repeat(32)),
          trunkId: randomBytes(16)
        })
        assert.equal(d.outcome.serverProved, false)
        assert.equal(d.outcome.reply?.status, HelloStatus.AUTH_FAILED)
        assert.ok(await d.closedWithin(2000))
        return undefined
      },
      ['auth_failures', 'handshake_failures_PEP_ERR_AUTH_FAILED', 'subflows_joined']
    )
    assert.equal(counters.auth_failures, 1)
    assert.equal(counters.subflows_joined, 0)
  })

  it(`slow-drip handshakes: past max_unauthenticated closed at once, the rest at handshake_timeout_ms`, async () => {
    const extra = 16
    const total = MAX_UNAUTHENTICATED + extra
    let early = 0
    let atTimeout = 0
    const lifetimes: number[] = []
    const counters = await attack(
      'slow-drip',
      async () => {
        const hello = handshakeMessage({
          kind: HelloKind.HELLO,
          trunkId: randomBytes(16),
          auth: new Uint8Array(64)
        })
        const conns: RawConnection[] = []
        for (let i = 0; i < total; i++) conns.push(await RawConnection.open(pair.rxPort))
        // One byte of a valid HELLO every 200 ms on every connection: never complete in time.
        conns.forEach((c) => c.write(hello.subarray(0, 1)))
        let sent = 1
        const drip = setInterval(() => {
          for (const c of conns) c.write(hello.subarray(sent, sent + 1))
          sent++
        }, 200)
        await Promise.race([
          Promise.all(conns.map((c) => c.ended)),
          sleep(HANDSHAKE_TIMEOUT_MS + 3000)
        ])
        clearInterval(drip)
        for (const c of conns) {
          const life = (c.isClosed ? c.closedAt : performance.now()) - c.openedAt
          lifetimes.push(life)
          if (life < 400) early++
          else if (life >= HANDSHAKE_TIMEOUT_MS - 50 && life <= HANDSHAKE_TIMEOUT_MS + 1000)
            atTimeout++
          c.destroy()
        }
        lifetimes.sort((a, b) => a - b)
        return `${early} closed at once, ${atTimeout} at the timeout (lifetimes ${Math.round(lifetimes[0]!)}..${Math.round(lifetimes[lifetimes.length - 1]!)} ms), ${sent} bytes dripped each`
      },
      ['handshakes_refused_busy', 'handshake_failures_PEP_ERR_TIMEOUT', 'subflows_accepted']
    )
    assert.equal(counters.subflows_accepted, total)
    assert.equal(counters.handshakes_refused_busy, extra)
    assert.equal(counters.handshake_failures_PEP_ERR_TIMEOUT, MAX_UNAUTHENTICATED)
    assert.equal(early, extra, 'the extras are closed at once')
    assert.equal(atTimeout, MAX_UNAUTHENTICATED, 'the others are dropped at handshake_timeout_ms')
  })

  it('giant frame lengths after an authenticated handshake close the subflow', async () => {
    const counters = await attack(
      'giant-frame-length',
      async () => {
        for (const length of [0xffffffff, MAX_FRAME_BODY + 1]) {
          const d = await evil()
          const header = new Uint8Array(FRAME_HEADER_LENGTH)
          const v = new DataView(header.buffer)
          v.setUint8(0, 0x02) // DATA
          v.setUint32(4, 1)
          v.setUint32(8, length)
          d.sendRecord(header)
          assert.ok(
            await d.closedWithin(3000),
            `a frame body of ${length} bytes closes the subflow`
          )
        }
        return undefined
      },
      ['errors_PEP_ERR_FRAME_TOO_LARGE', 'subflows_lost', 'subflows_joined']
    )
    assert.equal(counters.errors_PEP_ERR_FRAME_TOO_LARGE, 2)
    assert.equal(counters.subflows_lost, 2)
  })

  it('giant record lengths after an authenticated handshake close the subflow', async () => {
    const counters = await attack(
      'giant-record-length',
      async () => {
        for (const length of [0xffffffff, MAX_FRAME_BODY + FRAME_HEADER_LENGTH + 1]) {
          const d = await evil()
          const head = Buffer.alloc(4 + 64)
          head.writeUInt32BE(length, 0)
          d.conn.write(head)
          assert.ok(await d.closedWithin(3000), `a record of ${length} bytes closes the subflow`)
        }
        return undefined
      },
      ['errors_PEP_ERR_FRAME_TOO_LARGE', 'subflows_lost']
    )
    assert.equal(counters.errors_PEP_ERR_FRAME_TOO_LARGE, 2)
    assert.equal(counters.subflows_lost, 2)
  })

  it('frames for unknown flow ids are dropped and counted; the subflow stays up', async () => {
    const n = 1000
    const counters = await attack(
      'unknown-flow-ids',
      async () => {
        const d = await evil()
        const random = rng(77)
        const frames: Frame[] = []
        for (let i = 0; i < n; i++) {
          const flowId = 1 + Math.floor(random() * 0xfffffffe)
          const kind = i % 3
          frames.push(
            kind === 0
              ? { type: 'data', flowId, offset: i, fin: false, payload: patternBytes(100, i) }
              : kind === 1
                ? { type: 'ack', flowId, received: i, limit: i * 2, finReceived: false, epoch: 0 }
                : { type: 'reset', flowId, reason: ResetReason.APP_RESET, message: 'x' }
          )
        }
        await d.sendFrames(frames)
        await d.sendFrames([{ type: 'ping', flowId: 0, token: 424242 }])
        assert.ok(await d.waitFrame((f) => f.type === 'pong' && f.token === 424242))
        assert.equal(d.conn.isClosed, false)
        d.close()
        return undefined
      },
      ['frames_unknown_flow', 'subflows_lost', 'resets_sent']
    )
    assert.equal(counters.frames_unknown_flow, n)
    assert.equal(counters.resets_sent, 0)
  })

  let creditFlowId = 0x0bad_0000
  const creditAttack = async (): Promise<Record<string, number>> =>
    await attack('data-beyond-credit', async () => {
      const d = await evil()
      const flowId = ++creditFlowId
      await d.sendFrames([
        {
          type: 'open',
          flowId,
          dst: { family: 4, address: '127.0.0.1', port: sink.port },
          src: undefined
        },
        { type: 'data', flowId, offset: 0, fin: false, payload: patternBytes(1000, 1) },
        { type: 'data', flowId, offset: FLOW_WINDOW, fin: false, payload: patternBytes(1, 2) }
      ])
      assert.ok(
        await d.waitFrame(
          (f) =>
            f.type === 'reset' && f.flowId === flowId && f.reason === ResetReason.CREDIT_EXCEEDED
        ),
        'rx_proxy resets the flow with CREDIT_EXCEEDED'
      )
      // The flow is gone, the subflow is not.
      await d.sendFrames([
        { type: 'data', flowId, offset: 1000, fin: false, payload: patternBytes(10, 3) },
        { type: 'ping', flowId: 0, token: 7 }
      ])
      assert.ok(await d.waitFrame((f) => f.type === 'pong' && f.token === 7))
      d.close()
      return 'RESET CREDIT_EXCEEDED received, subflow still up'
    })

  it('RELEASE: an honest one is answered by an ACK of its epoch; one below the bytes received resets that flow only', async () => {
    const counters = await attack(
      'release',
      async () => {
        const d = await evil()
        const honest = ++creditFlowId
        const lying = ++creditFlowId
        const open = (flowId: number): Frame => ({
          type: 'open',
          flowId,
          dst: { family: 4, address: '127.0.0.1', port: sink.port },
          src: undefined
        })
        await d.sendFrames([
          open(honest),
          open(lying),
          { type: 'data', flowId: honest, offset: 0, fin: false, payload: patternBytes(1000, 1) },
          { type: 'data', flowId: lying, offset: 0, fin: false, payload: patternBytes(1000, 2) },
          { type: 'release', flowId: honest, epoch: 1, limit: 4096 },
          { type: 'release', flowId: lying, epoch: 1, limit: 999 }
        ])
        assert.ok(
          await d.waitFrame(
            (f) =>
              f.type === 'ack' &&
              f.flowId === honest &&
              f.epoch === 1 &&
              f.limit === 1000 + FLOW_WINDOW
          ),
          'the honest RELEASE is answered by an ACK of epoch 1 at its limit'
        )
        assert.ok(
          await d.waitFrame(
            (f) =>
              f.type === 'reset' && f.flowId === lying && f.reason === ResetReason.PROTOCOL_ERROR
          ),
          'the lying RELEASE resets its flow'
        )
        // The honest flow ends here: later attacks count the trunk's flows.
        await d.sendFrames([
          { type: 'reset', flowId: honest, reason: ResetReason.APP_RESET, message: '' },
          { type: 'ping', flowId: 0, token: 77 }
        ])
        assert.ok(await d.waitFrame((f) => f.type === 'pong' && f.token === 77), 'subflow still up')
        d.close()
        return 'ACK of epoch 1 for the honest flow, RESET for the lying one, subflow still up'
      },
      ['releases_received', 'errors_PEP_ERR_FLOW_STATE', 'flows_reset', 'resets_received']
    )
    assert.equal(counters.releases_received, 2)
    assert.equal(counters.errors_PEP_ERR_FLOW_STATE, 1)
    assert.equal(counters.flows_reset, 2)
  })

  it("a PONG's send rate reaches the trunk's rate state; the proxy's own PONGs carry one", async () => {
    await attack('pong-send-rate', async () => {
      const d = await evil()
      const claimed = 12_345_678
      await d.sendFrames([
        { type: 'pong', flowId: 0, token: Date.now() * 1000, sendRate: claimed },
        { type: 'ping', flowId: 0, token: 99 }
      ])
      assert.ok(await d.waitFrame((f) => f.type === 'pong' && f.token === 99))
      const pong = d.frames.find((f) => f.type === 'pong' && f.token === 99)
      assert.ok(pong?.type === 'pong')
      assert.ok(Number.isSafeInteger(pong.sendRate) && pong.sendRate >= 0, `${pong.sendRate}`)
      const s = await statusUntil((st) => st.trunks.some((t) => t.rate?.peerSendBps === claimed))
      assert.ok(s.trunks.some((t) => t.rate?.peerSendBps === claimed))
      d.close()
      return `rx_proxy noted ${claimed} B/s and answered with ${pong.sendRate} B/s`
    })
  })

  it('data beyond credit resets only that flow, counted by its cause', async () => {
    const counters = await creditAttack()
    assert.equal(counters.flows_opened, 1)
    assert.equal(counters.resets_sent, 1)
    assert.equal(counters.flows_reset, 1)
    assert.equal(counters.errors_PEP_ERR_CREDIT_EXCEEDED, 1)
    assert.equal(counters.frames_unknown_flow, 1)
    assert.equal(counters.subflows_lost, 1, 'only our own close')
  })

  it(`a flood of OPEN frames: max_flows (${MAX_FLOWS}) fires`, async () => {
    const opens = 200
    let refusedSeen = 0
    const counters = await attack(
      'open-flood',
      async () => {
        const d = await evil()
        const ids = Array.from({ length: opens }, (_, i) => 0x0e0e_0000 + i)
        await d.sendFrames(
          ids.map((flowId) => ({
            type: 'open' as const,
            flowId,
            dst: { family: 4 as const, address: '127.0.0.1', port: sink.port },
            src: undefined
          }))
        )
        const isLimit = (f: Frame): boolean =>
          f.type === 'reset' && f.reason === ResetReason.FLOW_LIMIT
        await d.waitFor(() => d.frames.filter(isLimit).length >= opens - MAX_FLOWS, 5000)
        refusedSeen = d.frames.filter(isLimit).length
        await d.sendFrames(
          ids.map((flowId) => ({
            type: 'reset' as const,
            flowId,
            reason: ResetReason.APP_RESET,
            message: ''
          }))
        )
        await statusUntil((s) => s.trunks.every((t) => t.flows <= 1))
        d.close()
        return `${refusedSeen} RESET FLOW_LIMIT received, sink saw ${sink.connections()} connections so far`
      },
      ['flows_opened', 'flows_refused_limit', 'flows_refused_memory', 'frames_unknown_flow']
    )
    assert.equal(counters.flows_opened, MAX_FLOWS)
    assert.equal(counters.flows_refused_limit, opens - MAX_FLOWS)
    assert.equal(counters.flows_refused_memory, 0)
    assert.equal(refusedSeen, opens - MAX_FLOWS)
  })

  it('a flood of PING frames (read): each answered or counted as dropped, the subflow stays', async () => {
    const pings = 20_000
    let pongs = 0
    let closed = true
    const counters = await attack(
      'ping-flood',
      async () => {
        const before = await status()
        const dropped = (s: ProxyStatus): number =>
          (s.counters.pongs_dropped ?? 0) - (before.counters.pongs_dropped ?? 0)
        const d = await evil()
        for (let i = 0; i < pings; i += 1000) {
          await d.sendFrames(
            Array.from({ length: 1000 }, (_, j) => ({
              type: 'ping' as const,
              flowId: 0 as const,
              token: i + j
            }))
          )
        }
        // A reader slower than the flood sees some PONGs dropped (past subflow_queue_bytes).
        const deadline = performance.now() + 20_000
        while (performance.now() < deadline) {
          await d.waitFor(() => d.count('pong') >= pings, 500)
          if (d.count('pong') + dropped(await status()) >= pings) break
        }
        pongs = d.count('pong')
        closed = d.conn.isClosed
        d.close()
        return `${pings} PINGs, ${pongs} PONGs back`
      },
      ['pongs_dropped', 'subflows_lost', 'frames_unknown_flow']
    )
    assert.equal(pongs + counters.pongs_dropped!, pings, 'every PING answered or counted')
    assert.equal(closed, false, 'the subflow stays up')
    assert.equal(counters.subflows_lost, 1, 'only our own close')
  })

  it('a flipped byte in an encrypted record: PEP_ERR_DECRYPT, subflow closed', async () => {
    const counters = await attack(
      'flipped-record-byte',
      async () => {
        const d = await evil()
        d.sendTamperedRecord(encodeFrame({ type: 'ping', flowId: 0, token: 1 }), 9)
        assert.ok(await d.closedWithin(3000))
        return undefined
      },
      ['errors_PEP_ERR_DECRYPT', 'subflows_lost']
    )
    assert.equal(counters.errors_PEP_ERR_DECRYPT, 1)
    assert.equal(counters.subflows_lost, 1)
  })

  it('a flood of PING frames from a peer that never reads: PONGs dropped past four times the queue limit', async () => {
    const pings = 200_000
    let queued = 0
    const counters = await attack(
      'ping-flood-not-reading',
      async () => {
        const d = await evil()
        d.conn.socket.pause()
        // 1000 PINGs per record (the opener hands every frame of a record to the decoder), all
        // written at once, so that the answers would overflow the kernel's buffers at once.
        for (let i = 0; i < pings; i += 1000) {
          const frames = Array.from({ length: 1000 }, (_, j) =>
            encodeFrame({ type: 'ping', flowId: 0, token: i + j })
          )
          d.sendRecord(Buffer.concat(frames))
        }
        await d.conn.drained()
        const s = await statusUntil((st) => arena.evilSubflows(st).received >= pings * 20, 20_000)
        queued = arena.evilSubflows(s).queued
        d.close()
        return `${pings} PINGs, none read back: ${(queued / KiB).toFixed(1)} KiB queued on the subflow`
      },
      ['pongs_dropped', 'subflows_lost', 'errors_PEP_ERR_TIMEOUT']
    )
    assert.ok((counters.pongs_dropped ?? 0) > 0)
    assert.ok(queued <= 5 * SUBFLOW_QUEUE_BYTES, `${queued} bytes queued`)
    assert.equal(counters.errors_PEP_ERR_TIMEOUT, 0, 'no honest subflow lost to a stall')
  })

  describe('a hostile "rx_proxy" answering a real tx_proxy', () => {
    /** What the fake rx_proxy does with its n-th connection. */
    const scenarios = [
      'garbage',
      'wrong-proof',
      'wrong-size-challenge',
      'giant-hello-auth-length',
      'refusal',
      'other-version',
      'giant-record-length',
      'giant-frame-length',
      'flipped-record'
    ] as const
    let tx: ProxyProcess
    let dir = ''
    let txControl: string
    let fake: Awaited<ReturnType<typeof fakeServer>>
    const seen: string[] = []

    before(async () => {
      fake = await fakeServer(async (conn, i) => {
        const scenario = scenarios[i] ?? 'honest'
        seen.push(scenario)
        const random = rng(1000 + i)
        const noise = (n: number): Uint8Array =>
          Uint8Array.from({ length: n }, () => Math.floor(random() * 256))
        const challenge = (auth: Uint8Array): Uint8Array =>
          handshakeMessage({ kind: HelloKind.CHALLENGE, trunkId: new Uint8Array(16), auth })
        switch (scenario) {
          case 'garbage': {
            const g = noise(64)
            g[0] = 0x00
            conn.write(g)
            conn.end()
            return
          }
          case 'wrong-proof':
            await conn.readHello(HelloKind.HELLO)
            conn.write(challenge(noise(64)))
            return
          case 'wrong-size-challenge':
            await conn.readHello(HelloKind.HELLO)
            conn.write(challenge(noise(1024)))
            return
          case 'giant-hello-auth-length': {
            await conn.readHello(HelloKind.HELLO)
            const m = challenge(new Uint8Array(0))
            m[26] = 0xff
            m[27] = 0xff
            conn.write(m)
            conn.write(noise(4096))
            return
          }
          case 'refusal':
            await conn.readHello(HelloKind.HELLO)
            conn.write(
              handshakeMessage({
                kind: HelloKind.REPLY,
                trunkId: new Uint8Array(16),
                status: HelloStatus.LIMIT
              })
            )
            conn.end()
            return
          case 'other-version': {
            await conn.readHello(HelloKind.HELLO)
            const m = challenge(noise(64))
            m[4] = 9
            conn.write(m)
            return
          }
          case 'giant-record-length':
          case 'giant-frame-length':
          case 'flipped-record':
          case 'honest': {
            const ok = await acceptAsFakeRx(conn, PSK)
            if (ok === undefined) return
            if (scenario === 'giant-record-length') {
              const head = Buffer.alloc(4 + 16)
              head.writeUInt32BE(0xffffffff, 0)
              conn.write(head)
            } else if (scenario === 'giant-frame-length') {
              const header = Buffer.alloc(FRAME_HEADER_LENGTH)
              header[0] = 0x02
              header.writeUInt32BE(1, 4)
              header.writeUInt32BE(0xfffffff0, 8)
              for (const b of ok.sealer.seal([header])) conn.write(b)
            } else if (scenario === 'flipped-record') {
              const sealed = Buffer.concat(
                ok.sealer.seal([encodeFrame({ type: 'ping', flowId: 0, token: 5 })])
              )
              sealed[10] = sealed[10]! ^ 0x80
              conn.write(sealed)
            }
            // 'honest' keeps the subflow up: tx_proxy settles.
            return
          }
        }
      })
      dir = mkdtempSync(join(tmpdir(), 'tandem-hostile-'))
      txControl = join(dir, 'tx.sock')
      tx = spawnProxy('tx-proxy', [
        '-c',
        '/dev/null',
        '--set',
        `security.psk=${TEST_PSK}`,
        '--set',
        `tx_proxy.control_socket=${txControl}`,
        '--set',
        'tx_proxy.redial_min_ms=20',
        '--set',
        'tx_proxy.redial_max_ms=60',
        '--set',
        'tx_proxy.dial_timeout_ms=1000',
        '--set',
        `limits.max_buffered_bytes=${MAX_BUFFERED}`,
        '--local-ip',
        '127.0.0.1',
        '--local-port',
        String(await freePort()),
        '--rx-proxy-ip',
        '127.0.0.1',
        '--rx-proxy-port',
        String(fake.port),
        '--destination',
        `127.0.0.1:${sink.port}`,
        '--subflows',
        '1'
      ])
      await tx.waitFor(/listening on/)
    })

    after(async () => {
      await tx.stop()
      fake.server.close()
      rmSync(dir, { recursive: true, force: true })
    })

    it('garbage, wrong proofs, giant hellos and records: tx_proxy refuses each, counts, stays up', async () => {
      const txBase = tx.rssBytes()
      const txRss = new RssSampler(tx)
      const s = await (async (): Promise<ProxyStatus> => {
        const deadline = performance.now() + 20_000
        for (;;) {
          const st = await queryStatus(txControl)
          // status lists every configured slot; the one that counts is up.
          const up = st.trunks[0]?.subflows.filter((x) => x.state === 'up').length ?? 0
          if (seen.includes('honest') && up === 1) return st
          if (performance.now() > deadline) return st
          await sleep(100)
        }
      })()
      txRss.stop()
      // tx_proxy dials at once: its counters from start are those of this attack.
      const counters = moved({ ...s, counters: {} }, s, [
        'dial_failures',
        'auth_failures',
        'subflows_joined',
        'subflows_lost',
        'errors_PEP_ERR_FRAME_TOO_LARGE',
        'errors_PEP_ERR_DECRYPT',
        'handshake_failures_PEP_ERR_BAD_MAGIC',
        'handshake_failures_PEP_ERR_AUTH_FAILED',
        'handshake_failures_PEP_ERR_MALFORMED_FRAME',
        'handshake_failures_PEP_ERR_HELLO_REJECTED',
        'handshake_failures_PEP_ERR_VERSION_MISMATCH'
      ])
      const bound = txBase + MAX_BUFFERED + RSS_SLACK
      process.stdout.write(
        `# attack hostile-rx-vs-tx-dialer (${seen.join(',')}): ${show(counters)}; tx RSS max ` +
          `${mib(txRss.max)} MiB (base ${mib(txBase)}, bound ${mib(bound)})\n`
      )
      assert.ok(seen.includes('honest'), `the fake rx saw only ${seen.join(',')}`)
      assert.equal(counters.dial_failures, 6)
      assert.equal(counters.auth_failures, 2)
      assert.equal(counters.subflows_joined, 4)
      assert.equal(counters.subflows_lost, 3)
      assert.equal(counters.errors_PEP_ERR_FRAME_TOO_LARGE, 2)
      assert.equal(counters.errors_PEP_ERR_DECRYPT, 1)
      // One counter per refused handshake, by its code.
      assert.equal(counters.handshake_failures_PEP_ERR_BAD_MAGIC, 1)
      assert.equal(counters.handshake_failures_PEP_ERR_AUTH_FAILED, 2)
      assert.equal(counters.handshake_failures_PEP_ERR_MALFORMED_FRAME, 1)
      assert.equal(counters.handshake_failures_PEP_ERR_HELLO_REJECTED, 1)
      assert.equal(counters.handshake_failures_PEP_ERR_VERSION_MISMATCH, 1)
      assert.ok(txRss.max <= bound)
    })
  })

  it('the honest flow beside the attacks kept every byte and its pace', async () => {
    process.stdout.write(`# honest flow beside the attacks: ${await arena.finishHonest()}\n`)
  })
})

/**
 * The attacks below exceed the bounds today. Each runs against a fresh pair (with its own honest
 * flow), so that what one leaves behind in RSS does not hide or blame another.
 */
describe('hostile peers that exceed the memory bounds (each on a fresh pair)', () => {
  let sink: Sink
  before(async () => {
    sink = await startSink()
  })
  after(() => {
    sink.server.close()
  })

  it('a flood of OPEN frames past max_flows from a peer that never reads stays within the bounds', async () => {
    const arena = new Arena()
    await arena.start()
    try {
      const opens = 100_000
      await arena.attackBeside('open-flood-not-reading', async () => {
        const d = await arena.evil()
        d.conn.socket.pause()
        // 10,000 OPENs per record, all written at once; past the first max_flows each is refused.
        for (let i = 0; i < opens; i += 10_000) {
          const frames = Array.from({ length: 10_000 }, (_, j) =>
            encodeFrame({
              type: 'open',
              flowId: 0x100_0000 + i + j,
              dst: { family: 4, address: '127.0.0.1', port: sink.port },
              src: undefined
            })
          )
          d.sendRecord(Buffer.concat(frames))
        }
        await d.conn.drained()
        const s = await arena.statusUntil(
          (st) => arena.evilSubflows(st).received >= opens * 24,
          20_000
        )
        const queued = arena.evilSubflows(s).queued
        d.close()
        return `${opens} OPENs, none read back: ${mib(queued)} MiB of RESETs queued on the subflow`
      })
    } finally {
      await arena.stop()
    }
  })

  it('DATA frames that are mostly duplicates retain no more memory than the credit', async () => {
    const arena = new Arena()
    await arena.start()
    try {
      const L = 128 * KiB
      const frames = 3000
      await arena.attackBeside('sliding-duplicate-data', async () => {
        const d = await arena.evil()
        const flowId = 0x51d3
        await d.sendFrames([
          {
            type: 'open',
            flowId,
            dst: { family: 4, address: '127.0.0.1', port: sink.port },
            src: undefined
          }
        ])
        // Byte 0 never comes, so nothing is delivered; frame i covers [1 + i, 1 + i + L): one
        // new byte each, the rest already held. Within credit: 1 + frames + L < FLOW_WINDOW.
        const payload = patternBytes(L, 9)
        for (let i = 0; i < frames; i++) {
          d.sendRecord(encodeFrame({ type: 'data', flowId, offset: 1 + i, fin: false, payload }))
          if (i % 16 === 15) await d.conn.drained()
        }
        const s = await arena.statusUntil(
          (st) => arena.evilSubflows(st).received >= frames * (L + 20),
          15_000
        )
        const held = s.totals.reorderBytes
        await d.sendFrames([{ type: 'reset', flowId, reason: ResetReason.APP_RESET, message: '' }])
        d.close()
        return `${frames} frames of ${L / KiB} KiB: ${(held / KiB).toFixed(1)} KiB accounted in reorder buffers`
      })
    } finally {
      await arena.stop()
    }
  })
})
