/**
 * The size of the credit one flow grants its peer in one direction (its receive window). It
 * starts at the hello's window and grows towards a maximum while the application keeps up:
 *
 * - doubling when reordering holds half of it (a lossy subflow's recovery stalls the in-order
 *   point, and credit must cover the stall), or when the application took half of it in under
 *   two round trips: the receiver cannot see the sender wait for credit, so it times itself
 *   (quic-go's auto-tuning), since credit that runs out before the next grant arrives idles a
 *   long fat pipe;
 * - straight to the rate controller's hint (twice the trunk's bandwidth-delay product) when that
 *   is larger: a warm trunk's new flow needs no doubling epochs to fill the path.
 *
 * Pure: the caller passes the time, the round-trip time and the hint.
 */

/** One direction's receive window. */
export class ReceiveWindow {
  private size: number
  private epochStartMs: number
  private epochDelivered = 0

  constructor(
    initialBytes: number,
    private readonly maxBytes: number,
    startMs: number
  ) {
    this.size = initialBytes
    this.epochStartMs = startMs
  }

  /**
   * Back to `bytes` (the peer gave its credit back: RELEASE), its growth timed afresh from
   * `delivered` at `now`.
   */
  reset(bytes: number, delivered: number, now: number): void {
    this.size = bytes
    this.epochStartMs = now
    this.epochDelivered = delivered
  }

  /** The window now, in bytes. */
  get bytes(): number {
    return this.size
  }

  /**
   * Before a grant: `delivered` bytes went to the application so far, `heldBytes` wait in the
   * reorder buffer; `appWritable` false stops all growth (a slow application must not be
   * flooded). Returns the window to grant.
   */
  update(
    delivered: number,
    heldBytes: number,
    appWritable: boolean,
    now: number,
    srttMs: number,
    hintBytes: number
  ): number {
    let grow = heldBytes >= this.size / 2
    const inEpoch = delivered - this.epochDelivered
    if (inEpoch >= this.size / 2) {
      if (srttMs > 0 && now - this.epochStartMs < (4 * inEpoch * srttMs) / this.size) grow = true
      this.epochStartMs = now
      this.epochDelivered = delivered
    }
    if (!appWritable) return this.size
    if (grow && this.size < this.maxBytes) this.size = Math.min(this.maxBytes, this.size * 2)
    const hint = Math.min(this.maxBytes, hintBytes)
    if (hint > this.size) this.size = hint
    return this.size
  }
}
