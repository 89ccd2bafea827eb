/**
 * A manual clock for tests (quic-go's mockClock): time moves only when the test says so, so no
 * test sleeps and every run sees the same times.
 */
export class FakeClock {
  private t: number

  /** Starts at `startMs` milliseconds. */
  constructor(startMs = 0) {
    this.t = startMs
  }

  /** Current time, in milliseconds. */
  now(): number {
    return this.t
  }

  /** Move time forward by `ms` milliseconds (never backward). */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`cannot advance a clock by ${ms} ms`)
    this.t += ms
  }
}
