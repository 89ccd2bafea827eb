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

/** The addresses of an accepted socket, read once (a socket ended both ways forgets them). */
function addressesOf(socket: Socket) {
  return {
    peerAddress: socket.remoteAddress ?? '',
    peerPort: socket.remotePort ?? 0,
    localAddress: socket.localAddress ?? '',
    localPort: socket.localPort ?? 0
  }
}

/** One received connection's counts, digests and phase, and how it reads with backpressure. */
class Reception {
  phase: TransferPhase = 'receive'
  receivedBytes = 0
  replyBytes = 0
  firstByteAt: number | undefined
  readonly receivedHash = createHash('sha256')
  readonly replyHash = createHash('sha256')
  /** The socket is paused while any of these cannot take more; resumed when none is left. */
  private readonly pausedBy = new Set<'output' | 'echo'>()

  constructor(
    private readonly socket: Socket,
    private readonly peer: string,
    private readonly options: ReceiveOptions
  ) {}

  /** A socket error as the TransferError that names the peer, the phase and the counts. */
  describe(err: unknown): Error {
    // Our own errors (deadline, output failure, interruption) already say what happened.
    if (err instanceof PepError || err instanceof TransferError) {
      return err
    }
    const code = errnoCode(err)
    return this.phase === 'reply'
      ? new TransferError(
          code,
          this.phase,
          `connection from ${this.peer} failed while replying: ${code} (received ${this.receivedBytes} bytes, replied ${this.replyBytes} bytes)`
        )
      : new TransferError(
          code,
          this.phase,
          `connection from ${this.peer} failed before EOF: ${code} (received ${this.receivedBytes} bytes)`
        )
  }

  /** Counts and hashes a chunk, copies it to the output and echoes it, pausing while either is full. */
  onData(chunk: Buffer): void {
    const { output, reply } = this.options
    this.firstByteAt ??= performance.now()
    this.receivedBytes += chunk.byteLength
    this.receivedHash.update(chunk)
    if (output !== undefined && !output.write(chunk)) {
      this.pauseUntilDrain('output', output)
    }
    if (reply?.kind === 'echo') {
      this.replyBytes += chunk.byteLength
      this.replyHash.update(chunk)
      if (!this.socket.write(chunk)) {
        this.pauseUntilDrain('echo', this.socket)
      }
    }
    this.options.onProgress?.(this.receivedBytes)
  }

  private pauseUntilDrain(reason: 'output' | 'echo', writable: Writable): void {
    this.pausedBy.add(reason)
    this.socket.pause()
    writable.once('drain', () => {
      this.pausedBy.delete(reason)
      if (this.pausedBy.size === 0) {
        this.socket.resume()
      }
    })
  }

  /** The result, from the instants of accept, EOF and the end of the reply. */
  result(
    addresses: ReturnType<typeof addressesOf>,
    startedAt: number,
    eofAt: number,
    doneAt: number
  ): ReceiveResult {
    const { firstByteAt, receivedBytes } = this
    const firstByteToEofMs = firstByteAt === undefined ? 0 : eofAt - firstByteAt
    const acceptToEofMs = eofAt - startedAt
    const rate = goodput(receivedBytes, firstByteToEofMs)
    const acceptRate = goodput(receivedBytes, acceptToEofMs)
    return {
      ...addresses,
      receivedBytes,
      receivedSha256: this.receivedHash.digest('hex'),
      replyBytes: this.replyBytes,
      replySha256: this.replyHash.digest('hex'),
      acceptToFirstByteMs: firstByteAt === undefined ? undefined : roundMs(firstByteAt - startedAt),
      firstByteToEofMs: roundMs(firstByteToEofMs),
      acceptToEofMs: roundMs(acceptToEofMs),
      totalMs: roundMs(doneAt - startedAt),
      goodputMbitPerSec: round3(rate.mbitPerSec),
      goodputMBytePerSec: round3(rate.mbytePerSec),
      acceptGoodputMbitPerSec: round3(acceptRate.mbitPerSec),
      acceptGoodputMBytePerSec: round3(acceptRate.mbytePerSec)
    }
  }
}

/** After the peer's EOF: ends the output, sends a generated reply, ends our side. */
async function finishReply(
  socket: Socket,
  monitor: SocketMonitor,
  state: Reception,
  options: ReceiveOptions
): Promise<void> {
  const { output, reply } = options
  state.phase = 'reply'
  if (output !== undefined) {
    await new Promise<void>((resolve, reject) => {
      output.end(resolve)
      output.once('error', reject)
    })
  }
  if (reply?.kind === 'generated') {
    const nextSize = createWriteSizer(
      options.writeSize ?? { kind: 'fixed', bytes: DEFAULT_WRITE_BYTES },
      options.writeSeed
    )
    const source = generatedSource(reply.bytes, reply.seed)
    state.replyBytes = await pump(socket, monitor, source, nextSize, state.replyHash, (bytes) => {
      state.replyBytes = bytes
    })
  }
  socket.end()
  await monitor.waitFor('finish')
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
  const output = options.output
  const addresses = addressesOf(socket)
  const peer = formatEndpoint({ address: addresses.peerAddress, port: addresses.peerPort })
  const state = new Reception(socket, peer, options)
  const monitor = new SocketMonitor(socket, (err) => state.describe(err))
  const outputOnError = (err: Error): void => {
    socket.destroy(new TransferError(errnoCode(err), 'receive', `output failed: ${err.message}`))
  }
  output?.on('error', outputOnError)
  socket.on('data', function receiveOnData(chunk: Buffer): void {
    state.onData(chunk)
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
                `timed out after ${timeoutMs / 1000} s in phase ${state.phase} with ${peer} (received ${state.receivedBytes} bytes)`
              )
            )
          },
          Math.max(0, timeoutMs - (performance.now() - startedAt))
        )

  try {
    await monitor.waitFor('end')
    const eofAt = performance.now()
    await finishReply(socket, monitor, state, options)
    return state.result(addresses, startedAt, eofAt, performance.now())
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
