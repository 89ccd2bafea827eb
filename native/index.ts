/**
 * The only loader of the native addon: the binding is typed and cast once, here, so no `any`
 * leaks, and a missing build becomes one clear NativeError at startup.
 *
 * `NativeBinding` describes every export of `tandem_native.node` and is applied with a single
 * cast in `loadNative`, so no `any` leaks out. Nothing is loaded at import time: a missing
 * build surfaces as `NativeError('addon not built: run npm run build:native')` when a caller
 * first needs the addon.
 *
 * The C++ side throws plain `Error`s carrying a positive `errno` and a `code` such as
 * `'ENOENT'`; the wrappers below turn those into `NativeError` (with `errno`). Argument
 * errors stay `TypeError`s: they are bugs, not conditions to handle.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { errorMessage, NativeError } from '../src/common/errors.js'

/** IP version of a socket or address. */
export type IpFamily = 4 | 6

/** An IP address and TCP port. */
export interface SocketAddressInfo {
  /** Address in text form, as Node prints it. */
  readonly address: string
  /** TCP port. */
  readonly port: number
}

/** The fields of Linux `struct tcp_info` the schedulers and stats use. */
export interface TcpInfo {
  /** TCP state (`TCP_ESTABLISHED` is 1). */
  readonly state: number
  /** Smoothed round-trip time, microseconds. */
  readonly rttUs: number
  /** Round-trip time variance, microseconds. */
  readonly rttVarUs: number
  /** Lowest round-trip time seen, microseconds. */
  readonly minRttUs: number
  /** Congestion window, segments. */
  readonly sndCwnd: number
  /** Sender maximum segment size, bytes. */
  readonly sndMss: number
  /** Retransmitted segments over the connection's life. */
  readonly totalRetrans: number
  /** Segments currently considered lost. */
  readonly lost: number
  /** Segments sent and not yet acknowledged. */
  readonly unacked: number
  /** Segments selectively acknowledged (received past a hole). */
  readonly sacked: number
  /** Retransmitted segments not yet acknowledged (`tcpi_retrans`). */
  readonly retransOut: number
  /** Most recent delivery rate estimate, bytes per second (`tcpi_delivery_rate`). */
  readonly deliveryRate: number
  /** Bytes acknowledged by the peer over the connection's life. */
  readonly bytesAcked: number
  /** Bytes received from the peer over the connection's life. */
  readonly bytesReceived: number
  /** Bytes written by the application and not yet sent. */
  readonly notsentBytes: number
  /** Pacing rate the kernel applies now, bytes per second (`tcpi_pacing_rate`). */
  readonly pacingRate: number
  /** SO_MAX_PACING_RATE of the socket, bytes per second; 2^64 - 1 when uncapped. */
  readonly maxPacingRate: number
  /** Segments delivered (cumulatively or selectively acknowledged) over the connection's life. */
  readonly delivered: number
  /** Bytes sent over the connection's life, retransmissions included. */
  readonly bytesSent: number
  /** Bytes retransmitted over the connection's life. */
  readonly bytesRetrans: number
  /** True when the latest delivery rate sample was limited by the application, not the path. */
  readonly deliveryRateAppLimited: boolean
}

/** Socket option levels and names the addon exports for `setSockOptInt`. */
export interface NativeConstants {
  /** Level of the generic socket options (SO_*). */
  readonly SOL_SOCKET: number
  /** Level of the IPv4 options (IP_*). */
  readonly SOL_IP: number
  /** Level of the IPv6 options (IPV6_*). */
  readonly SOL_IPV6: number
  /** Level of the TCP options (TCP_*); equals IPPROTO_TCP. */
  readonly SOL_TCP: number
  /** Send buffer size, bytes (the kernel doubles the value; capped by wmem_max). */
  readonly SO_SNDBUF: number
  /** Receive buffer size, bytes (the kernel doubles the value; capped by rmem_max). */
  readonly SO_RCVBUF: number
  /** SO_SNDBUF ignoring wmem_max; needs CAP_NET_ADMIN. */
  readonly SO_SNDBUFFORCE: number
  /** SO_RCVBUF ignoring rmem_max; needs CAP_NET_ADMIN. */
  readonly SO_RCVBUFFORCE: number
  /** Netfilter/routing mark of the socket's packets; needs CAP_NET_ADMIN. */
  readonly SO_MARK: number
  /** Cap on the socket's pacing rate, bytes per second (use `setMaxPacingRate`). */
  readonly SO_MAX_PACING_RATE: number
  /** Allow binding to non-local IPv4 addresses (TPROXY); needs CAP_NET_ADMIN. */
  readonly IP_TRANSPARENT: number
  /** Allow binding to non-local IPv6 addresses (TPROXY); needs CAP_NET_ADMIN. */
  readonly IPV6_TRANSPARENT: number
  /** Disable Nagle: 1 sends small segments at once. */
  readonly TCP_NODELAY: number
  /** Unsent bytes above which the socket stops reporting writable, bytes. */
  readonly TCP_NOTSENT_LOWAT: number
}

