/**
 * The winston factory: the only place winston is created (the rest of the code sees only the
 * `Logger` interface, so tests can pass a silent one). Each main.ts calls it once and passes the Logger down. One line per event:
 * `2026-11-22T10:00:00.000Z info  tx_proxy flow open flow=42 dst=10.0.0.2:80`.
 */
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

/** A logger writing one line per event to stderr. `name` is the role (tx_proxy, rx_proxy). */
export function createLogger(name: string, level: string): ReloadableLogger {
  const w = winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.printf((info) => {
        const { timestamp, level: lvl, message, ...rest } = info
        return `${String(timestamp)} ${lvl.padEnd(5)} ${name} ${String(message)}${formatFields(rest)}`
      })
    ),
    transports: [
      // winston's Console is a TransportStream subclass; the rule cannot see through its typings.
      // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
      new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })
    ]
  })
  return new WinstonLogger(w)
}
