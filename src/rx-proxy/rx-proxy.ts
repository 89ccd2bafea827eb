/**
 * rx_proxy: accepts trunks from its peer, ties their subflows together by trunk id, and connects
 * each flow to its destination. Owns its listener, trunks, counters, budget and logger.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { checkDestination, type DestinationGuardOptions } from '../common/destination-guard.js'
import { normalizeEndpoint } from '../common/flow-endpoints.js'
import { normalizeAddress } from '../common/ip.js'
import type { Config } from '../common/config/config.js'
import type { Counters } from '../common/counters.js'
import { errorMessage, isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { formatEndpoint } from '../common/endpoint.js'
import {
  HELLO_FLAG_ENCRYPT,
  HelloStatus,
  REPLY_FLAG_TRUNK_NEW,
  ResetReason,
  type ResetReasonCode,
  type Endpoint,
  type OpenFrame
} from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'
import { AcceptGate } from '../trunk/accept-gate.js'
import { acceptSubflow, helloReply, type LocalHelloParams } from '../trunk/handshake.js'
import { ConnectFailed } from '../trunk/connector.js'
import { Trunk } from '../trunk/trunk.js'
import { connectTransparent, errnoCode } from './transparent.js'
import { refuseDestination } from './refuse-destination.js'
import type { ProxyStatus } from '../app/control.js'
import type { HealthAnswer } from '../app/health.js'
import { listen, ProxyRuntime, waitForFlows, type RuntimeSource } from '../app/runtime.js'

/** How a connect error maps to a RESET reason. */
function connectFailureReason(code: string | undefined): ResetReasonCode {
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
  readonly counters: Counters
  private readonly runtime: ProxyRuntime
  private readonly config: Readonly<Config>
  private readonly log: Logger
  private readonly server: Server
  private readonly trunks = new Map<string, Trunk>()
  /** Handshakes in progress: the limits on unauthenticated peers. */
  private readonly gate: AcceptGate
  private readonly psk: Uint8Array
  /** What may be a destination (no open relay); this box's addresses are read at each connect. */
  private readonly guard: DestinationGuardOptions
  /** Connect from the client's address; turned off once if the process lacks the capability. */
  private transparent: boolean
  /** Per trunk: the peer's address (where its first subflow came from) and its encryption. */
  private readonly trunkInfo = new WeakMap<Trunk, { peer: string; encrypted: boolean }>()
  /** Per flow: the client and the destination from its OPEN. */
  private readonly flowEnds = new WeakMap<Flow, { client?: Endpoint; destination: Endpoint }>()

  constructor(config: Readonly<Config>, log: Logger) {
    this.runtime = new ProxyRuntime('rx_proxy', config, log)
    this.counters = this.runtime.counters
    this.config = config
    this.log = log
    this.psk = this.runtime.psk
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
    this.server = createServer({ allowHalfOpen: false }, (socket) => {
      this.onSubflow(socket)
    })
  }

  /** Listen for subflows. */
  async start(): Promise<{ port: number }> {
    const port = await listen(this.server, this.config.rx.recvPort, this.config.rx.recvIp, {
      address: 'rx_proxy.recv_ip',
      port: 'rx_proxy.recv_port'
    })
    await this.runtime.serve(this.source)
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

  /** What the runtime's status, metrics and health read from this proxy. */
  private readonly source: RuntimeSource = {
    trunks: () => [...this.trunks.values()],
    context: (t) => {
      const info = this.trunkInfo.get(t)
      return {
        peer: info?.peer ?? t.idHex.slice(0, 8),
        mode: this.config.interception.enabled ? 'intercepting' : 'static',
        encrypted: info?.encrypted,
        endpoints: (f) => this.flowEnds.get(f)
      }
    },
    readiness: () => this.readiness()
  }

  /** `/readyz`: listening, and a trunk from the peer has a subflow up. */
  readiness(): HealthAnswer {
    if (!this.server.listening) return { ok: false, detail: 'not listening' }
    const up = [...this.trunks.values()].filter((t) => t.subflowCount > 0 && !t.peerDraining)
    if (up.length === 0) return { ok: false, detail: 'no trunk up: waiting for tx_proxy' }
    const peers = up.map((t) => this.trunkInfo.get(t)?.peer ?? t.idHex.slice(0, 8))
    return { ok: true, detail: `ready: trunk from ${peers.join(', ')} up` }
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
    this.runtime.close()
    await closed
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    return this.runtime.status(this.source)
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
          trunk = new Trunk(
            this.runtime.trunkOptions(hello.trunkId, this.log.child({ trunk: key.slice(0, 8) }), {
              connect: (frame, flow) => this.connectFlow(frame, flow),
              onLost: (t) => {
                if (this.trunks.get(t.idHex) === t) this.trunks.delete(t.idHex)
                t.close(ResetReason.TRUNK_LOST, 'trunk lost')
              }
            })
          )
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

  /** A connect failed: count it, log one line, and say which reason the flow is reset with. */
  private connectFailed(dst: Endpoint, code: string | undefined, message: string): ConnectFailed {
    this.counters.inc(`connect_failures_${code ?? 'unknown'}`)
    this.log.warn(`connect to ${formatEndpoint(dst)} failed: ${code ?? message}`)
    return new ConnectFailed(
      connectFailureReason(code),
      `connect to ${formatEndpoint(dst)}: ${code ?? message}`
    )
  }

  /** The destination answered. */
  private connected(socket: Socket, dst: Endpoint, started: number): Socket {
    this.counters.inc('connects')
    if (this.log.isDebugEnabled()) {
      this.log.debug(
        `connected to ${formatEndpoint(dst)} in ${Math.round(performance.now() - started)} ms`
      )
    }
    return socket
  }

  /**
   * Connect a flow the peer opened to its destination (the trunk's `connect`): from the
   * client's own address (IP_TRANSPARENT, the bridged deployment) when `interception.transparent`
   * is on and the OPEN carries the client's endpoint, else from this box's address. Rejects with
   * `ConnectFailed` naming the reset reason.
   */
  private async connectFlow(frame: OpenFrame, flow: Flow): Promise<Socket> {
    this.flowEnds.set(flow, {
      destination: frame.dst,
      ...(frame.src !== undefined ? { client: frame.src } : {})
    })
    const started = performance.now()
    // No open relay: the destination is normalised and checked, and the connect goes to exactly
    // the address that was checked.
    const verdict = checkDestination(frame.dst.address, frame.dst.port, this.guard)
    if (!verdict.ok)
      throw refuseDestination(this.counters, this.log, frame.flowId, frame.dst, verdict)
    const dst: Endpoint = { family: verdict.family, address: verdict.address, port: frame.dst.port }
    let src: Endpoint | undefined
    try {
      src = frame.src && normalizeEndpoint(frame.src)
    } catch (err) {
      // A bad source costs its own flow only.
      const code = isPepError(err) ? err.code : 'internal'
      this.counters.inc(`flows_failed_${code}`)
      throw new ConnectFailed(ResetReason.INTERNAL, errorMessage(err))
    }
    if (this.transparent && src !== undefined && src.family === dst.family) {
      try {
        const socket = await connectTransparent({
          dst,
          src,
          timeoutMs: this.config.rx.connectTimeoutMs
        })
        socket.setNoDelay(true)
        return this.connected(socket, dst, started)
      } catch (err) {
        const code = errnoCode(err)
        if (code !== 'EPERM' && code !== 'EACCES') {
          throw this.connectFailed(dst, code, errorMessage(err))
        }
        // No CAP_NET_ADMIN: say so once and carry on from our own address.
        if (this.transparent) {
          this.transparent = false
          this.log.warn(
            "source transparency needs CAP_NET_ADMIN: connecting from this box's address"
          )
        }
      }
    }
    const socket = connect({
      host: dst.address,
      port: dst.port,
      family: dst.family,
      allowHalfOpen: true,
      noDelay: true
    })
    return await new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy()
        reject(this.connectFailed(dst, 'ETIMEDOUT', 'connect timed out'))
      }, this.config.rx.connectTimeoutMs)
      const onError = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer)
        socket.destroy()
        reject(this.connectFailed(dst, err.code, err.message))
      }
      socket.once('error', onError)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.off('error', onError)
        resolve(this.connected(socket, dst, started))
      })
    })
  }
}
