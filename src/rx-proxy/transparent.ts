/**
 * Source-transparent connects: rx_proxy dials a flow's destination from the client's own
 * address and port (IP_TRANSPARENT / IPV6_TRANSPARENT), so the destination's logs and
 * address-based access rules see the client, not the rx box.
 *
 * The socket only works with the rx box's rules in place (`iptables/apply.sh --role rx` with
 * `interception.transparent = true`, see docs/transparency.md): the destination addresses its
 * replies to the client, and those rules take them off the bridge to this socket.
 */
import { closeSync } from 'node:fs'
import { Socket } from 'node:net'
import { constants as osConstants } from 'node:os'

import { transparentConnect, type TransparentConnectOptions } from '../../native/index.js'
import { isPepError, NativeError } from '../common/errors.js'
import type { Endpoint } from '../common/wire/frame.js'

/** Options of `connectTransparent`. */
export interface ConnectTransparentOptions {
  /** Where to connect. */
  readonly dst: Endpoint
  /** The client's own endpoint: the source address and (preferred) port; same family as dst. */
  readonly src: Endpoint
  /** Give up (NativeError, errno ETIMEDOUT) after this many milliseconds, retry included. */
  readonly timeoutMs: number
  /**
   * SO_MARK of the socket, unsigned 32-bit; none when undefined. Not needed by the rx box's
   * rules, and harmless to them: their `ip rule` matches packets coming in, not ours going out.
   */
  readonly mark?: number
}

/** The native connect, injectable so the retry logic can be tested without CAP_NET_ADMIN. */
export type TransparentConnector = (options: TransparentConnectOptions) => Promise<number>

/**
 * errno values after which the connect is retried once from a kernel-chosen port: the
 * client's port is taken here (EADDRINUSE at bind: a listener on it) or the same 4-tuple is
 * still in use (EADDRNOTAVAIL at connect: e.g. the previous connection from that port in
 * TIME_WAIT). The destination then sees the client's address with another port.
 */
const PORT_TAKEN_ERRNOS: ReadonlySet<number> = new Set([
  osConstants.errno.EADDRINUSE,
  osConstants.errno.EADDRNOTAVAIL
])

/**
 * Connects to `dst` from `src` (IP_TRANSPARENT; needs CAP_NET_ADMIN) and wraps the connected
 * descriptor in a `net.Socket` (allowHalfOpen, as rx_proxy's other destination sockets; the
 * caller sets noDelay and the rest).
 *
 * Tries `src.port` first and, when that port is taken (EADDRINUSE, EADDRNOTAVAIL), once more
 * from a port the kernel picks.
 * @throws TypeError when src and dst are of different IP families (connect plainly instead).
 * @throws NativeError with the failed call's `errno`: ECONNREFUSED, ETIMEDOUT (after
 * `timeoutMs`), EHOSTUNREACH, ENETUNREACH, EPERM (no CAP_NET_ADMIN)...; `errnoCode(err)`
 * names it.
 */
export async function connectTransparent(
  options: ConnectTransparentOptions,
  connect: TransparentConnector = transparentConnect
): Promise<Socket> {
  const { dst, src } = options
  if (src.family !== dst.family) {
    throw new TypeError(
      `source ${src.address} (IPv${src.family}) and destination ${dst.address} (IPv${dst.family}) differ in family`
    )
  }
  const deadline = performance.now() + options.timeoutMs
  const attempt = (localPort: number): Promise<number> =>
    connect({
      family: dst.family,
      localAddress: src.address,
      localPort,
      remoteAddress: dst.address,
      remotePort: dst.port,
      // The retry gets what is left of the budget, at least 1 ms (the addon's minimum).
      timeoutMs: Math.max(1, Math.ceil(deadline - performance.now())),
      ...(options.mark === undefined ? {} : { mark: options.mark })
    })
  let fd: number
  try {
    fd = await attempt(src.port)
  } catch (err) {
    if (!(err instanceof NativeError) || err.errno === undefined || src.port === 0) throw err
    if (!PORT_TAKEN_ERRNOS.has(err.errno)) throw err
    fd = await attempt(0)
  }
  try {
    return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true })
  } catch (err) {
    // Node did not take the descriptor: it is still ours to close.
    closeSync(fd)
    throw err
  }
}

/** errno number → name ('ECONNREFUSED'), built once from the platform's table. */
const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name])
)

/**
 * The errno name of a failed connect, as Node spells it in `err.code` ('ECONNREFUSED',
 * 'ETIMEDOUT'...): from a NativeError's `errno`, or a Node system error's `code`; undefined
 * for anything else. Lets rx_proxy map transparent and plain connect failures alike.
 */
export function errnoCode(err: unknown): string | undefined {
  if (err instanceof NativeError) {
    return err.errno === undefined ? undefined : ERRNO_NAMES.get(err.errno)
  }
  if (err instanceof Error && !isPepError(err) && 'code' in err && typeof err.code === 'string') {
    return err.code
  }
  return undefined
}
