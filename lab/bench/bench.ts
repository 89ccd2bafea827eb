/**
 * `npm run bench`: goodput of a bulk transfer over an emulated bad link for direct TCP, Tandem
 * and the alternatives a user would pick (iperf3 -P 8, kcptun, kernel MPTCP), short-flow
 * completion times, CPU per GB and the clean-link ceiling. Prints a markdown table, writes JSON
 * and an SVG plot (goodput against loss, one line per system, one panel per RTT).
 *
 *   npm run bench -- --quick            one RTT (50 ms), loss 0 and 1 %, one run each
 *   npm run bench                       RTT 50/200/600 ms × loss 0/0.5/1/2 %, median of 3
 *   npm run bench -- --rtt 600 --loss 1 --systems direct-cubic,tandem-8-bbr
 *   npm run bench -- --systems direct-bbr,tandem-8-bbr,tandem-8-unset-cubic-boxes
 *                                       Tandem unconfigured on boxes that default to cubic
 *
 * Tandem rows also report what tx_proxy's subflows say (status --json, TCP_INFO): the share of
 * their bytes they retransmitted and their RTT under full load.
 *
 * The alternatives come from Debian's packages, which `sh scripts/setup.sh --bench` installs;
 * a system whose program is missing is reported as n/a. One module per job: systems.ts (the
 * bulk transfers), short-flows.ts, report.ts (rows and markdown), paths.ts (two paths).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import yargs from 'yargs'

import { errorMessage } from '../../src/common/errors.js'
import { netnsUnavailableReason } from '../testbed/netns.js'
import { createImpairedTestbed, type ImpairedTestbed } from '../testbed/impaired.js'
import { PROJECT_ROOT } from '../testbed/topology.js'
import { median } from './median.js'
import { pathBenchMarkdown, runPathBench, type PathBenchResult } from './paths.js'
import { renderPlot } from './plot.js'
import { markdown, type BenchRow, type ShortFlowRow } from './report.js'
import { shortTandemSpec } from './short-flow.js'
import { shortFlows } from './short-flows.js'
import {
  runOnce,
  runTandemSession,
  type Measured,
  setupMptcp,
  startReceiver,
  systemsFrom,
  type Receivers,
  type SystemSpec,
  type TrunkFigures
} from './systems.js'

export type { BenchRow, ShortFlowRow }

/** Short-flow download sizes: 1 KB (time to first byte of a small exchange), then downloads. */
const SHORT_FLOW_SIZES = [1_000, 100_000, 1_000_000, 10_000_000]

function parseArgs(argv: readonly string[]) {
  return yargs(argv)
    .scriptName('npm run bench --')
    .option('quick', {
      type: 'boolean',
      default: false,
      describe: 'one RTT (50 ms), loss 0 and 1 %, one run'
    })
    .option('rtt', { type: 'string', describe: 'RTTs in ms, comma-separated (default 50,200,600)' })
    .option('loss', {
      type: 'string',
      describe: 'loss percentages, comma-separated (default 0,0.5,1,2)'
    })
    .option('rate', { type: 'number', default: 100, describe: 'link rate, Mbit/s' })
    .option('runs', {
      type: 'number',
      describe: 'runs per cell (median) for the core systems; default 3, quick 1'
    })
    .option('core', {
      type: 'string',
      default:
        'direct-cubic,direct-bbr,tandem-8-unset,tandem-8-unset-cubic-boxes,iperf3-P8-cubic,kcptun,mptcp-4-cubic',
      describe: 'systems measured --runs times; the others (the subflow sweep) --sweep-runs times'
    })
    .option('sweep-runs', {
      type: 'number',
      describe: 'runs per cell for the other systems (subflow sweep, alternatives); default 1'
    })
    .option('seconds', {
      type: 'number',
      describe:
        'bulk transfer length; default 8 s at RTT <= 50 ms, 10 s to 200 ms, 15 s above; quick 12'
    })
    .option('systems', {
      type: 'string',
      describe:
        "comma-separated systems: direct-{cubic,bbr}, tandem-N-{bbr,cubic,tandem,unset}[-cubic-boxes][-fNk] (unset: no trunk.congestion; -cubic-boxes: both boxes default to cubic), iperf3-P8-{cubic,bbr}, kcptun, mptcp-4-{cubic,bbr}; 'none' for no bulk transfers"
    })
    .option('short', { type: 'boolean', default: true, describe: 'also time short flows' })
    .option('short-congestion', {
      type: 'string',
      default: 'auto,bbr,cubic',
      describe:
        "subflow congestion controls for the short-flow Tandem rows; CC-rN{k,m} also sends each flow's first N bytes on two subflows (trunk.redundant_first_bytes)"
    })
    .option('short-direct', {
      type: 'boolean',
      default: true,
      describe:
        'also time short flows over direct TCP (cubic, bbr): false to compare Tandem rows only'
    })
    .option('ceiling', {
      type: 'boolean',
      default: true,
      describe: 'also measure the clean-link ceiling'
    })
    .option('paths', {
      type: 'boolean',
      default: true,
      describe:
        'also the two-path rows: recovery after a subflow kill, aggregation, redundant p99 latency'
    })
    .option('out', {
      type: 'string',
      default: join(PROJECT_ROOT, 'results'),
      describe: 'where JSON and markdown go'
    })
    .strict()
    .help()
    .version(false)
    .parseSync()
}

