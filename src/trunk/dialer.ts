/**
 * The dialing side of a trunk (tx): one slot per subflow, each dialed, re-dialed with backoff
 * when it fails or its subflow dies, and the peer's restart noticed when a REPLY says it does
 * not know the trunk. The peer may be named by host name: it is resolved at every dial, so a
 * re-dial follows a changed address.
 */
import { lookup as dnsLookup } from 'node:dns/promises'
import type { PathConfig } from '../common/config/config.js'
import type { Counters } from '../common/counters.js'
import { isPepError, PepErrorCodes } from '../common/errors.js'
import { ipFamily } from '../common/ip.js'
import type { Logger } from '../common/log/logger.js'
import { REPLY_FLAG_TRUNK_NEW } from '../common/wire/frame.js'
import { dialSubflow, type Handshake, type LocalHelloParams } from './handshake.js'
import type { Trunk } from './trunk.js'

/** Backoff doubles per failed attempt up to this many doublings (then `redialMaxMs` caps it anyway). */
const MAX_BACKOFF_DOUBLINGS = 20

/** Re-dial delays are spread by ±JITTER of the backoff, so that subflows do not storm together. */
const JITTER = 0.25

/** Everything a dialer is given. */
export interface DialerOptions {
  readonly trunk: Trunk
  /** The path of each subflow index, in order (`paths[p].subflows` slots per path). */
  readonly slots: readonly PathConfig[]
  /** Our hello (the trunk id is the trunk's). */
  readonly hello: Omit<LocalHelloParams, 'trunkId'>
  /** Connect plus handshake must finish within this, in ms. */
  readonly dialTimeoutMs: number
  /** First re-dial delay, in ms; it doubles per failure up to `redialMaxMs`. */
  readonly redialMinMs: number
  readonly redialMaxMs: number
  readonly counters: Counters
  readonly log: Logger
  /**
   * Resolves a host name to an address of `family` (0: any) with the system resolver by
   * default; tests pass their own.
   */
  readonly lookup?: (host: string, family: 0 | 4 | 6) => Promise<string>
  /** Uniform random in [0, 1) for the jitter (Math.random by default). */
  readonly random?: () => number
}

/** A dial that failed before any handshake byte: the peer was not reached. */
class Unreached extends Error {}

/** Dials and re-dials the subflows of one trunk. */
export class Dialer {
  private readonly opts: DialerOptions
  private readonly dialing = new Set<number>()
  private readonly attempts = new Map<number, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly lookup: (host: string, family: 0 | 4 | 6) => Promise<string>
  private everConnected = false
  private stopped = false
  /** The last dial failure, one line (for status); undefined after a success. */
  lastError: string | undefined

  constructor(opts: DialerOptions) {
    this.opts = opts
    this.lookup =
      opts.lookup ?? (async (host, family) => (await dnsLookup(host, { family })).address)
  }

  /** Dial every slot. */
  start(): void {
    for (let i = 0; i < this.opts.slots.length; i++) this.dial(i)
  }

  /** Stop dialing; a handshake that completes later is dropped. */
  stop(): void {
    this.stopped = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  private dial(index: number): void {
    if (this.stopped || this.dialing.has(index)) return
    const path = this.opts.slots[index]
    if (path === undefined) return
    this.dialing.add(index)
    this.connect(index, path).then(
      (hs) => {
        this.dialing.delete(index)
        this.joined(index, path, hs)
      },
      (err: unknown) => {
        this.dialing.delete(index)
        this.failed(index, path, err)
      }
    )
  }

  /** Resolve the peer's name, then connect and shake hands. */
  private async connect(index: number, path: PathConfig): Promise<Handshake> {
    let host: string
    try {
      // With a local address, the peer's address must be of the same family.
      const family = path.localIp === undefined ? 0 : (ipFamily(path.localIp) ?? 0)
      host = await this.lookup(path.peerIp, family)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err)
      throw new Unreached(`cannot resolve ${path.peerIp}: ${code}`)
    }
    try {
      return await dialSubflow({
        host,
        port: path.peerPort,
        ...(path.localIp !== undefined ? { localAddress: path.localIp } : {}),
        index,
        pathId: path.id,
        timeoutMs: this.opts.dialTimeoutMs,
        local: { ...this.opts.hello, trunkId: this.opts.trunk.trunkId }
      })
    } catch (err) {
      // A refused or unreachable connect is a dial failure, not a failed handshake.
      if (isPepError(err) && err.code === PepErrorCodes.CONNECT_FAILED) {
        throw new Unreached(err.message)
      }
      throw err
    }
  }

  private joined(index: number, path: PathConfig, hs: Handshake): void {
    if (this.stopped) {
      hs.socket.destroy()
      return
    }
    const { trunk, counters, log } = this.opts
    this.attempts.set(index, 0)
    this.lastError = undefined
    if ((hs.peer.flags & REPLY_FLAG_TRUNK_NEW) !== 0 && this.everConnected) {
      // Only flows the old peer may have known are lost; flows opened during the outage, whose
      // OPEN it never saw, go on over the new subflows.
      const lost = trunk.peerRestarted()
      log.warn(`rx_proxy lost this trunk (restarted?): ${lost} flow(s) reset`)
      counters.inc('peer_restarts')
    }
    this.everConnected = true
    hs.socket.once('close', () => {
      this.redial(index)
    })
    trunk.addSubflow(
      hs.socket,
      { flowWindowBytes: hs.peer.flowWindow, maxFrameBodyBytes: hs.peer.maxFrameBody },
      index,
      path.id,
      hs.rest,
      path.weight,
      hs.keys
    )
  }

  private failed(index: number, path: PathConfig, err: unknown): void {
    const { counters, log } = this.opts
    counters.inc('dial_failures')
    const message = err instanceof Error ? err.message : String(err)
    const code = isPepError(err) ? err.code : undefined
    if (!(err instanceof Unreached)) counters.inc(`handshake_failures_${code ?? 'error'}`)
    if (code === PepErrorCodes.AUTH_FAILED) counters.inc('auth_failures')
    this.lastError = `subflow ${index} (path ${path.name}) to ${path.peerIp}:${path.peerPort}: ${message}`
    // The first failure of a slot is logged, then its repeats are quiet, except the two that
    // need a human (another version, a wrong key).
    const n = this.attempts.get(index) ?? 0
    if (n === 0 || code === PepErrorCodes.VERSION_MISMATCH || code === PepErrorCodes.AUTH_FAILED) {
      log.warn(this.lastError)
    }
    this.redial(index)
  }

  /** Re-dial with exponential backoff and jitter. */
  private redial(index: number): void {
    if (this.stopped) return
    const n = (this.attempts.get(index) ?? 0) + 1
    this.attempts.set(index, n)
    const { redialMinMs, redialMaxMs } = this.opts
    const base = Math.min(redialMaxMs, redialMinMs * 2 ** Math.min(n - 1, MAX_BACKOFF_DOUBLINGS))
    const delay = base * (1 - JITTER + (this.opts.random ?? Math.random)() * 2 * JITTER)
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.dial(index)
    }, delay)
    t.unref()
    this.timers.add(t)
  }
}
