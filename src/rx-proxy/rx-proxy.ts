/**
 * rx_proxy: accepts trunks from its peer, ties their subflows together by trunk id, and connects
 * each flow to its destination. Owns its listener, trunks, counters, budget and logger.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import { policyAccepts } from '../common/policy.js'
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
import { acceptSubflow, helloReply, type LocalHelloParams } from '../trunk/handshake.js'
import { ConnectFailed } from '../trunk/connector.js'
import { Trunk } from '../trunk/trunk.js'
import { connectTransparent, errnoCode } from './transparent.js'
import type { ProxyStatus } from '../app/control.js'
import { listen, ProxyRuntime, waitForFlows } from '../app/runtime.js'

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
  private readonly pending = new Set<Socket>()
  private readonly psk: Uint8Array
  private busyWarned = false
  /** This box's own addresses: never a destination (an authenticated peer must not reach them). */
  private readonly ownAddresses: Set<string>
  /** Connect from the client's address; turned off once if the process lacks the capability. */
  private transparent: boolean

  constructor(config: Readonly<Config>, log: Logger) {
    this.runtime = new ProxyRuntime('rx_proxy', config, log)
    this.counters = this.runtime.counters
    this.config = config
    this.log = log
    this.psk = this.runtime.psk
    this.ownAddresses = new Set(
      Object.values(networkInterfaces())
        .flatMap((list) => list ?? [])
        .filter((i) => !i.internal)
        .map((i) => i.address.toLowerCase())
    )
    this.transparent = config.interception.enabled && config.interception.transparent
    this.server = createServer({ allowHalfOpen: false }, (socket) => {
      this.onSubflow(socket)
    })
  }

  /** Listen for subflows. */
  async start(): Promise<{ port: number }> {
    const port = await listen(this.server, this.config.rx.recvPort, this.config.rx.recvIp)
    await this.runtime.serve(() => [...this.trunks.values()])
    this.log.info(`listening on ${this.config.rx.recvIp}:${port}`)
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
    for (const s of this.pending) s.destroy()
    this.runtime.close()
    await closed
  }

  /** Status snapshot for the control socket. */
  status(): ProxyStatus {
    return this.runtime.status([...this.trunks.values()])
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
    if (this.pending.size >= this.config.limits.maxUnauthenticated) {
      // Bounded work for unauthenticated peers: past the limit, close at once.
      this.counters.inc('handshakes_refused_busy')
      if (!this.busyWarned)
        this.log.warn(
          `max_unauthenticated (${this.config.limits.maxUnauthenticated}) reached: closing new subflows until handshakes finish`
        )
      this.busyWarned = true
      socket.destroy()
      return
    }
    this.busyWarned = false
    this.pending.add(socket)
    socket.on('error', () => undefined) // reported by the handshake or the subflow
    acceptSubflow(
      socket,
      this.config.rx.handshakeTimeoutMs,
      this.psk,
      this.config.security.encrypt
    ).then(
      ({ peer: hello, rest, keys }) => {
        this.pending.delete(socket)
        const key = Buffer.from(hello.trunkId).toString('hex')
        let trunk = this.trunks.get(key)
        const isNew = trunk === undefined
        if (trunk === undefined) {
          trunk = new Trunk(
            this.runtime.trunkOptions(hello.trunkId, this.log.child({ trunk: key.slice(0, 8) }), {
              connect: (frame) => this.connectFlow(frame),
              onLost: (t) => {
                if (this.trunks.get(t.idHex) === t) this.trunks.delete(t.idHex)
                t.close(ResetReason.TRUNK_LOST, 'trunk lost')
              }
            })
          )
          this.trunks.set(key, trunk)
          this.counters.inc('trunks_created')
          this.log.info('new trunk', { trunk: key.slice(0, 8), peer: socket.remoteAddress })
        }
        socket.write(
          helloReply(
            hello,
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
        this.pending.delete(socket)
        const code = isPepError(err) ? err.code : 'error'
        this.counters.inc(`handshake_failures_${code}`)
        if (code === 'PEP_ERR_AUTH_FAILED') this.counters.inc('auth_failures')
        this.log.warn(
          `subflow from ${socket.remoteAddress ?? '?'} refused: ${isPepError(err) ? err.message : String(err)}`,
          { code }
        )
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
  private async connectFlow(frame: OpenFrame): Promise<Socket> {
    const dst = frame.dst
    const src = frame.src
    const started = performance.now()
    // No open relay: only destinations the policy allows, never this box itself.
    const address = dst.address.toLowerCase()
    if (
      this.ownAddresses.has(address) ||
      !policyAccepts(this.config.rx.destinations, address, dst.port)
    ) {
      this.counters.inc('flows_refused_destination')
      this.log.warn(
        `flow ${frame.flowId} refused: destination ${formatEndpoint(dst)} not allowed (rx_proxy.allow_*/deny_subnets)`
      )
      throw new ConnectFailed(
        ResetReason.POLICY_DENIED,
        `destination ${formatEndpoint(dst)} not allowed`
      )
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
