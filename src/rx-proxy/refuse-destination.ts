/**
 * rx_proxy refuses a flow's destination: the flow is reset with POLICY_DENIED and the refusal's
 * code, counted in total and by code, and logged. A peer can send refused OPENs in a loop, so
 * the log keeps the first ten and then every power of two (the counters keep them all).
 */
import type { Counters } from '../common/counters.js'
import type { DestinationVerdict } from '../common/destination-guard.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import { ResetReason, type Endpoint } from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'

/** Reset `flow`, whose destination `dst` the guard refused. */
export function refuseDestination(
  counters: Counters,
  log: Logger,
  flow: Flow,
  dst: Endpoint,
  verdict: Extract<DestinationVerdict, { ok: false }>
): void {
  counters.inc('flows_refused_destination')
  const counter = `flows_refused_destination_${verdict.code}`
  counters.inc(counter)
  const n = counters.get('flows_refused_destination')
  const text = `destination ${formatEndpoint(dst)} refused: ${verdict.why} (${verdict.code})`
  if (n <= 10 || (n & (n - 1)) === 0) {
    log.warn(`flow ${flow.id} ${text}`, { code: verdict.code, [counter]: counters.get(counter) })
  }
  flow.abort(ResetReason.POLICY_DENIED, text)
}
