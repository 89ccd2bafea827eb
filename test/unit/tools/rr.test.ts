/**
 * `./rr` end to end on loopback: the server, a one-shot download and persistent exchanges,
 * and a bad flag (one line, exit 2). Needs the build.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

/** Repository root: this file runs from dist/test/unit/tools/. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')

async function rr(
  args: readonly string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(join(ROOT, 'rr'), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

describe('./rr', { timeout: 60_000 }, () => {
  const server = spawn(join(ROOT, 'rr'), ['server', '--listen', '127.0.0.1', '--port', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let port = ''
  before(async () => {
    let text = ''
    server.stderr.setEncoding('utf8')
    for await (const chunk of server.stderr) {
      text += chunk as string
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(text)
      if (m !== null) {
        port = m[1]!
        break
      }
    }
  })
  after(() => {
    server.kill('SIGTERM')
  })

  it('one-shot: one download of the size asked, with its times', async () => {
    const r = await rr(['one-shot', '--port', port, '--bytes', '1MiB'])
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as Record<string, number>
    assert.equal(j.bytes, 1024 * 1024)
    assert.ok(j.completionMs! >= j.ttfbMs! && j.ttfbMs! >= j.connectMs!)
  })

  it('persistent: warm-up and measured exchanges on one connection', async () => {
    const args = ['persistent', '--port', port, '--count', '5', '--warmup', '2']
    const r = await rr([...args, '--request-bytes', '100', '--reply-bytes', '3000'])
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as { ok: boolean; latenciesMs: number[] }
    assert.equal(j.ok, true)
    assert.equal(j.latenciesMs.length, 5)
  })

  it('a bad flag is one line on stderr and exit 2', async () => {
    for (const args of [
      ['persistent', '--port', port, '--count', 'many'],
      ['one-shot', '--port', '70000'],
      ['one-shot', '--port', port, '--bytes', '12X'],
      ['sideways']
    ]) {
      const r = await rr(args)
      assert.equal(r.code, 2, args.join(' '))
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, /^rr: /)
    }
  })

  it('a refused connection exits 1', async () => {
    const r = await rr(['one-shot', '--port', '1', '--bytes', '10'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^rr: ECONNREFUSED/)
  })
})
