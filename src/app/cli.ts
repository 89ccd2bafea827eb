/**
 * Command-line parsing shared by tx_proxy and rx_proxy (yargs). Role flags are shortcuts for
 * network.conf keys; `--set section.key=value` reaches every key. Returns the frozen Config.
 */
import { existsSync } from 'node:fs'
import yargs from 'yargs'
import { ConfigError } from '../common/errors.js'
import { type Config } from '../common/config/config.js'
import { loadConfig, parseOverrides } from '../common/config/load.js'
import { KEYS } from '../common/config/schema.js'

/** Which program is parsing. */
export type Role = 'tx_proxy' | 'rx_proxy'

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

/** The README / --help table of every key. */
export function keysHelp(): string {
  const lines = ['network.conf keys (section.key = default: meaning):']
  for (const k of KEYS)
    lines.push(`  ${k.section}.${k.key} = ${k.default === '' ? '(empty)' : k.default}: ${k.doc}`)
  return lines.join('\n')
}

/** What the command line asked for. */
export interface CliResult {
  readonly config: Readonly<Config>
  readonly configPath: string | undefined
  readonly printConfig: boolean
  /** `--help` was asked for and printed: the caller exits 0. */
  readonly helpShown: boolean
}

/** Parse argv (without node and script). Throws ConfigError for anything wrong. */
export function parseCli(role: Role, argv: readonly string[]): CliResult {
  const shortcuts = SHORTCUTS[role]
  let parser = yargs([...argv])
    .scriptName(`./${role}`)
    .usage(`Usage: ./${role} [-c network.conf] [options]`)
    .option('config', {
      alias: 'c',
      type: 'string',
      describe: 'network.conf to read (default: ./network.conf when present)'
    })
    .option('set', {
      type: 'string',
      array: true,
      describe: 'override any key: --set section.key=value (repeatable)'
    })
    .option('print-config', {
      type: 'boolean',
      default: false,
      describe: 'print the effective configuration as JSON and exit'
    })
  for (const [flag, key] of Object.entries(shortcuts)) {
    const spec = KEYS.find((k) => `${k.section}.${k.key}` === key)
    parser = parser.option(flag, { type: 'string', describe: `${spec?.doc ?? key} [${key}]` })
  }
  const args = parser
    .epilog(keysHelp())
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new ConfigError('arguments', err ? err.message : msg)
    })
    .wrap(Math.min(120, process.stdout.columns || 100))
    .parseSync()

  if (argv.includes('--help') || argv.includes('-h')) {
    return {
      config: loadConfig(undefined, new Map()),
      configPath: undefined,
      printConfig: false,
      helpShown: true
    }
  }
  const overrides = parseOverrides((args.set ?? []).map(String))
  for (const [flag, key] of Object.entries(shortcuts)) {
    const v = args[flag]
    if (typeof v === 'string' || typeof v === 'number') overrides.set(key, String(v))
  }
  let path = args.config
  if (path === undefined && existsSync('network.conf')) path = 'network.conf'
  return {
    config: loadConfig(path, overrides),
    configPath: path,
    printConfig: args['print-config'],
    helpShown: false
  }
}
