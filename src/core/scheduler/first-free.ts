import type { SubflowId } from '../send-buffer.js'
import { bestWritable } from './best.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Self-clocking "first free": the writable subflow with the least queued, lowest RTT on a tie.
 * The original C proxy's "first free connection", made non-blocking: a subflow that drains faster
 * (more congestion window, less loss) comes free sooner and so carries more.
 */
export class FirstFreeScheduler implements Scheduler {
  readonly name = 'first-free'

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return bestWritable(
      subflows,
      (s, best) =>
        s.queuedBytes < best.queuedBytes ||
        (s.queuedBytes === best.queuedBytes && s.srttMs < best.srttMs)
    )
  }
}
