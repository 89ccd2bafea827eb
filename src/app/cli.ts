/**
 * Command-line parsing shared by tx_proxy and rx_proxy (yargs). The default command runs the
 * proxy; `status`, `genkey`, `check` and `config get|list` are subcommands. Role flags are
 * shortcuts for network.conf keys; `--set section.key=value` reaches every key.
 */
import { existsSync, readFileSync } from 'node:fs'
import yargs, { type Argv } from 'yargs'
import { ConfigError } from '../common/errors.js'
import { type Config } from '../common/config/config.js'
import { loadConfig, parseOverrides } from '../common/config/load.js'
import { KEYS, type KeySpec } from '../common/config/schema.js'

/** Which program is parsing. */
export type Role = 'tx_proxy' | 'rx_proxy'

/** Where the Debian package (and the README's deployment) keeps the configuration. */
export const INSTALLED_CONFIG = '/etc/tandem/network.conf'

/** A mistake on the command line itself (unknown command or flag, bad flag value): exit 2. */
export class UsageError extends Error {
  readonly code = 'USAGE'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

/** Shortcut flags per role: flag name → network.conf key. */
const SHORTCUTS: Readonly<Record<Role, Readonly<Record<string, string>>>> = {
  tx_proxy: {
    'local-ip': 'tx_proxy.local_ip',
    'local-port': 'tx_proxy.local_port',
    'rx-proxy-ip': 'tx_proxy.rx_proxy_ip',
    'rx-proxy-port': 'tx_proxy.rx_proxy_port',
    destination: 'tx_proxy.destination',
    subflows: 'tx_proxy.subflows',
    scheduler: 'trunk.scheduler',
    'log-level': 'log.level'
  },
  rx_proxy: {
    'recv-ip': 'rx_proxy.recv_ip',
    'recv-port': 'rx_proxy.recv_port',
    scheduler: 'trunk.scheduler',
    'log-level': 'log.level'
  }
}

/** Width of the help text. Fixed, not the terminal's: yargs' own wrapping splits words. */
const HELP_WIDTH = 100
/** Width of an option's description column. */
const OPTION_WIDTH = 64

/** `text` broken at spaces into lines of at most `width` characters, later lines indented. */
export function wordWrap(text: string, width: number, indent = ''): string {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    const prefix = lines.length === 0 ? '' : indent
    if (line !== '' && prefix.length + line.length + 1 + word.length > width) {
      lines.push(prefix + line)
      line = word
    } else line = line === '' ? word : `${line} ${word}`
  }
  if (line !== '') lines.push((lines.length === 0 ? '' : indent) + line)
  return lines.join('\n')
}

/** The allowed values of an enum key, as help text shows them. */
function allowed(spec: KeySpec): string {
  return spec.type.kind === 'enum' ? ` (one of: ${spec.type.values.join(', ')})` : ''
}

/** The README / --help table of every key, wrapped at word boundaries. */
export function keysHelp(): string {
  const lines = ['network.conf keys (section.key = default: meaning):']
  for (const k of KEYS) {
    const text = `${k.section}.${k.key} = ${k.default === '' ? '(empty)' : k.default}: ${k.doc}${allowed(k)}`
    lines.push(`  ${wordWrap(text, HELP_WIDTH - 2, '      ')}`)
  }
  return lines.join('\n')
}

/** The package's version (package.json beside dist/). */
export function version(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')
    ) as { version?: unknown }
    return typeof pkg.version === 'string' ? pkg.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/**
 * The configuration used without `-c`: ./network.conf when present (a checkout), else the
 * installed one when present, else none (the built-in defaults).
 */
export function defaultConfigPath(): string | undefined {
  if (existsSync('network.conf')) return 'network.conf'
  if (existsSync(INSTALLED_CONFIG)) return INSTALLED_CONFIG
  return undefined
}

