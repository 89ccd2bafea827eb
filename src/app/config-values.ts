/**
 * `config get KEY...` and `config list`: the configuration as the proxies read it, for the
 * shell scripts (bridge-setup.sh, iptables/) so that they need no ini reader or checks of their
 * own. The whole file is validated first, exactly as a proxy validates it at start; each value is
 * then printed in its normal form (sizes and hex as decimal integers, endpoints as host:port).
 */
import { findKey, isPathKey, parseValue, type HostPort } from '../common/config/config.js'
import { loadConfig, readConfigFile } from '../common/config/load.js'
import { ConfigError } from '../common/errors.js'
import { KEYS, type KeySpec } from '../common/config/schema.js'

function show(value: number | string | HostPort | undefined): string {
  if (value === undefined) return ''
  if (typeof value === 'object') {
    return value.host.includes(':')
      ? `[${value.host}]:${value.port}`
      : `${value.host}:${value.port}`
  }
  return String(value)
}

/** Raw values of `path` (none without a file), after the whole file passed validation. */
function validated(path: string | undefined): ReadonlyMap<string, string> {
  loadConfig(path, new Map())
  return path === undefined ? new Map() : readConfigFile(path)
}

function valueOf(spec: KeySpec, raw: ReadonlyMap<string, string>): string {
  return show(parseValue(spec, raw.get(`${spec.section}.${spec.key}`) ?? spec.default))
}

/** The effective value of each key, in order. Throws ConfigError (unknown key, bad file). */
export function configValues(path: string | undefined, keys: readonly string[]): string[] {
  const raw = validated(path)
  return keys.map((name) => {
    const spec = findKey(name)
    if (spec !== undefined) return valueOf(spec, raw)
    if (isPathKey(name)) return raw.get(name) ?? ''
    throw new ConfigError(name, 'unknown key (see --help for the keys)')
  })
}

/** Every key as `section.key=value` (schema order, then the [path.NAME] keys of the file). */
export function configList(path: string | undefined): string[] {
  const raw = validated(path)
  const lines = KEYS.map((spec) => `${spec.section}.${spec.key}=${valueOf(spec, raw)}`)
  for (const [name, value] of raw) if (name.startsWith('path.')) lines.push(`${name}=${value}`)
  return lines
}
