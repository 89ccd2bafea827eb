/**
 * The user-space delay stage of the link emulator: one NFQUEUE queue, one direction of the
 * link. Every packet the kernel queues is held `delayMs` and then accepted.
 *
 * Cost is per readiness event, not per packet, wherever the mode allows it:
 * - Fixed delay (no jitter): all packets of one batch arrive "now" and are due at the same
 *   time, so a batch is one ring entry (its highest id, its due time, its size). Because every
 *   packet waits the same time, due times grow with ids and one `verdictBatch(maxId)` ("accept
 *   every id <= maxId") releases all due packets in the kernel's own order: one syscall per
 *   release, and no reordering.
 * - Jitter, order kept: each packet gets `delay + U(-jitter, +jitter)`, raised to the due time
 *   of the packet before it (as netem does when it also shapes rate), so release stays FIFO
 *   with batch verdicts; the ring holds one entry per packet.
 * - Jitter with reordering (netem's default behaviour): each packet is due at its own time and
 *   may overtake others, so release is one `verdict(id)` per packet from a min-heap.
 *
 * Only one timer per stage is ever armed (for the head of the ring or heap); no per-packet
 * setTimeout. Node timers have millisecond resolution and fire late by the scheduler's wake-up
 * latency, so a release takes every packet due within `RELEASE_SLACK_MS` of now: the mean
 * error is then about zero instead of always late (docs/link-emulator.md has the figures).
 */
import { performance } from 'node:perf_hooks'

import type { NfQueueClass, NfQueueOptions, NfQueuePacket } from '../../native/index.js'
import { NativeError } from '../../src/common/errors.js'
import { NfqueueReader } from '../../native/nfqueue.js'

/**
 * Bytes of each packet copied to user space. We need only the id (a netlink attribute), not
 * the payload; 0 cannot be used because the kernel reads it as "the whole packet" (65535).
 */
export const DELAY_COPY_RANGE_BYTES = 1

/**
 * Packets the kernel may hold for one queue. A delay stage holds rate x delay packets
 * (100 Mbit/s, 1500-byte packets, 25 ms: ~210; 1 Gbit/s, 100 ms: ~8,300), plus whatever a
 * sender bursts above the rate limit before tbf drops it (tbf sits after the delay stage).
 * 100k is far above both; past it the kernel drops and counts (see `failOpen` below).
 */
export const DELAY_QUEUE_MAX_LEN = 100_000

/**
 * Netlink receive buffer, bytes (SO_RCVBUFFORCE). A queued packet with a 1-byte copy range is a
 * ~150-byte message, about 1 KB of socket buffer with its skb overhead: 64 MiB holds tens of
 * thousands, more than any event-loop pause we could survive anyway.
 */
export const DELAY_RCVBUF_BYTES = 64 * 1024 * 1024

/**
 * A release takes every packet due within this many milliseconds from now. Timers fire up to
 * ~1 ms late (millisecond loop clock plus wake-up latency); releasing slightly early centres
 * the error on zero.
 */
export const RELEASE_SLACK_MS = 0.5

/**
 * Added to the newest id seen to build the `maxId` of the final release. The kernel compares
 * ids as serial numbers (`(int)(id - maxId) > 0` means "after"), so anything within 2^30 on
 * either side of the newest id we know, including packets queued but not yet read, is
 * released by one call. (2^31 - 1 would make old held ids look newer.)
 */
const RELEASE_ALL_ID_MARGIN = 2 ** 30

/** Ring entries allocated at first; the ring doubles when full. */
const INITIAL_RING_ENTRIES = 1024

/** Options of one delay stage. */
export interface DelayStageOptions {
  /** NFQUEUE queue number (`iptables ... -j NFQUEUE --queue-num`). */
  readonly queueNum: number
  /** Time each packet is held, milliseconds (one way). */
  readonly delayMs: number
  /** Uniform jitter around `delayMs`, milliseconds; 0 for none. */
  readonly jitterMs: number
  /**
   * With jitter: true lets a packet overtake earlier ones (netem's default, one verdict per
   * packet); false keeps the order (due time never earlier than the previous packet's).
   */
  readonly reorder: boolean
}