/** What a run measures, from the command line. */
interface BenchPlan {
  readonly quick: boolean
  readonly rtts: readonly number[]
  readonly losses: readonly number[]
  readonly rateMbit: number
  readonly runs: number
  readonly sweepRuns: number
  readonly core: ReadonlySet<string>
  readonly systems: readonly SystemSpec[]
  readonly short: boolean
  readonly shortCongestions: readonly string[]
  readonly shortDirect: boolean
  /** Bulk transfer length at `rttMs`, s: long enough to leave slow start (about ten RTTs). */
  secondsFor(rttMs: number): number
}

function planFrom(args: ReturnType<typeof parseArgs>): BenchPlan {
  const quick = args.quick
  const runs = args.runs ?? (quick ? 1 : 3)
  const defaultSystems = quick
    ? 'direct-cubic,direct-bbr,tandem-8-unset,tandem-8-bbr,iperf3-P8-cubic,kcptun,mptcp-4-cubic'
    : 'direct-cubic,direct-bbr,tandem-8-unset,tandem-8-unset-cubic-boxes,tandem-1-bbr,tandem-2-bbr,tandem-4-bbr,tandem-8-bbr,tandem-16-bbr,tandem-1-cubic,tandem-2-cubic,tandem-4-cubic,tandem-8-cubic,tandem-16-cubic,iperf3-P8-cubic,kcptun,mptcp-4-cubic'
  return {
    quick,
    rtts: (args.rtt ?? (quick ? '50' : '50,200,600')).split(',').map(Number),
    losses: (args.loss ?? (quick ? '0,1' : '0,0.5,1,2')).split(',').map(Number),
    rateMbit: args.rate,
    runs,
    sweepRuns: args.sweepRuns ?? Math.min(1, runs),
    core: new Set(args.core.split(',')),
    systems: systemsFrom(args.systems ?? defaultSystems),
    short: args.short,
    shortDirect: args.shortDirect,
    shortCongestions: args.shortCongestion.split(',').map((spec) => {
      shortTandemSpec(spec) // a malformed row is refused before any link is built
      return spec
    }),
    secondsFor: (rttMs) => args.seconds ?? (quick ? 12 : rttMs <= 50 ? 8 : rttMs <= 200 ? 10 : 15)
  }
}

/**
 * The alternatives whose programs are not installed. The benchmark installs nothing itself
 * (`sh scripts/setup.sh --bench` does): it says what is missing and reports those rows n/a.
 */
function unavailableSystems(): Set<string> {
  const have = (cmd: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  }
  const unavailable = new Set<string>()
  if (!have('iperf3')) unavailable.add('iperf3')
  if (!have('kcptun-client')) unavailable.add('kcptun')
  if (!have('mptcpize')) unavailable.add('mptcp')
  if (unavailable.size > 0) {
    process.stderr.write(
      `bench: not installed: ${[...unavailable].join(', ')} (their rows read n/a; sh scripts/setup.sh --bench installs them)\n`
    )
  }
  return unavailable
}

