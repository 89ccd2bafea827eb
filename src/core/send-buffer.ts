/**
 * Per-flow send buffer (sending side of one stream).
 *
 * Holds every byte from the application until the peer acknowledges it, hands out frames of
 * fresh data within the peer's credit, and remembers which subflow carried each frame so that,
 * when a subflow dies, exactly the frames it carried and that are not acknowledged are sent
 * again (docs/protocol.md §7). Frames never span two application chunks, so payloads are views,
 * never copies.
 *
 * It also knows which frame holds the in-order point (the first byte the peer has not
 * acknowledged), on which subflow and since when, so that a frame stuck in one subflow's loss
 * recovery can be sent once more on another (head-of-line reinjection, MPTCP's opportunistic
 * retransmission). The peer drops whichever copy arrives second.
 */

/** A subflow's id within its trunk. */
export type SubflowId = number

/** A range of the stream to send: [start, end), with the FIN after it when `fin`. */
export interface SendRange {
  readonly start: number
  readonly end: number
  readonly fin: boolean
}

/** A frame's worth of data handed to the scheduler. */
export interface DataToSend {
  readonly offset: number
  readonly payload: Uint8Array
  readonly fin: boolean
  /** True when this is a re-send of bytes sent before. */
  readonly resend: boolean
}

/** A range on the wire: when it was sent, and whether it was reinjected already. */
interface InflightRange extends SendRange {
  readonly sentAt: number
  reinjected: boolean
}

/** The frame holding the in-order point, while it waits for the peer. */
export interface StalledHead {
  /** The subflow that carried it last. */
  readonly subflow: SubflowId
  /** When it was sent there (the clock the caller passed to `next`). */
  readonly sentAt: number
}

interface Chunk {
  readonly offset: number
  data: Uint8Array
}

/** Chunks smaller than this are merged into an unsent tail chunk, so tiny writes do not pile up. */
const COALESCE_BELOW_BYTES = 4096

/** Bounded retention and re-send bookkeeping for one stream. */
export class SendBuffer {
  private chunks: Chunk[] = []
  private head = 0
  private appended = 0
  private ackedOffset = 0
  private nextFresh = 0
  private finQueued = false
  private finSent = false
  private finAcked = false
  private readonly resends: SendRange[] = []
  private readonly inflight = new Map<SubflowId, InflightRange[]>()
  private readonly maxPayload: number

  /** `maxPayloadBytes`: the largest DATA payload to hand out. */
  constructor(maxPayloadBytes: number) {
    this.maxPayload = maxPayloadBytes
  }

  /** Bytes held: from the application, not yet acknowledged. */
  get bufferedBytes(): number {
    return this.appended - this.ackedOffset
  }

  /** Bytes taken from the application so far. */
  get appendedBytes(): number {
    return this.appended
  }

  /** Highest offset acknowledged. */
  get acked(): number {
    return this.ackedOffset
  }

  /** Offset of the next byte never sent. */
  get sentOffset(): number {
    return this.nextFresh
  }

  /** True once the application ended its stream. */
  get ended(): boolean {
    return this.finQueued
  }

  /** True when the peer acknowledged the FIN. */
  get finished(): boolean {
    return this.finAcked
  }

  /** Take bytes from the application. */
  append(data: Uint8Array): void {
    if (data.length === 0) return
    if (this.finQueued) throw new RangeError('append after end')
    const last = this.chunks[this.chunks.length - 1]
    if (
      data.length < COALESCE_BELOW_BYTES &&
      last !== undefined &&
      this.chunks.length - 1 >= this.head &&
      last.offset >= this.nextFresh &&
      last.data.length + data.length <= this.maxPayload
    ) {
      const merged = new Uint8Array(last.data.length + data.length)
      merged.set(last.data, 0)
      merged.set(data, last.data.length)
      last.data = merged
    } else {
      this.chunks.push({ offset: this.appended, data })
    }
    this.appended += data.length
  }

  /** The application ended its stream: a FIN follows the last byte. */
  end(): void {
    this.finQueued = true
  }

