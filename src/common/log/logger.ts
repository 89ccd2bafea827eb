/**
 * The logging interface the core sees (an interface, so tests pass a silent or recording logger). winston lives only in
 * `winston.ts`, built by each `main.ts`.
 */

/** Structured fields attached to a log line. */
export type LogFields = Readonly<Record<string, unknown>>

/** Leveled, structured logger with child scopes. */
export interface Logger {
  debug(message: string, fields?: LogFields): void
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
  /** A logger whose lines all carry `fields` (e.g. `{ flow: 7 }`). */
  child(fields: LogFields): Logger
  /** Guard for per-frame debug lines, so they cost nothing when debug is off. */
  isDebugEnabled(): boolean
}

/** A logger that drops everything: for tests and tools. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
  isDebugEnabled: () => false
}
