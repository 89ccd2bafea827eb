/**
 * The short-flow rows of the benchmark: what one run of the rr client printed, and medians that
 * count a download past its deadline as slower than any that finished. Pure: no I/O.
 */

/** Deadline of one short-flow download: a direct cubic 10 MB at 600 ms and 1 % takes minutes. */
export const SHORT_FLOW_TIMEOUT_MS = 60_000

/** One short-flow run as the rr client printed it (a crashed or killed client: `failed`). */
export interface ShortSample {
  readonly ttfbMs: number | null
  readonly completionMs: number | null
}

/** Parse the last line the rr client printed; anything else is a failed run, never a crash. */
export function parseShortSample(output: string): ShortSample {
  try {
    const j = JSON.parse(output.trim().split('\n').pop() ?? '') as {
      ttfbMs?: number | null
      completionMs?: number
      timedOut?: boolean
    }
    const ttfb = typeof j.ttfbMs === 'number' && j.ttfbMs > 0 ? j.ttfbMs : null
    if (j.timedOut === true || typeof j.completionMs !== 'number')
      return { ttfbMs: ttfb, completionMs: null }
    return { ttfbMs: ttfb, completionMs: j.completionMs }
  } catch {
    return { ttfbMs: null, completionMs: null }
  }
}

/** Median where null (did not finish) ranks above every number; null when the median is one. */
export function medianOrNull(xs: readonly (number | null)[]): number | null {
  const done = xs.filter((x): x is number => x !== null).sort((a, b) => a - b)
  const all = [...done, ...xs.filter((x) => x === null)]
  if (all.length === 0) return null
  const mid =
    all.length % 2 === 1
      ? [all[(all.length - 1) / 2]]
      : [all[all.length / 2 - 1], all[all.length / 2]]
  return mid.some((x) => x === null || x === undefined)
    ? null
    : mid.reduce<number>((a, b) => a + (b ?? 0), 0) / mid.length
}
