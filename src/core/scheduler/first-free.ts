import type { SubflowId } from '../send-buffer.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Self-clocking "first free": the writable subflow with the least queued, lowest RTT on a tie.
 * The original C proxy's "first free connection", made non-blocking: a subflow that drains faster
 * (more congestion window, less loss) comes free sooner and so carries more.
 */
export class FirstFreeScheduler implements Scheduler {
  readonly name = 'first-free'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    let best: SubflowView | undefined
    for (const s of subflows) {
      if (!s.writable) continue
      if (
        best === undefined ||
        s.queuedBytes < best.queuedBytes ||
        (s.queuedBytes === best.queuedBytes && s.srttMs < best.srttMs)
      ) {
        best = s
      }
    }
    return best?.id
  }
}
