/**
 * The live subflows of a trunk, in id order, and the views the sender decides on. Taking a
 * view is where the kernel is asked how much each socket still holds (SIOCOUTQNSD): once per
 * subflow per sending round, and again for a subflow just written to.
 */
import type { Socket } from 'node:net'
import type { SubflowView } from '../core/scheduler/scheduler.js'
import type { RoundView } from '../core/sender.js'
import type { SubflowId } from '../core/send-buffer.js'
import type { SubflowKeys } from './handshake.js'
import type { TrunkSettings } from './settings.js'
import { Subflow, type SubflowEvents } from './subflow.js'

/** Where a joining subflow sits in the dialer's set. */
export interface JoinParams {
  /** Index in the dialer's set (the HELLO's subflow index). */
  readonly index: number
  readonly pathId: number
  /** Weight of its path, for the weighted scheduler. */
  readonly weight: number
  /** Traffic keys when the subflow is encrypted. */
  readonly keys: SubflowKeys | undefined
}

/** The subflows of one trunk. */
export class Membership {
  private readonly list: Subflow[] = []
  private nextIdValue = 1
  private readonly opts: {
    readonly settings: TrunkSettings
    readonly now: () => number
    /** Bytes a socket holds in the kernel and has not sent (SIOCOUTQNSD); none: counted as 0. */
    readonly kernelUnsent?: ((socket: Socket) => number) | undefined
    /** Delivery rate of a socket (TCP_INFO), sampled by each subflow. */
    readonly sampleRate?: ((socket: Socket) => number) | undefined
  }

  constructor(opts: Membership['opts']) {
    this.opts = opts
  }

  /** A subflow whose handshake completed joins; its events go to `events` (the trunk). */
  join(socket: Socket, p: JoinParams, events: SubflowEvents): Subflow {
    const s = this.opts.settings
    const sampleRate = this.opts.sampleRate
    const sub = new Subflow(
      socket,
      {
        id: this.nextIdValue++,
        index: p.index,
        pathId: p.pathId,
        maxFrameBody: s.maxFrameBodyBytes,
        queueLimitBytes: s.subflowQueueBytes,
        pingIntervalMs: s.pingIntervalMs,
        pingTimeoutMs: s.pingTimeoutMs,
        now: this.opts.now,
        weight: p.weight,
        keys: p.keys,
        ...(sampleRate !== undefined ? { sampleRate } : {})
      },
      events
    )
    this.list.push(sub)
    this.list.sort((a, b) => a.id - b.id)
    return sub
  }

  /** Live subflows, sorted by id. */
  get all(): readonly Subflow[] {
    return this.list
  }

  /** How many are live. */
  get size(): number {
    return this.list.length
  }

  /** A subflow left; false if it was not a member. */
  remove(sub: Subflow): boolean {
    const i = this.list.indexOf(sub)
    if (i < 0) return false
    this.list.splice(i, 1)
    return true
  }

  /** The subflow with the fewest bytes queued in user space (for control frames). */
  leastQueued(): Subflow | undefined {
    let best: Subflow | undefined
    for (const s of this.list) if (best === undefined || s.queuedBytes < best.queuedBytes) best = s
    return best
  }

  /** The subflow with the second smallest queue, other than `first`. */
  secondLeastQueued(first: Subflow): Subflow | undefined {
    let best: Subflow | undefined
    for (const s of this.list) {
      if (s === first) continue
      if (best === undefined || s.queuedBytes < best.queuedBytes) best = s
    }
    return best
  }

  /** Smoothed RTT of the fastest subflow, ms; 0 before any sample. */
  minSrttMs(): number {
    let min = 0
    for (const s of this.list) if (s.srttMs > 0 && (min === 0 || s.srttMs < min)) min = s.srttMs
    return min
  }

  /** Fresh views of every live subflow, for one sending round (which updates them in place). */
  snapshot(): RoundView[] {
    return this.list.map((s) => this.viewOf(s))
  }

  /** A fresh view of subflow `id`, or undefined once it is gone. */
  view(id: SubflowId): SubflowView | undefined {
    const sub = this.list.find((s) => s.id === id)
    return sub === undefined ? undefined : this.viewOf(sub)
  }

  private viewOf(s: Subflow): SubflowView {
    const queuedBytes = s.queuedBytes
    let kernel = 0
    const kernelUnsent = this.opts.kernelUnsent
    if (kernelUnsent !== undefined && !s.isClosed) {
      try {
        kernel = kernelUnsent(s.rawSocket)
      } catch {
        kernel = 0 // the socket is closing; its 'close' event follows
      }
    }
    return {
      id: s.id,
      writable: s.writable,
      queuedBytes,
      unsentBytes: queuedBytes + kernel,
      srttMs: s.srttMs,
      pathId: s.pathId,
      rateBytesPerSec: s.rateBytesPerSec,
      weight: s.weight
    }
  }
}
