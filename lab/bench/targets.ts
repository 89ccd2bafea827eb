/**
 * The targets the README holds a benchmark run to, the first round's and the satellite issue's:
 * for each, the run's figures and whether they meet it. Pure: scripts/readme-bench.mjs writes
 * targetsMarkdown() between the README's targets markers. A target whose figures the run lacks
 * (a partial or a --quick run) is "not measured in this run", never met or missed.
 */
import type { BenchRow, ShortFlowRow } from './report.js'
import { systemsFrom, type SystemSpec } from './systems.js'

// The first round's brief (the benchmark's original targets).
/** First round: at 50 ms with 0.5–2 % loss, the best Tandem row reaches this, Mbit/s. */
export const FIRST_BEST_50MS_MBIT = 90
/** First round: at 50 ms with 0.5–2 % loss, Tandem at least this many times direct cubic. */
export const FIRST_VS_CUBIC_50MS = 5
/** First round: "level with direct bbr" at 50 ms, read as the brief's own parity below (5 %). */
export const FIRST_LEVEL_SHARE = 0.95
/** First round: at 600 ms and 1 % loss, Tandem at least this many times direct cubic. */
export const FIRST_VS_CUBIC_600MS = 10
/** First round: with no loss, Tandem at least this share of the better direct TCP. */
export const FIRST_CLEAN_SHARE = 0.95
/** First round: a warm trunk's first byte at least this many RTTs before direct TCP's. */
export const FIRST_BYTE_RTTS = 1
/** First round: 1 MB at 600 ms within this factor of RTT + size/rate. */
export const FIRST_MB_SLACK = 1.2
/** First round: 1 MB at 600 ms at least this many times faster than direct TCP. */
export const FIRST_MB_SPEEDUP = 4
/** First round: the clean-link ceiling at least this share of plain TCP. */
export const FIRST_CEILING_SHARE = 0.5

// The satellite issue (long, lossy links; Tandem in its default configuration).
/** Satellite issue: goodput at 600 ms and 1 % loss, Mbit/s. */
export const SAT_600MS_1PCT_MBIT = 85
/** Satellite issue: goodput at 600 ms and 0.5 % or 2 % loss, Mbit/s. */
export const SAT_600MS_MBIT = 80
/** Satellite issue: goodput at 200 ms and 0.5–2 % loss, Mbit/s. */
export const SAT_200MS_MBIT = 88
/** Satellite issue: goodput at 50 ms and 0.5–2 % loss, Mbit/s. */
export const SAT_50MS_MBIT = 92
/** Satellite issue: on a clean link, at least this share of the better direct TCP. */
export const SAT_CLEAN_SHARE = 0.97
/** Satellite issue: retransmitted share of the trunk's bytes at most this many times the loss. */
export const SAT_RETRANS_PER_LOSS = 2
/** Satellite issue: the subflows' RTT under full load at most this many times the path's. */
export const SAT_RTT_INFLATION = 1.5
/** Satellite issue: on boxes defaulting to cubic, Tandem unconfigured keeps this share. */
export const SAT_CUBIC_BOXES_SHARE = 0.95
/** Satellite issue: 100 KB, 1 MB and 10 MB downloads at 600 ms, 1 %, by these times (ms). */
export const SAT_DOWNLOADS: readonly { readonly bytes: number; readonly ms: number }[] = [
  { bytes: 100_000, ms: 800 },
  { bytes: 1_000_000, ms: 1000 },
  { bytes: 10_000_000, ms: 2500 }
]

/** Subflows in Tandem's default configuration. */
const DEFAULT_SUBFLOWS = 8
/** Tandem's default configuration, the row both sets of targets are about. */
const DEFAULT = `tandem-${DEFAULT_SUBFLOWS}-unset`
/** The same, on boxes whose own default congestion control is cubic. */
const CUBIC_BOXES = `${DEFAULT}-cubic-boxes`
/**
 * The short-flow rows' Tandem: the default configuration (`--short-congestion auto`), or, in
 * runs made before the bench had that row, 8 bbr subflows (what it picked on the bench's boxes).
 */