/** Counters of one delay stage. */
export interface DelayStageStats {
  /** Queue number. */
  readonly queueNum: number
  /** Packets received from the kernel. */
  readonly packets: number
  /** Readiness events that delivered packets. */
  readonly batches: number
  /** Packets given an accept verdict. */
  readonly released: number
  /** Verdict calls made (batch and single). */
  readonly verdictCalls: number
  /** Packets held right now. */
  readonly held: number
  /** Most packets held at once. */
  readonly maxHeld: number
  /** Verdict calls the kernel refused. */
  readonly verdictErrors: number
  /** ENOBUFS seen on the netlink socket (the kernel dropped queue messages). */
  readonly enobufs: number
}

/** How the stage keeps time; tests pass a fake. */
export interface DelayClock {
  /** Monotonic time, milliseconds. */
  now(): number
  /** Calls `fn` after about `ms` milliseconds. */
  setTimer(fn: () => void, ms: number): unknown
  /** Cancels a timer from `setTimer`. */
  clearTimer(handle: unknown): void
}

/** Node's clock: performance.now() and setTimeout. */
export const NODE_CLOCK: DelayClock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (handle) => {
    clearTimeout(handle as NodeJS.Timeout)
  }
}

/** Something that can go wrong while the stage runs; the owner decides what to do. */
export type DelayStageErrorHandler = (err: NativeError) => void

/**
 * FIFO of (highest id, due time, packet count) entries in typed arrays: no allocation per
 * packet, and growth only when the kernel queue itself is growing.
 */
class DueRing {
  private ids = new Uint32Array(INITIAL_RING_ENTRIES)
  private due = new Float64Array(INITIAL_RING_ENTRIES)
  private counts = new Uint32Array(INITIAL_RING_ENTRIES)
  private head = 0
  private size = 0

  get length(): number {
    return this.size
  }

  /** Due time of the oldest entry; undefined when empty. */
  headDue(): number | undefined {
    return this.size === 0 ? undefined : this.due[this.head]
  }

  /** Due time of the newest entry; undefined when empty. */
  tailDue(): number | undefined {
    return this.size === 0 ? undefined : this.due[(this.head + this.size - 1) & this.mask()]
  }

  push(id: number, dueMs: number, count: number): void {
    if (this.size === this.ids.length) {
      this.grow()
    }
    const at = (this.head + this.size) & this.mask()
    this.ids[at] = id
    this.due[at] = dueMs
    this.counts[at] = count
    this.size++
  }

  /**
   * Removes every entry due at or before `limitMs`; returns the highest id removed and how
   * many packets, or undefined when nothing is due.
   */
  popDue(limitMs: number): { maxId: number; packets: number } | undefined {
    let packets = 0
    let maxId = -1
    const mask = this.mask()
    while (this.size > 0 && this.due[this.head]! <= limitMs) {
      maxId = this.ids[this.head]!
      packets += this.counts[this.head]!
      this.head = (this.head + 1) & mask
      this.size--
    }
    return maxId < 0 ? undefined : { maxId, packets }
  }

  clear(): void {
    this.head = 0
    this.size = 0
  }

  private mask(): number {
    return this.ids.length - 1
  }

  private grow(): void {
    const capacity = this.ids.length * 2
    const ids = new Uint32Array(capacity)
    const due = new Float64Array(capacity)
    const counts = new Uint32Array(capacity)
    for (let i = 0; i < this.size; i++) {
      const from = (this.head + i) & this.mask()
      ids[i] = this.ids[from]!
      due[i] = this.due[from]!
      counts[i] = this.counts[from]!
    }
    this.ids = ids
    this.due = due
    this.counts = counts
    this.head = 0
  }
}

/** Binary min-heap of (due time, id) in typed arrays, for jitter with reordering. */
class DueHeap {
  private ids = new Uint32Array(INITIAL_RING_ENTRIES)
  private due = new Float64Array(INITIAL_RING_ENTRIES)
  private size = 0

  get length(): number {
    return this.size
  }

  topDue(): number | undefined {
    return this.size === 0 ? undefined : this.due[0]
  }

  topId(): number {
    return this.ids[0]!
  }

