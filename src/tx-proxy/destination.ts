/**
 * Where each client flow goes: the static `destination` of network.conf, or the original
 * destination the kernel recorded when iptables REDIRECTed the connection (SO_ORIGINAL_DST,
 * IP6T_SO_ORIGINAL_DST through the native addon).
 */
import { lookup } from 'node:dns/promises'
import type { Socket } from 'node:net'
import type { Config } from '../common/config/config.js'
import { ConfigError, NativeError } from '../common/errors.js'
import { ipFamily, normalizeAddress } from '../common/ip.js'
import type { Endpoint } from '../common/wire/frame.js'
import { getOriginalDst, loadNative, socketFd } from '../../native/index.js'
import type { DestinationResolver } from './tx-proxy.js'

/** Build the resolver once at start-up (resolving a static host name, loading the addon). */
export async function createDestinationResolver(
  config: Readonly<Config>
): Promise<DestinationResolver> {
  const fixed = config.tx.destination
  if (fixed !== undefined) {
    let address = fixed.host
    let family = ipFamily(address)
    if (family === undefined) {
      try {
        const r = await lookup(fixed.host)
        address = r.address
        family = r.family === 6 ? 6 : 4
      } catch {
        throw new ConfigError('tx_proxy.destination', `cannot resolve host ${fixed.host}`)
      }
    }
    const ep: Endpoint = { family, address, port: fixed.port }
    return () => ep
  }
  loadNative() // fail at start-up, in one line, when the addon is not built
  return (socket: Socket): Endpoint => {
    const local = normalizeAddress(socket.localAddress ?? '0.0.0.0')
    const fd = socketFd(socket)
    const dst = getOriginalDst(fd, local.family)
    if (dst.port === socket.localPort && dst.address === local.address) {
      throw new NativeError('not a redirected connection (original destination is this proxy)')
    }
    return { family: local.family, address: normalizeAddress(dst.address).address, port: dst.port }
  }
}