/** Options of `transparentConnect`. */
export interface TransparentConnectOptions {
  /** IP version of both addresses. */
  readonly family: IpFamily
  /** Source address to bind; need not be local (IP_TRANSPARENT). */
  readonly localAddress: string
  /** Source port to bind; 0 lets the kernel choose. */
  readonly localPort: number
  /** Destination address. */
  readonly remoteAddress: string
  /** Destination port. */
  readonly remotePort: number
  /** SO_MARK for the socket (routing/iptables), unsigned 32-bit. */
  readonly mark?: number
  /** Give up (ETIMEDOUT) after this many milliseconds. */
  readonly timeoutMs: number
}

/** What to do with a queued packet. */
export type NfVerdict = 'accept' | 'drop' | 'repeat'

/** Options of an NFQUEUE queue. */
export interface NfQueueOptions {
  /** Bytes of each packet copied to user space (1..65535; 0 means 65535). */
  readonly copyRange: number
  /** Packets the kernel holds for this queue before it drops (or, with failOpen, accepts). */
  readonly maxLen: number
  /** Accept packets instead of dropping them when the queue is full. */
  readonly failOpen: boolean
  /** Netlink socket receive buffer, bytes (SO_RCVBUFFORCE); 0 keeps the default. */
  readonly rcvBufBytes: number
}

/** One queued packet as the addon delivers it. */
export interface NfQueuePacket {
  /** Packet id, to pass back in a verdict. */
  readonly id: number
  /** Link-layer protocol (ETH_P_IP 0x0800, ETH_P_IPV6 0x86dd). */
  readonly hwProtocol: number
  /** Netfilter mark when queued. */
  readonly mark: number
  /** Input interface index, 0 if none. */
  readonly indev: number
  /** Output interface index, 0 if none. */
  readonly outdev: number
  /** Physical input interface index (bridges), 0 if none. */
  readonly physindev: number
  /** Physical output interface index (bridges), 0 if none. */
  readonly physoutdev: number
  /** Receive timestamp, milliseconds since the epoch, when the kernel has one. */
  readonly timestampMs?: number
  /** The IP packet, truncated to the queue's copy range. */
  readonly payload: Buffer
}

/** Counters of one queue. */
export interface NfQueueStats {
  /** False once closed. */
  readonly open: boolean
  /** Packets delivered to JS. */
  readonly packets: number
  /** Calls of onPackets. */
  readonly batches: number
  /** ENOBUFS results seen on the netlink socket (messages the kernel dropped). */
  readonly enobufs: number
  /** Other receive errors. */
  readonly recvErrors: number
  /** Packets that could not be turned into JS objects. */
  readonly callbackErrors: number
}

/** An open queue (the addon's `NfQueue` instance). */
export interface NfQueueHandle {
  /** Verdict for one packet; `mark` sets the packet mark (nfq_set_verdict2). */
  verdict(id: number, verdict: NfVerdict, mark?: number): void
  /** Verdict for every queued packet with an id up to `maxId`. */
  verdictBatch(maxId: number, verdict: NfVerdict, mark?: number): void
  /** Destroys the queue and stops reading. Idempotent. */
  close(): void
  /** Counter snapshot. */
  stats(): NfQueueStats
}