/** Whether `sys` cannot run on this link. */
function skipped(sys: SystemSpec, unavailable: ReadonlySet<string>, receivers: Receivers): boolean {
  switch (sys.kind) {
    case 'iperf3':
    case 'kcptun':
      return unavailable.has(sys.kind)
    case 'mptcp':
      return unavailable.has('mptcp') || receivers.mptcp === undefined
    case 'direct':
    case 'tandem':
      return false
  }
}

/** `runs` transfers of `sys` on one link, as one row (median goodput, CPU per GB). */
async function measureSystem(
  bed: ImpairedTestbed,
  receivers: Receivers,
  sys: SystemSpec,
  runs: number,
  seconds: number
): Promise<BenchRow> {
  const base = {
    system: sys.name,
    rttMs: bed.link.rttMs,
    lossPercent: bed.link.lossPercent,
    rateMbit: bed.link.rateMbit
  }
  const samples: number[] = []
  const cpu: { tx: number; rx: number }[] = []
  const trunk: TrunkFigures[] = []
  let note: string | undefined
  let cold: number | undefined
  const add = (r: Measured): void => {
    samples.push(r.mbit)
    if (r.cpu !== undefined) cpu.push(r.cpu)
    if (r.trunk !== undefined) trunk.push(r.trunk)
  }
  if (sys.kind === 'tandem') {
    // One pair per row and link: its first flow meets a cold trunk (reported apart), the
    // measured ones the warm trunk a deployed pair gives every flow after its first.
    const r = await runTandemSession(bed, receivers, sys, seconds, runs)
    cold = r.cold?.mbit
    r.warm.forEach(add)
    if (r.error !== undefined) note = r.error.slice(0, 80)
  } else {
    for (let i = 0; i < runs; i++) {
      try {
        add(await runOnce(bed, receivers, sys, seconds))
      } catch (err) {
        note = errorMessage(err).slice(0, 80)
      }
    }
  }
  const g = samples.length > 0 ? median(samples) : undefined
  const figures = trunkColumns(trunk)
  const trunkNote =
    figures.retransPercent === undefined
      ? ''
      : `  retrans ${figures.retransPercent.toFixed(2)} %, subflow rtt ${figures.subflowRttMs?.toFixed(0) ?? '?'} ms, ${figures.congestion ?? '?'} [${figures.subflowCongestion?.join(',') ?? ''}]`
  const coldNote = cold !== undefined ? `  first flow (cold trunk) ${cold.toFixed(1)}` : ''
  process.stderr.write(
    `   ${sys.name.padEnd(18)} ${g === undefined ? (note !== undefined ? `failed: ${note}` : 'failed') : `${g.toFixed(1)} Mbit/s`}  [${samples.map((x) => x.toFixed(1)).join(', ')}]${trunkNote}${coldNote}\n`
  )
  return {
    ...base,
    goodputMbit: g,
    runs: samples,
    ...(cold !== undefined ? { coldGoodputMbit: cold } : {}),
    ...figures,
    ...(cpu.length > 0
      ? {
          cpuSecondsPerGB: median(cpu.map((c) => c.tx + c.rx)),
          cpuTxSecondsPerGB: median(cpu.map((c) => c.tx)),
          cpuRxSecondsPerGB: median(cpu.map((c) => c.rx))
        }
      : {}),
    ...(note !== undefined && g === undefined ? { note: `failed (${note})` } : {})
  }
}

/** The trunk columns of a row: medians over the runs that read them. */
function trunkColumns(
  trunk: readonly TrunkFigures[]
): Pick<BenchRow, 'retransPercent' | 'subflowRttMs' | 'congestion' | 'subflowCongestion'> {
  if (trunk.length === 0) return {}
  const rtts = trunk.flatMap((t) => (t.subflowRttMs !== undefined ? [t.subflowRttMs] : []))
  const last = trunk[trunk.length - 1]!
  return {
    retransPercent: median(trunk.map((t) => t.retransPercent)),
    ...(rtts.length > 0 ? { subflowRttMs: median(rtts) } : {}),
    ...(last.congestion !== undefined ? { congestion: last.congestion } : {}),
    subflowCongestion: [...new Set(trunk.flatMap((t) => t.subflowCongestion))]
  }
}