  /** True when `next()` would hand out something with credit up to `limit`. */
  hasSendable(limit: number): boolean {
    if (this.resends.length > 0) return true
    if (this.nextFresh < this.appended && this.nextFresh < limit) return true
    return this.finQueued && !this.finSent && this.nextFresh === this.appended
  }

  /**
   * The next frame to send on `subflow` at time `now`, within credit `limit` and at most
   * `maxPayload` bytes (default: the buffer's maximum): re-sends first, then fresh data, then a
   * bare FIN. Undefined when nothing can be sent.
   */
  next(
    limit: number,
    subflow: SubflowId,
    maxPayload = this.maxPayload,
    now = 0
  ): DataToSend | undefined {
    while (this.resends.length > 0) {
      const r = this.resends[0]!
      const start = Math.max(r.start, this.ackedOffset)
      if (start >= r.end && !(r.fin && !this.finAcked)) {
        this.resends.shift()
        continue
      }
      if (start >= r.end) {
        this.resends.shift()
        this.record(subflow, { start: r.end, end: r.end, fin: true }, now)
        return { offset: r.end, payload: new Uint8Array(0), fin: true, resend: true }
      }
      const payload = this.slice(start, r.end, maxPayload)
      const end = start + payload.length
      const fin = r.fin && end === r.end
      if (end === r.end) this.resends.shift()
      else this.resends[0] = { start: end, end: r.end, fin: r.fin }
      this.record(subflow, { start, end, fin }, now)
      return { offset: start, payload, fin, resend: true }
    }
    if (this.nextFresh < this.appended && this.nextFresh < limit) {
      const payload = this.slice(this.nextFresh, Math.min(this.appended, limit), maxPayload)
      const start = this.nextFresh
      this.nextFresh += payload.length
      const fin = this.finQueued && this.nextFresh === this.appended
      if (fin) this.finSent = true
      this.record(subflow, { start, end: this.nextFresh, fin }, now)
      return { offset: start, payload, fin, resend: false }
    }
    if (this.finQueued && !this.finSent && this.nextFresh === this.appended) {
      this.finSent = true
      this.record(subflow, { start: this.appended, end: this.appended, fin: true }, now)
      return { offset: this.appended, payload: new Uint8Array(0), fin: true, resend: false }
    }
    return undefined
  }

  /** The peer received every byte below `received` (and the FIN, when `finReceived`). Returns bytes freed. */
  onAck(received: number, finReceived: boolean): number {
    const upTo = Math.min(received, this.nextFresh)
    let freed = 0
    if (upTo > this.ackedOffset) {
      freed = upTo - this.ackedOffset
      this.ackedOffset = upTo
      while (this.head < this.chunks.length) {
        const c = this.chunks[this.head]!
        if (c.offset + c.data.length > upTo) break
        this.head++
      }
      if (this.head > 64 && this.head * 2 > this.chunks.length) {
        this.chunks = this.chunks.slice(this.head)
        this.head = 0
      }
      for (const ranges of this.inflight.values()) {
        while (ranges.length > 0 && ranges[0]!.end <= upTo && !ranges[0]!.fin) ranges.shift()
      }
    }
    if (finReceived && this.finSent && upTo === this.appended) {
      this.finAcked = true
      this.inflight.clear()
      this.resends.length = 0
    }
    return freed
  }

  /** `subflow` died: queue every unacknowledged frame it carried for a re-send. Returns bytes queued. */
  onSubflowLost(subflow: SubflowId): number {
    const ranges = this.inflight.get(subflow)
    this.inflight.delete(subflow)
    if (ranges === undefined || this.finAcked) return 0
    let bytes = 0
    for (const r of ranges) {
      const start = Math.max(r.start, this.ackedOffset)
      if (start >= r.end && !r.fin) continue
      bytes += Math.max(0, r.end - start)
      this.resends.push({ start: Math.min(start, r.end), end: r.end, fin: r.fin })
    }
    this.resends.sort((a, b) => a.start - b.start)
    return bytes
  }

