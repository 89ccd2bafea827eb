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

/** Handshake attacks logged one by one before the log thins out to powers of two. */
const ATTACK_LOG_FIRST = 10

/** Re-dial delays are spread by ±JITTER of the backoff, so that subflows do not storm together. */
const JITTER = 0.25

/**
 * Who watches the dials (the process shell's trunk watch: state per slot, the last error, the
 * trunk going down and coming back). The dialer tells it every event; it decides what to log.
 */
export interface DialObserver {
  dialStarted(index: number): void
  dialSucceeded(index: number, encrypted: boolean): void
  /** A dial failed; the next one starts in `retryInMs`. */
  dialFailed(index: number, err: unknown, retryInMs: number): void
  /** A subflow joined or closed: look at the trunk again. */
  check(): void
}

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
  /** Told of every dial; without one, the dialer logs each slot's first failure itself. */
  readonly observer?: DialObserver
  /**
   * Resolves a host name to an address of `family` (0: any) with the system resolver by
   * default; tests pass their own.
   */
  readonly lookup?: (host: string, family: 0 | 4 | 6) => Promise<string>
  /** Uniform random in [0, 1) for the jitter (Math.random by default). */
  readonly random?: () => number
}

/** The peer's name did not resolve: the peer was not reached. */
class Unresolved extends Error {
  readonly code: string

  constructor(host: string, code: string) {
    super(`cannot resolve ${host}: ${code}`)
    this.code = code
  }
}

/** A dial that never reached the peer (no name, refused, unreachable): not a handshake failure. */
function unreached(err: unknown): boolean {
  return err instanceof Unresolved || (isPepError(err) && err.code === PepErrorCodes.CONNECT_FAILED)
}

/** Dials and re-dials the subflows of one trunk. */
export class Dialer {
  private readonly opts: DialerOptions
  private readonly dialing = new Set<number>()
  private readonly attempts = new Map<number, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly lookup: (host: string, family: 0 | 4 | 6) => Promise<string>
  private everConnected = false
  private stopped = false

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
    this.opts.observer?.dialStarted(index)
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
      throw new Unresolved(path.peerIp, (err as NodeJS.ErrnoException).code ?? String(err))
    }
    return await dialSubflow({
      host,
      port: path.peerPort,
      ...(path.localIp !== undefined ? { localAddress: path.localIp } : {}),
      index,
      pathId: path.id,
      timeoutMs: this.opts.dialTimeoutMs,
      local: { ...this.opts.hello, trunkId: this.opts.trunk.trunkId }
    })
  }

  private joined(index: number, path: PathConfig, hs: Handshake): void {
    if (this.stopped) {
      hs.socket.destroy()
      return
    }
    const { trunk, counters, log, observer } = this.opts
    this.attempts.set(index, 0)
    observer?.dialSucceeded(index, hs.keys !== undefined)
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
      observer?.check()
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
    observer?.check()
  }

  private failed(index: number, path: PathConfig, err: unknown): void {
    const { counters, log, observer } = this.opts
    counters.inc('dial_failures')
    const message = err instanceof Error ? err.message : String(err)
    const code = isPepError(err) ? err.code : undefined
    // A refused or unreachable connect is a dial failure, not a failed handshake.
    if (!unreached(err)) counters.inc(`handshake_failures_${code ?? 'error'}`)
    if (code === PepErrorCodes.AUTH_FAILED) counters.inc('auth_failures')
    const line = `subflow ${index} (path ${path.name}) to ${path.peerIp}:${path.peerPort}: ${message}`
    const n = this.attempts.get(index) ?? 0
    if (code === PepErrorCodes.HANDSHAKE_TAMPERED) {
      // A changed handshake is an attack: always a line (a flood: the first ten, then every
      // 2^k), whatever the observer says about the trunk.
      counters.inc('handshake_attacks')
      const a = counters.get('handshake_attacks')
      if (a <= ATTACK_LOG_FIRST || (a & (a - 1)) === 0) {
        log.warn(line, { handshake_attacks: a })
      }
    } else if (
      observer === undefined &&
      (n === 0 || code === PepErrorCodes.VERSION_MISMATCH || code === PepErrorCodes.AUTH_FAILED)
    ) {
      // The first failure of a slot is logged, then its repeats are quiet, except the two that
      // need a human (another version, a wrong key).
      log.warn(line)
    }
    const delay = this.redial(index)
    observer?.dialFailed(index, err, delay)
  }

  /** Re-dial with exponential backoff and jitter; returns the delay in ms. */
  private redial(index: number): number {
    if (this.stopped) return 0
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
    return delay
  }
}