/** What the command line asked for. */
export type Command =
  | {
      readonly kind: 'run'
      readonly config: Readonly<Config>
      readonly configPath: string | undefined
      readonly printConfig: boolean
    }
  | {
      readonly kind: 'status'
      readonly json: boolean
      readonly watchSeconds: number | undefined
      readonly control: string | undefined
      readonly configPath: string | undefined
    }
  | { readonly kind: 'genkey'; readonly out: string | undefined; readonly force: boolean }
  | {
      readonly kind: 'check'
      readonly configPath: string | undefined
      /** The user the proxy runs as: it must be able to read the configuration and the key. */
      readonly user: string | undefined
    }
  | {
      readonly kind: 'config-get'
      readonly keys: readonly string[]
      readonly configPath: string | undefined
    }
  | { readonly kind: 'config-list'; readonly configPath: string | undefined }
  /** `--help` or `--version` was printed: the caller exits 0. */
  | { readonly kind: 'shown' }

/** `-c FILE` (a global option, so untyped in the command handlers), else the default. */
function configOf(args: object): string | undefined {
  const given = (args as { readonly config?: unknown }).config
  return typeof given === 'string' ? given : defaultConfigPath()
}

/** The subcommands; without one, the proxy runs. */
const COMMANDS: readonly string[] = ['status', 'genkey', 'check', 'config']

/** What `run` needs from the parsed arguments. */
interface RunArgs {
  readonly set?: readonly (string | number)[]
  readonly config?: string
  readonly 'print-config'?: boolean
  readonly [flag: string]: unknown
}

function runOptions(parser: Argv, role: Role): Argv {
  let p = parser
    .option('set', {
      type: 'string',
      array: true,
      describe: 'override any key: --set section.key=value (repeatable)'
    })
    .option('print-config', {
      type: 'boolean',
      default: false,
      describe: 'print the effective configuration as JSON and exit (an inline key is not shown)'
    })
  for (const [flag, key] of Object.entries(SHORTCUTS[role])) {
    const spec = KEYS.find((k) => `${k.section}.${k.key}` === key)
    const doc = spec === undefined ? key : `${spec.doc}${allowed(spec)} [${key}]`
    p = p.option(flag, { type: 'string', describe: wordWrap(doc, OPTION_WIDTH) })
  }
  return p
}

/** The run command's configuration: defaults < file < --set < shortcut flags. */
function runConfig(role: Role, args: RunArgs): Command {
  const overrides = parseOverrides((args.set ?? []).map(String))
  for (const [flag, key] of Object.entries(SHORTCUTS[role])) {
    const v = args[flag]
    if (typeof v === 'string' || typeof v === 'number') overrides.set(key, String(v))
  }
  const path = args.config ?? defaultConfigPath()
  return {
    kind: 'run',
    config: loadConfig(path, overrides),
    configPath: path,
    printConfig: args['print-config'] === true
  }
}

/**
 * Parse argv (without node and script). Throws UsageError for a mistake on the command line and
 * ConfigError for a bad configuration of the run command.
 */
