/**
 * Argument parsing for the traffic tools: every parser throws ConfigError naming the option,
 * which the CLIs turn into one line and exit code 2.
 */
import { ConfigError } from '../../common/errors.js'
import { parseByteSize, SIZE_RULE } from '../../common/size.js'

/**
 * Largest accepted write size in bytes (64 MiB). Each write is one freshly allocated buffer, so
 * this bounds the memory one write can pin.
 */
export const MAX_WRITE_BYTES = 64 * 1024 * 1024

/**
 * Parses a byte count by the one size rule of `common/size.ts` (shared with the configuration).
 *
 * @param text - e.g. `64MiB`, `1G`, `4096`
 * @param key - option name for the error message
 * @returns the size in bytes (a safe integer)
 * @throws ConfigError when the text is not a size
 */
export function parseSize(text: string, key = 'size'): number {
  const bytes = parseByteSize(text)
  if (bytes === undefined) {
    throw new ConfigError(
      key,
      `invalid size '${text}': expected a whole number of bytes (${SIZE_RULE})`
    )
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
 * Parses a count (decimal digits only), positive unless `allowZero`.
 *
 * @throws ConfigError when not an integer from 1 (or 0) to 2^53 - 1
 */
export function parseCount(text: string, key = 'count', allowZero = false): number {
  const trimmed = text.trim()
  const count = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN
  if (!Number.isSafeInteger(count) || (count < 1 && !allowZero)) {
    const expected = allowZero ? 'a whole number' : 'a positive integer'
    throw new ConfigError(key, `invalid count '${text}': expected ${expected}`)
  }
  return count
}

/**
 * Parses a TCP congestion control name as the kernel spells them (cubic, bbr, reno...).
 *
 * @throws ConfigError when it is not such a name
 */
export function parseCongestion(text: string, key = 'congestion'): string {
  if (!/^[a-z0-9_]{1,15}$/.test(text)) {
    throw new ConfigError(
      key,
      `invalid congestion control '${text}': expected a name such as cubic or bbr`
    )
  }
  return text
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
