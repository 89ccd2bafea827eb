/**
 * Test harness library: the logic behind `./stream` and `./receive`, usable in-process by tests
 * and the benchmark without spawning anything.
 *
 * Modern take on the original C project's `stream`/`receive`: those timed CPU, these measure
 * wall-clock goodput with `performance.now()`. Everything here is per call: no module-level
 * state, so any number of senders and receivers can share one process.
 *
 * Contents: size/argument parsing, the deterministic data generator, byte sources, `sendTo`,
 * `receiveOne`, expectation checks, goodput/size formatting, the TTY progress bar, and the tiny
 * CLI runner both executables share.
 */

import { setCongestion, socketFd } from '../../native/index.js'
import { createHash, type Hash } from 'node:crypto'
import { open, rename, writeFile } from 'node:fs/promises'
import net, { type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Writable } from 'node:stream'

import { ConfigError, PepError, PepErrorCodes } from '../common/errors.js'

// ---------------------------------------------------------------------------------------------
// Constants

/**
 * Size of one generated block in bytes (64 KiB). The generated stream is defined block by block,
 * so any byte range can be produced without producing what comes before it.
 */
export const GENERATED_BLOCK_BYTES = 65536

/** Default `write()` size in bytes: one generated block, so the fast path needs no copy. */
export const DEFAULT_WRITE_BYTES = GENERATED_BLOCK_BYTES

/**
 * Largest accepted write size in bytes (64 MiB). Each write is one freshly allocated buffer, so
 * this bounds the memory one write can pin.
 */
export const MAX_WRITE_BYTES = 64 * 1024 * 1024

/** Minimum time between two progress-bar redraws in ms (at most ~10 redraws a second). */
export const PROGRESS_INTERVAL_MS = 100

/** Redraws the progress rate is averaged over (20 at 100 ms: about the last 2 s). */
const PROGRESS_RATE_SAMPLES = 20

const BLOCK_WORDS = GENERATED_BLOCK_BYTES / 4

// ---------------------------------------------------------------------------------------------
// Argument parsing (every parser throws ConfigError naming the option: exit code 2)

/** Multipliers for size suffixes, keyed in lower case. K/M/G/T are binary, like dd and iperf. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4
}

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i

/**
 * Parses a byte count: a non-negative number with an optional suffix, case-insensitive.
 * `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB`
 * are powers of 1000; `B` or nothing means bytes. Fractions are allowed when the result is a
 * whole number of bytes (`1.5K` = 1536).
 *
 * @param text - e.g. `64MiB`, `1G`, `4096`
 * @param key - option name for the error message
 * @returns the size in bytes (a safe integer)
 * @throws ConfigError when the text is not a size
 */
export function parseSize(text: string, key = 'size'): number {
  const match = SIZE_PATTERN.exec(text.trim())
  const unit = match === null ? undefined : SIZE_UNITS[match[2]!.toLowerCase()]
  if (match === null || unit === undefined) {
    throw new ConfigError(
      key,
      `invalid size '${text}': expected a number with an optional K, M, G, KiB, MiB, GiB, KB, MB or GB suffix`
    )
  }
  const bytes = Number(match[1]) * unit
  if (!Number.isSafeInteger(bytes)) {
    throw new ConfigError(key, `invalid size '${text}': not a whole number of bytes below 2^53`)
  }
  return bytes
}

/** How `write()` calls are sized: a fixed size, or uniformly random sizes from a seeded PRNG. */
export type WriteSize =
  | { readonly kind: 'fixed'; readonly bytes: number }
  | { readonly kind: 'random'; readonly minBytes: number; readonly maxBytes: number }

/**
 * Parses `N` (fixed) or `random:MIN-MAX` (inclusive, each side a size as in `parseSize`).
 *
 * @throws ConfigError when a size is bad, zero, above `MAX_WRITE_BYTES`, or MIN > MAX
 */
