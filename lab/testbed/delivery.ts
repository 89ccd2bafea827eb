/**
 * What the programs in the two-path testbed report: `./receive --duplex`'s JSON events (one
 * line per event) and `./stream --json`'s result, and the rates read from a delivery trace.
 */
import type { DuplexResult } from '../../src/tools/harness.js'
import type { NsProcess } from './ns-process.js'

/** Seed of the duplex receiver's reply (the senders' ./stream uses 1 by default: keep them apart). */
export const DUPLEX_REPLY_SEED = 2

/** One connection's report (`"event":"done"` line): what `serveDuplex` measured. */
export interface DuplexReport extends DuplexResult {
  readonly event: 'done'
  /** True when the stream ended cleanly and the whole reply went out. */
  readonly ok: boolean
  /** 1 for the first connection accepted. */
  readonly connection: number
}

/** A progress line (`"event":"progress"`). */
export interface DuplexProgress {
  readonly event: 'progress'
  readonly connection: number
  readonly at: number
  readonly bytes: number
}

/** What the duplex receiver printed so far. */
export interface ReceiverView {
  /** Connections accepted. */
  readonly accepted: number
  /** Bytes received on the latest connection, from its latest progress line or report. */
  readonly receivedBytes: number
  /** Reports of the connections that ended, in order. */
  readonly reports: readonly DuplexReport[]
}

/** Parses the duplex receiver's output (JSON lines). */
export function readReceiver(p: NsProcess): ReceiverView {
  let accepted = 0
  let receivedBytes = 0
  const reports: DuplexReport[] = []
  for (const line of p.output().split('\n')) {
    if (!line.startsWith('{')) continue
    const r = JSON.parse(line) as { event: string; bytes?: number; receivedBytes?: number }
    if (r.event === 'accepted') accepted++
    else if (r.event === 'progress') receivedBytes = r.bytes ?? receivedBytes
    else if (r.event === 'done') {
      reports.push(r as unknown as DuplexReport)
      receivedBytes = r.receivedBytes ?? receivedBytes
    }
  }
  return { accepted, receivedBytes, reports }
}

/** `./stream --json`'s result line (the fields the tests use). */
export interface StreamReport {
  readonly ok: boolean
  readonly sentBytes?: number
  readonly sentSha256?: string
  readonly replyBytes?: number
  readonly replySha256?: string
  readonly error?: { readonly code: string; readonly message: string }
}

/** The last JSON line `./stream --json` printed, or undefined. */
export function readStream(p: NsProcess): StreamReport | undefined {
  const lines = p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
  const last = lines[lines.length - 1]
  return last === undefined ? undefined : (JSON.parse(last) as StreamReport)
}

/**
 * Goodput in Mbit/s from a report's samples between `fromMs` and `toMs` (wall clock),
 * interpolating between samples.
 */
export function rateMbit(
  samples: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number
): number {
  const at = (t: number): number => {
    let prev: readonly [number, number] | undefined
    for (const s of samples) {
      if (s[0] >= t) {
        if (prev === undefined || s[0] === prev[0]) return s[1]
        return prev[1] + ((s[1] - prev[1]) * (t - prev[0])) / (s[0] - prev[0])
      }
      prev = s
    }
    return prev?.[1] ?? 0
  }
  return toMs > fromMs ? ((at(toMs) - at(fromMs)) * 8) / ((toMs - fromMs) * 1000) : 0
}

/**
 * Goodput in Mbit/s between `fromMs` and `toMs` (wall clock) as the least-squares slope of the
 * received-bytes samples: delivery through a reorder buffer comes in bursts, and a plain
 * difference between two instants moves by a whole burst with where the window edges fall.
 */
export function slopeMbit(
  samples: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number
): number {
  const pts = samples.filter(([t]) => t >= fromMs && t <= toMs)
  if (pts.length < 2) return 0
  const mt = pts.reduce((a, [t]) => a + t, 0) / pts.length
  const mb = pts.reduce((a, [, b]) => a + b, 0) / pts.length
  let num = 0
  let den = 0
  for (const [t, b] of pts) {
    num += (t - mt) * (b - mb)
    den += (t - mt) ** 2
  }
  return den > 0 ? (num / den) * 0.008 : 0
}
