/**
 * Parsing and validation of configuration values (pure: text in, frozen Config out).
 * `load.ts` reads the file and the command line; this file decides what the text means.
 */
import { isCongestionSetting } from '../congestion.js'
import { ConfigError } from '../errors.js'
import { ipFamily } from '../ip.js'
import {
  parsePortList,
  parseSubnetList,
  type Policy,
  type PortRange,
  type Subnet
} from '../policy.js'
import { KEYS, SCHEDULER_NAMES, type KeySpec, type SchedulerName } from './schema.js'
import { formatBitRate, parseBitRate, parseByteSize, RATE_RULE, SIZE_RULE } from '../size.js'

/** A host and port from `host:port` or `[v6]:port`. */
export interface HostPort {
  readonly host: string
  readonly port: number
}

/** One path between the boxes (`[path.NAME]`): its own local address and subflows. */
export interface PathConfig {
  readonly name: string
  /** 0.. in the order of the file; carried in the HELLO's path id. */
  readonly id: number
  /** Local address the path's subflows bind to (undefined: the kernel picks). */
  readonly localIp: string | undefined
  /** The rx box's address on this path. */
  readonly peerIp: string
  readonly peerPort: number
  readonly subflows: number
  /** Relative share for the weighted scheduler. */
  readonly weight: number
}

/** Keys of a `[path.NAME]` section. */
const PATH_KEYS = ['local_ip', 'peer_ip', 'peer_port', 'subflows', 'weight'] as const

/** True for `path.NAME.key` with a known key. */
export function isPathKey(name: string): boolean {
  const m = /^path\.([A-Za-z0-9_-]{1,32})\.([a-z_]+)$/.exec(name)
  return m !== null && (PATH_KEYS as readonly string[]).includes(m[2]!)
}

/** The paths from `path.NAME.key` values; one default path when there is no section. */
function buildPaths(raw: RawValues, tx: Config['tx']): PathConfig[] {
  const names: string[] = []
  for (const k of raw.keys()) {
    const m = /^path\.([^.]+)\./.exec(k)
    if (m && !names.includes(m[1]!)) names.push(m[1]!)
  }
  if (names.length === 0) {
    return [
      {
        name: 'default',
        id: 0,
        localIp: undefined,
        peerIp: tx.rxProxyIp,
        peerPort: tx.rxProxyPort,
        subflows: tx.subflows,
        weight: 1
      }
    ]
  }
  return names.map((name, id) => {
    const get = (k: string): string | undefined => raw.get(`path.${name}.${k}`)
    const intOf = (k: string, min: number, max: number, dflt: number): number => {
      const text = get(k)
      if (text === undefined) return dflt
      const n = Number(text)
      if (!/^\d+$/.test(text.trim()) || n < min || n > max) {
        throw new ConfigError(
          `path.${name}.${k}`,
          `expected an integer from ${min} to ${max}, got ${JSON.stringify(text)}`
        )
      }
      return n
    }
    const hostOf = (k: string): string | undefined => {
      const text = get(k)?.trim()
      if (text === undefined || text === '') return undefined
      if (!isHost(text)) {
        throw new ConfigError(
          `path.${name}.${k}`,
          `expected an IPv4 or IPv6 address or a host name, got ${JSON.stringify(text)}`
        )
      }
      return text
    }
    const ipOf = (k: string): string | undefined => {
      const text = get(k)?.trim()
      if (text === undefined || text === '') return undefined
      if (ipFamily(text) === undefined) {
        throw new ConfigError(
          `path.${name}.${k}`,
          `expected an IPv4 or IPv6 address, got ${JSON.stringify(text)}`
        )
      }
      return text
    }
    return {
      name,
      id,
      localIp: ipOf('local_ip'),
      peerIp: hostOf('peer_ip') ?? tx.rxProxyIp,
      peerPort: intOf('peer_port', 1, 65535, tx.rxProxyPort),
      subflows: intOf('subflows', 1, 256, tx.subflows),
      weight: intOf('weight', 1, 1000, 1)
    }
  })
}

