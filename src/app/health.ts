/**
 * Liveness and readiness, served on the metrics listener: `/healthz` says the process runs and
 * its event loop is not stuck, `/readyz` says it can carry flows now. The loop is watched by a
 * timer that measures how late it fires (the lag every callback of the process suffers).
 */
import { Ticker } from '../trunk/ticker.js'

/** How often the loop monitor ticks, in ms. */
const TICK_MS = 100
/** How far back the worst lag is remembered, in ms. */
const WINDOW_MS = 10_000

/** Measures event-loop lag: how late a periodic timer fires. */
export class LoopMonitor {
  private readonly ticker = new Ticker(TICK_MS, () => {
    this.tick()
  })
  /** When the next tick is due; undefined before the first. */
  private expected: number | undefined
  /** Worst lag per one-second bucket of the last WINDOW_MS, [bucket, lagMs]. */
  private readonly buckets: [number, number][] = []
  private lastLagMs = 0

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Start ticking (the timer does not keep the process alive). */
  start(): void {
    if (this.ticker.running) return
    this.expected = this.now() + TICK_MS
    this.ticker.start()
  }

  stop(): void {
    this.ticker.stop()
  }

  /** Record one tick (public for tests with a fake clock). */
  tick(): void {
    const t = this.now()
    this.record(this.expected === undefined ? 0 : Math.max(0, t - this.expected), t)
    this.expected = t + TICK_MS
  }

  /** Lag of the latest tick, in ms. */
  get lagMs(): number {
    return this.lastLagMs
  }

  /**
   * The worst lag over the last ten seconds, in ms, including the time since the last tick
   * beyond its due time (a loop stuck right now shows here as soon as anything can ask).
   */
  maxLagMs(): number {
    const t = this.now()
    const current =
      !this.ticker.running || this.expected === undefined ? 0 : Math.max(0, t - this.expected)
    let max = current
    for (const [bucket, lag] of this.buckets) {
      if ((bucket + 1) * 1000 >= t - WINDOW_MS && lag > max) max = lag
    }
    return max
  }

  private record(lagMs: number, t: number): void {
    this.lastLagMs = lagMs
    const bucket = Math.floor(t / 1000)
    const last = this.buckets[this.buckets.length - 1]
    if (last !== undefined && last[0] === bucket) last[1] = Math.max(last[1], lagMs)
    else this.buckets.push([bucket, lagMs])
    while (this.buckets.length > 0 && (this.buckets[0]![0] + 1) * 1000 < t - WINDOW_MS) {
      this.buckets.shift()
    }
  }
}

/** One health answer: HTTP 200 when ok, 503 otherwise, with a one-line reason. */
export interface HealthAnswer {
  readonly ok: boolean
  readonly detail: string
}

/** The loop lag above which `/healthz` fails, in ms. */
export const STUCK_LOOP_MS = 2000

/** `/healthz`: alive, with the loop's worst lag of the last ten seconds under STUCK_LOOP_MS. */
export function liveness(monitor: LoopMonitor): HealthAnswer {
  const worst = monitor.maxLagMs()
  if (worst > STUCK_LOOP_MS) {
    return {
      ok: false,
      detail: `event loop stalled: ${Math.round(worst)} ms late in the last 10 s (limit ${STUCK_LOOP_MS} ms)`
    }
  }
  return { ok: true, detail: `ok: event loop lag ${Math.round(worst)} ms max in the last 10 s` }
}
