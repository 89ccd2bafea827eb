/**
 * tx_proxy: terminates client TCP locally and carries each flow over the warm trunk to rx_proxy.
 * Owns its listener, the subflow dialer, the trunk, the counters and the logger: two TxProxy
 * instances in one process do not share anything.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import type { Config, PathConfig } from '../common/config/config.js'
import type { Counters } from '../common/counters.js'
import { formatEndpoint } from '../common/endpoint.js'
import { errorMessage, isPepError } from '../common/errors.js'
import { normalizeAddress } from '../common/ip.js'
import type { Logger } from '../common/log/logger.js'
import { ResetReason, type Endpoint } from '../common/wire/frame.js'
import { Dialer } from '../trunk/dialer.js'
import { Trunk } from '../trunk/trunk.js'
import type { ProxyStatus } from '../app/control.js'
import type { HealthAnswer } from '../app/health.js'
import { listen, ProxyRuntime, waitForFlows, type RuntimeSource } from '../app/runtime.js'
import { TrunkWatch } from '../app/trunk-watch.js'
import { checkedOpen } from './checked-open.js'
import { Interceptor, type SynSource } from './interceptor.js'

/** How tx_proxy learns where a client meant to go. */
export type DestinationResolver = (socket: Socket) => Endpoint

/** The client's own endpoint, for source-transparent connects at the far end. */
function clientEndpoint(socket: Socket): Endpoint | undefined {
  if (socket.remoteAddress === undefined || socket.remotePort === undefined) return undefined
  const { address, family } = normalizeAddress(socket.remoteAddress)
  return { family, address, port: socket.remotePort }
}

/** A running tx_proxy. */
export class TxProxy {
  readonly counters: Counters
  readonly trunk: Trunk
  private readonly runtime: ProxyRuntime
  private readonly config: Readonly<Config>
  private readonly log: Logger
  private readonly resolve: DestinationResolver
  private readonly server: Server
  private readonly dialer: Dialer
  private stopped = false
  private interceptor: Interceptor | undefined
  /** Which path each subflow index dials over: `paths[p].subflows` slots per path, in order. */
  private readonly slots: readonly PathConfig[]
  private readonly openSynSource: (() => SynSource) | undefined
  /** The peer as status, logs and metrics name it: the address:port dialled. */
  readonly peer: string
  private readonly watch: TrunkWatch

