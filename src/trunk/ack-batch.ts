/**
 * ACKs are batched: a flow that received DATA (or may have lost an ACK with a subflow) is marked
 * due, and each is flushed once after a whole read of frames, so one ACK covers many frames.
 */
import type { Flow } from '../core/flow.js'

/** Flows owing the peer an ACK. */
export class AckBatch {
  private readonly due = new Set<Flow>()

  /** `flow` may owe an ACK. */
  add(flow: Flow): void {
    this.due.add(flow)
  }

  /** `flow` ended. */
  delete(flow: Flow): void {
    this.due.delete(flow)
  }

  /** Every flow in `flows` may owe one (a subflow came or went: ACKs are cumulative). */
  addAll(flows: Iterable<Flow>): void {
    for (const f of flows) this.due.add(f)
  }

  /** Send the due ACKs (a flow sends one only when the peer has something new to learn). */
  flush(): void {
    if (this.due.size === 0) return
    const due = [...this.due]
    this.due.clear()
    for (const flow of due) flow.flushAck()
  }
}
