/**
 * May rx_proxy connect to this destination? The rules that keep it from being an open relay,
 * pure: the destination is normalised first (an IPv4-mapped or IPv4-compatible IPv6 address is
 * the IPv4 address it embeds, since that is what a connect reaches), then compared by bytes.
 *
 * Some refusals do not depend on `rx_proxy.deny_subnets`, so that a custom list cannot drop
 * them: port 0, the unspecified addresses, loopback (unless `rx_proxy.allow_loopback`), IPv6
 * prefixes that embed an IPv4 address (mapped, compatible, SIIT, NAT64), and this box's own
 * addresses. See docs/security.md.
 */
import { formatIp, normalizeIp, parseIp, sameIp, type IpBytes } from './ip.js'
import { inSubnetBytes, parseSubnetList, policyMiss, type Policy, type Subnet } from './policy.js'

/** Why a destination was refused: stable codes, used in counters, logs and the RESET text. */
export const DestinationRefusal = {
  /** Port 0 is no service; Linux would pick something else or fail. */
  PORT_ZERO: 'DST_PORT_ZERO',
  /** Not an IP address at all. */
  BAD_ADDRESS: 'DST_BAD_ADDRESS',
  /** 0.0.0.0/8 or `::`: a connect there reaches this box itself. */
  UNSPECIFIED: 'DST_UNSPECIFIED',
  /** 127.0.0.0/8 or `::1`, refused unless `rx_proxy.allow_loopback = true`. */
  LOOPBACK: 'DST_LOOPBACK',
  /** An IPv6 form that still embeds an IPv4 address after normalisation (NAT64, SIIT...). */
  EMBEDDED_IPV4: 'DST_EMBEDDED_IPV4',
  /** One of this box's own addresses, on any interface. */
  OWN_ADDRESS: 'DST_OWN_ADDRESS',
  /** In `rx_proxy.deny_subnets`. */
  DENIED_SUBNET: 'DST_DENIED_SUBNET',
  /** Outside `rx_proxy.allow_subnets`. */
  NOT_ALLOWED_SUBNET: 'DST_NOT_ALLOWED_SUBNET',
  /** Outside `rx_proxy.allow_ports`. */
  NOT_ALLOWED_PORT: 'DST_NOT_ALLOWED_PORT'
} as const

/** One of the refusal codes. */
export type DestinationRefusalCode = (typeof DestinationRefusal)[keyof typeof DestinationRefusal]

const UNSPECIFIED = parseSubnetList('built-in', '0.0.0.0/8, ::/128')
const LOOPBACK = parseSubnetList('built-in', '127.0.0.0/8, ::1/128')
/**
 * IPv6 prefixes whose addresses carry an IPv4 address: mapped and compatible (none remain after
 * normalisation, refused anyway in case that ever changes), SIIT's IPv4-translated, and the
 * NAT64 prefixes (well-known and local-use), which a translator on the path would turn into any
 * IPv4 address, past every IPv4 rule.
 */
const EMBEDDED_IPV4: readonly Subnet[] = [
  ...parseSubnetList('built-in', '::/96, ::ffff:0:0:0/96, 64:ff9b::/96, 64:ff9b:1::/48'),
  // Written out: parseSubnetList would turn the mapped prefix into 0.0.0.0/0.
  {
    family: 6,
    bytes: Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0),
    prefix: 96,
    text: '::ffff:0:0/96'
  }
]

/** What the guard needs besides the destination. */
export interface DestinationGuardOptions {
  /** `rx_proxy.allow_subnets`, `allow_ports` and `deny_subnets`. */
  readonly policy: Policy
  /** `rx_proxy.allow_loopback`: lift the loopback refusal (tests, single-box use). */
  readonly allowLoopback: boolean
  /** This box's addresses now (every interface, loopback included), in any textual form. */
  readonly ownAddresses: () => readonly string[]
}

/** The verdict on one destination. */
export type DestinationVerdict =
  | {
      readonly ok: true
      /** The normalised address to connect to (exactly what was checked). */
      readonly address: string
      readonly family: 4 | 6
    }
  | {
      readonly ok: false
      readonly code: DestinationRefusalCode
      /** One human phrase: what the destination is and which rule refused it. */
      readonly why: string
    }

function any(subnets: readonly Subnet[], ip: IpBytes): Subnet | undefined {
  return subnets.find((s) => inSubnetBytes(s, ip))
}

/** Decide whether rx_proxy may connect to `address`:`port` (any textual form of the address). */
export function checkDestination(
  address: string,
  port: number,
  opts: DestinationGuardOptions
): DestinationVerdict {
  const refuse = (code: DestinationRefusalCode, why: string): DestinationVerdict => ({
    ok: false,
    code,
    why
  })
  const parsed = parseIp(address)
  if (parsed === undefined) return refuse(DestinationRefusal.BAD_ADDRESS, 'not an IP address')
  const ip = normalizeIp(parsed)
  const text = formatIp(ip)
  const as = text === address ? '' : ` (${text})`
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return refuse(DestinationRefusal.PORT_ZERO, `port ${port} is no service`)
  }
  if (any(UNSPECIFIED, ip)) {
    return refuse(DestinationRefusal.UNSPECIFIED, `unspecified address${as} reaches this box`)
  }
  const loopback = any(LOOPBACK, ip) !== undefined
  if (loopback && !opts.allowLoopback) {
    return refuse(
      DestinationRefusal.LOOPBACK,
      `loopback address${as} (only rx_proxy.allow_loopback = true permits it)`
    )
  }
  const embedded = any(EMBEDDED_IPV4, ip)
  if (embedded !== undefined && !loopback) {
    return refuse(DestinationRefusal.EMBEDDED_IPV4, `embeds an IPv4 address (${embedded.text})`)
  }
  // Loopback addresses are on `lo`; when loopback is allowed, they are not refused as own ones.
  if (!loopback) {
    for (const own of opts.ownAddresses()) {
      const o = parseIp(own)
      if (o !== undefined && sameIp(normalizeIp(o), ip)) {
        return refuse(DestinationRefusal.OWN_ADDRESS, `this box's own address${as}`)
      }
    }
  }
  switch (policyMiss(opts.policy, ip, port)) {
    case 'excluded_subnet':
    case 'excluded_port':
      return refuse(DestinationRefusal.DENIED_SUBNET, `in rx_proxy.deny_subnets${as}`)
    case 'subnet_not_included':
      return refuse(DestinationRefusal.NOT_ALLOWED_SUBNET, `outside rx_proxy.allow_subnets${as}`)
    case 'port_not_included':
      return refuse(DestinationRefusal.NOT_ALLOWED_PORT, `port outside rx_proxy.allow_ports`)
    case undefined:
      return { ok: true, address: text, family: ip.family }
  }
}
