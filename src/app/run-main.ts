/**
 * The common shape of a proxy's main: parse the command line once, start, stop on a signal, and
 * turn every user mistake into one line and an exit code (2 for the command line and the
 * configuration, 1 otherwise). The subcommands (status, genkey, check, config) run here too.
 */
import { closeSync, fchmodSync, openSync, renameSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { parseCli, parseCommand, UsageError, type Command, type Role } from './cli.js'
import { checkBox } from './check.js'
import { configList, configValues } from './config-values.js'
import type { Config } from '../common/config/config.js'
import { loadConfig } from '../common/config/load.js'
import { ConfigError, errorMessage, isPepError } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { createLogger, stderrIsJournal } from '../common/log/winston.js'
import { Ticker } from '../trunk/ticker.js'
import type { HealthAnswer } from './health.js'
import { describeChange, diffConfig, fileValues, RELOADED_BY_MAIN } from './reload.js'
import { ServiceNotifier, waitUntilReady } from './systemd.js'
import { formatStatus, queryStatus } from './control.js'
import { randomBytes } from 'node:crypto'

/** Standard output that tolerates a reader going away (`| head`): EPIPE ends output quietly. */
interface Out {
  write(text: string): void
  /** The reader closed the pipe. */
  readonly closed: boolean
}

function stdoutSink(): Out {
  let closed = false
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') closed = true
    else process.stderr.write(`stdout: ${err.message}\n`)
  })
  return {
    write(text) {
      if (!closed) process.stdout.write(text)
    },
    get closed() {
      return closed
    }
  }
}

/** `status`: read the running proxy's control socket once, or every `watchSeconds`. */
async function runStatus(
  role: Role,
  c: Extract<Command, { kind: 'status' }>,
  out: Out
): Promise<number> {
  let path = c.control
  if (path === undefined) {
    try {
      const cfg = loadConfig(c.configPath, new Map())
      path = role === 'tx_proxy' ? cfg.tx.controlSocket : cfg.rx.controlSocket
    } catch (err) {
      process.stderr.write(`${role} status: ${errorMessage(err)}\n`)
      return 2
    }
    if (path === '') {
      process.stderr.write(
        `${role} status: control_socket is empty in ${c.configPath ?? 'the defaults'}: no socket to read\n`
      )
      return 2
    }
  }
  for (;;) {
    try {
      const s = await queryStatus(path)
      const text = c.json ? JSON.stringify(s) : formatStatus(s)
      if (c.watchSeconds !== undefined && !c.json && process.stdout.isTTY)
        out.write('\x1b[2J\x1b[H')
      out.write(`${text}\n`)
    } catch (err) {
      process.stderr.write(`${role} status: ${errorMessage(err)}\n`)
      return 1
    }
    if (c.watchSeconds === undefined) return 0
    await new Promise((r) => setTimeout(r, c.watchSeconds! * 1000))
    // The reader went away (`| head`): nobody is watching any more.
    if (out.closed) return 0
  }
}

/** `genkey`: a new pre-shared key, printed or written to a file only its owner can read. */
function runGenkey(role: Role, c: Extract<Command, { kind: 'genkey' }>, out: Out): number {
  const key = `${randomBytes(32).toString('hex')}\n`
  if (c.out === undefined) {
    out.write(key)
    return 0
  }
  try {
    writeKeyFile(c.out, key, c.force)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    const why = e.code === 'EEXIST' ? 'exists; give --force to replace it' : (e.code ?? e.message)
    process.stderr.write(`${role} genkey: ${c.out}: ${why}\n`)
    return 1
  }
  process.stderr.write(
    `${role} genkey: wrote a new key to ${c.out} (mode 0600); copy it to the other box\n`
  )
  return 0
}

/**
 * Writes `text` to `path` created with mode 0600 whatever the umask: never a moment where
 * others can read it. Without `force` an existing file is an error (EEXIST); with it, the new
 * key goes to a temporary file beside it that then replaces the old one.
 */
