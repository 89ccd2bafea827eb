/**
 * Link emulator CLI. Runs inside the wan namespace, impairs the bridge between two ports until
 * SIGTERM/SIGINT/SIGHUP, then removes everything and prints a summary:
 *
 *   ip netns exec WAN node dist/lab/link-emulator/main.js \
 *     --port-a wa --port-b wb --delay-ms 25 --loss 1 --rate-mbit 100 --json
 *
 * Output (stdout): one `ready` line once every rule is in place (and the --ready-file, written
 * atomically), periodic `stats` lines with --json, and one `summary` line at the end. With
 * --json every line is a JSON object with an `event` field. Exit status: 0 after a signal, 2 for
 * bad arguments (one line on stderr), 1 when set-up or a delay stage fails.
 */
import { renameSync, writeFileSync } from 'node:fs'
import yargs from 'yargs'

import { ConfigError, errorMessage } from '../../src/common/errors.js'
import {
  currentNamedNetns,
  LinkEmulator,
  localRunner,
  type EmulatorStats,
  type EmulatorSummary,
  type LinkEmulatorConfig,
  type ReadyInfo,
  verifyEmulatorConfig
} from './emulator.js'

const PROGRAM = 'link-emulator'
/** Default queue numbers (per namespace, so they cannot clash with another box's queues). */
const DEFAULT_QUEUE_AB = 10
const DEFAULT_QUEUE_BA = 11
/** Default period of --json stats lines, milliseconds. */
const DEFAULT_STATS_INTERVAL_MS = 1000

/** What the command line asked for. */
interface CliOptions {
  readonly config: LinkEmulatorConfig
  readonly readyFile: string | undefined
  readonly json: boolean
  readonly statsIntervalMs: number
  readonly allowAnyNetns: boolean
}

