/**
 * The trunk's two clocks of inactivity: the idle timeout (flows with no byte either way for
 * `idleTimeoutMs` are reset) and the outage grace (with no subflow left, flows survive
 * `outageGraceMs`, then the trunk is lost).
 */
import { ResetReason } from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'
import { IDLE_CHECK_MAX_MS } from './settings.js'
import { Ticker } from './ticker.js'

/** A timer that resets idle flows; none when the timeout is 0. */
export class IdleReaper {
  private readonly ticker: Ticker | undefined

  /**
   * @param flows the live flows, read at each check
   * @param onIdle counts the reset (the reaper resets the flow)
   */
  constructor(
    idleTimeoutMs: number,
    now: () => number,
    flows: () => Iterable<Flow>,
    onIdle: (flow: Flow) => void
  ) {
    if (idleTimeoutMs <= 0) return
    this.ticker = new Ticker(Math.min(IDLE_CHECK_MAX_MS, idleTimeoutMs), () => {
      const t = now()
      for (const flow of [...flows()]) {
        if (flow.idleMs(t) <= idleTimeoutMs) continue
        onIdle(flow)
        flow.abort(ResetReason.IDLE_TIMEOUT, `no byte either way for ${idleTimeoutMs} ms`)
      }
    }).start()
  }

  /** Stop checking. */
  close(): void {
    this.ticker?.stop()
  }
}

/** The outage grace: `onExpired` runs once `graceMs` after `start`, unless cancelled. */
export class OutageGrace {
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly graceMs: number,
    private readonly onExpired: () => void
  ) {}

  /** The last subflow is gone: start the grace (once). */
  start(): void {
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.onExpired()
    }, this.graceMs)
    this.timer.unref()
  }

  /** A subflow is back, or the trunk closes; true when a grace was running. */
  cancel(): boolean {
    if (this.timer === undefined) return false
    clearTimeout(this.timer)
    this.timer = undefined
    return true
  }
}
