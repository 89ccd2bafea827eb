/**
 * Byte sizes as people write them, one rule for the configuration and the tools: K, M, G, T
 * and KiB, MiB, GiB, TiB are powers of 1024 (as dd and iperf read K, M, G); KB, MB, GB, TB
 * are powers of 1000; B or nothing means bytes. Case-insensitive. A fraction is allowed when
 * the result is a whole number of bytes (`1.5K` = 1536).
 */

/** The rule above in one line, for help texts and error messages. */
export const SIZE_RULE =
  'K, M, G, T (or KiB, MiB, GiB, TiB) are powers of 1024; KB, MB, GB, TB powers of 1000'

/** Multipliers for size suffixes, keyed in lower case. */
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
 * Reads a byte count such as `64MiB`, `1G`, `10MB` or `4096` by the rule above.
 *
 * @returns the size in bytes (a safe integer), or undefined when `text` is not one
 */
export function parseByteSize(text: string): number | undefined {
  const match = SIZE_PATTERN.exec(text.trim())
  const unit = match === null ? undefined : SIZE_UNITS[match[2]!.toLowerCase()]
  if (match === null || unit === undefined) return undefined
  const bytes = Number(match[1]) * unit
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

/** The rate rule in one line, for help texts and error messages. */
export const RATE_RULE =
  'bits per second with k, m, g (powers of 1000) and an optional bit or bit/s suffix, e.g. 100mbit, 1.5gbit, 20m; 0 or empty: learn it'

/** Multipliers of rate prefixes (bits per second), keyed in lower case: network rates are decimal. */
const RATE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  t: 1e12
}

/**
 * `bps` and `B/s` are refused: tc reads `bps` as bytes per second and most people read `MB/s` as
 * megabytes, so either would be a factor of 8 away from what someone meant.
 */
const RATE_PATTERN = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit|bits|bit\/s)?$/i

/**
 * Reads a link rate such as `100mbit`, `1.5Gbit`, `20M` or `800000` (bits per second, decimal
 * prefixes as tc and iperf read them) by RATE_RULE. The empty string means 0 (learn it).
 *
 * @returns the rate in bytes per second (rounded down), or undefined when `text` is not one
 */
export function parseBitRate(text: string): number | undefined {
  const trimmed = text.trim()
  if (trimmed === '') return 0
  const match = RATE_PATTERN.exec(trimmed)
  const unit = match === null ? undefined : RATE_UNITS[match[2]!.toLowerCase()]
  if (match === null || unit === undefined) return undefined
  const bytes = Math.floor((Number(match[1]) * unit) / 8)
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

/** A rate in bytes per second as people read it: `100 Mbit/s`. */
export function formatBitRate(bytesPerSec: number): string {
  const bits = bytesPerSec * 8
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(2)} Gbit/s`
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(0)} kbit/s`
  return `${bits.toFixed(0)} bit/s`
}
