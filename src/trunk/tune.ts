/**
 * Subflow socket tuning for long fat links: congestion control per subflow (TCP_CONGESTION,
 * decided in congestion.ts), TCP_NOTSENT_LOWAT so that a subflow's backlog shows in user
 * space where the scheduler sees it, and optional fixed socket buffers. Applied right after
 * connect / accept.
 */
import type { Socket } from 'node:net'
import type { SubflowCongestion } from './congestion.js'
import type { Config } from '../common/config/config.js'
import { isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import type { RateProbe } from './rate-loop.js'
import {
  getTcpInfo,
  getUnsentBytes,
  nativeConstants,
  setLinger,
  setMaxPacingRate,
  setSockOptInt,
  socketFd
} from '../../native/index.js'

/** A function that tunes one subflow socket; warns once per distinct failure. */
export type SocketTuner = (socket: Socket) => void

/**
 * Build the tuner for `config` (a no-op when nothing is asked for). `congestion` sets each
 * subflow's congestion control (trunk/congestion.ts: the `trunk.congestion` decision).
 */
export function createSubflowTuner(
  config: Readonly<Config>,
  log: Logger,
  congestion?: SubflowCongestion
): SocketTuner {
  const t = config.trunk
  if (congestion === undefined && t.notsentLowatBytes === 0 && t.socketBufferBytes === 0) {
    return () => undefined
  }
  const warned = new Set<string>()
  const warn = (what: string, err: unknown): void => {
    const message = isPepError(err) ? err.message : String(err)
    if (warned.has(what)) return
    warned.add(what)
    log.warn(`subflow tuning: ${what} failed: ${message}`)
  }
  return (socket: Socket): void => {
    let fd: number
    try {
      fd = socketFd(socket)
    } catch (err) {
      warn('socket fd', err)
      return
    }
    const c = nativeConstants()
    congestion?.apply(fd)
    if (t.notsentLowatBytes > 0) {
      try {
        setSockOptInt(fd, c.SOL_TCP, c.TCP_NOTSENT_LOWAT, t.notsentLowatBytes)
      } catch (err) {
        warn('TCP_NOTSENT_LOWAT', err)
      }
    }
    if (t.socketBufferBytes > 0) {
      try {
        // FORCE variants pass net.core.wmem_max/rmem_max (we run as root on a middlebox).
        setSockOptInt(fd, c.SOL_SOCKET, c.SO_SNDBUFFORCE, t.socketBufferBytes)
        setSockOptInt(fd, c.SOL_SOCKET, c.SO_RCVBUFFORCE, t.socketBufferBytes)
      } catch (err) {
        warn('socket buffers', err)
      }
    }
  }
}

/**
 * The tuner for a subflow of a trunk that turned out to be a long path (LONG_PATH_RTT_MS): its
 * long-path congestion control, when `congestion` has one (trunk.congestion = auto and tandem
 * registered). A socket that is closing is left alone.
 */
export function createLongPathTuner(congestion: SubflowCongestion): SocketTuner {
  return (socket: Socket): void => {
    let fd: number
    try {
      fd = socketFd(socket)
    } catch {
      return // closing: its 'close' event follows
    }
    congestion.applyLongPath(fd)
  }
}

/**
 * SO_LINGER for application sockets: abortive (RST on close, also when the process dies) while
 * a flow runs, graceful once the flow's FIN was handed over. Failures are ignored: a socket
 * that is already gone needs no linger.
 */
export function setAbortiveClose(socket: Socket, abortive: boolean): void {
  try {
    setLinger(socketFd(socket), abortive ? 0 : -1)
  } catch {
    // the socket closed meanwhile
  }
}

/** Bytes a subflow socket holds in the kernel and has not sent yet (SIOCOUTQNSD). */
export function kernelUnsentBytes(socket: Socket): number {
  return getUnsentBytes(socketFd(socket))
}

/** Delivery rate of a subflow socket from TCP_INFO, bytes per second. */
export function deliveryRate(socket: Socket): number {
  return getTcpInfo(socketFd(socket)).deliveryRate
}

/** Microseconds per millisecond (TCP_INFO times are in microseconds). */
const US_PER_MS = 1000

/** The rate controller's probe on real sockets: TCP_INFO in, SO_MAX_PACING_RATE out. */
export const nativeRateProbe: RateProbe = {
  read(socket) {
    const i = getTcpInfo(socketFd(socket))
    return {
      deliveryRateBytesPerSec: i.deliveryRate,
      minRttMs: i.minRttUs / US_PER_MS,
      srttMs: i.rttUs / US_PER_MS,
      // The kernel's packets in flight (tcp_packets_in_flight): segments past a hole that the
      // peer selectively acknowledged, or that are marked lost, are no longer in the network.
      unackedBytes: Math.max(0, i.unacked - i.sacked - i.lost + i.retransOut) * i.sndMss,
      // Delivered segments count what the peer SACKed too, as BBR's rate samples do: bytes_acked
      // jumps by everything past a hole when a retransmission fills it, and a rate measured on
      // it overstated the link by half.
      deliveredBytes: i.delivered * i.sndMss,
      retransmits: i.totalRetrans,
      notsentBytes: i.notsentBytes,
      cwndSegments: i.sndCwnd
    }
  },
  setPacing(socket, bytesPerSec) {
    setMaxPacingRate(socketFd(socket), bytesPerSec)
  }
}
