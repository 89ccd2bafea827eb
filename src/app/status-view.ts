/**
 * Builds the `status` picture of a trunk from what the trunk exposes (its flows and subflows)
 * plus what only the proxy knows (the peer's address, the mode, the dialer's state). Per-flow
 * rates are measured between two looks at least a second apart.
 */
import type { Socket } from 'node:net'
import { getCongestion, getTcpInfo, socketFd } from '../../native/index.js'
import { formatEndpoint } from '../common/endpoint.js'
import { normalizeAddress } from '../common/ip.js'
import type { Endpoint } from '../common/wire/frame.js'
import type { Flow } from '../core/flow.js'
import type { Trunk } from '../trunk/trunk.js'
import type { FlowStatus, SubflowStatus, TrunkStatus } from './control.js'
import type { TrunkWatch } from './trunk-watch.js'

/** How many of a trunk's busiest flows `status` lists. */
export const STATUS_TOP_FLOWS = 10

/** What the proxy adds to a trunk's own picture. */
export interface TrunkContext {
  readonly peer: string
  readonly mode: 'static' | 'intercepting'
  /** undefined before the first handshake said. */
  readonly encrypted: boolean | undefined
  /** tx: the dialer's watch, for slots without a live subflow and the last dial error. */
  readonly watch?: TrunkWatch
  /** tx: every configured subflow slot, with its path name. */
  readonly slots?: readonly { readonly index: number; readonly path: string }[]
  /** The client and the destination of a flow, when known. */
  readonly endpoints: (flow: Flow) => { client?: Endpoint; destination?: Endpoint } | undefined
}

/** What the kernel says of a subflow socket (TCP_INFO, TCP_CONGESTION). */
export interface TcpFigures {
  readonly tcpRttMs: number
  readonly cwndSegments: number
  readonly retransmits: number
  readonly tcpBytesSent: number
  readonly tcpBytesRetrans: number
  readonly congestion: string
}

/** TCP_INFO figures and the congestion control of a subflow socket, or nothing if it is closing. */
export function tcpFigures(socket: Socket): TcpFigures | undefined {
  try {
    const fd = socketFd(socket)
    const i = getTcpInfo(fd)
    return {
      tcpRttMs: Math.round(i.rttUs / 100) / 10,
      cwndSegments: i.sndCwnd,
      retransmits: i.totalRetrans,
      tcpBytesSent: i.bytesSent,
      tcpBytesRetrans: i.bytesRetrans,
      congestion: getCongestion(fd)
    }
  } catch {
    return undefined // the subflow closed between listing and reading
  }
}

function address(host: string | undefined, port: number | undefined): string | undefined {
  if (host === undefined || port === undefined) return undefined
  // A dual-stack socket's IPv4 peer, without the ::ffff: prefix.
  return formatEndpoint({ address: normalizeAddress(host).address, port })
}

interface RateSample {
  t: number
  fromApp: number
  toApp: number
  rateFrom: number
  rateTo: number
}

