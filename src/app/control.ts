/**
 * The local control socket: a running proxy answers `status` with a JSON snapshot, which
 * `./tx_proxy status` and `./rx_proxy status` print (human table, --json, --watch). A Unix
 * socket, so only local users with access to its path can ask.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { dirname } from 'node:path'
import type { CongestionChoice, CongestionSource } from '../common/congestion.js'
import { ConfigError } from '../common/errors.js'
import type {
  FlowStatus as TrunkFlowStatus,
  FlowTotals,
  SubflowStatus as TrunkSubflowStatus
} from '../trunk/status.js'

/** A snapshot of one subflow: the trunk's own figures plus what the proxy knows. */
export interface SubflowStatus extends TrunkSubflowStatus {
  /** connecting (dial or handshake running), up, or backing off (waiting to dial again). */
  readonly state?: SubflowState
  /** Name of the path (tx_proxy.paths) this subflow dials over. */
  readonly path?: string
  /** Local and remote address:port of the TCP connection. */
  readonly local?: string
  readonly remote?: string
  /** Kernel smoothed RTT (TCP_INFO), in ms. */
  readonly tcpRttMs?: number
  /** Congestion window (TCP_INFO), in segments. */
  readonly cwndSegments?: number
  /** Segments retransmitted over the connection's life (TCP_INFO). */
  readonly retransmits?: number
  /** Latest delivery rate estimate (TCP_INFO), bytes per second. */
  readonly deliveryRateBps?: number
  /** The congestion control the socket runs (TCP_CONGESTION), e.g. bbr. */
  readonly congestion?: string
  /** Bytes the kernel sent over the connection's life, retransmissions included (TCP_INFO). */
  readonly tcpBytesSent?: number
  /** Bytes the kernel retransmitted over the connection's life (TCP_INFO). */
  readonly tcpBytesRetrans?: number
  /** SO_MAX_PACING_RATE the trunk's rate controller set, bytes per second; 0: not paced. */
  readonly pacingBps?: number
  /** Failed dials since this subflow was last up. */
  readonly failedDials?: number
  /** Backing off: the next dial starts in this many ms. */
  readonly nextDialInMs?: number
}

/** What a subflow slot is doing. */
export type SubflowState = 'connecting' | 'up' | 'backing off'

/** A snapshot of one flow: the trunk's own figures plus the endpoints and rates. */
export interface FlowStatus extends TrunkFlowStatus {
  /** The client's address:port (the side that opened the connection). */
  readonly client?: string
  /** Where the client was going, address:port. */
  readonly destination?: string
  /** Bytes per second read from / written to the local application, lately. */
  readonly rateFromAppBps?: number
  readonly rateToAppBps?: number
  /** Indexes of the subflows that carried this flow's data either way. */
  readonly subflowsUsed?: readonly number[]
}

/** The last dial that failed, for status. */
export interface DialError {
  /** Subflow index that dialled. */
  readonly subflow: number
  readonly message: string
  /** Stable error code (PEP_ERR_..., or the socket's errno name). */
  readonly code: string
  /** When, ISO 8601 UTC. */
  readonly at: string
}

/** The trunk's congestion control decision (`trunk.congestion`), as `status` shows it. */
export interface CongestionStatus {
  /** `trunk.congestion` as configured: auto, system or a name. */
  readonly setting: string
  /** What the subflows are meant to run; absent when the kernel did not say. */
  readonly algorithm?: string
  /** configured, auto (bbr found), auto-fallback (bbr not usable) or system. */
  readonly source: CongestionSource
  /** One phrase: `bbr (auto)`, `cubic (bbr not available: ...)`. */
  readonly label: string
  /** Why auto did not get bbr, and what to do about it. */
  readonly reason?: string
}

/** The status form of a congestion control decision. */
export function congestionStatus(c: CongestionChoice): CongestionStatus {
  return {
    setting: c.setting,
    ...(c.algorithm !== undefined ? { algorithm: c.algorithm } : {}),
    source: c.source,
    label: c.label,
    ...(c.reason !== undefined ? { reason: c.reason } : {})
  }
}