/** Every system on one impaired link, then its short flows; rows are appended as they come. */
async function measureLink(
  plan: BenchPlan,
  rttMs: number,
  lossPercent: number,
  unavailable: ReadonlySet<string>,
  out: { rows: BenchRow[]; short: ShortFlowRow[] }
): Promise<void> {
  process.stderr.write(
    `\n== link: ${rttMs} ms RTT, ${lossPercent} % loss each way, ${plan.rateMbit} Mbit/s\n`
  )
  const seconds = plan.secondsFor(rttMs)
  const bed = await createImpairedTestbed('bench', { rttMs, lossPercent, rateMbit: plan.rateMbit })
  try {
    const receivers: Receivers = {
      main: await startReceiver(bed, 5201, seconds),
      mptcp:
        plan.systems.some((s) => s.kind === 'mptcp') && !unavailable.has('mptcp')
          ? await setupMptcp(bed, seconds).catch(() => undefined)
          : undefined
    }
    for (const sys of plan.systems) {
      if (skipped(sys, unavailable, receivers)) {
        out.rows.push({
          system: sys.name,
          rttMs,
          lossPercent,
          rateMbit: plan.rateMbit,
          goodputMbit: undefined,
          runs: [],
          note: 'n/a'
        })
        continue
      }
      const runs = plan.core.has(sys.name) ? plan.runs : plan.sweepRuns
      out.rows.push(await measureSystem(bed, receivers, sys, runs, seconds))
    }
    await receivers.main.stop()
    await receivers.mptcp?.stop()
    // Short flows on a clean and a 1 % link (or the last loss rate when 1 % is not measured).
    const shortLosses = plan.losses.includes(1) ? [0, 1] : [plan.losses[plan.losses.length - 1]]
    if (plan.short && shortLosses.includes(lossPercent)) {
      out.short.push(
        ...(await shortFlows(
          bed,
          SHORT_FLOW_SIZES,
          Math.max(1, plan.runs),
          plan.shortCongestions,
          plan.shortDirect
        ))
      )
    }
    const stats = bed.emulator
      ?.output()
      .split('\n')
      .filter((l) => l.includes('"stats"'))
      .pop()
    process.stderr.write(`   emulator: ${stats?.slice(0, 200) ?? ''}\n`)
  } finally {
    await bed.destroy()
  }
}

/** The clean-link ceiling of the pair, with Tandem's share of direct TCP. */
interface Ceiling {
  readonly direct: number
  readonly tandem: number
  readonly tandemPlain: number
  readonly runs: number[][]
}

/** Direct TCP and Tandem (encrypted, plain) on an unimpaired link, interleaved, median of `runs`. */
async function measureCeiling(runs: number): Promise<Ceiling | undefined> {
  process.stderr.write(`\n== clean link (no emulator): the ceiling of the pair\n`)
  const bed = await createImpairedTestbed('bench', { rttMs: 0, lossPercent: 0, rateMbit: 0 })
  try {
    const receiver = await startReceiver(bed, 5201, 8)
    // Interleaved: this machine is shared and its speed drifts.
    const systems: SystemSpec[] = [
      { name: 'direct', kind: 'direct', congestion: 'cubic' },
      { name: 'tandem-8-cubic', kind: 'tandem', congestion: 'cubic', subflows: 8 },
      {
        name: 'tandem-8-cubic-plain',
        kind: 'tandem',
        congestion: 'cubic',
        subflows: 8,
        plain: true
      }
    ]
    const got: number[][] = systems.map(() => [])
    for (let i = 0; i < runs; i++) {
      for (const [k, sys] of systems.entries())
        got[k]!.push((await runOnce(bed, { main: receiver }, sys, 8)).mbit)
    }
    const [d, t, p] = got.map((g) => median(g)) as [number, number, number]
    process.stderr.write(
      `   direct ${d.toFixed(0)} Mbit/s, Tandem ${t.toFixed(0)} Mbit/s encrypted, ${p.toFixed(0)} Mbit/s plain (${got.map((g) => g.map((x) => x.toFixed(0)).join('/')).join('; ')})\n`
    )
    await receiver.stop()
    return { direct: d, tandem: t, tandemPlain: p, runs: got }
  } catch (err) {
    process.stderr.write(`   ceiling failed: ${errorMessage(err)}\n`)
    return undefined
  } finally {
    await bed.destroy()
  }
}

/** Everything measured so far, and where it is written. */
interface Results {
  readonly meta: string
  readonly outDir: string
  readonly stamp: string
  readonly runs: number
  readonly rows: BenchRow[]
  readonly short: ShortFlowRow[]
  ceiling?: Ceiling | undefined
  paths?: PathBenchResult | undefined
}

