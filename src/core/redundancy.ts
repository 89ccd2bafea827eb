/**
 * Which flows send every DATA frame twice, and where the copy goes. Pure: the sender asks it on
 * plain subflow views; nothing here reads a socket.
 */
import type { PortRange } from '../common/policy.js'
import type { SubflowView } from './scheduler/scheduler.js'
import type { SubflowId } from './send-buffer.js'

/** What makes a flow redundant. */
export interface RedundancyOptions {
  /** Every frame of every flow (the `redundant` scheduler). */
  readonly everyFrame: boolean
  /** Flows to these destination ports send every frame twice. */
  readonly ports: readonly PortRange[]
  /** Every flow sends its first N bytes twice (0: off). */
  readonly firstBytes: number
}

/** The part of a flow the policy looks at. */
export interface RedundancySubject {
  /** Bytes of the flow's stream sent at least once. */
  readonly sentBytes: number
}

/** Decides, per flow and per frame, whether a copy goes on a second subflow. */
export class RedundancyPolicy<F extends RedundancySubject = RedundancySubject> {
  private readonly opts: RedundancyOptions
  /** Flows whose destination port asks for redundant sending. */
  private readonly byPort = new Set<F>()

  constructor(opts: RedundancyOptions) {
    this.opts = opts
  }

  /** A new flow to `dstPort`: remember it when its port is a redundant one. */
  admit(flow: F, dstPort: number): void {
    if (this.opts.ports.some((r) => dstPort >= r.from && dstPort <= r.to)) this.byPort.add(flow)
  }

  /** The flow ended. */
  forget(flow: F): void {
    this.byPort.delete(flow)
  }

  /** Does `flow` send its next frame on two subflows? */
  wants(flow: F): boolean {
    return (
      this.opts.everyFrame ||
      this.byPort.has(flow) ||
      (this.opts.firstBytes > 0 && flow.sentBytes < this.opts.firstBytes)
    )
  }
}

/**
 * The subflow for the copy of a frame given to `primary`: the writable one with the fewest bytes
 * waiting to leave, on another path when there is one (two copies on one path die together when
 * that path does), else on the same path. Undefined when no other subflow is writable.
 */
export function copyPath(
  primary: SubflowId,
  subflows: readonly SubflowView[]
): SubflowView | undefined {
  const first = subflows.find((s) => s.id === primary)
  let other: SubflowView | undefined
  let samePath: SubflowView | undefined
  for (const s of subflows) {
    if (s.id === primary || !s.writable) continue
    if (first !== undefined && s.pathId !== first.pathId) {
      if (other === undefined || s.unsentBytes < other.unsentBytes) other = s
    } else if (samePath === undefined || s.unsentBytes < samePath.unsentBytes) {
      samePath = s
    }
  }
  return other ?? samePath
}