export function parseCommand(role: Role, argv: readonly string[], name: string = role): Command {
  let command: (() => Command) | undefined
  // The run command takes no words, so a leading word that is no command is a typo of one.
  const first = argv[0]
  if (first !== undefined && !first.startsWith('-') && !COMMANDS.includes(first)) {
    throw new UsageError(`unknown command "${first}" (commands: ${COMMANDS.join(', ')})`)
  }
  const describeConfig = `network.conf to read (default: ./network.conf when present, else ${INSTALLED_CONFIG} when present, else the built-in defaults)`
  const parser = yargs([...argv])
    .scriptName(name)
    .usage(`Usage: ${name} [command] [-c network.conf] [options]`)
    .command(
      '$0',
      `run ${role} (the default command)`,
      (b) => runOptions(b, role),
      (a) => {
        command = () => runConfig(role, a)
      }
    )
    .command(
      'status',
      "print the running proxy's state from its control socket",
      (b) =>
        b
          .usage(
            `Usage: ${name} status [--json] [--watch SECONDS] [-c network.conf | --control PATH]`
          )
          .option('json', { type: 'boolean', default: false, describe: 'print the JSON snapshot' })
          .option('watch', {
            type: 'number',
            describe: 'print again every SECONDS (a positive number) until interrupted'
          })
          .option('control', {
            type: 'string',
            describe: 'control socket path (default: control_socket of the configuration)'
          }),
      (a) => {
        const watch = a.watch
        if (watch !== undefined && !(Number.isFinite(watch) && watch > 0)) {
          throw new UsageError(`--watch needs a positive number of seconds, got ${String(watch)}`)
        }
        command = () => ({
          kind: 'status',
          json: a.json,
          watchSeconds: watch,
          control: a.control,
          configPath: configOf(a)
        })
      }
    )
    .command(
      'genkey',
      'make a new pre-shared key (32 random bytes, in hex)',
      (b) =>
        b
          .usage(`Usage: ${name} genkey [--out FILE [--force]]`)
          .option('out', {
            type: 'string',
            describe: 'write the key to FILE with mode 0600 (default: print it)'
          })
          .option('force', {
            type: 'boolean',
            default: false,
            describe: 'replace FILE when it exists'
          }),
      (a) => {
        if (a.force && a.out === undefined) throw new UsageError('--force needs --out FILE')
        command = () => ({ kind: 'genkey', out: a.out, force: a.force })
      }
    )
    .command(
      'check',
      "verify this box's set-up (config, key, interfaces, addresses, sysctls, rules)",
      (b) =>
        b.usage(`Usage: ${name} check [-c network.conf] [--user NAME]`).option('user', {
          type: 'string',
          describe:
            "the user the proxy runs as (its unit's User=): it must be able to read the configuration and the key"
        }),
      (a) => {
        command = () => ({ kind: 'check', configPath: configOf(a), user: a.user })
      }
    )
    .command('config', 'print configuration values as the proxies read them', (b) =>
      b
        .usage(`Usage: ${name} config get KEY... | config list [-c network.conf]`)
        .command(
          'get <keys..>',
          'print the effective value of each section.key, one per line',
          (c) => c.positional('keys', { type: 'string', array: true }),
          (a) => {
            command = () => ({
              kind: 'config-get',
              keys: (a.keys ?? []).map(String),
              configPath: configOf(a)
            })
          }
        )
        .command(
          'list',
          'print every key as section.key=value',
          (c) => c,
          (a) => {
            command = () => ({ kind: 'config-list', configPath: configOf(a) })
          }
        )
        .demandCommand(1, 'config needs a subcommand: get KEY... or list')
    )
    .option('config', {
      alias: 'c',
      type: 'string',
      global: true,
      describe: wordWrap(describeConfig, OPTION_WIDTH)
    })
    .epilog(keysHelp())
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .version(version())
    .exitProcess(false)
    .fail((msg, err) => {
      if (err instanceof UsageError || err instanceof ConfigError) throw err
      throw new UsageError(err ? err.message : msg)
    })
    .wrap(null)
  parser.parseSync()
  return command === undefined ? { kind: 'shown' } : command()
}

/** What the proxies' run command needs (kept for callers that only run). */
export interface CliResult {
  readonly config: Readonly<Config>
  readonly configPath: string | undefined
  readonly printConfig: boolean
  /** `--help` or `--version` was printed: the caller exits 0. */
  readonly helpShown: boolean
}

/** Parse a run command line. Throws ConfigError or UsageError. */
export function parseCli(role: Role, argv: readonly string[]): CliResult {
  const c = parseCommand(role, argv)
  if (c.kind === 'shown') {
    return {
      config: loadConfig(undefined, new Map()),
      configPath: undefined,
      printConfig: false,
      helpShown: true
    }
  }
  if (c.kind !== 'run') throw new UsageError(`expected the run command, got ${c.kind}`)
  return {
    config: c.config,
    configPath: c.configPath,
    printConfig: c.printConfig,
    helpShown: false
  }
}
