/**
 * The human `status` screen: the proxy, each trunk (peer, mode, encryption, state, congestion
 * control, last dial error), each subflow (state, RTT, cwnd, retransmits, congestion control) and the busiest flows as
 * client → destination with their bytes, rate, age and the subflows they used.
 */
import type { FlowStatus, ProxyStatus, RateStatus, SubflowStatus, TrunkStatus } from './control.js'

/** Bytes in binary units: 1.5 MiB. */
export function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

/** A rate in bits per second, as network people read it: 94.2 Mbit/s. */
export function bitRate(bytesPerSec: number): string {
  const bits = bytesPerSec * 8
  if (bits >= 1e9) return `${(bits / 1e9).toFixed(2)} Gbit/s`
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(1)} Mbit/s`
  if (bits >= 1e3) return `${(bits / 1e3).toFixed(1)} kbit/s`
  return `${Math.round(bits)} bit/s`
}

/** Lay out rows as columns: each column as wide as its widest cell; `right` columns align right. */
function table(rows: readonly (readonly string[])[], right: ReadonlySet<number>): string[] {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)))
  return rows.map((r) =>
    r
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  )
}

function subflowRows(subflows: readonly SubflowStatus[]): string[] {
  const rows: string[][] = [
    [
      'subflow',
      'path',
      'state',
      'rtt ms',
      'tcp rtt',
      'cwnd',
      'retrans',
      'cc',
      'pacing',
      'queued',
      'sent',
      'received'
    ]
  ]
  const notes: string[] = []
  for (const f of subflows) {
    const state = f.state ?? 'up'
    if (state !== 'up') {
      const next =
        f.nextDialInMs !== undefined ? `, next dial in ${(f.nextDialInMs / 1000).toFixed(1)} s` : ''
      const failed =
        f.failedDials !== undefined && f.failedDials > 0 ? `${f.failedDials} failed dial(s)` : ''
      rows.push([
        String(f.index),
        f.path ?? String(f.pathId),
        state,
        '-',
        '-',
        '-',
        '-',
        '-',
        '-',
        '-',
        '-'
      ])
      if (failed !== '' || next !== '')
        notes.push(`subflow ${f.index}: ${failed}${failed === '' ? next.slice(2) : next}`)
      continue
    }
    rows.push([
      String(f.index),
      f.path ?? String(f.pathId),
      state,
      f.srttMs.toFixed(1),
      f.tcpRttMs !== undefined ? f.tcpRttMs.toFixed(1) : '-',
      f.cwndSegments !== undefined ? String(f.cwndSegments) : '-',
      retransCell(f),
      f.congestion ?? '-',
      f.pacingBps !== undefined && f.pacingBps > 0 ? bitRate(f.pacingBps) : '-',
      human(f.queuedBytes),
      human(f.bytesSent),
      human(f.bytesReceived)
    ])
  }
  return [...table(rows, new Set([0, 3, 4, 5, 6, 8, 9, 10, 11])), ...notes]
}

/** Retransmitted segments, and the share of the bytes sent they were (TCP_INFO), e.g. `42 (1.3 %)`. */
function retransCell(f: SubflowStatus): string {
  if (f.retransmits === undefined) return '-'
  const sent = f.tcpBytesSent ?? 0
  if (sent === 0 || f.tcpBytesRetrans === undefined) return String(f.retransmits)
  return `${f.retransmits} (${((100 * f.tcpBytesRetrans) / sent).toFixed(1)} %)`
}

function flowRows(flows: readonly FlowStatus[]): string[] {
  const rows: string[][] = [
    [
      'flow',
      'client → destination',
      'state',
      'from app',
      'to app',
      'rate up / down',
      'age s',
      'subflows'
    ]
  ]
  for (const f of flows) {
    rows.push([
      f.id.toString(16).padStart(8, '0'),
      `${f.client ?? '?'} → ${f.destination ?? '?'}`,
      f.state,
      human(f.bytesFromApp),
      human(f.bytesToApp),
      `${bitRate(f.rateFromAppBps ?? 0)} / ${bitRate(f.rateToAppBps ?? 0)}`,
      (f.ageMs / 1000).toFixed(1),
      (f.subflowsUsed ?? []).join(',') || '-'
    ])
  }
  return table(rows, new Set([3, 4, 5, 6]))
}

/** One line: the trunk's rate, where it comes from, min RTT, BDP and in-flight. */
export function rateLine(r: RateStatus): string {
  const what =
    r.source === 'configured'
      ? `${bitRate(r.targetBps)} configured (trunk.link_rate)`
      : r.source === 'learned'
        ? `${bitRate(r.targetBps)} learned (bottleneck estimate ${bitRate(r.estimateBps)})`
        : r.source === 'startup'
          ? `not paced yet, learning (estimate so far ${bitRate(r.estimateBps)})`
          : 'not paced, nothing measured yet'
  const cap = r.inflightCapBytes > 0 ? ` of ${human(r.inflightCapBytes)} cap` : ''
  // What our PONGs tell the peer, when a burst showed more than the estimate.
  const told =
    r.sendRateBps > r.estimateBps
      ? `; bursts reached ${bitRate(r.sendRateBps)} (told the peer)`
      : ''
  return `rate: ${what}${told}; min RTT ${r.minRttMs.toFixed(1)} ms, BDP ${human(r.bdpBytes)}, in flight ${human(r.inFlightBytes)}${cap}; received at up to ${bitRate(r.receiveBps)}${r.peerSendBps > 0 ? `, peer sends at up to ${bitRate(r.peerSendBps)}` : ''}`
}

function trunkHeader(t: TrunkStatus): string {
  const up = t.subflows.filter((f) => (f.state ?? 'up') === 'up').length
  const enc =
    t.encrypted === undefined ? 'encryption unknown' : t.encrypted ? 'encrypted' : 'not encrypted'
  return `trunk ${t.peer !== undefined ? `peer ${t.peer}` : t.id.slice(0, 16)}: ${t.state ?? 'up'}, ${t.mode ?? 'static'}, ${enc}, ${up} of ${t.subflows.length} subflow(s) up, ${t.flows} flow(s)`
}

/** The human status screen. */
export function formatStatus(s: ProxyStatus): string {
  const lines: string[] = []
  lines.push(
    `${s.role} pid ${s.pid}, up ${(s.uptimeMs / 1000).toFixed(0)} s, buffered ${human(s.bufferedBytes)} of ${human(s.maxBufferedBytes)}`
  )
  lines.push(
    `carried: ${human(s.totals.bytesFromApp)} from applications, ${human(s.totals.bytesToApp)} to applications, ${human(s.totals.resentBytes)} re-sent`
  )
  if (s.trunks.length === 0) lines.push('no trunk yet')
  for (const t of s.trunks) {
    lines.push(trunkHeader(t))
    if (t.failedDials !== undefined && t.failedDials > 0) {
      lines.push(`  ${t.failedDials} failed dial(s) since the trunk was last up`)
    }
    const e = t.lastDialError
    if (e !== undefined)
      lines.push(`  last dial error: ${e.at} subflow ${e.subflow}: ${e.message} (${e.code})`)
    const cc = t.congestion
    if (cc !== undefined) {
      lines.push(
        `  congestion control: ${cc.label}${cc.reason !== undefined ? `; ${cc.reason}` : ''}`
      )
    }
    if (t.rate !== undefined) lines.push(`  ${rateLine(t.rate)}`)
    for (const l of subflowRows(t.subflows)) lines.push(`  ${l}`)
    if (t.topFlows.length > 0) {
      if (t.flows > t.topFlows.length)
        lines.push(`  busiest ${t.topFlows.length} of ${t.flows} flows:`)
      for (const l of flowRows(t.topFlows)) lines.push(`  ${l}`)
    }
  }
  const interesting = Object.entries(s.counters).filter(([, v]) => v !== 0)
  if (interesting.length > 0) {
    lines.push('counters:')
    for (const [k, v] of interesting) lines.push(`  ${k} ${v}`)
  }
  return lines.join('\n')
}
