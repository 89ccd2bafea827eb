// Put a benchmark run into the README (npm run docs:bench [-- results/bench-....json]): the goodput
// table, Tandem's subflow figures (retransmitted share, RTT under load), CPU per GB, short flows, the clean-link ceiling and the two-path rows, between the
// <!-- bench:begin --> and <!-- bench:end --> markers; the first round's and the satellite issue's
// targets, met or not (lab/bench/targets.ts), between <!-- targets:begin --> and <!-- targets:end -->;
// and the run's plot as docs/bench.svg. The figures are the run's own; nothing is typed in by hand.
import { readFileSync, writeFileSync } from 'node:fs'
import { median } from '../dist/lab/bench/median.js'
import { pathBenchMarkdown } from '../dist/lab/bench/paths.js'
import { renderPlot } from '../dist/lab/bench/plot.js'
import { trunkTable } from '../dist/lab/bench/report.js'
import { targetsMarkdown } from '../dist/lab/bench/targets.js'

const root = new URL('../', import.meta.url)
const argv = process.argv.slice(2)
const flag = argv.indexOf('--short')
// --short FILE: the short-flow rows from another run (e.g. `--systems none --no-ceiling --no-paths`).
const shortFile = flag >= 0 ? argv.splice(flag, 2)[1] : undefined
const file = argv[0] ?? 'results/latest.json'
const load = (f) => {
  const r = JSON.parse(readFileSync(new URL(f, root), 'utf8'))
  if (!r.done) process.stderr.write(`docs:bench: ${f} is from a run that did not finish\n`)
  return r
}
const run = load(file)
const shortRun = shortFile !== undefined ? load(shortFile) : undefined
if (shortRun !== undefined) run.short = shortRun.short

const pretty = (system) => {
  let m = /^direct-(\w+)$/.exec(system)
  if (m) return `direct TCP, ${m[1]}`
  m = /^tandem-(\d+)-unset(-cubic-boxes)?$/.exec(system)
  if (m) {
    if (system === 'tandem-8-unset') return '**Tandem, 8 subflows, default configuration**'
    return `Tandem, ${m[1]} subflows, unconfigured${m[2] ? ', boxes defaulting to cubic' : ''}`
  }
  m = /^tandem-(\d+)-(\w+)$/.exec(system)
  if (m) {
    const name = `Tandem, ${m[1]} ${m[2]} subflow${m[1] === '1' ? '' : 's'}`
    return name
  }
  m = /^tandem-(\d+)-(\w+) \(warm trunk\)$/.exec(system)
  if (m) return `Tandem, ${m[1]} ${m[2]} subflows (warm trunk)`
  if (system === 'iperf3-P8-cubic') return '`iperf3 -P 8` (cubic)'
  if (system === 'kcptun') return 'kcptun (fast, no crypto)'
  if (system === 'mptcp-4-cubic') return 'kernel MPTCP, 4 subflows (cubic)'
  return system
}
const uniq = (xs) => [...new Set(xs)]
const out = []

// Goodput: a row per system, a column per link.
const links = uniq(run.rows.map((r) => `${r.rttMs}/${r.lossPercent}`))
const systems = uniq(run.rows.map((r) => r.system))
out.push(`${run.meta}.`, '')
out.push(
  `Goodput in Mbit/s at the destination over a ${run.rows[0]?.rateMbit ?? 100} Mbit/s link; columns are RTT in ms / loss each way in %; "runs" is how many runs each cell is the median of.`,
  ''
)
out.push(
  `| system | runs | ${links.join(' | ')} |`,
  `|---|---:|${links.map(() => '---:').join('|')}|`
)
for (const s of systems) {
  const of = run.rows.filter((r) => r.system === s)
  const runs = uniq(of.map((r) => r.runs.length)).join('–')
  const cells = links.map((l) => {
    const r = of.find((x) => `${x.rttMs}/${x.lossPercent}` === l)
    if (r === undefined) return '–'
    if (r.goodputMbit === undefined || r.goodputMbit === null) return r.note ?? 'failed'
    const v = r.goodputMbit.toFixed(1)
    return s === 'tandem-8-unset' ? `**${v}**` : v
  })
  out.push(`| ${pretty(s)} | ${runs} | ${cells.join(' | ')} |`)
}
out.push('', '![benchmark](docs/bench.svg)', '')

// Tandem's subflows: retransmitted share of their bytes and RTT under load (TCP_INFO).
const trunk = trunkTable(run.rows.map((r) => ({ ...r, system: pretty(r.system) }))).trim()
if (trunk !== '') out.push(trunk, '')

