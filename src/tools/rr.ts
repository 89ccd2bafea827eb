/**
 * `./rr`: request/response timing, in two modes over one small line protocol.
 *
 *   rr server --port P                      answers requests until SIGINT/SIGTERM
 *   rr one-shot --host H --port P --bytes N one connection, one download: connect time, time to
 *                                           first byte, completion (for short-flow timing)
 *   rr persistent --host H --port P --count N
 *                                           many small exchanges on one connection (latency)
 *
 * A request is one line `GET <bytes> [<congestion>] [keep]`, which may be padded with spaces
 * to any length. The server sends `<bytes>` bytes back, with that congestion control on its
 * socket (the download's sender is the server, so "direct cubic" means cubic where the data
 * is sent). Without `keep` it ends the connection after the reply; with `keep` it waits for
 * the next line. Each client prints one JSON line on stdout.
 *
 * Exit status: 0 done (a one-shot past its deadline too: it reports `"timedOut": true` with
 * what it had, so a collapsed transfer costs the deadline, not however long it would take);
 * 1 a connection failed; 2 bad arguments.
 */
import { once } from 'node:events'
import net, { type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

import { setCongestion, socketFd } from '../../native/index.js'
import { formatEndpoint } from '../common/endpoint.js'
import { ConfigError, errorMessage } from '../common/errors.js'
import { SIZE_RULE } from '../common/size.js'
import {
  EXIT_FAILURE,
  parseCongestion,
  parseCount,
  parsePort,
  parseSecondsToMs,
  parseSize,
  runCli,
  toolArgs
} from './harness.js'

const PROGRAM = 'rr'
/** The reply's content: any bytes will do, the clients count them. */
const BLOCK = Buffer.alloc(65536, 0x61)
const REQUEST_PATTERN = /^GET (\d+)((?: [a-z0-9_]+)*)\s*$/

function parseArgs(argv: readonly string[]) {
  return toolArgs(PROGRAM, argv)
    .usage('$0 server|one-shot|persistent [options]')
    .epilogue(
      'Request/response timing. A request is a line "GET <bytes> [congestion] [keep]"; the\n' +
        'server answers with that many bytes and ends the connection unless the line says keep.\n' +
        'one-shot: one connection, one download, prints connect, first-byte and completion times.\n' +
        'persistent: --warmup + --count exchanges on one connection, prints their latencies.\n' +
        `Sizes: ${SIZE_RULE}.\n` +
        'Times are ms from connect(). Exit status: 0 ok, 1 connection error, 2 bad arguments.'
    )
    .command('server', 'answer requests until SIGINT/SIGTERM')
    .command('one-shot', 'one connection, one download of --bytes')
    .command('persistent', 'sequential exchanges on one connection')
    .demandCommand(1, 1, 'name a mode: server, one-shot or persistent')
    .options({
      host: { type: 'string', default: '127.0.0.1', describe: 'server address (clients)' },
      port: { type: 'string', default: '5210', describe: 'TCP port' },
      listen: { type: 'string', default: '0.0.0.0', describe: 'address to listen on (server)' },
      bytes: { type: 'string', default: '0', describe: 'one-shot: bytes to download' },
      congestion: {
        type: 'string',
        describe: 'one-shot: congestion control of both ends (cubic, bbr...; needs root)'
      },
      count: { type: 'string', default: '100', describe: 'persistent: exchanges measured' },
      warmup: { type: 'string', default: '0', describe: 'persistent: exchanges before those' },
      'request-bytes': {
        type: 'string',
        default: '100',
        describe: 'persistent: size of each request line (padded with spaces)'
      },
      'reply-bytes': {
        type: 'string',
        default: '1024',
        describe: 'persistent: size of each reply'
      },
      timeout: {
        type: 'string',
        describe: 'deadline in seconds: one-shot 60 for the download, persistent 10 per exchange'
      }
    })
    .parseSync()
}

// ---- server ----------------------------------------------------------------------------------

/** One connection's state: the requests read so far and the reply still owed. */
interface RrConnection {
  readonly socket: Socket
  text: string
  owed: number
  /** A request without `keep` came: end once its reply is written, ignore what follows. */
  last: boolean
  peerEnded: boolean
  waitingForDrain: boolean
}

/** Reads the complete request lines in `conn.text`; adds what they ask for to `owed`. */
function takeRequests(conn: RrConnection): void {
  for (let nl = conn.text.indexOf('\n'); nl >= 0 && !conn.last; nl = conn.text.indexOf('\n')) {
    const line = conn.text.slice(0, nl)
    conn.text = conn.text.slice(nl + 1)
    const m = REQUEST_PATTERN.exec(line)
    const words = (m?.[2] ?? '')
      .trim()
      .split(' ')
      .filter((w) => w !== '')
    conn.owed += m === null ? 0 : Number(m[1])
    conn.last = !words.includes('keep')
    const congestion = words.find((w) => w !== 'keep')
    if (congestion !== undefined) {
      try {
        setCongestion(socketFd(conn.socket), congestion)
      } catch (err) {
        process.stderr.write(`${PROGRAM}: ${congestion}: ${errorMessage(err)}\n`)
      }
    }
  }
  // A line is short: more than a block without a newline is not a request.
  if (conn.text.length > BLOCK.length) conn.socket.destroy()
}

/** Writes what is owed while the socket takes it; ends after the last reply or the peer's EOF. */
function writeOwed(conn: RrConnection): void {
  const { socket } = conn
  while (conn.owed > 0 && !socket.destroyed) {
    const n = Math.min(conn.owed, BLOCK.length)
    conn.owed -= n
    if (!socket.write(BLOCK.subarray(0, n))) {
      if (!conn.waitingForDrain) {
        conn.waitingForDrain = true
        socket.once('drain', () => {
          conn.waitingForDrain = false
          writeOwed(conn)
        })
      }
      return
    }
  }
  if (conn.owed === 0 && (conn.last || conn.peerEnded) && !socket.writableEnded) socket.end()
}

function serveRequests(socket: Socket): void {
  const conn: RrConnection = {
    socket,
    text: '',
    owed: 0,
    last: false,
    peerEnded: false,
    waitingForDrain: false
  }
  socket.setNoDelay(true)
  socket.on('data', function rrServerOnData(chunk: Buffer): void {
    if (conn.last) return
    conn.text += chunk.toString('latin1')
    takeRequests(conn)
    if (!conn.waitingForDrain) writeOwed(conn)
  })
  socket.on('end', function rrServerOnEnd(): void {
    conn.peerEnded = true
    if (!conn.waitingForDrain) writeOwed(conn)
  })
  socket.on('error', function rrServerOnError(): void {
    socket.destroy()
  })
}

async function serverMain(host: string, port: number): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, serveRequests)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, resolve)
  })
  const bound = server.address()
  const actual = bound !== null && typeof bound === 'object' ? bound.port : port
  process.stderr.write(
    `${PROGRAM}: listening on ${formatEndpoint({ address: host, port: actual })}\n`
  )
  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')])
  server.close()
  return 0
}

