/**
 * Status snapshots of a trunk: plain data for the control socket, the metrics and tests. These
 * types depend on nothing above the trunk; the process shell adds its own fields around them.
 */
import type { Flow } from '../core/flow.js'

/** A snapshot of one subflow. */
export interface SubflowStatus {
  readonly id: number
  readonly index: number
  readonly pathId: number
  /** Smoothed PING/PONG round-trip time, ms (one decimal). */
  readonly srttMs: number
  readonly queuedBytes: number
  readonly bytesSent: number
  readonly bytesReceived: number
}

/** A snapshot of one flow. */
export interface FlowStatus {
  readonly id: number
  readonly state: string
  readonly bytesFromApp: number
  readonly bytesToApp: number
  readonly resentBytes: number
  readonly ageMs: number
  /** The credit this side grants the peer now (its receive window), in bytes. */
  readonly windowBytes?: number
  /** Bytes waiting in the reorder buffer and in the send buffer. */
  readonly reorderBytes?: number
  readonly sendBufferedBytes?: number
  /** Times the flow had bytes to send and no credit. */
  readonly creditStalls?: number
}

/** Sums over flows (live ones here; the proxy adds closed ones from its counters). */
export interface FlowTotals {
  readonly bytesFromApp: number
  readonly bytesToApp: number
  readonly reorderBytes: number
  readonly sendBufferedBytes: number
  readonly duplicateBytes: number
  readonly resentBytes: number
  readonly creditStalls: number
}

/** Sums over `flows`. */
export function flowTotals(flows: Iterable<Flow>): FlowTotals {
  const t = {
    bytesFromApp: 0,
    bytesToApp: 0,
    reorderBytes: 0,
    sendBufferedBytes: 0,
    duplicateBytes: 0,
    resentBytes: 0,
    creditStalls: 0
  }
  for (const f of flows) {
    const s = f.stats()
    t.bytesFromApp += s.bytesFromApp
    t.bytesToApp += s.bytesToApp
    t.reorderBytes += s.reorderBytes
    t.sendBufferedBytes += s.sendBufferedBytes
    t.duplicateBytes += s.duplicateBytes
    t.resentBytes += s.resentBytes
    t.creditStalls += s.creditStalls
  }
  return t
}
