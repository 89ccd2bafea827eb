/**
 * Prometheus metrics (prom-client) on a local address, by Prometheus' naming conventions: base
 * units (seconds, bytes), `_total` on counters and only on them, one series per quantity, every
 * counter present from the start (at 0), the trunk named by its peer's address (stable across
 * restarts), `tandem_build_info` and the process metrics of prom-client's default collectors.
 *
 * Every value is read at scrape time from the proxy's status snapshot and counters: nothing is
 * counted twice, and one registry per proxy (never prom-client's global one) keeps two proxies
 * in one process apart. The same listener serves `/healthz` and `/readyz`.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { findProjectRoot } from '../../native/index.js'
import type { HostPort } from '../common/config/config.js'
import { errorMessage } from '../common/errors.js'
import { liveness, LoopMonitor, type HealthAnswer } from './health.js'
import { COUNTER_SPECS, NOT_EXPORTED } from './metric-counters.js'
import type { ProxyStatus, SubflowStatus, TrunkStatus } from './control.js'

/** What the metrics read from a proxy. */
export interface MetricsSource {
  status(): ProxyStatus
  /** `/readyz`: can the proxy carry new flows now? */
  readiness(): HealthAnswer
}

/** The version of the package, from package.json ('unknown' when it cannot be read). */
export function packageVersion(): string {
  try {
    const root = findProjectRoot(fileURLToPath(new URL('.', import.meta.url)))
    if (root === undefined) return 'unknown'
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      version?: unknown
    }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/** Labels of one subflow series. */
function subflowLabels(
  t: TrunkStatus,
  f: SubflowStatus
): { peer: string; subflow: string; path: string } {
  return {
    peer: t.peer ?? t.id.slice(0, 8),
    subflow: String(f.index),
    path: f.path ?? String(f.pathId)
  }
}

/** One proxy's metrics: a registry plus the counters found at scrape time. */
export class ProxyMetrics {
  readonly registry = new Registry()
  readonly loop = new LoopMonitor()
  /** Counters seen in `Counters` with no spec: exposed as `tandem_<name>_total`. */
  private readonly extra = new Map<string, Counter>()
  private snapshot: ProxyStatus | undefined

  constructor(
    private readonly source: MetricsSource,
    role: ProxyStatus['role']
  ) {
    const registry = this.registry
    collectDefaultMetrics({ register: registry })
    // prom-client names three gauges with `_total`, which marks counters; the same figures are
    // there by type (nodejs_active_handles{type=...} and so on), so these go.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total'
    ]) {
      registry.removeSingleMetric(name)
    }
    const snap = (): ProxyStatus => (this.snapshot ??= source.status())

    new Gauge({
      name: 'tandem_build_info',
      help: 'Always 1; the labels say which Tandem runs',
      labelNames: ['version', 'role', 'node_version'],
      registers: [registry]
    }).set({ version: packageVersion(), role, node_version: process.version }, 1)

    new Gauge({
      name: 'tandem_ready',
      help: '1 while the proxy can carry new flows (as /readyz answers 200), else 0',
      registers: [registry],
      collect() {
        this.set(source.readiness().ok ? 1 : 0)
      }
    })
    new Counter({
      name: 'tandem_app_bytes_total',
      help: 'Application bytes carried: from_app read from local sockets, to_app written to them',
      labelNames: ['direction'],
      registers: [registry],
      collect() {
        const s = snap()
        this.reset()
        this.inc({ direction: 'from_app' }, s.totals.bytesFromApp)
        this.inc({ direction: 'to_app' }, s.totals.bytesToApp)
      }
    })
    const totalCounter = (name: string, help: string, read: (s: ProxyStatus) => number): void => {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset()
          this.inc(read(snap()))
        }
      })
    }
    totalCounter(
      'tandem_resent_bytes_total',
      'Payload bytes sent again after a subflow was lost',
      (s) => s.counters.bytes_resent ?? 0
    )
    totalCounter(
      'tandem_reinjected_bytes_total',
      'Payload bytes sent once more on another subflow to unblock a flow\u2019s in-order point',
      (s) => s.counters.bytes_reinjected ?? 0
    )
    totalCounter(
      'tandem_duplicate_bytes_total',
      'Payload bytes received twice and dropped',
      (s) => s.totals.duplicateBytes
    )
    totalCounter(
      'tandem_credit_stalls_total',
      'Times a flow had data to send but no credit from the peer',
      (s) => s.totals.creditStalls
    )
    const gauge = (name: string, help: string, read: (s: ProxyStatus) => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read(snap()))
        }
      })
    }
    gauge(
      'tandem_reorder_buffer_bytes',
      'Bytes waiting in reorder buffers for a gap to fill',
      (s) => s.totals.reorderBytes
    )
    gauge(
      'tandem_send_buffer_bytes',
      'Bytes held in send buffers (unsent or unacknowledged)',
      (s) => s.totals.sendBufferedBytes
    )
    gauge(
      'tandem_buffered_bytes',
      'Bytes held against limits.max_buffered_bytes',
      (s) => s.bufferedBytes
    )
    gauge('tandem_buffered_limit_bytes', 'limits.max_buffered_bytes', (s) => s.maxBufferedBytes)

    const trunkGauge = (
      name: string,
      help: string,
      read: (t: TrunkStatus) => number,
      extraLabels: readonly string[] = [],
      labels: (t: TrunkStatus) => Record<string, string> = () => ({})
    ): void => {
      new Gauge({
        name,
        help,
        labelNames: ['peer', ...extraLabels],
        registers: [registry],
        collect() {
          this.reset()
          for (const t of snap().trunks) {
            this.inc({ peer: t.peer ?? t.id.slice(0, 8), ...labels(t) }, read(t))
          }
        }
      })
    }
    trunkGauge(
      'tandem_trunk_up',
      '1 while the trunk to this peer has a subflow and the peer takes flows, else 0',
      (t) => (t.state === 'up' ? 1 : 0)
    )
    trunkGauge(
      'tandem_trunk_info',
      'Always 1 per trunk; the labels give its mode and whether it is encrypted',
      () => 1,
      ['mode', 'encrypted'],
      (t) => ({ mode: t.mode ?? 'static', encrypted: String(t.encrypted ?? false) })
    )
    trunkGauge(
      'tandem_trunk_rate_bytes_per_second',
      'Sending rate the trunk paces its subflows to together (0: not paced); the source label says whether trunk.link_rate set it or it was learned',
      (t) => t.rate?.targetBps ?? 0,
      ['source'],
      (t) => ({ source: t.rate?.source ?? 'none' })
    )
    trunkGauge(
      'tandem_trunk_min_rtt_seconds',
      'Windowed minimum RTT of the trunk (rate controller)',
      (t) => (t.rate?.minRttMs ?? 0) / 1000
    )
    trunkGauge(
      'tandem_trunk_bdp_bytes',
      'Bandwidth-delay product of the rate controller (new flows get credit for twice the largest of this, the receive and the peer BDP)',
      (t) => t.rate?.bdpBytes ?? 0
    )
    trunkGauge(
      'tandem_trunk_peer_send_rate_bytes_per_second',
      "The peer's estimate of the rate it sends to this side at, from its last PONG (0: not known)",
      (t) => t.rate?.peerSendBps ?? 0
    )
    trunkGauge(
      'tandem_trunk_send_rate_bytes_per_second',
      "The rate this side's PONGs tell the peer it sends at (the peer sizes the credit for this side's replies by it; 0: not known)",
      (t) => t.rate?.sendRateBps ?? 0
    )
    trunkGauge('tandem_flows_active', 'Flows carried now', (t) => t.flows)
    trunkGauge(
      'tandem_subflows_up',
      'Subflows up now',
      (t) => t.subflows.filter((f) => (f.state ?? 'up') === 'up').length
    )

    const subflowMetric = (
      kind: 'gauge' | 'counter',
      name: string,
      help: string,
      read: (f: SubflowStatus) => number | undefined
    ): void => {
      const options = {
        name,
        help,
        labelNames: ['peer', 'subflow', 'path'],
        registers: [registry]
      }
      const fill = (set: (labels: Record<string, string>, v: number) => void): void => {
        for (const t of snap().trunks) {
          for (const f of t.subflows) {
            if ((f.state ?? 'up') !== 'up') continue
            const v = read(f)
            if (v !== undefined) set(subflowLabels(t, f), v)
          }
        }
      }
      if (kind === 'gauge') {
        new Gauge({
          ...options,
          collect() {
            this.reset()
            fill((l, v) => {
              this.set(l, v)
            })
          }
        })
      } else {
        new Counter({
          ...options,
          collect() {
            this.reset()
            fill((l, v) => {
              this.inc(l, v)
            })
          }
        })
      }
    }
    subflowMetric(
      'gauge',
      'tandem_subflow_ping_rtt_seconds',
      'Smoothed PING/PONG round-trip time per subflow, queueing included',
      (f) => f.srttMs / 1000
    )
    subflowMetric(
      'gauge',
      'tandem_subflow_tcp_rtt_seconds',
      'Kernel smoothed RTT of each subflow (TCP_INFO)',
      (f) => (f.tcpRttMs === undefined ? undefined : f.tcpRttMs / 1000)
    )
    subflowMetric(
      'gauge',
      'tandem_subflow_cwnd_segments',
      'Congestion window of each subflow (TCP_INFO), in segments',
      (f) => f.cwndSegments
    )
    subflowMetric(
      'gauge',
      'tandem_subflow_delivery_rate_bytes_per_second',
      'Latest delivery rate estimate of each subflow (TCP_INFO)',
      (f) => f.deliveryRateBps
    )
    subflowMetric(
      'gauge',
      'tandem_subflow_pacing_rate_bytes_per_second',
      'SO_MAX_PACING_RATE the rate controller set on each subflow (0: not paced)',
      (f) => f.pacingBps
    )
    subflowMetric(
      'gauge',
      'tandem_subflow_queued_bytes',
      'Bytes queued in user space on each subflow',
      (f) => f.queuedBytes
    )
    subflowMetric(
      'counter',
      'tandem_subflow_retransmits_total',
      'Segments retransmitted by each subflow connection (TCP_INFO; restarts at 0 on re-dial)',
      (f) => f.retransmits
    )
    subflowMetric(
      'counter',
      'tandem_subflow_sent_bytes_total',
      'Bytes written to each subflow connection, framing included (restarts at 0 on re-dial)',
      (f) => f.bytesSent
    )
    subflowMetric(
      'counter',
      'tandem_subflow_received_bytes_total',
      'Bytes read from each subflow connection, framing included (restarts at 0 on re-dial)',
      (f) => f.bytesReceived
    )

    for (const spec of COUNTER_SPECS) {
      if (spec.role !== undefined && spec.role !== role) continue
      const labelNames = spec.label !== undefined ? [spec.label] : []
      new Counter({
        name: `tandem_${spec.name}_total`,
        help: spec.help,
        labelNames,
        registers: [registry],
        collect() {
          const counters = snap().counters
          this.reset()
          if (spec.label === undefined) {
            this.inc(counters[spec.key] ?? 0)
            return
          }
          const label = spec.label
          for (const v of spec.values ?? []) this.inc({ [label]: v }, 0)
          for (const [k, n] of Object.entries(counters)) {
            if (k.startsWith(spec.key) && !NOT_EXPORTED.has(k)) {
              this.inc({ [label]: k.slice(spec.key.length) }, n)
            }
          }
        }
      })
    }
  }

  /** `/readyz` of the proxy. */
  readiness(): HealthAnswer {
    return this.source.readiness()
  }

  /** True when `key` of `Counters` is exposed by a spec or on purpose not at all. */
  static known(key: string): boolean {
    return (
      NOT_EXPORTED.has(key) ||
      COUNTER_SPECS.some((s) => (s.label !== undefined ? key.startsWith(s.key) : key === s.key))
    )
  }

  /** The text of one scrape. */
  async scrape(): Promise<string> {
    this.snapshot = undefined // each scrape starts from a fresh snapshot
    const counters = (this.snapshot = this.source.status()).counters
    // A counter added somewhere without a spec still shows, under its own name.
    for (const key of Object.keys(counters)) {
      if (ProxyMetrics.known(key) || this.extra.has(key) || !/^[a-z][a-z0-9_]*$/.test(key)) {
        continue
      }
      const name = `tandem_${key.replace(/_total$/, '')}_total`
      if (this.registry.getSingleMetric(name) !== undefined) continue
      const snap = (): ProxyStatus | undefined => this.snapshot
      this.extra.set(
        key,
        new Counter({
          name,
          help: `Counter ${key}`,
          registers: [this.registry],
          collect() {
            this.reset()
            this.inc(snap()?.counters[key] ?? 0)
          }
        })
      )
    }
    try {
      return await this.registry.metrics()
    } finally {
      this.snapshot = undefined
    }
  }
}

/** Build the metrics of one proxy. */
export function createRegistry(source: MetricsSource, role: ProxyStatus['role']): ProxyMetrics {
  return new ProxyMetrics(source, role)
}

/** Serve `/metrics`, `/healthz` and `/readyz` on `listen`; starts the loop monitor. */
export async function serveMetrics(listen: HostPort, metrics: ProxyMetrics): Promise<Server> {
  metrics.loop.start()
  const answer = (res: ServerResponse, a: HealthAnswer): void => {
    res
      .writeHead(a.ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' })
      .end(`${a.detail}\n`)
  }
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end('only GET\n')
      return
    }
    switch (path) {
      case '/metrics':
        metrics.scrape().then(
          (text) => {
            res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text)
          },
          (err: unknown) => {
            res.writeHead(500).end(`${errorMessage(err)}\n`)
          }
        )
        return
      case '/healthz':
        answer(res, liveness(metrics.loop))
        return
      case '/readyz':
        answer(res, metrics.readiness())
        return
      default:
        res.writeHead(404).end('not found: try /metrics, /healthz or /readyz\n')
    }
  })
  server.on('close', () => {
    metrics.loop.stop()
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
