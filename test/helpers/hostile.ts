/**
 * A hostile peer for integration tests: raw TCP connections that speak exactly the bytes a test
 * chooses, a malicious dialer that authenticates with the real key (src/common/auth.ts) and then
 * sends whatever frames or records it likes, a fake rx_proxy for tx_proxy's dialer, generators of
 * random hellos, an honest throttled stream to run beside the attacks, and an RSS sampler.
 */
import { createHash, randomBytes } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'

import {
  HandshakeMac,
  messageAuthentic,
  signMessage,
  trafficKeys,
  trunkAuthKey
} from '../../src/common/auth.js'
import { FrameDecoder, HelloDecoder } from '../../src/common/wire/decode.js'
import { encodeFrame, encodeHello } from '../../src/common/wire/encode.js'
import {
  AuthMethod,
  FRAME_HEADER_LENGTH,
  HELLO_AUTH_LENGTH,
  HELLO_FLAG_ENCRYPT,
  HelloKind,
  HelloStatus,
  MAX_MAX_FRAME_BODY,
  NONCE_LENGTH,
  PROOF_LENGTH,
  PROTOCOL_VERSION,
  REPLY_MAC_LENGTH,
  type Frame,
  type Hello
} from '../../src/common/wire/frame.js'
import { RecordOpener, RecordSealer } from '../../src/common/wire/record.js'
import type { ProxyProcess } from './proxies.js'

const MiB = 1024 * 1024

/** Bytes of a hex key. */
export function keyBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** A handshake message with defaults for every field the test does not set. */
export function handshakeMessage(
  fields: Partial<Hello> & { readonly kind: number; readonly trunkId: Uint8Array }
): Uint8Array {
  return encodeHello({
    version: PROTOCOL_VERSION,
    authMethod: AuthMethod.PSK_HMAC_SHA256,
    status: HelloStatus.OK,
    subflowIndex: 0,
    maxFrameBody: 64,
    flowWindow: 0,
    pathId: 0,
    flags: 0,
    auth: new Uint8Array(0),
    ...fields
  })
}

/** What ended a connection: 'end' (FIN), 'close', or an error code such as ECONNRESET. */
export type Ending = string

/**
 * One raw TCP connection: bytes in are queued until a reader takes them, bytes out are whatever
 * the test writes. Never throws on socket errors; `ended` says how it finished.
 */
export class RawConnection {
  readonly socket: Socket
  /** Resolves once the socket is closed, with how it ended. */
  readonly ended: Promise<Ending>
  /** performance.now() when the connection was established and when it closed. */
  readonly openedAt: number
  closedAt = 0
  private pending: Uint8Array[] = []
  private wake: (() => void) | undefined
  private endingValue: Ending | undefined
  private listener: ((chunk: Uint8Array) => void) | undefined

  private constructor(socket: Socket) {
    this.socket = socket
    this.openedAt = performance.now()
    let resolveEnded: (e: Ending) => void = () => undefined
    this.ended = new Promise((r) => {
      resolveEnded = r
    })
    const finish = (how: Ending): void => {
      if (this.endingValue === undefined) this.endingValue = how
      this.closedAt = performance.now()
      this.wake?.()
      resolveEnded(this.endingValue)
    }
    socket.on('data', (chunk: Buffer) => {
      if (this.listener !== undefined) this.listener(chunk)
      else this.pending.push(chunk)
      this.wake?.()
    })
    socket.on('end', () => {
      this.endingValue ??= 'end'
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.endingValue ??= err.code ?? 'error'
    })
    socket.on('close', () => {
      finish('close')
    })
  }