function writeKeyFile(path: string, text: string, force: boolean): void {
  const target = force ? join(dirname(path), `.${basename(path)}.${process.pid}.tmp`) : path
  const fd = openSync(target, 'wx', 0o600)
  try {
    fchmodSync(fd, 0o600)
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
  if (force) renameSync(target, path)
}

/** `config get KEY...` / `config list`: values as the proxies read them. */
function runConfig(
  role: Role,
  c: Extract<Command, { kind: 'config-get' | 'config-list' }>,
  out: Out
): number {
  try {
    const lines =
      c.kind === 'config-get' ? configValues(c.configPath, c.keys) : configList(c.configPath)
    out.write(lines.map((l) => `${l}\n`).join(''))
    return 0
  } catch (err) {
    process.stderr.write(`${role} config: ${errorMessage(err)}\n`)
    return 2
  }
}

/** Something main can start and stop. */
export interface Stoppable {
  /** Stop; running flows get up to `graceMs` to finish. */
  stop(graceMs?: number): Promise<void>
  /** SIGHUP: apply a freshly parsed configuration (policy); running flows are untouched. */
  reload?(config: Readonly<Config>): void
  /** The network.conf keys `reload` applies; a change to any other key needs a restart. */
  readonly reloadableKeys?: readonly string[]
  /** Can it carry flows now (READY=1 waits for it, up to READY_WAIT_MS)? */
  readiness?(): HealthAnswer
}

/**
 * How long READY=1 waits for the trunk, in ms: long enough for a reachable peer to answer,
 * short enough that a peer that is down does not hold `systemctl start` (the proxy serves
 * fail-open meanwhile).
 */
export const READY_WAIT_MS = 10_000

/**
 * READY=1 once the proxy is ready or after READY_WAIT_MS, the watchdog, and a STATUS= line that
 * follows readiness (what `systemctl status` shows).
 */
function reportToSystemd(notifier: ServiceNotifier, running: Stoppable): Ticker | undefined {
  if (!notifier.enabled) return undefined
  notifier.startWatchdog()
  const readiness = (): HealthAnswer => running.readiness?.() ?? { ok: true, detail: 'ready' }
  notifier.status(`started; ${readiness().detail}`)
  void waitUntilReady(() => readiness().ok, READY_WAIT_MS).then((ok) => {
    const r = readiness()
    notifier.ready(
      ok ? r.detail : `serving fail-open, not ready after ${READY_WAIT_MS / 1000} s: ${r.detail}`
    )
  })
  let last = ''
  return new Ticker(2000, () => {
    if (!notifier.isReady) return
    const detail = readiness().detail
    if (detail !== last) notifier.status(detail)
    last = detail
  }).start()
}

/** Run `start` as program `role`; never throws, never prints a stack for a user mistake. */
export async function runMain(
  role: Role,
  argv: readonly string[],
  start: (config: Readonly<Config>, log: Logger) => Promise<Stoppable>
): Promise<number> {
  const out = stdoutSink()
  let command: Command
  try {
    command = parseCommand(role, argv, process.env.TANDEM_PROG ?? role)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${role}: usage error: ${err.message} (see --help)\n`)
      return 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${role}: config error: ${err.message}\n`)
      return 2
    }
    throw err
  }
  switch (command.kind) {
    case 'shown':
      return 0
    case 'status':
      return await runStatus(role, command, out)
    case 'genkey':
      return runGenkey(role, command, out)
    case 'config-get':
    case 'config-list':
      return runConfig(role, command, out)
    case 'check': {
      const problems = checkBox(role, command.configPath, command.user)
      for (const p of problems) process.stderr.write(`${role} check: ${p}\n`)
      if (problems.length === 0) {
        out.write(`${role} check: ok (${command.configPath ?? 'built-in defaults'})\n`)
      }
      return problems.length === 0 ? 0 : 1
    }
    case 'run':
      break
  }
  if (command.printConfig) {
    out.write(`${JSON.stringify(redacted(command.config), null, 2)}\n`)
    return 0
  }
  const config = command.config
  const configPath = command.configPath
  const log = createLogger(role, config.log.level, {
    format: config.log.format,
    journald: stderrIsJournal()
  })
  // What SIGHUP compares the file with (unreadable now: start() reports it).
  let fileBefore: ReadonlyMap<string, string> = new Map()
  try {
    fileBefore = fileValues(configPath)
  } catch {
    // it was read a moment ago; a race with an editor is reported at the next SIGHUP
  }
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
  const notifier = new ServiceNotifier(log)
  const statusTimer = reportToSystemd(notifier, running)
  return await new Promise<number>((resolve) => {
    let stopping = false
    const onSignal = (signal: string, graceMs: number): void => {
      if (stopping) return
      stopping = true
      statusTimer?.stop()
      notifier.stopping(`stopping (${signal})`)
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
        const fileNow = fileValues(configPath)
        const diff = diffConfig(fileBefore, fileNow, [
          ...RELOADED_BY_MAIN,
          ...(running.reloadableKeys ?? [])
        ])
        log.setLevel(fresh.log.level)
        running.reload?.(fresh)
        fileBefore = fileNow
        if (diff.applied.length === 0 && diff.needRestart.length === 0) {
          log.info(`SIGHUP: ${configPath ?? 'the configuration'} unchanged`)
        }
        if (diff.applied.length > 0) {
          log.info(`SIGHUP: applied ${diff.applied.map(describeChange).join(', ')}`)
        }
        for (const c of diff.needRestart) {
          // One line per key: each is something the operator expected to take effect.
          log.warn(
            `SIGHUP: ${describeChange(c)} needs a restart to take effect (systemctl restart tandem-${role.replace('_', '-')}); still running with the old value`
          )
        }
      } catch (err) {
        log.error(`SIGHUP: reload failed, keeping the running configuration: ${errorMessage(err)}`)
      }
    })
  })
}

/** The configuration as `--print-config` shows it: an inline key is never printed. */
function redacted(config: Readonly<Config>): unknown {
  if (config.security.pskHex === '') return config
  return { ...config, security: { ...config.security, pskHex: '(set, not shown)' } }
}
