/**
 * Config loading at the edge (read once, here; the rest of the code gets a frozen Config): defaults < network.conf (ini) < command line.
 * Reads the file, hands text to `buildConfig`, returns a frozen Config. Throws ConfigError.
 */
import { readFileSync, statSync } from 'node:fs'
import { MIN_PSK_BYTES } from '../auth.js'
import { parse as parseIni } from 'ini'
import { ConfigError } from '../errors.js'
import { buildConfig, findKey, isPathKey, type Config } from './config.js'

/** Read `path` (ini) into `section.key` → text. */
export function readConfigFile(path: string): Map<string, string> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new ConfigError('config', `cannot read ${path}: ${code}`)
  }
  const parsed = parseIni(text) as Record<string, unknown>
  const out = new Map<string, string>()
  for (const [section, body] of Object.entries(parsed)) {
    if (body === null || typeof body !== 'object') {
      throw new ConfigError(section, `key outside a section in ${path}; put it under [section]`)
    }
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      if (value !== null && typeof value === 'object') {
        // ini reads [path.NAME] as a nested section: path → NAME → keys.
        if (section !== 'path') {
          throw new ConfigError(`${section}.${key}`, `nested sections are not supported`)
        }
        for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
          out.set(`path.${key}.${k}`, String(v))
        }
        continue
      }
      out.set(`${section}.${key}`, String(value))
    }
  }
  return out
}

/** Parse `section.key=value` overrides from `--set`. */
export function parseOverrides(sets: readonly string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const s of sets) {
    const eq = s.indexOf('=')
    const name = eq < 0 ? s : s.slice(0, eq)
    if (eq < 0) throw new ConfigError(name, 'expected --set section.key=value')
    if (!findKey(name) && !isPathKey(name)) {
      throw new ConfigError(name, 'unknown key (see --help for the keys)')
    }
    out.set(name, s.slice(eq + 1))
  }
  return out
}

/** Defaults < file (when given) < overrides; validated and frozen. */
export function loadConfig(
  path: string | undefined,
  overrides: ReadonlyMap<string, string>
): Readonly<Config> {
  const raw = path === undefined ? new Map<string, string>() : readConfigFile(path)
  for (const [k, v] of overrides) raw.set(k, v)
  return buildConfig(raw)
}

/** Printable ASCII and white space: a key file of only these is text, so it must be hex. */
function looksLikeText(data: Buffer): boolean {
  return data.every((b) => (b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d)
}

/**
 * The pre-shared key: `security.psk` (hex) when set, else the contents of `security.psk_file`
 * (hex, or raw bytes), which must not be readable by group or others. A key shorter than
 * MIN_PSK_BYTES is refused: anyone can get a CHALLENGE, so a short key falls to an offline
 * search. A text that is not hex is refused rather than taken as raw bytes, because it is
 * almost certainly a mistake (or a password). Messages never show the key. Throws ConfigError.
 */
export function loadPsk(config: Readonly<Config>): Uint8Array {
  const sec = config.security
  const tooShort = (key: string, bytes: number, what: string): ConfigError =>
    new ConfigError(
      key,
      `${what} ${bytes} bytes; a key needs at least ${MIN_PSK_BYTES} (${2 * MIN_PSK_BYTES} hex digits): make one with tx_proxy genkey --out FILE`
    )
  if (sec.pskHex !== '') {
    const text = sec.pskHex.trim()
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(text)) {
      throw new ConfigError(
        'security.psk',
        `expected an even number of hex digits (0-9, a-f), got ${text.length} characters that are not`
      )
    }
    if (text.length / 2 < MIN_PSK_BYTES) throw tooShort('security.psk', text.length / 2, 'holds')
    return Uint8Array.from(Buffer.from(text, 'hex'))
  }
  const path = sec.pskFile
  if (path === '') {
    throw new ConfigError(
      'security.psk_file',
      'no pre-shared key: set security.psk_file or security.psk'
    )
  }
  let mode: number
  let data: Buffer
  try {
    mode = statSync(path).mode
    data = readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new ConfigError(
      'security.psk_file',
      `cannot read ${path}: ${code}; make one on one box and copy it to the other: tx_proxy genkey --out ${path}`
    )
  }
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      'security.psk_file',
      `${path} is readable by group or others: chmod 600 ${path}`
    )
  }
  let key: Buffer = data
  if (looksLikeText(data)) {
    const text = data.toString('latin1').trim()
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(text)) {
      throw new ConfigError(
        'security.psk_file',
        `${path} holds text that is not an even number of hex digits; write the key as hex (tx_proxy genkey --out FILE) or as raw bytes`
      )
    }
    key = Buffer.from(text, 'hex')
  }
  if (key.length < MIN_PSK_BYTES) throw tooShort('security.psk_file', key.length, `${path} holds`)
  return Uint8Array.from(key)
}
