/** `listen` and `receiveOne`: accept a connection, read it to EOF, reply, and measure. */
import { createHash } from 'node:crypto'
import { rename, writeFile } from 'node:fs/promises'
import net, { type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Writable } from 'node:stream'

import { formatEndpoint } from '../../common/endpoint.js'
import { PepError, PepErrorCodes } from '../../common/errors.js'
import type { WriteSize } from './args.js'
import { createWriteSizer, DEFAULT_WRITE_BYTES } from './data.js'
import { errnoCode, TransferError, type TransferPhase } from './outcome.js'
import { goodput, pump, round3, roundMs, SocketMonitor } from './socket.js'
import { generatedSource } from './sources.js'

/** What `receiveOne` sends back after (or, for echo, while) reading the peer's data. */
export type ReplySpec =
  | { readonly kind: 'none' }
  /** `bytes` of generated data from `seed`, sent after the peer's EOF. */
  | { readonly kind: 'generated'; readonly bytes: number; readonly seed: number }
  /** Every byte received, written back as it arrives. */
  | { readonly kind: 'echo' }

/** Options of `receiveOne`. */
export interface ReceiveOptions {
  /** Where received bytes go, with backpressure; discarded when undefined. Ended at EOF. */
  readonly output?: Writable | undefined
  /** What to send back. Default none: end our side right after the peer's EOF. */
  readonly reply?: ReplySpec | undefined
  /** How to size the reply's `write()` calls. Default: fixed `DEFAULT_WRITE_BYTES`. */
  readonly writeSize?: WriteSize | undefined
  /** Seed of random reply write sizes. Default 1. */
  readonly writeSeed?: number | undefined
  /** Deadline in ms from the call (or from accept when given a server); none when undefined. */
  readonly timeoutMs?: number | undefined
  /** `performance.now()` when the socket was accepted; default: when `receiveOne` is called. */
  readonly acceptedAt?: number | undefined
  /** Called after each received chunk with the total bytes received so far. */
  readonly onProgress?: ((receivedBytes: number) => void) | undefined
}

/** What `receiveOne` measured. Times are wall-clock, from `performance.now()`. */
export interface ReceiveResult {
  /** The peer's address as this server sees it (proves or disproves source transparency). */
  readonly peerAddress: string
  /** The peer's port as this server sees it. */
  readonly peerPort: number
  /** Local address the connection arrived on. */
  readonly localAddress: string
  /** Local port the connection arrived on. */
  readonly localPort: number
  /** Bytes read up to EOF. */
  readonly receivedBytes: number
  /** SHA-256 of the bytes read, hex. */
  readonly receivedSha256: string
  /** Bytes sent back. */
  readonly replyBytes: number
  /** SHA-256 of the bytes sent back, hex. */
  readonly replySha256: string
  /** Accept to first byte, ms; undefined when nothing arrived. */
  readonly acceptToFirstByteMs: number | undefined
  /** First byte to EOF, ms (0 when nothing arrived). */
  readonly firstByteToEofMs: number
  /** Accept to EOF, ms. */
  readonly acceptToEofMs: number
  /** Accept to the end of our reply (socket closed), ms. */
  readonly totalMs: number
  /** `receivedBytes` over `firstByteToEofMs`, Mbit/s. */
  readonly goodputMbitPerSec: number
  /** `receivedBytes` over `firstByteToEofMs`, MB/s (10^6 bytes). */
  readonly goodputMBytePerSec: number
  /** `receivedBytes` over `acceptToEofMs`, Mbit/s. */
  readonly acceptGoodputMbitPerSec: number
  /** `receivedBytes` over `acceptToEofMs`, MB/s (10^6 bytes). */
  readonly acceptGoodputMBytePerSec: number
}

/** Options of `listen`. */
export interface ListenOptions {
  /** Address to bind; default `0.0.0.0`. */
  readonly host?: string | undefined
  /** Port to bind; 0 picks a free one. */
  readonly port: number
}

/**
 * Starts a TCP server for `receiveOne`: half-open connections allowed (so a reply can follow
 * the peer's EOF), Nagle off. Resolves once bound; read the port from `server.address()`.
 *
 * @throws TransferError (code `EADDRINUSE`, `EACCES`, ...) when it cannot bind
 */
