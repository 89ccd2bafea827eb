/**
 * The winston factory: the only place winston is created (the rest of the code sees only
 * the `Logger` interface, so tests can pass a silent one). Each main.ts
 * calls it once and passes the Logger down. One line per event:
 * `2026-11-22T10:00:00.000Z info  tx_proxy flow open flow=42 dst=10.0.0.2:80`, or with
 * log.format = json `{"time":"…","level":"info","role":"tx_proxy","msg":"flow open","flow":42}`.
 * Under systemd each line starts with its syslog priority (`<6>`), which journald turns into
 * the entry's priority (`journalctl -p warning` then shows warnings and worse).
 */
import { fstatSync } from 'node:fs'
import winston from 'winston'
import type { LogFields, Logger } from './logger.js'

function formatFields(fields: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || k === 'level' || k === 'message' || k === 'timestamp') continue
    parts.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
  }
  return parts.length > 0 ? ` ${parts.join(' ')}` : ''
}

class WinstonLogger implements Logger {
  constructor(private readonly w: winston.Logger) {}
  debug(message: string, fields?: LogFields): void {
    this.w.debug(message, fields)
  }
  info(message: string, fields?: LogFields): void {
    this.w.info(message, fields)
  }
  warn(message: string, fields?: LogFields): void {
    this.w.warn(message, fields)
  }
  error(message: string, fields?: LogFields): void {
    this.w.error(message, fields)
  }
  child(fields: LogFields): Logger {
    return new WinstonLogger(this.w.child(fields))
  }
  isDebugEnabled(): boolean {
    return this.w.isDebugEnabled()
  }
  /** Change the level (SIGHUP reload); children follow their parent. */
  setLevel(level: string): void {
    this.w.level = level
  }
}

/** A logger whose level can change at run time. */
export type ReloadableLogger = Logger & { setLevel(level: string): void }

/** How lines are written. */
export interface LogOutput {
  /** text: one readable line; json: one object per line. */
  readonly format: 'text' | 'json'
  /**
   * Prefix each line with its syslog priority (`<4>` for a warning) and leave the timestamp to
   * the journal: set when stderr is the journal (see `stderrIsJournal`).
   */
  readonly journald: boolean
}

/** syslog(3) priorities of our levels, as journald reads them from a `<N>` prefix. */
const PRIORITY: Readonly<Record<string, number>> = { error: 3, warn: 4, info: 6, debug: 7 }

/**
 * True when stderr is connected to the journal: systemd sets JOURNAL_STREAM to the device and
 * inode of that stream, so a redirected stderr (a file, a pipe) is told apart.
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '')
  if (!m) return false
  try {
    const st = fstatSync(2, { bigint: true })
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!)
  } catch {
    return false
  }
}

/** One log line (without the newline). Exported for tests. */
export function formatLine(
  name: string,
  output: LogOutput,
  info: { level: string; message: unknown; timestamp?: unknown; [k: string]: unknown }
): string {
  const { timestamp, level: lvl, message, ...rest } = info
  const prefix = output.journald ? `<${PRIORITY[lvl] ?? 6}>` : ''
  if (output.format === 'json') {
    const fields: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) fields[k] = v
    return `${prefix}${JSON.stringify({
      ...(output.journald ? {} : { time: timestamp }),
      level: lvl,
      role: name,
      msg: String(message),
      ...fields
    })}`
  }
  const time = output.journald ? '' : `${String(timestamp)} `
  return `${prefix}${time}${lvl.padEnd(5)} ${name} ${String(message)}${formatFields(rest)}`
}

/** A logger writing one line per event to stderr. `name` is the role (tx_proxy, rx_proxy). */
export function createLogger(
  name: string,
  level: string,
  output: LogOutput = { format: 'text', journald: false }
): ReloadableLogger {
  const w = winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf((info) => formatLine(name, output, info))
    ),
    transports: [
      // winston's Console is a TransportStream subclass; the rule cannot see through its typings.
      // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
      new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })
    ]
  })
  return new WinstonLogger(w)
}
