/**
 * A client flow's OPEN, checked before the flow exists: endpoints normalised, the source left
 * out when its family differs from the destination's, and the frame encoded once here, so that
 * no encoding error can surface later inside the trunk (when a subflow comes up and the OPEN is
 * sent), where it would not belong to any one flow.
 */
import { openEndpoints, type OpenEndpoints } from '../common/flow-endpoints.js'
import { encodeFrame } from '../common/wire/encode.js'
import type { Endpoint } from '../common/wire/frame.js'

/** The endpoints to open a flow with; throws (a PepError when it can) if they cannot be sent. */
export function checkedOpen(dst: Endpoint, src: Endpoint | undefined): OpenEndpoints {
  const open = openEndpoints(dst, src)
  encodeFrame({ type: 'open', flowId: 1, dst: open.dst, src: open.src })
  return open
}
