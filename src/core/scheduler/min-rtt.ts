import type { SubflowId } from '../send-buffer.js'
import { bestWritable } from './best.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Lowest RTT first (getlantern/multipath, MPTCP's default): among the writable subflows whose
 * windows have room (nothing waiting to leave), the one with the smallest smoothed RTT; when
 * none has room, the lowest RTT again, fewest bytes waiting on a tie (spill-over).
 */
export class MinRttScheduler implements Scheduler {
  readonly name = 'min-rtt'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return bestWritable(subflows, (s, best) => {
      const room = s.unsentBytes === 0
      if (room !== (best.unsentBytes === 0)) return room
      return (
        s.srttMs < best.srttMs || (s.srttMs === best.srttMs && s.unsentBytes < best.unsentBytes)
      )
    })
  }
}
