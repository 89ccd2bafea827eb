/**
 * What a trunk is given: its role and id, settings, scheduler, shared budget and counters, and
 * the capabilities the process shell injects (connect, socket tuning, TCP_INFO, pacing).
 */
import type { Socket } from 'node:net'
import type { Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import type { MemoryBudget } from '../core/memory-budget.js'
import type { Scheduler } from '../core/scheduler/scheduler.js'
import type { Connector } from './connector.js'
import type { RateProbe } from './rate-loop.js'
import type { TrunkSettings } from './settings.js'
import type { Trunk } from './trunk.js'

/** Everything a trunk is given. */
export interface TrunkOptions {
  readonly role: 'tx' | 'rx'
  readonly trunkId: Uint8Array
  readonly settings: TrunkSettings
  readonly scheduler: Scheduler
  readonly budget: MemoryBudget
  readonly counters: Counters
  readonly log: Logger
  readonly now: () => number
  /** rx: connects each flow the peer opens. Without it the trunk refuses OPENs. */
  readonly connect?: Connector
  /** Delivery rate of a subflow socket in bytes/s (TCP_INFO), for the weighted scheduler. */
  readonly sampleRate?: (socket: Socket) => number
  /** Bytes a subflow socket holds in the kernel and has not sent (SIOCOUTQNSD), for schedulers. */
  readonly kernelUnsent?: (socket: Socket) => number
  /**
   * Reads TCP_INFO and sets SO_MAX_PACING_RATE for the trunk's rate controller. Without it the
   * trunk neither samples nor paces (tests that run without the addon).
   */
  readonly rateProbe?: RateProbe
  /** Tunes each subflow socket as it joins (congestion control, NOTSENT_LOWAT, buffers). */
  readonly tuneSocket?: (socket: Socket) => void
  /**
   * Tunes a subflow socket of a trunk whose min RTT reached LONG_PATH_RTT_MS (the long-path
   * congestion control); called once per subflow by the rate loop.
   */
  readonly tuneLongPath?: (socket: Socket) => void
  /** Sets an application socket's close to abortive or graceful (see `AppSocketOptions`). */
  readonly setAbortiveClose?: (socket: Socket, abortive: boolean) => void
  /** The trunk has no subflow left and its grace ran out (its flows were reset). */
  readonly onLost?: (trunk: Trunk) => void
}
