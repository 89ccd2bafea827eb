/** What the traffic tools' entry points share: exit codes, error reports, the runner. */
import yargs, { type Argv } from 'yargs'

import { ConfigError, PepError } from '../../common/errors.js'
import { ExpectationError, TransferError, errnoCode } from './outcome.js'

/** Exit code for a failed transfer or expectation. */
export const EXIT_FAILURE = 1
/** Exit code for bad arguments (`ConfigError`). */
export const EXIT_USAGE = 2

/** The `{ code, message }` of an error, for JSON output. */
export function errorSummary(err: unknown): { readonly code: string; readonly message: string } {
  if (err instanceof Error) {
    return { code: errnoCode(err), message: err.message }
  }
  return { code: 'EUNKNOWN', message: String(err) }
}

/**
 * Prints `err` as one line on stderr and returns the exit code: 2 for `ConfigError`, 1 for
 * other expected failures. Anything else is a bug in the tool: its stack is printed.
 */
export function reportError(program: string, err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`${program}: ${err.message} (see --help)\n`)
    return EXIT_USAGE
  }
  if (err instanceof PepError || err instanceof TransferError || err instanceof ExpectationError) {
    process.stderr.write(`${program}: ${err.message}\n`)
    return EXIT_FAILURE
  }
  const text = err instanceof Error ? (err.stack ?? err.message) : String(err)
  process.stderr.write(`${program}: internal error: ${text}\n`)
  return EXIT_FAILURE
}

/**
 * Runs a CLI `main`, maps its outcome to `process.exitCode` (letting stdout drain rather than
 * calling `process.exit`), and reports errors as `reportError` does.
 */
export function runCli(program: string, main: (argv: readonly string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.exitCode = reportError(program, err)
    }
  )
}

/**
 * The yargs parser every traffic tool starts from: unknown flags refused, `--help`/`-h`, no
 * `--version`, and any argument error thrown as a ConfigError, which `runCli` prints as one
 * line with exit code 2 (yargs would print the whole help text and exit 1).
 */
export function toolArgs(program: string, argv: readonly string[]): Argv {
  return yargs(argv)
    .scriptName(program)
    .strict()
    .version(false)
    .help()
    .alias('help', 'h')
    .wrap(100)
    .fail(function toolOnArgsError(message: string | null, err: Error | null): never {
      throw err ?? new ConfigError('arguments', message ?? 'invalid arguments')
    })
}