/** The whole configuration, parsed once and frozen. */
export interface Config {
  readonly tx: {
    readonly localIp: string
    readonly localPort: number
    readonly rxProxyIp: string
    readonly rxProxyPort: number
    readonly destination: HostPort | undefined
    readonly subflows: number
    readonly redialMinMs: number
    readonly redialMaxMs: number
    readonly dialTimeoutMs: number
    readonly controlSocket: string
    /** Group that may use the control socket ('' : owner only). */
    readonly controlSocketGroup: string
    readonly metricsListen: HostPort | undefined
  }
  readonly rx: {
    readonly recvIp: string
    readonly recvPort: number
    readonly connectTimeoutMs: number
    readonly handshakeTimeoutMs: number
    /** Time until the first HELLO byte, in ms. */
    readonly firstByteTimeoutMs: number
    /** Where subflows may come from (empty: anywhere). */
    readonly allowPeers: readonly Subnet[]
    /** Where rx_proxy may connect (no open relay). */
    readonly destinations: Policy
    /** Flows may reach loopback destinations (tests, single-box use). */
    readonly allowLoopback: boolean
    readonly controlSocket: string
    readonly controlSocketGroup: string
    readonly metricsListen: HostPort | undefined
  }
  readonly trunk: {
    readonly scheduler: SchedulerName
    readonly redundantPorts: readonly PortRange[]
    readonly redundantFirstBytes: number
    readonly framePayloadBytes: number
    readonly pingIntervalMs: number
    readonly pingTimeoutMs: number
    readonly outageGraceMs: number
    readonly congestion: string
    /** Operator-set bottleneck rate, bytes per second (0: learn it). */
    readonly linkRateBytesPerSec: number
    readonly notsentLowatBytes: number
    readonly socketBufferBytes: number
    readonly shutdownGraceMs: number
  }
  readonly limits: {
    readonly flowWindowBytes: number
    readonly maxFlowWindowBytes: number
    readonly sendBufferBytes: number
    readonly maxBufferedBytes: number
    readonly maxFrameBodyBytes: number
    readonly maxFlows: number
    readonly maxReorderSegments: number
    readonly subflowQueueBytes: number
    readonly maxUnauthenticated: number
    readonly maxUnauthenticatedPerSource: number
    readonly idleTimeoutMs: number
    readonly creditReleaseIdleMs: number
  }
  readonly interception: {
    readonly enabled: boolean
    readonly bridge: string
    readonly lanInterface: string
    readonly wanInterface: string
    /** Each box's bridge ports: its own `tx_lan_interface`…, else the shared key. */
    readonly ports: {
      readonly tx: { readonly lan: string; readonly wan: string }
      readonly rx: { readonly lan: string; readonly wan: string }
    }
    readonly txBridgeAddress: string
    readonly rxBridgeAddress: string
    /** IPv6 address/prefix of br0 per box ('' when none). */
    readonly txBridgeAddress6: string
    readonly rxBridgeAddress6: string
    readonly queueNum: number
    readonly mark: number
    readonly policy: Policy
    readonly synTableSize: number
    readonly synTableTtlMs: number
    readonly transparent: boolean
  }
  readonly security: {
    /** The key as hex from network.conf ('' when it comes from `pskFile`). */
    readonly pskHex: string
    readonly pskFile: string
    readonly encrypt: boolean
  }
  readonly log: {
    readonly level: 'error' | 'warn' | 'info' | 'debug'
    readonly format: 'text' | 'json'
  }
  /** The paths tx_proxy dials its subflows over (at least one). */
  readonly paths: readonly PathConfig[]
}

/** Raw values by `section.key`. */
export type RawValues = ReadonlyMap<string, string>

/** The spec of `section.key`, or undefined. */
export function findKey(name: string): KeySpec | undefined {
  return KEYS.find((k) => `${k.section}.${k.key}` === name)
}

/** Parse `host:port` / `[v6]:port`; undefined if malformed. */
export function parseHostPort(text: string): HostPort | undefined {
  const m =
    /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text)
  if (!m) return undefined
  const port = Number(m[2])
  if (port < 1 || port > 65535) return undefined
  const host = m[1]!
  if (text.startsWith('[') && ipFamily(host) !== 6) return undefined
  return { host, port }
}