  /** Connect to 127.0.0.1:`port`; rejects when the connect fails. */
  static open(port: number, timeoutMs = 5000): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, noDelay: true })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`connect to ${port} timed out`))
      }, timeoutMs)
      socket.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        resolve(new RawConnection(socket))
      })
    })
  }

  /** Wrap a socket a server accepted. */
  static accepted(socket: Socket): RawConnection {
    socket.setNoDelay(true)
    return new RawConnection(socket)
  }

  /** True once closed. */
  get isClosed(): boolean {
    return this.closedAt !== 0
  }

  /** Write bytes unless closed; returns false when closed or when the socket queues. */
  write(bytes: Uint8Array): boolean {
    if (this.socket.destroyed) return false
    return this.socket.write(bytes)
  }

  /** Resolves once the socket's queue drained (or it closed). */
  drained(): Promise<void> {
    if (this.socket.destroyed || this.socket.writableLength === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done)
        this.socket.off('close', done)
        resolve()
      }
      this.socket.once('drain', done)
      this.socket.once('close', done)
    })
  }

  /** Half-close (FIN) and let the peer finish. */
  end(): void {
    this.socket.end()
  }

  /** Abort at once. */
  destroy(): void {
    this.socket.destroy()
  }

  /**
   * Read one handshake message of `kind` (a refusal REPLY is accepted too). Resolves undefined
   * when the peer closes or time runs out first; rejects with the decoder's ProtocolError.
   */
  async readHello(kind: number, timeoutMs = 3000): Promise<Hello | undefined> {
    return (await this.readMessage(kind, timeoutMs))?.hello
  }

  /** `readHello`, with the message's exact bytes (for the transcript). */
  async readMessage(
    kind: number,
    timeoutMs = 3000
  ): Promise<{ hello: Hello; bytes: Uint8Array } | undefined> {
    const decoder = new HelloDecoder(kind)
    const deadline = performance.now() + timeoutMs
    for (;;) {
      while (this.pending.length > 0) {
        const chunk = this.pending.shift()!
        const r = decoder.push(chunk)
        if (r !== undefined) {
          if (r.rest.length > 0) this.pending.unshift(r.rest)
          return { hello: r.hello, bytes: r.bytes }
        }
      }
      if (this.isClosed || performance.now() >= deadline) return undefined
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - performance.now()))
        this.wake = () => {
          clearTimeout(t)
          this.wake = undefined
          resolve()
        }
      })
    }
  }

  /** From now on every received chunk goes to `fn`, the queued ones first. */
  onData(fn: (chunk: Uint8Array) => void): void {
    this.listener = fn
    const queued = this.pending
    this.pending = []
    for (const c of queued) fn(c)
  }
}

/** A malicious dialer's choices for its handshake. */
export interface DialerOptions {
  readonly psk: Uint8Array
  readonly trunkId?: Uint8Array
  readonly subflowIndex?: number
  /** Ask for encrypted records (rx_proxy encrypts anyway by default). */
  readonly encrypt?: boolean
  /** Largest frame body we claim to accept. */
  readonly maxFrameBody?: number
  /** Credit we grant rx_proxy per flow. */
  readonly flowWindow?: number
}

/** The HELLO a dialer sends, with its nonce. */
export function dialerHello(
  opts: DialerOptions,
  nonce: Uint8Array = randomBytes(NONCE_LENGTH)
): {
  readonly bytes: Uint8Array
  readonly nonce: Uint8Array
  readonly flags: number
} {
  const flags = opts.encrypt === false ? 0 : HELLO_FLAG_ENCRYPT
  const auth = new Uint8Array(HELLO_AUTH_LENGTH)
  auth.set(nonce, 0)
  const bytes = handshakeMessage({
    kind: HelloKind.HELLO,
    trunkId: opts.trunkId ?? new Uint8Array(16),
    subflowIndex: opts.subflowIndex ?? 0,
    maxFrameBody: opts.maxFrameBody ?? MAX_MAX_FRAME_BODY,
    flowWindow: opts.flowWindow ?? 16 * MiB,
    flags,
    auth
  })
  return { bytes, nonce, flags }
}

/** The outcome of a handshake attempt by `HostileDialer.dial`. */
export interface DialOutcome {
  /** The CHALLENGE, or undefined when none came. */
  readonly challenge: Hello | undefined
  /** The REPLY, or undefined when none came. */
  readonly reply: Hello | undefined
  /** True when the acceptor's proof matched our key. */
  readonly serverProved: boolean
  /** True when the REPLY's MAC matched the transcript. */
  readonly replyAuthentic: boolean
  /** The HELLO and AUTH bytes we sent (to replay). */
  readonly helloBytes: Uint8Array
  readonly authBytes: Uint8Array | undefined
}

/**
 * A dialer that authenticates with whatever key it is given and then sends any frame, record or
 * raw bytes. Frames it receives are decoded and kept.
 */
