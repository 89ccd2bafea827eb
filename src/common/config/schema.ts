/**
 * Every network.conf key: its section, type, default, bounds and meaning. The loader, `--help`
 * and the README's key table all come from this one table, so they cannot disagree.
 */

/** How a key's text is read. */
export type KeyType =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'string' }
  | { readonly kind: 'ip' }
  | { readonly kind: 'host' }
  | { readonly kind: 'endpoint'; readonly optional: true }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  /** A link rate in bits per second (common/size.ts RATE_RULE), held as bytes per second. */
  | { readonly kind: 'rate'; readonly minBytesPerSec: number; readonly maxBytesPerSec: number }

/** Names accepted by `[trunk] scheduler`: the one list (core/scheduler/index.ts maps each to a class). */
export const SCHEDULER_NAMES = [
  'first-free',
  'round-robin',
  'min-rtt',
  'weighted',
  'redundant'
] as const
/** One scheduler name. */
export type SchedulerName = (typeof SCHEDULER_NAMES)[number]

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
    type: { kind: 'host' },
    default: '127.0.0.1',
    doc: 'address or host name of the peer rx_proxy across the long link (a name is resolved at every dial)'
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
  {
    section: 'tx_proxy',
    key: 'control_socket',
    type: { kind: 'string' },
    default: '/run/tandem/tx_proxy.sock',
    doc: 'Unix socket that `./tx_proxy status` reads (empty: none)'
  },
  {
    section: 'tx_proxy',
    key: 'control_socket_group',
    type: { kind: 'string' },
    default: '',
    doc: 'group (name or number) that may read the control socket: mode 0660 instead of 0600'
  },
  {
    section: 'tx_proxy',
    key: 'metrics_listen',
    type: { kind: 'endpoint', optional: true },
    default: '',
    doc: 'serve Prometheus metrics at http://HOST:PORT/metrics (empty: off)'
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
    doc: 'time an accepted subflow has to complete its handshake, in ms'
  },
  {
    section: 'rx_proxy',
    key: 'first_byte_timeout_ms',
    type: int(100, 600_000),
    default: '2000',
    doc: 'time an accepted subflow has to send the first byte of its hello, in ms (idle connections are dropped sooner)'
  },
  {
    section: 'rx_proxy',
    key: 'allow_peers',
    type: { kind: 'string' },
    default: '',
    doc: 'addresses or subnets tx_proxy may dial from, e.g. 203.0.113.7,2001:db8::/48 (empty: any); others are closed before the handshake'
  },
  {
    section: 'rx_proxy',
    key: 'allow_subnets',
    type: { kind: 'string' },
    default: '',
    doc: 'destinations rx_proxy may connect to, e.g. 192.168.2.0/24 (empty: any that deny_subnets does not refuse)'
  },
  {
    section: 'rx_proxy',
    key: 'allow_ports',
    type: { kind: 'string' },
    default: '',
    doc: 'destination ports rx_proxy may connect to, e.g. 80,443,5000-5999 (empty: any)'
  },
  {
    section: 'rx_proxy',
    key: 'deny_subnets',
    type: { kind: 'string' },
    default: '169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8',
    doc: 'destinations rx_proxy never connects to (wins over allow_subnets); loopback, unspecified, IPv4-embedding IPv6 and the rx box\u2019s own addresses are always refused too'
  },
  {
    section: 'rx_proxy',
    key: 'allow_loopback',
    type: { kind: 'enum', values: ['true', 'false'] },
    default: 'false',
    doc: 'let flows reach 127.0.0.0/8 and ::1 on the rx box (tests and single-box use only; warned at start)'
  },
  {
    section: 'rx_proxy',
    key: 'control_socket',
    type: { kind: 'string' },
    default: '/run/tandem/rx_proxy.sock',
    doc: 'Unix socket that `./rx_proxy status` reads (empty: none)'
  },
  {
    section: 'rx_proxy',
    key: 'control_socket_group',
    type: { kind: 'string' },
    default: '',
    doc: 'group (name or number) that may read the control socket: mode 0660 instead of 0600'
  },
  {
    section: 'rx_proxy',
    key: 'metrics_listen',
    type: { kind: 'endpoint', optional: true },
    default: '',
    doc: 'serve Prometheus metrics at http://HOST:PORT/metrics (empty: off)'
  },
  // [trunk]
  {
    section: 'trunk',
    key: 'scheduler',
    type: {
      kind: 'enum',
      values: SCHEDULER_NAMES
    },
    default: 'first-free',
    doc: 'which subflow takes the next frame'
  },
  {
    section: 'trunk',
    key: 'frame_payload_bytes',
    type: int(512, 1 * MiB),
    default: String(64 * KiB),
    doc: 'largest DATA payload per frame, in bytes (small writes are sent at once, smaller)'
  },
  {
    section: 'trunk',
    key: 'ping_interval_ms',
    type: int(50, 60_000),
    default: '500',
    doc: 'PING period on every subflow, in ms'
  },
  {
    section: 'trunk',
    key: 'ping_timeout_ms',
    type: int(100, 600_000),
    default: '2500',
    doc: 'a subflow that received nothing this long is dead, in ms'
  },
  {
    section: 'trunk',
    key: 'outage_grace_ms',
    type: int(0, 3_600_000),
    default: '10000',
    doc: 'flows survive this long with no subflow at all, then are reset, in ms'
  },
  {
    section: 'trunk',
    key: 'congestion',
    type: { kind: 'string' },
    default: 'auto',
    doc: 'congestion control of every subflow (TCP_CONGESTION): auto = bbr where the kernel has it, else the system default, and tandem (registered by scripts/tandem-cc.sh) on a trunk whose min RTT reaches 80 ms; system (or empty) = the system default; or a name (bbr, cubic, reno...)'
  },
  {
    section: 'trunk',
    key: 'link_rate',
    // At least 100 kbit/s, so that every one of up to 256 subflows gets a pace of a byte per
    // second or more; at most 1 Tbit/s.
    type: { kind: 'rate', minBytesPerSec: 12_500, maxBytesPerSec: 125_000_000_000 },
    default: '',
    doc: 'rate of the bottleneck between the boxes, e.g. 100mbit (k, m, g: powers of 1000); the trunk paces its subflows to it together (empty or 0: learn it from the subflows\u2019 delivery rates)'
  },
  {
    section: 'trunk',
    key: 'notsent_lowat_bytes',
    type: int(0, 64 * MiB),
    default: String(128 * KiB),
    doc: 'TCP_NOTSENT_LOWAT of every subflow, in bytes: unsent bytes kept in the kernel, so backlog stays visible to the scheduler (0: off)'
  },
  {
    section: 'trunk',
    key: 'socket_buffer_bytes',
    type: int(0, 1 * GiB),
    default: '0',
    doc: 'SO_SNDBUF and SO_RCVBUF of every subflow, in bytes (0: kernel autotuning, which sysctl tcp_wmem/tcp_rmem bound)'
  },
  {
    section: 'trunk',
    key: 'shutdown_grace_ms',
    type: int(0, 3_600_000),
    default: '10000',
    doc: 'on SIGTERM, running flows get this long to finish before they are reset, in ms'
  },
  {
    section: 'trunk',
    key: 'redundant_ports',
    type: { kind: 'string' },
    default: '',
    doc: 'flows to these destination ports are sent redundantly (each frame on two paths), e.g. 22,3389 (empty: none)'
  },
  {
    section: 'trunk',
    key: 'redundant_first_bytes',
    type: int(0, 1 * GiB),
    default: String(128 * KiB),
    doc: 'every flow sends its first N bytes on two subflows (a lost segment then rarely holds a request or a short reply for a round trip), then uses the scheduler (0: off)'
  },
  // [limits]
  {
    section: 'limits',
    key: 'flow_window_bytes',
    type: int(64 * KiB, 1 * GiB),
    default: String(4 * MiB),
    doc: 'credit first granted per flow and direction, in bytes (announced in the hello; data may follow an OPEN at once up to it)'
  },
  {
    section: 'limits',
    key: 'max_flow_window_bytes',
    type: int(64 * KiB, 1 * GiB),
    default: String(32 * MiB),
    doc: 'most credit per flow and direction, in bytes (bounds each reorder buffer); the window doubles towards it while reordering holds half of it or the sender uses up its credit; use several bandwidth-delay products on lossy links'
  },
  {
    section: 'limits',
    key: 'send_buffer_bytes',
    type: int(64 * KiB, 1 * GiB),
    default: String(4 * MiB),
    doc: 'bytes a flow may hold from its application not yet sent before reading pauses (all held bytes are capped at max_flow_window_bytes plus this)'
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
    default: String(64 * KiB),
    doc: 'user-space bytes queued per subflow socket before the scheduler skips it'
  },
  // [interception]: the bridged deployment (tx box). Read by tx_proxy, iptables/ and bridge-setup.sh.
  {
    section: 'interception',
    key: 'enabled',
    type: { kind: 'enum', values: ['true', 'false'] },
    default: 'false',
    doc: 'tx_proxy reads SYNs from NFQUEUE and destinations from SO_ORIGINAL_DST (the bridged deployment); false: explicit or static use'
  },
  {
    section: 'interception',
    key: 'bridge',
    type: { kind: 'string' },
    default: 'br0',
    doc: 'bridge device on each box'
  },
  {
    section: 'interception',
    key: 'lan_interface',
    type: { kind: 'string' },
    default: 'eth0',
    doc: 'bridge port facing the clients (tx box) or the servers (rx box)'
  },
  {
    section: 'interception',
    key: 'wan_interface',
    type: { kind: 'string' },
    default: 'eth1',
    doc: 'bridge port facing the long link'
  },
  {
    section: 'interception',
    key: 'tx_bridge_address',
    type: { kind: 'string' },
    default: '192.168.2.201/24',
    doc: 'address/prefix of br0 on the tx box (REDIRECT needs one)'
  },
  {
    section: 'interception',
    key: 'rx_bridge_address',
    type: { kind: 'string' },
    default: '192.168.2.202/24',
    doc: 'address/prefix of br0 on the rx box (rx_proxy listens there)'
  },
  // Per-role names: one network.conf serves two boxes whose ports are named differently.
  {
    section: 'interception',
    key: 'tx_lan_interface',
    type: { kind: 'string' },
    default: '',
    doc: 'lan_interface of the tx box alone (empty: lan_interface)'
  },
  {
    section: 'interception',
    key: 'tx_wan_interface',
    type: { kind: 'string' },
    default: '',
    doc: 'wan_interface of the tx box alone (empty: wan_interface)'
  },
  {
    section: 'interception',
    key: 'rx_lan_interface',
    type: { kind: 'string' },
    default: '',
    doc: 'lan_interface of the rx box alone (empty: lan_interface)'
  },
  {
    section: 'interception',
    key: 'rx_wan_interface',
    type: { kind: 'string' },
    default: '',
    doc: 'wan_interface of the rx box alone (empty: wan_interface)'
  },
  {
    section: 'interception',
    key: 'tx_bridge_address6',
    type: { kind: 'string' },
    default: '',
    doc: 'IPv6 address/prefix of br0 on the tx box: REDIRECT of IPv6 clients needs one (empty: none)'
  },
  {
    section: 'interception',
    key: 'rx_bridge_address6',
    type: { kind: 'string' },
    default: '',
    doc: 'IPv6 address/prefix of br0 on the rx box (empty: none)'
  },
  {
    section: 'interception',
    key: 'queue_num',
    type: int(0, 65535),
    default: '0',
    doc: 'NFQUEUE number the SYNs are queued to'
  },
  {
    section: 'interception',
    key: 'mark',
    type: int(1, 0x7fffffff),
    default: '1',
    doc: 'packet mark tx_proxy gives accepted SYNs (the REDIRECT rule matches it); on the rx box, the mark of replies steered to transparent sockets'
  },
  {
    section: 'interception',
    key: 'ports',
    type: { kind: 'string' },
    default: '',
    doc: 'destination ports to accelerate, e.g. 80,443,5000-5999 (empty: all)'
  },
  {
    section: 'interception',
    key: 'subnets',
    type: { kind: 'string' },
    default: '',
    doc: 'destination subnets to accelerate, e.g. 10.0.0.0/8,2001:db8::/32 (empty: all)'
  },
  {
    section: 'interception',
    key: 'exclude_ports',
    type: { kind: 'string' },
    default: '22',
    doc: 'destination ports never accelerated (wins over ports)'
  },
  {
    section: 'interception',
    key: 'exclude_subnets',
    type: { kind: 'string' },
    default: '',
    doc: 'destination subnets never accelerated (wins over subnets)'
  },
  {
    section: 'interception',
    key: 'syn_table_size',
    type: int(16, 10_000_000),
    default: '65536',
    doc: 'most SYNs remembered while their connection is being accepted'
  },
  {
    section: 'interception',
    key: 'syn_table_ttl_ms',
    type: int(100, 600_000),
    default: '30000',
    doc: 'how long a SYN is remembered, in ms'
  },
  {
    section: 'interception',
    key: 'transparent',
    type: { kind: 'enum', values: ['true', 'false'] },
    default: 'true',
    doc: 'rx_proxy connects from the client\u2019s own address (IP_TRANSPARENT); false for routed deployments'
  },
  // [security]
  {
    section: 'security',
    key: 'psk',
    type: { kind: 'string' },
    default: '',
    doc: 'the pre-shared key both proxies authenticate each other with, in hex (at least 64 hex digits, 32 bytes; prefer psk_file)'
  },
  {
    section: 'security',
    key: 'psk_file',
    type: { kind: 'string' },
    default: '/etc/tandem/psk',
    doc: 'file holding the pre-shared key (hex, or raw bytes; at least 32 bytes); refused if group or others can read it. Make one: tx_proxy genkey --out FILE'
  },
  {
    section: 'security',
    key: 'encrypt',
    type: { kind: 'enum', values: ['true', 'false'] },
    default: 'true',
    doc: 'encrypt every frame between the proxies (AES-256-GCM, keys fresh per subflow); either side asking is enough'
  },
  {
    section: 'limits',
    key: 'max_unauthenticated',
    type: int(1, 100_000),
    default: '256',
    doc: 'most subflows in their handshake at once (rx_proxy); more are closed at once'
  },
  {
    section: 'limits',
    key: 'max_unauthenticated_per_source',
    type: int(1, 100_000),
    default: '32',
    doc: 'most subflows in their handshake at once from one source address (rx_proxy); more from it are closed at once'
  },
  {
    section: 'limits',
    key: 'idle_timeout_ms',
    type: int(0, 86_400_000),
    default: '3600000',
    doc: 'a flow with no byte either way for this long is reset, in ms (0: never)'
  },
  {
    section: 'limits',
    key: 'credit_release_idle_ms',
    type: int(0, 86_400_000),
    default: '10000',
    doc: 'a flow whose application sent nothing for this long gives back the peer\u2019s credit beyond a first window (RELEASE), so idle connections hold no more of the peer\u2019s max_buffered_bytes than a new flow, in ms (0: never)'
  },
  // [log]
  {
    section: 'log',
    key: 'level',
    type: { kind: 'enum', values: ['error', 'warn', 'info', 'debug'] },
    default: 'info',
    doc: 'log level'
  },
  {
    section: 'log',
    key: 'format',
    type: { kind: 'enum', values: ['text', 'json'] },
    default: 'text',
    doc: 'log line format: text (one readable line) or json (one object per line, for log shippers)'
  }
]
