/**
 * The sender: which flow sends next, on which subflow, and whether a copy goes on a second one.
 * Pure, like quic-go's framer: it decides on a snapshot of plain subflow views that the trunk
 * takes once per round (the trunk reads the sockets and the kernel; nothing here does), and it
 * reaches the sockets only through the `SendIo` the trunk passes in. No timers: when it wants
 * another round later it says so in the result.
 *
 * Flows with something to send sit in the ready set; a round takes one frame per ready flow in
 * turn until no flow can send or the scheduler finds no subflow that takes more.
 */
import { copyPath, type RedundancyPolicy } from './redundancy.js'
import type { Scheduler, SubflowView } from './scheduler/scheduler.js'
import type { DataToSend, SubflowId } from './send-buffer.js'

/**
 * How long a redundant flow waits for a slot on another path before it sends alone, in ms: long
 * enough to ride out a full queue, short against the ping timeout that declares a path dead.
 */
export const REDUNDANT_WAIT_MS = 250

/** Margin after REDUNDANT_WAIT_MS before the retry round, in ms, so that the wait has surely run out. */
const REDUNDANT_RETRY_SLACK_MS = 10

/**
 * A subflow whose RTT is above RTT_OUTLIER_FACTOR times the best one plus RTT_OUTLIER_SLACK_MS is
 * left out while a faster one is up.
 */
const RTT_OUTLIER_FACTOR = 2
const RTT_OUTLIER_SLACK_MS = 50

/** What the sender needs of a flow. */
export interface SenderFlow {
  /** True once the peer answered (its OPEN arrived). */
  readonly peerSeen: boolean
  /** Bytes of the stream sent at least once. */
  readonly sentBytes: number
  /** True when `nextData` would return a frame (a pure query). */
  hasSendable(): boolean
  /** The next DATA frame to put on `subflow`. */
  nextData(subflow: SubflowId): DataToSend | undefined
}

/** The trunk's side of a round: the only way frames leave. */
export interface SendIo<F> {
  /** Make sure the peer learns of `flow` before its data (the trunk sends the OPEN where due). */
  announce(flow: F): void
  /** Put `data` on subflow `on`, and the same frame on `copy` when given. */
  transmit(flow: F, data: DataToSend, on: SubflowId, copy: SubflowId | undefined): void
  /** A fresh view of a subflow after a write (its queue grew), or undefined once it is gone. */
  view(id: SubflowId): SubflowView | undefined
}

/**
 * Trunk-wide pacing: the place for a rate controller shared by every flow of a trunk. The
 * sender asks it before each frame and tells it what left; without a gate nothing is paced.
 */
export interface SendGate {
  /** May a frame of up to `bytes` leave at `now`? */
  admits(bytes: number, now: number): boolean
  /** `bytes` left at `now` (a copy counts as bytes too). */
  onSent(bytes: number, now: number): void
  /** After a refusal: when to try again, in ms from `now`. */
  retryInMs(now: number): number
}

/** Everything a sender is given. */
export interface SenderOptions<F extends SenderFlow> {
  readonly scheduler: Scheduler
  readonly redundancy: RedundancyPolicy<F>
  /** Largest DATA payload, in bytes (what the scheduler is asked to place). */
  readonly maxPayloadBytes: number
  /** Trunk-wide pacing; none: send as fast as the subflows take it. */
  readonly gate?: SendGate | undefined
}

/** What a round asks of the trunk. */
export interface RoundResult {
  /** Run another round after this many ms (a redundant flow waits for a copy slot), or undefined. */
  readonly retryInMs: number | undefined
}

/** A subflow's view that a round owns and updates in place as it writes. */
export type RoundView = { -readonly [K in keyof SubflowView]: SubflowView[K] }

/** One trunk's sender. */
export class Sender<F extends SenderFlow> {
  private readonly opts: SenderOptions<F>
  private readonly ready = new Set<F>()
  /** Redundant flows waiting for a copy slot on another path, since when (ms). */
  private readonly waitingForCopy = new Map<F, number>()

  constructor(opts: SenderOptions<F>) {
    this.opts = opts
  }

  /** `flow` may have something to send. */
  markReady(flow: F): void {
    this.ready.add(flow)
  }

  /** Flows in the ready set. */
  get readyCount(): number {
    return this.ready.size
  }

