/**
 * The `./stream` and `./receive` executables end to end: spawned, `--json` parsed, exit codes
 * and one-line errors checked. Needs the build (`npx tsc -p tsconfig.build.json`).
 */

import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

import { boundAddress, expectedSha256, generatedBytes, listen } from '../../../src/tools/harness.js'

/** Repository root: this file runs from dist/test/unit/tools/. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')
const HOST = '127.0.0.1'
const MiB = 1024 * 1024

interface Run {
  readonly child: ChildProcess
  /** Resolves with exit code and all output once the process has exited. */
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>
  /** stderr so far. */
  stderr(): string
}

function run(program: string, args: readonly string[]): Run {
  const child = spawn(join(ROOT, program), args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
  const done = once(child, 'close').then(([code]) => ({
    code: code as number | null,
    stdout,
    stderr
  }))
  return { child, done, stderr: () => stderr }
}

/** Starts `./receive` on a free loopback port and waits for its `listening on` line. */
async function startReceiver(args: readonly string[]): Promise<{ run: Run; port: number }> {
  const receiver = run('receive', ['--host', HOST, '--port', '0', '--timeout', '60', ...args])
  for (;;) {
    const match = /listening on 127\.0\.0\.1:(\d+)/.exec(receiver.stderr())
    if (match !== null) {
      return { run: receiver, port: Number(match[1]) }
    }
    const exited = await Promise.race([
      receiver.done.then(() => true),
      new Promise<false>((resolveLater) => setTimeout(resolveLater, 20, false))
    ])
    if (exited) {
      const result = await receiver.done
      assert.fail(`receive exited early (${result.code}): ${result.stderr}`)
    }
  }
}

function parseJsonLines(text: string): Record<string, unknown>[] {
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

function assertOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split('\n')
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${stderr}`)
  assert.match(lines[0]!, pattern)
  assert.doesNotMatch(stderr, /^\s+at /m)
}

describe('./stream and ./receive', { timeout: 120_000 }, () => {
  it('transfer with a reply: JSON on both sides agrees and exits 0', async () => {
    const dataSha256 = expectedSha256(4 * MiB, 3)
    const replySha256 = expectedSha256(MiB, 7)
    const receiver = await startReceiver([
      '--json',
      '--reply-bytes',
      '1MiB',
      '--reply-seed',
      '7',
      '--write-size',
      'random:1-10K',
      '--expect-bytes',
      '4M',
      '--expect-sha256',
      dataSha256
    ])
    const sender = await run('stream', [
      HOST,
      String(receiver.port),
      '--json',
      '--bytes',
      '4MiB',
      '--seed',
      '3',
      '--write-size',
      'random:1-100K',
      '--expect-reply-bytes',
      String(MiB),
      '--expect-reply-sha256',
      replySha256,
      '--timeout',
      '60'
    ]).done
    const received = await receiver.run.done
    assert.equal(sender.code, 0, sender.stderr)
    assert.equal(received.code, 0, received.stderr)
    assert.equal(sender.stderr, '')

    const [sent] = parseJsonLines(sender.stdout)
    const [got, ...rest] = parseJsonLines(received.stdout)
    assert.equal(rest.length, 0)
    assert.ok(sent !== undefined && got !== undefined)
    assert.equal(sent.ok, true)
    assert.equal(sent.sentBytes, 4 * MiB)
    assert.equal(sent.sentSha256, dataSha256)
    assert.equal(sent.replyBytes, MiB)
    assert.equal(sent.replySha256, replySha256)
    assert.equal(sent.writeSize, 'random:1-102400')
    for (const key of ['connectMs', 'sendMs', 'deliveredMs', 'totalMs', 'goodputMbitPerSec']) {
      assert.equal(typeof sent[key], 'number', key)
    }
    assert.equal(got.ok, true)
    assert.equal(got.connection, 1)
    assert.equal(got.receivedBytes, 4 * MiB)
    assert.equal(got.receivedSha256, dataSha256)
    assert.equal(got.replySha256, replySha256)
    assert.equal(got.peerAddress, sent.localAddress)
    assert.equal(got.peerPort, sent.localPort)
    assert.equal(typeof got.goodputMbitPerSec, 'number')
    assert.equal(typeof got.acceptGoodputMbitPerSec, 'number')
  })

  it('receive --stop-after measures a fixed time, reports what arrived, then resets', async () => {
    const receiver = await startReceiver(['--json', '--stop-after', '0.5'])
    const sender = await run('stream', [
      HOST,
      String(receiver.port),
      '--json',
      '--duration',
      '30',
      '--timeout',
      '60'
    ]).done
    receiver.run.child.kill('SIGTERM')
    const received = await receiver.run.done
    // The sender sees the reset long before its 30 s are up.
    assert.equal(sender.code, 1)
    const [sent] = parseJsonLines(sender.stdout)
    assert.equal((sent?.error as { code?: string } | undefined)?.code, 'ECONNRESET')
    const [got] = parseJsonLines(received.stdout)
    assert.ok(got !== undefined)
    assert.equal(got.ok, true)
    assert.equal(got.connection, 1)
    assert.ok(typeof got.receivedBytes === 'number' && got.receivedBytes > 0)
    assert.ok(typeof got.stoppedAfterMs === 'number' && got.stoppedAfterMs >= 500)
    const mbit = (got.receivedBytes * 8) / got.stoppedAfterMs / 1000
    assert.ok(Math.abs((got.goodputMbitPerSec as number) - mbit) < 0.01 * mbit + 0.01)
  })

  it('receive exits 1 on a short transfer (--expect-bytes larger than sent)', async () => {
    const receiver = await startReceiver(['--json', '--expect-bytes', '2MiB'])
    const sender = await run('stream', [HOST, String(receiver.port), '--bytes', '1MiB', '--json'])
      .done
    const received = await receiver.run.done
    assert.equal(sender.code, 0, sender.stderr)
    assert.equal(received.code, 1)
    const [got] = parseJsonLines(received.stdout)
    assert.equal(got?.ok, false)
    assert.equal(got.receivedBytes, MiB)
    assert.deepEqual(got.error, {
      code: 'HARNESS_ERR_MISMATCH',
      message: `received ${MiB} bytes, expected ${2 * MiB} (short by ${MiB})`
    })
    assertOneLine(received.stderr.replace(/^listening on .*\n/, ''), /^receive: received /)
  })

  it('stream exits 1 when the reply differs from --expect-reply-sha256', async () => {
    const receiver = await startReceiver(['--quiet', '--reply-bytes', '1000'])
    const sender = await run('stream', [
      HOST,
      String(receiver.port),
      '--bytes',
      '1000',
      '--expect-reply-sha256',
      '0'.repeat(64)
    ]).done
    assert.equal((await receiver.run.done).code, 0)
    assert.equal(sender.code, 1)
    assertOneLine(sender.stderr, /^stream: reply sha256 [0-9a-f]{64} differs from expected 0{64}$/)
  })

  it('--count 2 takes two connections concurrently and --output stores the data', async () => {
    const receiver = await startReceiver(['--json', '--count', '2', '--echo'])
    const senders = await Promise.all(
      [1, 2].map(
        (seed) =>
          run('stream', [
            HOST,
            String(receiver.port),
            '--bytes',
            '300K',
            '--seed',
            String(seed),
            '--json'
          ]).done
      )
    )
    const received = await receiver.run.done
    assert.equal(received.code, 0, received.stderr)
    const reports = parseJsonLines(received.stdout)
    assert.deepEqual(reports.map((report) => report.connection).sort(), [1, 2])
    for (const sender of senders) {
      const [sent] = parseJsonLines(sender.stdout)
      assert.equal(sent?.replySha256, sent?.sentSha256)
    }

    const dir = await mkdtemp(join(tmpdir(), 'tandem-receive-'))
    try {
      const file = join(dir, 'out.bin')
      const fileReceiver = await startReceiver(['--quiet', '--output', file])
      const sender = await run('stream', [
        HOST,
        String(fileReceiver.port),
        '--bytes',
        '200000',
        '--seed',
        '5'
      ]).done
      assert.equal(sender.code, 0, sender.stderr)
      assert.equal((await fileReceiver.run.done).code, 0)
      assert.deepEqual(await readFile(file), generatedBytes(200_000, 5))
      assert.match(sender.stdout, /sha256 +[0-9a-f]{64}/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('connection refused: exit 1 and one stderr line naming ECONNREFUSED', async () => {
    const server = await listen({ host: HOST, port: 0 })
    const { port } = boundAddress(server)
    server.close()
    await once(server, 'close')
    const sender = await run('stream', [HOST, String(port), '--bytes', '1K']).done
    assert.equal(sender.code, 1)
    assert.equal(sender.stdout, '')
    assertOneLine(sender.stderr, /^stream: .*ECONNREFUSED/)

    const json = await run('stream', [HOST, String(port), '--json']).done
    assert.equal(json.code, 1)
    const [report] = parseJsonLines(json.stdout)
    assert.equal(report?.ok, false)
    assert.deepEqual((report.error as { code: string }).code, 'ECONNREFUSED')
  })

  it('bad arguments: exit 2 and one stderr line', async () => {
    const cases: readonly (readonly [string, readonly string[], RegExp])[] = [
      ['stream', [HOST, '5000', '--bytes', '12X'], /^stream: bytes: invalid size '12X'/],
      ['stream', [HOST, '5000', '--write-size', 'random:9-1'], /^stream: write-size: /],
      ['stream', [HOST, 'http'], /^stream: port: invalid port 'http'/],
      ['stream', [HOST], /^stream: arguments: /],
      ['stream', [HOST, '5000', '--no-such-option'], /^stream: arguments: Unknown argument/],
      ['stream', [HOST, '5000', '--file', '/nonexistent/x'], /^stream: file: cannot open .*ENOENT/],
      ['receive', ['--port', '70000'], /^receive: port: /],
      ['receive', [], /^receive: arguments: Missing required argument: port/],
      ['receive', ['--port', '0', '--echo', '--reply-bytes', '1'], /^receive: arguments: /],
      ['receive', ['--port', '0', '--count', '2', '--output', '/tmp/x'], /^receive: output: /]
    ]
    for (const [program, args, pattern] of cases) {
      const result = await run(program, args).done
      assert.equal(result.code, 2, `${program} ${args.join(' ')}: ${result.stderr}`)
      assertOneLine(result.stderr, pattern)
    }
  })

  it('--help documents the options and exits 0', async () => {
    const stream = await run('stream', ['--help']).done
    assert.equal(stream.code, 0)
    for (const option of [
      '--bytes',
      '--file',
      '--seed',
      '--write-size',
      '--half-close',
      '--json'
    ]) {
      assert.ok(stream.stdout.includes(option), option)
    }
    const receive = await run('receive', ['--help']).done
    assert.equal(receive.code, 0)
    for (const option of [
      '--count',
      '--keep-listening',
      '--echo',
      '--expect-sha256',
      '--ready-file'
    ]) {
      assert.ok(receive.stdout.includes(option), option)
    }
  })

  it('the wrapper says so in one line and exits 2 when the build is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-wrapper-'))
    try {
      await copyFile(join(ROOT, 'stream'), join(dir, 'stream'))
      const child = spawn('sh', [join(dir, 'stream'), HOST, '1'], {
        stdio: ['ignore', 'pipe', 'pipe']
      })
      let stderr = ''
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
      const [code] = await once(child, 'close')
      assert.equal(code, 2)
      assert.equal(stderr, 'tandem: not built, run npm run build\n')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
