/**
 * Why a short download through a warm trunk takes the time it takes (root only): the bench's
 * five-namespace testbed (default 600 ms RTT, 1 % loss each way, 100 Mbit/s), the pair as the
 * bench's short-flow rows run it (8 subflows, `trunk.congestion` from `--congestion`), and
 * `--runs` downloads of `--bytes` from dst, one after another. Around each download it reads
 * both proxies' `status --json` and prints one line: the completion time (and in round trips
 * after the first byte), how many of the replying side's (rx_proxy's) subflows retransmitted
 * and how many bytes, the frames rx_proxy reinjected on another subflow, and the duplicate bytes
 * tx_proxy dropped, the times rx_proxy waited for credit, how many of rx_proxy's subflows carried
 * the reply and the range of their smoothed TCP RTT just before it (what the kernel's loss probe
 * and retransmission timers scale with). A summary groups the downloads by whether a subflow
 * retransmitted.
 *
 *   node dist/lab/bench/short-trace.js [--rtt 600] [--loss 1] [--bytes 1000000] [--runs 10]
 *     [--congestion auto] [--set KEY=VALUE ...]
 *
 * Namespaces are named `tstrace<pid>-N` and removed on every exit path.
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'

import type { ProxyStatus } from '../../src/app/control.js'
import { LINK_OPTIONS, withRrPair } from '../testbed/rr-pair.js'
import { median } from './median.js'
import { oneShot } from './short-flows.js'

/** What one download changed on the two proxies. */
interface Trace {
  readonly ms: number | null
  readonly ttfbMs: number | null
  readonly retransBytes: number
  readonly retransSubflows: number
  readonly reinjectedFrames: number
  readonly reinjectedBytes: number
  readonly duplicateBytes: number
  /** Times a flow on rx_proxy (the replying side) waited for tx_proxy's credit. */
  readonly creditStalls: number
  /** rx_proxy's subflows that sent bytes during the download. */
  readonly carriers: number
  /** The smallest and largest smoothed TCP RTT of rx_proxy's subflows before it, ms. */
  readonly rttBeforeMs: readonly [number, number] | undefined
}

/**
 * Each subflow's `field` (from TCP_INFO: bytes retransmitted, bytes sent, smoothed RTT), by its
 * two addresses: on rx_proxy every subflow has the same local address (the listening port), so
 * the local one alone named one subflow out of eight.
 */
function bySubflow(
  s: ProxyStatus,
  field: 'tcpBytesRetrans' | 'tcpBytesSent' | 'tcpRttMs'
): Map<string, number> {
  const m = new Map<string, number>()
  for (const t of s.trunks) {
    for (const f of t.subflows) {
      if (f.local !== undefined) m.set(`${f.local} ${f.remote ?? ''}`, f[field] ?? 0)
    }
  }
  return m
}

/** How many subflows' `field` grew from `s0` to `s1`, and by how much in all. */
function growth(
  s0: ProxyStatus,
  s1: ProxyStatus,
  field: 'tcpBytesRetrans' | 'tcpBytesSent'
): { bytes: number; subflows: number } {
  const before = bySubflow(s0, field)
  let bytes = 0
  let subflows = 0
  for (const [key, after] of bySubflow(s1, field)) {
    const d = after - (before.get(key) ?? 0)
    bytes += d
    if (d > 0) subflows++
  }
  return { bytes, subflows }
}

/** What one download changed: rx_proxy's subflows and counters, tx_proxy's duplicates. */
function delta(
  rx0: ProxyStatus,
  rx1: ProxyStatus,
  tx0: ProxyStatus,
  tx1: ProxyStatus
): Omit<Trace, 'ms' | 'ttfbMs'> {
  const retrans = growth(rx0, rx1, 'tcpBytesRetrans')
  const rtts = [...bySubflow(rx0, 'tcpRttMs').values()].filter((r) => r > 0)
  const c = (k: string): number => (rx1.counters[k] ?? 0) - (rx0.counters[k] ?? 0)
  return {
    retransBytes: retrans.bytes,
    retransSubflows: retrans.subflows,
    reinjectedFrames: c('frames_reinjected'),
    reinjectedBytes: c('bytes_reinjected'),
    duplicateBytes: tx1.totals.duplicateBytes - tx0.totals.duplicateBytes,
    creditStalls: rx1.totals.creditStalls - rx0.totals.creditStalls,
    carriers: growth(rx0, rx1, 'tcpBytesSent').subflows,
    rttBeforeMs: rtts.length > 0 ? [Math.min(...rtts), Math.max(...rtts)] : undefined
  }
}