/** The addon's `NfQueue` class; tests substitute `FakeNfqueue`. */
export type NfQueueClass = new (
  queueNum: number,
  options: NfQueueOptions,
  onPackets: (packets: NfQueuePacket[]) => void,
  onError?: (err: Error) => void
) => NfQueueHandle

/** Every export of `tandem_native.node`. */
export interface NativeBinding {
  /** SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST of a redirected socket. */
  getOriginalDst(fd: number, family: IpFamily): SocketAddressInfo
  /** Sets TCP_CONGESTION. */
  setCongestion(fd: number, name: string): void
  /** Reads TCP_CONGESTION. */
  getCongestion(fd: number): string
  /** Reads TCP_INFO. */
  getTcpInfo(fd: number): TcpInfo
  /** Bytes queued in the socket and not yet sent (SIOCOUTQNSD). */
  getUnsentBytes(fd: number): number
  /** setsockopt with an int value. */
  setSockOptInt(fd: number, level: number, optname: number, value: number): void
  setLinger(fd: number, seconds: number): void
  /** SO_MAX_PACING_RATE as a 64-bit value, bytes per second; 0 lifts the cap. */
  setMaxPacingRate(fd: number, bytesPerSec: number): void
  /** getsockopt of an int value. */
  getSockOptInt(fd: number, level: number, optname: number): number
  /** Option levels and names. */
  readonly constants: NativeConstants
  /** Non-blocking IP_TRANSPARENT connect; resolves with the connected fd. */
  transparentConnect(options: TransparentConnectOptions): Promise<number>
  /** NFQUEUE reader class. */
  readonly NfQueue: NfQueueClass
  /** One datagram `message` to the AF_UNIX socket `socketPath` ('/path' or '@abstract'). */
  sdNotify(socketPath: string, message: string): void
}

/** Where node-gyp puts the addon, relative to the project root. */
const ADDON_RELATIVE_PATH = join('native', 'build', 'Release', 'tandem_native.node')

/**
 * The nearest directory at or above `startDir` holding a package.json. This file runs from
 * `native/` (sources) and from `dist/native/` (compiled), so the addon is found from the root.
 */
export function findProjectRoot(startDir: string): string | undefined {
  let dir = startDir
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) {
      return dir
    }
    const parent = dirname(dir)
    if (parent === dir) {
      return undefined
    }
    dir = parent
  }
}

/** Absolute path of the built addon (it may not exist). */
export function nativeAddonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  return join(findProjectRoot(here) ?? here, ADDON_RELATIVE_PATH)
}

/**
 * Loads the addon (Node caches it after the first call).
 * @throws NativeError `addon not built: run npm run build:native` when the file is missing.
 */
export function loadNative(addonPath: string = nativeAddonPath()): NativeBinding {
  if (!existsSync(addonPath)) {
    throw new NativeError('addon not built: run npm run build:native')
  }
  const require = createRequire(import.meta.url)
  try {
    return require(addonPath) as NativeBinding
  } catch (err) {
    const reason = errorMessage(err)
    throw new NativeError(`addon failed to load (${reason}): run npm run build:native`)
  }
}

/**
 * `err` as a NativeError when it is a failed system call from the addon (it carries a numeric
 * `errno`); any other value, such as a TypeError for a bad argument, is returned unchanged.
 */
export function toNativeError(err: unknown, operation: string): unknown {
  if (err instanceof Error && 'errno' in err && typeof err.errno === 'number') {
    return new NativeError(`${operation}: ${err.message}`, err.errno)
  }
  return err
}

/**
 * The addon once loaded from its default place. A process-wide, immutable resource (as Node's
 * own require cache is): finding and loading it costs file lookups, and the scheduler calls the
 * addon for every frame.
 */
let defaultBinding: NativeBinding | undefined

function callNative<T>(operation: string, call: (binding: NativeBinding) => T): T {
  defaultBinding ??= loadNative()
  const binding = defaultBinding
  try {
    return call(binding)
  } catch (err) {
    throw toNativeError(err, operation)
  }
}

/**
 * Where a REDIRECTed or DNATed connection was originally going.
 * @throws NativeError errno ENOENT when the socket was not redirected (no conntrack entry).
 */
