/** Where the bytes a tool sends come from: generated data (for a size or a time) or a file. */
import { open } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'

import { ConfigError } from '../../common/errors.js'
import { GeneratedData } from './data.js'
import { errnoCode } from './outcome.js'

/** A pull source of bytes for `sendTo` and replies. Pulling lets each read match one write. */
export interface ByteSource {
  /** Total length in bytes when known up front (progress bar, ETA); undefined otherwise. */
  readonly totalBytes: number | undefined
  /**
   * The next chunk of 1 to `maxBytes` bytes, or null at the end. Each chunk is a fresh buffer
   * that the caller may keep (sockets hold on to written buffers).
   */
  read(maxBytes: number): Promise<Uint8Array | null>
  /** Releases resources (the file handle). Idempotent. */
  close(): Promise<void>
}

/** The first `totalBytes` bytes of the generated stream for `seed`, as a `ByteSource`. */
/**
 * Generated data for `durationMs` of wall-clock time from the first read (for links so slow
 * that a fixed size would take too long). `totalBytes` is 0: the size is not known ahead.
 */
export function timedSource(durationMs: number, seed: number): ByteSource {
  const data = new GeneratedData(seed)
  let offset = 0
  let endAt: number | undefined
  return {
    totalBytes: 0,
    read(maxBytes: number): Promise<Uint8Array | null> {
      endAt ??= performance.now() + durationMs
      if (performance.now() >= endAt) return Promise.resolve(null)
      const chunk = Buffer.allocUnsafe(maxBytes)
      data.fill(chunk, offset)
      offset += maxBytes
      return Promise.resolve(chunk)
    },
    close(): Promise<void> {
      return Promise.resolve()
    }
  }
}

export function generatedSource(totalBytes: number, seed: number): ByteSource {
  const data = new GeneratedData(seed)
  let offset = 0
  return {
    totalBytes,
    read(maxBytes: number): Promise<Uint8Array | null> {
      const count = Math.min(maxBytes, totalBytes - offset)
      if (count <= 0) {
        return Promise.resolve(null)
      }
      const chunk = Buffer.allocUnsafe(count)
      data.fill(chunk, offset)
      offset += count
      return Promise.resolve(chunk)
    },
    close(): Promise<void> {
      return Promise.resolve()
    }
  }
}

/**
 * Opens a file as a `ByteSource`; `totalBytes` is its size when it is a regular file.
 *
 * @throws ConfigError (key `file`) naming the errno when it cannot be opened
 */
export async function fileSource(path: string): Promise<ByteSource> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    throw new ConfigError('file', `cannot open '${path}': ${errnoCode(err)}`)
  }
  const file = handle
  const stats = await file.stat()
  let closed = false
  return {
    totalBytes: stats.isFile() ? stats.size : undefined,
    async read(maxBytes: number): Promise<Uint8Array | null> {
      const chunk = Buffer.allocUnsafe(maxBytes)
      const { bytesRead } = await file.read(chunk, 0, maxBytes, null)
      return bytesRead === 0 ? null : chunk.subarray(0, bytesRead)
    },
    async close(): Promise<void> {
      if (!closed) {
        closed = true
        await file.close()
      }
    }
  }
}
