import type { SubflowId } from '../send-buffer.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * Weighted by measured goodput: the writable subflow whose queue drains soonest at its measured
 * delivery rate times its path's weight. Before any rate is measured it behaves as first-free.
 */
export class WeightedScheduler implements Scheduler {
  readonly name = 'weighted'

  pick(bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    let best: SubflowView | undefined
    let bestCost = Infinity
    for (const s of subflows) {
      if (!s.writable) continue
      const rate = s.rateBytesPerSec * s.weight
      const cost =
        rate > 0 ? (s.unsentBytes + bytes) / rate : Number.MAX_SAFE_INTEGER + s.unsentBytes
      if (cost < bestCost) {
        best = s
        bestCost = cost
      }
    }
    return best?.id
  }
}
