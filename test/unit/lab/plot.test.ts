/**
 * The benchmark's SVG plot: one panel per RTT, one line per system, a log goodput axis.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { lineStyle, renderPlot, type PlotRow } from '../../../lab/bench/plot.js'

const row = (system: string, rttMs: number, lossPercent: number, g?: number): PlotRow => ({
  system,
  rttMs,
  lossPercent,
  rateMbit: 100,
  goodputMbit: g
})

describe('bench plot', () => {
  const rows = [
    row('direct-cubic', 50, 0, 92),
    row('direct-cubic', 50, 1, 0.02),
    row('tandem-8-bbr', 50, 0, 91),
    row('tandem-8-bbr', 50, 1, 93),
    row('kcptun', 50, 0, 48),
    row('kcptun', 50, 1, undefined),
    row('direct-cubic', 600, 0, 67),
    row('direct-cubic', 600, 1, 0.4)
  ]
  const svg = renderPlot(rows)

  it('draws a panel per RTT and a legend entry per system', () => {
    assert.match(svg, /RTT 50 ms/)
    assert.match(svg, /RTT 600 ms/)
    for (const s of ['direct-cubic', 'tandem-8-bbr', 'kcptun']) assert.ok(svg.includes(`>${s}<`))
  })

  it('has a log axis from 0.1 to 100 with readable tick labels', () => {
    for (const t of ['0.1', '0.3', '1', '3', '10', '30', '100'])
      assert.ok(svg.includes(`text-anchor="end">${t}</text>`), t)
    assert.doesNotMatch(svg, /NaN|Infinity|0000000/)
  })

  it('clamps goodput below the axis to its floor and leaves out a missing point', () => {
    // direct-cubic at 50 ms: two points, the second (0.02) on the floor (y = panel height).
    const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1]!)
    assert.equal(lines.length, 3, 'kcptun has one point and no line')
    assert.match(lines[0]!, / [\d.]+,300\.0$/)
  })

  it('styles systems by family', () => {
    assert.equal(lineStyle('tandem-8-bbr', 0).width, 3.5)
    assert.notEqual(lineStyle('tandem-1-bbr', 0).color, lineStyle('tandem-16-bbr', 0).color)
    assert.ok(lineStyle('direct-cubic', 0).dash !== undefined)
    assert.ok(lineStyle('iperf3-P8-cubic', 0).dash !== undefined)
    assert.equal(lineStyle('tandem-4-cubic', 0).dash, undefined)
  })
})
