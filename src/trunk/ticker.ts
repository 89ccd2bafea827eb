/**
 * The proxies' one repeating timer: pings, idle checks, reinjection, credit release and rate
 * samples here, the trunk watch, the loop monitor, the systemd watchdog and status in app/.
 * Started once, stopped any number of times, and unref'd so that it never keeps a process
 * alive. It lives in trunk/ because common/ and core/ keep no time.
 */
export class Ticker {
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly everyMs: number,
    private readonly tick: () => void
  ) {}

  /** Ticking now (started and not stopped). */
  get running(): boolean {
    return this.timer !== undefined
  }

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
