/**
 * `./receive --port P`: accepts one connection (or `--count N`, or until interrupted with
 * `--keep-listening`), reads each to EOF, optionally replies, and reports bytes, SHA-256,
 * wall-clock goodput and the peer's address as this server sees it.
 *
 * Prints `listening on HOST:PORT` on stderr (and writes `--ready-file`) once bound, so scripts
 * can start the sender then. Exit codes: 0 every connection done and as expected; 1 a
 * connection failed, was reset before EOF, differs from `--expect-*`, or not all `--count`
 * connections came before `--timeout`; 2 bad arguments.
 */

import { open } from 'node:fs/promises'
import type { Server, Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Writable } from 'node:stream'

import { formatEndpoint } from '../common/endpoint.js'
import { SIZE_RULE } from '../common/size.js'
import { ConfigError, PepError, PepErrorCodes } from '../common/errors.js'
import {
  boundAddress,
  checkExpectation,
  createProgressBar,
  errorSummary,
  EXIT_FAILURE,
  formatBytes,
  goodput,
  listen,
  parseCount,
  parsePort,
  parseSecondsToMs,
  parseSeed,
  parseSha256,
  parseSize,
  parseWriteSize,
  receiveOne,
  reportError,
  runCli,
  serveDuplex,
  toolArgs,
  TransferError,
  wallMs,
  writeReadyFile,
  type Expectation,
  type Progress,
  type ReceiveResult,
  type ReplySpec,
  type WriteSize
} from './harness.js'

const PROGRAM = 'receive'

function parseArgs(argv: readonly string[]) {
  return toolArgs(PROGRAM, argv)
    .usage('$0 --port P [options]')
    .epilogue(
      'Accept TCP connections, read each until EOF, optionally reply, and report bytes,\n' +
        'SHA-256, wall-clock goodput and the peer address:port as seen by this server.\n' +
        'Prints "listening on HOST:PORT" on stderr once bound.\n' +
        `Sizes: ${SIZE_RULE}.\n\n` +
        'Exit status: 0 ok, 1 connection error, reset or unexpected data, 2 bad arguments.'
    )
    .options({
      port: {
        type: 'string',
        demandOption: true,
        describe: 'TCP port to listen on (0: any free port)'
      },
      host: { type: 'string', default: '0.0.0.0', describe: 'address to listen on' },
      count: {
        type: 'string',
        describe: 'accept this many connections, then exit (default 1)'
      },
      'keep-listening': {
        type: 'boolean',
        describe: 'accept connections until SIGINT/SIGTERM'
      },
      discard: { type: 'boolean', describe: 'discard received data (the default)' },
      output: { type: 'string', describe: 'write received data to this file (one connection)' },
      'reply-bytes': {
        type: 'string',
        describe: "after the peer's EOF, send this much generated data, then end"
      },
      'reply-seed': { type: 'string', default: '1', describe: 'seed of the reply data' },
      echo: {
        type: 'boolean',
        describe: "send every byte back as it arrives; end after the peer's EOF"
      },
      'write-size': {
        type: 'string',
        default: '64KiB',
        describe: 'bytes per reply write(): N, or random:MIN-MAX (seeded by --reply-seed)'
      },
      'expect-bytes': {
        type: 'string',
        describe: 'exit 1 unless each connection brings this size'
      },
      'expect-sha256': {
        type: 'string',
        describe: 'exit 1 unless each connection brings this SHA-256 (hex)'
      },
      'ready-file': { type: 'string', describe: 'write HOST:PORT to this file once listening' },
      duplex: {
        type: 'boolean',
        describe:
          'reply (--reply-bytes) while reading, not after EOF; print JSON events (accepted, progress every 250 ms) and a delivery trace (bytes every 20 ms, longest gap, how the stream ended) in each report, resets included'
      },
      'stop-after': {
        type: 'string',
        describe:
          'measure each connection for this many seconds from accept, report what arrived, then reset it (fixed-time goodput, as iperf3 measures)'
      },
      timeout: {
        type: 'string',
        describe: 'give up after this many seconds (waiting and transferring)'
      },
      json: {
        type: 'boolean',
        default: false,
        describe: 'print one JSON object per connection (JSON Lines) on stdout'
      },
      quiet: { type: 'boolean', default: false, describe: 'no progress bar and no summary' }
    })
    .conflicts('discard', 'output')
    .conflicts('echo', 'reply-bytes')
    .conflicts('keep-listening', 'count')
    .conflicts('duplex', ['echo', 'output', 'stop-after'])
    .parseSync()
}

