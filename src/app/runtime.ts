/**
 * What a running proxy has whatever its role: counters, the memory budget, the pre-shared key,
 * trunk options, its listener, the control socket, metrics, status, and the graceful stop's
 * wait for flows. tx_proxy and rx_proxy each own one; nothing here is shared between two
 * proxies in one process.
 */
import type { Server as HttpServer } from 'node:http'
import type { Server } from 'node:net'
import type { Config, HostPort } from '../common/config/config.js'
import { loadPsk } from '../common/config/load.js'
import { Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import { MemoryBudget } from '../core/memory-budget.js'
import { createScheduler } from '../core/scheduler/index.js'
import { trunkSettings } from '../trunk/settings.js'
import type { Trunk, TrunkOptions } from '../trunk/trunk.js'
import {
  createLongPathTuner,
  createSubflowTuner,
  deliveryRate,
  kernelUnsentBytes,
  nativeRateProbe,
  setAbortiveClose,
  type SocketTuner
} from '../trunk/tune.js'
import { combineTotals, congestionStatus, serveControl, type ProxyStatus } from './control.js'
import type { HealthAnswer } from './health.js'
import { listenNamed, type ListenKeys } from './listen-errors.js'
import { createRegistry, serveMetrics } from './metrics.js'
import { StatusView, type TrunkContext } from './status-view.js'
import { SubflowCongestion } from '../trunk/congestion.js'

/** How often the graceful stop looks whether the flows are gone, in ms. */
const FLOW_POLL_MS = 100

/** Which proxy a runtime serves. */
export type RoleName = 'tx_proxy' | 'rx_proxy'

/** Resolve when `count()` is 0 or after `graceMs`, polling every FLOW_POLL_MS. */
export async function waitForFlows(count: () => number, graceMs: number): Promise<void> {
  const deadline = performance.now() + graceMs
  while (count() > 0 && performance.now() < deadline) {
    await new Promise((r) =>
      setTimeout(r, Math.min(FLOW_POLL_MS, Math.max(1, deadline - performance.now())))
    )
  }
}

/**
 * Listen on `host:port`; resolves with the port actually bound (0 asks for any). A bind error
 * names `keys`, the network.conf keys of that address.
 */
export async function listen(
  server: Server,
  port: number,
  host: string,
  keys: ListenKeys
): Promise<number> {
  await listenNamed(
    keys,
    `${host}:${port}`,
    () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          resolve()
        })
      })
  )
  const addr = server.address()
  return typeof addr === 'object' && addr !== null ? addr.port : port
}

/** What a role tells the runtime so that it can serve status, metrics and health. */
export interface RuntimeSource {
  /** The live trunks. */
  readonly trunks: () => readonly Trunk[]
  /** What only the role knows about a trunk (its peer, mode, dial state, flow endpoints). */
  readonly context: (trunk: Trunk) => TrunkContext
  /** `/readyz`: can the proxy carry new flows now? */
  readonly readiness: () => HealthAnswer
  /** The role's own status fields. */
  readonly extra?: () => Partial<ProxyStatus>
}

/** The shared part of a running proxy. */
export class ProxyRuntime {
  readonly role: RoleName
  readonly config: Readonly<Config>
  readonly log: Logger
  readonly counters = new Counters()
  readonly budget: MemoryBudget
  /** The pre-shared key (security.psk or psk_file), read once. */
  readonly psk: Uint8Array
  private readonly startedMs = performance.now()
  /** The subflows' congestion control: decided (and logged) once, shown by `status`. */
  readonly congestion: SubflowCongestion
  private readonly tuner: SocketTuner
  private readonly longPathTuner: SocketTuner
  private readonly view = new StatusView()
  private control: Server | undefined
  private metrics: HttpServer | undefined

  constructor(role: RoleName, config: Readonly<Config>, log: Logger) {
    this.role = role
    this.config = config
    this.log = log
    this.budget = new MemoryBudget(config.limits.maxBufferedBytes)
    this.psk = loadPsk(config)
    // The trunk's rate controller paces the subflows whatever their congestion control.
    this.congestion = new SubflowCongestion(config.trunk.congestion, log, undefined, {
      tandemPaces: true
    })
    this.tuner = createSubflowTuner(config, log, this.congestion)
    this.longPathTuner = createLongPathTuner(this.congestion)
  }

  /** Options for a new trunk of this proxy; `extra` adds the role's own (connect, onLost). */
  trunkOptions(
    trunkId: Uint8Array,
    log: Logger,
    extra: Pick<TrunkOptions, 'connect' | 'onLost'> = {}
  ): TrunkOptions {
    return {
      role: this.role === 'tx_proxy' ? 'tx' : 'rx',
      trunkId,
      settings: trunkSettings(this.config),
      scheduler: createScheduler(this.config.trunk.scheduler),
      budget: this.budget,
      counters: this.counters,
      log,
      now: () => performance.now(),
      tuneSocket: this.tuner,
      tuneLongPath: this.longPathTuner,
      sampleRate: deliveryRate,
      kernelUnsent: kernelUnsentBytes,
      rateProbe: nativeRateProbe,
      setAbortiveClose,
      ...extra
    }
  }

  /** Serve the control socket and metrics (with /healthz and /readyz), as configured for this role. */
  async serve(source: RuntimeSource): Promise<void> {
    const own = this.role === 'tx_proxy' ? this.config.tx : this.config.rx
    const status = (): ProxyStatus => this.status(source)
    if (own.controlSocket !== '') {
      this.control = await serveControl(own.controlSocket, status, {
        section: this.role,
        group: own.controlSocketGroup
      })
    }
    const m: HostPort | undefined = own.metricsListen
    if (m !== undefined) {
      const registry = createRegistry({ status, readiness: source.readiness }, this.role)
      this.metrics = await listenNamed(`${this.role}.metrics_listen`, `${m.host}:${m.port}`, () =>
        serveMetrics(m, registry)
      )
    }
    this.congestion.announce()
  }

  /** Status snapshot for the control socket and metrics. */
  status(source: RuntimeSource): ProxyStatus {
    const counters = this.counters.snapshot()
    const trunks = source.trunks()
    return {
      role: this.role,
      pid: process.pid,
      uptimeMs: Math.round(performance.now() - this.startedMs),
      bufferedBytes: this.budget.used,
      maxBufferedBytes: this.budget.capBytes,
      trunks: trunks.map((t) => ({
        ...this.view.trunk(t, source.context(t)),
        congestion: congestionStatus(this.congestion.current)
      })),
      totals: combineTotals(
        counters,
        trunks.map((t) => t.liveTotals())
      ),
      counters,
      ...source.extra?.()
    }
  }

  /** Stop serving the control socket and metrics. */
  close(): void {
    this.control?.close()
    this.metrics?.close()
  }
}
