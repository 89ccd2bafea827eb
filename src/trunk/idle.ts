/** The idle timeout: flows with no byte either way for `idleTimeoutMs` are reset. */
import { ResetReason } from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'
import { IDLE_CHECK_MAX_MS } from './settings.js'

/** A timer that resets idle flows; none when the timeout is 0. */
export class IdleReaper {
  private readonly timer: NodeJS.Timeout | undefined

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
    this.timer = setInterval(
      () => {
        const t = now()
        for (const flow of [...flows()]) {
          if (flow.idleMs(t) <= idleTimeoutMs) continue
          onIdle(flow)
          flow.abort(ResetReason.IDLE_TIMEOUT, `no byte either way for ${idleTimeoutMs} ms`)
        }
      },
      Math.min(IDLE_CHECK_MAX_MS, idleTimeoutMs)
    )
    this.timer.unref()
  }

  /** Stop checking. */
  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }
}
