/**
 * The path benchmark (issue 5), on the two-path testbed (testbed/two-path.ts): the three figures
 * a user asks about when the boxes have two paths between them.
 *
 * 1. Recovery after a kill: one bulk flow over four subflows (two per path); one subflow is
 *    destroyed with `ss -K`, one reset by an injected TCP RST (full mode only), and a whole path
 *    turned into a black hole (found only by the ping timeout). For each: the longest gap in delivery at dst,
 *    the time until delivery is back at 90 % of what the surviving capacity gives, and that the
 *    transfer stayed exact (sha256) on one destination connection.
 * 2. Aggregation of two unequal paths (30 + 20 Mbit/s): plain TCP over each path, Tandem over
 *    each path alone and over both (first-free, weighted), as a share of the sum.
 * 3. Latency of small request/response exchanges on one persistent connection through a warm
 *    trunk over two lossy paths: `trunk.scheduler = redundant` against each path alone.
 *
 *   node dist/lab/bench/paths.js [--quick] [--json] [--congestion cubic]   (root)
 *
 * It prints progress on stderr and three markdown tables on stdout (the JSON result instead
 * with --json); exit status 2 for a bad flag or when namespaces cannot be used. Figure 3 runs
 * `./rr server` in dst and `./rr persistent` in src. One module per figure in paths/.
 */
import { fileURLToPath } from 'node:url'

import yargs from 'yargs'

import { errorMessage } from '../../src/common/errors.js'
import { netnsUnavailableReason } from '../testbed/netns.js'
import { createTwoPathTestbed } from '../testbed/two-path.js'
import { aggregationFigure } from './paths/aggregation.js'
import { latencyFigure } from './paths/latency.js'
import { pathBenchMarkdown } from './paths/markdown.js'
import { round } from './paths/measure.js'
import { recoveryFigure } from './paths/recovery.js'
import type { PathBenchOptions, PathBenchResult } from './paths/results.js'

export { pathBenchMarkdown }
export type * from './paths/results.js'

/**
 * Congestion control used unless told otherwise. Not the boxes' default on purpose: where that
 * is bbr, two bbr subflows sharing one shaped path overfill the emulator's tbf queue (about one
 * BDP) and lose a few percent of their packets; each loss holds the whole flow behind it in the
 * reorder buffer, so delivery at dst comes in bursts with 100-400 ms gaps even with no fault, and
 * a recovery to 90 % of the rate cannot be told from that noise. Cubic subflows deliver evenly.
 */
const DEFAULT_CONGESTION = 'cubic'

/**
 * Runs the three figures on one two-path testbed (root only). A figure that fails is reported
 * with its `error` and the others still run; the testbed is destroyed on every path.
 */
export async function runPathBench(opts: PathBenchOptions): Promise<PathBenchResult> {
  const started = new Date()
  const t0 = performance.now()
  const { quick } = opts
  const congestion = opts.congestion ?? DEFAULT_CONGESTION
  const log = (line: string): void => {
    opts.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${line}`)
  }
  log(`paths: building the two-path testbed (${quick ? 'quick' : 'full'} mode, ${congestion})`)
  const bed = await createTwoPathTestbed({ prefix: 'tpb' })
  try {
    const recovery = await recoveryFigure(bed, quick, congestion, log)
    await bed.stopAll()
    const aggregation = await aggregationFigure(bed, quick, congestion, log)
    await bed.stopAll()
    const latency = await latencyFigure(bed, quick, congestion, log)
    return {
      started: started.toISOString(),
      quick,
      elapsedS: round((performance.now() - t0) / 1000),
      recovery,
      aggregation,
      latency
    }
  } finally {
    await bed.destroy()
    log('paths: testbed removed')
  }
}

/** The benchmark's command line: `[--quick] [--json] [--congestion C]`; exit 2 on a bad flag. */
async function main(argv: readonly string[]): Promise<number> {
  let usageError: string | undefined
  const args = yargs(argv)
    .scriptName('paths.js')
    .option('quick', { type: 'boolean', default: false, describe: 'shorter runs (about 2 min)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the JSON result' })
    .option('congestion', {
      type: 'string',
      describe: `congestion control of every TCP connection across the paths (default ${DEFAULT_CONGESTION})`
    })
    .check((a) => a.congestion === undefined || /^[a-z0-9_]+$/.test(a.congestion))
    .strict()
    .version(false)
    .help()
    .fail((message: string | null) => {
      usageError = message ?? '--congestion takes a name (cubic, bbr, reno...)'
    })
    .parseSync()
  if (usageError !== undefined) {
    process.stderr.write(`paths: ${usageError.split('\n')[0] ?? ''} (see --help)\n`)
    return 2
  }
  const why = netnsUnavailableReason()
  if (why !== undefined) {
    process.stderr.write(`paths: ${why}\n`)
    return 2
  }
  const result = await runPathBench({
    quick: args.quick,
    ...(args.congestion !== undefined ? { congestion: args.congestion } : {}),
    log: (line) => {
      process.stderr.write(`${line}\n`)
    }
  })
  process.stdout.write(
    args.json ? `${JSON.stringify(result, null, 2)}\n` : pathBenchMarkdown(result)
  )
  return 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exit(code)
    },
    (err: unknown) => {
      process.stderr.write(`paths: ${errorMessage(err).split('\n')[0] ?? ''}\n`)
      process.exit(1)
    }
  )
}
