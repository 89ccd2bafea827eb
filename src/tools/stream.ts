/**
 * `./stream HOST PORT`: sends generated data or a file over one TCP connection, half-closes,
 * reads the reply to EOF and reports sizes, SHA-256 digests and wall-clock goodput.
 *
 * Exit codes: 0 done and as expected; 1 connection failed, reset, timed out or the reply
 * differs from `--expect-reply-*`; 2 bad arguments.
 */

import { formatEndpoint } from '../common/endpoint.js'
import { SIZE_RULE } from '../common/size.js'
import { ConfigError } from '../common/errors.js'
import {
  checkExpectation,
  createProgressBar,
  errorSummary,
  EXIT_FAILURE,
  fileSource,
  formatBytes,
  formatWriteSize,
  generatedSource,
  timedSource,
  parsePort,
  parseSecondsToMs,
  parseSeed,
  parseSha256,
  parseSize,
  parseWriteSize,
  reportError,
  runCli,
  sendTo,
  toolArgs,
  type ByteSource,
  type StreamResult
} from './harness.js'

const PROGRAM = 'stream'

/** Default amount of generated data when neither `--file` nor `--bytes` is given. */
const DEFAULT_BYTES = '64MiB'

function parseArgs(argv: readonly string[]) {
  return toolArgs(PROGRAM, argv)
    .usage('$0 HOST PORT [options]')
    .epilogue(
      'Send generated data (or a file) to HOST:PORT over one TCP connection, shut down the\n' +
        'write side, read the reply until EOF, and report bytes, SHA-256 and wall-clock goodput.\n' +
        `Sizes: ${SIZE_RULE}.\n\n` +
        'Exit status: 0 ok, 1 connection error or unexpected reply, 2 bad arguments.'
    )
    .command('$0 <host> <port>', false)
    .positional('host', { type: 'string', describe: 'host to connect to' })
    .positional('port', { type: 'string', describe: 'TCP port to connect to' })
    .options({
      bytes: {
        type: 'string',
        describe: `send this much generated data (default ${DEFAULT_BYTES})`
      },
      file: { type: 'string', describe: 'send the contents of this file instead' },
      duration: {
        type: 'string',
        describe: 'send generated data for this many seconds instead of a fixed size'
      },
      congestion: {
        type: 'string',
        describe: 'TCP congestion control of this connection (cubic, bbr, reno...; needs root)'
      },
      seed: {
        type: 'string',
        default: '1',
        describe: 'seed of the generated data and of random write sizes'
      },
      'write-size': {
        type: 'string',
        default: '64KiB',
        describe: 'bytes per write(): N, or random:MIN-MAX (seeded by --seed)'
      },
      'half-close': {
        type: 'boolean',
        default: true,
        describe: 'after sending, shut down only the write side and read the reply until EOF'
      },
      'expect-reply-bytes': { type: 'string', describe: 'exit 1 unless the reply has this size' },
      'expect-reply-sha256': {
        type: 'string',
        describe: 'exit 1 unless the reply has this SHA-256 (hex)'
      },
      timeout: { type: 'string', describe: 'overall deadline in seconds, connect included' },
      'local-address': { type: 'string', describe: 'bind to this local address first' },
      json: { type: 'boolean', default: false, describe: 'print one JSON object on stdout' },
      progress: {
        type: 'boolean',
        default: false,
        describe: 'show the progress bar on a terminal even with --json'
      },
      quiet: { type: 'boolean', default: false, describe: 'no progress bar and no summary' }
    })
    .conflicts('bytes', 'file')
    .conflicts('duration', 'file')
    .conflicts('duration', 'bytes')
    .parseSync()
}