const SHORT_TANDEMS = [
  `tandem-${DEFAULT_SUBFLOWS}-auto (warm trunk)`,
  `tandem-${DEFAULT_SUBFLOWS}-bbr (warm trunk)`
] as const

/** The short-flow Tandem row `run` has (SHORT_TANDEMS, in order); the first when it has none. */
function shortTandem(run: TargetRun): string {
  const names = new Set((run.short ?? []).map((r) => r.system))
  return SHORT_TANDEMS.find((n) => names.has(n)) ?? SHORT_TANDEMS[0]
}
/** The other systems Tandem is to be ahead of at 50 ms, and their names in the table. */
const RIVALS: readonly (readonly [string, string])[] = [
  ['kcptun', 'kcptun'],
  ['mptcp-4-cubic', 'MPTCP'],
  ['iperf3-P8-cubic', '`iperf3 -P 8`']
]
/** The bench's RTTs (ms) and lossy links (% each way), as the targets name them. */
const RTTS = [50, 200, 600]
const LOSSES = [0.5, 1, 2]

/** The clean-link ceiling as the bench JSON has it (medians, Mbit/s). */
export interface CeilingFigures {
  readonly direct: number
  readonly tandem: number
  readonly tandemPlain: number
}

/** What the targets read from a run; a partial run may lack any of it. */
export interface TargetRun {
  readonly rows: readonly BenchRow[]
  readonly short?: readonly ShortFlowRow[] | null | undefined
  readonly ceiling?: CeilingFigures | null | undefined
}

/** One target against the run; `result` and `met` are undefined when the run lacks a figure. */
export interface TargetResult {
  readonly figure: string
  readonly target: string
  readonly result: string | undefined
  readonly met: boolean | undefined
}

/** Thrown while computing a target whose figure the run does not have. */
class NotMeasured extends Error {}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x)
const f1 = (x: number): string => x.toFixed(1)
const f2 = (x: number): string => x.toFixed(2)
/** Three significant digits: 99.8, 110, 138. */
const sig3 = (x: number): string => String(Number(x.toPrecision(3)))
const secs = (ms: number): string => (ms / 1000).toFixed(2)
const link = (r: { readonly rttMs: number; readonly lossPercent: number }): string =>
  `${r.rttMs}/${r.lossPercent}`