  /** `flow` ended: forget it. */
  forget(flow: F): void {
    this.ready.delete(flow)
    this.waitingForCopy.delete(flow)
    this.opts.redundancy.forget(flow)
  }

  /**
   * Give frames to subflows until no flow can send or no subflow takes more. `all` is the
   * trunk's snapshot of every live subflow, sorted by id, made for this round: the round owns
   * these views and refreshes a written subflow's view in place (no copy of its own).
   */
  round(all: RoundView[], now: number, io: SendIo<F>): RoundResult {
    let retryInMs: number | undefined
    if (all.length === 0) return { retryInMs }
    const { scheduler, redundancy, maxPayloadBytes, gate } = this.opts
    // A write refreshes the written subflow's view in place, so the scheduler sees its queue
    // grow, and both lists below stay in step.
    const byId = new Map(all.map((v) => [v.id, v]))
    const refresh = (id: SubflowId): void => {
      const target = byId.get(id)
      const fresh = io.view(id)
      if (target === undefined) return
      if (fresh === undefined) target.writable = false
      else Object.assign(target, fresh)
    }
    const views = eligible(all)
    const firstPath = all[0]?.pathId
    const multiPath = all.some((s) => s.pathId !== firstPath)
    let progress = true
    while (progress && this.ready.size > 0) {
      progress = false
      for (const flow of this.ready) {
        if (!flow.hasSendable()) {
          this.ready.delete(flow)
          continue
        }
        if (!flow.peerSeen) io.announce(flow)
        if (gate !== undefined && !gate.admits(maxPayloadBytes, now)) {
          return { retryInMs: gate.retryInMs(now) }
        }
        const id = scheduler.pick(maxPayloadBytes, views, now)
        if (id === undefined) return { retryInMs } // no subflow takes anything: wait for 'drain'
        const sub = byId.get(id)
        if (sub === undefined) continue
        // (Before the peer answered, every live subflow carries the OPEN, so copies may go anywhere.)
        let copy: SubflowView | undefined
        if (all.length > 1 && redundancy.wants(flow)) {
          // A redundant flow goes only when a second subflow (on another path when there is one)
          // can take the copy too: it is paced by the slower of the two, and every frame is sent
          // twice. The copy is not recorded for re-sending: if `sub` dies the original is re-sent,
          // and whichever copy arrives second is dropped by offset at the far end.
          copy = copyPath(sub.id, all)
          // With two paths up, the copy must take the other one: two copies on one path die
          // together when that path does. The flow waits for such a slot, but not for longer
          // than REDUNDANT_WAIT_MS: a path that takes nothing (congested, or dead and not yet
          // detected) must not stall the flow, which then goes on alone on the live path.
          if (copy === undefined || (multiPath && copy.pathId === sub.pathId)) {
            copy = undefined
            const since = this.waitingForCopy.get(flow)
            if (since === undefined) this.waitingForCopy.set(flow, now)
            if (since === undefined || now - since < REDUNDANT_WAIT_MS) {
              retryInMs = REDUNDANT_WAIT_MS + REDUNDANT_RETRY_SLACK_MS
              continue
            }
          } else {
            this.waitingForCopy.delete(flow)
          }
        }
        const d = flow.nextData(sub.id)
        if (d === undefined) {
          this.ready.delete(flow)
          continue
        }
        io.transmit(flow, d, sub.id, copy?.id)
        gate?.onSent(copy === undefined ? d.payload.length : 2 * d.payload.length, now)
        refresh(sub.id)
        if (copy !== undefined) refresh(copy.id)
        progress = true
      }
    }
    return { retryInMs }
  }
}

/**
 * The subflows a scheduler may use now. A subflow whose RTT is far above the best one is left
 * out while a faster one is up: a frame sent there would arrive long after the frames behind it
 * on the fast path and stall the reorder buffer.
 */
function eligible<V extends SubflowView>(subflows: readonly V[]): readonly V[] {
  let min = Infinity
  for (const s of subflows) if (s.srttMs > 0 && s.srttMs < min) min = s.srttMs
  if (min === Infinity) return subflows
  const limit = RTT_OUTLIER_FACTOR * min + RTT_OUTLIER_SLACK_MS
  const fast = subflows.filter((s) => s.srttMs <= limit)
  return fast.length === subflows.length ? subflows : fast
}