  /**
   * The frame holding the in-order point when the peer has not acknowledged it: the copy sent
   * last, and when. Undefined when nothing is outstanding, when the head is queued for a re-send
   * anyway, or when it was reinjected already (once per frame: a second copy on a lossy trunk
   * would cost more than it saves).
   */
  stalledHead(): StalledHead | undefined {
    const copies = this.headCopies()
    if (copies.length === 0 || copies.some((c) => c.range.reinjected)) return undefined
    let last = copies[0]!
    for (const c of copies) if (c.range.sentAt > last.range.sentAt) last = c
    return { subflow: last.subflow, sentAt: last.range.sentAt }
  }

  /**
   * Send the head frame again on subflow `to` at `now`: the bytes from the in-order point to the
   * end of the frame that holds it (at most `maxPayload`). Every copy of that frame counts as
   * reinjected, so it is not sent a third time. Undefined when there is no stalled head.
   */
  reinjectHead(to: SubflowId, now: number, maxPayload = this.maxPayload): DataToSend | undefined {
    const copies = this.headCopies()
    if (copies.length === 0 || copies.some((c) => c.range.reinjected)) return undefined
    for (const c of copies) c.range.reinjected = true
    const r = copies[0]!.range
    const start = this.ackedOffset
    const payload = start < r.end ? this.slice(start, r.end, maxPayload) : new Uint8Array(0)
    const end = start + payload.length
    const fin = r.fin && end === r.end
    this.record(to, { start, end, fin }, now).reinjected = true
    return { offset: start, payload, fin, resend: true }
  }

  /** Every recorded copy of the frame that holds the in-order point. */
  private headCopies(): { subflow: SubflowId; range: InflightRange }[] {
    const at = this.ackedOffset
    const finWaits = this.finSent && !this.finAcked && at === this.appended
    if (at >= this.nextFresh && !finWaits) return []
    // A head already queued for a re-send goes out anyway.
    if (this.resends.some((r) => r.start <= at && (at < r.end || (r.fin && r.end === at)))) {
      return []
    }
    const found: { subflow: SubflowId; range: InflightRange }[] = []
    // A subflow's ranges are in the order they were sent, not by offset (re-sends come late).
    for (const [subflow, ranges] of this.inflight) {
      for (const range of ranges) {
        if (range.start > at) continue
        if (at < range.end || (range.fin && range.end === at && finWaits)) {
          found.push({ subflow, range })
        }
      }
    }
    return found
  }

  /** Everything not acknowledged is sent again (the peer lost its place, e.g. the OPEN was lost). */
  resendAll(): void {
    this.inflight.clear()
    this.resends.length = 0
    if (this.nextFresh > this.ackedOffset || this.finSent) {
      this.resends.push({ start: this.ackedOffset, end: this.nextFresh, fin: this.finSent })
    }
  }

  /** Drop everything (the flow was reset). Returns bytes released. */
  clear(): number {
    const bytes = this.bufferedBytes
    this.chunks = []
    this.head = 0
    this.ackedOffset = this.appended
    this.resends.length = 0
    this.inflight.clear()
    return bytes
  }

  private record(subflow: SubflowId, range: SendRange, now: number): InflightRange {
    let list = this.inflight.get(subflow)
    if (list === undefined) {
      list = []
      this.inflight.set(subflow, list)
    }
    const entry: InflightRange = { ...range, sentAt: now, reinjected: false }
    list.push(entry)
    return entry
  }

  /** Bytes from `start`, up to `end`, `cap` bytes and the end of the chunk holding `start`. */
  private slice(start: number, end: number, cap: number): Uint8Array {
    let lo = this.head
    let hi = this.chunks.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (this.chunks[mid]!.offset <= start) lo = mid
      else hi = mid - 1
    }
    const c = this.chunks[lo]!
    const from = start - c.offset
    const to = Math.min(c.data.length, from + Math.min(cap, this.maxPayload), end - c.offset)
    return c.data.subarray(from, to)
  }
}
