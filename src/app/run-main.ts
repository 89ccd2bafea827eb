/**
 * The common shape of a proxy's main: parse the command line once, start, stop on a signal, and
 * turn every user mistake into one line and an exit code (2 for configuration, 1 otherwise).
 */
import { parseCli, type Role } from './cli.js'
import type { Config } from '../common/config/config.js'
import { ConfigError, isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { createLogger } from '../common/log/winston.js'
import { formatStatus, queryStatus } from './control.js'
import yargs from 'yargs'
import { randomBytes } from 'node:crypto'

/** `./tx_proxy status [--json] [--watch S] [-c network.conf] [--control PATH]`. */
async function runStatus(role: Role, argv: readonly string[]): Promise<number> {
  let args: {
    json: boolean
    watch: number | undefined
    control: string | undefined
    config: string | undefined
  }
  try {
    args = yargs([...argv])
      .scriptName(`./${role} status`)
      .usage(
        `Usage: ./${role} status [--json] [--watch SECONDS] [-c network.conf | --control PATH]`
      )
      .option('json', { type: 'boolean', default: false, describe: 'print the raw JSON snapshot' })
      .option('watch', { type: 'number', describe: 'refresh every SECONDS until interrupted' })
      .option('control', {
        type: 'string',
        describe: 'control socket path (default: from the config)'
      })
      .option('config', {
        alias: 'c',
        type: 'string',
        describe: 'network.conf to read the socket path from'
      })
      .strict()
      .help()
      .version(false)
      .exitProcess(false)
      .fail((msg, err) => {
        throw new ConfigError('arguments', err ? err.message : msg)
      })
      .parseSync()
    if (argv.includes('--help') || argv.includes('-h')) return 0
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${role} status: ${err.message}\n`)
      return 2
    }
    throw err
  }
  let path = args.control
  if (path === undefined) {
    try {
      const cfg = parseCli(role, args.config !== undefined ? ['-c', args.config] : []).config
      path = role === 'tx_proxy' ? cfg.tx.controlSocket : cfg.rx.controlSocket
    } catch (err) {
      process.stderr.write(`${role} status: ${err instanceof Error ? err.message : String(err)}\n`)
      return 2
    }
  }
  for (;;) {
    try {
      const s = await queryStatus(path)
      const text = args.json ? JSON.stringify(s) : formatStatus(s)
      if (args.watch !== undefined && !args.json && process.stdout.isTTY)
        process.stdout.write('\x1b[2J\x1b[H')
      process.stdout.write(`${text}\n`)
    } catch (err) {
      process.stderr.write(`${role} status: ${err instanceof Error ? err.message : String(err)}\n`)
      return 1
    }
    if (args.watch === undefined) return 0
    await new Promise((r) => setTimeout(r, Math.max(0.2, args.watch ?? 1) * 1000))
  }
}

/** Something main can start and stop. */
export interface Stoppable {
  /** Stop; running flows get up to `graceMs` to finish. */
  stop(graceMs?: number): Promise<void>
  /** SIGHUP: apply a freshly parsed configuration (policy); running flows are untouched. */
  reload?(config: Readonly<Config>): void
}

/** Run `start` as program `role`; never throws, never prints a stack for a user mistake. */
export async function runMain(
  role: Role,
  argv: readonly string[],
  start: (config: Readonly<Config>, log: Logger) => Promise<Stoppable>
): Promise<number> {
  if (argv[0] === 'status') return await runStatus(role, argv.slice(1))
  if (argv[0] === 'genkey') {
    // A new pre-shared key: 32 random bytes in hex, for security.psk_file on both boxes.
    process.stdout.write(`${randomBytes(32).toString('hex')}\n`)
    return 0
  }
  let config: Readonly<Config>
  try {
    const cli = parseCli(role, argv)
    if (cli.helpShown) return 0
    if (cli.printConfig) {
      process.stdout.write(`${JSON.stringify(cli.config, null, 2)}\n`)
      return 0
    }
    config = cli.config
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${role}: config error: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const log = createLogger(role, config.log.level)
  let running: Stoppable
  try {
    running = await start(config, log)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (err instanceof ConfigError) {
      process.stderr.write(`${role}: config error: ${err.message}\n`)
      return 2
    }
    if (isPepError(err)) log.error(`cannot start: ${err.message}`, { code: err.code })
    else if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      log.error(`cannot start: ${e.code} ${e.message}`)
    } else throw err
    return err instanceof ConfigError ? 2 : 1
  }
  return await new Promise<number>((resolve) => {
    let stopping = false
    const onSignal = (signal: string, graceMs: number): void => {
      if (stopping) return
      stopping = true
      log.info(`${signal}: stopping${graceMs > 0 ? `, flows get ${graceMs} ms to finish` : ''}`)
      running.stop(graceMs).then(
        () => {
          resolve(0)
        },
        () => {
          resolve(1)
        }
      )
    }
    process.on('SIGINT', () => {
      onSignal('SIGINT', 0)
    })
    process.on('SIGTERM', () => {
      onSignal('SIGTERM', config.trunk.shutdownGraceMs)
    })
    process.on('SIGHUP', () => {
      try {
        const fresh = parseCli(role, argv).config
        log.setLevel(fresh.log.level)
        running.reload?.(fresh)
        log.info('SIGHUP: configuration reloaded (policy, log level)')
      } catch (err) {
        log.error(
          `SIGHUP: reload failed, keeping the running configuration: ${err instanceof Error ? err.message : String(err)}`
        )
      }
    })
  })
}
