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
