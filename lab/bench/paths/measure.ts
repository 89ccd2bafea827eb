/** Constants and pure helpers of the path benchmark: stalls, recovery, rates, labels. */

import { errorMessage } from '../../../src/common/errors.js'
import { type ProxyStatus } from '../../../src/app/control.js'
import { rateMbit } from '../../testbed/delivery.js'
import { type PathImpairment, type PathName } from '../../testbed/two-path.js'
import type { RecoveryDefinition } from './results.js'

/** Bytes in a MiB. */
export const MiB = 1024 * 1024
/** Subflows per path in every Tandem run. */
export const SUBFLOWS_PER_PATH = 2
/** Step of the recovery search, ms (the duplex receiver samples every 20 ms). */
export const SEARCH_STEP_MS = 20
/**
 * A gap in delivery belongs to a kill when it is in progress at the kill or starts this soon
 * after it, ms: the kill's own stall starts within a round trip or two; a later one (a loss on
 * a re-dialled subflow's slow start, say) shows in the recovery time instead.
 */
export const GAP_WINDOW_MS = 1000
/** Bin of the rate trace kept with each kill, ms. */
export const TRACE_BIN_MS = 250

/** Nearest-rank percentile of ascending `sorted` (p in 0..100); null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1] ?? null
}

/** A stretch with no data delivered: [start, end] wall-clock ms. */
export interface Stall {
  readonly start: number
  readonly end: number
}

/**
 * Stretches where the received-bytes samples do not move: from the first sample showing a count
 * to the first sample showing more (so each is accurate to a sample period, 20 ms).
 */
export function stallsOf(samples: readonly (readonly [number, number])[]): Stall[] {
  const out: Stall[] = []
  let since: readonly [number, number] | undefined
  for (const s of samples) {
    if (since === undefined || s[1] !== since[1]) {
      if (since !== undefined && s[0] - since[0] > 0) out.push({ start: since[0], end: s[0] })
      since = s
    }
  }
  return out
}

/** Longest stall overlapping [from, to], ms (0 when none). */
export function longestStall(stalls: readonly Stall[], from: number, to: number): number {
  let best = 0
  for (const s of stalls) {
    if (s.end > from && s.start < to) best = Math.max(best, s.end - s.start)
  }
  return best
}

/**
 * Recovery after a kill at `killAt`: the first instant t ≥ killAt (in 20 ms steps) from which
 * each of `def.windows` consecutive windows of `def.windowMs` delivers at least `targetMbit`, and
 * no stall longer than `def.maxStallMs` touches them (a stall counts whole, so a gap caused by
 * the kill must be over before t). Milliseconds from the kill; 0 when delivery never fell short;
 * null when not before `horizonEnd`.
 */
export function recoveryMs(
  samples: readonly (readonly [number, number])[],
  killAt: number,
  horizonEnd: number,
  targetMbit: number,
  def: RecoveryDefinition
): number | null {
  const stalls = stallsOf(samples)
  const span = def.windowMs * def.windows
  for (let t = killAt; t + span <= horizonEnd; t += SEARCH_STEP_MS) {
    if (longestStall(stalls, t, t + span) > def.maxStallMs) continue
    let ok = true
    for (let k = 0; k < def.windows && ok; k++) {
      const from = t + k * def.windowMs
      ok = rateMbit(samples, from, from + def.windowMs) >= targetMbit
    }
    if (ok) return t - killAt
  }
  return null
}

/** Delivered rate in bins of TRACE_BIN_MS over [from, to], Mbit/s. */
export function traceOf(
  samples: readonly (readonly [number, number])[],
  from: number,
  to: number
): number[] {
  const out: number[] = []
  for (let t = from; t + TRACE_BIN_MS <= to; t += TRACE_BIN_MS) {
    out.push(round(rateMbit(samples, t, t + TRACE_BIN_MS)))
  }
  return out
}

/** A message from anything thrown. */
export function errorText(err: unknown): string {
  return errorMessage(err).split('\n')[0]?.slice(0, 200) ?? ''
}

/** `x` rounded to `digits` decimals, for JSON that stays readable. */
export function round(x: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** Bytes tx_proxy sent on each path over `ms`, Mbit/s. */
export function sentPerPath(s: ProxyStatus, ms: number): { a: number; b: number } {
  const on = (id: number): number =>
    (s.trunks[0]?.subflows ?? [])
      .filter((x) => x.pathId === id)
      .reduce((acc, x) => acc + x.bytesSent, 0)
  const mbit = (bytes: number): number => (ms > 0 ? round((bytes * 8) / (ms * 1000)) : 0)
  return { a: mbit(on(0)), b: mbit(on(1)) }
}

/** The link settings as one short phrase: `a 50 ms one-way, 40 Mbit/s, 0 % loss`. */
export function linkText(name: PathName, l: PathImpairment): string {
  const rtt = 2 * (l.delayMs ?? 0)
  const rate = l.rateMbit !== undefined && l.rateMbit > 0 ? `${l.rateMbit} Mbit/s` : 'unshaped'
  return `path ${name}: ${rtt} ms RTT, ${rate}, ${l.lossPercent ?? 0} % loss each way`
}
