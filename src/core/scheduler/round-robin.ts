import type { SubflowId } from '../send-buffer.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/** Plain round-robin over the writable subflows, in id order. */
export class RoundRobinScheduler implements Scheduler {
  readonly name = 'round-robin'
  private last = -1

  pick(_bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    const n = subflows.length
    if (n === 0) return undefined
    // Start after the subflow picked last time, found by id so that joins and losses keep order.
    let start = 0
    for (let i = 0; i < n; i++) {
      if (subflows[i]!.id > this.last) {
        start = i
        break
      }
    }
    for (let k = 0; k < n; k++) {
      const s = subflows[(start + k) % n]!
      if (s.writable) {
        this.last = s.id
        return s.id
      }
    }
    return undefined
  }
}
