/** `sendTo`: one connection that sends a source, half-closes and reads the reply. */
import { createHash, type Hash } from 'node:crypto'
import net from 'node:net'
import { performance } from 'node:perf_hooks'

import { setCongestion, socketFd } from '../../../native/index.js'
import { formatEndpoint } from '../../common/endpoint.js'
import { PepError, PepErrorCodes } from '../../common/errors.js'
import type { WriteSize } from './args.js'
import { createWriteSizer, DEFAULT_WRITE_BYTES } from './data.js'
import { errnoCode, TransferError, type TransferPhase } from './outcome.js'
import { goodput, pump, round3, roundMs, SocketMonitor } from './socket.js'
import type { ByteSource } from './sources.js'

/** Options of `sendTo`. */
export interface SendOptions {
  /** Host to connect to. */
  readonly host: string
  /** TCP port to connect to. */
  readonly port: number
  /** The bytes to send; `sendTo` does not close it. */
  readonly source: ByteSource
  /** How to size `write()` calls. Default: fixed `DEFAULT_WRITE_BYTES`. */
  readonly writeSize?: WriteSize | undefined
  /** Seed of the random write sizes. Default 1. */
  readonly writeSeed?: number | undefined
  /**
   * After sending, shut down only the write side and read the reply until EOF (default true).
   * When false, close the socket as soon as the data is handed to the kernel; the reply is
   * whatever arrived by then.
   */
  readonly halfClose?: boolean | undefined
  /** Overall deadline in ms, connect included; none when undefined. */
  readonly timeoutMs?: number | undefined
  /** Local address to bind before connecting. */
  readonly localAddress?: string | undefined
  /** Called after each write with the total bytes written so far. */
  readonly onProgress?: ((sentBytes: number) => void) | undefined
  /** TCP congestion control for this connection (TCP_CONGESTION, e.g. 'cubic'); default: the system's. */
  readonly congestion?: string | undefined
}

/** What `sendTo` measured. Times are wall-clock, from `performance.now()`. */
export interface StreamResult {
  /** Address the socket connected to. */
  readonly remoteAddress: string
  /** Port the socket connected to. */
  readonly remotePort: number
  /** Our address as the kernel chose it. */
  readonly localAddress: string
  /** Our port (compare with the receiver's `peerPort` to check source transparency). */
  readonly localPort: number
  /** Bytes written. */
  readonly sentBytes: number
  /** SHA-256 of the bytes written, hex. */
  readonly sentSha256: string
  /** Bytes read back from the peer. */
  readonly replyBytes: number
  /** SHA-256 of the reply, hex (of nothing when there was none). */
  readonly replySha256: string
  /** Whether the write side was half-closed and the reply read to EOF. */
  readonly halfClose: boolean
  /** `connect()` to connection established, ms. */
  readonly connectMs: number
  /** Established to the last byte and the FIN handed to the kernel, ms. */
  readonly sendMs: number
  /**
   * Established to the peer's first sign that it has all the data: its first reply byte or its
   * EOF, whichever comes first, but not before `sendMs` (ms). A receiver that replies only after
   * our EOF makes this data delivery plus one-way delay; with an echoing peer it is about
   * `sendMs`. Equals `sendMs` without half-close.
   */
  readonly deliveredMs: number
  /** Established to the reply's EOF (or to close without half-close), ms. */
  readonly totalMs: number
  /** `sentBytes` over `deliveredMs`, Mbit/s. */
  readonly goodputMbitPerSec: number
  /** `sentBytes` over `deliveredMs`, MB/s (10^6 bytes). */
  readonly goodputMBytePerSec: number
}

/** A sending connection's counts, digests and phase so far. */
interface Sending {
  readonly target: string
  phase: TransferPhase
  sentBytes: number
  replyBytes: number
  firstReplyAt: number | undefined
  readonly sentHash: Hash
  readonly replyHash: Hash
}

/** A socket error as the TransferError that names the target, the phase and the counts. */
function describeSendFailure(state: Sending, err: unknown): Error {
  if (err instanceof PepError) {
    return err
  }
  const { target, phase, sentBytes, replyBytes } = state
  const code = errnoCode(err)
  switch (phase) {
    case 'connect':
      return new TransferError(code, phase, `cannot connect to ${target}: ${code}`)
    case 'send':
    case 'receive':
      return new TransferError(
        code,
        phase,
        `connection to ${target} failed while sending: ${code} (sent ${sentBytes} bytes)`
      )
    case 'reply':
      return new TransferError(
        code,
        phase,
        `connection to ${target} failed before the reply's EOF: ${code} (sent ${sentBytes} bytes, reply ${replyBytes} bytes)`
      )
  }
}

