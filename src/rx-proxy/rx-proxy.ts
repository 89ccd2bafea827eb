/**
 * rx_proxy: accepts trunks from its peer, ties their subflows together by trunk id, and connects
 * each flow to its destination. Owns its listener, trunks, counters, budget and logger.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { checkDestination, type DestinationGuardOptions } from '../common/destination-guard.js'
import { normalizeEndpoint } from '../common/flow-endpoints.js'
import { refuseDestination } from './refuse-destination.js'
import type { Config } from '../common/config/config.js'
import { Counters } from '../common/counters.js'
import { errorMessage, isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import {
  HELLO_FLAG_ENCRYPT,
  HelloStatus,
  REPLY_FLAG_TRUNK_NEW,
  ResetReason,
  type Endpoint,
  type OpenFrame
} from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'
import { MemoryBudget } from '../core/memory-budget.js'
import { createScheduler } from '../core/scheduler/index.js'
import { AcceptGate } from '../trunk/accept-gate.js'
import { acceptSubflow, helloReply, type LocalHelloParams } from '../trunk/handshake.js'
import { loadPsk } from '../common/config/load.js'
import { Trunk } from '../trunk/trunk.js'
import {
  createSubflowTuner,
  deliveryRate,
  kernelUnsentBytes,
  setAbortiveClose
} from '../trunk/tune.js'
import { trunkSettings, waitForFlows } from '../tx-proxy/tx-proxy.js'
import { connectTransparent, errnoCode } from './transparent.js'
import { combineTotals, serveControl, type ProxyStatus } from '../edge/control.js'
import { createRegistry, serveMetrics } from '../edge/metrics.js'
import { listenNamed } from '../edge/listen-errors.js'
import type { Server as HttpServer } from 'node:http'
import type { HealthAnswer } from '../edge/health.js'
import { StatusView } from '../edge/status-view.js'
import { normalizeAddress } from '../tx-proxy/tx-proxy.js'

/** How a connect error maps to a RESET reason. */
function connectFailureReason(code: string | undefined): number {
  switch (code) {
    case 'ECONNREFUSED':
      return ResetReason.CONNECT_REFUSED
    case 'ETIMEDOUT':
      return ResetReason.CONNECT_TIMEOUT
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
    case undefined:
    default:
      return ResetReason.CONNECT_UNREACHABLE
  }
}

/** A running rx_proxy. */
export class RxProxy {
  readonly counters = new Counters()
  private readonly config: Readonly<Config>
  private readonly log: Logger
  private readonly server: Server
  private readonly trunks = new Map<string, Trunk>()
  private readonly budget: MemoryBudget
  /** Handshakes in progress: the limits on unauthenticated peers. */
  private readonly gate: AcceptGate
  private readonly psk: Uint8Array
  /** What may be a destination (no open relay); this box's addresses are read at each connect. */
  private readonly guard: DestinationGuardOptions
  private readonly startedMs = performance.now()
  private control: Server | undefined
  /** Connect from the client's address; turned off once if the process lacks the capability. */
  private transparent: boolean
  private metrics: HttpServer | undefined
  private readonly tuner: (socket: Socket) => void
  /** Per trunk: the peer's address (where its first subflow came from) and its encryption. */
  private readonly trunkInfo = new WeakMap<Trunk, { peer: string; encrypted: boolean }>()
  /** Per flow: the client and the destination from its OPEN. */
  private readonly flowEnds = new WeakMap<Flow, { client?: Endpoint; destination: Endpoint }>()
  private readonly view = new StatusView()

  constructor(config: Readonly<Config>, log: Logger) {
    this.config = config
    this.log = log
    this.budget = new MemoryBudget(config.limits.maxBufferedBytes)
    this.psk = loadPsk(config)
    this.gate = new AcceptGate({
      maxPending: config.limits.maxUnauthenticated,
      maxPendingPerSource: config.limits.maxUnauthenticatedPerSource,
      allowPeers: config.rx.allowPeers,
      counters: this.counters,
      log
    })
    this.guard = {
      policy: config.rx.destinations,
      allowLoopback: config.rx.allowLoopback,
      ownAddresses: () =>
        Object.values(networkInterfaces())
          .flatMap((list) => list ?? [])
          .map((i) => i.address)
    }
    this.transparent = config.interception.enabled && config.interception.transparent
    this.tuner = createSubflowTuner(config, log)
    this.server = createServer({ allowHalfOpen: false }, (socket) => {
      this.onSubflow(socket)
    })
  }