// CPU per GB: the median over the links.
const cpuSystems = uniq(
  run.rows.filter((r) => r.cpuSecondsPerGB !== undefined).map((r) => r.system)
)
if (cpuSystems.length > 0) {
  out.push(
    '**CPU seconds per GB moved** (median over the links), sending side (tx_proxy, kcptun client) + receiving side (rx_proxy, kcptun server):',
    '',
    '| system | sending | receiving | both |',
    '|---|---:|---:|---:|'
  )
  for (const s of cpuSystems) {
    const of = run.rows.filter((r) => r.system === s)
    const f = (k) => median(of.map((r) => r[k]).filter((x) => typeof x === 'number')).toFixed(1)
    out.push(
      `| ${pretty(s)} | ${f('cpuTxSecondsPerGB')} | ${f('cpuRxSecondsPerGB')} | ${f('cpuSecondsPerGB')} |`
    )
  }
  out.push('')
}

// Short flows: per link, first byte of a 1 KB reply and completion of each download.
if (run.short.length > 0) {
  const ms = (v) => (v === null || v === undefined ? '–' : (v / 1000).toFixed(2))
  const sizes = uniq(run.short.map((r) => r.bytes)).sort((a, b) => a - b)
  const label = (b) => (b >= 1e6 ? `${b / 1e6} MB` : `${b / 1e3} KB`)
  out.push(
    `**Short flows** (from connect(): first byte in ms, downloads in s; medians of ${run.short[0].runs}${shortRun !== undefined ? `; from another run, ${shortRun.meta.split(',')[1].trim()}: \`${shortRun.meta.split('command: ')[1]}\`` : ''}): time to first byte of a ${label(sizes[0])} reply, then the completion of each download; "> 60" did not finish within 60 s; each system makes one untimed exchange first.`,
    '',
    `| link | system | first byte (ms) | ${sizes.slice(1).map(label).join(' | ')} |`,
    `|---|---|---:|${sizes
      .slice(1)
      .map(() => '---:')
      .join('|')}|`
  )
  for (const l of uniq(run.short.map((r) => `${r.rttMs}/${r.lossPercent}`))) {
    for (const s of uniq(run.short.map((r) => r.system))) {
      const of = run.short.filter((r) => r.system === s && `${r.rttMs}/${r.lossPercent}` === l)
      if (of.length === 0) continue
      const cell = (b) => {
        const r = of.find((x) => x.bytes === b)
        if (r === undefined) return '–'
        return r.completionMs === null ? `> ${r.timeoutMs / 1000}` : ms(r.completionMs)
      }
      const first = of.find((x) => x.bytes === sizes[0])
      out.push(
        `| ${l} | ${pretty(s)} | ${first?.ttfbMs === null || first?.ttfbMs === undefined ? '–' : first.ttfbMs.toFixed(1)} | ${sizes.slice(1).map(cell).join(' | ')} |`
      )
    }
  }
  out.push('')
}

if (run.ceiling) {
  const c = run.ceiling
  const pct = (x) => ((100 * x) / c.direct).toFixed(0)
  out.push(
    `**Clean link** (no impairment, medians of ${c.runs[0].length} interleaved 8 s runs): direct TCP ${c.direct.toFixed(0)} Mbit/s; Tandem (8 subflows) ${c.tandem.toFixed(0)} Mbit/s encrypted (${pct(c.tandem)} %), ${c.tandemPlain.toFixed(0)} Mbit/s without encryption (${pct(c.tandemPlain)} %).`,
    ''
  )
}
if (run.paths)
  out.push('**Two paths between the boxes:**', '', pathBenchMarkdown(run.paths).trim(), '')

const readme = new URL('README.md', root)
// Each marked block is replaced whole; both must be there before anything is written.
const fill = (text, name, body) => {
  const begin = `<!-- ${name}:begin -->`
  const end = `<!-- ${name}:end -->`
  const i = text.indexOf(begin)
  const j = text.indexOf(end)
  if (i < 0 || j < i) throw new Error(`README: ${name} markers not found`)
  return `${text.slice(0, i + begin.length)}\n${body}\n${text.slice(j)}`
}
let text = readFileSync(readme, 'utf8')
text = fill(text, 'bench', out.join('\n'))
text = fill(text, 'targets', targetsMarkdown(run))
writeFileSync(readme, text)
writeFileSync(new URL('docs/bench.svg', root), renderPlot(run.rows))
process.stderr.write(`docs:bench: README and docs/bench.svg from ${file}\n`)
