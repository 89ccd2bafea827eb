/**
 * Prometheus metrics (prom-client) on a local address. Every value is read at scrape time from
 * the proxy's own status, counters and TCP_INFO: nothing is counted twice, and one registry per
 * proxy (never prom-client's global one) keeps two proxies in one process apart.
 */
import { createServer, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { Counter, Gauge, Registry } from 'prom-client'
import type { HostPort } from '../common/config/config.js'
import { getTcpInfo, socketFd } from '../../native/index.js'
import type { ProxyStatus } from './control.js'

/** What the metrics read from a proxy. */
export interface MetricsSource {
  status(): ProxyStatus
  /** Subflow sockets by trunk, for TCP_INFO. */
  subflowSockets(): { trunk: string; index: number; pathId: number; socket: Socket }[]
}

/** Build the registry for one proxy. */
export function createRegistry(source: MetricsSource): Registry {
  const registry = new Registry()
  let snapshot: ProxyStatus | undefined
  const snap = (): ProxyStatus => (snapshot ??= source.status())

  new Gauge({
    name: 'tandem_flows_active',
    help: 'Flows being carried now',
    registers: [registry],
    collect() {
      snapshot = undefined // each scrape starts from a fresh snapshot
      this.set(snap().trunks.reduce((n, t) => n + t.flows, 0))
    }
  })
  new Counter({
    name: 'tandem_events_total',
    help: 'Every event counter of the proxy (flows opened/closed/reset/refused, SYN decisions, frames, errors by code, handshake failures...)',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [event, v] of Object.entries(snap().counters)) this.inc({ event }, v)
    }
  })
  new Counter({
    name: 'tandem_bytes_total',
    help: 'Application bytes carried: from_app read from local sockets, to_app written to them',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      this.reset()
      const s = snap()
      this.inc({ direction: 'from_app' }, s.totals.bytesFromApp)
      this.inc({ direction: 'to_app' }, s.totals.bytesToApp)
    }
  })
  const totalsGauge = (name: string, help: string, key: keyof ProxyStatus['totals']): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(snap().totals[key])
      }
    })
  }
  totalsGauge('tandem_reorder_buffer_bytes', 'Bytes waiting in reorder buffers', 'reorderBytes')
  totalsGauge(
    'tandem_send_buffer_bytes',
    'Bytes held in send buffers (unsent or unacknowledged)',
    'sendBufferedBytes'
  )
  new Counter({
    name: 'tandem_bytes_resent_total',
    help: 'Bytes sent again after a subflow loss',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(snap().totals.resentBytes)
    }
  })
  new Counter({
    name: 'tandem_duplicate_bytes_total',
    help: 'Bytes received twice and dropped',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(snap().totals.duplicateBytes)
    }
  })
  new Counter({
    name: 'tandem_credit_stalls_total',
    help: 'Times a flow had data but no credit to send it',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(snap().totals.creditStalls)
    }
  })
  new Gauge({
    name: 'tandem_buffered_bytes',
    help: 'Bytes held against max_buffered_bytes',
    registers: [registry],
    collect() {
      this.set(snap().bufferedBytes)
    }
  })
  new Gauge({
    name: 'tandem_subflows',
    help: 'Live subflows per trunk',
    labelNames: ['trunk'],
    registers: [registry],
    collect() {
      this.reset()
      for (const t of snap().trunks) this.set({ trunk: t.id.slice(0, 8) }, t.subflows.length)
    }
  })
  new Gauge({
    name: 'tandem_subflow_ping_rtt_ms',
    help: 'Smoothed PING/PONG round-trip time per subflow, queueing included',
    labelNames: ['trunk', 'subflow', 'path'],
    registers: [registry],
    collect() {
      this.reset()
      for (const t of snap().trunks) {
        for (const f of t.subflows) {
          this.set(
            { trunk: t.id.slice(0, 8), subflow: String(f.index), path: String(f.pathId) },
            f.srttMs
          )
        }
      }
    }
  })
  const tcpGauge = (
    name: string,
    help: string,
    read: (i: ReturnType<typeof getTcpInfo>) => number
  ): void => {
    new Gauge({
      name,
      help,
      labelNames: ['trunk', 'subflow', 'path'],
      registers: [registry],
      collect() {
        this.reset()
        for (const s of source.subflowSockets()) {
          try {
            const info = getTcpInfo(socketFd(s.socket))
            this.set(
              { trunk: s.trunk.slice(0, 8), subflow: String(s.index), path: String(s.pathId) },
              read(info)
            )
          } catch {
            // the subflow closed between listing and reading
          }
        }
      }
    })
  }
  tcpGauge(
    'tandem_subflow_tcp_rtt_ms',
    'Kernel smoothed RTT of each subflow (TCP_INFO)',
    (i) => i.rttUs / 1000
  )
  tcpGauge(
    'tandem_subflow_cwnd_segments',
    'Congestion window of each subflow (TCP_INFO)',
    (i) => i.sndCwnd
  )
  tcpGauge(
    'tandem_subflow_retransmits',
    'Segments retransmitted by each subflow so far (TCP_INFO)',
    (i) => i.totalRetrans
  )
  tcpGauge(
    'tandem_subflow_delivery_rate_bytes',
    'Delivery rate of each subflow, bytes/s (TCP_INFO)',
    (i) => i.deliveryRate
  )
  return registry
}

/** Serve `/metrics` on `listen`. */
export async function serveMetrics(listen: HostPort, registry: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('not found: try /metrics\n')
      return
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType }).end(text)
      },
      (err: unknown) => {
        res.writeHead(500).end(`${String(err)}\n`)
      }
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
