/** Socket plumbing shared by sending and receiving: awaitable events, the write pump, goodput. */
import type { Hash } from 'node:crypto'
import type { Socket } from 'node:net'

import type { ByteSource } from './sources.js'

type SocketEvent = 'connect' | 'drain' | 'end' | 'finish' | 'close'

/**
 * Turns a socket's events into awaitable steps that fail fast. The first 'error' (or a 'close'
 * before the step being awaited) becomes `failure`, built by `describe` so that the message
 * names the phase the transfer was in at that moment. One waiter at a time: the transfers are
 * sequential, and a single slot cannot pile up promise reactions over millions of writes the
 * way `Promise.race` against a long-lived promise would.
 */
export class SocketMonitor {
  /** The error that ended the socket, once it has failed. */
  failure: Error | undefined
  private readonly seen = new Set<SocketEvent>()
  private waiter:
    { event: SocketEvent; resolve: () => void; reject: (err: Error) => void } | undefined

  constructor(
    socket: Socket,
    private readonly describe: (err: unknown) => Error
  ) {
    socket.on('error', this.socketOnError)
    socket.on('drain', this.socketOnDrain)
    socket.once('connect', this.socketOnConnect)
    socket.once('end', this.socketOnEnd)
    socket.once('finish', this.socketOnFinish)
    socket.once('close', this.socketOnClose)
  }

  /** Resolves when `event` has happened (at once if it already has); rejects on failure. */
  waitFor(event: SocketEvent): Promise<void> {
    if (this.failure !== undefined) {
      return Promise.reject(this.failure)
    }
    if (this.seen.has(event)) {
      return Promise.resolve()
    }
    return new Promise<void>((resolve, reject) => {
      this.waiter = { event, resolve, reject }
    })
  }

  /** Throws the failure, if any (check before touching the socket after an await). */
  throwIfFailed(): void {
    if (this.failure !== undefined) {
      throw this.failure
    }
  }

  private notify(event: SocketEvent): void {
    if (event !== 'drain') {
      this.seen.add(event)
    }
    if (this.waiter?.event === event) {
      const { resolve } = this.waiter
      this.waiter = undefined
      resolve()
    }
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined) {
      return
    }
    this.failure = this.describe(err)
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.reject(this.failure)
  }

  private readonly socketOnError = (err: Error): void => {
    this.fail(err)
  }
  private readonly socketOnDrain = (): void => {
    this.notify('drain')
  }
  private readonly socketOnConnect = (): void => {
    this.notify('connect')
  }
  private readonly socketOnEnd = (): void => {
    this.notify('end')
  }
  private readonly socketOnFinish = (): void => {
    this.notify('finish')
  }
  private readonly socketOnClose = (): void => {
    this.notify('close')
    // 'close' without 'error' while waiting for something else: destroyed under our feet.
    if (this.waiter !== undefined) {
      this.fail(Object.assign(new Error('socket closed'), { code: 'ECONNABORTED' }))
    }
  }
}

/**
 * Writes `source` to `socket` in chunks sized by `nextSize`, hashing as it goes and waiting for
 * 'drain' whenever `write()` returns false (the kernel buffer is full).
 *
 * @returns bytes written
 */
export async function pump(
  socket: Socket,
  monitor: SocketMonitor,
  source: ByteSource,
  nextSize: () => number,
  hash: Hash,
  onProgress: ((bytes: number) => void) | undefined
): Promise<number> {
  let bytes = 0
  for (;;) {
    monitor.throwIfFailed()
    const chunk = await source.read(nextSize())
    monitor.throwIfFailed()
    if (chunk === null) {
      return bytes
    }
    hash.update(chunk)
    bytes += chunk.byteLength
    if (!socket.write(chunk)) {
      await monitor.waitFor('drain')
    }
    onProgress?.(bytes)
  }
}

/** Goodput in both units; 0 when no time has passed. */
export interface Goodput {
  /** Megabits (10^6 bits) per second. */
  readonly mbitPerSec: number
  /** Megabytes (10^6 bytes) per second. */
  readonly mbytePerSec: number
}

/** Goodput of `bytes` delivered in `elapsedMs`. */
export function goodput(bytes: number, elapsedMs: number): Goodput {
  if (elapsedMs <= 0) {
    return { mbitPerSec: 0, mbytePerSec: 0 }
  }
  const bytesPerSec = bytes / (elapsedMs / 1000)
  return { mbitPerSec: (bytesPerSec * 8) / 1e6, mbytePerSec: bytesPerSec / 1e6 }
}

export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

export function round3(value: number): number {
  return Math.round(value * 1000) / 1000
}
