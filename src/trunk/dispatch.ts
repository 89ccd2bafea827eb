/**
 * Frames from the peer, by type: link frames (PING, PONG, GOAWAY) are answered here, flow frames
 * go to their flow, OPENs to the trunk's admission. Frames for flows we no longer know are
 * dropped and counted (a RESET and DATA may cross).
 */
import type { Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import { resetReasonName, type Frame, type OpenFrame } from '../common/wire/frame.js'
import type { AckBatch } from './ack-batch.js'
import type { Admission, Refusal } from './admission.js'
import type { FlowTable } from './flow-table.js'
import type { Membership } from './membership.js'
import { CONTROL_QUEUE_FACTOR } from './settings.js'
import type { Subflow } from './subflow.js'

/** Routes frames of one trunk. */
export class Dispatcher {
  private readonly flows: FlowTable
  private readonly acks: AckBatch
  private readonly counters: Counters
  private readonly log: Logger
  private readonly queueLimitBytes: number
  private readonly admission: Admission
  private readonly members: Membership
  private readonly onOpen: ((frame: OpenFrame) => void) | undefined
  private readonly sendRate: () => number
  private readonly onPeerSendRate: (bytesPerSec: number) => void
  /** True after the peer sent GOAWAY: it takes no new flows. */
  peerDraining = false
  /** True once we drain: OPENs are refused. */
  draining = false

  constructor(opts: {
    flows: FlowTable
    acks: AckBatch
    counters: Counters
    log: Logger
    /** Per-subflow queue limit, bytes (answers are dropped past CONTROL_QUEUE_FACTOR times it). */
    queueLimitBytes: number
    admission: Admission
    members: Membership
    /** Takes an OPEN that passed admission; none: this side accepts no flows (tx). */
    onOpen: ((frame: OpenFrame) => void) | undefined
    /** Our estimate of the rate we send to the peer at, bytes per second (0: none), for PONGs. */
    sendRate: () => number
    /** The rate the peer says it sends to us at (a PONG's), bytes per second. */
    onPeerSendRate: (bytesPerSec: number) => void
  }) {
    this.admission = opts.admission
    this.members = opts.members
    this.flows = opts.flows
    this.acks = opts.acks
    this.counters = opts.counters
    this.log = opts.log
    this.queueLimitBytes = opts.queueLimitBytes
    this.onOpen = opts.onOpen
    this.sendRate = opts.sendRate
    this.onPeerSendRate = opts.onPeerSendRate
  }

  /** True when `sub` holds so much that our answers to the peer are dropped. */
  controlQueueFull(sub: Subflow): boolean {
    return sub.queuedBytes > CONTROL_QUEUE_FACTOR * this.queueLimitBytes
  }

  /** One frame that arrived on `sub`. */
  dispatch(sub: Subflow, frame: Frame): void {
    switch (frame.type) {
      case 'ping':
        if (this.controlQueueFull(sub)) {
          this.counters.inc('pongs_dropped') // a flooding peer that never reads loses a sample
          return
        }
        sub.writeFrame({
          type: 'pong',
          flowId: 0,
          token: frame.token,
          sendRate: Math.max(0, Math.floor(this.sendRate()))
        })
        return
      case 'pong':
        sub.onPong(frame.token)
        this.onPeerSendRate(frame.sendRate)
        return
      case 'goaway':
        if (!this.peerDraining) {
          this.log.info(
            `peer is draining (${resetReasonName(frame.reason)}): no new flows on this trunk`
          )
        }
        this.peerDraining = true
        return
      case 'open':
        this.onOpenFrame(frame)
        return
      case 'data':
      case 'ack':
      case 'release':
      case 'reset': {
        const flow = this.flows.get(frame.flowId)
        if (flow === undefined) {
          this.counters.inc('frames_unknown_flow')
          return
        }
        if (frame.type === 'data') {
          flow.onData(frame)
          flow.subflowsUsed.add(sub.index)
          this.acks.add(flow)
        } else if (frame.type === 'ack') {
          flow.onAck(frame)
          this.flows.wakeBudgetWaiters()
        } else if (frame.type === 'release') {
          this.counters.inc('releases_received')
          flow.onRelease(frame)
          this.acks.add(flow)
          this.flows.wakeBudgetWaiters()
        } else {
          this.counters.inc('resets_received')
          this.admission.notePeerReset(frame.reason)
          flow.onReset(frame)
        }
        return
      }
    }
  }

  /** An OPEN: a copy of one we know, a late copy, refused, or passed on to be connected. */
  private onOpenFrame(frame: OpenFrame): void {
    if (this.flows.get(frame.flowId) !== undefined) return // another copy of the OPEN
    if (this.admission.closedLately(frame.flowId)) {
      this.counters.inc('opens_after_close')
      return
    }
    const accept = this.onOpen
    const refusal = this.admission.openRefusal(this.draining, accept !== undefined, this.flows.size)
    if (refusal !== undefined) {
      this.refuseOpen(frame.flowId, refusal)
      return
    }
    accept?.(frame)
  }

  /**
   * Answer a refused OPEN with a RESET, unless the peer floods us and does not read. Its id is
   * remembered as closed: the OPEN's copies on the other subflows are neither refused nor
   * counted again.
   */
  private refuseOpen(flowId: number, refusal: Refusal): void {
    this.admission.noteRefusal(refusal, flowId)
    this.admission.rememberClosed(flowId)
    const sub = this.members.leastQueued()
    if (sub === undefined || this.controlQueueFull(sub)) {
      this.counters.inc('resets_dropped')
      return
    }
    sub.writeFrame({ type: 'reset', flowId, reason: refusal.reason, message: refusal.message })
  }
}
