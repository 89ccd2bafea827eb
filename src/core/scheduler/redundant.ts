import type { SubflowId } from '../send-buffer.js'
import { FirstFreeScheduler } from './first-free.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * dp-tcp's duplicate-and-eliminate: every frame goes on two subflows, on different paths when
 * there are two, and the receiver keeps the first copy (it places bytes by offset, so the second
 * is dropped as a duplicate). For interactive flows: latency and loss of one path are hidden.
 */
export class RedundantScheduler implements Scheduler {
  readonly name = 'redundant'
  private readonly primary = new FirstFreeScheduler()

  pick(bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return this.primary.pick(bytes, subflows)
  }

  duplicate(primary: SubflowId, subflows: readonly SubflowView[]): SubflowId | undefined {
    const first = subflows.find((s) => s.id === primary)
    let other: SubflowView | undefined
    let samePath: SubflowView | undefined
    for (const s of subflows) {
      if (s.id === primary || !s.writable) continue
      if (first !== undefined && s.pathId !== first.pathId) {
        if (other === undefined || s.unsentBytes < other.unsentBytes) other = s
      } else if (samePath === undefined || s.unsentBytes < samePath.unsentBytes) {
        samePath = s
      }
    }
    return (other ?? samePath)?.id
  }
}