export async function listen(options: ListenOptions): Promise<Server> {
  const host = options.host ?? '0.0.0.0'
  const server = net.createServer({ allowHalfOpen: true, noDelay: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', function serverOnListenError(err: Error): void {
      const code = errnoCode(err)
      reject(
        new TransferError(
          code,
          'connect',
          `cannot listen on ${formatEndpoint({ address: host, port: options.port })}: ${code}`
        )
      )
    })
    server.listen({ host, port: options.port }, resolve)
  })
  return server
}

/** The bound address and port of a listening server. */
export function boundAddress(server: Server): { readonly host: string; readonly port: number } {
  const address = server.address()
  if (address === null || typeof address === 'string') {
    throw new TypeError('server is not listening on a TCP port')
  }
  return { host: address.address, port: address.port }
}

/**
 * Waits for the next connection on `server`.
 *
 * @throws PepError `PEP_ERR_TIMEOUT` when none comes within `timeoutMs`
 */
export function acceptOne(server: Server, timeoutMs?: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(function acceptOnDeadline(): void {
            server.off('connection', serverOnConnection)
            reject(
              new PepError(PepErrorCodes.TIMEOUT, `no connection within ${timeoutMs / 1000} s`)
            )
          }, timeoutMs)
    function serverOnConnection(socket: Socket): void {
      clearTimeout(timer)
      resolve(socket)
    }
    server.once('connection', serverOnConnection)
  })
}

/**
 * Reads one connection to EOF, then sends the reply and ends our side (half-close both ways).
 * Given a server, it first waits for one connection.
 *
 * Echo is written back as data arrives rather than after EOF: holding the whole stream until
 * EOF would need unbounded memory. The socket pauses while the echo or the output cannot keep
 * up, which backpressures the peer.
 *
 * A reset is reported only when the kernel reports it: on Linux, a reset that arrives while
 * received data is still queued reads as a plain EOF once that data is read (tcp_recvmsg
 * checks SOCK_DONE before sk_err). Check `receivedBytes` (`--expect-bytes`) to catch those.
 *
 * @param target - an accepted socket made with `allowHalfOpen: true` (see `listen`), or a server
 * @throws TransferError when the connection resets or closes before EOF, or during the reply
 * @throws PepError `PEP_ERR_TIMEOUT` when `timeoutMs` passes first
 */