  /** Listen for subflows. */
  async start(): Promise<{ port: number }> {
    const c = this.config.rx
    await listenNamed(
      { address: 'rx_proxy.recv_ip', port: 'rx_proxy.recv_port' },
      `${c.recvIp}:${c.recvPort}`,
      () =>
        new Promise<void>((resolve, reject) => {
          this.server.once('error', reject)
          this.server.listen(c.recvPort, c.recvIp, () => {
            this.server.off('error', reject)
            resolve()
          })
        })
    )
    const addr = this.server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.rx.recvPort
    if (this.config.rx.controlSocket !== '') {
      this.control = await serveControl(this.config.rx.controlSocket, () => this.status(), {
        section: 'rx_proxy',
        group: this.config.rx.controlSocketGroup
      })
    }
    if (this.config.rx.metricsListen !== undefined) {
      const m = this.config.rx.metricsListen
      this.metrics = await listenNamed('rx_proxy.metrics_listen', `${m.host}:${m.port}`, () =>
        serveMetrics(m, createRegistry(this, 'rx_proxy'))
      )
    }
    if (this.config.rx.allowLoopback) {
      this.log.warn(
        "rx_proxy.allow_loopback = true: flows may reach services on this box's loopback (tests and single-box use only)"
      )
    }
    this.log.info(`listening on ${this.config.rx.recvIp}:${port}`)
    if (!this.config.security.encrypt) {
      this.log.warn(
        'security.encrypt = false: frames are encrypted only for peers that ask; others travel unauthenticated (anyone on the path can read and change them)'
      )
    }
    return { port }
  }