export function getOriginalDst(fd: number, family: IpFamily): SocketAddressInfo {
  return callNative('getOriginalDst', (b) => b.getOriginalDst(fd, family))
}

/**
 * Selects the congestion control module (`'bbr'`, `'reno'`, ...).
 * @throws NativeError errno ENOENT for an unknown module, EPERM for one not in
 * net.ipv4.tcp_allowed_congestion_control without CAP_NET_ADMIN.
 */
export function setCongestion(fd: number, name: string): void {
  callNative('setCongestion', (b) => {
    b.setCongestion(fd, name)
  })
}

/** The socket's congestion control module. */
export function getCongestion(fd: number): string {
  return callNative('getCongestion', (b) => b.getCongestion(fd))
}

/** A TCP_INFO snapshot of the socket. */
export function getTcpInfo(fd: number): TcpInfo {
  return callNative('getTcpInfo', (b) => b.getTcpInfo(fd))
}

/** Bytes in the socket's send queue the kernel has not sent yet (SIOCOUTQNSD). */
export function getUnsentBytes(fd: number): number {
  return callNative('getUnsentBytes', (b) => b.getUnsentBytes(fd))
}

/** setsockopt(fd, level, optname, int value); levels and names are in `nativeConstants()`. */
export function setSockOptInt(fd: number, level: number, optname: number, value: number): void {
  callNative('setSockOptInt', (b) => {
    b.setSockOptInt(fd, level, optname, value)
  })
}

/**
 * SO_LINGER: `seconds` 0 makes close() (also the kernel's, when the process dies) send RST
 * instead of FIN; a negative value restores the default.
 */
export function setLinger(fd: number, seconds: number): void {
  callNative('setLinger', (b) => {
    b.setLinger(fd, seconds)
  })
}

/**
 * Caps the socket's pacing rate (SO_MAX_PACING_RATE), bytes per second; 0 lifts the cap. Works
 * with every congestion control (Linux 4.13 and later pace inside TCP).
 */
export function setMaxPacingRate(fd: number, bytesPerSec: number): void {
  callNative('setMaxPacingRate', (b) => {
    b.setMaxPacingRate(fd, bytesPerSec)
  })
}

/** getsockopt(fd, level, optname) of an int option. */
export function getSockOptInt(fd: number, level: number, optname: number): number {
  return callNative('getSockOptInt', (b) => b.getSockOptInt(fd, level, optname))
}

/** Socket option levels and names, as compiled into the addon. */
export function nativeConstants(): NativeConstants {
  return loadNative().constants
}

/**
 * sd_notify(3): sends `message` (newline-separated `KEY=VALUE` lines such as `READY=1`) to the
 * service manager's socket `socketPath` (the value of $NOTIFY_SOCKET; '@name' is an abstract
 * socket). A datagram, because that is what systemd reads there and what Node cannot send.
 * @throws NativeError with errno ENOENT, ECONNREFUSED... when nobody listens there.
 */
export function sdNotify(socketPath: string, message: string): void {
  callNative('sdNotify', (b) => {
    b.sdNotify(socketPath, message)
  })
}

/**
 * Connects from a possibly foreign source address (IP_TRANSPARENT / IPV6_TRANSPARENT, needs
 * CAP_NET_ADMIN). Resolves with the connected fd; wrap it with
 * `new net.Socket({ fd, readable: true, writable: true })`.
 * @throws NativeError with errno ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT (after `timeoutMs`),
 * EADDRINUSE, EPERM...; the socket is closed on failure.
 */
export async function transparentConnect(options: TransparentConnectOptions): Promise<number> {
  const binding = loadNative()
  try {
    return await binding.transparentConnect(options)
  } catch (err) {
    throw toNativeError(err, 'transparentConnect')
  }
}

/**
 * The file descriptor behind a connected `net.Socket` (Node keeps it on the private
 * `_handle`, which is why this one cast lives here).
 * @throws NativeError when the socket has no descriptor (not yet connected, or destroyed).
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { readonly _handle?: { readonly fd?: unknown } | null })
    ._handle
  const fd = handle?.fd
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new NativeError('socket has no file descriptor (not connected, or destroyed)')
  }
  return fd
}
