/**
 * The README's target tables (lab/bench/targets.ts): met and missed from a run's figures, the
 * figures themselves, and "not measured in this run" for what a partial run lacks.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import type { BenchRow, ShortFlowRow } from '../../../lab/bench/report.js'
import {
  firstRoundTargets,
  satelliteTargets,
  targetsMarkdown,
  type TargetResult,
  type TargetRun
} from '../../../lab/bench/targets.js'

const RTTS = [50, 200, 600]
const LOSSES = [0, 0.5, 1, 2]

/** One row per link for `system`, goodput from `g`; Tandem rows get trunk figures from `extra`. */
function rows(
  system: string,
  g: (rtt: number, loss: number) => number,
  extra: (rtt: number, loss: number) => Partial<BenchRow> = () => ({})
): BenchRow[] {
  return RTTS.flatMap((rttMs) =>
    LOSSES.map((lossPercent) => ({
      system,
      rttMs,
      lossPercent,
      rateMbit: 100,
      goodputMbit: g(rttMs, lossPercent),
      runs: [g(rttMs, lossPercent), g(rttMs, lossPercent) + 1, g(rttMs, lossPercent) - 1],
      ...extra(rttMs, lossPercent)
    }))
  )
}

function short(
  system: string,
  rttMs: number,
  lossPercent: number,
  bytes: number,
  completionMs: number,
  ttfbMs = completionMs
): ShortFlowRow {
  return {
    system,
    rttMs,
    lossPercent,
    bytes,
    ttfbMs,
    completionMs,
    timedOut: 0,
    runs: 3,
    timeoutMs: 60000
  }
}

const tandem = (rtt: number, loss: number): number =>
  rtt === 600 ? ({ 0: 90, 0.5: 82, 1: 84, 2: 81 }[loss] ?? 0) : rtt === 200 ? 89 : 93
const run: TargetRun = {
  rows: [
    ...rows('direct-cubic', (_, loss) => (loss === 0 ? 90 : 0.5)),
    ...rows('direct-bbr', (_, loss) => (loss === 0 ? 93 : 80)),
    ...rows('tandem-8-unset', tandem, (rtt, loss) => ({
      // Retransmitted share 1.1× the loss, but 2.25× at 50 ms, 2 %; subflow RTT 1.2× the path's.
      retransPercent: rtt === 50 && loss === 2 ? 4.5 : 1.1 * loss,
      subflowRttMs: 1.2 * rtt,
      subflowCongestion: ['bbr']
    })),
    ...rows('tandem-8-unset-cubic-boxes', (rtt, loss) => 0.97 * tandem(rtt, loss)),
    ...rows('tandem-2-bbr', (rtt, loss) => (rtt === 50 && loss === 1 ? 95 : 50)),
    ...rows('kcptun', () => 48),
    ...rows('mptcp-4-cubic', () => 20),
    ...rows('iperf3-P8-cubic', () => 40)
  ],
  short: [
    ...RTTS.flatMap((rtt) => [
      short('direct-cubic', rtt, 0, 1000, 2 * rtt + 10),
      short('direct-bbr', rtt, 0, 1000, 2 * rtt + 12),
      short('tandem-8-bbr (warm trunk)', rtt, 0, 1000, rtt + 5),
      short('tandem-8-cubic (warm trunk)', rtt, 0, 1000, rtt + 4)
    ]),
    short('tandem-8-bbr (warm trunk)', 600, 0, 1_000_000, 800),
    short('tandem-8-cubic (warm trunk)', 600, 0, 1_000_000, 700),
    short('direct-cubic', 600, 0, 1_000_000, 4000),
    short('direct-bbr', 600, 0, 1_000_000, 4400),
    short('tandem-8-bbr (warm trunk)', 600, 1, 100_000, 700),
    short('tandem-8-bbr (warm trunk)', 600, 1, 1_000_000, 950),
    short('tandem-8-bbr (warm trunk)', 600, 1, 10_000_000, 2400)
  ],
  ceiling: { direct: 2000, tandem: 900, tandemPlain: 1100 }
}

/** The target whose figure (and target text) starts as given. */
function find(ts: readonly TargetResult[], start: string): TargetResult {
  const t = ts.find((x) => `${x.figure}: ${x.target}`.startsWith(start))
  assert.ok(t, start)
  return t
}

