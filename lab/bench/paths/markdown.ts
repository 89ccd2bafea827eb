/** The path benchmark's three markdown tables. */

import { GAP_WINDOW_MS, linkText, MiB } from './measure.js'
import type {
  AggregationResult,
  LatencyResult,
  PathBenchResult,
  RecoveryKillMethod,
  RecoveryResult
} from './results.js'

const KILL_LABEL: Record<RecoveryKillMethod, string> = {
  'ss-kill': 'one subflow, `ss -K`',
  'rst-inject': 'one subflow, injected RST',
  'black-hole': 'path b black hole (DROP both ways)'
}

/** A number for a table cell; '–' when missing. */
function cell(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits)
}

function yesNo(b: boolean | null | undefined): string {
  return b === true ? 'yes' : b === false ? 'no' : '–'
}

function recoveryMarkdown(r: RecoveryResult): string {
  const d = r.definition
  const out = [
    `**Recovery after a kill** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} ${r.congestion} subflows per path; ping every ${r.pingIntervalMs} ms, timeout ${r.pingTimeoutMs} ms; ` +
      `one ${r.durationS} s bulk transfer, kills in sequence):`,
    '',
    '| kill | victim on | at (s) | detected (ms) | longest gap (ms) | rate before (Mbit/s) | target (Mbit/s) | recovery (ms) |',
    '|---|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const k of r.kills) {
    const held = k.heldMs > 0 ? `, held ${(k.heldMs / 1000).toFixed(0)} s` : ''
    out.push(
      `| ${KILL_LABEL[k.method]}${held} | path ${k.path} | ${(k.atMs / 1000).toFixed(1)} | ${cell(k.detectedMs, 0)} | ` +
        `${k.maxGapMs.toFixed(0)} | ${k.preRateMbit.toFixed(1)} | ${k.targetMbit.toFixed(1)} | ` +
        `${k.recoveryMs === null ? `> ${(k.horizonMs / 1000 - (d.windowMs * d.windows) / 1000).toFixed(1)} s` : k.recoveryMs.toFixed(0)} |`
    )
  }
  if (r.kills.length === 0)
    out.push(`| (not measured${r.error !== undefined ? `: ${r.error}` : ''}) | | | | | | | |`)
  out.push('')
  out.push(
    `Target = ${d.threshold * 100} % × rate before (slope of the ${d.preWindowMs / 1000} s before the kill) × share of capacity left ` +
      `(1 for a subflow, re-dialled on the same path; 0.5 for a path of two equal ones). Recovery = time from the kill to the first instant ` +
      `from which each of the next ${d.windows} windows of ${d.windowMs} ms delivers at the target or more and no gap over ${d.maxStallMs} ms ` +
      `touches them (0: delivery never fell short). Longest gap: in progress at the kill or starting within ${GAP_WINDOW_MS / 1000} s of it, from 20 ms samples of bytes at dst.`
  )
  const t = r.transfer
  if (t !== null) {
    out.push(
      `Transfer: ${(t.bytes / MiB).toFixed(0)} MiB, sha256 equal ${yesNo(t.sha256Equal)} (reply ${yesNo(t.replySha256Equal)}), ` +
        `destination connections ${t.destinationConnections}, ending \`${t.ending}\`, ${t.resentMiB.toFixed(1)} MiB re-sent` +
        (t.failure === null ? '.' : `; **failed**: ${t.failure}.`)
    )
  } else if (r.error !== undefined) {
    out.push(`Failed: ${r.error}`)
  }
  return out.join('\n')
}

function aggregationMarkdown(r: AggregationResult): string {
  const out = [
    `**Aggregation of two unequal paths** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} subflows per path; ${r.congestion} everywhere; ${r.seconds} s per run, goodput from ${r.steadyFromMs / 1000} to ${r.steadyToMs / 1000} s):`,
    '',
    `| run | goodput (Mbit/s) | % of ${r.links.a.rateMbit ?? 0} + ${r.links.b.rateMbit ?? 0} | % of TCP a + TCP b | % of Tandem a + Tandem b | × Tandem a alone | sent on a / b (Mbit/s) |`,
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const run of r.runs) {
    const q = r.ratios.find((x) => x.name === run.name)
    const goodput =
      run.goodputMbit === null ? `failed: ${run.error ?? '?'}` : run.goodputMbit.toFixed(1)
    const nominal =
      q?.ofNominalPct ??
      (run.goodputMbit === null
        ? null
        : (100 * run.goodputMbit) /
          (run.paths[0] === 'b' ? (r.links.b.rateMbit ?? 0) : (r.links.a.rateMbit ?? 0)))
    const split =
      run.sentMbit === null ? '–' : `${run.sentMbit.a.toFixed(1)} / ${run.sentMbit.b.toFixed(1)}`
    out.push(
      `| ${run.name}${run.sha256Equal === false ? ' (sha256 differs!)' : ''} | ${goodput} | ${cell(nominal, 0)}${q === undefined && nominal !== null ? ' (of its path)' : ''} | ` +
        `${cell(q?.ofTcpSumPct, 0)} | ${cell(q?.ofTandemSumPct, 0)} | ${cell(q?.vsFasterAlone, 2)} | ${split} |`
    )
  }
  if (r.error !== undefined) out.push(`\nFailed: ${r.error}`)
  out.push('')
  out.push(
    'TCP = one plain TCP connection between the boxes over that path alone (the end hosts route over path a only). ' +
      'Goodput = least-squares slope of bytes at the receiver over the steady window.'
  )
  return out.join('\n')
}

function latencyMarkdown(r: LatencyResult): string {
  const out = [
    `**Request/response latency** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} ${r.congestion} subflows per path; one connection through a warm trunk, ${r.exchanges} sequential exchanges of ` +
      `${r.requestBytes} B → ${r.replyBytes} B after ${r.warmup} warm-up ones; ms, nearest rank):`,
    '',
    '| run | p50 | p90 | p99 | max | mean | frames copied |',
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const run of r.runs) {
    if (run.error !== undefined) {
      out.push(`| ${run.name} | failed: ${run.error} | | | | | |`)
      continue
    }
    const copied = run.framesSent === null ? '–' : `${run.framesCopied ?? 0} of ${run.framesSent}`
    out.push(
      `| ${run.name} | ${cell(run.p50Ms)} | ${cell(run.p90Ms)} | ${cell(run.p99Ms)} | ${cell(run.maxMs)} | ${cell(run.meanMs)} | ${copied} |`
    )
  }
  if (r.error !== undefined) out.push(`\nFailed: ${r.error}`)
  out.push('')
  out.push(
    r.bestSinglePath === null || r.redundantVsBestP99 === null
      ? 'Redundant vs best single path: not measured.'
      : `Best single path (lower p99): ${r.bestSinglePath}; redundant p99 = ${r.redundantVsBestP99.toFixed(2)} × its p99.`
  )
  return out.join('\n')
}

/** Three small markdown tables (recovery, aggregation, latency), each with its link settings. */
export function pathBenchMarkdown(r: PathBenchResult): string {
  return (
    [
      `Tandem path benchmark, ${r.started}, ${r.quick ? 'quick' : 'full'} mode, ${r.elapsedS.toFixed(0)} s.`,
      recoveryMarkdown(r.recovery),
      aggregationMarkdown(r.aggregation),
      latencyMarkdown(r.latency)
    ].join('\n\n') + '\n'
  )
}
