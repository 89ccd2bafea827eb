/** The benchmark's result rows and their markdown. */
import { median } from './median.js'

/** One result row. */
export interface BenchRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly rateMbit: number
  /** Median goodput, Mbit/s; undefined when the system could not run. */
  readonly goodputMbit: number | undefined
  readonly runs: readonly number[]
  /**
   * Tandem: the goodput of the pair's first flow, on a cold trunk (nothing learned yet); the
   * runs above are the flows after it, on the warm trunk.
   */
  readonly coldGoodputMbit?: number
  /** CPU seconds per GB moved, both proxies (Tandem: tx_proxy + rx_proxy; kcptun: client + server). */
  readonly cpuSecondsPerGB?: number
  /** The same for the sending-side proxy (tx_proxy, kcptun client) alone. */
  readonly cpuTxSecondsPerGB?: number
  /** The same for the receiving-side proxy (rx_proxy, kcptun server) alone. */
  readonly cpuRxSecondsPerGB?: number
  /**
   * Tandem: bytes tx_proxy's subflows retransmitted, in percent of the bytes they sent
   * (TCP_INFO tcpi_bytes_retrans / tcpi_bytes_sent at the end of each run; median of the runs).
   */
  readonly retransPercent?: number
  /** Tandem: median subflow RTT (tcpi_rtt) under full load, near the end of each run, ms. */
  readonly subflowRttMs?: number
  /** Tandem: the trunk's congestion control choice as `status` names it. */
  readonly congestion?: string
  /** Tandem: the congestion controls the subflows ran (TCP_CONGESTION). */
  readonly subflowCongestion?: readonly string[]
  readonly note?: string
}

/** Short-flow timing row. */
export interface ShortFlowRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly bytes: number
  /** Median time to first byte, ms from connect(); null when no run got a byte. */
  readonly ttfbMs: number | null
  /** Median completion time, ms; a run past the deadline counts as longer than any other, and null means most runs were. */
  readonly completionMs: number | null
  /** Runs that had not finished by `timeoutMs` (or failed). */
  readonly timedOut: number
  readonly runs: number
  readonly timeoutMs: number
}

/** A completion cell: the median, or that most runs had not finished by the deadline. */
export function shortCompletion(r: ShortFlowRow): string {
  const late = r.timedOut > 0 ? ` (${r.timedOut} of ${r.runs} past ${r.timeoutMs / 1000} s)` : ''
  return r.completionMs === null ? `> ${r.timeoutMs}${late}` : `${r.completionMs.toFixed(1)}${late}`
}

export function markdown(
  rows: readonly BenchRow[],
  short: readonly ShortFlowRow[],
  meta: string
): string {
  const links = [...new Set(rows.map((r) => `${r.rttMs}|${r.lossPercent}`))]
  const systems = [...new Set(rows.map((r) => r.system))]
  const head = `| system | ${links
    .map((l) => {
      const [rtt, loss] = l.split('|')
      return `${rtt} ms, ${loss} %`
    })
    .join(' | ')} |`
  const sep = `|---|${links.map(() => '---:').join('|')}|`
  const body = systems.map((s) => {
    const cells = links.map((l) => {
      const r = rows.find((x) => x.system === s && `${x.rttMs}|${x.lossPercent}` === l)
      return r?.goodputMbit === undefined ? (r?.note ?? '–') : r.goodputMbit.toFixed(1)
    })
    return `| ${s} | ${cells.join(' | ')} |`
  })
  let out = `${meta}\n\nGoodput in Mbit/s (median of the runs; link rate ${rows[0]?.rateMbit ?? '?'} Mbit/s; columns: RTT, loss each way):\n\n${[head, sep, ...body].join('\n')}\n`
  out += trunkTable(rows)
  const cpu = rows.filter((r) => r.cpuSecondsPerGB !== undefined)
  if (cpu.length > 0) {
    out += `\nCPU seconds per GB moved by each proxy (median over the links; per link in the JSON):\n\n| system | sending side (tx_proxy, kcptun client) | receiving side (rx_proxy, kcptun server) | both |\n|---|---:|---:|---:|\n`
    for (const name of [...new Set(cpu.map((r) => r.system))]) {
      const of = cpu.filter((r) => r.system === name)
      const m = (f: (r: BenchRow) => number | undefined): string =>
        median(of.map((r) => f(r) ?? NaN).filter((x) => !Number.isNaN(x))).toFixed(1)
      out += `| ${name} | ${m((r) => r.cpuTxSecondsPerGB)} | ${m((r) => r.cpuRxSecondsPerGB)} | ${m((r) => r.cpuSecondsPerGB)} |\n`
    }
  }
  if (short.length > 0) {
    out += `\nShort flows (request, then a download of N bytes; medians, ms from connect()):\n\n| system | link | bytes | time to first byte | completion |\n|---|---|---:|---:|---:|\n`
    for (const r of short)
      out += `| ${r.system} | ${r.rttMs} ms, ${r.lossPercent} % | ${r.bytes} | ${r.ttfbMs === null ? '–' : r.ttfbMs.toFixed(1)} | ${shortCompletion(r)} |\n`
  }
  return out
}

/**
 * The trunk's own figures, one line per Tandem row and link: goodput beside the retransmitted
 * share of the subflows' bytes and their RTT under load against the path's, and the congestion
 * control they ran. Empty when no row has them.
 */
export function trunkTable(rows: readonly BenchRow[]): string {
  const withTrunk = rows.filter((r) => r.retransPercent !== undefined)
  if (withTrunk.length === 0) return ''
  let out = `\nTandem's subflows (tx_proxy's status --json, TCP_INFO): retransmitted share of the bytes they sent, and their RTT under full load (median near the end of the run) against the path's RTT:\n\n| system | link | goodput | first flow (cold trunk) | retransmitted | subflow RTT under load | congestion control |\n|---|---|---:|---:|---:|---:|---|\n`
  for (const r of withTrunk) {
    const rtt =
      r.subflowRttMs === undefined
        ? '–'
        : `${r.subflowRttMs.toFixed(0)} ms${r.rttMs > 0 ? ` (${(r.subflowRttMs / r.rttMs).toFixed(2)}×)` : ''}`
    const cc = `${r.congestion ?? '?'}; subflows ran ${r.subflowCongestion?.join(', ') ?? '?'}`
    out += `| ${r.system} | ${r.rttMs} ms, ${r.lossPercent} % | ${r.goodputMbit?.toFixed(1) ?? '–'} | ${r.coldGoodputMbit?.toFixed(1) ?? '–'} | ${(r.retransPercent ?? 0).toFixed(2)} % | ${rtt} | ${cc} |\n`
  }
  return out
}