/** A snapshot of one trunk. */
export interface TrunkStatus {
  readonly id: string
  readonly subflows: readonly SubflowStatus[]
  readonly flows: number
  /** The busiest flows, most bytes first. */
  readonly topFlows: readonly FlowStatus[]
  /** The peer proxy: address:port dialled (tx), address the subflows come from (rx). */
  readonly peer?: string
  /** static (explicit destination) or intercepting (NFQUEUE / bridged box). */
  readonly mode?: 'static' | 'intercepting'
  /** True when the subflows carry AES-256-GCM records. */
  readonly encrypted?: boolean
  /** The subflows' congestion control decision (each subflow's own is in `subflows`). */
  readonly congestion?: CongestionStatus
  /** up (a subflow carries flows), down, or draining (the peer sent GOAWAY). */
  readonly state?: 'up' | 'down' | 'draining'
  /** Dials that failed since the trunk was last up (tx). */
  readonly failedDials?: number
  readonly lastDialError?: DialError
  /** The trunk's rate controller (absent when the trunk does not pace). */
  readonly rate?: RateStatus
}

/** The rate controller's state for one trunk (core/rate-controller.ts). */
export interface RateStatus {
  /**
   * Where the rate comes from: configured (trunk.link_rate), learned (from the subflows, pipe
   * seen full), startup (learning, subflows not paced yet), none (nothing measured yet).
   */
  readonly source: 'configured' | 'learned' | 'startup' | 'none'
  /** Sum of the subflows' pacing rates now, bytes per second; 0: not paced. */
  readonly targetBps: number
  /** Bottleneck rate estimate (configured, or learned without probing gain), bytes per second. */
  readonly estimateBps: number
  /** Highest rate the peer delivered to us lately, bytes per second. */
  readonly receiveBps: number
  /** The rate the peer says it can send to us at (its last PONG), bytes per second; 0: unknown. */
  readonly peerSendBps: number
  /**
   * The rate our PONGs tell the peer we can send at (its credit for our replies is sized by
   * it), bytes per second; 0: unknown.
   */
  readonly sendRateBps: number
  /** Sum of the subflows' latest TCP_INFO delivery rates, bytes per second. */
  readonly kernelDeliveryBps: number
  /** Windowed minimum RTT, ms. */
  readonly minRttMs: number
  /** Bandwidth-delay product, bytes (flows' credit grows to twice this). */
  readonly bdpBytes: number
  /** In-flight cap, bytes; 0: none. */
  readonly inflightCapBytes: number
  /** Bytes in flight at the last sample. */
  readonly inFlightBytes: number
}

/** What `status` answers. */
export interface ProxyStatus {
  readonly role: 'tx_proxy' | 'rx_proxy'
  readonly pid: number
  readonly uptimeMs: number
  readonly bufferedBytes: number
  readonly maxBufferedBytes: number
  readonly trunks: readonly TrunkStatus[]
  /** Sums over every flow, closed and live. */
  readonly totals: FlowTotals
  readonly counters: Readonly<Record<string, number>>
  readonly interception?: unknown
}

/** Which proxy's control socket, for the keys named in errors. */
export interface ControlOptions {
  /** The config section: `tx_proxy` or `rx_proxy`. */
  readonly section: 'tx_proxy' | 'rx_proxy'
  /** `control_socket_group`: a group name or number that may use the socket ('' : none). */
  readonly group: string
}

/** The gid of `group` (a number, or a name from /etc/group). Throws ConfigError naming `key`. */
export function resolveGroup(key: string, group: string): number {
  if (/^\d+$/.test(group)) return Number(group)
  let text = ''
  try {
    text = readFileSync('/etc/group', 'utf8')
  } catch {
    // No group database: only numbers work.
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':')
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid)
  }
  throw new ConfigError(
    key,
    `no such group ${JSON.stringify(group)} (a name in /etc/group or a number)`
  )
}

/**
 * What is at `path` now: nothing, a socket nobody answers on (left by a proxy that died), a
 * live proxy (its status, when it gave one in time), or something else. Never removes anything.
 */
export async function probeControl(
  path: string,
  timeoutMs = 1000
): Promise<
  | { readonly kind: 'absent' | 'stale' | 'not-a-socket' }
  | { readonly kind: 'live'; readonly status: ProxyStatus | undefined }
