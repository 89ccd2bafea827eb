/**
 * How a trunk gets the destination socket of a flow its peer opened: a capability the role
 * injects (rx connects; tx accepts no flows), so the trunk never calls back into a role.
 */
import type { Socket } from 'node:net'
import type { OpenFrame, ResetReasonCode } from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'

/**
 * Connect a flow the peer opened; resolves with the connected socket or rejects (ideally with
 * `ConnectFailed`). `flow` is for the caller's bookkeeping (status); the trunk owns it.
 */
export type Connector = (open: OpenFrame, flow: Flow) => Promise<Socket>

/** A connect that failed or was refused: the flow is reset with `reason`. */
export class ConnectFailed extends Error {
  /** Reason of the RESET sent to the peer. */
  readonly reason: ResetReasonCode

  constructor(reason: ResetReasonCode, message: string) {
    super(message)
    this.name = 'ConnectFailed'
    this.reason = reason
  }
}