const and = (xs: readonly string[]): string =>
  xs.length < 2 ? (xs[0] ?? '') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]!}`
/** "lo–hi" of already formatted figures, one figure when they round the same. */
function range(xs: readonly number[], fmt: (x: number) => string): string {
  const lo = fmt(Math.min(...xs))
  const hi = fmt(Math.max(...xs))
  return lo === hi ? lo : `${lo}–${hi}`
}
function need<T>(x: T | null | undefined): T {
  if (x === null || x === undefined) throw new NotMeasured()
  return x
}
/** `fn()`, or undefined when the run lacks a figure it needs. */
function optional<T>(fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    if (err instanceof NotMeasured) return undefined
    throw err
  }
}
function nonEmpty<T>(xs: readonly T[]): readonly T[] {
  if (xs.length === 0) throw new NotMeasured()
  return xs
}

/** A system's name in a result: "8 bbr subflows", "the default configuration". */
function systemLabel(system: string): string {
  const name = system.replace(/ \(warm trunk\)$/, '')
  if (name === `tandem-${DEFAULT_SUBFLOWS}-auto`) return 'the default configuration'
  let spec: SystemSpec | undefined
  try {
    spec = systemsFrom(name)[0]
  } catch {
    return system // a name this bench no longer knows
  }
  if (spec === undefined || spec.kind !== 'tandem') return name.replace(/^direct-/, 'direct ')
  const n = String(spec.subflows ?? '?')
  if (spec.congestion === 'unset')
    return spec.boxCongestion === undefined
      ? 'the default configuration'
      : `${n} subflows on cubic boxes`
  return `${n} ${spec.congestion} subflows`
}

/** Finds a run's figures; each getter throws NotMeasured when the run lacks it. */
function figures(run: TargetRun) {
  const short = run.short ?? []
  const row = (system: string, rtt: number, loss: number): BenchRow =>
    need(run.rows.find((r) => r.system === system && r.rttMs === rtt && r.lossPercent === loss))
  const goodput = (system: string, rtt: number, loss: number): number => {
    const g = row(system, rtt, loss).goodputMbit
    if (!isNum(g)) throw new NotMeasured()
    return g
  }
  return {
    row,
    goodput,
    bestDirect: (rtt: number, loss: number): number =>
      Math.max(goodput('direct-cubic', rtt, loss), goodput('direct-bbr', rtt, loss)),
    /** The short-flow rows of one link and size whose system name starts with `prefix`. */
    short: (prefix: string, rtt: number, loss: number, bytes: number): readonly ShortFlowRow[] =>
      nonEmpty(
        short.filter(
          (r) =>
            r.system.startsWith(prefix) &&
            r.rttMs === rtt &&
            r.lossPercent === loss &&
            r.bytes === bytes
        )
      ),
    smallestShort: (): number => Math.min(...nonEmpty(short.map((r) => r.bytes)))
  }
}

function target(
  figure: string,
  goal: string,
  measure: () => { readonly result: string; readonly met: boolean }
): TargetResult {
  const got = optional(measure)
  return { figure, target: goal, result: got?.result, met: got?.met }
}

/** The first round's targets, against Tandem's default configuration (and its best row). */
export function firstRoundTargets(run: TargetRun): TargetResult[] {
  const f = figures(run)
  const lossy50 = '50 ms, 0.5–2 % loss'
  // 1 MB at 600 ms: the limit is RTT + size/rate at the link's rate, times the slack.
  const rate = run.rows.find((r) => r.rttMs === 600)?.rateMbit
  const mbLimitMs = isNum(rate)
    ? FIRST_MB_SLACK * (600 + (8 * 1_000_000) / (rate * 1000))
    : undefined
  return [
    target(lossy50, `best Tandem ≥ ${FIRST_BEST_50MS_MBIT} Mbit/s`, () => {
      const cells = LOSSES.map((loss) => {
        const tandem = run.rows.filter(
          (r) =>
            r.system.startsWith('tandem-') &&
            r.rttMs === 50 &&
            r.lossPercent === loss &&
            isNum(r.goodputMbit)
        )
        const best = nonEmpty(tandem).reduce((a, b) => (b.goodputMbit! > a.goodputMbit! ? b : a))
        return { best, g: best.goodputMbit!, def: f.goodput(DEFAULT, 50, loss) }
      })
      return {
        result: `${cells.map((c) => `${f1(c.g)} (${systemLabel(c.best.system)})`).join(', ')}; the default row ${cells.map((c) => f1(c.def)).join(', ')}`,
        met: cells.every((c) => c.g >= FIRST_BEST_50MS_MBIT)
      }
    }),
    target(
      lossy50,
      `the default row ≥ ${FIRST_VS_CUBIC_50MS}× direct cubic, level with direct bbr (within ${sig3(100 * (1 - FIRST_LEVEL_SHARE))} %), ahead of ${and(RIVALS.map(([, name]) => name))}`,
      () => {
        const cells = LOSSES.map((loss) => ({
          t: f.goodput(DEFAULT, 50, loss),
          cubic: f.goodput('direct-cubic', 50, loss),
          bbr: f.goodput('direct-bbr', 50, loss),
          rivals: RIVALS.map(([system]) => f.goodput(system, 50, loss))
        }))
        const rivals = RIVALS.map(
          ([, name], i) => `${name} ≤ ${f1(Math.max(...cells.map((c) => c.rivals[i]!)))}`
        )
        return {
          result: `default row ${cells.map((c) => `${(c.t / c.cubic).toFixed(0)}×`).join(', ')} direct cubic; direct bbr ${cells.map((c) => f1(c.bbr)).join(' / ')}; ${rivals.join('; ')}`,
          met: cells.every(
            (c) =>
              c.t >= FIRST_VS_CUBIC_50MS * c.cubic &&
              c.t >= FIRST_LEVEL_SHARE * c.bbr &&
              c.rivals.every((r) => c.t > r)
          )
        }
      }
    ),
    target('600 ms, 1 %', `≥ ${FIRST_VS_CUBIC_600MS}× direct cubic`, () => {
      const t = f.goodput(DEFAULT, 600, 1)
      const cubic = f.goodput('direct-cubic', 600, 1)
      return {
        result: `${f1(t)} against ${f1(cubic)}${cubic > 0 ? ` (${(t / cubic).toFixed(0)}×)` : ''}`,
        met: t >= FIRST_VS_CUBIC_600MS * cubic
      }
    }),
    target(
      'no loss',
      `within ${sig3(100 * (1 - FIRST_CLEAN_SHARE))} % of the better direct TCP`,
      () => {
        const cells = RTTS.map((rtt) => ({
          t: f.goodput(DEFAULT, rtt, 0),
          d: f.bestDirect(rtt, 0)
        }))
        return {
          result: `${and(cells.map((c) => `${sig3((100 * c.t) / c.d)} %`))} at ${and(RTTS.map(String))} ms`,
          met: cells.every((c) => c.t >= FIRST_CLEAN_SHARE * c.d)
        }
      }
    ),
    target('first byte through a warm trunk', `≥ ${FIRST_BYTE_RTTS} RTT less than direct`, () => {
      const bytes = f.smallestShort()
      const ttfb = (rows: readonly ShortFlowRow[]): readonly number[] =>
        nonEmpty(rows.map((r) => r.ttfbMs).filter(isNum))
      const cells = RTTS.map((rtt) => ({
        rtt,
        t: ttfb(f.short('tandem-', rtt, 0, bytes)),
        d: ttfb(f.short('direct-', rtt, 0, bytes))
      }))
      return {
        result: cells
          .map((c) => `${range(c.t, f1)} against ${range(c.d, f1)} ms at ${c.rtt} ms`)
          .join(', '),
        met: cells.every((c) => Math.max(...c.t) <= Math.min(...c.d) - FIRST_BYTE_RTTS * c.rtt)
      }
    }),
    target(
      '1 MB at 600 ms, no loss',
      `≤ ${FIRST_MB_SLACK} × (RTT + size/rate)${mbLimitMs === undefined ? '' : ` = ${(mbLimitMs / 1000).toFixed(3)} s`}, ≥ ${FIRST_MB_SPEEDUP}× faster than direct`,
      () => {
        const limit = need(mbLimitMs)
        const tandem = f.short('tandem-', 600, 0, 1_000_000)
        const direct = f.short('direct-', 600, 0, 1_000_000)
        const shown = (r: ShortFlowRow, name: string): string =>
          `${r.completionMs === null ? `> ${r.timeoutMs / 1000}` : secs(r.completionMs)} s (${name})`
        const slowest = Math.max(...tandem.map((r) => r.completionMs ?? Infinity))
        const speedups = direct.map((r) => (r.completionMs ?? Infinity) / slowest)
        const cc = (r: ShortFlowRow): string => r.system.replace(/^direct-/, '')
        return {
          result: `${tandem.map((r) => shown(r, systemLabel(r.system))).join(', ')}; direct ${and(direct.map((r) => shown(r, cc(r))))}${speedups.every(isNum) ? `, so the slower Tandem is ${and(speedups.map((x) => `${f1(x)}×`))} faster` : ''}`,
          met: slowest <= limit && Math.min(...speedups) >= FIRST_MB_SPEEDUP
        }
      }
    ),
    target('clean-link ceiling', `≥ ${sig3(100 * FIRST_CEILING_SHARE)} % of plain TCP`, () => {
      const c = need(run.ceiling)
      const pct = (x: number): string => ((100 * x) / c.direct).toFixed(0)
      return {
        result: `${pct(c.tandemPlain)} % without encryption, ${pct(c.tandem)} % with it (${c.tandemPlain.toFixed(0)} and ${c.tandem.toFixed(0)} against ${c.direct.toFixed(0)} Mbit/s)`,
        met: Math.min(c.tandem, c.tandemPlain) >= FIRST_CEILING_SHARE * c.direct
      }
    })
  ]
}

/** The satellite issue's targets, against Tandem's default configuration. */
export function satelliteTargets(run: TargetRun): TargetResult[] {
  const f = figures(run)
  const lossy = (figure: string, rtt: number, losses: readonly number[], min: number) =>
    target(figure, `≥ ${min}`, () => {
      const cells = losses.map((loss) => ({
        loss,
        g: f.goodput(DEFAULT, rtt, loss),
        runs: f.row(DEFAULT, rtt, loss).runs
      }))
      return {
        result: cells
          .map((c) => `${c.loss} %: ${f1(c.g)} (${c.runs.map(f1).join(', ')})`)
          .join('; '),
        met: cells.every((c) => c.g >= min)
      }
    })
  const ours = run.rows.filter((r) => r.system === DEFAULT)
  const size = (b: number): string => (b >= 1e6 ? `${b / 1e6} MB` : `${b / 1e3} KB`)
  return [
    lossy('600 ms, 1 %', 600, [1], SAT_600MS_1PCT_MBIT),
    lossy('600 ms, 0.5 % and 2 %', 600, [0.5, 2], SAT_600MS_MBIT),
    lossy('200 ms, lossy', 200, LOSSES, SAT_200MS_MBIT),
    lossy('50 ms, lossy', 50, LOSSES, SAT_50MS_MBIT),
    target(
      'clean cells',
      `within ${sig3(100 * (1 - SAT_CLEAN_SHARE))} % of the better direct TCP`,
      () => {
        const cells = RTTS.map((rtt) => ({
          rtt,
          t: f.goodput(DEFAULT, rtt, 0),
          d: f.bestDirect(rtt, 0)
        }))
        return {
          result: cells
            .map((c) => `${c.rtt} ms: ${f1(c.t)} vs ${f1(c.d)} (${f1((100 * c.t) / c.d)} %)`)
            .join('; '),
          met: cells.every((c) => c.t >= SAT_CLEAN_SHARE * c.d)
        }
      }
    ),
    target(
      'retransmitted share of trunk bytes',
      `≤ ${SAT_RETRANS_PER_LOSS}× the link's loss`,
      () => {
        const cells = nonEmpty(
          ours.flatMap((r) =>
            r.lossPercent > 0 && isNum(r.retransPercent)
              ? [{ link: link(r), loss: r.lossPercent, retrans: r.retransPercent }]
              : []
          )
        )
        const worst = cells.reduce((a, b) => (b.retrans / b.loss > a.retrans / a.loss ? b : a))
        return {
          result: `highest ${f2(worst.retrans / worst.loss)}× at ${worst.link} (${cells.map((c) => `${c.link}: ${f2(c.retrans)} %`).join(', ')})`,
          met: cells.every((c) => c.retrans <= SAT_RETRANS_PER_LOSS * c.loss)
        }
      }
    ),
    target('subflow RTT under full load', `≤ ${SAT_RTT_INFLATION}× the path RTT`, () => {
      const cells = nonEmpty(
        ours.flatMap((r) =>
          r.rttMs > 0 && isNum(r.subflowRttMs)
            ? [{ link: link(r), ratio: r.subflowRttMs / r.rttMs }]
            : []
        )
      )
      const over = cells.filter((c) => c.ratio > SAT_RTT_INFLATION)
      const within = cells.filter((c) => c.ratio <= SAT_RTT_INFLATION).map((c) => c.ratio)
      const overText = over.map((c) => `${c.link} (${f2(c.ratio)}×)`).join(', ')
      return {
        result:
          within.length === 0
            ? `over in every cell: ${overText}`
            : `${range(within, f2)}× in every cell${over.length > 0 ? ` but ${overText}` : ''}`,
        met: over.length === 0
      }
    }),
    target(
      'lossy cells, boxes defaulting to cubic, Tandem unconfigured',
      `within ${sig3(100 * (1 - SAT_CUBIC_BOXES_SHARE))} % of the default row`,
      () => {
        const cells = nonEmpty(
          run.rows.filter(
            (r) => r.system === CUBIC_BOXES && r.lossPercent > 0 && isNum(r.goodputMbit)
          )
        ).map((r) => ({
          link: link(r),
          share: r.goodputMbit! / f.goodput(DEFAULT, r.rttMs, r.lossPercent)
        }))
        return {
          result: cells.map((c) => `${c.link}: ${f1(100 * c.share)} %`).join(', '),
          met: cells.every((c) => c.share >= SAT_CUBIC_BOXES_SHARE)
        }
      }
    ),
    target(
      `600 ms, 1 %: ${SAT_DOWNLOADS.map((d) => size(d.bytes)).join(' / ')} downloads through a warm trunk`,
      `≤ ${SAT_DOWNLOADS.map((d) => (d.ms / 1000).toFixed(1)).join(' / ')} s`,
      () => {
        const one = (system: string, bytes: number): ShortFlowRow =>
          need(f.short(system, 600, 1, bytes).find((r) => r.system === system))
        const shown = (r: ShortFlowRow): string =>
          r.completionMs === null ? `> ${r.timeoutMs / 1000}` : secs(r.completionMs)
        const tandem = SAT_DOWNLOADS.map((d) => one(shortTandem(run), d.bytes))
        // Direct bbr is for comparison only: the row stands without it.
        const direct = optional(() => SAT_DOWNLOADS.map((d) => shown(one('direct-bbr', d.bytes))))
        return {
          result: `${tandem.map(shown).join(' / ')} s (${systemLabel(shortTandem(run))}${direct === undefined ? '' : `; direct bbr ${direct.join(' / ')} s`})`,
          met: tandem.every(
            (r, i) => r.completionMs !== null && r.completionMs <= SAT_DOWNLOADS[i]!.ms
          )
        }
      }
    )
  ]
}