/** Status pictures of one proxy's trunks; keeps the rate samples between looks. */
export class StatusView {
  private readonly samples = new WeakMap<Flow, RateSample>()

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** One trunk, with its `top` busiest flows. */
  trunk(trunk: Trunk, ctx: TrunkContext, top = STATUS_TOP_FLOWS): TrunkStatus {
    const live = trunk.liveSubflows()
    const rate = trunk.rateState()
    const subflows: SubflowStatus[] = live.map((s) => {
      const socket = s.rawSocket
      const slot = ctx.slots?.find((x) => x.index === s.index)
      return {
        id: s.id,
        index: s.index,
        pathId: s.pathId,
        state: 'up',
        ...(slot !== undefined ? { path: slot.path } : {}),
        ...optional('local', address(socket.localAddress, socket.localPort)),
        ...optional('remote', address(socket.remoteAddress, socket.remotePort)),
        srttMs: Math.round(s.srttMs * 10) / 10,
        ...(tcpFigures(socket) ?? {}),
        deliveryRateBps: s.rateBytesPerSec,
        ...optional('pacingBps', rate?.subflows.find((p) => p.id === s.id)?.pacingBytesPerSec),
        queuedBytes: s.queuedBytes,
        bytesSent: s.bytesSent,
        bytesReceived: s.bytesReceived
      }
    })
    // Configured slots with no live subflow: dialling or waiting to dial again.
    for (const slot of ctx.slots ?? []) {
      if (live.some((s) => s.index === slot.index)) continue
      const w = ctx.watch?.slot(slot.index)
      subflows.push({
        id: 0,
        index: slot.index,
        pathId: 0,
        path: slot.path,
        state: w?.state ?? 'connecting',
        srttMs: 0,
        queuedBytes: 0,
        bytesSent: 0,
        bytesReceived: 0,
        failedDials: w?.failedDials ?? 0,
        ...optional('nextDialInMs', w?.nextDialInMs)
      })
    }
    subflows.sort((a, b) => a.index - b.index)
    const flows = trunk.flowList().map((f) => this.flow(f, ctx))
    flows.sort((a, b) => b.bytesFromApp + b.bytesToApp - (a.bytesFromApp + a.bytesToApp))
    const state = trunk.peerDraining ? 'draining' : trunk.subflowCount > 0 ? 'up' : 'down'
    const lastDialError = ctx.watch?.lastDialError
    return {
      id: trunk.idHex,
      peer: ctx.peer,
      mode: ctx.mode,
      ...optional('encrypted', ctx.encrypted),
      state,
      ...(ctx.watch !== undefined ? { failedDials: ctx.watch.failedDials } : {}),
      ...optional('lastDialError', lastDialError),
      subflows,
      ...optional(
        'rate',
        rate === undefined
          ? undefined
          : {
              source: rate.source,
              targetBps: rate.targetBytesPerSec,
              estimateBps: rate.estimateBytesPerSec,
              receiveBps: rate.receiveBytesPerSec,
              peerSendBps: rate.peerSendBytesPerSec,
              sendRateBps: rate.sendRateBytesPerSec,
              kernelDeliveryBps: rate.kernelDeliveryBytesPerSec,
              minRttMs: Math.round(rate.minRttMs * 10) / 10,
              bdpBytes: rate.bdpBytes,
              inflightCapBytes: rate.inflightCapBytes,
              inFlightBytes: rate.inFlightBytes
            }
      ),
      flows: trunk.flowCount,
      topFlows: flows.slice(0, top)
    }
  }

  private flow(f: Flow, ctx: TrunkContext): FlowStatus {
    const st = f.stats()
    const ep = ctx.endpoints(f)
    const { rateFrom, rateTo } = this.rate(f, st.bytesFromApp, st.bytesToApp, st.ageMs)
    return {
      id: f.id,
      state: st.state,
      ...optional('client', ep?.client !== undefined ? formatEndpoint(ep.client) : undefined),
      ...optional(
        'destination',
        ep?.destination !== undefined ? formatEndpoint(ep.destination) : undefined
      ),
      bytesFromApp: st.bytesFromApp,
      bytesToApp: st.bytesToApp,
      rateFromAppBps: Math.round(rateFrom),
      rateToAppBps: Math.round(rateTo),
      resentBytes: st.resentBytes,
      ageMs: Math.round(st.ageMs),
      windowBytes: st.windowBytes,
      reorderBytes: st.reorderBytes,
      sendBufferedBytes: st.sendBufferedBytes,
      creditStalls: st.creditStalls,
      subflowsUsed: [...f.subflowsUsed].sort((a, b) => a - b)
    }
  }

  /**
   * Bytes per second since the previous sample when it is at least a second old; the average
   * over the flow's life at the first look.
   */
  private rate(
    f: Flow,
    fromApp: number,
    toApp: number,
    ageMs: number
  ): { rateFrom: number; rateTo: number } {
    const t = this.now()
    const prev = this.samples.get(f)
    if (prev === undefined) {
      const secs = Math.max(ageMs, 1) / 1000
      const s = { t, fromApp, toApp, rateFrom: fromApp / secs, rateTo: toApp / secs }
      this.samples.set(f, s)
      return s
    }
    const dt = (t - prev.t) / 1000
    if (dt >= 1) {
      prev.rateFrom = (fromApp - prev.fromApp) / dt
      prev.rateTo = (toApp - prev.toApp) / dt
      prev.t = t
      prev.fromApp = fromApp
      prev.toApp = toApp
    }
    return prev
  }
}

/** `{ [key]: value }` when value is defined, else `{}` (exactOptionalPropertyTypes). */
function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return value === undefined ? {} : ({ [key]: value } as { [P in K]?: V })
}