  /**
   * @param resolve where each accepted client was going
   * @param openSynSource opens the NFQUEUE reader when interception is enabled (tests pass a fake)
   */
  constructor(
    config: Readonly<Config>,
    log: Logger,
    resolve: DestinationResolver,
    openSynSource?: () => SynSource
  ) {
    this.openSynSource = openSynSource
    this.slots = config.paths.flatMap((p) => new Array<PathConfig>(p.subflows).fill(p))
    this.runtime = new ProxyRuntime('tx_proxy', config, log)
    this.counters = this.runtime.counters
    this.config = config
    this.log = log
    this.resolve = resolve
    this.trunk = new Trunk(this.runtime.trunkOptions(randomBytes(16), log))
    const first = this.slots[0]
    this.peer = formatEndpoint({
      address: first?.peerIp ?? config.tx.rxProxyIp,
      port: first?.peerPort ?? config.tx.rxProxyPort
    })
    this.watch = new TrunkWatch(
      this.peer,
      this.slots.length,
      {
        subflowCount: () => this.trunk.subflowCount,
        peerDraining: () => this.trunk.peerDraining
      },
      log
    )
    this.dialer = new Dialer({
      trunk: this.trunk,
      slots: this.slots,
      hello: {
        maxFrameBodyBytes: config.limits.maxFrameBodyBytes,
        flowWindowBytes: config.limits.flowWindowBytes,
        psk: this.runtime.psk,
        encrypt: config.security.encrypt
      },
      dialTimeoutMs: config.tx.dialTimeoutMs,
      redialMinMs: config.tx.redialMinMs,
      redialMaxMs: config.tx.redialMaxMs,
      counters: this.counters,
      log,
      observer: this.watch
    })
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      this.onClient(socket)
    })
  }

  /** Listen for clients and dial the trunk. Resolves once listening. */
  async start(): Promise<{ port: number }> {
    this.watch.start()
    this.dialer.start()
    const port = await listen(this.server, this.config.tx.localPort, this.config.tx.localIp, {
      address: 'tx_proxy.local_ip',
      port: 'tx_proxy.local_port'
    })
    if (this.openSynSource !== undefined) {
      const i = this.config.interception
      this.interceptor = new Interceptor(this.openSynSource(), {
        policy: i.policy,
        mark: i.mark,
        synTableSize: i.synTableSize,
        synTableTtlMs: i.synTableTtlMs,
        healthy: () => this.healthy,
        atCapacity: () => this.trunk.atCapacity(),
        now: () => performance.now(),
        counters: this.counters,
        log: this.log.child({ part: 'nfqueue' })
      })
      this.log.info(`intercepting SYNs from NFQUEUE ${i.queueNum}, mark ${i.mark}`)
    }
    await this.runtime.serve(this.source)
    this.log.info(`listening on ${this.config.tx.localIp}:${port}`, {
      paths: this.config.paths
        .map((p) => `${p.name}:${p.subflows}x${p.peerIp}:${p.peerPort}`)
        .join(','),
      subflows: this.slots.length
    })
    if (!this.config.security.encrypt) {
      this.log.warn(
        'security.encrypt = false: frames are encrypted only if rx_proxy asks; otherwise they travel unauthenticated (anyone on the path can read and change them)'
      )
    }
    return { port }
  }

  /** What the runtime's status, metrics and health read from this proxy. */
  private readonly source: RuntimeSource = {
    trunks: () => [this.trunk],
    context: () => ({
      peer: this.peer,
      mode: this.openSynSource !== undefined ? 'intercepting' : 'static',
      encrypted: this.watch.encrypted,
      watch: this.watch,
      slots: this.slots.map((p, index) => ({ index, path: p.name })),
      endpoints: (f) => {
        const open = f.openFrame
        return open === undefined
          ? undefined
          : { destination: open.dst, ...(open.src !== undefined ? { client: open.src } : {}) }
      }
    }),
    readiness: () => this.readiness(),
    extra: () => {
      const interception = this.interception()
      return interception !== undefined ? { interception } : {}
    }
  }

  /**
   * True while new flows can be carried: a subflow is up and the peer is not draining.
   * Interception leaves new flows alone (they pass directly) otherwise.
   */
  get healthy(): boolean {
    return this.trunk.subflowCount > 0 && !this.trunk.peerDraining && !this.stopped
  }

  /**
   * Graceful stop: no new clients (interception closes its queue, so with --queue-bypass new
   * SYNs pass directly), running flows get up to `graceMs` to finish, then the rest are reset.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true
    this.watch.stop()
    this.interceptor?.close()
    const closed = new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve()
      })
    })
    await waitForFlows(() => this.trunk.flowCount, graceMs)
    if (this.trunk.flowCount > 0) {
      this.log.warn(`shutdown grace over: resetting ${this.trunk.flowCount} flow(s)`)
    }
    this.dialer.stop()
    this.runtime.close()
    this.trunk.close(ResetReason.SHUTDOWN, 'tx_proxy stopping')
    await closed
  }

  /** `/readyz`: a subflow is up and the peer takes flows; when intercepting, the queue is bound. */
  readiness(): HealthAnswer {
    if (this.stopped) return { ok: false, detail: 'stopping' }
    const n = this.trunk.subflowCount
    if (n === 0) {
      const e = this.watch.lastDialError
      return {
        ok: false,
        detail: `trunk to ${this.peer} down${e !== undefined ? `: ${e.message}` : ''}`
      }
    }
    if (this.trunk.peerDraining) return { ok: false, detail: `peer ${this.peer} is draining` }
    if (this.openSynSource !== undefined && this.interceptor?.bound !== true) {
      return { ok: false, detail: `NFQUEUE ${this.config.interception.queueNum} not bound` }
    }
    return { ok: true, detail: `ready: trunk to ${this.peer} up with ${n} subflow(s)` }
  }

  /** The keys `reload` applies (the interception policy). */
  readonly reloadableKeys: readonly string[] = [
    'interception.ports',
    'interception.subnets',
    'interception.exclude_ports',
    'interception.exclude_subnets'
  ]

  /** SIGHUP: take the new policy; running flows are untouched. */
  reload(config: Readonly<Config>): void {
    this.interceptor?.setPolicy(config.interception.policy)
  }

  private onClient(socket: Socket): void {
    this.counters.inc('clients_accepted')
    let dst: Endpoint
    try {
      dst = this.resolve(socket)
    } catch (err) {
      this.counters.inc('clients_no_destination')
      this.log.warn(
        `client ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0} reset: ${errorMessage(err)}`
      )
      socket.resetAndDestroy()
      return
    }
    try {
      const client = clientEndpoint(socket)
      if (this.interceptor !== undefined && client !== undefined) this.checkSyn(client, dst)
      const open = checkedOpen(dst, client)
      if (open.srcDropped) this.counters.inc('flows_source_omitted')
      this.trunk.openFlow(socket, open.dst, open.src)
      socket.resume()
    } catch (err) {
      // Whatever one client's flow trips over costs that flow only, never the process.
      const code = isPepError(err) ? err.code : 'internal'
      this.counters.inc(`flows_failed_${code}`)
      this.log.warn(
        `client ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0} reset: ${errorMessage(err)}`,
        { code }
      )
      socket.resetAndDestroy()
    }
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    return this.runtime.status(this.source)
  }

  /** Interception status (SYN table, verdict latency), when intercepting. */
  interception():
    { synTableSize: number; latency: ReturnType<Interceptor['latency']> } | undefined {
    const i = this.interceptor
    return i === undefined ? undefined : { synTableSize: i.table.size, latency: i.latency() }
  }

  /** The SYN table and SO_ORIGINAL_DST must agree; a disagreement is logged and counted. */
  private checkSyn(src: Endpoint, dst: Endpoint): void {
    const seen = this.interceptor?.take(src)
    if (seen === undefined) {
      this.counters.inc('syn_table_misses')
      return
    }
    if (seen.dst.address !== dst.address || seen.dst.port !== dst.port) {
      this.counters.inc('syn_table_mismatches')
      this.log.warn(
        `original destination ${dst.address}:${dst.port} differs from the SYN's ${seen.dst.address}:${seen.dst.port}`,
        { client: `${src.address}:${src.port}` }
      )
    }
  }
}
