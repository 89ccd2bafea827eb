/**
 * tx_proxy: terminates client TCP locally and carries each flow over the warm trunk to rx_proxy.
 * Owns its listener, the subflow dialer, the trunk, the counters and the logger: two TxProxy
 * instances in one process do not share anything.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import type { Config, PathConfig } from '../common/config/config.js'
import type { Counters } from '../common/counters.js'
import { isPepError } from '../common/errors.js'
import { ipFamily } from '../common/ip.js'
import type { Logger } from '../common/log/logger.js'
import { ResetReason, type Endpoint } from '../common/wire/frame.js'
import { Dialer } from '../trunk/dialer.js'
import { Trunk } from '../trunk/trunk.js'
import type { ProxyStatus } from '../app/control.js'
import { listen, ProxyRuntime, waitForFlows } from '../app/runtime.js'
import { Interceptor, type SynSource } from './interceptor.js'

/** How tx_proxy learns where a client meant to go. */
export type DestinationResolver = (socket: Socket) => Endpoint

/** Strip the IPv4-mapped prefix node puts on dual-stack sockets. */
export function normalizeAddress(address: string): { address: string; family: 4 | 6 } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return { address: mapped[1]!, family: 4 }
  return { address, family: ipFamily(address) ?? 4 }
}

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
      log
    })
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      this.onClient(socket)
    })
  }

  /** Listen for clients and dial the trunk. Resolves once listening. */
  async start(): Promise<{ port: number }> {
    this.dialer.start()
    const port = await listen(this.server, this.config.tx.localPort, this.config.tx.localIp)
    if (this.openSynSource !== undefined) {
      const i = this.config.interception
      this.interceptor = new Interceptor(this.openSynSource(), {
        policy: i.policy,
        mark: i.mark,
        synTableSize: i.synTableSize,
        synTableTtlMs: i.synTableTtlMs,
        healthy: () => this.healthy,
        now: () => performance.now(),
        counters: this.counters,
        log: this.log.child({ part: 'nfqueue' })
      })
      this.log.info(`intercepting SYNs from NFQUEUE ${i.queueNum}, mark ${i.mark}`)
    }
    await this.runtime.serve(
      () => [this.trunk],
      () => {
        const interception = this.interception()
        return interception !== undefined ? { interception } : {}
      }
    )
    this.log.info(`listening on ${this.config.tx.localIp}:${port}`, {
      paths: this.config.paths
        .map((p) => `${p.name}:${p.subflows}x${p.peerIp}:${p.peerPort}`)
        .join(','),
      subflows: this.slots.length
    })
    return { port }
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
        `client ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0} reset: ${isPepError(err) ? err.message : String(err)}`
      )
      socket.resetAndDestroy()
      return
    }
    const src = clientEndpoint(socket)
    if (this.interceptor !== undefined && src !== undefined) this.checkSyn(src, dst)
    this.trunk.openFlow(socket, dst, src)
    socket.resume()
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    const interception = this.interception()
    return this.runtime.status([this.trunk], interception !== undefined ? { interception } : {})
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
