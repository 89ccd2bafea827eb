/** An address and a port as logs and tools print them. */

/** Anything with an address and a port (a wire `Endpoint`, a socket's remote end). */
export interface HostAndPort {
  readonly address?: string | undefined
  readonly port?: number | undefined
}

/**
 * `1.2.3.4:80`, or `[::1]:80` for IPv6 (any address with a colon), so the port cannot be read
 * as part of the address. A missing address or port prints as `?`.
 */
export function formatEndpoint(ep: HostAndPort): string {
  const host = ep.address ?? '?'
  return `${host.includes(':') ? `[${host}]` : host}:${ep.port ?? '?'}`
}
