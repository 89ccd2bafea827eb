/**
 * The endpoints an OPEN carries, made safe to encode: both normalised (an IPv4-mapped address is
 * the IPv4 address it embeds), and the client's source left out when its family differs from
 * the destination's, since an OPEN holds one family (an IPv4 client reaching an IPv6 server
 * through a dual-stack tx_proxy is normal; rx_proxy then connects from its own address).
 */
import { ProtocolError, PepErrorCodes } from './errors.js'
import { formatIp, normalizeIp, parseIp } from './ip.js'
import { ResetReason, type Endpoint } from './wire/frame.js'

/** `ep` with its address normalised; throws a ProtocolError when it is not an IP address. */
export function normalizeEndpoint(ep: Endpoint): Endpoint {
  const ip = parseIp(ep.address)
  if (ip === undefined) {
    throw new ProtocolError(
      PepErrorCodes.MALFORMED_FRAME,
      `not an IP address: ${JSON.stringify(ep.address)}`,
      ResetReason.INTERNAL,
      false
    )
  }
  const n = normalizeIp(ip)
  return { family: n.family, address: formatIp(n), port: ep.port }
}

/** What to put in a client flow's OPEN. */
export interface OpenEndpoints {
  readonly dst: Endpoint
  /** The client's endpoint, or undefined when unknown or of the other family. */
  readonly src: Endpoint | undefined
  /** True when a known source was left out because the families differ. */
  readonly srcDropped: boolean
}

/** Normalise `dst` and `src`; leave `src` out when the families differ. Throws ProtocolError. */
export function openEndpoints(dst: Endpoint, src: Endpoint | undefined): OpenEndpoints {
  const d = normalizeEndpoint(dst)
  const s = src === undefined ? undefined : normalizeEndpoint(src)
  const keep = s !== undefined && s.family === d.family
  return { dst: d, src: keep ? s : undefined, srcDropped: s !== undefined && !keep }
}
