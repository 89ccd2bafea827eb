/**
 * Every network.conf key: its section, type, default, bounds and meaning. The loader, `--help`
 * and the README's key table all come from this one table, so they cannot disagree.
 */

/** How a key's text is read. */
export type KeyType =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'string' }
  | { readonly kind: 'ip' }
  | { readonly kind: 'endpoint'; readonly optional: true }
  | { readonly kind: 'enum'; readonly values: readonly string[] }

/** One documented key. */
export interface KeySpec {
  readonly section: string
  readonly key: string
  readonly type: KeyType
  /** Default, as text (parsed like a value from the file). */
  readonly default: string
  /** One line: what it does, with its unit. */
  readonly doc: string
}

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB
const int = (min: number, max: number): KeyType => ({ kind: 'int', min, max })

/** The keys, in the order the README lists them. */
export const KEYS: readonly KeySpec[] = [
  // [tx_proxy]
  {
    section: 'tx_proxy',
    key: 'local_ip',
    type: { kind: 'ip' },
    default: '0.0.0.0',
    doc: 'address tx_proxy listens on for client flows (intercepted or explicit)'
  },
  {
    section: 'tx_proxy',
    key: 'local_port',
    type: int(1, 65535),
    default: '5000',
    doc: 'port tx_proxy listens on; the iptables REDIRECT target'
  },
  {
    section: 'tx_proxy',
    key: 'rx_proxy_ip',
    type: { kind: 'ip' },
    default: '127.0.0.1',
    doc: 'address of the peer rx_proxy across the long link'
  },
  {
    section: 'tx_proxy',
    key: 'rx_proxy_port',
    type: int(1, 65535),
    default: '6000',
    doc: 'port of the peer rx_proxy'
  },
  {
    section: 'tx_proxy',
    key: 'destination',
    type: { kind: 'endpoint', optional: true },
    default: '',
    doc: 'static mode: send every flow to this host:port instead of its original destination (empty: use SO_ORIGINAL_DST)'
  },
  {
    section: 'tx_proxy',
    key: 'subflows',
    type: int(1, 256),
    default: '8',
    doc: 'TCP connections kept open to rx_proxy (the warm trunk)'
  },
  {
    section: 'tx_proxy',
    key: 'redial_min_ms',
    type: int(10, 600_000),
    default: '200',
    doc: 'first re-dial delay after a subflow drops, in ms (doubles per failure, with jitter)'
  },
  {
    section: 'tx_proxy',
    key: 'redial_max_ms',
    type: int(10, 600_000),
    default: '5000',
    doc: 'longest re-dial delay, in ms'
  },
  {
    section: 'tx_proxy',
    key: 'dial_timeout_ms',
    type: int(100, 600_000),
    default: '5000',
    doc: 'time allowed for a subflow to connect and complete its hello, in ms'
  },
  // [rx_proxy]
  {
    section: 'rx_proxy',
    key: 'recv_ip',
    type: { kind: 'ip' },
    default: '0.0.0.0',
    doc: 'address rx_proxy accepts subflows on'
  },
  {
    section: 'rx_proxy',
    key: 'recv_port',
    type: int(1, 65535),
    default: '6000',
    doc: 'port rx_proxy accepts subflows on'
  },
  {
    section: 'rx_proxy',
    key: 'connect_timeout_ms',
    type: int(100, 600_000),
    default: '10000',
    doc: 'time allowed to connect to a destination before the client is reset, in ms'
  },
  {
    section: 'rx_proxy',
    key: 'handshake_timeout_ms',
    type: int(100, 600_000),
    default: '5000',
    doc: 'time an accepted subflow has to send its hello, in ms'
  },
  // [trunk]
  {
    section: 'trunk',
    key: 'scheduler',
    type: { kind: 'enum', values: ['first-free', 'round-robin', 'min-rtt'] },
    default: 'first-free',
    doc: 'which subflow takes the next frame'
  },
  {
    section: 'trunk',
    key: 'frame_payload_bytes',
    type: int(512, 1 * MiB),
    default: String(16 * KiB),
    doc: 'largest DATA payload per frame, in bytes (small writes are sent at once, smaller)'
  },
  {
    section: 'trunk',
    key: 'ping_interval_ms',
    type: int(50, 60_000),
    default: '1000',
    doc: 'PING period on every subflow, in ms'
  },
  {
    section: 'trunk',
    key: 'ping_timeout_ms',
    type: int(100, 600_000),
    default: '5000',
    doc: 'a subflow that received nothing this long is dead, in ms'
  },
  {
    section: 'trunk',
    key: 'outage_grace_ms',
    type: int(0, 3_600_000),
    default: '10000',
    doc: 'flows survive this long with no subflow at all, then are reset, in ms'
  },
  // [limits]
  {
    section: 'limits',
    key: 'flow_window_bytes',
    type: int(64 * KiB, 1 * GiB),
    default: String(4 * MiB),
    doc: 'credit granted per flow and direction, in bytes (bounds each reorder buffer); use at least the link bandwidth-delay product'
  },
  {
    section: 'limits',
    key: 'send_buffer_bytes',
    type: int(64 * KiB, 1 * GiB),
    default: String(4 * MiB),
    doc: 'bytes a flow may hold from its application (unsent plus unacknowledged) before reading pauses'
  },
  {
    section: 'limits',
    key: 'max_buffered_bytes',
    type: int(1 * MiB, 64 * GiB),
    default: String(1 * GiB),
    doc: 'global cap on all flows\u2019 buffered bytes and granted credit together'
  },
  {
    section: 'limits',
    key: 'max_frame_body_bytes',
    type: int(1 * KiB, 16 * MiB),
    default: String(256 * KiB),
    doc: 'largest frame body accepted from the peer, in bytes (checked before buffering)'
  },
  {
    section: 'limits',
    key: 'max_flows',
    type: int(1, 1_000_000),
    default: '10000',
    doc: 'most flows per trunk'
  },
  {
    section: 'limits',
    key: 'max_reorder_segments',
    type: int(16, 1_000_000),
    default: '4096',
    doc: 'most separate out-of-order ranges a flow may hold'
  },
  {
    section: 'limits',
    key: 'subflow_queue_bytes',
    type: int(4 * KiB, 64 * MiB),
    default: String(256 * KiB),
    doc: 'user-space bytes queued per subflow socket before the scheduler skips it'
  },
  // [log]
  {
    section: 'log',
    key: 'level',
    type: { kind: 'enum', values: ['error', 'warn', 'info', 'debug'] },
    default: 'info',
    doc: 'log level'
  }
]
