/**
 * The benchmark's plot as plain SVG: goodput against loss, one line per system, one panel per
 * RTT. No dependencies: a few dozen lines of coordinates.
 */

/** What the plot needs of a result row. */
export interface PlotRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly rateMbit: number
  readonly goodputMbit: number | undefined
}

const COLORS = [
  '#d62728',
  '#1f77b4',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#637939',
  '#8c6d31',
  '#843c39',
  '#7b4173'
]

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

/** SVG text of the plot. */
export function renderPlot(rows: readonly PlotRow[]): string {
  const rtts = [...new Set(rows.map((r) => r.rttMs))].sort((a, b) => a - b)
  const losses = [...new Set(rows.map((r) => r.lossPercent))].sort((a, b) => a - b)
  const systems = [...new Set(rows.map((r) => r.system))]
  const yMax = Math.max(10, ...rows.map((r) => r.rateMbit), ...rows.map((r) => r.goodputMbit ?? 0))
  const pw = 320
  const ph = 240
  const ml = 55
  const mt = 56
  const gap = 30
  const legendW = 190
  const width = ml + rtts.length * (pw + gap) + legendW
  const height = mt + ph + 60
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${ml}" y="20" font-size="15" font-weight="bold">Goodput over a lossy link (Mbit/s, ${rows[0]?.rateMbit ?? '?'} Mbit/s link)</text>`
  ]
  const xOf = (loss: number): number => {
    const i = losses.indexOf(loss)
    return losses.length <= 1 ? pw / 2 : (i / (losses.length - 1)) * (pw - 20) + 10
  }
  const yOf = (g: number): number => ph - (g / yMax) * ph
  rtts.forEach((rtt, p) => {
    const x0 = ml + p * (pw + gap)
    parts.push(`<g transform="translate(${x0},${mt})">`)
    parts.push(`<rect width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
    parts.push(
      `<text x="${pw / 2}" y="-6" text-anchor="middle" font-weight="bold">RTT ${rtt} ms</text>`
    )
    for (let t = 0; t <= 4; t++) {
      const v = (yMax * t) / 4
      parts.push(`<line x1="0" x2="${pw}" y1="${yOf(v)}" y2="${yOf(v)}" stroke="#eee"/>`)
      if (p === 0)
        parts.push(`<text x="-6" y="${yOf(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`)
    }
    for (const l of losses)
      parts.push(`<text x="${xOf(l)}" y="${ph + 16}" text-anchor="middle">${l} %</text>`)
    parts.push(
      `<text x="${pw / 2}" y="${ph + 34}" text-anchor="middle">random loss each way</text>`
    )
    systems.forEach((s, i) => {
      const pts = losses
        .map((l) => rows.find((r) => r.system === s && r.rttMs === rtt && r.lossPercent === l))
        .filter((r): r is PlotRow => r?.goodputMbit !== undefined)
        .map((r) => `${xOf(r.lossPercent).toFixed(1)},${yOf(r.goodputMbit ?? 0).toFixed(1)}`)
      const color = COLORS[i % COLORS.length] ?? '#000'
      if (pts.length > 1)
        parts.push(
          `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>`
        )
      for (const pt of pts) {
        const [cx, cy] = pt.split(',')
        parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`)
      }
    })
    parts.push(`</g>`)
  })
  const lx = ml + rtts.length * (pw + gap)
  systems.forEach((s, i) => {
    const y = mt + 10 + i * 18
    const color = COLORS[i % COLORS.length] ?? '#000'
    parts.push(
      `<line x1="${lx}" x2="${lx + 20}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="3"/>`
    )
    parts.push(`<text x="${lx + 26}" y="${y + 4}">${esc(s)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n')
}
