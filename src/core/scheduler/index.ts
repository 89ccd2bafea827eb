/** Schedulers by the name used in network.conf. */
import { FirstFreeScheduler } from './first-free.js'
import { MinRttScheduler } from './min-rtt.js'
import { RedundantScheduler } from './redundant.js'
import { WeightedScheduler } from './weighted.js'
import { RoundRobinScheduler } from './round-robin.js'
import type { Scheduler } from './scheduler.js'
import type { SchedulerName } from '../../common/config/schema.js'

export type { Scheduler, SubflowView } from './scheduler.js'

export { SCHEDULER_NAMES, type SchedulerName } from '../../common/config/schema.js'

/** A new scheduler instance (each trunk has its own: schedulers keep cursors). */
export function createScheduler(name: SchedulerName): Scheduler {
  switch (name) {
    case 'first-free':
      return new FirstFreeScheduler()
    case 'round-robin':
      return new RoundRobinScheduler()
    case 'min-rtt':
      return new MinRttScheduler()
    case 'weighted':
      return new WeightedScheduler()
    case 'redundant':
      return new RedundantScheduler()
  }
}
