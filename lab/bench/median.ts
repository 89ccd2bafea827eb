/** Medians for the benchmark's cells. Pure: no I/O. */

/** The median of `xs` (the mean of the middle two for an even count); NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** Median where null (did not finish) ranks above every number; null when the median is one. */
export function medianOrNull(xs: readonly (number | null)[]): number | null {
  const m = median(xs.map((x) => x ?? Infinity))
  return Number.isFinite(m) ? m : null
}
