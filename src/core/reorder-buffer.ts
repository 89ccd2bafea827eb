/**
 * Per-flow reorder buffer (receiving side of one stream).
 *
 * Frames of one stream arrive over several subflows, so out of order, and sometimes twice (a
 * re-send after a subflow died, or a redundant scheduler). Every byte is placed once by its
 * offset; bytes already held or delivered are dropped and counted. Memory is bounded by the
 * credit the receiver granted (`limit`): data beyond it is a protocol error, not a buffer.
 * Like quic-go's frame_sorter, the number of separate held ranges is capped too.
 */
import { PepErrorCodes, ProtocolError } from '../common/errors.js'
import { ResetReason } from '../common/wire/frame.js'

/** One held range of bytes. */
interface Segment {
  readonly offset: number
  readonly data: Uint8Array
}

/** What an insert did. */
export interface InsertResult {
  /** Bytes newly held. */
  readonly newBytes: number
  /** Bytes dropped because they were already held or delivered. */
  readonly duplicateBytes: number
}

/**
 * Most segments held at once whatever the gaps (each costs an object): 64 Ki. An honest sender
 * coalesces small writes when it is backlogged, so only a hostile one comes near this.
 */
export const MAX_REORDER_SEGMENTS_HARD = 65536

/** Binary search: index of the first segment that ends after `offset`. */
function firstEndingAfter(segments: readonly Segment[], offset: number): number {
  let lo = 0
  let hi = segments.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const s = segments[mid]!
    if (s.offset + s.data.length <= offset) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Bounded reassembly of one byte stream. */
export class ReorderBuffer {
  private readonly segments: Segment[] = []
  private deliveredOffset = 0
  private contiguousEnd = 0
  private held = 0
  private finOffset: number | undefined
  /** Maximal runs of contiguous held bytes: one per gap in front of them. */
  private runs = 0
  private readonly maxRuns: number

  /** `maxRuns`: most separate ranges held at once (a gap cap, like quic-go's 1000). */
  constructor(maxRuns: number) {
    this.maxRuns = maxRuns
  }

  /** Every byte below this offset has been received (held or delivered). */
  get received(): number {
    return this.contiguousEnd
  }

  /** Every byte below this offset has been handed out by `shift()`. */
  get delivered(): number {
    return this.deliveredOffset
  }

  /** End of the highest byte received, held or delivered. */
  get highestEnd(): number {
    return this.segments.length > 0
      ? Math.max(this.contiguousEnd, this.lastEnd())
      : this.contiguousEnd
  }

  /** Bytes held (received, not yet shifted out). */
  get heldBytes(): number {
    return this.held
  }

  /** Where the stream ends, once a FIN has been seen. */
  get fin(): number | undefined {
    return this.finOffset
  }

  /** True when the FIN and every byte before it have been received. */
  get finReceived(): boolean {
    return this.finOffset !== undefined && this.contiguousEnd === this.finOffset
  }

  /** True when the FIN and every byte before it have been handed out. */
  get finDelivered(): boolean {
    return this.finOffset !== undefined && this.deliveredOffset === this.finOffset
  }

  /**
   * Place `data` at `offset`. `limit` is the credit granted so far: bytes at or beyond it are a
   * protocol error. Throws `ProtocolError` (CREDIT_EXCEEDED, FLOW_STATE, TOO_MANY_GAPS).
   */
  insert(offset: number, data: Uint8Array, fin: boolean, limit: number): InsertResult {
    const end = offset + data.length
    if (fin) {
      if (this.finOffset !== undefined && this.finOffset !== end) {
        throw new ProtocolError(
          PepErrorCodes.FLOW_STATE,
          `FIN moved from offset ${this.finOffset} to ${end}`,
          ResetReason.PROTOCOL_ERROR
        )
      }
      if (end < this.contiguousEnd || (this.segments.length > 0 && this.lastEnd() > end)) {
        throw new ProtocolError(
          PepErrorCodes.FLOW_STATE,
          `FIN at ${end} below data already received`,
          ResetReason.PROTOCOL_ERROR
        )
      }
      this.finOffset = end
    } else if (this.finOffset !== undefined && end > this.finOffset) {
      throw new ProtocolError(
        PepErrorCodes.FLOW_STATE,
        `data up to ${end} beyond FIN at ${this.finOffset}`,
        ResetReason.PROTOCOL_ERROR
      )
    }
    if (end > limit) {
      throw new ProtocolError(
        PepErrorCodes.CREDIT_EXCEEDED,
        `data up to offset ${end} beyond the granted limit ${limit}`,
        ResetReason.CREDIT_EXCEEDED
      )
    }
    if (end <= this.contiguousEnd) return { newBytes: 0, duplicateBytes: data.length }

    let cur = Math.max(offset, this.contiguousEnd)
    let added = 0
    // A piece cut out of a larger frame (the rest was a duplicate) is copied: a view would pin
    // the whole frame's memory for a few new bytes, and credit would no longer bound memory.
    const piece = (from: number, to: number): Uint8Array =>
      to - from === data.length
        ? data
        : // Uint8Array's slice copies (Buffer's would return a view).
          Uint8Array.prototype.slice.call(data, from - offset, to - offset)
    let idx = firstEndingAfter(this.segments, cur)
    while (cur < end) {
      const seg = this.segments[idx]
      if (seg === undefined || seg.offset >= end) {
        this.addSegment(idx, cur, piece(cur, end))
        added += end - cur
        break
      }
      if (seg.offset > cur) {
        this.addSegment(idx, cur, piece(cur, seg.offset))
        added += seg.offset - cur
        idx++
      }
      cur = Math.max(cur, seg.offset + seg.data.length)
      idx++
    }
    this.advanceContiguous()
    return { newBytes: added, duplicateBytes: data.length - added }
  }

  /** The next in-order bytes, removed from the buffer; undefined when the next byte is missing. */
  shift(): Uint8Array | undefined {
    const first = this.segments[0]
    if (first === undefined || first.offset !== this.deliveredOffset) return undefined
    this.segments.shift()
    this.deliveredOffset += first.data.length
    this.held -= first.data.length
    const next = this.segments[0]
    if (next === undefined || next.offset !== this.deliveredOffset) this.runs--
    return first.data
  }

  /** Drop everything held (the flow was reset). Returns the bytes released. */
  clear(): number {
    const bytes = this.held
    this.segments.length = 0
    this.held = 0
    this.runs = 0
    return bytes
  }

  private lastEnd(): number {
    const last = this.segments[this.segments.length - 1]
    return last === undefined ? 0 : last.offset + last.data.length
  }

  private addSegment(idx: number, offset: number, data: Uint8Array): void {
    if (data.length === 0) return
    const prev = this.segments[idx - 1]
    const next = this.segments[idx]
    const end = offset + data.length
    const joinsPrev = prev !== undefined && prev.offset + prev.data.length === offset
    const joinsNext = next !== undefined && next.offset === end
    const runs = this.runs + 1 - (joinsPrev ? 1 : 0) - (joinsNext ? 1 : 0)
    if (runs > this.maxRuns || this.segments.length >= MAX_REORDER_SEGMENTS_HARD) {
      throw new ProtocolError(
        PepErrorCodes.TOO_MANY_GAPS,
        runs > this.maxRuns
          ? `more than ${this.maxRuns} separate ranges waiting for reordering`
          : `more than ${MAX_REORDER_SEGMENTS_HARD} frames waiting for reordering`,
        ResetReason.PROTOCOL_ERROR
      )
    }
    this.runs = runs
    this.segments.splice(idx, 0, { offset, data })
    this.held += data.length
  }

  private advanceContiguous(): void {
    let i = firstEndingAfter(this.segments, this.contiguousEnd)
    for (;;) {
      const seg = this.segments[i]
      if (seg === undefined || seg.offset > this.contiguousEnd) return
      this.contiguousEnd = seg.offset + seg.data.length
      i++
    }
  }
}
