/**
 * SYN interception: every client SYN reaches tx_proxy through NFQUEUE before the nat
 * REDIRECT. tx_proxy decides per flow — the policy of network.conf, and whether the trunk is up
 * — and gives an accept verdict with the mark the REDIRECT rule matches, or without it: then the
 * flow passes straight over the bridge. The decision is remembered in the SYN table so that the
 * accepted connection's SO_ORIGINAL_DST can be checked against it.
 *
 * Fail-open, four ways: the NFQUEUE rule has --queue-bypass (tx_proxy down: SYNs pass
 * unmarked); the queue is opened fail-open (tx_proxy too slow: the kernel lets packets through);
 * while no subflow is up, SYNs are accepted unmarked; and so they are while the trunk is at a
 * limit (max_flows, max_buffered_bytes, here or at the peer), which would reset the connection.
 */
import type { Counters } from '../common/counters.js'
import type { Logger } from '../common/log/logger.js'
import { parseIpTcp } from '../common/packet.js'
import { policyAccepts, type Policy } from '../common/policy.js'
import type { Endpoint } from '../common/wire/frame.js'
import { SynTable } from '../core/syn-table.js'
import type { NfQueuePacket } from '../../native/nfqueue.js'

/** What the interceptor needs from an NFQUEUE reader (the real one or a fake). */
export interface SynSource {
  on(event: 'packets', listener: (packets: readonly NfQueuePacket[]) => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
  verdict(id: number, verdict: 'accept' | 'drop', mark?: number): void
  close(): void
}

/** Settings of the interceptor. */
export interface InterceptorOptions {
  readonly policy: Policy
  /** Mark for accelerated flows. */
  readonly mark: number
  readonly synTableSize: number
  readonly synTableTtlMs: number
  /** True while the trunk can carry new flows. */
  readonly healthy: () => boolean
  /** True while the trunk is at a limit and would refuse a new flow. */
  readonly atCapacity: () => boolean
  readonly now: () => number
  readonly counters: Counters
  readonly log: Logger
}

/** Latency figures of SYN handling, in milliseconds. */
export interface VerdictLatency {
  readonly samples: number
  readonly meanMs: number
  readonly maxMs: number
}

/** Decides each SYN and remembers the decision. */
export class Interceptor {
  readonly table: SynTable
  private readonly opts: InterceptorOptions
  private readonly source: SynSource
  private failed = false
  private closed = false
  private policy: Policy
  private latencySum = 0
  private latencyMax = 0
  private latencyN = 0

  constructor(source: SynSource, opts: InterceptorOptions) {
    this.source = source
    this.opts = opts
    this.policy = opts.policy
    this.table = new SynTable(opts.synTableSize, opts.synTableTtlMs)
    source.on('packets', (packets) => {
      this.onPackets(packets)
    })
    source.on('error', (err) => {
      this.failed = true
      opts.counters.inc('nfqueue_errors')
      opts.log.error(`NFQUEUE failed: ${err.message}; SYNs now pass unaccelerated (fail-open)`)
    })
  }

  /** Time from the kernel's receive stamp to our verdict, over all SYNs so far. */
  latency(): VerdictLatency {
    return {
      samples: this.latencyN,
      meanMs: this.latencyN === 0 ? 0 : this.latencySum / this.latencyN,
      maxMs: this.latencyMax
    }
  }

  /** What was decided for the client `src`, consumed (the connection was accepted). */
  take(src: Endpoint): ReturnType<SynTable['take']> {
    return this.table.take(src, this.opts.now())
  }

  /** Use `policy` for SYNs from now on (SIGHUP); decisions already made stand. */
  setPolicy(policy: Policy): void {
    this.policy = policy
  }

  /** Stop reading; with --queue-bypass new SYNs then pass unmarked. */
  close(): void {
    this.closed = true
    this.source.close()
  }

  /** True while the queue is open and has not failed (readiness). */
  get bound(): boolean {
    return !this.closed && !this.failed
  }

  private onPackets(packets: readonly NfQueuePacket[]): void {
    const now = this.opts.now()
    const batchStart = performance.now()
    // (The trunk going down and coming back is logged once each by the dialer's watch.)
    const healthy = this.opts.healthy()
    const c = this.opts.counters
    for (const p of packets) {
      const parsed = parseIpTcp(p.payload)
      if (parsed === undefined || !parsed.flags.syn || parsed.flags.ack) {
        // Only plain SYNs are ours to decide; anything else the rule let through passes as is.
        c.inc('nfqueue_not_syn')
        this.source.verdict(p.id, 'accept')
        continue
      }
      const src: Endpoint = {
        family: parsed.family,
        address: parsed.srcAddress,
        port: parsed.srcPort
      }
      const dst: Endpoint = {
        family: parsed.family,
        address: parsed.dstAddress,
        port: parsed.dstPort
      }
      // A retransmitted SYN gets the decision its first copy got: the connection must not flip.
      const earlier = this.table.lookup(src, now)
      let accelerated: boolean
      if (
        earlier !== undefined &&
        earlier.dst.address === dst.address &&
        earlier.dst.port === dst.port
      ) {
        accelerated = earlier.accelerated
        c.inc('syns_retransmitted')
      } else if (!policyAccepts(this.policy, dst.address, dst.port)) {
        accelerated = false
        c.inc('syns_bypassed_policy')
      } else if (!healthy) {
        accelerated = false
        c.inc('syns_bypassed_trunk_down')
      } else if (this.opts.atCapacity()) {
        accelerated = false
        c.inc('syns_bypassed_capacity')
      } else {
        accelerated = true
        c.inc('syns_accelerated')
      }
      this.table.record(src, { dst, accelerated, seenMs: now })
      if (accelerated) this.source.verdict(p.id, 'accept', this.opts.mark)
      else this.source.verdict(p.id, 'accept')
      c.inc('syns_seen')
      // Kernel receive stamp when the kernel gives one; else the time since the batch arrived.
      const ms =
        p.timestampMs !== undefined
          ? Math.max(0, Date.now() - p.timestampMs)
          : performance.now() - batchStart
      this.latencySum += ms
      this.latencyN++
      if (ms > this.latencyMax) this.latencyMax = ms
    }
  }
}