  /**
   * Graceful stop: no new subflows, GOAWAY to every peer (they open no new flows here and let
   * new connections pass directly), running flows get up to `graceMs`, then the rest are reset.
   */
  async stop(graceMs = 0): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.server.close(() => {
        resolve()
      })
    )
    for (const t of this.trunks.values()) t.drain(ResetReason.SHUTDOWN, 'rx_proxy stopping')
    const flows = (): number => [...this.trunks.values()].reduce((n, t) => n + t.flowCount, 0)
    await waitForFlows(flows, graceMs)
    if (flows() > 0) this.log.warn(`shutdown grace over: resetting ${flows()} flow(s)`)
    for (const t of this.trunks.values()) t.close(ResetReason.SHUTDOWN, 'rx_proxy stopping')
    this.trunks.clear()
    this.gate.destroyAll()
    this.control?.close()
    this.metrics?.close()
    await closed
  }

  /** `/readyz`: listening, and a trunk from the peer has a subflow up. */
  readiness(): HealthAnswer {
    if (!this.server.listening) return { ok: false, detail: 'not listening' }
    const up = [...this.trunks.values()].filter((t) => t.subflowCount > 0 && !t.peerDraining)
    if (up.length === 0) return { ok: false, detail: 'no trunk up: waiting for tx_proxy' }
    const peers = up.map((t) => this.trunkInfo.get(t)?.peer ?? t.idHex.slice(0, 8))
    return { ok: true, detail: `ready: trunk from ${peers.join(', ')} up` }
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    return {
      role: 'rx_proxy',
      pid: process.pid,
      uptimeMs: Math.round(performance.now() - this.startedMs),
      bufferedBytes: this.budget.used,
      maxBufferedBytes: this.budget.capBytes,
      trunks: [...this.trunks.values()].map((t) => {
        const info = this.trunkInfo.get(t)
        return this.view.trunk(t, {
          peer: info?.peer ?? t.idHex.slice(0, 8),
          mode: this.config.interception.enabled ? 'intercepting' : 'static',
          encrypted: info?.encrypted,
          endpoints: (f) => this.flowEnds.get(f)
        })
      }),
      totals: combineTotals(
        this.counters.snapshot(),
        [...this.trunks.values()].map((t) => t.liveTotals())
      ),
      counters: this.counters.snapshot()
    }
  }

  /** Trunks by id (status, tests). */
  trunkList(): Trunk[] {
    return [...this.trunks.values()]
  }

  /** Bytes held by all flows now (for the memory-bound tests and metrics). */
  get bufferedBytes(): number {
    return this.budget.used
  }

  private local(trunkId: Uint8Array): Omit<LocalHelloParams, 'psk' | 'encrypt'> {
    return {
      trunkId,
      maxFrameBodyBytes: this.config.limits.maxFrameBodyBytes,
      flowWindowBytes: this.config.limits.flowWindowBytes
    }
  }

  private onSubflow(socket: Socket): void {
    this.counters.inc('subflows_accepted')
    const who = this.gate.admit(socket)
    if (who === undefined) return
    socket.on('error', () => undefined) // reported by the handshake or the subflow
    acceptSubflow(socket, {
      timeoutMs: this.config.rx.handshakeTimeoutMs,
      firstByteMs: this.config.rx.firstByteTimeoutMs,
      psk: this.psk,
      encrypt: this.config.security.encrypt
    }).then(
      (hs) => {
        this.gate.authenticated(socket)
        const { peer: hello, rest, keys } = hs
        const key = Buffer.from(hello.trunkId).toString('hex')
        let trunk = this.trunks.get(key)
        const isNew = trunk === undefined
        if (trunk === undefined) {
          trunk = new Trunk({
            role: 'rx',
            trunkId: hello.trunkId,
            settings: trunkSettings(this.config),
            scheduler: createScheduler(this.config.trunk.scheduler),
            budget: this.budget,
            counters: this.counters,
            log: this.log.child({ trunk: key.slice(0, 8) }),
            now: () => performance.now(),
            tuneSocket: this.tuner,
            sampleRate: deliveryRate,
            kernelUnsent: kernelUnsentBytes,
            setAbortiveClose,
            onOpen: (t, flow, frame) => {
              try {
                this.connectFlow(t, flow, frame)
              } catch (err) {
                // A bad OPEN costs its own flow only, never the process.
                this.connectFailed(
                  flow,
                  frame.dst,
                  isPepError(err) ? err.code : 'internal',
                  err instanceof Error ? err.message : String(err)
                )
              }
            },
            onLost: (t) => {
              if (this.trunks.get(t.idHex) === t) this.trunks.delete(t.idHex)
              t.close(ResetReason.TRUNK_LOST, 'trunk lost')
            }
          })
          this.trunks.set(key, trunk)
          this.trunkInfo.set(trunk, {
            peer: normalizeAddress(socket.remoteAddress ?? '?').address,
            encrypted: keys !== undefined
          })
          this.counters.inc('trunks_created')
          this.log.info('new trunk', { trunk: key.slice(0, 8), peer: socket.remoteAddress })
        }
        socket.write(
          helloReply(
            hs,
            this.local(hello.trunkId),
            HelloStatus.OK,
            (isNew ? REPLY_FLAG_TRUNK_NEW : 0) | (keys !== undefined ? HELLO_FLAG_ENCRYPT : 0)
          )
        )
        trunk.addSubflow(
          socket,
          { flowWindowBytes: hello.flowWindow, maxFrameBodyBytes: hello.maxFrameBody },
          hello.subflowIndex,
          hello.pathId,
          rest,
          1,
          keys
        )
      },
      (err: unknown) => {
        this.gate.failed(who, err)
      }
    )
  }

  /** A connect failed: count it, log one line, reset the flow with the matching reason. */
  private connectFailed(
    flow: Flow,
    dst: Endpoint,
    code: string | undefined,
    message: string
  ): void {
    this.counters.inc(`connect_failures_${code ?? 'unknown'}`)
    this.log.warn(`connect to ${formatEndpoint(dst)} failed: ${code ?? message}`, { flow: flow.id })
    flow.abort(connectFailureReason(code), `connect to ${formatEndpoint(dst)}: ${code ?? message}`)
  }

  /** The destination answered: hand the socket to the flow. */
  private connected(
    trunk: Trunk,
    flow: Flow,
    socket: Socket,
    dst: Endpoint,
    started: number
  ): void {
    this.counters.inc('connects')
    if (this.log.isDebugEnabled()) {
      this.log.debug(
        `connected to ${formatEndpoint(dst)} in ${Math.round(performance.now() - started)} ms`
      )
    }
    trunk.attachApp(flow, socket)
  }

  /**
   * Connect a flow to its destination: from the client's own address (IP_TRANSPARENT, the
   * bridged deployment) when `interception.transparent` is on and the OPEN carries the client's
   * endpoint, else from this box's address.
   */
  private connectFlow(trunk: Trunk, flow: Flow, frame: OpenFrame): void {
    this.flowEnds.set(flow, {
      destination: frame.dst,
      ...(frame.src !== undefined ? { client: frame.src } : {})
    })
    const started = performance.now()
    // No open relay: the destination is normalised and checked, and the connect goes to exactly
    // the address that was checked.
    const verdict = checkDestination(frame.dst.address, frame.dst.port, this.guard)
    if (!verdict.ok) {
      refuseDestination(this.counters, this.log, flow, frame.dst, verdict)
      return
    }
    const dst: Endpoint = { family: verdict.family, address: verdict.address, port: frame.dst.port }
    const src = frame.src && normalizeEndpoint(frame.src)
    if (this.transparent && src !== undefined && src.family === dst.family) {
      connectTransparent({ dst, src, timeoutMs: this.config.rx.connectTimeoutMs }).then(
        (socket) => {
          socket.setNoDelay(true)
          this.connected(trunk, flow, socket, dst, started)
        },
        (err: unknown) => {
          const code = errnoCode(err)
          if (code === 'EPERM' || code === 'EACCES') {
            // No CAP_NET_ADMIN: say so once and carry on from our own address.
            this.transparent = false
            this.log.warn(
              "source transparency needs CAP_NET_ADMIN: connecting from this box's address"
            )
            this.connectFlow(trunk, flow, frame)
            return
          }
          this.connectFailed(flow, dst, code, errorMessage(err))
        }
      )
      return
    }
    const socket = connect({
      host: dst.address,
      port: dst.port,
      family: dst.family,
      allowHalfOpen: true,
      noDelay: true
    })
    const timer = setTimeout(() => {
      socket.destroy()
      this.connectFailed(flow, dst, 'ETIMEDOUT', 'connect timed out')
    }, this.config.rx.connectTimeoutMs)
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer)
      socket.destroy()
      this.connectFailed(flow, dst, err.code, err.message)
    }
    socket.once('error', onError)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.off('error', onError)
      this.connected(trunk, flow, socket, dst, started)
    })
  }
}