/** Parses argv; undefined when --help was printed. @throws ConfigError */
function parseArgs(argv: readonly string[]): CliOptions | undefined {
  const args = yargs([...argv])
    .scriptName(PROGRAM)
    .usage(
      [
        'Usage: ip netns exec WAN node dist/lab/link-emulator/main.js \\',
        '         --port-a IF --port-b IF [options]',
        '',
        'Impairs the bridge between two ports of the wan namespace, both directions',
        '(ab: in at port-a, out at port-b; ba: the reverse), until SIGTERM/SIGINT/SIGHUP.',
        'SIGUSR2 prints a stats line (CPU use included).'
      ].join('\n')
    )
    .option('port-a', {
      type: 'string',
      demandOption: true,
      describe: 'bridge port towards side a'
    })
    .option('port-b', {
      type: 'string',
      demandOption: true,
      describe: 'bridge port towards side b'
    })
    .option('delay-ms', {
      type: 'number',
      default: 0,
      describe: 'one-way delay, each direction (ms)'
    })
    .option('delay-ab-ms', {
      type: 'number',
      describe: 'one-way delay a->b (ms; overrides --delay-ms)'
    })
    .option('delay-ba-ms', {
      type: 'number',
      describe: 'one-way delay b->a (ms; overrides --delay-ms)'
    })
    .option('loss', {
      type: 'number',
      default: 0,
      describe: 'random loss, each direction (percent)'
    })
    .option('loss-ab', { type: 'number', describe: 'random loss a->b (percent; overrides --loss)' })
    .option('loss-ba', { type: 'number', describe: 'random loss b->a (percent; overrides --loss)' })
    .option('rate-mbit', {
      type: 'number',
      default: 0,
      describe: 'rate limit, each direction (Mbit/s; 0: none)'
    })
    .option('rate-ab-mbit', {
      type: 'number',
      describe: 'rate limit a->b (Mbit/s; overrides --rate-mbit)'
    })
    .option('rate-ba-mbit', {
      type: 'number',
      describe: 'rate limit b->a (Mbit/s; overrides --rate-mbit)'
    })
    .option('jitter-ms', {
      type: 'number',
      default: 0,
      describe: 'uniform jitter around the delay (ms)'
    })
    .option('reorder', {
      type: 'boolean',
      default: false,
      describe: 'with jitter, let packets overtake each other (netem default); else order is kept'
    })
    .option('queue-ab', {
      type: 'number',
      default: DEFAULT_QUEUE_AB,
      describe: 'NFQUEUE number a->b'
    })
    .option('queue-ba', {
      type: 'number',
      default: DEFAULT_QUEUE_BA,
      describe: 'NFQUEUE number b->a'
    })
    .option('mode', {
      choices: ['auto', 'netem', 'nfqueue'] as const,
      default: 'auto' as const,
      describe: 'netem when the kernel has it (auto), or force one'
    })
    .option('ready-file', {
      type: 'string',
      describe: 'write the ready line (JSON) here once set up'
    })
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'JSON lines, with periodic stats'
    })
    .option('stats-interval-ms', {
      type: 'number',
      default: DEFAULT_STATS_INTERVAL_MS,
      describe: 'period of --json stats lines (ms)'
    })
    .option('allow-any-netns', {
      type: 'boolean',
      default: false,
      describe: 'run even outside a namespace from `ip netns` (e.g. on a real wan box)'
    })
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new ConfigError('arguments', err ? err.message : msg)
    })
    .wrap(null)
    .parseSync()
  if (argv.includes('--help') || argv.includes('-h')) {
    return undefined
  }
  const num = (key: string, value: number): number => {
    if (!Number.isFinite(value)) {
      throw new ConfigError(key, 'must be a number')
    }
    return value
  }
  const delay = num('delay-ms', args['delay-ms'])
  const loss = num('loss', args.loss)
  const rate = num('rate-mbit', args['rate-mbit'])
  const statsIntervalMs = num('stats-interval-ms', args['stats-interval-ms'])
  if (statsIntervalMs < 100) {
    throw new ConfigError('stats-interval-ms', 'must be >= 100')
  }
  const config = verifyEmulatorConfig({
    portA: args['port-a'],
    portB: args['port-b'],
    ab: {
      delayMs: num('delay-ab-ms', args['delay-ab-ms'] ?? delay),
      lossPercent: num('loss-ab', args['loss-ab'] ?? loss),
      rateMbit: num('rate-ab-mbit', args['rate-ab-mbit'] ?? rate),
      queueNum: num('queue-ab', args['queue-ab'])
    },
    ba: {
      delayMs: num('delay-ba-ms', args['delay-ba-ms'] ?? delay),
      lossPercent: num('loss-ba', args['loss-ba'] ?? loss),
      rateMbit: num('rate-ba-mbit', args['rate-ba-mbit'] ?? rate),
      queueNum: num('queue-ba', args['queue-ba'])
    },
    jitterMs: num('jitter-ms', args['jitter-ms']),
    reorder: args.reorder,
    mode: args.mode
  })
  return {
    config,
    readyFile: args['ready-file'],
    json: args.json,
    statsIntervalMs,
    allowAnyNetns: args['allow-any-netns']
  }
}

function line(text: string): void {
  process.stdout.write(`${text}\n`)
}

function describeConfig(c: LinkEmulatorConfig): string {
  const dir = (d: LinkEmulatorConfig['ab']): string =>
    `delay ${d.delayMs} ms, loss ${d.lossPercent}%, rate ${d.rateMbit === 0 ? 'unlimited' : `${d.rateMbit} Mbit/s`}`
  const jitter =
    c.jitterMs > 0 ? `; jitter ${c.jitterMs} ms${c.reorder ? ' (reordering)' : ''}` : ''
  return `ab [${dir(c.ab)}] ba [${dir(c.ba)}]${jitter}`
}

function readyRecord(info: ReadyInfo, config: LinkEmulatorConfig): Record<string, unknown> {
  return {
    event: 'ready',
    pid: process.pid,
    mode: info.mode,
    bridge: info.bridge,
    config,
    commands: info.commands
  }
}

