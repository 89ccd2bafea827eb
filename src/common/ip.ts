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

/** Format 4 bytes as dotted quad. */
export function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
}

/** Format 16 bytes as RFC 5952 text (longest zero run compressed, lower case, like node). */
export function formatIPv6(b: Uint8Array): string {
  const groups: number[] = []
  for (let i = 0; i < 8; i++) groups.push((b[i * 2]! << 8) | b[i * 2 + 1]!)
  // IPv4-mapped addresses print as ::ffff:a.b.c.d, as node does.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(b.subarray(12))}`
  }
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  const left = hex.slice(0, bestStart).join(':')
  const right = hex.slice(bestStart + bestLen).join(':')
  return `${left}::${right}`
}

/** The family of an address text, or undefined if it is neither. */
export function ipFamily(text: string): 4 | 6 | undefined {
  if (parseIPv4(text)) return 4
  if (parseIPv6(text)) return 6
  return undefined
}
