/**
 * What a SIGHUP changed: the network.conf keys whose value differs between the file as it was
 * read at start (or at the last reload) and as it is now, split into those the running proxy
 * applies and those that need a restart. Values compare as the proxy reads them: a key that
 * appears with its default value has not changed.
 */
import { readConfigFile } from '../common/config/load.js'
import { KEYS } from '../common/config/schema.js'

/** The keys every proxy applies on SIGHUP without a restart. */
export const RELOADED_BY_MAIN: readonly string[] = ['log.level']

/** One changed key. */
export interface ChangedKey {
  readonly key: string
  readonly before: string
  readonly after: string
}

/** What SIGHUP found. */
export interface ReloadDiff {
  /** Changed keys the proxy applies now. */
  readonly applied: readonly ChangedKey[]
  /** Changed keys that take effect only after a restart. */
  readonly needRestart: readonly ChangedKey[]
}

/** The file's values (an empty map when the proxy runs without one). */
export function fileValues(path: string | undefined): ReadonlyMap<string, string> {
  return path === undefined ? new Map() : readConfigFile(path)
}

function effective(values: ReadonlyMap<string, string>, key: string): string {
  const v = values.get(key)
  if (v !== undefined) return v.trim()
  return KEYS.find((k) => `${k.section}.${k.key}` === key)?.default ?? ''
}

/** Compare two readings of the file; `reloadable` are the keys the running proxy applies. */
export function diffConfig(
  before: ReadonlyMap<string, string>,
  after: ReadonlyMap<string, string>,
  reloadable: readonly string[]
): ReloadDiff {
  const keys = new Set([...before.keys(), ...after.keys()])
  const applied: ChangedKey[] = []
  const needRestart: ChangedKey[] = []
  for (const key of [...keys].sort()) {
    const b = effective(before, key)
    const a = effective(after, key)
    if (a === b) continue
    const change = { key, before: b, after: a }
    if (reloadable.includes(key)) applied.push(change)
    else needRestart.push(change)
  }
  return { applied, needRestart }
}

/** `key (old → new)`, with secrets left out. */
export function describeChange(c: ChangedKey): string {
  if (c.key.startsWith('security.')) return c.key
  const show = (v: string): string => (v === '' ? '(empty)' : v)
  return `${c.key} (${show(c.before)} → ${show(c.after)})`
}