/** Writes JSON, markdown and the plot; after every link too, so a stopped run keeps its rows. */
function writeResults(r: Results, done: boolean): string {
  let md = markdown(r.rows, r.short, done ? r.meta : `${r.meta} (partial: still running)`)
  const c = r.ceiling
  if (c !== undefined) {
    md += `\nClean-link ceiling (no impairment, 8 s transfers, median of ${r.runs} interleaved runs): direct TCP ${c.direct.toFixed(0)} Mbit/s; Tandem (8 subflows) ${c.tandem.toFixed(0)} Mbit/s encrypted = ${((100 * c.tandem) / c.direct).toFixed(0)} %, ${c.tandemPlain.toFixed(0)} Mbit/s without encryption = ${((100 * c.tandemPlain) / c.direct).toFixed(0)} %.\n`
  }
  if (r.paths !== undefined) md += `\n${pathBenchMarkdown(r.paths)}`
  const { meta, rows, short, ceiling, paths } = r
  const json = JSON.stringify({ meta, done, rows, short, ceiling, paths }, null, 2)
  writeFileSync(join(r.outDir, `bench-${r.stamp}.json`), json)
  writeFileSync(join(r.outDir, 'latest.json'), json)
  writeFileSync(join(r.outDir, 'latest.md'), md)
  writeFileSync(join(r.outDir, 'latest.svg'), renderPlot(r.rows))
  return md
}

/** One line naming the run: when, which mode, what was measured and the command given. */
function metaLine(plan: BenchPlan, started: Date, given: readonly string[]): string {
  const secondsList = plan.rtts.map((r) => `${plan.secondsFor(r)} s at ${r} ms`).join(', ')
  const bulk =
    plan.systems.length === 0
      ? 'no bulk transfers'
      : `bulk transfers of ${secondsList}, goodput counted at the receiver; Tandem rows: one pair per link, its first flow on a cold trunk reported apart, the measured flows on the warm trunk it left; ${plan.runs} run(s) per cell (median) for ${[...plan.core].join(', ')}, ${plan.sweepRuns} for the others`
  const commandArgs = given.length > 0 ? ` -- ${given.join(' ')}` : ''
  return `Tandem benchmark, ${started.toISOString()}, ${plan.quick ? 'quick mode' : 'full mode'}: ${bulk}; command: npm run bench${commandArgs}`
}

async function main(): Promise<number> {
  const given = process.argv.slice(2)
  const args = parseArgs(given)
  const why = netnsUnavailableReason()
  if (why !== undefined) {
    process.stderr.write(`bench: ${why}\n`)
    return 2
  }
  const plan = planFrom(args)
  const unavailable = unavailableSystems()
  const started = new Date()
  mkdirSync(args.out, { recursive: true })
  const results: Results = {
    // The command as it was given, so that every figure names what produced it.
    meta: metaLine(plan, started, given),
    outDir: args.out,
    stamp: started.toISOString().replace(/[:.]/g, '-'),
    runs: plan.runs,
    rows: [],
    short: []
  }
  for (const rttMs of plan.rtts) {
    for (const lossPercent of plan.losses) {
      await measureLink(plan, rttMs, lossPercent, unavailable, results)
      writeResults(results, false)
    }
  }
  if (args.ceiling) {
    results.ceiling = await measureCeiling(plan.runs)
    writeResults(results, false)
  }
  if (args.paths) {
    process.stderr.write(`\n== two paths between the boxes (recovery, aggregation, latency)\n`)
    // A failure here must not lose the matrix measured so far: it is reported and skipped.
    results.paths = await runPathBench({
      quick: plan.quick,
      log: (line) => process.stderr.write(`   ${line}\n`)
    }).catch((err: unknown) => {
      process.stderr.write(`   two-path rows failed: ${errorMessage(err)}\n`)
      return undefined
    })
  }
  const md = writeResults(results, true)
  process.stdout.write(
    `\n${md}\nWrote ${join(args.out, 'latest.json')}, latest.md and latest.svg\n`
  )
  return 0
}

main().then(
  (code) => {
    process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${errorMessage(err)}\n`)
    process.exit(1)
  }
)