function printSummary(host: string, port: number, sourceName: string, result: StreamResult): void {
  const lines = [
    `stream ${formatEndpoint({ address: result.localAddress, port: result.localPort })} -> ${formatEndpoint({ address: host, port: port })} (${result.remoteAddress})`,
    `  source     ${sourceName}`,
    `  connect    ${result.connectMs.toFixed(3)} ms`,
    `  sent       ${result.sentBytes} bytes (${formatBytes(result.sentBytes)}) in ${(result.deliveredMs / 1000).toFixed(3)} s (handed to kernel in ${(result.sendMs / 1000).toFixed(3)} s)`,
    `  goodput    ${result.goodputMbitPerSec.toFixed(1)} Mbit/s  ${result.goodputMBytePerSec.toFixed(2)} MB/s`,
    `  sha256     ${result.sentSha256}`,
    result.halfClose
      ? `  reply      ${result.replyBytes} bytes (${formatBytes(result.replyBytes)}) sha256 ${result.replySha256}`
      : `  reply      not read (--no-half-close)`,
    `  total      ${(result.totalMs / 1000).toFixed(3)} s`
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

/** What to send: generated data for a size or a time, or a file; and how to name it. */
async function sourceFrom(
  args: ReturnType<typeof parseArgs>,
  seed: number
): Promise<{ source: ByteSource; sourceName: string }> {
  if (args.duration !== undefined) {
    const durationMs = parseSecondsToMs(args.duration, 'duration')
    return {
      source: timedSource(durationMs, seed),
      sourceName: `generated for ${durationMs / 1000} s, seed ${seed}`
    }
  }
  if (args.file !== undefined) {
    return { source: await fileSource(args.file), sourceName: `file ${args.file}` }
  }
  const bytes = parseSize(args.bytes ?? DEFAULT_BYTES, 'bytes')
  return { source: generatedSource(bytes, seed), sourceName: `generated, seed ${seed}` }
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv)
  const host = args.host ?? ''
  if (host === '') {
    throw new ConfigError('host', 'missing HOST')
  }
  const port = parsePort(args.port ?? '', 'port')
  const seed = parseSeed(args.seed, 'seed')
  const writeSize = parseWriteSize(args.writeSize, 'write-size')
  const timeoutMs = args.timeout === undefined ? undefined : parseSecondsToMs(args.timeout)
  const expectReply = {
    bytes:
      args.expectReplyBytes === undefined
        ? undefined
        : parseSize(args.expectReplyBytes, 'expect-reply-bytes'),
    sha256:
      args.expectReplySha256 === undefined
        ? undefined
        : parseSha256(args.expectReplySha256, 'expect-reply-sha256')
  }
  if (!args.halfClose && (expectReply.bytes !== undefined || expectReply.sha256 !== undefined)) {
    throw new ConfigError('expect-reply-bytes', 'the reply is not read with --no-half-close')
  }
  const { source, sourceName } = await sourceFrom(args, seed)

  const progress = createProgressBar(
    process.stderr,
    'sent',
    source.totalBytes === 0 ? undefined : source.totalBytes,
    !args.quiet && (!args.json || args.progress)
  )
  let reported = 0
  try {
    const result = await sendTo({
      host,
      port,
      source,
      writeSize,
      writeSeed: seed,
      halfClose: args.halfClose,
      timeoutMs,
      localAddress: args.localAddress,
      congestion: args.congestion,
      onProgress: (sentBytes) => {
        progress.add(sentBytes - reported)
        reported = sentBytes
      }
    })
    progress.finish()
    const mismatch = checkExpectation('reply', result.replyBytes, result.replySha256, expectReply)
    if (args.json) {
      const report = {
        ok: mismatch === undefined,
        host,
        port,
        source: args.file ?? 'generated',
        seed,
        writeSize: formatWriteSize(writeSize),
        ...result,
        ...(mismatch === undefined ? {} : { error: errorSummary(mismatch) })
      }
      process.stdout.write(`${JSON.stringify(report)}\n`)
    } else if (!args.quiet) {
      printSummary(host, port, sourceName, result)
    }
    return mismatch === undefined ? 0 : reportError(PROGRAM, mismatch)
  } catch (err) {
    progress.finish()
    if (args.json && !(err instanceof ConfigError)) {
      process.stdout.write(
        `${JSON.stringify({ ok: false, host, port, error: errorSummary(err) })}\n`
      )
    }
    const code = reportError(PROGRAM, err)
    return code === 0 ? EXIT_FAILURE : code
  } finally {
    await source.close()
  }
}

runCli(PROGRAM, main)
