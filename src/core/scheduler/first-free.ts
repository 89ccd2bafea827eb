import type { SubflowId } from '../send-buffer.js'
import { bestWritable } from './best.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Self-clocking "first free": the writable subflow with the fewest bytes waiting to leave (user
 * space and the kernel's unsent bytes), lowest RTT on a tie. The original C proxy's "first free
 * connection", made non-blocking: a subflow that drains faster (more congestion window, less
 * loss) comes free sooner and so carries more; and a burst is spread over the subflows whose
 * windows have room, so it leaves in one round trip instead of queueing behind one window.
 */
export class FirstFreeScheduler implements Scheduler {
  readonly name = 'first-free'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return bestWritable(
      subflows,
      (s, best) =>
        s.unsentBytes < best.unsentBytes ||
        (s.unsentBytes === best.unsentBytes && s.srttMs < best.srttMs)
    )
  }
}
