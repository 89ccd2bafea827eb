/**
 * The bench's Tandem rows: system names for Tandem left unconfigured (on cubic boxes too), and
 * the trunk table beside the goodput (retransmitted share, subflow RTT under load).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { lineStyle } from '../../../lab/bench/plot.js'
import { markdown, trunkTable, type BenchRow } from '../../../lab/bench/report.js'
import { systemsFrom } from '../../../lab/bench/systems.js'

const row = (system: string, extra: Partial<BenchRow> = {}): BenchRow => ({
  system,
  rttMs: 600,
  lossPercent: 1,
  rateMbit: 100,
  goodputMbit: 40.3,
  runs: [40.3],
  ...extra
})

describe('bench systems', () => {
  it('tandem-N-unset leaves trunk.congestion out; -cubic-boxes makes the boxes default to cubic', () => {
    const [unset, boxes, bbr] = systemsFrom(
      'tandem-8-unset,tandem-8-unset-cubic-boxes,tandem-8-bbr-f16k'
    )
    assert.deepEqual(unset, {
      name: 'tandem-8-unset',
      kind: 'tandem',
      congestion: 'unset',
      subflows: 8
    })
    assert.equal(boxes?.congestion, 'unset')
    assert.equal(boxes?.boxCongestion, 'cubic')
    assert.equal(bbr?.boxCongestion, undefined)
    assert.equal(bbr?.framePayload, '16KiB')
    assert.throws(() => systemsFrom('tandem-8-cubic-boxes'), /unknown system/)
  })

  it('the unconfigured rows have their own line style', () => {
    assert.notDeepEqual(lineStyle('tandem-8-unset-cubic-boxes', 0), lineStyle('tandem-8-unset', 0))
    assert.equal(lineStyle('tandem-8-unset', 0).width, 3.5)
  })
})

describe('bench report: the trunk table', () => {
  it('lists Tandem rows with the first flow on a cold trunk, the retransmitted share and the RTT against the path', () => {
    const rows = [
      row('direct-bbr', { goodputMbit: 36.3 }),
      row('tandem-8-bbr', {
        coldGoodputMbit: 31.5,
        retransPercent: 17.25,
        subflowRttMs: 1800,
        congestion: 'bbr',
        subflowCongestion: ['bbr']
      })
    ]
    const table = trunkTable(rows)
    assert.match(
      table,
      /\| tandem-8-bbr \| 600 ms, 1 % \| 40\.3 \| 31\.5 \| 17\.25 % \| 1800 ms \(3\.00×\) \| bbr; subflows ran bbr \|/
    )
    assert.doesNotMatch(table, /direct-bbr/)
    assert.ok(markdown(rows, [], 'meta').includes(table))
  })

  it('is empty when no row has trunk figures', () => {
    assert.equal(trunkTable([row('direct-bbr')]), '')
  })
})
