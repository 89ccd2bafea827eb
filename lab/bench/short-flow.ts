/**
 * The short-flow rows of the benchmark: what one run of the rr client printed. Pure: no I/O.
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

/**
 * A short-flow Tandem row: a subflow congestion control, optionally with `-rN{k,m}` for
 * trunk.redundant_first_bytes (`bbr-r1m`: every flow sends its first MiB on two subflows).
 */
export function shortTandemSpec(spec: string): {
  congestion: string
  /** trunk.redundant_first_bytes as the configuration spells sizes (`1MiB`), for it to parse. */
  redundantFirstBytes?: string
} {
  const m = /^([a-z]+)(?:-r(\d+)([km]))?$/.exec(spec)
  if (m === null) throw new Error(`short-flow row ${spec}: expected CC or CC-rN{k,m}, e.g. bbr-r1m`)
  const [, congestion = '', n, unit] = m
  if (n === undefined) return { congestion }
  return { congestion, redundantFirstBytes: `${n}${unit === 'm' ? 'MiB' : 'KiB'}` }
}
