/**
 * A listener that cannot bind names the network.conf key of its address, so that an operator
 * who starts a second instance, or picks a port something else holds, reads which key to change
 * (`rx_proxy.metrics_listen: 127.0.0.1:9464 is already in use ...`) instead of a bare errno.
 */
import { ConfigError } from '../common/errors.js'

const WHY: Readonly<Record<string, string>> = {
  EADDRINUSE: 'is already in use (another process listens there; is another instance running?)',
  EACCES: 'may not be bound by this user (a port below 1024 needs CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'is not an address of this box'
}

/** The key of a listener's address and the key of its port (one key for `host:port` values). */
export type ListenKeys = string | { readonly address: string; readonly port: string }

/**
 * Run `listen`; a bind error becomes a ConfigError naming the key (the address's key for
 * EADDRNOTAVAIL, else the port's) and `where` (host:port). Other errors pass through unchanged.
 */
export async function listenNamed<T>(
  keys: ListenKeys,
  where: string,
  listen: () => Promise<T>
): Promise<T> {
  try {
    return await listen()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === undefined ? undefined : WHY[code]
    if (why === undefined) throw err
    const key =
      typeof keys === 'string' ? keys : code === 'EADDRNOTAVAIL' ? keys.address : keys.port
    throw new ConfigError(key, `${where} ${why} (${code})`)
  }
}
