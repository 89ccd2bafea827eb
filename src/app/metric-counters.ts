/**
 * Which of a proxy's counters become which Prometheus counters: the one table of names, labels
 * and help texts, and the counters left out because another series already holds them.
 */
import { PepErrorCodes } from '../common/errors.js'
import type { ProxyStatus } from './control.js'

/** A counter of the proxy's `Counters`, as a Prometheus counter. */
export interface CounterSpec {
  /** The name in `Counters` (a prefix when `label` is set: `errors_` + code). */
  readonly key: string
  /** Metric name without `tandem_` and `_total`. */
  readonly name: string
  readonly help: string
  /** The part of `key` after the prefix goes into this label. */
  readonly label?: string
  /** Label values shown at 0 before their first event. */
  readonly values?: readonly string[]
  /** Only this role counts it (both when absent). */
  readonly role?: ProxyStatus['role']
}

const PEP_CODES = Object.values(PepErrorCodes)

/**
 * Counters that are exposed by other means, or that repeat a quantity another series holds:
 * application bytes, duplicates, re-sent bytes and credit stalls come from the totals (closed
 * plus live flows); auth_failures and dial_failures are handshake_failures by code; syns_seen is
 * the sum of the SYN decisions.
 */
export const NOT_EXPORTED: ReadonlySet<string> = new Set([
  'bytes_from_app',
  'bytes_to_app',
  'duplicate_bytes',
  'credit_stalls',
  'flow_bytes_resent',
  'bytes_resent',
  'bytes_reinjected',
  'auth_failures',
  'dial_failures',
  'syns_seen'
])

