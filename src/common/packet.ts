/**
 * IPv4/IPv6 + TCP header parsing for packets taken from NFQUEUE (the addon
 * hands over raw bytes and every decision about them is made here, in pure code that unit
 * tests reach without root or a kernel).
 *
 * Total: any input returns a `ParsedPacket` or `undefined`, never throws. `undefined` means
 * "not a TCP segment whose headers we can read": truncated, malformed, another protocol, or
 * a fragment.
 */
import { formatIPv4, formatIPv6 } from './ip.js'

/** IP protocol number of TCP. */
const IPPROTO_TCP = 6
/** IPv6 next-header values of the extension headers we step over. */
const IPV6_HOP_BY_HOP = 0
const IPV6_ROUTING = 43
const IPV6_FRAGMENT = 44
const IPV6_AUTH = 51
const IPV6_DEST_OPTS = 60
/** Length of the fixed IPv6 header, in bytes. */
const IPV6_HEADER_BYTES = 40
/** Shortest IPv4 header (IHL 5), in bytes. */
const IPV4_MIN_HEADER_BYTES = 20
/** Shortest TCP header (data offset 5), in bytes. */
const TCP_MIN_HEADER_BYTES = 20
/**
 * Most IPv6 extension headers we walk before giving up. Real packets carry one or two; the
 * cap bounds the work a crafted packet can cause.
 */
const IPV6_MAX_EXTENSION_HEADERS = 8

/** The TCP flags the proxy decides on. */
export interface TcpFlags {
  /** SYN: opens a connection. */
  readonly syn: boolean
  /** ACK: acknowledgement number is valid. */
  readonly ack: boolean
  /** FIN: sender has finished sending. */
  readonly fin: boolean
  /** RST: connection reset. */
  readonly rst: boolean
}

/** The IP and TCP header fields of one packet. */
export interface ParsedPacket {
  /** IP version. */
  readonly family: 4 | 6
  /** Source address in text form (IPv6 compressed the way Node prints it). */
  readonly srcAddress: string
  /** Destination address in text form (IPv6 compressed the way Node prints it). */
  readonly dstAddress: string
  /** TCP source port. */
  readonly srcPort: number
  /** TCP destination port. */
  readonly dstPort: number
  /** TCP flags. */
  readonly flags: TcpFlags
  /** TCP sequence number (unsigned 32-bit). */
  readonly seq: number
  /** Bytes from the start of the packet to the TCP header (IPv6: fixed plus extension headers). */
  readonly ipHeaderLength: number
  /**
   * Length of the whole IP packet in bytes, as its header declares it. It can exceed
   * `buf.length` when NFQUEUE copied only a prefix. A GSO packet larger than 64 KiB carries 0
   * in its length field; we then report the bytes we have.
   */
  readonly totalLength: number
}

/**
 * Parses the IP and TCP headers at the start of `buf`.
 *
 * The TCP header, options included, must be complete in `buf`; the payload need not be.
 * Returns `undefined` for truncated or malformed headers, non-TCP packets and fragments.
 */
export function parseIpTcp(buf: Uint8Array): ParsedPacket | undefined {
  if (buf.length < 1) {
    return undefined
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const version = buf[0]! >> 4
  if (version === 4) {
    return parseIPv4(buf, view)
  }
  if (version === 6) {
    return parseIPv6(buf, view)
  }
  return undefined
}

function parseIPv4(buf: Uint8Array, view: DataView): ParsedPacket | undefined {
  if (buf.length < IPV4_MIN_HEADER_BYTES) {
    return undefined
  }
  const ipHeaderLength = (buf[0]! & 0x0f) * 4
  if (ipHeaderLength < IPV4_MIN_HEADER_BYTES || ipHeaderLength > buf.length) {
    return undefined
  }
  const declaredLength = view.getUint16(2)
  const totalLength = declaredLength === 0 ? buf.length : declaredLength
  if (totalLength < ipHeaderLength + TCP_MIN_HEADER_BYTES) {
    return undefined
  }
  // More-fragments flag or a non-zero offset: later fragments hold no TCP header, and a
  // first fragment is not something the proxy should act on either.
  if ((view.getUint16(6) & 0x3fff) !== 0) {
    return undefined
  }
  if (buf[9] !== IPPROTO_TCP) {
    return undefined
  }
  return parseTcp(buf, view, ipHeaderLength, {
    family: 4,
    srcAddress: formatIPv4(buf, 12),
    dstAddress: formatIPv4(buf, 16),
    totalLength
  })
}

function parseIPv6(buf: Uint8Array, view: DataView): ParsedPacket | undefined {
  if (buf.length < IPV6_HEADER_BYTES) {
    return undefined
  }
  const payloadLength = view.getUint16(4)
  const totalLength = payloadLength === 0 ? buf.length : IPV6_HEADER_BYTES + payloadLength
  let nextHeader = buf[6]!
  let offset = IPV6_HEADER_BYTES
  for (let walked = 0; nextHeader !== IPPROTO_TCP; walked++) {
    if (walked === IPV6_MAX_EXTENSION_HEADERS || offset + 2 > buf.length) {
      return undefined
    }
    switch (nextHeader) {
      case IPV6_HOP_BY_HOP:
      case IPV6_ROUTING:
      case IPV6_DEST_OPTS:
        // Length in 8-octet units, not counting the first 8 octets.
        nextHeader = buf[offset]!
        offset += (buf[offset + 1]! + 1) * 8
        break
      case IPV6_AUTH:
        // Length in 4-octet units, not counting the first 2 units (RFC 4302).
        nextHeader = buf[offset]!
        offset += (buf[offset + 1]! + 2) * 4
        break
      case IPV6_FRAGMENT:
      default:
        // Fragments, No Next Header (59), ESP and every other protocol: no TCP header to read.
        return undefined
    }
  }
  if (totalLength < offset + TCP_MIN_HEADER_BYTES) {
    return undefined
  }
  return parseTcp(buf, view, offset, {
    family: 6,
    srcAddress: formatIPv6(buf, 8),
    dstAddress: formatIPv6(buf, 24),
    totalLength
  })
}

/** The IP-level fields, filled in before the TCP header is read. */
interface IpPart {
  readonly family: 4 | 6
  readonly srcAddress: string
  readonly dstAddress: string
  readonly totalLength: number
}

function parseTcp(
  buf: Uint8Array,
  view: DataView,
  offset: number,
  ip: IpPart
): ParsedPacket | undefined {
  if (offset + TCP_MIN_HEADER_BYTES > buf.length) {
    return undefined
  }
  const tcpHeaderLength = (buf[offset + 12]! >> 4) * 4
  if (
    tcpHeaderLength < TCP_MIN_HEADER_BYTES ||
    offset + tcpHeaderLength > buf.length ||
    offset + tcpHeaderLength > ip.totalLength
  ) {
    return undefined
  }
  const flagBits = buf[offset + 13]!
  return {
    family: ip.family,
    srcAddress: ip.srcAddress,
    dstAddress: ip.dstAddress,
    srcPort: view.getUint16(offset),
    dstPort: view.getUint16(offset + 2),
    flags: {
      fin: (flagBits & 0x01) !== 0,
      syn: (flagBits & 0x02) !== 0,
      rst: (flagBits & 0x04) !== 0,
      ack: (flagBits & 0x10) !== 0
    },
    seq: view.getUint32(offset + 4),
    ipHeaderLength: offset,
    totalLength: ip.totalLength
  }
}

export { formatIPv4, formatIPv6 }
