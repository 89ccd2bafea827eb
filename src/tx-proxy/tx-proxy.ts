/**
 * tx_proxy: terminates client TCP locally and carries each flow over the warm trunk to rx_proxy.
 * Owns its listener, the subflow dialer, the trunk, the counters and the logger: two TxProxy
 * instances in one process do not share anything.
 */
import { randomBytes } from 'node:crypto'
import type { Server as HttpServer } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import type { Config, PathConfig } from '../common/config/config.js'
import { loadPsk } from '../common/config/load.js'
import { Counters } from '../common/counters.js'
import { isPepError } from '../common/errors.js'
import { ipFamily } from '../common/ip.js'
import type { Logger } from '../common/log/logger.js'
import { ResetReason, type Endpoint } from '../common/wire/frame.js'
import { MemoryBudget } from '../core/memory-budget.js'
import { createScheduler } from '../core/scheduler/index.js'
import { Dialer } from '../trunk/dialer.js'
import { trunkSettings } from '../trunk/settings.js'
import { Trunk } from '../trunk/trunk.js'
import {
  createSubflowTuner,
  deliveryRate,
  kernelUnsentBytes,
  setAbortiveClose
} from '../trunk/tune.js'
import { combineTotals, serveControl, type ProxyStatus } from '../app/control.js'
import { createRegistry, serveMetrics } from '../app/metrics.js'
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

/** Resolve when `count()` is 0 or after `graceMs`, polling every 100 ms. */
export async function waitForFlows(count: () => number, graceMs: number): Promise<void> {
  const deadline = performance.now() + graceMs
  while (count() > 0 && performance.now() < deadline) {
    await new Promise((r) =>
      setTimeout(r, Math.min(100, Math.max(1, deadline - performance.now())))
    )
  }
}

/** A running tx_proxy. */
export class TxProxy {
  readonly counters = new Counters()
  readonly trunk: Trunk
  private readonly config: Readonly<Config>
  private readonly log: Logger
  private readonly resolve: DestinationResolver
  private readonly server: Server
  private readonly dialer: Dialer
  private readonly budget: MemoryBudget
  private readonly psk: Uint8Array
  private readonly startedMs = performance.now()
  private control: Server | undefined
  private metrics: HttpServer | undefined
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
    this.budget = new MemoryBudget(config.limits.maxBufferedBytes)
    this.psk = loadPsk(config)
    this.config = config
    this.log = log
    this.resolve = resolve
    this.trunk = new Trunk({
      role: 'tx',
      trunkId: randomBytes(16),
      settings: trunkSettings(config),
      scheduler: createScheduler(config.trunk.scheduler),
      budget: this.budget,
      counters: this.counters,
      log,
      now: () => performance.now(),
      tuneSocket: createSubflowTuner(config, log),
      sampleRate: deliveryRate,
      kernelUnsent: kernelUnsentBytes,
      setAbortiveClose
    })
    this.dialer = new Dialer({
      trunk: this.trunk,
      slots: this.slots,
      hello: {
        maxFrameBodyBytes: config.limits.maxFrameBodyBytes,
        flowWindowBytes: config.limits.flowWindowBytes,
        psk: this.psk,
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
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(this.config.tx.localPort, this.config.tx.localIp, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    const addr = this.server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.tx.localPort
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
    if (this.config.tx.controlSocket !== '') {
      this.control = await serveControl(this.config.tx.controlSocket, () => this.status())
    }
    if (this.config.tx.metricsListen !== undefined) {
      this.metrics = await serveMetrics(this.config.tx.metricsListen, createRegistry(this))
    }
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
    this.control?.close()
    this.metrics?.close()
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

  /** Subflow sockets, for TCP_INFO in the metrics. */
  subflowSockets(): { trunk: string; index: number; pathId: number; socket: Socket }[] {
    return this.trunk.liveSubflows().map((s) => ({
      trunk: this.trunk.idHex,
      index: s.index,
      pathId: s.pathId,
      socket: s.rawSocket
    }))
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    const interception = this.interception()
    return {
      role: 'tx_proxy',
      pid: process.pid,
      uptimeMs: Math.round(performance.now() - this.startedMs),
      bufferedBytes: this.budget.used,
      maxBufferedBytes: this.budget.capBytes,
      trunks: [this.trunk.status()],
      totals: combineTotals(this.counters.snapshot(), [this.trunk.liveTotals()]),
      counters: this.counters.snapshot(),
      ...(interception !== undefined ? { interception } : {})
    }
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
