import type { SubflowId } from '../send-buffer.js'
import { FirstFreeScheduler } from './first-free.js'
import type { Scheduler, SubflowView } from './scheduler.js'

/**
 * dp-tcp's duplicate-and-eliminate: every frame goes on two subflows, on different paths when
 * there are two, and the receiver keeps the first copy (it places bytes by offset, so the second
 * is dropped as a duplicate). For interactive flows: latency and loss of one path are hidden.
 * The primary is picked as first-free does; the copy's subflow is `copyPath` (core/redundancy.ts),
 * the one rule for every redundant frame.
 */
export class RedundantScheduler implements Scheduler {
  readonly name = 'redundant'
  readonly copiesEveryFrame = true
  private readonly primary = new FirstFreeScheduler()

  pick(bytes: number, subflows: readonly SubflowView[]): SubflowId | undefined {
    return this.primary.pick(bytes, subflows)
  }
}
