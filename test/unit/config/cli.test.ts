/**
 * The command line of the built programs: commands in --help, --version, the allowed values of
 * every enum key, help text broken only between words, usage errors (exit 2, one line), genkey
 * --out (mode 0600, no overwrite), `status --watch 0` refused, EPIPE on a closed pipe, `config get`,
 * and the parts of `check` that need no root.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, statSync } from 'node:fs'
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { wordWrap } from '../../../src/app/cli.js'
import { KEYS } from '../../../src/common/config/schema.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')
const TX = join(ROOT, 'tx_proxy')
const RX = join(ROOT, 'rx_proxy')

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

async function run(program: string, args: readonly string[], cwd = ROOT): Promise<Run> {
  const child = spawn(program, [...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t))
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

/** Exit 2 and exactly one stderr line containing `needle`, nothing on stdout. */
function assertUsage(r: Run, needle: string): void {
  assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`)
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`)
  assert.ok(lines[0]!.includes(needle), `${JSON.stringify(needle)} not in ${lines[0]!}`)
  assert.equal(r.stdout, '')
}

describe('CLI conventions (built)', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-cli-conv-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    for (const program of [TX, RX]) {
      const r = await run(program, ['--version'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.trim(), pkg.version)
    }
  })

  it('--help lists the commands and the allowed values of every enum key, words unbroken', async () => {
    const r = await run(TX, ['--help'])
    assert.equal(r.code, 0, r.stderr)
    for (const command of ['status', 'genkey', 'check', 'config']) {
      assert.match(r.stdout, new RegExp(`^ +tx_proxy ${command} `, 'm'), `${command} missing`)
    }
    // Joined back together, the help holds every key's whole description and allowed values.
    const flat = r.stdout.replace(/\s+/g, ' ')
    for (const k of KEYS) {
      assert.ok(flat.includes(k.doc.replace(/\s+/g, ' ')), `${k.section}.${k.key}: doc split`)
      if (k.type.kind === 'enum') {
        assert.ok(
          flat.includes(`(one of: ${k.type.values.join(', ')})`),
          `${k.section}.${k.key}: allowed values missing`
        )
      }
    }
    assert.ok(flat.includes('(one of: error, warn, info, debug)'))
    assert.ok(flat.includes('(one of: first-free, round-robin, min-rtt, weighted, redundant)'))
    // No word is cut at the end of a line: every line ends at a word's end.
    for (const line of r.stdout.split('\n')) assert.ok(line.length <= 160, `long line: ${line}`)
  })

  it('wordWrap breaks only at spaces', () => {
    const text =
      'static mode: send every flow to this host:port instead of its original destination'
    const wrapped = wordWrap(text, 20, '  ')
    assert.equal(wrapped.replace(/\n\s*/g, ' '), text)
    for (const line of wrapped.split('\n')) assert.ok(line.length <= 20, line)
  })

  it('genkey --help prints help, not a key', async () => {
    const r = await run(TX, ['genkey', '--help'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /--out/)
    assert.doesNotMatch(r.stdout, /^[0-9a-f]{64}$/m)
  })

  it('a typo in a command, an unknown flag, --watch 0: usage errors, exit 2, one line', async () => {
    assertUsage(await run(TX, ['stauts']), 'unknown command "stauts"')
    assertUsage(await run(RX, ['chek']), 'unknown command "chek"')
    assertUsage(await run(TX, ['status', '--bogus']), 'bogus')
    assertUsage(await run(TX, ['status', '--watch', '0']), '--watch needs a positive number')
    assertUsage(await run(TX, ['status', '--watch', '-1']), '--watch needs a positive number')
    assertUsage(await run(TX, ['status', '--watch', 'soon']), '--watch needs a positive number')
    assertUsage(await run(TX, ['genkey', '--force']), '--force needs --out')
    assertUsage(await run(TX, ['config']), 'config needs a subcommand')
    const typo = await run(TX, ['stauts'])
    assert.doesNotMatch(typo.stderr, /config error/)
  })

  it('genkey --out writes 64 hex digits with mode 0600 under umask 022 and never overwrites', async () => {
    const path = join(dir, 'psk')
    const r = await run('sh', ['-c', `umask 022 && exec "$0" genkey --out "$1"`, TX, path])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, '', 'the key is not printed')
    assert.equal(statSync(path).mode & 0o777, 0o600)
    const key = readFileSync(path, 'utf8')
    assert.match(key, /^[0-9a-f]{64}\n$/)
    assert.ok(!r.stderr.includes(key.trim()))

    const again = await run(TX, ['genkey', '--out', path])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /exists; give --force/)
    assert.equal(readFileSync(path, 'utf8'), key)

    const forced = await run(TX, ['genkey', '--out', path, '--force'])
    assert.equal(forced.code, 0, forced.stderr)
    assert.equal(statSync(path).mode & 0o777, 0o600)
    assert.notEqual(readFileSync(path, 'utf8'), key)
  })

  it('status --json --watch N | head -c 100 ends quietly (EPIPE)', async () => {
    // A stand-in control socket answering with a large snapshot, so the pipe fills.
    const sock = join(dir, 'ctl.sock')
    const server: Server = createServer((c) => {
      c.end(`${JSON.stringify({ role: 'tx_proxy', padding: 'x'.repeat(200_000) })}\n`)
    })
    await new Promise<void>((r) => server.listen(sock, r))
    try {
      const status = join(dir, 'status.rc')
      const r = await run('sh', [
        '-c',
        '{ "$0" status --json --watch 0.2 --control "$1"; echo $? >"$2"; } | head -c 100 >/dev/null',
        TX,
        sock,
        status
      ])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stderr, '', 'nothing on stderr: no EPIPE, no stack trace')
      assert.equal(readFileSync(status, 'utf8').trim(), '0')
    } finally {
      server.close()
    }
  })

  it('config get prints values as the loader reads them; an unknown key is refused', async () => {
    const ini = join(dir, 'get.conf')
    await writeFile(ini, '[interception]\nmark = 0x10\n[trunk]\nframe_payload_bytes = 32KiB\n')
    const r = await run(TX, [
      'config',
      'get',
      'interception.mark',
      'trunk.frame_payload_bytes',
      'tx_proxy.local_port',
      '-c',
      ini
    ])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, '16\n32768\n5000\n')
    assertUsage(await run(TX, ['config', 'get', 'no.such_key', '-c', ini]), 'no.such_key')
    await writeFile(ini, '[interception]\nbogus = 1\n')
    assertUsage(
      await run(TX, ['config', 'get', 'interception.mark', '-c', ini]),
      'interception.bogus'
    )
  })

  it('check reports a missing key, a 0644 key and an unknown key, one line each, never the key', async () => {
    const psk = join(dir, 'check.psk')
    const ini = join(dir, 'check.conf')
    await writeFile(ini, `[security]\npsk_file = ${psk}\n`)
    const missing = await run(TX, ['check', '-c', ini])
    assert.equal(missing.code, 1)
    assert.match(
      missing.stderr,
      new RegExp(`^tx_proxy check: key: security.psk_file: cannot read ${psk}: ENOENT`, 'm')
    )

    const key = 'ab'.repeat(32)
    await writeFile(psk, `${key}\n`)
    await chmod(psk, 0o644)
    const open = await run(TX, ['check', '-c', ini])
    assert.equal(open.code, 1)
    assert.match(
      open.stderr,
      /^tx_proxy check: key: security.psk_file: .* is readable by group or others/m
    )
    assert.ok(!open.stderr.includes(key) && !open.stdout.includes(key))

    // The user the proxy runs as (its unit's User=) must be able to read the config and the
    // key: one line for each, naming the file, the user and what stops it.
    await chmod(psk, 0o600)
    await chmod(dir, 0o700)
    const owner = await run(TX, ['check', '-c', ini, '--user', 'nobody'])
    assert.equal(owner.code, 1)
    const lines = (prefix: string): string[] =>
      owner.stderr.split('\n').filter((l) => l.startsWith(`tx_proxy check: ${prefix}: `))
    for (const [prefix, file] of [
      ['config', ini],
      ['key', psk]
    ] as const) {
      const found = lines(prefix)
      assert.equal(found.length, 1, owner.stderr)
      assert.ok(
        found[0]!.startsWith(
          `tx_proxy check: ${prefix}: ${file} is not readable by nobody: it cannot enter ${dir} (owner `
        ),
        found[0]
      )
      assert.ok(found[0]!.endsWith(`, mode 0700): chmod o+x ${dir}`), found[0])
    }
    assert.ok(!owner.stderr.includes(key))
    const nobody = await run(TX, ['check', '-c', ini, '--user', 'no-such-user-tandem'])
    assert.match(nobody.stderr, /^tx_proxy check: user: no-such-user-tandem does not exist/m)
    if (process.getuid?.() === 0) {
      // Past the directory, a root-owned 0600 key is still not the proxy's to read.
      await chmod(dir, 0o755)
      const rootKey = await run(TX, ['check', '-c', ini, '--user', 'nobody'])
      assert.doesNotMatch(rootKey.stderr, /check: config:/)
      assert.match(
        rootKey.stderr,
        new RegExp(
          `^tx_proxy check: key: ${psk} is not readable by nobody \\(owner root:root, mode 0600\\): chown nobody: ${psk} and chmod 600 ${psk}$`,
          'm'
        )
      )
      await chown(psk, 65534, 65534)
      const given = await run(TX, ['check', '-c', ini, '--user', 'nobody'])
      assert.doesNotMatch(given.stderr, /check: (key|config|user):/)
      await chown(psk, 0, 0)
    }
    const mine = await run(TX, [
      'check',
      '-c',
      ini,
      '--user',
      String(process.getuid?.() === 0 ? 'root' : process.env.USER)
    ])
    assert.doesNotMatch(mine.stderr, /tx_proxy check: key:/)
    // A key written into the configuration makes the configuration as secret as a key file.
    const inline = join(dir, 'inline.conf')
    await writeFile(inline, `[security]\npsk = ${key}\n`, { mode: 0o644 })
    const me = String(process.getuid?.() === 0 ? 'root' : process.env.USER)
    const shared = await run(TX, ['check', '-c', inline, '--user', me])
    assert.match(
      shared.stderr,
      /^tx_proxy check: key: security\.psk is set in .*inline\.conf, which group or others can read: /m
    )
    assert.ok(!shared.stderr.includes(key))

    await writeFile(ini, `[security]\npsk_file = ${psk}\n[interception]\nbogus = 1\n`)
    const unknown = await run(TX, ['check', '-c', ini])
    assert.equal(unknown.code, 1)
    assert.equal(
      unknown.stderr,
      'tx_proxy check: config: interception.bogus: unknown key (see --help for the keys)\n'
    )
  })
})