function describe(spec: KeySpec): string {
  const t = spec.type
  switch (t.kind) {
    case 'int':
      return `an integer from ${t.min} to ${t.max}${spec.key.endsWith('_bytes') ? ` (${SIZE_RULE})` : ''}`
    case 'string':
      return 'text'
    case 'ip':
      return 'an IPv4 or IPv6 address'
    case 'host':
      return 'an IPv4 or IPv6 address or a host name'
    case 'endpoint':
      return 'host:port or [ipv6]:port, or empty'
    case 'enum':
      return `one of ${t.values.join(', ')}`
    case 'rate':
      return `a rate (${RATE_RULE})`
  }
}

/** Parse one value; throws ConfigError naming the key and the expected form. */
export function parseValue(spec: KeySpec, text: string): number | string | HostPort | undefined {
  const name = `${spec.section}.${spec.key}`
  const bad = (): ConfigError =>
    new ConfigError(name, `expected ${describe(spec)}, got ${JSON.stringify(text)}`)
  const t = spec.type
  const value = text.trim()
  switch (t.kind) {
    case 'int': {
      if (/^0x[0-9a-fA-F]+$/.test(value)) {
        const n = parseInt(value, 16)
        if (n < t.min || n > t.max) throw bad()
        return n
      }
      const digits = value.replace(/_/g, '')
      const n = spec.key.endsWith('_bytes')
        ? parseByteSize(digits)
        : /^\d+$/.test(digits)
          ? Number(digits)
          : undefined
      if (n === undefined || !Number.isSafeInteger(n) || n < t.min || n > t.max) throw bad()
      return n
    }
    case 'string':
      return value
    case 'ip':
      if (ipFamily(value) === undefined) throw bad()
      return value
    case 'host':
      if (!isHost(value)) throw bad()
      return value
    case 'endpoint': {
      if (value === '') return undefined
      const hp = parseHostPort(value)
      if (!hp) throw bad()
      return hp
    }
    case 'enum':
      if (!t.values.includes(value)) throw bad()
      return value
    case 'rate': {
      const n = parseBitRate(value)
      if (n === undefined) throw bad()
      if (n !== 0 && (n < t.minBytesPerSec || n > t.maxBytesPerSec)) {
        throw new ConfigError(
          name,
          `expected 0 (learn) or a rate from ${formatBitRate(t.minBytesPerSec)} to ${formatBitRate(t.maxBytesPerSec)}, got ${JSON.stringify(text)}`
        )
      }
      return n
    }
  }
}