export function parseWriteSize(text: string, key = 'write-size'): WriteSize {
  const checkBytes = (part: string): number => {
    const bytes = parseSize(part, key)
    if (bytes < 1 || bytes > MAX_WRITE_BYTES) {
      throw new ConfigError(key, `write size '${part}' must be between 1 byte and 64MiB`)
    }
    return bytes
  }
  const trimmed = text.trim()
  if (!trimmed.toLowerCase().startsWith('random:')) {
    return { kind: 'fixed', bytes: checkBytes(trimmed) }
  }
  const range = trimmed.slice('random:'.length).split('-')
  if (range.length !== 2) {
    throw new ConfigError(key, `invalid write size '${text}': expected random:MIN-MAX`)
  }
  const minBytes = checkBytes(range[0]!)
  const maxBytes = checkBytes(range[1]!)
  if (minBytes > maxBytes) {
    throw new ConfigError(key, `invalid write size '${text}': MIN is larger than MAX`)
  }
  return { kind: 'random', minBytes, maxBytes }
}

/** Spells a `WriteSize` back the way `parseWriteSize` reads it (for reports). */
export function formatWriteSize(writeSize: WriteSize): string {
  switch (writeSize.kind) {
    case 'fixed':
      return String(writeSize.bytes)
    case 'random':
      return `random:${writeSize.minBytes}-${writeSize.maxBytes}`
  }
}

/**
 * Parses a positive integer count (decimal digits only).
 *
 * @throws ConfigError when not an integer from 1 to 2^53 - 1
 */
export function parseCount(text: string, key = 'count'): number {
  const trimmed = text.trim()
  const count = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new ConfigError(key, `invalid count '${text}': expected a positive integer`)
  }
  return count
}

/**
 * Parses a 32-bit unsigned seed, decimal or `0x` hex.
 *
 * @throws ConfigError when not an integer in [0, 2^32)
 */
export function parseSeed(text: string, key = 'seed'): number {
  const trimmed = text.trim()
  const seed = /^(\d+|0x[0-9a-f]+)$/i.test(trimmed) ? Number(trimmed) : NaN
  if (!Number.isSafeInteger(seed) || seed > 0xffffffff) {
    throw new ConfigError(key, `invalid seed '${text}': expected an integer from 0 to 4294967295`)
  }
  return seed
}

/**
 * Parses a TCP port.
 *
 * @param allowZero - accept 0 (listen on any free port)
 * @throws ConfigError when not an integer in range
 */
export function parsePort(text: string, key = 'port', allowZero = false): number {
  const trimmed = text.trim()
  const port = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN
  if (!Number.isInteger(port) || port > 65535 || (port === 0 && !allowZero)) {
    throw new ConfigError(
      key,
      `invalid port '${text}': expected an integer from ${allowZero ? 0 : 1} to 65535`
    )
  }
  return port
}

/**
 * Parses a positive duration in seconds (fractions allowed) into milliseconds.
 *
 * @throws ConfigError when not a positive finite number
 */
export function parseSecondsToMs(text: string, key = 'timeout'): number {
  const trimmed = text.trim()
  const seconds = /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) : NaN
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new ConfigError(key, `invalid duration '${text}': expected a positive number of seconds`)
  }
  return seconds * 1000
}

/**
 * Parses a SHA-256 digest given as 64 hex digits.
 *
 * @returns the digest in lower case
 * @throws ConfigError when it is not 64 hex digits
 */
export function parseSha256(text: string, key = 'sha256'): string {
  const trimmed = text.trim()
  if (!/^[0-9a-f]{64}$/i.test(trimmed)) {
    throw new ConfigError(key, `invalid sha256 '${text}': expected 64 hex digits`)
  }
  return trimmed.toLowerCase()
}

// ---------------------------------------------------------------------------------------------
// Deterministic data

