/**
 * Named monotonic counters of one proxy (never a module global: each proxy owns one set).
 * Metrics and `status` read them; tests assert on them. Every name is in `CounterName`, so a
 * misspelt counter is a type error, not a silent new series.
 */
import type { DestinationRefusalCode } from './destination-guard.js'
import type { PepErrorCode } from './errors.js'

/** Every counter a proxy keeps. */
export type CounterName =
  // flows
  | 'flows_opened'
  | 'flows_closed'
  | 'flows_reset'
  | 'flows_idle_timeout'
  | 'flows_refused_limit'
  | 'flows_refused_memory'
  | 'flows_refused_shutdown'
  | 'flows_refused_policy'
  | 'flows_refused_destination'
  | `flows_refused_destination_${DestinationRefusalCode}`
  | `flows_failed_${PepErrorCode | 'internal'}`
  | 'flows_source_omitted'
  | 'opens_after_close'
  | 'bytes_from_app'
  | 'bytes_to_app'
  | 'duplicate_bytes'
  | 'credit_stalls'
  | 'budget_waits'
  | 'flow_bytes_resent'
  // frames
  | 'frames_sent'
  | 'frames_duplicated'
  | 'frames_unknown_flow'
  | 'bytes_resent'
  | 'frames_reinjected'
  | 'acks_duplicated'
  | 'bytes_reinjected'
  | 'resets_sent'
  | 'releases_sent'
  | 'releases_received'
  | 'resets_received'
  | 'resets_dropped'
  | 'pongs_dropped'
  // subflows and trunks
  | 'subflows_accepted'
  | 'subflows_joined'
  | 'subflows_lost'
  | 'trunks_created'
  | 'trunk_outages'
  | 'peer_restarts'
  | 'dial_failures'
  | 'auth_failures'
  | 'handshakes_refused_busy'
  | 'handshakes_refused_peer'
  | 'handshakes_refused_per_source'
  | 'handshake_attacks'
  | `handshake_failures_${PepErrorCode | 'error'}`
  | `errors_${PepErrorCode}`
  // tx: clients and interception
  | 'clients_accepted'
  | 'clients_no_destination'
  | 'syn_table_misses'
  | 'syn_table_mismatches'
  | 'syns_seen'
  | 'syns_accelerated'
  | 'syns_retransmitted'
  | 'syns_bypassed_policy'
  | 'syns_bypassed_trunk_down'
  | 'syns_bypassed_capacity'
  | 'nfqueue_errors'
  | 'nfqueue_not_syn'
  // rx: destinations (by errno code, e.g. connect_failures_ECONNREFUSED)
  | 'connects'
  | `connect_failures_${string}`

/** A proxy's counters. */
export class Counters {
  private readonly values = new Map<CounterName, number>()

  /** Add `n` (default 1) to `name`. */
  inc(name: CounterName, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n)
  }

  /** Current value of `name` (0 if never counted). */
  get(name: CounterName): number {
    return this.values.get(name) ?? 0
  }

  /** Every counter, sorted by name. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.values.entries()].sort(([a], [b]) => a.localeCompare(b)))
  }
}