/** Check every raw value and build the frozen Config. Unknown keys are errors. */
export function buildConfig(raw: RawValues): Readonly<Config> {
  for (const name of raw.keys()) {
    if (name.startsWith('path.')) {
      if (!isPathKey(name)) {
        throw new ConfigError(
          name,
          `unknown path key (a [path.NAME] section takes ${PATH_KEYS.join(', ')})`
        )
      }
      continue
    }
    if (!findKey(name)) throw new ConfigError(name, 'unknown key (see --help for the keys)')
  }
  const values = new Map<string, number | string | HostPort | undefined>()
  for (const spec of KEYS) {
    const name = `${spec.section}.${spec.key}`
    values.set(name, parseValue(spec, raw.get(name) ?? spec.default))
  }
  const num = (name: string): number => values.get(name) as number
  const str = (name: string): string => values.get(name) as string
  checkCongestion(str('trunk.congestion'))
  const tx: Config['tx'] = {
    localIp: str('tx_proxy.local_ip'),
    localPort: num('tx_proxy.local_port'),
    rxProxyIp: str('tx_proxy.rx_proxy_ip'),
    rxProxyPort: num('tx_proxy.rx_proxy_port'),
    destination: values.get('tx_proxy.destination') as HostPort | undefined,
    subflows: num('tx_proxy.subflows'),
    redialMinMs: num('tx_proxy.redial_min_ms'),
    redialMaxMs: num('tx_proxy.redial_max_ms'),
    dialTimeoutMs: num('tx_proxy.dial_timeout_ms'),
    controlSocket: str('tx_proxy.control_socket'),
    controlSocketGroup: str('tx_proxy.control_socket_group'),
    metricsListen: values.get('tx_proxy.metrics_listen') as HostPort | undefined
  }
  const config: Config = {
    tx,
    rx: {
      recvIp: str('rx_proxy.recv_ip'),
      recvPort: num('rx_proxy.recv_port'),
      connectTimeoutMs: num('rx_proxy.connect_timeout_ms'),
      handshakeTimeoutMs: num('rx_proxy.handshake_timeout_ms'),
      firstByteTimeoutMs: num('rx_proxy.first_byte_timeout_ms'),
      allowPeers: parseSubnetList('rx_proxy.allow_peers', str('rx_proxy.allow_peers')),
      destinations: {
        ports: parsePortList('rx_proxy.allow_ports', str('rx_proxy.allow_ports')),
        subnets: parseSubnetList('rx_proxy.allow_subnets', str('rx_proxy.allow_subnets')),
        excludePorts: [],
        excludeSubnets: parseSubnetList('rx_proxy.deny_subnets', str('rx_proxy.deny_subnets'))
      },
      allowLoopback: str('rx_proxy.allow_loopback') === 'true',
      controlSocket: str('rx_proxy.control_socket'),
      controlSocketGroup: str('rx_proxy.control_socket_group'),
      metricsListen: values.get('rx_proxy.metrics_listen') as HostPort | undefined
    },
    trunk: {
      scheduler: schedulerName(str('trunk.scheduler')),
      redundantPorts: parsePortList('trunk.redundant_ports', str('trunk.redundant_ports')),
      redundantFirstBytes: num('trunk.redundant_first_bytes'),
      framePayloadBytes: num('trunk.frame_payload_bytes'),
      pingIntervalMs: num('trunk.ping_interval_ms'),
      pingTimeoutMs: num('trunk.ping_timeout_ms'),
      outageGraceMs: num('trunk.outage_grace_ms'),
      congestion: str('trunk.congestion'),
      linkRateBytesPerSec: num('trunk.link_rate'),
      notsentLowatBytes: num('trunk.notsent_lowat_bytes'),
      socketBufferBytes: num('trunk.socket_buffer_bytes'),
      shutdownGraceMs: num('trunk.shutdown_grace_ms')
    },
    limits: {
      flowWindowBytes: num('limits.flow_window_bytes'),
      maxFlowWindowBytes: num('limits.max_flow_window_bytes'),
      sendBufferBytes: num('limits.send_buffer_bytes'),
      maxBufferedBytes: num('limits.max_buffered_bytes'),
      maxFrameBodyBytes: num('limits.max_frame_body_bytes'),
      maxFlows: num('limits.max_flows'),
      maxReorderSegments: num('limits.max_reorder_segments'),
      subflowQueueBytes: num('limits.subflow_queue_bytes'),
      maxUnauthenticated: num('limits.max_unauthenticated'),
      maxUnauthenticatedPerSource: num('limits.max_unauthenticated_per_source'),
      idleTimeoutMs: num('limits.idle_timeout_ms'),
      creditReleaseIdleMs: num('limits.credit_release_idle_ms')
    },
    security: {
      pskHex: str('security.psk'),
      pskFile: str('security.psk_file'),
      encrypt: str('security.encrypt') === 'true'
    },
    interception: {
      enabled: str('interception.enabled') === 'true',
      bridge: str('interception.bridge'),
      lanInterface: str('interception.lan_interface'),
      wanInterface: str('interception.wan_interface'),
      ports: {
        tx: {
          lan: str('interception.tx_lan_interface') || str('interception.lan_interface'),
          wan: str('interception.tx_wan_interface') || str('interception.wan_interface')
        },
        rx: {
          lan: str('interception.rx_lan_interface') || str('interception.lan_interface'),
          wan: str('interception.rx_wan_interface') || str('interception.wan_interface')
        }
      },
      txBridgeAddress: str('interception.tx_bridge_address'),
      rxBridgeAddress: str('interception.rx_bridge_address'),
      txBridgeAddress6: str('interception.tx_bridge_address6'),
      rxBridgeAddress6: str('interception.rx_bridge_address6'),
      queueNum: num('interception.queue_num'),
      mark: num('interception.mark'),
      policy: {
        ports: parsePortList('interception.ports', str('interception.ports')),
        subnets: parseSubnetList('interception.subnets', str('interception.subnets')),
        excludePorts: parsePortList(
          'interception.exclude_ports',
          str('interception.exclude_ports')
        ),
        excludeSubnets: parseSubnetList(
          'interception.exclude_subnets',
          str('interception.exclude_subnets')
        )
      },
      synTableSize: num('interception.syn_table_size'),
      synTableTtlMs: num('interception.syn_table_ttl_ms'),
      transparent: str('interception.transparent') === 'true'
    },
    log: {
      level: str('log.level') as Config['log']['level'],
      format: str('log.format') as Config['log']['format']
    },
    paths: buildPaths(raw, tx)
  }
  for (const key of ['interception.tx_bridge_address', 'interception.rx_bridge_address']) {
    const parts = str(key).split('/')
    const addr = parts[0] ?? ''
    const bits = parts.length === 2 && /^\d{1,3}$/.test(parts[1] ?? '') ? Number(parts[1]) : NaN
    const family = ipFamily(addr)
    if (
      family === undefined ||
      !Number.isInteger(bits) ||
      bits < 1 ||
      bits > (family === 4 ? 32 : 128)
    ) {
      throw new ConfigError(
        key,
        `expected address/prefix like 192.168.2.201/24, got ${JSON.stringify(str(key))}`
      )
    }
  }
  for (const key of [
    'interception.bridge',
    'interception.lan_interface',
    'interception.wan_interface'
  ]) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(str(key))) {
      throw new ConfigError(
        key,
        `expected an interface name (1-15 of A-Z a-z 0-9 _ . -), got ${JSON.stringify(str(key))}`
      )
    }
  }
  if (config.tx.redialMinMs > config.tx.redialMaxMs) {
    throw new ConfigError(
      'tx_proxy.redial_min_ms',
      `must not exceed redial_max_ms (${config.tx.redialMaxMs})`
    )
  }
  if (config.trunk.pingTimeoutMs <= config.trunk.pingIntervalMs) {
    throw new ConfigError(
      'trunk.ping_timeout_ms',
      `must exceed ping_interval_ms (${config.trunk.pingIntervalMs})`
    )
  }
  if (config.trunk.framePayloadBytes + 8 > config.limits.maxFrameBodyBytes) {
    throw new ConfigError(
      'trunk.frame_payload_bytes',
      `plus 8 must not exceed limits.max_frame_body_bytes (${config.limits.maxFrameBodyBytes})`
    )
  }
  if (config.limits.maxFlowWindowBytes < config.limits.flowWindowBytes) {
    throw new ConfigError(
      'limits.max_flow_window_bytes',
      `must be at least limits.flow_window_bytes (${config.limits.flowWindowBytes})`
    )
  }
  if (config.limits.flowWindowBytes > config.limits.maxBufferedBytes) {
    throw new ConfigError(
      'limits.flow_window_bytes',
      `must not exceed limits.max_buffered_bytes (${config.limits.maxBufferedBytes})`
    )
  }
  return deepFreeze(config)
}