  push(id: number, dueMs: number): void {
    if (this.size === this.ids.length) {
      const ids = new Uint32Array(this.size * 2)
      const due = new Float64Array(this.size * 2)
      ids.set(this.ids)
      due.set(this.due)
      this.ids = ids
      this.due = due
    }
    let i = this.size++
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.due[parent]! <= dueMs) {
        break
      }
      this.ids[i] = this.ids[parent]!
      this.due[i] = this.due[parent]!
      i = parent
    }
    this.ids[i] = id
    this.due[i] = dueMs
  }

  pop(): void {
    const last = --this.size
    if (last === 0) {
      return
    }
    const id = this.ids[last]!
    const dueMs = this.due[last]!
    let i = 0
    for (;;) {
      let child = 2 * i + 1
      if (child >= last) {
        break
      }
      if (child + 1 < last && this.due[child + 1]! < this.due[child]!) {
        child++
      }
      if (this.due[child]! >= dueMs) {
        break
      }
      this.ids[i] = this.ids[child]!
      this.due[i] = this.due[child]!
      i = child
    }
    this.ids[i] = id
    this.due[i] = dueMs
  }

  clear(): void {
    this.size = 0
  }
}

/**
 * Holds the packets of one NFQUEUE queue for a fixed (or jittered) time, then accepts them.
 * `start()` binds the queue; `stop()` releases everything held and unbinds.
 */
export class DelayStage {
  /** The options the stage runs with. */
  readonly options: DelayStageOptions
  private readonly clock: DelayClock
  private readonly binding: NfQueueClass | undefined
  private readonly onError: DelayStageErrorHandler
  private reader: NfqueueReader | undefined
  private readonly ring = new DueRing()
  private readonly heap = new DueHeap()
  private timer: unknown = undefined
  /** When the armed timer fires (clock ms), to know whether a new head needs an earlier one. */
  private timerAt = Infinity
  private newestId = 0
  private counters = {
    packets: 0,
    batches: 0,
    released: 0,
    verdictCalls: 0,
    held: 0,
    maxHeld: 0,
    verdictErrors: 0
  }

  /**
   * @param onError called when the netlink socket fails or the kernel refuses a verdict; the
   * emulator stops on it rather than run a link that no longer delays.
   * @param binding the addon's NfQueue class; tests pass a fake.
   */
  constructor(
    options: DelayStageOptions,
    onError: DelayStageErrorHandler,
    clock: DelayClock = NODE_CLOCK,
    binding?: NfQueueClass
  ) {
    if (!(options.delayMs >= 0) || !(options.jitterMs >= 0)) {
      throw new RangeError('delayMs and jitterMs must be >= 0')
    }
    this.options = options
    this.onError = onError
    this.clock = clock
    this.binding = binding
  }

  /**
   * Binds the queue. Fail-open is OFF on purpose: when the kernel queue is full (100k
   * packets) or the netlink socket overflows, fail-open would forward packets undelayed and
   * uncounted, so a benchmark would quietly measure a better link than it asked for. With it
   * off the kernel drops them and counts them in /proc/net/netfilter/nfnetlink_queue
   * (queue_dropped, user_dropped), which the emulator reports.
   * @throws NativeError when the addon is missing or the queue is taken.
   */
  start(): void {
    if (this.reader !== undefined) {
      return
    }
    const queueOptions: NfQueueOptions = {
      copyRange: DELAY_COPY_RANGE_BYTES,
      maxLen: DELAY_QUEUE_MAX_LEN,
      failOpen: false,
      rcvBufBytes: DELAY_RCVBUF_BYTES
    }
    const reader =
      this.binding === undefined
        ? new NfqueueReader(this.options.queueNum, queueOptions)
        : new NfqueueReader(this.options.queueNum, queueOptions, this.binding)
    reader.on('packets', (packets) => {
      this.onPackets(packets)
    })
    reader.on('error', (err) => {
      this.onError(err)
    })
    this.reader = reader
  }