export class HostileDialer {
  readonly conn: RawConnection
  readonly outcome: DialOutcome
  /** Frames received after the handshake. */
  readonly frames: Frame[] = []
  /** The ProtocolError (or other) that stopped decoding what the acceptor sent, if any. */
  receiveError: unknown
  private readonly sealer: RecordSealer | undefined
  private frameWaiters: (() => void)[] = []
  private readonly counts = new Map<Frame['type'], number>()

  private constructor(
    conn: RawConnection,
    outcome: DialOutcome,
    keys: { trunkId: Uint8Array; transcript: Uint8Array[] } | undefined,
    psk: Uint8Array
  ) {
    this.conn = conn
    this.outcome = outcome
    let opener: RecordOpener | undefined
    if (
      keys !== undefined &&
      outcome.reply !== undefined &&
      (outcome.reply.flags & HELLO_FLAG_ENCRYPT) !== 0
    ) {
      const k = trafficKeys(psk, keys.trunkId, keys.transcript)
      this.sealer = new RecordSealer(k.clientToServer)
      opener = new RecordOpener(k.serverToClient, MAX_MAX_FRAME_BODY + FRAME_HEADER_LENGTH)
    }
    const decoder = new FrameDecoder(MAX_MAX_FRAME_BODY)
    if (outcome.reply?.status === HelloStatus.OK) {
      conn.onData((chunk) => {
        if (this.receiveError !== undefined) return
        try {
          const plains = opener === undefined ? [chunk] : opener.push(chunk)
          for (const p of plains) {
            for (const f of decoder.push(p)) {
              this.frames.push(f)
              this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + 1)
            }
          }
        } catch (err) {
          this.receiveError = err
        }
        const waiters = this.frameWaiters
        this.frameWaiters = []
        for (const w of waiters) w()
      })
    }
  }

  /**
   * Connect to 127.0.0.1:`port` and run the dialer's side of the handshake with `opts.psk`.
   * `replay` sends recorded HELLO/AUTH bytes instead of fresh ones. Resolves whatever happened.
   */
  static async dial(
    port: number,
    opts: DialerOptions,
    replay?: { readonly helloBytes: Uint8Array; readonly authBytes: Uint8Array }
  ): Promise<HostileDialer> {
    const conn = await RawConnection.open(port)
    const trunkId = opts.trunkId ?? new Uint8Array(16)
    const subflowIndex = opts.subflowIndex ?? 0
    const hello = dialerHello(opts)
    const helloBytes = replay?.helloBytes ?? hello.bytes
    conn.write(helloBytes)
    const challenge = await conn.readMessage(HelloKind.CHALLENGE)
    if (challenge === undefined || challenge.hello.kind !== HelloKind.CHALLENGE) {
      return new HostileDialer(
        conn,
        {
          challenge: challenge?.hello,
          reply: challenge?.hello,
          serverProved: false,
          replyAuthentic: false,
          helloBytes,
          authBytes: undefined
        },
        undefined,
        opts.psk
      )
    }
    const authKey = trunkAuthKey(opts.psk, trunkId)
    const serverProved =
      challenge.hello.auth.length === NONCE_LENGTH + PROOF_LENGTH &&
      messageAuthentic(authKey, HandshakeMac.SERVER, [helloBytes], challenge.bytes)
    const authBytes =
      replay?.authBytes ??
      signMessage(
        authKey,
        HandshakeMac.CLIENT,
        [helloBytes, challenge.bytes],
        handshakeMessage({
          kind: HelloKind.AUTH,
          trunkId,
          subflowIndex,
          auth: new Uint8Array(PROOF_LENGTH)
        })
      )
    conn.write(authBytes)
    const transcript = [helloBytes, challenge.bytes, authBytes]
    const reply = await conn.readMessage(HelloKind.REPLY)
    const replyAuthentic =
      reply !== undefined &&
      reply.hello.auth.length === REPLY_MAC_LENGTH &&
      messageAuthentic(authKey, HandshakeMac.REPLY, transcript, reply.bytes)
    return new HostileDialer(
      conn,
      {
        challenge: challenge.hello,
        reply: reply?.hello,
        serverProved,
        replyAuthentic,
        helloBytes,
        authBytes
      },
      { trunkId, transcript },
      opts.psk
    )
  }

  /** True when the acceptor answered OK: the subflow is up and frames may follow. */
  get accepted(): boolean {
    return this.outcome.reply?.status === HelloStatus.OK
  }

  /** Seal `plaintext` as one record (or send it bare when frames are not encrypted). */
  sendRecord(plaintext: Uint8Array): boolean {
    if (this.sealer === undefined) return this.conn.write(plaintext)
    let ok = true
    this.conn.socket.cork()
    for (const b of this.sealer.seal([plaintext])) ok = this.conn.write(b)
    this.conn.socket.uncork()
    return ok
  }

  /** Seal a record and flip one bit of its ciphertext (or tag) before sending it. */
  sendTamperedRecord(plaintext: Uint8Array, at: number): void {
    if (this.sealer === undefined) throw new Error('not encrypted')
    const sealed = Buffer.concat(this.sealer.seal([plaintext]))
    const i = 4 + (at % (sealed.length - 4))
    sealed[i] = sealed[i]! ^ 0x01
    this.conn.write(sealed)
  }

  /** One record per frame, corked together; resolves once the socket drained. */
  async sendFrames(frames: readonly Frame[]): Promise<void> {
    this.conn.socket.cork()
    let full = false
    for (const f of frames) if (!this.sendRecord(encodeFrame(f))) full = true
    this.conn.socket.uncork()
    if (full) await this.conn.drained()
  }

  /** How many frames of `type` were received. */
  count(type: Frame['type']): number {
    return this.counts.get(type) ?? 0
  }

  /** Resolves once a received frame satisfies `pred` (true), or after `timeoutMs` (false). */
  async waitFrame(pred: (f: Frame) => boolean, timeoutMs = 3000): Promise<boolean> {
    let checked = 0
    return await this.waitFor(() => {
      for (; checked < this.frames.length; checked++) if (pred(this.frames[checked]!)) return true
      return false
    }, timeoutMs)
  }

  /** Resolves once `cond()` holds (true), checked after each read, or after `timeoutMs` (false). */
  async waitFor(cond: () => boolean, timeoutMs = 3000): Promise<boolean> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      if (cond()) return true
      if (this.conn.isClosed || performance.now() >= deadline) return false
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(100, Math.max(1, deadline - performance.now())))
        this.frameWaiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Resolves true once the connection closed, false after `timeoutMs`. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    return await Promise.race([
      this.conn.ended.then(() => true),
      sleep(timeoutMs).then(() => false)
    ])
  }

  /** Close our side. */
  close(): void {
    this.conn.destroy()
  }
}