/** Everything one connection's handler needs, fixed for the whole run. */
interface RunSettings {
  readonly reply: ReplySpec
  readonly writeSize: WriteSize
  readonly replySeed: number
  readonly expect: Expectation
  readonly json: boolean
  readonly quiet: boolean
  readonly output: Writable | undefined
  readonly progress: Progress
  /** Reset each connection this long after accept and report what arrived by then. */
  readonly stopAfterMs: number | undefined
  /** Read and reply at once, with a delivery trace (`--duplex`). */
  readonly duplex: { readonly replyBytes: number } | undefined
  readonly keepListening: boolean
  /** Connections to accept unless `keepListening`. */
  readonly count: number
  readonly timeoutMs: number | undefined
}

function describeReply(reply: ReplySpec): string {
  switch (reply.kind) {
    case 'none':
      return 'none'
    case 'echo':
      return 'echo'
    case 'generated':
      return `generated, seed ${reply.seed}`
  }
}

function printSummary(index: number, reply: ReplySpec, result: ReceiveResult): void {
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(3)} s`
  const lines = [
    `connection ${index} from ${formatEndpoint({ address: result.peerAddress, port: result.peerPort })} to ${formatEndpoint({ address: result.localAddress, port: result.localPort })}`,
    `  received   ${result.receivedBytes} bytes (${formatBytes(result.receivedBytes)})`,
    `  goodput    ${result.goodputMbitPerSec.toFixed(1)} Mbit/s  ${result.goodputMBytePerSec.toFixed(2)} MB/s  first byte to EOF ${seconds(result.firstByteToEofMs)}`,
    `             ${result.acceptGoodputMbitPerSec.toFixed(1)} Mbit/s  ${result.acceptGoodputMBytePerSec.toFixed(2)} MB/s  accept to EOF ${seconds(result.acceptToEofMs)}`,
    `  sha256     ${result.receivedSha256}`,
    `  reply      ${result.replyBytes} bytes (${describeReply(reply)}) sha256 ${result.replySha256}`
  ]
  process.stdout.write(`${lines.join('\n')}\n`)
}

/**
 * `--stop-after`: resets `socket` `stopAfterMs` after accept, calling `onStop` with the time it
 * ran first. A timer may fire up to a millisecond early by performance.now() (libuv's loop
 * clock is cached and truncated): it is armed again for what is left, so the window is never
 * short.
 */
function armStopAfter(
  socket: Socket,
  acceptedAt: number,
  stopAfterMs: number | undefined,
  onStop: (afterMs: number) => void
): { cancel(): void } | undefined {
  if (stopAfterMs === undefined) return undefined
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    timer = setTimeout(
      function receiveOnStopAfter(): void {
        const afterMs = performance.now() - acceptedAt
        if (afterMs < stopAfterMs) {
          arm()
          return
        }
        onStop(afterMs)
        socket.resetAndDestroy()
      },
      Math.max(0, Math.ceil(acceptedAt + stopAfterMs - performance.now()))
    )
  }
  arm()
  return {
    cancel(): void {
      clearTimeout(timer)
    }
  }
}

/** Receives one connection and prints its report. Resolves true when it was as expected. */
async function handleConnection(
  socket: Socket,
  index: number,
  acceptedAt: number,
  settings: RunSettings
): Promise<boolean> {
  const peerAddress = socket.remoteAddress ?? ''
  const peerPort = socket.remotePort ?? 0
  let reported = 0
  // Fixed-time measurement: what arrived by `stopAfterMs` after accept, then a reset.
  let stopped: { readonly afterMs: number; readonly bytes: number } | undefined
  const stopTimer = armStopAfter(socket, acceptedAt, settings.stopAfterMs, (afterMs) => {
    stopped = { afterMs, bytes: reported }
  })
  try {
    const result = await receiveOne(socket, {
      output: settings.output,
      reply: settings.reply,
      writeSize: settings.writeSize,
      writeSeed: settings.replySeed,
      acceptedAt,
      onProgress: (receivedBytes) => {
        settings.progress.add(receivedBytes - reported)
        reported = receivedBytes
      }
    })
    settings.progress.finish()
    const mismatch = checkExpectation(
      'data',
      result.receivedBytes,
      result.receivedSha256,
      settings.expect
    )
    if (settings.json) {
      const report = {
        ok: mismatch === undefined,
        connection: index,
        ...result,
        acceptToFirstByteMs: result.acceptToFirstByteMs ?? null,
        ...(mismatch === undefined ? {} : { error: errorSummary(mismatch) })
      }
      process.stdout.write(`${JSON.stringify(report)}\n`)
    } else if (!settings.quiet) {
      printSummary(index, settings.reply, result)
    }
    if (mismatch !== undefined) {
      reportError(PROGRAM, mismatch)
      return false
    }
    return true
  } catch (err) {
    settings.progress.finish()
    if (stopped !== undefined) {
      reportStopped(index, peerAddress, peerPort, stopped, settings)
      return true
    }
    if (settings.json) {
      const report = {
        ok: false,
        connection: index,
        peerAddress,
        peerPort,
        error: errorSummary(err)
      }
      process.stdout.write(`${JSON.stringify(report)}\n`)
    }
    reportError(PROGRAM, err)
    return false
  } finally {
    stopTimer?.cancel()
  }
}

/** Period of the duplex progress events, ms. */
const DUPLEX_PROGRESS_MS = 250

function printJson(record: object): void {
  process.stdout.write(`${JSON.stringify(record)}\n`)
}

/**
 * `--duplex`: reads while replying, prints `accepted`, `progress` and `done` events; the
 * `done` line carries the delivery trace, and `ok` says whether the stream ended cleanly, the
 * reply went out whole and the data was as expected.
 */
async function handleDuplex(
  socket: Socket,
  index: number,
  replyBytes: number,
  settings: RunSettings
): Promise<boolean> {
  printJson({ event: 'accepted', connection: index, peer: socket.remoteAddress, at: wallMs() })
  let bytes = 0
  const progress = setInterval(function receiveOnDuplexProgress(): void {
    printJson({ event: 'progress', connection: index, at: wallMs(), bytes })
  }, DUPLEX_PROGRESS_MS)
  const result = await serveDuplex(socket, {
    replyBytes,
    replySeed: settings.replySeed,
    onProgress: (receivedBytes) => {
      bytes = receivedBytes
    }
  })
  clearInterval(progress)
  const mismatch = checkExpectation(
    'data',
    result.receivedBytes,
    result.receivedSha256,
    settings.expect
  )
  const ok = result.ending === 'end' && result.replyComplete && mismatch === undefined
  printJson({
    event: 'done',
    ok,
    connection: index,
    ...result,
    ...(mismatch === undefined ? {} : { error: errorSummary(mismatch) })
  })
  return ok
}

/** Reports a connection measured for a fixed time (`--stop-after`) and then reset. */
function reportStopped(
  index: number,
  peerAddress: string,
  peerPort: number,
  stopped: { readonly afterMs: number; readonly bytes: number },
  settings: RunSettings
): void {
  const rate = goodput(stopped.bytes, stopped.afterMs)
  if (settings.json) {
    const report = {
      ok: true,
      connection: index,
      peerAddress,
      peerPort,
      receivedBytes: stopped.bytes,
      stoppedAfterMs: Math.round(stopped.afterMs),
      goodputMbitPerSec: Math.round(rate.mbitPerSec * 1000) / 1000
    }
    process.stdout.write(`${JSON.stringify(report)}\n`)
  } else if (!settings.quiet) {
    process.stdout.write(
      `connection ${index} from ${formatEndpoint({ address: peerAddress, port: peerPort })}: ${stopped.bytes} bytes (${formatBytes(stopped.bytes)}) in ${(stopped.afterMs / 1000).toFixed(3)} s, ${rate.mbitPerSec.toFixed(1)} Mbit/s, then reset (--stop-after)\n`
    )
  }
}

async function openOutput(path: string): Promise<Writable> {
  try {
    const handle = await open(path, 'w')
    return handle.createWriteStream()
  } catch (err) {
    throw new ConfigError('output', `cannot open '${path}': ${errorSummary(err).code}`)
  }
}

/** The run's settings from the command line (every value checked: exit 2 on a bad one). */
async function settingsFrom(args: ReturnType<typeof parseArgs>): Promise<RunSettings> {
  const keepListening = args.keepListening ?? false
  const count = parseCount(args.count ?? '1', 'count')
  if (args.output !== undefined && (count > 1 || keepListening)) {
    throw new ConfigError('output', 'takes one connection: not with --count or --keep-listening')
  }
  const replySeed = parseSeed(args.replySeed, 'reply-seed')
  const replyBytes =
    args.replyBytes === undefined ? undefined : parseSize(args.replyBytes, 'reply-bytes')
  const reply: ReplySpec =
    args.echo === true
      ? { kind: 'echo' }
      : replyBytes === undefined
        ? { kind: 'none' }
        : { kind: 'generated', bytes: replyBytes, seed: replySeed }
  const expect: Expectation = {
    bytes: args.expectBytes === undefined ? undefined : parseSize(args.expectBytes, 'expect-bytes'),
    sha256:
      args.expectSha256 === undefined ? undefined : parseSha256(args.expectSha256, 'expect-sha256')
  }
  const json = args.json || args.duplex === true
  return {
    reply,
    writeSize: parseWriteSize(args.writeSize, 'write-size'),
    replySeed,
    expect,
    json,
    quiet: args.quiet,
    output: args.output === undefined ? undefined : await openOutput(args.output),
    stopAfterMs:
      args.stopAfter === undefined ? undefined : parseSecondsToMs(args.stopAfter, 'stop-after'),
    duplex: args.duplex === true ? { replyBytes: replyBytes ?? 0 } : undefined,
    keepListening,
    count,
    timeoutMs: args.timeout === undefined ? undefined : parseSecondsToMs(args.timeout),
    progress: createProgressBar(
      process.stderr,
      'received',
      count === 1 && !keepListening ? expect.bytes : undefined,
      !json && !args.quiet
    )
  }
}

/** Accepts and handles connections until the count is reached, the deadline or a signal. */
async function serve(server: Server, settings: RunSettings): Promise<number> {
  const { keepListening, count, timeoutMs } = settings
  const active = new Set<Socket>()
  const handlers = new Set<Promise<void>>()
  let accepted = 0
  let failures = 0
  let stopReason: string | undefined

  const closed = new Promise<void>((resolve) => {
    server.once('close', resolve)
  })
  const stop = (reason: string, abort: (socket: Socket) => void): void => {
    stopReason ??= reason
    server.close()
    for (const socket of active) {
      abort(socket)
    }
  }
  server.on('connection', function receiveOnConnection(socket: Socket): void {
    const acceptedAt = performance.now()
    accepted++
    if (!keepListening && accepted >= count) {
      // Stop accepting; 'close' then waits for the open connections to finish.
      server.close()
    }
    active.add(socket)
    const handler = (
      settings.duplex === undefined
        ? handleConnection(socket, accepted, acceptedAt, settings)
        : handleDuplex(socket, accepted, settings.duplex.replyBytes, settings)
    ).then((ok) => {
      active.delete(socket)
      handlers.delete(handler)
      if (!ok) {
        failures++
      }
    })
    handlers.add(handler)
  })

  const deadline =
    timeoutMs === undefined
      ? undefined
      : setTimeout(function receiveOnDeadline(): void {
          const message = `timed out after ${timeoutMs / 1000} s`
          stop(message, (socket) => socket.destroy(new PepError(PepErrorCodes.TIMEOUT, message)))
        }, timeoutMs)
  const onSignal = (signal: NodeJS.Signals): void => {
    stop(`interrupted by ${signal}`, (socket) =>
      socket.destroy(
        new TransferError(
          'EINTR',
          'receive',
          `connection from ${formatEndpoint({ address: socket.remoteAddress, port: socket.remotePort })} interrupted by ${signal}`
        )
      )
    )
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    await closed
    await Promise.all([...handlers])
  } finally {
    clearTimeout(deadline)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    settings.progress.finish()
  }

  if (!keepListening && accepted < count) {
    const message = `${stopReason ?? 'stopped'} with ${accepted} of ${count} connections accepted`
    if (settings.json) {
      process.stdout.write(
        `${JSON.stringify({ ok: false, error: { code: 'EINCOMPLETE', message } })}\n`
      )
    }
    process.stderr.write(`${PROGRAM}: ${message}\n`)
    return EXIT_FAILURE
  }
  return failures === 0 ? 0 : EXIT_FAILURE
}

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv)
  const port = parsePort(args.port, 'port', true)
  const settings = await settingsFrom(args)
  const server = await listen({ host: args.host, port })
  const bound = boundAddress(server)
  process.stderr.write(
    `listening on ${formatEndpoint({ address: bound.host, port: bound.port })}\n`
  )
  if (args.readyFile !== undefined) {
    await writeReadyFile(args.readyFile, bound.host, bound.port)
  }
  return serve(server, settings)
}

runCli(PROGRAM, main)