function deepFreeze<T extends object>(o: T): Readonly<T> {
  for (const v of Object.values(o)) {
    // Byte arrays (subnet addresses) cannot be frozen; nothing hands them out for writing.
    if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) deepFreeze(v as object)
  }
  return Object.freeze(o)
}

/** The scheduler name the schema already checked, typed without a cast. */
function schedulerName(value: string): SchedulerName {
  const name = SCHEDULER_NAMES.find((n) => n === value)
  if (name === undefined) throw new ConfigError('trunk.scheduler', `unknown scheduler ${value}`)
  return name
}

/** `trunk.congestion`: auto, system, empty, or a name the kernel could know. */
function checkCongestion(value: string): void {
  if (!isCongestionSetting(value)) {
    throw new ConfigError(
      'trunk.congestion',
      `expected auto, system or a congestion control name such as bbr or cubic, got ${JSON.stringify(value)}`
    )
  }
}

/**
 * An IP address, or a DNS host name (RFC 1123 labels of letters, digits and inner hyphens, at
 * most 253 characters; the last label not all digits, so a mistyped dotted quad is not taken
 * for a name).
 */
function isHost(text: string): boolean {
  if (ipFamily(text) !== undefined) return true
  if (text.length > 253) return false
  const labels = text.replace(/\.$/, '').split('.')
  if (/^\d+$/.test(labels.at(-1) ?? '')) return false
  return labels.every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))
}
