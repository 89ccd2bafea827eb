/**
 * The common shape of a proxy's main: parse the command line once, start, stop on a signal, and
 * turn every user mistake into one line and an exit code (2 for configuration, 1 otherwise).
 */
import { parseCli, type Role } from './cli.js'
import type { Config } from '../common/config/config.js'
import { ConfigError, isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { createLogger } from '../common/log/winston.js'

/** Something main can start and stop. */
export interface Stoppable {
  stop(): Promise<void>
}

/** Run `start` as program `role`; never throws, never prints a stack for a user mistake. */
export async function runMain(
  role: Role,
  argv: readonly string[],
  start: (config: Readonly<Config>, log: Logger) => Promise<Stoppable>
): Promise<number> {
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
    if (isPepError(err)) log.error(`cannot start: ${err.message}`, { code: err.code })
    else if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      log.error(`cannot start: ${e.code} ${e.message}`)
    } else throw err
    return err instanceof ConfigError ? 2 : 1
  }
  return await new Promise<number>((resolve) => {
    let stopping = false
    const onSignal = (signal: string): void => {
      if (stopping) return
      stopping = true
      log.info(`${signal}: stopping`)
      running.stop().then(
        () => {
          resolve(0)
        },
        () => {
          resolve(1)
        }
      )
    }
    process.on('SIGINT', () => {
      onSignal('SIGINT')
    })
    process.on('SIGTERM', () => {
      onSignal('SIGTERM')
    })
  })
}
