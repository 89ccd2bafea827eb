/**
 * The I/O side of sending: when a round runs, the snapshot it decides on, the writes it asks
 * for, and the OPENs that must precede a new flow's frames on each subflow. What to send where is
 * the sender's decision (core/sender.ts), which sees no socket.
 */
import type { Counters } from '../common/counters.js'
import type { Flow } from '../core/flow.js'
import type { Sender, SendIo } from '../core/sender.js'
import type { DataToSend, SubflowId } from '../core/send-buffer.js'
import type { Membership } from './membership.js'
import type { Subflow } from './subflow.js'

/** Runs the sender's rounds for one trunk. */
export class Pump {
  private readonly members: Membership
  private readonly sender: Sender<Flow>
  private readonly counters: Counters
  private readonly now: () => number
  private readonly io: SendIo<Flow>
  private scheduled = false
  private retryTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor(opts: {
    members: Membership
    sender: Sender<Flow>
    counters: Counters
    now: () => number
  }) {
    this.members = opts.members
    this.sender = opts.sender
    this.counters = opts.counters
    this.now = opts.now
    this.io = {
      announce: (flow) => this.announce(flow),
      transmit: (flow, data, on, copy) => {
        this.transmit(flow, data, on, copy)
      },
      view: (id) => this.members.view(id)
    }
  }

  /** Run a round soon. */
  schedule(): void {
    if (this.scheduled || this.closed) return
    this.scheduled = true
    // setImmediate, not a microtask: every read of this loop turn is taken in before frames go
    // out, so one round serves many reads and frames are as full as the data allows.
    setImmediate(() => {
      this.scheduled = false
      this.round()
    })
  }

  /** Stop: no more rounds. */
  close(): void {
    this.closed = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
  }

  /**
   * For a flow the peer has not answered yet: send its OPEN on every live subflow that has not
   * carried it, so that the flow's frames may take any of them from its first byte (each frame
   * then follows an OPEN on its own subflow). Returns the least queued announced subflow, or
   * undefined when none is up.
   */
  announce(flow: Flow): Subflow | undefined {
    if (flow.peerSeen || flow.done || flow.openFrame === undefined) return undefined
    let best: Subflow | undefined
    for (const s of this.members.all) {
      if (!flow.announcedOn.has(s.id)) {
        s.writeFrame(flow.openFrame)
        flow.announcedOnSubflow(s.id)
        this.sender.markReady(flow)
      }
      if (best === undefined || s.queuedBytes < best.queuedBytes) best = s
    }
    return best
  }

  /** One round: the snapshot (and with it the kernel's unsent counts) is taken here. */
  private round(): void {
    if (this.closed || this.members.size === 0 || this.sender.readyCount === 0) return
    const { retryInMs } = this.sender.round(this.members.snapshot(), this.now(), this.io)
    if (retryInMs !== undefined && this.retryTimer === undefined) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined
        this.schedule()
      }, retryInMs)
      this.retryTimer.unref()
    }
  }

  private transmit(flow: Flow, d: DataToSend, on: SubflowId, copy: SubflowId | undefined): void {
    const all = this.members.all
    const sub = all.find((s) => s.id === on)
    if (sub === undefined) return
    sub.writeData(flow.id, d)
    flow.subflowsUsed.add(sub.index)
    this.counters.inc('frames_sent')
    if (d.resend) this.counters.inc('bytes_resent', d.payload.length)
    if (copy === undefined) return
    all.find((s) => s.id === copy)?.writeData(flow.id, d)
    this.counters.inc('frames_duplicated')
  }
}
