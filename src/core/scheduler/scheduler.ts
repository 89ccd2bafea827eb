/**
 * The scheduler interface: which subflow takes the next frame. Schedulers are pure: they see
 * plain read-only views the trunk took before the round, and the time, and keep only their own
 * cursor, so each can be tested on made-up views and one contract suite covers them all.
 */
import type { SubflowId } from '../send-buffer.js'

/** What a scheduler may know about a subflow. */
export interface SubflowView {
  /** Id within the trunk. */
  readonly id: SubflowId
  /** True when the subflow's socket takes more bytes now without queueing past its limit. */
  readonly writable: boolean
  /** Bytes queued in user space for this subflow's socket. */
  readonly queuedBytes: number
  /**
   * Bytes waiting to leave: `queuedBytes` plus what the kernel holds and has not sent yet
   * (congestion or receive window full). 0 means a frame given now goes on the wire now.
   */
  readonly unsentBytes: number
  /** Smoothed round-trip time, in milliseconds (from PING/PONG); 0 before the first sample. */
  readonly srttMs: number
  /** Which local path the subflow uses. */
  readonly pathId: number
  /** Measured delivery rate, bytes per second (TCP_INFO); 0 before the first sample. */
  readonly rateBytesPerSec: number
  /** Configured weight of the subflow's path (1 when not configured). */
  readonly weight: number
}

/** Picks a subflow for each frame. */
export interface Scheduler {
  /** Name as written in network.conf. */
  readonly name: string
  /** Subflow for the next frame of `bytes`, or undefined if none can take it now. */
  pick(bytes: number, subflows: readonly SubflowView[], now: number): SubflowId | undefined
  /** True for a scheduler that sends a copy of every frame on a second subflow (`redundant`). */
  readonly copiesEveryFrame?: boolean
}