/** Every counter of the proxy, with its name and meaning. Prefix entries come first. */
export const COUNTER_SPECS: readonly CounterSpec[] = [
  {
    key: 'errors_',
    name: 'protocol_errors',
    label: 'code',
    values: PEP_CODES,
    help: 'Protocol errors that closed a subflow or a flow, by error code'
  },
  {
    key: 'handshake_failures_',
    name: 'handshake_failures',
    label: 'code',
    values: ['PEP_ERR_AUTH_FAILED', 'PEP_ERR_VERSION_MISMATCH', 'PEP_ERR_TIMEOUT'],
    help: 'Subflow handshakes that failed, by code (tx: failed dials, errno or PEP_ERR code; rx: refused handshakes)'
  },
  {
    key: 'connect_failures_',
    name: 'destination_connect_failures',
    label: 'code',
    values: ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'],
    role: 'rx_proxy',
    help: 'Connections to destinations that failed, by errno'
  },
  {
    key: 'flows_refused_',
    name: 'flows_refused',
    label: 'reason',
    values: ['limit', 'memory', 'shutdown', 'policy', 'destination'],
    help: 'Flows refused, by reason (limit: max_flows, memory: max_buffered_bytes, destination: rx policy)'
  },
  {
    key: 'syns_',
    name: 'syn_decisions',
    label: 'decision',
    values: [
      'accelerated',
      'bypassed_policy',
      'bypassed_trunk_down',
      'bypassed_capacity',
      'retransmitted'
    ],
    role: 'tx_proxy',
    help: 'Intercepted SYNs by decision (bypassed_capacity: the trunk was at max_flows or max_buffered_bytes, here or at the peer; retransmitted: a repeat that got its first copy’s decision)'
  },
  { key: 'flows_opened', name: 'flows_opened', help: 'Flows opened' },
  {
    key: 'budget_waits',
    name: 'budget_waits',
    help: 'Times a flow began to wait for limits.max_buffered_bytes: its credit, or its reading beyond 256 KiB unsent, held back (memory pressure, before flows are refused)'
  },
  { key: 'flows_closed', name: 'flows_closed', help: 'Flows that ended with both FINs' },
  { key: 'flows_reset', name: 'flows_reset', help: 'Flows that ended with a reset' },
  {
    key: 'flows_idle_timeout',
    name: 'flows_idle_timeout',
    help: 'Flows reset after limits.idle_timeout_ms without a byte'
  },
  {
    key: 'clients_accepted',
    name: 'clients_accepted',
    role: 'tx_proxy',
    help: 'Client connections accepted'
  },
  {
    key: 'clients_no_destination',
    name: 'clients_no_destination',
    role: 'tx_proxy',
    help: 'Client connections reset because their destination was unknown'
  },
  {
    key: 'connects',
    name: 'destination_connects',
    role: 'rx_proxy',
    help: 'Connections to destinations that succeeded'
  },
  { key: 'subflows_joined', name: 'subflows_joined', help: 'Subflows that joined a trunk' },
  { key: 'subflows_lost', name: 'subflows_lost', help: 'Subflows that closed or failed' },
  {
    key: 'subflows_accepted',
    name: 'subflows_accepted',
    role: 'rx_proxy',
    help: 'TCP connections accepted on the subflow port, before their handshake'
  },
  {
    key: 'handshakes_refused_busy',
    name: 'handshakes_refused_busy',
    role: 'rx_proxy',
    help: 'Subflows closed at once because limits.max_unauthenticated handshakes were running'
  },
  {
    key: 'trunks_created',
    name: 'trunks_created',
    role: 'rx_proxy',
    help: 'Trunks created (a new peer, or a peer that restarted)'
  },
  {
    key: 'trunk_outages',
    name: 'trunk_outages',
    help: 'Times a trunk had no subflow for trunk.outage_grace_ms (its flows were reset)'
  },
  {
    key: 'peer_restarts',
    name: 'peer_restarts',
    role: 'tx_proxy',
    help: 'Times rx_proxy came back without the trunk (restarted): its flows were reset'
  },
  { key: 'frames_sent', name: 'frames_sent', help: 'DATA frames sent' },
  {
    key: 'frames_duplicated',
    name: 'frames_duplicated',
    help: 'DATA frames sent a second time on another subflow (redundant flows)'
  },
  {
    key: 'frames_reinjected',
    name: 'frames_reinjected',
    help: 'DATA frames sent once more on another subflow because they held a flow\u2019s in-order point longer than about a round trip (head-of-line reinjection)'
  },
  {
    key: 'acks_duplicated',
    name: 'acks_duplicated',
    help: 'ACK frames sent on a second subflow too, so that credit does not wait behind a loss on one'
  },
  {
    key: 'frames_unknown_flow',
    name: 'frames_unknown_flow',
    help: 'Frames for a flow that had already ended, dropped'
  },
  { key: 'resets_sent', name: 'resets_sent', help: 'RESET frames sent' },
  {
    key: 'releases_sent',
    name: 'credit_releases_sent',
    help: 'RELEASE frames sent: a flow whose application went idle gave the peer\u2019s credit back beyond a first window'
  },
  {
    key: 'releases_received',
    name: 'credit_releases_received',
    help: 'RELEASE frames received: the peer gave credit back, and the memory it held went back to max_buffered_bytes'
  },
  { key: 'resets_received', name: 'resets_received', help: 'RESET frames received' },
  {
    key: 'resets_dropped',
    name: 'resets_dropped',
    help: 'RESET frames not sent because the subflow queue was over its limit'
  },
  {
    key: 'pongs_dropped',
    name: 'pongs_dropped',
    help: 'PONGs not sent because the subflow queue was over its limit'
  },
  {
    key: 'opens_after_close',
    name: 'opens_after_close',
    role: 'rx_proxy',
    help: 'Late copies of an OPEN for a flow that had already ended'
  },
  {
    key: 'nfqueue_not_syn',
    name: 'nfqueue_not_syn',
    role: 'tx_proxy',
    help: 'Queued packets that were not plain SYNs (accepted as they were)'
  },
  {
    key: 'nfqueue_errors',
    name: 'nfqueue_errors',
    role: 'tx_proxy',
    help: 'NFQUEUE read failures'
  },
  {
    key: 'syn_table_misses',
    name: 'syn_table_misses',
    role: 'tx_proxy',
    help: 'Accepted clients whose SYN was not in the SYN table'
  },
  {
    key: 'syn_table_mismatches',
    name: 'syn_table_mismatches',
    role: 'tx_proxy',
    help: 'Accepted clients whose original destination differed from their SYN’s'
  }
]
