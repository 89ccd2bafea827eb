import type { SubflowId } from '../send-buffer.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Lowest RTT first (getlantern/multipath, MPTCP's default): the writable subflow with the smallest
 * smoothed RTT; when its socket is full the next one takes the frame (spill-over).
 */
export class MinRttScheduler implements Scheduler {
  readonly name = 'min-rtt'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    let best: SubflowView | undefined
    for (const s of subflows) {
      if (!s.writable) continue
      if (
        best === undefined ||
        s.srttMs < best.srttMs ||
        (s.srttMs === best.srttMs && s.queuedBytes < best.queuedBytes)
      ) {
        best = s
      }
    }
    return best?.id
  }
}
