/**
 * Pure IPv4/IPv6 address text <-> bytes conversion (no node:net in the core).
 */

/** Parse dotted-quad IPv4 text into 4 bytes, or undefined if it is not one. */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!
    if (!/^\d{1,3}$/.test(p)) return undefined
    const v = Number(p)
    if (v > 255 || (p.length > 1 && p.startsWith('0'))) return undefined
    out[i] = v
  }
  return out
}

/** Parse IPv6 text (with `::` and an optional trailing dotted quad) into 16 bytes. */
export function parseIPv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf('%')
  // A zone id (fe80::1%eth0) must name something; it is not part of the address bytes.
  if (zone >= 0 && !/^[A-Za-z0-9_.-]{1,15}$/.test(text.slice(zone + 1))) return undefined
  const s = zone >= 0 ? text.slice(0, zone) : text
  const halves = s.split('::')
  if (halves.length > 2) return undefined
  // An embedded IPv4 address may only end the whole address.
  const parseGroups = (part: string, last: boolean): number[] | undefined => {
    if (part === '') return []
    const groups: number[] = []
    const items = part.split(':')
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      if (last && i === items.length - 1 && item.includes('.')) {
        const v4 = parseIPv4(item)
        if (!v4) return undefined
        groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
        continue
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined
      groups.push(parseInt(item, 16))
    }
    return groups
  }
  const head = parseGroups(halves[0]!, halves.length === 1)
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : []
  if (!head || !tail) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail]
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8
    out[i * 2 + 1] = g & 0xff
  })
  return out
}

/** Dotted-quad text of the 4 bytes at `offset` (caller checks the bounds). */
export function formatIPv4(bytes: Uint8Array, offset = 0): string {
  return `${bytes[offset]!}.${bytes[offset + 1]!}.${bytes[offset + 2]!}.${bytes[offset + 3]!}`
}

/**
 * RFC 5952 text of the 16 bytes at `offset`, exactly as Node (libuv) prints addresses:
 * lowercase, no leading zeros, the longest run of two or more zero groups (the first one on a
 * tie) as `::`, and dotted IPv4 for `::ffff:a.b.c.d` and `::a.b.c.d` with a non-zero high word.
 */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const words: number[] = []
  for (let i = 0; i < 8; i++) {
    words.push((bytes[offset + 2 * i]! << 8) | bytes[offset + 2 * i + 1]!)
  }
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) {
      j++
    }
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  if (bestLength < 2) {
    bestStart = -1
  }
  // libuv's rule (src/inet.c inet_ntop6), which Node uses for every socket address.
  if (bestStart === 0 && (bestLength === 6 || (bestLength === 5 && words[5] === 0xffff))) {
    const prefix = bestLength === 5 ? '::ffff:' : '::'
    return prefix + formatIPv4(bytes, offset + 12)
  }
  let text = ''
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += '::'
      i += bestLength - 1
      continue
    }
    if (text !== '' && !text.endsWith(':')) {
      text += ':'
    }
    text += words[i]!.toString(16)
  }
  return text
}

/** The family of an address text, or undefined if it is neither. */
export function ipFamily(text: string): 4 | 6 | undefined {
  if (parseIPv4(text)) return 4
  if (parseIPv6(text)) return 6
  return undefined
}

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
export interface IpBytes {
  readonly family: 4 | 6
  readonly bytes: Uint8Array
}

/**
 * Parse any textual form of an address: dotted quad, IPv6 in every spelling (`::ffff:7f00:1`,
 * `::ffff:127.0.0.1`, `0:0:0:0:0:ffff:7f00:0001`), optionally in brackets (`[::1]`), with a zone
 * id (which is not part of the address bytes). Undefined for anything else, host names included.
 */
export function parseIp(text: string): IpBytes | undefined {
  const t = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  const v4 = parseIPv4(t)
  if (v4) return { family: 4, bytes: v4 }
  const v6 = parseIPv6(t)
  return v6 ? { family: 6, bytes: v6 } : undefined
}

function zeroUpTo(bytes: Uint8Array, end: number): boolean {
  for (let i = 0; i < end; i++) if (bytes[i] !== 0) return false
  return true
}

/**
 * The address the kernel would really reach: IPv4-mapped `::ffff:a.b.c.d` and IPv4-compatible
 * `::a.b.c.d` become the IPv4 address they embed, because a connect to either reaches that IPv4
 * host, so every IPv4 rule must see them as IPv4. `::` and `::1` stay IPv6 (unspecified and
 * loopback, not 0.0.0.0 and 0.0.0.1). Everything else is returned unchanged.
 */
export function normalizeIp(ip: IpBytes): IpBytes {
  const b = ip.bytes
  if (ip.family !== 6 || b.length !== 16) return ip
  const mapped = zeroUpTo(b, 10) && b[10] === 0xff && b[11] === 0xff
  const compatible = zeroUpTo(b, 12) && !(zeroUpTo(b, 15) && (b[15] === 0 || b[15] === 1))
  return mapped || compatible ? { family: 4, bytes: b.slice(12, 16) } : ip
}

/** Text of address bytes (dotted quad, or RFC 5952 as Node prints it). */
export function formatIp(ip: IpBytes): string {
  return ip.family === 4 ? formatIPv4(ip.bytes) : formatIPv6(ip.bytes)
}

/** True when both are the same address, byte for byte (normalise them first). */
export function sameIp(a: IpBytes, b: IpBytes): boolean {
  if (a.family !== b.family || a.bytes.length !== b.bytes.length) return false
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false
  return true
}

/**
 * An address as the kernel reports it (`socket.remoteAddress`), normalised: a dual-stack
 * socket's `::ffff:a.b.c.d` becomes `a.b.c.d`. Text that is not an address is returned as it
 * is, with family 4.
 */
export function normalizeAddress(text: string): { address: string; family: 4 | 6 } {
  const ip = parseIp(text)
  if (ip === undefined) return { address: text, family: 4 }
  const n = normalizeIp(ip)
  return { address: formatIp(n), family: n.family }
}
