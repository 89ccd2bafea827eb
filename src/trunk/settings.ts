/**
 * What a trunk is configured with (a slice of the parsed config), and the limits of trunk code
 * that are not configurable, named with their unit and reason.
 */
import type { Config } from '../common/config/config.js'
import type { PortRange } from '../common/policy.js'

/** Settings a trunk needs. */
export interface TrunkSettings {
  /** Largest DATA payload we send, in bytes (also capped by the peer's max frame body). */
  readonly maxPayloadBytes: number
  /** Largest frame body we accept, in bytes (announced in our hello). */
  readonly maxFrameBodyBytes: number
  /** Credit we grant per flow, in bytes (announced in our hello). */
  readonly flowWindowBytes: number
  /** Most credit per flow, in bytes (the window grows towards it). */
  readonly maxFlowWindowBytes: number
  /** Bytes per flow read from its application and not yet sent before it is paused. */
  readonly sendBufferBytes: number
  /** Most separate byte ranges a flow's reorder buffer holds. */
  readonly maxReorderSegments: number
  /** Most flows at once on this trunk. */
  readonly maxFlows: number
  /** User-space bytes queued per subflow socket above which the subflow takes no more DATA. */
  readonly subflowQueueBytes: number
  /** How often each subflow sends a PING, in ms. */
  readonly pingIntervalMs: number
  /** A subflow that received nothing for this long is dead, in ms. */
  readonly pingTimeoutMs: number
  /** How long flows survive with no subflow at all, in ms. */
  readonly outageGraceMs: number
  /** Flows to these destination ports send every frame on two subflows. */
  readonly redundantPorts: readonly PortRange[]
  /** Every flow sends its first N bytes redundantly (0: off). */
  readonly redundantFirstBytes: number
  /** Flows idle this long are reset, in ms (0: never). */
  readonly idleTimeoutMs: number
  /** A flow whose application sent nothing this long gives back the peer's credit, in ms (0: never). */
  readonly creditReleaseIdleMs: number
  /** Operator-set bottleneck rate, bytes per second (0: the rate controller learns it). */
  readonly linkRateBytesPerSec: number
}

/** The trunk settings in a parsed config (the same for both roles). */
export function trunkSettings(config: Readonly<Config>): TrunkSettings {
  return {
    maxPayloadBytes: config.trunk.framePayloadBytes,
    maxFrameBodyBytes: config.limits.maxFrameBodyBytes,
    flowWindowBytes: config.limits.flowWindowBytes,
    maxFlowWindowBytes: config.limits.maxFlowWindowBytes,
    sendBufferBytes: config.limits.sendBufferBytes,
    maxReorderSegments: config.limits.maxReorderSegments,
    maxFlows: config.limits.maxFlows,
    subflowQueueBytes: config.limits.subflowQueueBytes,
    pingIntervalMs: config.trunk.pingIntervalMs,
    pingTimeoutMs: config.trunk.pingTimeoutMs,
    outageGraceMs: config.trunk.outageGraceMs,
    redundantPorts: config.trunk.redundantPorts,
    redundantFirstBytes: config.trunk.redundantFirstBytes,
    idleTimeoutMs: config.limits.idleTimeoutMs,
    creditReleaseIdleMs: config.limits.creditReleaseIdleMs,
    linkRateBytesPerSec: config.trunk.linkRateBytesPerSec
  }
}

/**
 * Control frames we answer a peer with (PONG, RESET of a refused OPEN) are dropped once a
 * subflow's queue holds this many times `subflowQueueBytes`: DATA alone fills it to one, so only
 * a peer that floods requests and never reads gets there, and it must not grow our memory.
 */
export const CONTROL_QUEUE_FACTOR = 4

/** Ids of ended flows remembered (a late copy of an OPEN must not open a flow again). */
export const RECENTLY_CLOSED_MAX = 65_536

/** How long an ended flow's id is remembered, in ms: far beyond any copy's delay on a subflow. */
export const RECENTLY_CLOSED_MS = 60_000

/**
 * After the peer refused a flow for a limit (max_flows, max_buffered_bytes), new SYNs pass
 * directly for this long, in ms, instead of being carried and reset (a refused OPEN resets
 * the client's connection it carried).
 */
export const PEER_FULL_HOLD_MS = 2000

/** The idle check runs at least this often, in ms (more often when the idle timeout is shorter). */
export const IDLE_CHECK_MAX_MS = 1000

/**
 * Refusal log lines: the first REFUSAL_LOG_FIRST of each kind, then one at every power of two,
 * so a flood of refused OPENs does not become a flood of log lines.
 */
export const REFUSAL_LOG_FIRST = 10