async function main(): Promise<number> {
  const args = await yargs(hideBin(process.argv))
    .scriptName('short-trace')
    .options(LINK_OPTIONS)
    .option('bytes', { type: 'number', default: 1_000_000, describe: 'size of each download' })
    .option('runs', { type: 'number', default: 10 })
    .option('warmup', {
      type: 'number',
      array: true,
      default: [],
      describe: 'untimed downloads of these sizes first, in order (repeatable)'
    })
    .option('congestion', { type: 'string', default: 'auto', describe: 'trunk.congestion' })
    .strict()
    .parse()
  return withRrPair('tstrace', args, { 'trunk.congestion': args.congestion }, async (pair) => {
    const { bed, status } = pair
    await oneShot(bed, 1_000, 'cubic') // untimed, as in the bench
    // The bench times its sizes in order, each on the trunk the smaller ones left behind: e.g.
    // --warmup 1000 ×3, 100000 ×3, 1000000 ×3 before 10 MB gives the bench's 10 MB rows.
    for (const bytes of args.warmup) await oneShot(bed, bytes, 'cubic')
    const rtt = args.rtt
    const traces: Trace[] = []
    for (let i = 0; i < args.runs; i++) {
      const [tx0, rx0] = [await status('tx'), await status('rx')]
      const { completionMs: ms, ttfbMs } = await oneShot(bed, args.bytes, 'cubic')
      const [tx1, rx1] = [await status('tx'), await status('rx')]
      const t: Trace = { ms, ttfbMs, ...delta(rx0, rx1, tx0, tx1) }
      traces.push(t)
      const rounds =
        ms !== null && ttfbMs !== null
          ? ` (${((ms - ttfbMs) / rtt).toFixed(2)} RTT after the first byte)`
          : ''
      process.stdout.write(
        `#${i + 1} ${args.bytes} B: ${ms === null ? 'timed out' : `${ms.toFixed(0)} ms`}${rounds}; ` +
          `rx subflows retransmitted ${t.retransBytes} B on ${t.retransSubflows} of ${rx1.trunks.reduce((n, tr) => n + tr.subflows.length, 0)}; ` +
          `rx reinjected ${t.reinjectedFrames} frames (${t.reinjectedBytes} B); ` +
          `tx dropped ${t.duplicateBytes} duplicate B; rx credit stalls ${t.creditStalls}; ` +
          `carried by ${t.carriers} rx subflows, TCP RTT before ${t.rttBeforeMs === undefined ? '-' : `${t.rttBeforeMs[0].toFixed(1)}–${t.rttBeforeMs[1].toFixed(1)} ms`}\n`
      )
    }
    const group = (name: string, of: readonly Trace[]): string => {
      const times = of.map((t) => t.ms).filter((m): m is number => m !== null)
      return `${name}: ${of.length} downloads, median ${times.length > 0 ? median(times).toFixed(0) : '-'} ms`
    }
    process.stdout.write(
      `short-trace: ${args.rtt} ms, ${args.loss} % loss, ${args.bytes} B, trunk.congestion ${args.congestion}: ` +
        `${group('all', traces)}; ${group(
          'no rx subflow retransmitted',
          traces.filter((t) => t.retransBytes === 0)
        )}; ` +
        `${group(
          'some retransmitted',
          traces.filter((t) => t.retransBytes > 0)
        )}\n`
    )
    return 0
  })
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`short-trace: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
)
