/** Sizes, rates and times for people, and the one-line progress bar on a terminal. */
import { performance } from 'node:perf_hooks'

/** Minimum time between two progress-bar redraws in ms (at most ~10 redraws a second). */
export const PROGRESS_INTERVAL_MS = 100

/** Redraws the progress rate is averaged over (20 at 100 ms: about the last 2 s). */
const PROGRESS_RATE_SAMPLES = 20

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