// ---- a fake rx_proxy, for tx_proxy's dialer ---------------------------------------------------

/** The acceptor's side of a handshake, with the real key: for a fake rx_proxy that gets in. */
export interface AcceptedByFake {
  readonly hello: Hello
  /** Seals records towards the dialer. */
  readonly sealer: RecordSealer
}

/**
 * Answer a dialer's HELLO on `conn` as rx_proxy would, with key `psk`: CHALLENGE with a correct
 * proof, check the AUTH, REPLY OK asking for encryption. Undefined when the dialer gave up.
 */
export async function acceptAsFakeRx(
  conn: RawConnection,
  psk: Uint8Array,
  replyFields: Partial<Hello> = {}
): Promise<AcceptedByFake | undefined> {
  const first = await conn.readMessage(HelloKind.HELLO)
  if (first === undefined) return undefined
  const hello = first.hello
  const authKey = trunkAuthKey(psk, hello.trunkId)
  const auth = new Uint8Array(NONCE_LENGTH + PROOF_LENGTH)
  auth.set(randomBytes(NONCE_LENGTH), 0)
  const challenge = signMessage(
    authKey,
    HandshakeMac.SERVER,
    [first.bytes],
    handshakeMessage({
      kind: HelloKind.CHALLENGE,
      trunkId: hello.trunkId,
      subflowIndex: hello.subflowIndex,
      auth
    })
  )
  conn.write(challenge)
  const proof = await conn.readMessage(HelloKind.AUTH)
  if (
    proof === undefined ||
    !messageAuthentic(authKey, HandshakeMac.CLIENT, [first.bytes, challenge], proof.bytes)
  ) {
    return undefined
  }
  const transcript = [first.bytes, challenge, proof.bytes]
  conn.write(
    signMessage(
      authKey,
      HandshakeMac.REPLY,
      transcript,
      handshakeMessage({
        kind: HelloKind.REPLY,
        trunkId: hello.trunkId,
        subflowIndex: hello.subflowIndex,
        maxFrameBody: 256 * 1024,
        flowWindow: 256 * 1024,
        flags: HELLO_FLAG_ENCRYPT | 0x01,
        ...replyFields,
        auth: new Uint8Array(REPLY_MAC_LENGTH)
      })
    )
  )
  const keys = trafficKeys(psk, hello.trunkId, transcript)
  return { hello, sealer: new RecordSealer(keys.serverToClient) }
}

