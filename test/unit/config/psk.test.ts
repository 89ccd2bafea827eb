/**
 * Weak pre-shared keys are refused (src/common/config/load.ts loadPsk): anyone can get a
 * CHALLENGE, so a short key falls to an offline search. Below 32 bytes, hex that is not hex,
 * a password, a short raw file: each is one line naming security.psk or security.psk_file, exit
 * status 2, and the key itself is never printed.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

import { MIN_PSK_BYTES } from '../../../src/common/auth.js'
import { loadConfig, loadPsk } from '../../../src/common/config/load.js'
import { ConfigError } from '../../../src/common/errors.js'
import { freePort } from '../../helpers/proxies.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')

function pskFrom(values: Record<string, string>): Uint8Array {
  return loadPsk(loadConfig(undefined, new Map(Object.entries(values))))
}

/** loadPsk throws a ConfigError naming `key` whose message does not show `secret`. */
function assertRefused(values: Record<string, string>, key: string, secret?: string): void {
  assert.throws(
    () => pskFrom(values),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err))
      assert.equal(err.key, key)
      assert.ok(!err.message.includes('\n'), 'one line')
      if (secret !== undefined && secret.length > 2) {
        assert.ok(!err.message.includes(secret), `the key leaked into: ${err.message}`)
      }
      return true
    },
    JSON.stringify(values)
  )
}

describe('pre-shared key length and form', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-psk-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function keyFile(name: string, data: string | Uint8Array): Promise<string> {
    const path = join(dir, name)
    await writeFile(path, data)
    await chmod(path, 0o600)
    return path
  }

  it('is 32 bytes at least', () => {
    assert.equal(MIN_PSK_BYTES, 32)
  })

  it('security.psk: a password, not-hex, odd hex and short hex are refused', () => {
    for (const psk of [
      'password',
      'deadbeef',
      'ab'.repeat(31),
      'ab'.repeat(31) + 'a',
      'ab'.repeat(31) + 'zz',
      'g'.repeat(64),
      '0x' + 'ab'.repeat(32)
    ]) {
      assertRefused({ 'security.psk': psk }, 'security.psk', psk)
    }
  })

  it('security.psk: 32 bytes of hex and more are taken', () => {
    assert.equal(pskFrom({ 'security.psk': 'ab'.repeat(32) }).length, 32)
    assert.equal(pskFrom({ 'security.psk': 'AB'.repeat(48) }).length, 48)
  })

  it('security.psk_file: short hex, a password, not-hex text and short raw bytes are refused', async () => {
    const cases: [string, string | Uint8Array][] = [
      ['short-hex', 'deadbeef\n'],
      ['hex-31', `${'cd'.repeat(31)}\n`],
      ['password', 'password\n'],
      ['long-password', 'correct horse battery staple, but only text\n'],
      ['hex-typo', `${'cd'.repeat(31)}cg\n`],
      ['raw-31', Uint8Array.from(randomBytes(31).map((b) => b | 0x80))],
      ['empty', '']
    ]
    for (const [i, [, data]] of cases.entries()) {
      // Named by number: the file's path is in the message, its contents must not be.
      const path = await keyFile(`key-${i}`, data)
      assertRefused(
        { 'security.psk_file': path },
        'security.psk_file',
        typeof data === 'string' ? data.trim() : undefined
      )
    }
  })

  it('security.psk_file: 32 bytes as hex or raw are taken', async () => {
    const hex = await keyFile('hex-32', `${randomBytes(32).toString('hex')}\n`)
    assert.equal(pskFrom({ 'security.psk_file': hex }).length, 32)
    const rawBytes = Uint8Array.from(randomBytes(32).map((b) => b | 0x80))
    const raw = await keyFile('raw-32', rawBytes)
    assert.deepEqual(pskFrom({ 'security.psk_file': raw }), rawBytes)
  })

  /** Run a built proxy; kill it if it is still running after `ms` (it should have exited). */
  async function run(
    program: string,
    args: readonly string[],
    ms = 5000
  ): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [join(ROOT, program), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t))
    const timer = setTimeout(() => child.kill('SIGKILL'), ms)
    const [code] = (await once(child, 'close')) as [number | null]
    clearTimeout(timer)
    return { code, stderr }
  }

  it('both proxies exit 2 with one line naming the key (--set security.psk=password, a short file)', async () => {
    const short = await keyFile('cli-short', 'deadbeef\n')
    const RX = 'dist/src/rx-proxy/main.js'
    const TX = 'dist/src/tx-proxy/main.js'
    const rxArgs = async (): Promise<string[]> => [
      ...['-c', '/dev/null', '--set', 'rx_proxy.control_socket='],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(await freePort())]
    ]
    const txArgs = async (): Promise<string[]> => [
      ...['-c', '/dev/null', '--set', 'tx_proxy.control_socket='],
      ...['--local-ip', '127.0.0.1', '--local-port', String(await freePort())]
    ]
    const cases: [string, string[], string][] = [
      [RX, [...(await rxArgs()), '--set', 'security.psk=password'], 'security.psk'],
      [TX, [...(await txArgs()), '--set', 'security.psk=password'], 'security.psk'],
      [TX, [...(await txArgs()), '--set', 'security.psk=deadbeef'], 'security.psk'],
      [RX, [...(await rxArgs()), '--set', `security.psk_file=${short}`], 'security.psk_file']
    ]
    for (const [program, args, key] of cases) {
      const r = await run(program, args)
      assert.equal(r.code, 2, `${program} ${args.join(' ')}: exit status; stderr:\n${r.stderr}`)
      const lines = r.stderr.trimEnd().split('\n')
      assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`)
      assert.ok(lines[0]!.includes(`${key}:`), lines[0])
      assert.ok(!lines[0]!.includes('password'), 'the key is not printed')
    }
  })
})