// ---- one-shot --------------------------------------------------------------------------------

/** What a one-shot download measured, ms from connect(). */
interface OneShotTimes {
  readonly startedAt: number
  connectedAt: number
  firstAt: number
  lastAt: number
  bytes: number
}

function printJson(record: object): void {
  process.stdout.write(`${JSON.stringify(record)}\n`)
}

/** One connection, one `GET`, read to EOF; prints the times (or what it had at the deadline). */
function oneShotMain(
  host: string,
  port: number,
  bytes: number,
  congestion: string | undefined,
  timeoutMs: number
): Promise<number> {
  const t: OneShotTimes = {
    startedAt: performance.now(),
    connectedAt: 0,
    firstAt: 0,
    lastAt: 0,
    bytes: 0
  }
  const since = (at: number): number | null => (at > 0 ? at - t.startedAt : null)
  const socket = net.connect({ host, port })
  return new Promise<number>((resolve) => {
    const deadline = setTimeout(function rrOnDeadline(): void {
      printJson({
        bytes: t.bytes,
        timedOut: true,
        timeoutMs,
        connectMs: since(t.connectedAt),
        ttfbMs: since(t.firstAt)
      })
      socket.destroy()
      resolve(0)
    }, timeoutMs)
    socket.on('connect', function rrOnConnect(): void {
      t.connectedAt = performance.now()
      if (congestion !== undefined) setCongestion(socketFd(socket), congestion)
      socket.write(congestion === undefined ? `GET ${bytes}\n` : `GET ${bytes} ${congestion}\n`)
    })
    socket.on('data', function rrOnData(d: Buffer): void {
      t.lastAt = performance.now()
      if (t.bytes === 0) t.firstAt = t.lastAt
      t.bytes += d.length
    })
    socket.on('end', function rrOnEnd(): void {
      clearTimeout(deadline)
      const done = performance.now()
      printJson({
        bytes: t.bytes,
        connectMs: since(t.connectedAt),
        ttfbMs: since(t.firstAt),
        lastByteMs: since(t.lastAt),
        completionMs: done - t.startedAt
      })
      socket.destroy()
      resolve(0)
    })
    socket.on('error', function rrOnError(err: NodeJS.ErrnoException): void {
      clearTimeout(deadline)
      process.stderr.write(`${PROGRAM}: ${err.code ?? err.message}\n`)
      resolve(EXIT_FAILURE)
    })
  })
}

