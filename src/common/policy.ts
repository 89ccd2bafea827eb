/**
 * Which flows tx_proxy accelerates: destination ports and subnets, with exclusions that win.
 * Pure; parsed once from network.conf.
 */
import { ConfigError } from './errors.js'
import { normalizeIp, parseIPv4, parseIPv6, parseIp, type IpBytes } from './ip.js'

/** An inclusive port range. */
export interface PortRange {
  readonly from: number
  readonly to: number
}

/** A subnet: address bytes and prefix length. */
export interface Subnet {
  readonly family: 4 | 6
  readonly bytes: Uint8Array
  readonly prefix: number
  /** As written, for logs and iptables. */
  readonly text: string
}

/** The acceleration policy. Empty include lists mean "all". */
export interface Policy {
  readonly ports: readonly PortRange[]
  readonly subnets: readonly Subnet[]
  readonly excludePorts: readonly PortRange[]
  readonly excludeSubnets: readonly Subnet[]
}

function items(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

/** Parse `80,443,5000-5999`. */
export function parsePortList(key: string, text: string): PortRange[] {
  return items(text).map((item) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item)
    const from = m ? Number(m[1]) : NaN
    const to = m?.[2] !== undefined ? Number(m[2]) : from
    if (!m || from < 1 || to > 65535 || from > to) {
      throw new ConfigError(
        key,
        `expected ports like 80,443,5000-5999, got ${JSON.stringify(item)}`
      )
    }
    return { from, to }
  })
}

/**
 * Parse `10.0.0.0/8,2001:db8::/32` (a bare address is a /32 or /128). A subnet written in the
 * IPv4-mapped form (`::ffff:10.0.0.0/104`) is stored as the IPv4 subnet it means, because
 * addresses are normalised to IPv4 before they are compared.
 */
export function parseSubnetList(key: string, text: string): Subnet[] {
  return items(text).map((item) => {
    const parts = item.split('/')
    const addr = parts[0] ?? ''
    const prefixText = parts[1]
    const v4 = parseIPv4(addr)
    const bytes = v4 ?? parseIPv6(addr)
    const family: 4 | 6 = v4 ? 4 : 6
    const max = family === 4 ? 32 : 128
    const prefix =
      parts.length === 1
        ? max
        : parts.length === 2 && /^\d{1,3}$/.test(prefixText ?? '')
          ? Number(prefixText)
          : NaN
    if (!bytes || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
      throw new ConfigError(
        key,
        `expected subnets like 10.0.0.0/8 or 2001:db8::/32, got ${JSON.stringify(item)}`
      )
    }
    if (family === 6 && prefix >= 96) {
      const n = normalizeIp({ family, bytes })
      if (n.family === 4 && bytes[10] === 0xff) {
        return { family: 4, bytes: n.bytes, prefix: prefix - 96, text: item }
      }
    }
    return { family, bytes, prefix, text: item }
  })
}

/** True when the address `ip` (bytes, already normalised) lies in `subnet`. */
export function inSubnetBytes(subnet: Subnet, ip: IpBytes): boolean {
  if (ip.family !== subnet.family) return false
  let bits = subnet.prefix
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff
    if ((ip.bytes[i]! & mask) !== (subnet.bytes[i]! & mask)) return false
  }
  return true
}

/**
 * True when `address` (any textual form) lies in `subnet`. The address is normalised first, so
 * `::ffff:10.1.2.3` is in 10.0.0.0/8.
 */
export function inSubnet(subnet: Subnet, address: string): boolean {
  const ip = parseIp(address)
  return ip !== undefined && inSubnetBytes(subnet, normalizeIp(ip))
}

function inPorts(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some((r) => port >= r.from && port <= r.to)
}

/** Why a policy refused an address: the exclusion that matched, or the include list it missed. */
export type PolicyMiss =
  'excluded_port' | 'excluded_subnet' | 'port_not_included' | 'subnet_not_included'

/** Which rule of `policy` refuses `ip`:`port` (normalised bytes), or undefined if it passes. */
export function policyMiss(policy: Policy, ip: IpBytes, port: number): PolicyMiss | undefined {
  if (inPorts(policy.excludePorts, port)) return 'excluded_port'
  if (policy.excludeSubnets.some((s) => inSubnetBytes(s, ip))) return 'excluded_subnet'
  if (policy.ports.length > 0 && !inPorts(policy.ports, port)) return 'port_not_included'
  if (policy.subnets.length > 0 && !policy.subnets.some((s) => inSubnetBytes(s, ip)))
    return 'subnet_not_included'
  return undefined
}

/** Should a flow to `address`:`port` be accelerated? (Any textual form; normalised first.) */
export function policyAccepts(policy: Policy, address: string, port: number): boolean {
  const ip = parseIp(address)
  return ip !== undefined && policyMiss(policy, normalizeIp(ip), port) === undefined
}