  /**
   * Accepts every packet still held, including those queued in the kernel but not yet read,
   * then unbinds the queue (after unbinding the kernel would drop them). Idempotent. Remove
   * the iptables rule that feeds the queue first, or new packets keep arriving.
   */
  stop(): void {
    const reader = this.reader
    if (reader === undefined || reader.isClosed) {
      return
    }
    if (this.timer !== undefined) {
      this.clock.clearTimer(this.timer)
      this.timer = undefined
      this.timerAt = Infinity
    }
    const held = this.counters.held
    try {
      reader.verdictBatch((this.newestId + RELEASE_ALL_ID_MARGIN) >>> 0, 'accept')
      this.counters.verdictCalls++
      this.counters.released += held
    } catch {
      // ENOENT-like refusals arrive asynchronously; a throw here means the socket is gone and
      // the kernel drops what it held when we close: nothing more we can do.
      this.counters.verdictErrors++
    }
    this.counters.held = 0
    this.ring.clear()
    this.heap.clear()
    reader.close()
  }

  /** Counter snapshot. */
  stats(): DelayStageStats {
    const readerStats = this.reader?.stats()
    return {
      queueNum: this.options.queueNum,
      ...this.counters,
      enobufs: readerStats?.enobufs ?? 0
    }
  }

  private onPackets(packets: readonly NfQueuePacket[]): void {
    const n = packets.length
    if (n === 0) {
      return
    }
    const now = this.clock.now()
    const { delayMs, jitterMs, reorder } = this.options
    this.counters.packets += n
    this.counters.batches++
    this.counters.held += n
    if (this.counters.held > this.counters.maxHeld) {
      this.counters.maxHeld = this.counters.held
    }
    this.newestId = packets[n - 1]!.id
    if (jitterMs === 0) {
      // Due times of successive batches never decrease (monotonic clock, fixed delay).
      this.ring.push(this.newestId, now + delayMs, n)
    } else if (reorder) {
      for (let i = 0; i < n; i++) {
        this.heap.push(packets[i]!.id, now + jitteredDelay(delayMs, jitterMs))
      }
    } else {
      let floor = this.ring.tailDue() ?? 0
      for (let i = 0; i < n; i++) {
        floor = Math.max(floor, now + jitteredDelay(delayMs, jitterMs))
        this.ring.push(packets[i]!.id, floor, 1)
      }
    }
    if (delayMs === 0 && jitterMs === 0) {
      // Pass-through (D = 0): release at once, no timer round trip.
      this.release()
      return
    }
    this.arm()
  }

  /** Arms the one timer for the earliest due packet, unless one already fires early enough. */
  private arm(): void {
    const next =
      this.options.jitterMs > 0 && this.options.reorder ? this.heap.topDue() : this.ring.headDue()
    if (next === undefined || next >= this.timerAt) {
      return
    }
    if (this.timer !== undefined) {
      this.clock.clearTimer(this.timer)
    }
    this.timerAt = next
    this.timer = this.clock.setTimer(
      () => {
        this.onTimer()
      },
      Math.max(0, next - this.clock.now())
    )
  }

  private onTimer(): void {
    this.timer = undefined
    this.timerAt = Infinity
    this.release()
    this.arm()
  }

  private release(): void {
    const reader = this.reader
    if (reader === undefined || reader.isClosed) {
      return
    }
    const limit = this.clock.now() + RELEASE_SLACK_MS
    try {
      if (this.options.jitterMs > 0 && this.options.reorder) {
        while (this.heap.length > 0 && this.heap.topDue()! <= limit) {
          reader.verdict(this.heap.topId(), 'accept')
          this.heap.pop()
          this.counters.verdictCalls++
          this.counters.released++
          this.counters.held--
        }
        return
      }
      const due = this.ring.popDue(limit)
      if (due === undefined) {
        return
      }
      reader.verdictBatch(due.maxId, 'accept')
      this.counters.verdictCalls++
      this.counters.released += due.packets
      this.counters.held -= due.packets
    } catch (err) {
      this.counters.verdictErrors++
      this.onError(err instanceof NativeError ? err : new NativeError(String(err)))
    }
  }
}

/** `delayMs + U(-jitterMs, +jitterMs)`, never negative. */
function jitteredDelay(delayMs: number, jitterMs: number): number {
  return Math.max(0, delayMs + (Math.random() * 2 - 1) * jitterMs)
}
