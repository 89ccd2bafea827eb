/**
 * The benchmark's plot as plain SVG: goodput against loss, one line per system, one panel per
 * RTT. The goodput axis is logarithmic, because a single cubic flow at 1 % loss gets 1 % of
 * what the best systems get, and on a linear axis every such line lies on the floor. Lines are
 * styled by family: direct TCP dashed, Tandem solid (bbr red, cubic blue, darker with more
 * subflows, the 8-subflow lines thick), the alternatives dotted. No dependencies.
 */

/** What the plot needs of a result row. */
export interface PlotRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly rateMbit: number
  readonly goodputMbit: number | undefined
}

/** How one system's line is drawn. */
interface LineStyle {
  readonly color: string
  readonly width: number
  readonly dash?: string
}

const OTHER_COLORS = ['#7f7f7f', '#bcbd22', '#17becf', '#8c564b', '#e377c2']
const BBR_SHADES = ['#fcae91', '#fb6a4a', '#e6550d', '#cb181d', '#67000d']
const CUBIC_SHADES = ['#bdd7e7', '#6baed6', '#3182bd', '#08519c', '#08306b']
const SUBFLOW_STEPS = [1, 2, 4, 8, 16]

/** The line style of a system, from its name (see `systemsFrom` in bench.ts). */
export function lineStyle(system: string, index: number): LineStyle {
  if (system === 'direct-cubic') return { color: '#000000', width: 2.5, dash: '7 4' }
  if (system === 'direct-bbr') return { color: '#737373', width: 2.5, dash: '7 4' }
  // Tandem unconfigured (trunk.congestion left to its default): green, dashed on cubic boxes.
  const u = /^tandem-(\d+)-unset(-cubic-boxes)?/.exec(system)
  if (u !== null) {
    const width = Number(u[1]) === 8 ? 3.5 : 1.5
    return u[2] !== undefined
      ? { color: '#31a354', width, dash: '5 3' }
      : { color: '#006d2c', width }
  }
  const m = /^tandem-(\d+)-(bbr|cubic)/.exec(system)
  if (m !== null) {
    const n = Number(m[1])
    const step = SUBFLOW_STEPS.findIndex((s) => s >= n)
    const shades = m[2] === 'bbr' ? BBR_SHADES : CUBIC_SHADES
    const color = shades[step === -1 ? shades.length - 1 : step] ?? '#000000'
    return { color, width: n === 8 ? 3.5 : 1.5 }
  }
  if (system.startsWith('iperf3')) return { color: '#2ca02c', width: 2, dash: '2 3' }
  if (system === 'kcptun') return { color: '#ff7f0e', width: 2, dash: '2 3' }
  if (system.startsWith('mptcp')) return { color: '#9467bd', width: 2, dash: '2 3' }
  return { color: OTHER_COLORS[index % OTHER_COLORS.length] ?? '#000000', width: 1.5 }
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

/** Axis ticks of a log scale from `lo` to `hi` (powers of ten, and 3× each). */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = []
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 3]) {
      const v = m * 10 ** e
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v)
    }
  }
  return ticks
}

/** SVG text of the plot. */
export function renderPlot(rows: readonly PlotRow[]): string {
  const rtts = [...new Set(rows.map((r) => r.rttMs))].sort((a, b) => a - b)
  const losses = [...new Set(rows.map((r) => r.lossPercent))].sort((a, b) => a - b)
  const systems = [...new Set(rows.map((r) => r.system))]
  const top = Math.max(10, ...rows.map((r) => r.rateMbit), ...rows.map((r) => r.goodputMbit ?? 0))
  const yHi = 10 ** Math.ceil(Math.log10(top))
  const yLo = 0.1
  const pw = 320
  const ph = 300
  const ml = 55
  const mt = 56
  const gap = 30
  const legendW = 190
  const width = ml + rtts.length * (pw + gap) + legendW
  const height = Math.max(mt + ph + 60, mt + 10 + systems.length * 18 + 20)
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${ml}" y="20" font-size="15" font-weight="bold">Goodput over a lossy link (Mbit/s, log scale; ${rows[0]?.rateMbit ?? '?'} Mbit/s link)</text>`
  ]
  const xOf = (loss: number): number => {
    const i = losses.indexOf(loss)
    return losses.length <= 1 ? pw / 2 : (i / (losses.length - 1)) * (pw - 20) + 10
  }
  const yOf = (g: number): number => {
    const clamped = Math.min(yHi, Math.max(yLo, g))
    return ph - ((Math.log10(clamped) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph
  }
  rtts.forEach((rtt, p) => {
    const x0 = ml + p * (pw + gap)
    parts.push(`<g transform="translate(${x0},${mt})">`)
    parts.push(`<rect width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
    parts.push(
      `<text x="${pw / 2}" y="-6" text-anchor="middle" font-weight="bold">RTT ${rtt} ms</text>`
    )
    for (const v of logTicks(yLo, yHi)) {
      parts.push(`<line x1="0" x2="${pw}" y1="${yOf(v)}" y2="${yOf(v)}" stroke="#eee"/>`)
      if (p === 0)
        parts.push(
          `<text x="-6" y="${yOf(v) + 4}" text-anchor="end">${String(Number(v.toPrecision(3)))}</text>`
        )
    }
    for (const l of losses)
      parts.push(`<text x="${xOf(l)}" y="${ph + 16}" text-anchor="middle">${l} %</text>`)
    parts.push(
      `<text x="${pw / 2}" y="${ph + 34}" text-anchor="middle">random loss each way</text>`
    )
    systems.forEach((s, i) => {
      const style = lineStyle(s, i)
      const pts = losses
        .map((l) => rows.find((r) => r.system === s && r.rttMs === rtt && r.lossPercent === l))
        .filter((r): r is PlotRow => r?.goodputMbit !== undefined)
        .map((r) => `${xOf(r.lossPercent).toFixed(1)},${yOf(r.goodputMbit ?? 0).toFixed(1)}`)
      const dash = style.dash === undefined ? '' : ` stroke-dasharray="${style.dash}"`
      if (pts.length > 1)
        parts.push(
          `<polyline fill="none" stroke="${style.color}" stroke-width="${style.width}"${dash} points="${pts.join(' ')}"/>`
        )
      for (const pt of pts) {
        const [cx, cy] = pt.split(',')
        parts.push(`<circle cx="${cx}" cy="${cy}" r="2.5" fill="${style.color}"/>`)
      }
    })
    parts.push(`</g>`)
  })
  const lx = ml + rtts.length * (pw + gap)
  systems.forEach((s, i) => {
    const y = mt + 10 + i * 18
    const style = lineStyle(s, i)
    const dash = style.dash === undefined ? '' : ` stroke-dasharray="${style.dash}"`
    parts.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${y}" y2="${y}" stroke="${style.color}" stroke-width="${style.width}"${dash}/>`
    )
    parts.push(`<text x="${lx + 30}" y="${y + 4}">${esc(s)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}