describe('bench targets: the first round', () => {
  const ts = firstRoundTargets(run)

  it('meets the goodput targets and names the best Tandem row', () => {
    const best = find(ts, '50 ms, 0.5–2 % loss: best Tandem ≥ 90')
    assert.equal(best.met, true)
    assert.equal(
      best.result,
      '93.0 (the default configuration), 95.0 (2 bbr subflows), 93.0 (the default configuration); the default row 93.0, 93.0, 93.0'
    )
    assert.equal(find(ts, '50 ms, 0.5–2 % loss: the default row').met, true)
    assert.equal(find(ts, '600 ms, 1 %').result, '84.0 against 0.5 (168×)')
    assert.equal(find(ts, 'no loss').result, '100 %, 95.7 % and 96.8 % at 50, 200 and 600 ms')
    assert.equal(find(ts, 'no loss').met, true)
  })

  it('judges the short flows and the ceiling', () => {
    assert.equal(find(ts, 'first byte').met, true)
    assert.match(
      find(ts, 'first byte').result ?? '',
      /^54\.0–55\.0 against 110\.0–112\.0 ms at 50 ms/
    )
    const mb = find(ts, '1 MB at 600 ms')
    assert.match(mb.target, /= 0\.816 s/)
    assert.equal(mb.met, true)
    assert.match(mb.result ?? '', /so the slower Tandem is 5\.0× and 5\.5× faster$/)
    const ceiling = find(ts, 'clean-link ceiling')
    assert.equal(ceiling.met, false)
    assert.equal(
      ceiling.result,
      '55 % without encryption, 45 % with it (1100 and 900 against 2000 Mbit/s)'
    )
  })

  it('misses "level with direct bbr" when the default row is more than 5 % below it', () => {
    const slower = {
      ...run,
      rows: run.rows.map((r) =>
        r.system === 'direct-bbr' && r.rttMs === 50 && r.lossPercent === 1
          ? { ...r, goodputMbit: 98 }
          : r
      )
    }
    assert.equal(find(firstRoundTargets(slower), '50 ms, 0.5–2 % loss: the default row').met, false)
  })
})

describe('bench targets: the satellite issue', () => {
  const ts = satelliteTargets(run)

  it('meets or misses each goodput target by its cells', () => {
    const one = find(ts, '600 ms, 1 %: ≥ 85')
    assert.equal(one.met, false)
    assert.equal(one.result, '1 %: 84.0 (84.0, 85.0, 83.0)')
    assert.equal(find(ts, '600 ms, 0.5 % and 2 %').met, true)
    assert.equal(find(ts, '200 ms, lossy').met, true)
    assert.equal(find(ts, '50 ms, lossy').met, true)
    assert.equal(find(ts, 'clean cells').met, false)
  })

  it('finds the worst retransmitted share and the subflow RTT range', () => {
    const retrans = find(ts, 'retransmitted share')
    assert.equal(retrans.met, false)
    assert.match(retrans.result ?? '', /^highest 2\.25× at 50\/2 \(50\/0\.5: 0\.55 %, /)
    const rtt = find(ts, 'subflow RTT')
    assert.equal(rtt.met, true)
    assert.equal(rtt.result, '1.20× in every cell')
    assert.equal(find(ts, 'lossy cells, boxes defaulting to cubic').met, true)
    const downloads = find(ts, '600 ms, 1 %: 100 KB / 1 MB / 10 MB')
    assert.equal(downloads.met, true)
    assert.equal(downloads.result, '0.70 / 0.95 / 2.40 s (8 bbr subflows)')
  })

  it('judges the downloads on the default configuration where the run has that row', () => {
    const withAuto: TargetRun = {
      ...run,
      short: [
        ...(run.short ?? []),
        short('tandem-8-auto (warm trunk)', 600, 1, 100_000, 690),
        short('tandem-8-auto (warm trunk)', 600, 1, 1_000_000, 1490),
        short('tandem-8-auto (warm trunk)', 600, 1, 10_000_000, 3080)
      ]
    }
    const downloads = find(satelliteTargets(withAuto), '600 ms, 1 %: 100 KB / 1 MB / 10 MB')
    assert.equal(downloads.met, false)
    assert.equal(downloads.result, '0.69 / 1.49 / 3.08 s (the default configuration)')
    assert.match(targetsMarkdown(withAuto), /the short flows use the default configuration\):/)
  })
})

describe('bench targets: a partial run', () => {
  it('says "not measured in this run" for what the run lacks, and judges the rest', () => {
    const partial: TargetRun = { rows: run.rows.filter((r) => r.rttMs === 50) }
    const first = firstRoundTargets(partial)
    assert.equal(find(first, '50 ms, 0.5–2 % loss: best Tandem').met, true)
    for (const start of ['600 ms, 1 %', 'no loss', 'first byte', '1 MB', 'clean-link ceiling']) {
      assert.equal(find(first, start).result, undefined, start)
      assert.equal(find(first, start).met, undefined, start)
    }
    const sat = satelliteTargets(partial)
    assert.equal(find(sat, '600 ms, 1 %: ≥ 85').result, undefined)
    assert.equal(find(sat, '50 ms, lossy').met, true)
    assert.equal(find(sat, 'retransmitted share').met, false)

    const md = targetsMarkdown(partial)
    assert.match(md, /\| 600 ms, 1 %: ≥ 10× direct cubic \| not measured in this run \| – \|/)
    assert.match(md, /\| 50 ms, lossy \| ≥ 92 \| .* \| yes \|/)
    assert.match(md, /\| retransmitted share of trunk bytes \| .* \| \*\*no\*\* \|/)
    assert.doesNotThrow(() => targetsMarkdown({ rows: [] }))
  })

  it('leads each table with its run: subflows, congestion control and runs per cell', () => {
    const md = targetsMarkdown(run)
    assert.match(md, /the default configuration, 8 bbr subflows on these boxes\):/)
    assert.match(md, /median of 3 flows on a warm trunk; the short flows use 8 bbr subflows\):/)
  })
})
