/**
 * A repeating timer of the trunk layer (pings, idle checks, reinjection, rate samples): started
 * once, stopped any number of times, and unref'd so that it never keeps a process alive.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly everyMs: number,
    private readonly tick: () => void
  ) {}

  /** Tick every `everyMs` from now on (a second start changes nothing). */
  start(): this {
    if (this.timer !== undefined) return this
    this.timer = setInterval(this.tick, this.everyMs)
    this.timer.unref()
    return this
  }

  /** No more ticks. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}