> {
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch {
    return { kind: 'absent' }
  }
  if (!isSocket) return { kind: 'not-a-socket' }
  return await new Promise((resolve) => {
    const socket = connect(path)
    let text = ''
    let connected = false
    const done = (): void => {
      clearTimeout(timer)
      socket.destroy()
      let status: ProxyStatus | undefined
      try {
        status = JSON.parse(text) as ProxyStatus
      } catch {
        status = undefined
      }
      resolve(connected ? { kind: 'live', status } : { kind: 'stale' })
    }
    // Something accepted the connection but said nothing: still a live listener.
    const timer = setTimeout(done, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('connect', () => {
      connected = true
      socket.write('status\n')
    })
    socket.on('data', (d: string) => (text += d))
    socket.on('end', done)
    // ECONNREFUSED: a socket file whose listener is gone.
    socket.on('error', done)
  })
}

/**
 * Serve `status` on `path`. Returns the server (close it on stop).
 *
 * The socket is 0600 (0660 and owned by `options.group` when one is given) whatever the umask,
 * in a directory created 0700 (0710 with a group, so its members can reach the socket). A live
 * proxy's socket is never removed: a second instance with the same path stops with one line
 * naming the key. A socket file nobody answers on is a leftover, and is replaced.
 */
export async function serveControl(
  path: string,
  status: () => ProxyStatus,
  options: ControlOptions
): Promise<Server> {
  const key = `${options.section}.control_socket`
  const gid =
    options.group === ''
      ? undefined
      : resolveGroup(`${options.section}.control_socket_group`, options.group)
  const dir = dirname(path)
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (created !== undefined) {
    // Only directories made here: an existing one (/tmp, /run) is not ours to change.
    for (let d = dir; d.length >= created.length; d = dirname(d)) {
      if (gid !== undefined) chownSync(d, -1, gid)
      chmodSync(d, gid === undefined ? 0o700 : 0o710)
      if (d === created) break
    }
  }
  const found = await probeControl(path)
  if (found.kind === 'live') {
    const who =
      found.status !== undefined ? `${found.status.role} (pid ${found.status.pid})` : 'a process'
    throw new ConfigError(
      key,
      `${who} is running and answers at ${path}; stop it first, or give this one another ${key}`
    )
  }
  if (found.kind === 'not-a-socket') {
    throw new ConfigError(
      key,
      `${path} exists and is not a socket; remove it or choose another path`
    )
  }
  if (found.kind === 'stale') unlinkSync(path)
  const server = createServer((socket) => {
    socket.setEncoding('utf8')
    let request = ''
    socket.on('data', (d: string) => {
      request += d
      if (!request.includes('\n')) {
        if (request.length > 64) socket.destroy()
        return
      }
      const verb = request.trim()
      if (verb === 'status') socket.end(`${JSON.stringify(status())}\n`)
      else socket.end(`${JSON.stringify({ error: `unknown request ${verb.slice(0, 32)}` })}\n`)
    })
    socket.on('error', () => undefined)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // The socket file is created inside listen() (bind is synchronous for a Unix socket): with
    // umask 0177 it is born 0600, so no other user can connect before the chmod below.
    const umask = process.umask(0o177)
    try {
      server.listen(path, () => {
        server.off('error', reject)
        resolve()
      })
    } finally {
      process.umask(umask)
    }
  })
  if (gid !== undefined) chownSync(path, -1, gid)
  chmodSync(path, gid === undefined ? 0o600 : 0o660)
  return server
}

/** Ask the proxy at `path` for its status. Rejects with a one-line Error. */
export async function queryStatus(path: string, timeoutMs = 3000): Promise<ProxyStatus> {
  return await new Promise((resolve, reject) => {
    const socket = connect(path)
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write('status\n'))
    socket.on('data', (d: string) => (text += d))
    socket.on('end', () => {
      clearTimeout(timer)
      try {
        resolve(JSON.parse(text) as ProxyStatus)
      } catch {
        reject(new Error(`bad answer from ${path}`))
      }
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(
        new Error(`cannot reach the proxy at ${path}: ${err.code ?? err.message} (is it running?)`)
      )
    })
  })
}

/** The human status screen (in its own module; re-exported for the CLI). */
export { formatStatus } from './status-format.js'

/** Totals over closed flows (counters) plus live ones. */
export function combineTotals(
  counters: Readonly<Record<string, number>>,
  live: readonly ProxyStatus['totals'][]
): ProxyStatus['totals'] {
  const sum = (k: keyof ProxyStatus['totals']): number => live.reduce((n, t) => n + t[k], 0)
  return {
    bytesFromApp: (counters.bytes_from_app ?? 0) + sum('bytesFromApp'),
    bytesToApp: (counters.bytes_to_app ?? 0) + sum('bytesToApp'),
    reorderBytes: sum('reorderBytes'),
    sendBufferedBytes: sum('sendBufferedBytes'),
    duplicateBytes: (counters.duplicate_bytes ?? 0) + sum('duplicateBytes'),
    resentBytes: (counters.flow_bytes_resent ?? 0) + sum('resentBytes'),
    creditStalls: (counters.credit_stalls ?? 0) + sum('creditStalls')
  }
}
