import type { SubflowId } from '../send-buffer.js'
import { bestWritable } from './best.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Lowest RTT first (getlantern/multipath, MPTCP's default): the writable subflow with the smallest
 * smoothed RTT; when its socket is full the next one takes the frame (spill-over).
 */
export class MinRttScheduler implements Scheduler {
  readonly name = 'min-rtt'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return bestWritable(
      subflows,
      (s, best) =>
        s.srttMs < best.srttMs || (s.srttMs === best.srttMs && s.queuedBytes < best.queuedBytes)
    )
  }
}