const cellText = (t: TargetResult): string => t.result ?? 'not measured in this run'
const metText = (t: TargetResult): string => (t.met === undefined ? '–' : t.met ? 'yes' : '**no**')

/**
 * Both target tables with their lead-ins, for the README (below the run's own tables): one
 * row per target, with the run's figures and yes / **no** / – (not measured).
 */
export function targetsMarkdown(run: TargetRun): string {
  const ccs = [
    ...new Set(run.rows.flatMap((r) => (r.system === DEFAULT ? (r.subflowCongestion ?? []) : [])))
  ]
  const subflows = `${DEFAULT_SUBFLOWS}${ccs.length === 1 ? ` ${ccs[0]!}` : ''} subflows${ccs.length > 1 ? ` (${ccs.join(', ')})` : ''}`
  const runs = [...new Set(run.rows.filter((r) => r.system === DEFAULT).map((r) => r.runs.length))]
  const out = [
    `**Targets of the first round**, against the tables above (Tandem: the default configuration, ${subflows} on these boxes):`,
    '',
    '| target | this run | met |',
    '|---|---|---|',
    ...firstRoundTargets(run).map(
      (t) => `| ${t.figure}: ${t.target} | ${cellText(t)} | ${metText(t)} |`
    ),
    '',
    `**Targets of the satellite issue**, against the same run (Tandem's default configuration, ${runs.length > 0 ? `median of ${runs.join('–')} flows ` : ''}on a warm trunk; the short flows use ${systemLabel(shortTandem(run))}):`,
    '',
    '| figure | target | this run | met |',
    '|---|---|---|---|',
    ...satelliteTargets(run).map(
      (t) => `| ${t.figure} | ${t.target} | ${cellText(t)} | ${metText(t)} |`
    )
  ]
  return `${out.join('\n')}\n`
}