// ---- persistent ------------------------------------------------------------------------------

/** The settings of a persistent run. */
interface PersistentOptions {
  readonly host: string
  readonly port: number
  readonly count: number
  readonly warmup: number
  readonly requestBytes: number
  readonly replyBytes: number
  /** Deadline of each exchange, ms. */
  readonly timeoutMs: number
}

/** A connection's bytes received and first failure, with a wake-up for whoever waits on them. */
class ReplyCounter {
  received = 0
  failure: string | undefined
  private wake: (() => void) | undefined

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length
      this.wake?.()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.failure ??= err.code ?? err.message
      this.wake?.()
    })
    socket.on('close', () => {
      this.failure ??= 'connection closed'
      this.wake?.()
    })
  }

  /** Waits until `need` bytes have come in all; throws on failure or after `timeoutMs`. */
  async waitFor(need: number, timeoutMs: number, what: string): Promise<void> {
    const t0 = performance.now()
    while (this.received < need) {
      if (this.failure !== undefined) throw new Error(`${what}: ${this.failure}`)
      if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: timed out`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs)
        this.wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.wake = undefined
    }
  }
}

/** The request line, padded with spaces to `requestBytes` (never cut short). */
function requestLine(replyBytes: number, requestBytes: number): Buffer {
  const line = `GET ${replyBytes} keep`
  return Buffer.from(`${line.padEnd(requestBytes - 1, ' ')}\n`, 'latin1')
}

/**
 * `warmup + count` sequential exchanges on one connection: write a request, wait for the whole
 * reply, and so on. Prints one JSON line with the latencies of the last `count` (ms).
 */
async function persistentMain(o: PersistentOptions): Promise<number> {
  const request = requestLine(o.replyBytes, o.requestBytes)
  const socket = net.connect({ host: o.host, port: o.port })
  const replies = new ReplyCounter(socket)
  const latencies: number[] = []
  try {
    await once(socket, 'connect')
    socket.setNoDelay(true)
    for (let i = 0; i < o.warmup + o.count; i++) {
      const t0 = performance.now()
      socket.write(request)
      await replies.waitFor((i + 1) * o.replyBytes, o.timeoutMs, `exchange ${i}`)
      if (i >= o.warmup) latencies.push(Math.round((performance.now() - t0) * 100) / 100)
    }
    socket.end()
    printJson({ ok: true, latenciesMs: latencies })
    return 0
  } catch (err) {
    socket.destroy()
    printJson({ ok: false, error: errorMessage(err), completed: latencies.length })
    return EXIT_FAILURE
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv)
  const mode = String(args._[0])
  const port = parsePort(args.port, 'port', mode === 'server')
  const timeoutMs = (fallbackMs: number): number =>
    args.timeout === undefined ? fallbackMs : parseSecondsToMs(args.timeout)
  switch (mode) {
    case 'server':
      return serverMain(args.listen, port)
    case 'one-shot': {
      const congestion =
        args.congestion === undefined ? undefined : parseCongestion(args.congestion)
      const bytes = parseSize(args.bytes, 'bytes')
      return oneShotMain(args.host, port, bytes, congestion, timeoutMs(60_000))
    }
    case 'persistent':
      return persistentMain({
        host: args.host,
        port,
        count: parseCount(args.count, 'count'),
        warmup: parseCount(args.warmup, 'warmup', true),
        requestBytes: Math.max(1, parseSize(args.requestBytes, 'request-bytes')),
        replyBytes: parseCount(args.replyBytes, 'reply-bytes'),
        timeoutMs: timeoutMs(10_000)
      })
    default:
      throw new ConfigError(
        'mode',
        `unknown mode '${mode}': expected server, one-shot or persistent`
      )
  }
}

runCli(PROGRAM, main)