/** The instants a transfer is measured by (`performance.now()`). */
interface SendTimes {
  readonly startedAt: number
  readonly connectedAt: number
  readonly sentAt: number
  readonly deliveredAt: number
  readonly endAt: number
}

function sendResult(
  state: Sending,
  addresses: Pick<StreamResult, 'remoteAddress' | 'remotePort' | 'localAddress' | 'localPort'>,
  halfClose: boolean,
  t: SendTimes
): StreamResult {
  const deliveredMs = t.deliveredAt - t.connectedAt
  const rate = goodput(state.sentBytes, deliveredMs)
  return {
    ...addresses,
    sentBytes: state.sentBytes,
    sentSha256: state.sentHash.digest('hex'),
    replyBytes: state.replyBytes,
    replySha256: state.replyHash.digest('hex'),
    halfClose,
    connectMs: roundMs(t.connectedAt - t.startedAt),
    sendMs: roundMs(t.sentAt - t.connectedAt),
    deliveredMs: roundMs(deliveredMs),
    totalMs: roundMs(t.endAt - t.connectedAt),
    goodputMbitPerSec: round3(rate.mbitPerSec),
    goodputMBytePerSec: round3(rate.mbytePerSec)
  }
}

/**
 * Connects, sends `source`, half-closes and reads the reply to EOF (unless `halfClose` is
 * false), and reports sizes, digests and timings.
 *
 * @throws TransferError on connect failure, reset or early close (code = errno name)
 * @throws PepError with code `PEP_ERR_TIMEOUT` when `timeoutMs` passes first
 */
export async function sendTo(options: SendOptions): Promise<StreamResult> {
  const { host, port, source } = options
  const halfClose = options.halfClose ?? true
  const nextSize = createWriteSizer(
    options.writeSize ?? { kind: 'fixed', bytes: DEFAULT_WRITE_BYTES },
    options.writeSeed
  )
  const state: Sending = {
    target: formatEndpoint({ address: host, port }),
    phase: 'connect',
    sentBytes: 0,
    replyBytes: 0,
    firstReplyAt: undefined,
    sentHash: createHash('sha256'),
    replyHash: createHash('sha256')
  }
  const startedAt = performance.now()
  const socket = net.connect({
    host,
    port,
    allowHalfOpen: true,
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress })
  })
  const monitor = new SocketMonitor(socket, (err) => describeSendFailure(state, err))
  socket.on('data', function streamOnReplyData(chunk: Buffer): void {
    state.firstReplyAt ??= performance.now()
    state.replyBytes += chunk.byteLength
    state.replyHash.update(chunk)
  })
  socket.once('end', function streamOnReplyEnd(): void {
    state.firstReplyAt ??= performance.now()
  })
  const deadline =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(function streamOnDeadline(): void {
          socket.destroy(
            new PepError(
              PepErrorCodes.TIMEOUT,
              `timed out after ${(options.timeoutMs ?? 0) / 1000} s in phase ${state.phase} with ${state.target} (sent ${state.sentBytes} bytes, reply ${state.replyBytes} bytes)`
            )
          )
        }, options.timeoutMs)

  try {
    await monitor.waitFor('connect')
    const connectedAt = performance.now()
    if (options.congestion !== undefined) setCongestion(socketFd(socket), options.congestion)
    // Read the addresses now: once both directions have ended the socket destroys itself
    // and forgets them.
    const addresses = {
      remoteAddress: socket.remoteAddress ?? host,
      remotePort: socket.remotePort ?? port,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0
    }
    state.phase = 'send'
    state.sentBytes = await pump(socket, monitor, source, nextSize, state.sentHash, (bytes) => {
      state.sentBytes = bytes
      options.onProgress?.(bytes)
    })
    socket.end()
    await monitor.waitFor('finish')
    const sentAt = performance.now()
    let endAt = sentAt
    let deliveredAt = sentAt
    if (halfClose) {
      state.phase = 'reply'
      await monitor.waitFor('end')
      endAt = performance.now()
      deliveredAt = Math.max(sentAt, state.firstReplyAt ?? endAt)
    }
    return sendResult(state, addresses, halfClose, {
      startedAt,
      connectedAt,
      sentAt,
      deliveredAt,
      endAt
    })
  } finally {
    clearTimeout(deadline)
    socket.destroy()
  }
}