/** murmur3's 32-bit finalizer: a bijection on uint32 with good avalanche. */
function mix32(value: number): number {
  let x = value >>> 0
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

/** A seeded xorshift32 PRNG; state never becomes zero. */
function xorshift32(seed: number): () => number {
  let state = mix32(seed ^ 0x2545f491) || 1
  return function xorshiftNext(): number {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return state >>> 0
  }
}

/**
 * The deterministic pseudo-random byte stream for one seed.
 *
 * Block `i` (64 KiB) is a base block of xorshift32 output, rotated by a per-block word offset
 * and XORed with a per-block key; offset and key come from mixing `seed` and `i`. Making a
 * block is then one load, XOR and store per 4 bytes (several GB/s), while every block differs
 * from every other, so a proxy that duplicates, drops or swaps whole blocks changes the
 * SHA-256. The block key is a bijection of the block index, so blocks never repeat below 2^32
 * blocks (256 TiB). Words are in host byte order: streams agree between little-endian hosts.
 *
 * The generator keeps one scratch block for unaligned reads; share an instance only within one
 * logical stream (it is cheap to make: one 64 KiB fill).
 */
export class GeneratedData {
  /** The seed this stream was made from. */
  readonly seed: number
  private readonly base = new Uint32Array(BLOCK_WORDS)
  private readonly scratchWords = new Uint32Array(BLOCK_WORDS)
  private readonly scratch = Buffer.from(this.scratchWords.buffer)
  private scratchBlock = -1

  constructor(seed: number) {
    this.seed = seed >>> 0
    const next = xorshift32(this.seed)
    for (let i = 0; i < BLOCK_WORDS; i++) {
      this.base[i] = next()
    }
  }

  /**
   * Writes stream bytes `[offsetBytes, offsetBytes + target.byteLength)` into `target`.
   * Whole, 4-byte-aligned blocks are generated in place; the rest goes through the scratch
   * block (generated once per block index, then copied).
   */
  fill(target: Uint8Array, offsetBytes: number): void {
    let position = 0
    let offset = offsetBytes
    while (position < target.byteLength) {
      const block = Math.floor(offset / GENERATED_BLOCK_BYTES)
      const inBlock = offset - block * GENERATED_BLOCK_BYTES
      const count = Math.min(GENERATED_BLOCK_BYTES - inBlock, target.byteLength - position)
      const absolute = target.byteOffset + position
      if (count === GENERATED_BLOCK_BYTES && absolute % 4 === 0) {
        this.fillBlock(new Uint32Array(target.buffer, absolute, BLOCK_WORDS), block)
      } else {
        if (this.scratchBlock !== block) {
          this.fillBlock(this.scratchWords, block)
          this.scratchBlock = block
        }
        target.set(this.scratch.subarray(inBlock, inBlock + count), position)
      }
      position += count
      offset += count
    }
  }

  private fillBlock(words: Uint32Array, block: number): void {
    const low = block >>> 0
    const high = Math.floor(block / 0x100000000) >>> 0
    const key = mix32(this.seed ^ mix32(low ^ mix32(high ^ 0x9e3779b9)))
    const rotation = mix32(key ^ 0x5bd1e995) % BLOCK_WORDS
    const base = this.base
    const split = BLOCK_WORDS - rotation
    for (let i = 0; i < split; i++) {
      words[i] = base[i + rotation]! ^ key
    }
    for (let i = split; i < BLOCK_WORDS; i++) {
      words[i] = base[i - split]! ^ key
    }
  }
}

/**
 * The first `totalBytes` bytes of the generated stream for `seed`, in fresh chunks of
 * `chunkBytes` (the last may be shorter). Wrap in `Readable.from()` for a stream.
 */
export function* generateChunks(
  totalBytes: number,
  seed: number,
  chunkBytes = GENERATED_BLOCK_BYTES
): Generator<Buffer, void, undefined> {
  const data = new GeneratedData(seed)
  for (let offset = 0; offset < totalBytes; offset += chunkBytes) {
    const chunk = Buffer.allocUnsafe(Math.min(chunkBytes, totalBytes - offset))
    data.fill(chunk, offset)
    yield chunk
  }
}

/** The first `totalBytes` generated bytes for `seed` in one buffer (small sizes: tests). */
export function generatedBytes(totalBytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(totalBytes)
  new GeneratedData(seed).fill(out, 0)
  return out
}

/** Lower-case hex SHA-256 of `data`. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * SHA-256 of the first `totalBytes` generated bytes for `seed`, without sending them: what
 * a receiver of `generatedSource(totalBytes, seed)` must compute. Synchronous; ~2 s per GB.
 */
export function expectedSha256(totalBytes: number, seed: number): string {
  const data = new GeneratedData(seed)
  const hash = createHash('sha256')
  const block = Buffer.allocUnsafeSlow(16 * GENERATED_BLOCK_BYTES)
  for (let offset = 0; offset < totalBytes; offset += block.byteLength) {
    const view = block.subarray(0, Math.min(block.byteLength, totalBytes - offset))
    data.fill(view, offset)
    hash.update(view)
  }
  return hash.digest('hex')
}

/**
 * Returns the next write size for `writeSize`; random sizes come from a PRNG seeded with
 * `seed` (kept apart from the data PRNG, so the same seed can drive both).
 */
export function createWriteSizer(writeSize: WriteSize, seed = 1): () => number {
  switch (writeSize.kind) {
    case 'fixed': {
      const bytes = writeSize.bytes
      return function fixedWriteSize(): number {
        return bytes
      }
    }
    case 'random': {
      const next = xorshift32(seed ^ 0x57a1e5)
      const { minBytes } = writeSize
      const span = writeSize.maxBytes - minBytes + 1
      return function randomWriteSize(): number {
        // Two draws make 53 bits, so spans above 2^32 stay uniform too.
        const unit = (next() * 0x200000 + (next() >>> 11)) / 2 ** 53
        return minBytes + Math.floor(unit * span)
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Byte sources

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

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * A connection failed or broke mid-transfer. `code` is Node's errno name (`ECONNREFUSED`,
 * `ECONNRESET`, `EPIPE`, `ETIMEDOUT`, ...), or `ECONNABORTED` when the socket closed early
 * without one. The message is one line naming the peer, the phase and the code.
 */
export class TransferError extends Error {
  /** Errno name, e.g. `ECONNRESET`. */
  readonly code: string
  /** What the connection was doing when it failed. */
  readonly phase: TransferPhase

  constructor(code: string, phase: TransferPhase, message: string) {
    super(message)
    this.name = 'TransferError'
    this.code = code
    this.phase = phase
  }
}

/** Stage of a transfer, for error messages: connect, send/receive the data, or the reply. */
export type TransferPhase = 'connect' | 'send' | 'receive' | 'reply'

/** What a transfer was checked against (`--expect-*`). */
export type ExpectationField = 'bytes' | 'sha256' | 'replyBytes' | 'replySha256'

/** A transfer completed but its bytes or digest differ from what was expected. */
export class ExpectationError extends Error {
  /** Stable code, for tests and scripts. */
  readonly code = 'HARNESS_ERR_MISMATCH'
  /** Which expectation failed. */
  readonly field: ExpectationField
  /** Expected value (count or hex digest). */
  readonly expected: string
  /** Actual value. */
  readonly actual: string

  constructor(field: ExpectationField, expected: string, actual: string, message: string) {
    super(message)
    this.name = 'ExpectationError'
    this.field = field
    this.expected = expected
    this.actual = actual
  }
}

/** Expected length and digest of one direction of a transfer; absent fields are not checked. */
export interface Expectation {
  /** Expected byte count. */
  readonly bytes?: number | undefined
  /** Expected SHA-256, lower-case hex. */
  readonly sha256?: string | undefined
}

/**
 * Compares what was seen with what was expected.
 *
 * @param what - `data` (checks `bytes`/`sha256`) or `reply` (`replyBytes`/`replySha256`)
 * @returns the first mismatch, or undefined when everything matches
 */
export function checkExpectation(
  what: 'data' | 'reply',
  actualBytes: number,
  actualSha256: string,
  expect: Expectation
): ExpectationError | undefined {
  const noun = what === 'data' ? 'received' : 'reply was'
  if (expect.bytes !== undefined && expect.bytes !== actualBytes) {
    const diff = actualBytes - expect.bytes
    const how = diff < 0 ? `short by ${-diff}` : `${diff} too many`
    return new ExpectationError(
      what === 'data' ? 'bytes' : 'replyBytes',
      String(expect.bytes),
      String(actualBytes),
      `${noun} ${actualBytes} bytes, expected ${expect.bytes} (${how})`
    )
  }
  if (expect.sha256 !== undefined && expect.sha256 !== actualSha256) {
    return new ExpectationError(
      what === 'data' ? 'sha256' : 'replySha256',
      expect.sha256,
      actualSha256,
      `${what === 'data' ? 'data' : 'reply'} sha256 ${actualSha256} differs from expected ${expect.sha256}`
    )
  }
  return undefined
}

function errnoCode(err: unknown): string {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    return err.code
  }
  return 'EUNKNOWN'
}

// ---------------------------------------------------------------------------------------------
// Socket plumbing

type SocketEvent = 'connect' | 'drain' | 'end' | 'finish' | 'close'

/**
 * Turns a socket's events into awaitable steps that fail fast. The first 'error' (or a 'close'
 * before the step being awaited) becomes `failure`, built by `describe` so that the message
 * names the phase the transfer was in at that moment. One waiter at a time: the transfers are
 * sequential, and a single slot cannot pile up promise reactions over millions of writes the
 * way `Promise.race` against a long-lived promise would.
 */
class SocketMonitor {
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
async function pump(
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

/** `host:port`, with IPv6 addresses in brackets. */
export function formatEndpoint(host: string | undefined, port: number | undefined): string {
  const h = host ?? '?'
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? '?'}`
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

function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000
}

// ---------------------------------------------------------------------------------------------
// Sending

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
  const target = formatEndpoint(host, port)
  const sentHash = createHash('sha256')
  const replyHash = createHash('sha256')
  let phase: TransferPhase = 'connect'
  let sentBytes = 0
  let replyBytes = 0
  let firstReplyAt: number | undefined

  const describe = (err: unknown): Error => {
    if (err instanceof PepError) {
      return err
    }
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

  const startedAt = performance.now()
  const socket = net.connect({
    host,
    port,
    allowHalfOpen: true,
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress })
  })
  const monitor = new SocketMonitor(socket, describe)
  socket.on('data', function streamOnReplyData(chunk: Buffer): void {
    firstReplyAt ??= performance.now()
    replyBytes += chunk.byteLength
    replyHash.update(chunk)
  })
  socket.once('end', function streamOnReplyEnd(): void {
    firstReplyAt ??= performance.now()
  })
  const deadline =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(function streamOnDeadline(): void {
          socket.destroy(
            new PepError(
              PepErrorCodes.TIMEOUT,
              `timed out after ${(options.timeoutMs ?? 0) / 1000} s in phase ${phase} with ${target} (sent ${sentBytes} bytes, reply ${replyBytes} bytes)`
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
    phase = 'send'
    sentBytes = await pump(socket, monitor, source, nextSize, sentHash, (bytes) => {
      sentBytes = bytes
      options.onProgress?.(bytes)
    })
    socket.end()
    await monitor.waitFor('finish')
    const sentAt = performance.now()
    let endAt = sentAt
    let deliveredAt = sentAt
    if (halfClose) {
      phase = 'reply'
      await monitor.waitFor('end')
      endAt = performance.now()
      deliveredAt = Math.max(sentAt, firstReplyAt ?? endAt)
    }
    const deliveredMs = deliveredAt - connectedAt
    const rate = goodput(sentBytes, deliveredMs)
    return {
      ...addresses,
      sentBytes,
      sentSha256: sentHash.digest('hex'),
      replyBytes,
      replySha256: replyHash.digest('hex'),
      halfClose,
      connectMs: roundMs(connectedAt - startedAt),
      sendMs: roundMs(sentAt - connectedAt),
      deliveredMs: roundMs(deliveredMs),
      totalMs: roundMs(endAt - connectedAt),
      goodputMbitPerSec: round3(rate.mbitPerSec),
      goodputMBytePerSec: round3(rate.mbytePerSec)
    }
  } finally {
    clearTimeout(deadline)
    socket.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Receiving

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
          `cannot listen on ${formatEndpoint(host, options.port)}: ${code}`
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
  const peer = formatEndpoint(addresses.peerAddress, addresses.peerPort)
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
  await writeFile(temporary, `${formatEndpoint(host, port)}\n`)
  await rename(temporary, path)
}

// ---------------------------------------------------------------------------------------------
// Formatting

const IEC_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const

/** A byte count for people: `512 B`, `1.50 KiB`, `64.00 MiB`. */
export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < IEC_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${IEC_UNITS[unit]!}`
}

/** A rate for people, in decimal bits as link speeds are: `842.1 Mbit/s`, `1.23 Gbit/s`. */
export function formatBitRate(bytesPerSec: number): string {
  const bits = bytesPerSec * 8
  if (bits >= 1e9) {
    return `${(bits / 1e9).toFixed(2)} Gbit/s`
  }
  if (bits >= 1e6) {
    return `${(bits / 1e6).toFixed(1)} Mbit/s`
  }
  return `${(bits / 1e3).toFixed(1)} kbit/s`
}

/** Seconds as `m:ss` (or `h:mm:ss`), for an ETA. */
export function formatClock(seconds: number): string {
  const total = Math.max(0, Math.round(seconds))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = String(total % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}

/** A progress snapshot for `formatProgress`. */
export interface ProgressSnapshot {
  /** Label at the start of the line, e.g. `sent`. */
  readonly label: string
  /** Bytes so far. */
  readonly doneBytes: number
  /** Total bytes, when known. */
  readonly totalBytes: number | undefined
  /** Recent rate in bytes per second; 0 when not known yet. */
  readonly bytesPerSec: number
}

/**
 * One progress line: bytes so far (of total), percent, rate and ETA, the last two only when
 * they mean something. Pure, so it is unit-tested.
 */
export function formatProgress(snapshot: ProgressSnapshot): string {
  const { doneBytes, totalBytes, bytesPerSec } = snapshot
  const parts = [snapshot.label]
  if (totalBytes === undefined) {
    parts.push(formatBytes(doneBytes))
  } else {
    const percent = totalBytes > 0 ? Math.min(100, (doneBytes / totalBytes) * 100) : 100
    parts.push(
      `${formatBytes(doneBytes)} / ${formatBytes(totalBytes)}`,
      `${percent.toFixed(0).padStart(3)}%`
    )
  }
  if (bytesPerSec > 0) {
    parts.push(formatBitRate(bytesPerSec))
    if (totalBytes !== undefined && totalBytes > doneBytes) {
      parts.push(`ETA ${formatClock((totalBytes - doneBytes) / bytesPerSec)}`)
    }
  }
  return parts.join('  ')
}

/** Where a progress bar draws: `process.stderr` or a test double. */
export interface ProgressSink {
  /** Only a TTY gets a progress bar. */
  readonly isTTY?: boolean | undefined
  /** Terminal width in characters, when known. */
  readonly columns?: number | undefined
  /** Writes text. */
  write(text: string): unknown
}

/**
 * A one-line progress bar redrawn in place (carriage return), at most once per
 * `PROGRESS_INTERVAL_MS`. Use `createProgressBar`, which gives a no-op on non-TTYs.
 */
export class ProgressBar {
  private doneBytes = 0
  private lastDrawAt = -Infinity
  private drawn = false
  /**
   * (time ms, bytes) at recent redraws, oldest first: the rate is measured over this window
   * rather than since the start, so idle time before the first byte or between connections
   * does not drag it down. Bounded by `PROGRESS_RATE_SAMPLES`.
   */
  private readonly samples: { readonly atMs: number; readonly bytes: number }[] = []

  constructor(
    private readonly sink: ProgressSink,
    private readonly label: string,
    private totalBytes: number | undefined,
    private readonly now: () => number = () => performance.now()
  ) {}

  /** Sets the total once it becomes known. */
  setTotal(totalBytes: number | undefined): void {
    this.totalBytes = totalBytes
  }

  /** Adds `bytes` to the count and redraws if the last redraw is old enough. */
  add(bytes: number): void {
    this.doneBytes += bytes
    const at = this.now()
    if (at - this.lastDrawAt >= PROGRESS_INTERVAL_MS) {
      this.lastDrawAt = at
      this.draw(at)
    }
  }

  /** Erases the line, so the summary that follows starts clean. */
  finish(): void {
    if (this.drawn) {
      this.sink.write('\r\x1b[K')
      this.drawn = false
    }
  }

  private draw(at: number): void {
    this.samples.push({ atMs: at, bytes: this.doneBytes })
    if (this.samples.length > PROGRESS_RATE_SAMPLES) {
      this.samples.shift()
    }
    const oldest = this.samples[0]!
    const windowMs = at - oldest.atMs
    const line = formatProgress({
      label: this.label,
      doneBytes: this.doneBytes,
      totalBytes: this.totalBytes,
      bytesPerSec: windowMs > 0 ? (this.doneBytes - oldest.bytes) / (windowMs / 1000) : 0
    })
    // A pseudo-terminal without a size reports 0 columns: assume 80 then.
    const columns = this.sink.columns ?? 0
    const width = Math.max(20, (columns > 0 ? columns : 80) - 1)
    this.sink.write(`\r\x1b[K${line.slice(0, width)}`)
    this.drawn = true
  }
}

/** Progress bar interface the CLIs use: real on a TTY, a no-op elsewhere. */
export interface Progress {
  /** Adds bytes done. */
  add(bytes: number): void
  /** Sets the total when it becomes known. */
  setTotal(totalBytes: number | undefined): void
  /** Erases the bar. */
  finish(): void
}

/** A progress bar on `sink` when `enabled` and `sink` is a TTY; otherwise one that does nothing. */
export function createProgressBar(
  sink: ProgressSink,
  label: string,
  totalBytes: number | undefined,
  enabled: boolean
): Progress {
  if (enabled && sink.isTTY === true) {
    return new ProgressBar(sink, label, totalBytes)
  }
  return { add: () => undefined, setTotal: () => undefined, finish: () => undefined }
}

// ---------------------------------------------------------------------------------------------
// CLI support

/** Exit code for a failed transfer or expectation. */
export const EXIT_FAILURE = 1
/** Exit code for bad arguments (`ConfigError`). */
export const EXIT_USAGE = 2

/** The `{ code, message }` of an error, for JSON output. */
export function errorSummary(err: unknown): { readonly code: string; readonly message: string } {
  if (err instanceof Error) {
    return { code: errnoCode(err), message: err.message }
  }
  return { code: 'EUNKNOWN', message: String(err) }
}

/**
 * Prints `err` as one line on stderr and returns the exit code: 2 for `ConfigError`, 1 for
 * other expected failures. Anything else is a bug in the tool: its stack is printed.
 */
export function reportError(program: string, err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${program}: ${err.message} (see --help)\n`)
    return EXIT_USAGE
  }
  if (err instanceof PepError || err instanceof TransferError || err instanceof ExpectationError) {
    process.stderr.write(`${program}: ${err.message}\n`)
    return EXIT_FAILURE
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err)
  process.stderr.write(`${program}: internal error: ${text}\n`)
  return EXIT_FAILURE
}

/**
 * Runs a CLI `main`, maps its outcome to `process.exitCode` (letting stdout drain rather than
 * calling `process.exit`), and reports errors as `reportError` does.
 */
export function runCli(program: string, main: (argv: readonly string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.exitCode = reportError(program, err)
    }
  )
}
