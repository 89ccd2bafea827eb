/**
 * The acceptor's door: which connections may start a handshake, how many at once, and one
 * rate-limited log line for each refusal. Work for peers that have not proved the key stays
 * bounded: at most `maxPending` handshakes in all and `maxPendingPerSource` from one address, so
 * one source holding idle connections cannot lock out the real tx_proxy; with `allowPeers` set,
 * nobody else gets a handshake at all. A socket counts as pending from accept until it is
 * authenticated or until its 'close' (a refused socket still holds a descriptor until then).
 */
import type { Socket } from 'node:net'
import type { CounterName, Counters } from '../common/counters.js'
import { errorMessage, isPepError } from '../common/errors.js'
import { formatIp, normalizeIp, parseIp } from '../common/ip.js'
import type { Logger } from '../common/log/logger.js'
import { inSubnet, type Subnet } from '../common/policy.js'

/** Limits of the door. */
export interface AcceptGateOptions {
  /** Most handshakes in progress at once. */
  readonly maxPending: number
  /** Most handshakes in progress at once from one source address. */
  readonly maxPendingPerSource: number
  /** Source addresses allowed to start a handshake (empty: any). */
  readonly allowPeers: readonly Subnet[]
  readonly counters: Counters
  readonly log: Logger
}

/**
 * The address as the policy should see it: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what
 * a dual-stack listener reports for an IPv4 peer) and the IPv4-compatible form become the IPv4
 * address (the same rule as the relay guard's, from src/common/ip.ts), so that one source is
 * one key and IPv4 entries of `allow_peers` match it.
 */
export function normalisePeerAddress(address: string): string {
  const ip = parseIp(address)
  return ip === undefined ? address : formatIp(normalizeIp(ip))
}

/** `address:port` for logs (brackets around IPv6). */
function peerText(address: string, port: number | undefined): string {
  const host = address.includes(':') ? `[${address}]` : address
  return port === undefined ? host : `${host}:${port}`
}

/** A connection let through the door. */
export interface Admitted {
  /** Normalised source address. */
  readonly address: string
  /** `address:port`, for log lines. */
  readonly peer: string
}

/** Counts pending handshakes and refuses connections past the limits. */
export class AcceptGate {
  private readonly opts: AcceptGateOptions
  /** Pending sockets and their source address. */
  private readonly pending = new Map<Socket, string>()
  private readonly perSource = new Map<string, number>()

  constructor(opts: AcceptGateOptions) {
    this.opts = opts
  }

  /** Handshakes in progress (refused sockets included until they close). */
  get size(): number {
    return this.pending.size
  }

  /** Pending handshakes from `address` (normalised). */
  pendingFrom(address: string): number {
    return this.perSource.get(address) ?? 0
  }

  /**
   * A new connection: admitted (returns who it is) or destroyed at once (returns undefined,
   * counted and logged). The address is read now, while the socket still knows it.
   */
  admit(socket: Socket): Admitted | undefined {
    const address = normalisePeerAddress(socket.remoteAddress ?? '?')
    const peer = peerText(address, socket.remotePort)
    const { allowPeers, maxPending, maxPendingPerSource } = this.opts
    if (allowPeers.length > 0 && !allowPeers.some((s) => inSubnet(s, address))) {
      this.drop(socket, peer, 'handshakes_refused_peer', 'not in rx_proxy.allow_peers')
      return undefined
    }
    if (this.pending.size >= maxPending) {
      this.drop(
        socket,
        peer,
        'handshakes_refused_busy',
        `max_unauthenticated (${maxPending}) reached: closing new subflows until handshakes finish`
      )
      return undefined
    }
    if (this.pendingFrom(address) >= maxPendingPerSource) {
      this.drop(
        socket,
        peer,
        'handshakes_refused_per_source',
        `max_unauthenticated_per_source (${maxPendingPerSource}) reached for this address`
      )
      return undefined
    }
    this.pending.set(socket, address)
    this.perSource.set(address, this.pendingFrom(address) + 1)
    socket.once('close', () => {
      this.release(socket)
    })
    return { address, peer }
  }

  /** The handshake succeeded: the socket no longer counts as pending. */
  authenticated(socket: Socket): void {
    this.release(socket)
  }

  /**
   * The handshake failed: count it by code and log one line naming the peer and the likely
   * cause. A flood must not become a flood of log lines: the first ten of each code, then every
   * power of two.
   */
  failed(who: Admitted, err: unknown): void {
    const code = isPepError(err) ? err.code : 'error'
    const counter: CounterName = `handshake_failures_${code}`
    this.opts.counters.inc(counter)
    if (code === 'PEP_ERR_AUTH_FAILED') this.opts.counters.inc('auth_failures')
    const n = this.opts.counters.get(counter)
    if (n <= 10 || (n & (n - 1)) === 0) {
      this.opts.log.warn(`subflow from ${who.peer} refused: ${errorMessage(err)}`, {
        code,
        [counter]: n
      })
    }
  }

  /** Destroy every pending socket (shutdown). */
  destroyAll(): void {
    for (const s of [...this.pending.keys()]) s.destroy()
  }

  private release(socket: Socket): void {
    const address = this.pending.get(socket)
    if (address === undefined) return
    this.pending.delete(socket)
    const left = this.pendingFrom(address) - 1
    if (left > 0) this.perSource.set(address, left)
    else this.perSource.delete(address)
  }

  private drop(socket: Socket, peer: string, counter: CounterName, why: string): void {
    this.opts.counters.inc(counter)
    const n = this.opts.counters.get(counter)
    if (n <= 10 || (n & (n - 1)) === 0) {
      this.opts.log.warn(`subflow from ${peer} refused: ${why}`, { [counter]: n })
    }
    socket.destroy()
  }
}
