/**
 * Byte movers for tests: write N pseudo-random bytes with chosen write sizes and backpressure,
 * read everything, and hash both sides.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'

/** 1 MiB of random bytes; sends are slices of it at shifting offsets, so order errors show. */
const BASE = randomBytes(1 << 20)

/** A deterministic sequence of write sizes. */
export type Sizer = () => number

/** Random write sizes in [min, max], seeded. */
export function randomSizer(seed: number, min: number, max: number): Sizer {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return min + (x % (max - min + 1))
  }
}

/** Write `total` bytes to `socket` (respecting 'drain'), then end() if `end`. Returns the sha256. */
export async function writeBytes(
  socket: Socket,
  total: number,
  sizer: Sizer = () => 65536,
  end = true,
  shouldPause?: () => Promise<void>
): Promise<string> {
  const hash = createHash('sha256')
  let sent = 0
  let k = 0
  while (sent < total) {
    if (shouldPause) await shouldPause()
    const len = Math.min(total - sent, Math.max(1, Math.min(sizer(), BASE.length)))
    const at = (k++ * 4099) % (BASE.length - len + 1)
    const chunk = BASE.subarray(at, at + len)
    hash.update(chunk)
    sent += len
    if (!socket.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => {
          socket.off('close', onClose)
          resolve()
        }
        const onClose = (): void => {
          socket.off('drain', onDrain)
          reject(new Error('socket closed while writing'))
        }
        socket.once('drain', onDrain)
        socket.once('close', onClose)
      })
    }
  }
  if (end) socket.end()
  return hash.digest('hex')
}

/** What a reader saw. */
export interface ReadResult {
  readonly bytes: number
  readonly sha256: string
  /** How the stream ended: 'end' (FIN) or an error code (e.g. ECONNRESET). */
  readonly ending: string
}

/** Read until FIN or error; never rejects. */
export function readAll(socket: Socket): Promise<ReadResult> {
  return new Promise((resolve) => {
    const hash = createHash('sha256')
    let bytes = 0
    let done = false
    const finish = (ending: string): void => {
      if (done) return
      done = true
      resolve({ bytes, sha256: hash.digest('hex'), ending })
    }
    socket.on('data', (d: Buffer) => {
      bytes += d.length
      hash.update(d)
    })
    socket.on('end', () => {
      finish('end')
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish(err.code ?? 'error')
    })
    socket.on('close', () => {
      finish('close')
    })
  })
}

/** sha256 of nothing. */
export const EMPTY_SHA256 = createHash('sha256').digest('hex')

/** A promise with its resolve function (Promise.withResolvers is Node 22+). */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => undefined
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}
