/**
 * rx_proxy refuses a flow's destination: the refusal is counted in total and by code, logged,
 * and returned as the `ConnectFailed` that resets the flow with POLICY_DENIED. A peer can send refused OPENs in a loop, so
 * the log keeps the first ten and then every power of two (the counters keep them all).
 */
import type { CounterName, Counters } from '../common/counters.js'
import type { DestinationVerdict } from '../common/destination-guard.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import { ResetReason, type Endpoint } from '../common/wire/frame.js'
import { ConnectFailed } from '../trunk/connector.js'

/** Count and log the refusal of flow `flowId`'s destination `dst`; the error to reset it with. */
export function refuseDestination(
  counters: Counters,
  log: Logger,
  flowId: number,
  dst: Endpoint,
  verdict: Extract<DestinationVerdict, { ok: false }>
): ConnectFailed {
  counters.inc('flows_refused_destination')
  const counter: CounterName = `flows_refused_destination_${verdict.code}`
  counters.inc(counter)
  const n = counters.get('flows_refused_destination')
  const text = `destination ${formatEndpoint(dst)} refused: ${verdict.why} (${verdict.code})`
  if (n <= 10 || (n & (n - 1)) === 0) {
    log.warn(`flow ${flowId} ${text}`, { code: verdict.code, [counter]: counters.get(counter) })
  }
  return new ConnectFailed(ResetReason.POLICY_DENIED, text)
}
