/**
 * `serveDuplex`: reads a connection to its end while writing a generated reply at the same
 * time (both directions at once), and records how delivery went: a sample of the bytes
 * received every 20 ms, the longest gap between two arrivals, and how the stream ended. Unlike
 * `receiveOne` it never throws: a reset is an outcome to report with what arrived before it
 * (`./receive --duplex`, which the multipath tests and the path benchmark run in dst).
 */
import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

import { GeneratedData } from './data.js'

/** Period of the received-bytes samples in the final report, ms. */
const SAMPLE_INTERVAL_MS = 20
/** Bytes per reply write. */
const REPLY_WRITE_BYTES = 64 * 1024

/** Wall-clock milliseconds with sub-ms precision, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now()
}

/** What `serveDuplex` measured on one connection. Times are `wallMs()`. */
export interface DuplexResult {
  /** How the peer's stream ended: 'end' (FIN) or the error code (ECONNRESET…). */
  readonly ending: string
  readonly receivedBytes: number
  readonly receivedSha256: string
  /** Reply bytes written and accepted by the socket. */
  readonly replyBytes: number
  readonly replySha256: string
  /** True when the whole reply was written and the socket ended. */
  readonly replyComplete: boolean
  /** The first and the last data arrival. */
  readonly firstByteAt: number
  readonly lastByteAt: number
  /** Longest time between two consecutive data arrivals, ms, and when that gap ended. */
  readonly maxGapMs: number
  readonly maxGapEndAt: number
  /** [wallMs, cumulative bytes received] every 20 ms while the connection ran. */
  readonly samples: readonly (readonly [number, number])[]
}

/** What `serveDuplex` takes. */
export interface DuplexOptions {
  /** Reply size, bytes, of generated data from `replySeed`. */
  readonly replyBytes: number
  readonly replySeed: number
  /** Called with the bytes received so far (every received chunk). */
  readonly onProgress?: ((receivedBytes: number) => void) | undefined
}

/** Arrival bookkeeping: bytes, their digest, first/last arrival and the longest gap. */
class Arrivals {
  readonly hash = createHash('sha256')
  readonly samples: [number, number][] = []
  bytes = 0
  firstByteAt = 0
  lastByteAt = 0
  maxGapMs = 0
  maxGapEndAt = 0

  add(chunk: Buffer): void {
    const now = wallMs()
    if (this.bytes === 0) this.firstByteAt = now
    else if (now - this.lastByteAt > this.maxGapMs) {
      this.maxGapMs = now - this.lastByteAt
      this.maxGapEndAt = now
    }
    this.lastByteAt = now
    this.bytes += chunk.length
    this.hash.update(chunk)
  }

  sample(): void {
    this.samples.push([wallMs(), this.bytes])
  }
}

/** Writes a generated reply while the socket takes it; `done` once written and ended. */
class ReplyWriter {
  readonly hash = createHash('sha256')
  written = 0
  complete = false
  private readonly data: GeneratedData

  constructor(
    private readonly socket: Socket,
    private readonly totalBytes: number,
    seed: number,
    private readonly onComplete: () => void
  ) {
    this.data = new GeneratedData(seed)
  }

  /** Writes until the socket is full; ends the socket once all is written and `peerEnded`. */
  writeMore(peerEnded: boolean): void {
    const { socket } = this
    while (this.written < this.totalBytes && !socket.destroyed) {
      const chunk = Buffer.allocUnsafe(Math.min(REPLY_WRITE_BYTES, this.totalBytes - this.written))
      this.data.fill(chunk, this.written)
      this.hash.update(chunk)
      this.written += chunk.length
      if (!socket.write(chunk)) return // 'drain' calls again
    }
    if (
      this.written >= this.totalBytes &&
      peerEnded &&
      !socket.destroyed &&
      !socket.writableEnded
    ) {
      socket.end(() => {
        this.complete = true
        this.onComplete()
      })
    }
  }
}

/** Serves one connection (read to EOF while replying) and resolves with what happened. */
export function serveDuplex(socket: Socket, options: DuplexOptions): Promise<DuplexResult> {
  return new Promise<DuplexResult>((resolve) => {
    const arrivals = new Arrivals()
    let ending: string | undefined
    let peerEnded = false
    let reported = false
    const sampler = setInterval(() => {
      arrivals.sample()
    }, SAMPLE_INTERVAL_MS)
    const finish = (): void => {
      if (reported || ending === undefined) return
      // A clean EOF waits for our own reply to finish; an error ends everything at once.
      if (ending === 'end' && !reply.complete && !socket.destroyed) return
      reported = true
      clearInterval(sampler)
      arrivals.sample()
      resolve({
        ending,
        receivedBytes: arrivals.bytes,
        receivedSha256: arrivals.hash.digest('hex'),
        replyBytes: reply.written,
        replySha256: reply.hash.digest('hex'),
        replyComplete: reply.complete,
        firstByteAt: arrivals.firstByteAt,
        lastByteAt: arrivals.lastByteAt,
        maxGapMs: arrivals.maxGapMs,
        maxGapEndAt: arrivals.maxGapEndAt,
        samples: arrivals.samples
      })
    }
    const reply = new ReplyWriter(socket, options.replyBytes, options.replySeed, finish)
    socket.setNoDelay(true)
    socket.on('data', function duplexOnData(chunk: Buffer): void {
      arrivals.add(chunk)
      options.onProgress?.(arrivals.bytes)
    })
    socket.on('drain', function duplexOnDrain(): void {
      reply.writeMore(peerEnded)
    })
    socket.once('end', function duplexOnEnd(): void {
      ending ??= 'end'
      peerEnded = true
      reply.writeMore(peerEnded)
      finish()
    })
    socket.on('error', function duplexOnError(err: NodeJS.ErrnoException): void {
      ending ??= err.code ?? 'error'
      finish()
    })
    socket.once('close', function duplexOnClose(): void {
      ending ??= 'close'
      finish()
    })
    reply.writeMore(peerEnded)
  })
}