/** A TCP server on 127.0.0.1 that hands each connection, numbered from 0, to `handler`. */
export async function fakeServer(
  handler: (conn: RawConnection, index: number) => Promise<void>
): Promise<{ readonly server: Server; readonly port: number; readonly connections: () => number }> {
  let n = 0
  const server = createServer((socket) => {
    const conn = RawConnection.accepted(socket)
    const i = n++
    handler(conn, i).catch(() => {
      conn.destroy()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const a = server.address()
  const port = typeof a === 'object' && a !== null ? a.port : 0
  return { server, port, connections: () => n }
}

// ---- random hellos --------------------------------------------------------------------------

/** How one random handshake attempt goes. */
export type HelloVariant =
  | 'random-bytes'
  | 'magic-then-random'
  | 'random-fields'
  | 'random-auth'
  | 'pipelined-auth'
  | 'truncated'

/** The variants, in the order `randomAttempt` cycles through them. */
export const HELLO_VARIANTS: readonly HelloVariant[] = [
  'random-bytes',
  'magic-then-random',
  'random-fields',
  'random-auth',
  'pipelined-auth',
  'truncated'
]

/** Random bytes from a seeded source. */
function bytesFrom(random: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256)
  return out
}

/**
 * The bytes of one random first message of `variant`: anything from noise to a well-formed HELLO
 * (whose AUTH, sent by `randomAttempt`, is then random).
 */
export function randomHelloBytes(variant: HelloVariant, random: () => number): Uint8Array {
  const int = (n: number): number => Math.floor(random() * n)
  switch (variant) {
    case 'random-bytes':
      return bytesFrom(random, 1 + int(160))
    case 'magic-then-random': {
      const b = bytesFrom(random, 5 + int(120))
      b.set([0x54, 0x4e, 0x44, 0x4d], 0)
      if (random() < 0.5) b[4] = int(2) === 0 ? 1 : 2 // versions before this one
      return b
    }
    case 'random-fields': {
      const authLength = random() < 0.2 ? 1025 + int(64000) : int(200)
      const b = bytesFrom(random, 40 + Math.min(authLength, 200))
      b.set([0x54, 0x4e, 0x44, 0x4d, PROTOCOL_VERSION], 0)
      b[5] = int(6)
      b[6] = int(3)
      b[26] = authLength >> 8
      b[27] = authLength & 0xff
      if (random() < 0.5) b.set([0, 0, 0x40, 0], 28) // a valid max frame body, to get further
      if (authLength > 200) return b
      return b.subarray(0, 40 + authLength)
    }
    case 'random-auth':
    case 'pipelined-auth':
    case 'truncated': {
      const h = dialerHello({ psk: new Uint8Array(32), trunkId: bytesFrom(random, 16) })
      if (variant === 'truncated') return h.bytes.subarray(0, 1 + int(h.bytes.length - 1))
      return h.bytes
    }
  }
}

/** A random AUTH: usually well formed with a random proof, sometimes of the wrong size or noise. */
export function randomAuthBytes(random: () => number): Uint8Array {
  const r = random()
  if (r < 0.7) {
    return handshakeMessage({
      kind: HelloKind.AUTH,
      trunkId: bytesFrom(random, 16),
      auth: bytesFrom(random, PROOF_LENGTH)
    })
  }
  if (r < 0.85) {
    return handshakeMessage({
      kind: HelloKind.AUTH,
      trunkId: bytesFrom(random, 16),
      auth: bytesFrom(random, Math.floor(random() * 100))
    })
  }
  return bytesFrom(random, 1 + Math.floor(random() * 100))
}

/**
 * One random handshake attempt against 127.0.0.1:`port`: send the first message, answer a
 * CHALLENGE with a random AUTH, half-close, and wait until the acceptor closes (or `timeoutMs`).
 * Returns what came back: 'challenge' when a CHALLENGE was seen, else the first reply kind or ''.
 */
export async function randomAttempt(
  port: number,
  variant: HelloVariant,
  random: () => number,
  timeoutMs = 5000
): Promise<{ readonly challenged: boolean; readonly ending: Ending }> {
  const conn = await RawConnection.open(port)
  const timer = setTimeout(() => {
    conn.destroy()
  }, timeoutMs)
  try {
    const first = randomHelloBytes(variant, random)
    if (variant === 'pipelined-auth') {
      // HELLO and AUTH in one write, without waiting for the server nonce.
      conn.write(Buffer.concat([first, randomAuthBytes(random)]))
      conn.end()
      return { challenged: false, ending: await conn.ended }
    }
    conn.write(first)
    if (variant !== 'random-auth') {
      conn.end()
      return { challenged: false, ending: await conn.ended }
    }
    let challenged = false
    try {
      const c = await conn.readHello(HelloKind.CHALLENGE, timeoutMs)
      challenged = c?.kind === HelloKind.CHALLENGE
    } catch {
      challenged = false
    }
    conn.write(randomAuthBytes(random))
    conn.end()
    return { challenged, ending: await conn.ended }
  } finally {
    clearTimeout(timer)
  }
}

/** Run `count` jobs with at most `concurrency` at once. */
export async function pool(
  count: number,
  concurrency: number,
  job: (i: number) => Promise<void>
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      await job(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

// ---- the honest flow beside the attacks -----------------------------------------------------

/** What an honest stream carried. */
export interface HonestResult {
  readonly bytes: number
  readonly seconds: number
  readonly sentSha256: string
}

/**
 * Write pseudo-random bytes to `socket` at about `bytesPerSec` until `stop()` is called, then end
 * it. Resolves with what was sent.
 */
export function honestWriter(
  socket: Socket,
  bytesPerSec: number
): { stop(): void; readonly done: Promise<HonestResult> } {
  const base = randomBytes(MiB)
  const hash = createHash('sha256')
  let stopped = false
  const done = (async (): Promise<HonestResult> => {
    const t0 = performance.now()
    let sent = 0
    let k = 0
    while (!stopped && !socket.destroyed) {
      const elapsed = (performance.now() - t0) / 1000
      if (sent > bytesPerSec * elapsed) {
        await sleep(10)
        continue
      }
      const len = 64 * 1024
      const at = (k++ * 7919) % (base.length - len)
      const chunk = base.subarray(at, at + len)
      hash.update(chunk)
      sent += len
      if (!socket.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            socket.off('drain', done)
            socket.off('close', done)
            resolve()
          }
          socket.once('drain', done)
          socket.once('close', done)
        })
      }
    }
    socket.end()
    return { bytes: sent, seconds: (performance.now() - t0) / 1000, sentSha256: hash.digest('hex') }
  })()
  return {
    stop: () => {
      stopped = true
    },
    done
  }
}

// ---- RSS ------------------------------------------------------------------------------------

/** Samples a process's RSS every `everyMs` and keeps the maximum since the last `reset()`. */
export class RssSampler {
  private maxValue = 0
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly proc: ProxyProcess,
    everyMs = 50
  ) {
    this.timer = setInterval(() => {
      this.sample()
    }, everyMs)
    this.sample()
  }

  /** Take a sample now; returns it. */
  sample(): number {
    let rss = 0
    try {
      rss = this.proc.rssBytes()
    } catch {
      rss = 0 // the process is gone; the test notices through its control socket
    }
    this.maxValue = Math.max(this.maxValue, rss)
    return rss
  }

  /** Largest sample since the last reset (a final sample is taken first). */
  get max(): number {
    this.sample()
    return this.maxValue
  }

  /** Start a new maximum. */
  reset(): void {
    this.maxValue = 0
    this.sample()
  }

  /** Stop sampling. */
  stop(): void {
    clearInterval(this.timer)
  }
}

/** Bytes in MiB, one decimal. */
export function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1)
}
