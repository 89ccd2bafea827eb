/** Figure 2 of the path benchmark: aggregation of two unequal paths. */

import { slopeMbit, type DuplexReport } from '../../testbed/delivery.js'
import { type PathName, type TwoPathTestbed } from '../../testbed/two-path.js'
import { linkText, round, sentPerPath, SUBFLOWS_PER_PATH, errorText } from './measure.js'
import type { AggregationRatio, AggregationResult, AggregationRun, PathLinks } from './results.js'
import { tandemTransfer, tcpTransfer } from './transfer.js'

const AGGREGATION_LINKS: PathLinks = {
  a: { delayMs: 25, rateMbit: 30 },
  b: { delayMs: 25, rateMbit: 20 }
}

export async function aggregationFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<AggregationResult> {
  const links = AGGREGATION_LINKS
  const seconds = quick ? 5 : 12
  // Steady state: start-up left out (several RTTs of slow start and the window growing), and
  // the last second (the sender stops).
  const steadyFromMs = quick ? 2000 : 3000
  const steadyToMs = (seconds - 1) * 1000
  const nominalSumMbit = (links.a.rateMbit ?? 0) + (links.b.rateMbit ?? 0)
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    seconds,
    steadyFromMs,
    steadyToMs,
    nominalSumMbit
  }
  log(`aggregation: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${seconds} s runs`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const steady = (r: DuplexReport): number =>
    round(slopeMbit(r.samples, r.firstByteAt + steadyFromMs, r.firstByteAt + steadyToMs), 2)
  const runs: AggregationRun[] = []
  let port = 5610
  const plan: readonly {
    name: string
    system: 'tcp' | 'tandem'
    paths: readonly PathName[]
    scheduler: string | null
  }[] = [
    { name: 'TCP, path a', system: 'tcp', paths: ['a'], scheduler: null },
    { name: 'TCP, path b', system: 'tcp', paths: ['b'], scheduler: null },
    { name: 'Tandem, path a only', system: 'tandem', paths: ['a'], scheduler: 'first-free' },
    { name: 'Tandem, path b only', system: 'tandem', paths: ['b'], scheduler: 'first-free' },
    {
      name: 'Tandem, both, first-free',
      system: 'tandem',
      paths: ['a', 'b'],
      scheduler: 'first-free'
    },
    { name: 'Tandem, both, weighted', system: 'tandem', paths: ['a', 'b'], scheduler: 'weighted' }
  ]
  try {
    for (const c of plan) {
      const p = port++
      try {
        if (c.system === 'tcp') {
          const path = c.paths[0] ?? 'a'
          const { report, sent } = await tcpTransfer(bed, path, p, seconds, congestion)
          runs.push({
            ...c,
            goodputMbit: steady(report),
            sentMbit: null,
            sha256Equal: sent?.sentSha256 === report.receivedSha256
          })
        } else {
          const t = await tandemTransfer(
            bed,
            `agg-${p}`,
            {
              destinationPort: p,
              paths: c.paths,
              subflowsPerPath: SUBFLOWS_PER_PATH,
              overrides: {
                'trunk.scheduler': c.scheduler ?? 'first-free',
                'trunk.congestion': congestion
              }
            },
            ['--duration', String(seconds), '--timeout', String(seconds + 60)],
            0
          )
          if (t.streamFailure !== undefined) throw new Error(t.streamFailure)
          runs.push({
            ...c,
            goodputMbit: steady(t.report),
            sentMbit:
              t.txStatus === undefined
                ? null
                : sentPerPath(t.txStatus, t.report.lastByteAt - t.report.firstByteAt),
            sha256Equal: t.sent?.sentSha256 === t.report.receivedSha256
          })
        }
      } catch (err) {
        runs.push({
          ...c,
          goodputMbit: null,
          sentMbit: null,
          sha256Equal: null,
          error: errorText(err)
        })
      }
      const r = runs[runs.length - 1]
      log(`aggregation: ${c.name}: ${r?.goodputMbit ?? r?.error ?? '?'} Mbit/s`)
    }
  } catch (err) {
    return { ...base, runs, ratios: [], error: errorText(err) }
  } finally {
    for (const e of emulators) await e.stop()
  }
  const g = (name: string): number | null => runs.find((r) => r.name === name)?.goodputMbit ?? null
  const sum = (x: number | null, y: number | null): number | null =>
    x === null || y === null ? null : x + y
  const tcpSum = sum(g('TCP, path a'), g('TCP, path b'))
  const tandemA = g('Tandem, path a only')
  const tandemSum = sum(tandemA, g('Tandem, path b only'))
  const pct = (x: number, of: number | null): number | null =>
    of === null || of <= 0 ? null : round((100 * x) / of)
  const ratios: AggregationRatio[] = []
  for (const r of runs) {
    if (r.paths.length < 2 || r.goodputMbit === null) continue
    ratios.push({
      name: r.name,
      aggregateMbit: r.goodputMbit,
      ofNominalPct: round((100 * r.goodputMbit) / nominalSumMbit),
      ofTcpSumPct: pct(r.goodputMbit, tcpSum),
      ofTandemSumPct: pct(r.goodputMbit, tandemSum),
      vsFasterAlone: tandemA === null || tandemA <= 0 ? null : round(r.goodputMbit / tandemA, 2)
    })
  }
  return { ...base, runs, ratios }
}
