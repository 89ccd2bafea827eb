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
import { dialSubflow } from '../trunk/handshake.js'
import { REPLY_FLAG_TRUNK_NEW } from '../common/wire/frame.js'
import { Trunk, type TrunkSettings } from '../trunk/trunk.js'
import {
  createSubflowTuner,
  deliveryRate,
  kernelUnsentBytes,
  setAbortiveClose
} from '../trunk/tune.js'
import { combineTotals, serveControl, type ProxyStatus } from '../edge/control.js'
import { createRegistry, serveMetrics } from '../edge/metrics.js'
import { listenNamed } from '../edge/listen-errors.js'
import type { HealthAnswer } from '../edge/health.js'
import { StatusView } from '../edge/status-view.js'
import { dialErrorCode, TrunkWatch } from '../edge/trunk-watch.js'
import { formatEndpoint } from '../common/endpoint.js'
import { Interceptor, type SynSource } from './interceptor.js'
import { checkedOpen } from './checked-open.js'

/** How tx_proxy learns where a client meant to go. */
export type DestinationResolver = (socket: Socket) => Endpoint

/** Settings of the trunk from the parsed config (shared with rx_proxy). */
export function trunkSettings(config: Readonly<Config>): TrunkSettings {
  return {
    maxPayloadBytes: config.trunk.framePayloadBytes,
    maxFrameBodyBytes: config.limits.maxFrameBodyBytes,
    flowWindowBytes: config.limits.flowWindowBytes,
    maxFlowWindowBytes: config.limits.maxFlowWindowBytes,
    sendBufferBytes: config.limits.sendBufferBytes,
    maxReorderSegments: config.limits.maxReorderSegments,
    maxFlows: config.limits.maxFlows,
    subflowQueueBytes: config.limits.subflowQueueBytes,
    pingIntervalMs: config.trunk.pingIntervalMs,
    pingTimeoutMs: config.trunk.pingTimeoutMs,
    outageGraceMs: config.trunk.outageGraceMs,
    redundantPorts: config.trunk.redundantPorts,
    redundantFirstBytes: config.trunk.redundantFirstBytes,
    idleTimeoutMs: config.limits.idleTimeoutMs
  }
}

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
  private readonly dialing = new Set<number>()
  private readonly attempts = new Map<number, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly budget: MemoryBudget
  private readonly psk: Uint8Array
  private readonly startedMs = performance.now()
  private control: Server | undefined
  private metrics: HttpServer | undefined
  private everConnected = false
  private stopped = false
  private interceptor: Interceptor | undefined
  /** Which path each subflow index dials over: `paths[p].subflows` slots per path, in order. */
  private readonly slots: readonly PathConfig[]
  private readonly openSynSource: (() => SynSource) | undefined
  /** The peer as status, logs and metrics name it: the address:port dialled. */
  readonly peer: string
  private readonly watch: TrunkWatch
  private readonly view = new StatusView()

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
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      this.onClient(socket)
    })
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
  }

  /** Listen for clients and dial the trunk. Resolves once listening. */
  async start(): Promise<{ port: number }> {
    this.watch.start()
    for (let i = 0; i < this.slots.length; i++) this.dial(i)
    const c = this.config.tx
    await listenNamed(
      { address: 'tx_proxy.local_ip', port: 'tx_proxy.local_port' },
      `${c.localIp}:${c.localPort}`,
      () =>
        new Promise<void>((resolve, reject) => {
          this.server.once('error', reject)
          this.server.listen(c.localPort, c.localIp, () => {
            this.server.off('error', reject)
            resolve()
          })
        })
    )
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
      this.control = await serveControl(this.config.tx.controlSocket, () => this.status(), {
        section: 'tx_proxy',
        group: this.config.tx.controlSocketGroup
      })
    }
    if (this.config.tx.metricsListen !== undefined) {
      const m = this.config.tx.metricsListen
      this.metrics = await listenNamed('tx_proxy.metrics_listen', `${m.host}:${m.port}`, () =>
        serveMetrics(m, createRegistry(this, 'tx_proxy'))
      )
    }
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
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    this.control?.close()
    this.metrics?.close()
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
        `client ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0} reset: ${isPepError(err) ? err.message : String(err)}`
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
        `client ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0} reset: ${err instanceof Error ? err.message : String(err)}`,
        { code }
      )
      socket.resetAndDestroy()
    }
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
      trunks: [
        this.view.trunk(this.trunk, {
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
        })
      ],
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

  private dial(index: number): void {
    if (this.stopped || this.dialing.has(index)) return
    const path = this.slots[index]
    if (path === undefined) return
    this.dialing.add(index)
    this.watch.dialStarted(index)
    const c = this.config
    dialSubflow({
      host: path.peerIp,
      port: path.peerPort,
      ...(path.localIp !== undefined ? { localAddress: path.localIp } : {}),
      index,
      pathId: path.id,
      timeoutMs: c.tx.dialTimeoutMs,
      local: {
        trunkId: this.trunk.trunkId,
        maxFrameBodyBytes: c.limits.maxFrameBodyBytes,
        flowWindowBytes: c.limits.flowWindowBytes,
        psk: this.psk,
        encrypt: c.security.encrypt
      }
    }).then(
      (hs) => {
        this.dialing.delete(index)
        if (this.stopped) {
          hs.socket.destroy()
          return
        }
        this.attempts.set(index, 0)
        this.watch.dialSucceeded(index, hs.keys !== undefined)
        if (
          (hs.peer.flags & REPLY_FLAG_TRUNK_NEW) !== 0 &&
          this.everConnected &&
          this.trunk.flowCount > 0
        ) {
          this.log.warn('rx_proxy lost this trunk (restarted?): resetting its flows')
          this.counters.inc('peer_restarts')
          this.trunk.resetAllFlows(ResetReason.PEER_RESTARTED, 'peer lost the trunk')
        }
        this.everConnected = true
        hs.socket.once('close', () => {
          this.redial(index)
          this.watch.check()
        })
        this.trunk.addSubflow(
          hs.socket,
          { flowWindowBytes: hs.peer.flowWindow, maxFrameBodyBytes: hs.peer.maxFrameBody },
          index,
          path.id,
          hs.rest,
          path.weight,
          hs.keys
        )
        this.watch.check()
      },
      (err: unknown) => {
        this.dialing.delete(index)
        this.counters.inc('dial_failures')
        this.counters.inc(`handshake_failures_${dialErrorCode(err)}`)
        if (isPepError(err) && err.code === 'PEP_ERR_AUTH_FAILED')
          this.counters.inc('auth_failures')
        // A changed handshake is an attack: always one line (a flood: the first ten, then every
        // 2^k), whatever the watch says about the trunk.
        if (isPepError(err) && err.code === 'PEP_ERR_HANDSHAKE_TAMPERED') {
          this.counters.inc('handshake_attacks')
          const a = this.counters.get('handshake_attacks')
          if (a <= 10 || (a & (a - 1)) === 0) {
            this.log.warn(
              `subflow ${index} (path ${path.name}) to ${path.peerIp}:${path.peerPort}: ${err.message}`,
              { handshake_attacks: a }
            )
          }
        }
        // The watch logs the trunk going down and coming back, not every failed retry.
        this.watch.dialFailed(index, err, this.redial(index))
      }
    )
  }

  /**
   * Re-dial with exponential backoff and ±25% jitter, so that subflows do not storm together.
   * Returns the delay, in ms.
   */
  private redial(index: number): number {
    if (this.stopped) return 0
    const n = (this.attempts.get(index) ?? 0) + 1
    this.attempts.set(index, n)
    const c = this.config.tx
    const base = Math.min(c.redialMaxMs, c.redialMinMs * 2 ** Math.min(n - 1, 20))
    const delay = base * (0.75 + Math.random() * 0.5)
    const t = setTimeout(() => {
      this.timers.delete(t)
      this.dial(index)
    }, delay)
    t.unref()
    this.timers.add(t)
    return delay
  }
}