export async function receiveOne(
  target: Server | Socket,
  options: ReceiveOptions = {}
): Promise<ReceiveResult> {
  let acceptedAt = options.acceptedAt
  let socket: Socket
  if (target instanceof net.Server) {
    socket = await acceptOne(target, options.timeoutMs)
    acceptedAt ??= performance.now()
  } else {
    socket = target
  }
  if (!socket.allowHalfOpen) {
    socket.destroy()
    throw new TypeError(
      'receiveOne needs a socket accepted with allowHalfOpen: true (use listen())'
    )
  }
  const startedAt = acceptedAt ?? performance.now()
  const reply = options.reply ?? { kind: 'none' }
  const output = options.output
  // Read the addresses now: once both directions have ended the socket destroys itself and
  // forgets them.
  const addresses = {
    peerAddress: socket.remoteAddress ?? '',
    peerPort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0
  }
  const peer = formatEndpoint({ address: addresses.peerAddress, port: addresses.peerPort })
  const receivedHash = createHash('sha256')
  const replyHash = createHash('sha256')
  let phase: TransferPhase = 'receive'
  let receivedBytes = 0
  let replyBytes = 0
  let firstByteAt: number | undefined

  const describe = (err: unknown): Error => {
    // Our own errors (deadline, output failure, interruption) already say what happened.
    if (err instanceof PepError || err instanceof TransferError) {
      return err
    }
    const code = errnoCode(err)
    return phase === 'reply'
      ? new TransferError(
          code,
          phase,
          `connection from ${peer} failed while replying: ${code} (received ${receivedBytes} bytes, replied ${replyBytes} bytes)`
        )
      : new TransferError(
          code,
          phase,
          `connection from ${peer} failed before EOF: ${code} (received ${receivedBytes} bytes)`
        )
  }
  const monitor = new SocketMonitor(socket, describe)

  // The socket is paused while any of these cannot take more; resumed when none is left.
  const pausedBy = new Set<'output' | 'echo'>()
  const resumeFor = (reason: 'output' | 'echo'): void => {
    pausedBy.delete(reason)
    if (pausedBy.size === 0) {
      socket.resume()
    }
  }
  const pauseFor = (reason: 'output' | 'echo'): void => {
    pausedBy.add(reason)
    socket.pause()
  }
  const outputOnError = (err: Error): void => {
    socket.destroy(new TransferError(errnoCode(err), 'receive', `output failed: ${err.message}`))
  }
  output?.on('error', outputOnError)

  socket.on('data', function receiveOnData(chunk: Buffer): void {
    firstByteAt ??= performance.now()
    receivedBytes += chunk.byteLength
    receivedHash.update(chunk)
    if (output !== undefined && !output.write(chunk)) {
      pauseFor('output')
      output.once('drain', () => {
        resumeFor('output')
      })
    }
    if (reply.kind === 'echo') {
      replyBytes += chunk.byteLength
      replyHash.update(chunk)
      if (!socket.write(chunk)) {
        pauseFor('echo')
        socket.once('drain', () => {
          resumeFor('echo')
        })
      }
    }
    options.onProgress?.(receivedBytes)
  })

  const timeoutMs = options.timeoutMs
  const deadline =
    timeoutMs === undefined
      ? undefined
      : setTimeout(
          function receiveOnDeadline(): void {
            socket.destroy(
              new PepError(
                PepErrorCodes.TIMEOUT,
                `timed out after ${timeoutMs / 1000} s in phase ${phase} with ${peer} (received ${receivedBytes} bytes)`
              )
            )
          },
          Math.max(0, timeoutMs - (performance.now() - startedAt))
        )

  try {
    await monitor.waitFor('end')
    const eofAt = performance.now()
    phase = 'reply'
    if (output !== undefined) {
      await new Promise<void>((resolve, reject) => {
        output.end(resolve)
        output.once('error', reject)
      })
    }
    if (reply.kind === 'generated') {
      const nextSize = createWriteSizer(
        options.writeSize ?? { kind: 'fixed', bytes: DEFAULT_WRITE_BYTES },
        options.writeSeed
      )
      const source = generatedSource(reply.bytes, reply.seed)
      replyBytes = await pump(socket, monitor, source, nextSize, replyHash, (bytes) => {
        replyBytes = bytes
      })
    }
    socket.end()
    await monitor.waitFor('finish')
    const doneAt = performance.now()
    const firstByteToEofMs = firstByteAt === undefined ? 0 : eofAt - firstByteAt
    const acceptToEofMs = eofAt - startedAt
    const rate = goodput(receivedBytes, firstByteToEofMs)
    const acceptRate = goodput(receivedBytes, acceptToEofMs)
    return {
      ...addresses,
      receivedBytes,
      receivedSha256: receivedHash.digest('hex'),
      replyBytes,
      replySha256: replyHash.digest('hex'),
      acceptToFirstByteMs: firstByteAt === undefined ? undefined : roundMs(firstByteAt - startedAt),
      firstByteToEofMs: roundMs(firstByteToEofMs),
      acceptToEofMs: roundMs(acceptToEofMs),
      totalMs: roundMs(doneAt - startedAt),
      goodputMbitPerSec: round3(rate.mbitPerSec),
      goodputMBytePerSec: round3(rate.mbytePerSec),
      acceptGoodputMbitPerSec: round3(acceptRate.mbitPerSec),
      acceptGoodputMBytePerSec: round3(acceptRate.mbytePerSec)
    }
  } finally {
    clearTimeout(deadline)
    output?.off('error', outputOnError)
    socket.destroy()
  }
}

/**
 * Writes `HOST:PORT` and a newline to `path` atomically (temp file, then rename), so a script
 * polling for the file never reads half of it.
 */
export async function writeReadyFile(path: string, host: string, port: number): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, `${formatEndpoint({ address: host, port: port })}\n`)
  await rename(temporary, path)
}