function printSummary(summary: EmulatorSummary, json: boolean): void {
  if (json) {
    line(JSON.stringify({ event: 'summary', ...summary }))
    return
  }
  const c = summary.cpu
  line(
    `summary: mode ${summary.mode}, ${summary.packetsDelayed} packets delayed, max queue depth ` +
      `${summary.maxQueueDepth}, queue drops ${summary.queueDrops}, cpu ${c.cpuSeconds.toFixed(2)} s ` +
      `over ${c.wallSeconds.toFixed(1)} s (${c.percentOfCore.toFixed(1)}% of a core)` +
      (summary.cleanupErrors.length > 0
        ? `; cleanup errors: ${summary.cleanupErrors.join('; ')}`
        : '')
  )
}

function statsRecord(
  stats: EmulatorStats,
  previous: EmulatorStats | undefined
): Record<string, unknown> {
  const dCpu = stats.cpu.cpuSeconds - (previous?.cpu.cpuSeconds ?? 0)
  const dWall = stats.cpu.wallSeconds - (previous?.cpu.wallSeconds ?? 0)
  return {
    event: 'stats',
    intervalCpuPercent: dWall > 0 ? (100 * dCpu) / dWall : 0,
    ...stats
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let options: CliOptions | undefined
  try {
    options = parseArgs(argv)
    if (options === undefined) {
      return 0
    }
    if (!options.allowAnyNetns && currentNamedNetns() === undefined) {
      throw new ConfigError(
        'namespace',
        'not inside a namespace from `ip netns`: run it with `ip netns exec WAN ...` (or --allow-any-netns)'
      )
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${PROGRAM}: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const { config, json } = options

  let fatal: Error | undefined
  let wake: () => void = () => undefined
  const done = new Promise<string>((resolve) => {
    wake = () => {
      resolve('fatal')
    }
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      // A second signal while cleaning up is ignored: the rules must come off.
      process.on(signal, () => {
        resolve(signal)
      })
    }
  })
  // A bug must not leave the link black-holed: stop (and remove the rules) as for a signal.
  process.on('uncaughtException', (err) => {
    fatal ??= err
    wake()
  })
  const emulator = new LinkEmulator(config, {
    run: localRunner(),
    onFatal: (err) => {
      fatal ??= err
      wake()
    }
  })

  let info: ReadyInfo
  try {
    info = await emulator.start()
  } catch (err) {
    const reason = errorMessage(err)
    process.stderr.write(`${PROGRAM}: cannot start: ${reason}\n`)
    return err instanceof ConfigError ? 2 : 1
  }
  const ready = readyRecord(info, config)
  if (options.readyFile !== undefined) {
    const tmp = `${options.readyFile}.${process.pid}.tmp`
    writeFileSync(tmp, `${JSON.stringify(ready)}\n`)
    renameSync(tmp, options.readyFile)
  }
  line(
    json
      ? JSON.stringify(ready)
      : `ready: ${info.mode} on ${info.bridge}: ${describeConfig(config)}`
  )

  // Also what keeps the process alive in netem mode, where no queue is open.
  let previous: EmulatorStats | undefined
  const ticker = setInterval(() => {
    if (json) {
      const stats = emulator.stats()
      line(JSON.stringify(statsRecord(stats, previous)))
      previous = stats
    }
  }, options.statsIntervalMs)

  // `kill -USR2 <pid>`: one stats line (CPU included) on request, in either output mode.
  // (SIGUSR1 is Node's debugger signal.)
  process.on('SIGUSR2', () => {
    line(JSON.stringify(statsRecord(emulator.stats(), undefined)))
  })

  const why = await done
  clearInterval(ticker)
  const summary = await emulator.stop()
  printSummary(summary, json)
  if (fatal !== undefined) {
    process.stderr.write(`${PROGRAM}: stopped after a failure: ${fatal.message}\n`)
    return 1
  }
  if (!json) {
    process.stderr.write(`${PROGRAM}: ${why}: removed everything\n`)
  }
  return summary.cleanupErrors.length > 0 ? 1 : 0
}

process.exitCode = await main(process.argv.slice(2))
process.exit()
