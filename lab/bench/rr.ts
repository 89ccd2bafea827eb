/**
 * Request/response timing for the benchmark's short-flow rows. Server: answers each request
 * line "GET <bytes> [congestion]" with that many bytes, sent with that congestion control, and
 * closes. Client: one connection per request,
 * prints JSON with connect time, time to first byte and completion time (ms from connect()).
 *   node rr.js server --port P
 *   node rr.js client --host H --port P --bytes N [--congestion cubic] [--timeout-ms 60000]
 * A client past its deadline prints {"timedOut": true, ...} with what it had, and exits 0.
 */
import { connect, createServer } from 'node:net'
import { setCongestion, socketFd } from '../../native/index.js'

const BLOCK = Buffer.alloc(65536, 0x61)

function serve(port: number): void {
  const server = createServer((socket) => {
    socket.on('error', () => undefined)
    let line = ''
    socket.on('data', (d: Buffer) => {
      line += d.toString()
      const nl = line.indexOf('\n')
      if (nl < 0) return
      const m = /^GET (\d+)(?: ([a-z0-9]+))?$/.exec(line.slice(0, nl))
      let left = m ? Number(m[1]) : 0
      // The download's sender is this server: it takes the congestion control the client
      // asked for ("direct cubic" means cubic where the data is sent, not only at the client).
      if (m?.[2] !== undefined) {
        try {
          setCongestion(socketFd(socket), m[2])
        } catch (err) {
          process.stderr.write(`rr: ${m[2]}: ${err instanceof Error ? err.message : String(err)}\n`)
        }
      }
      const pump = (): void => {
        while (left > 0) {
          const n = Math.min(left, BLOCK.length)
          left -= n
          if (!socket.write(BLOCK.subarray(0, n))) {
            socket.once('drain', pump)
            return
          }
        }
        socket.end()
      }
      pump()
    })
  })
  server.listen(port, () => {
    process.stdout.write(`listening on ${port}\n`)
  })
}

function client(
  host: string,
  port: number,
  bytes: number,
  congestion: string | undefined,
  timeoutMs: number
): void {
  const t0 = performance.now()
  const socket = connect({ host, port })
  let first = 0
  let got = 0
  let last = 0
  let connected = 0
  // A download that has not finished by the deadline is reported as such (with what it got),
  // so that a collapsed direct TCP costs `timeoutMs`, not however long it would take.
  const deadline = setTimeout(() => {
    process.stdout.write(
      `${JSON.stringify({ bytes: got, timedOut: true, timeoutMs, connectMs: connected > 0 ? connected - t0 : null, ttfbMs: first > 0 ? first - t0 : null })}\n`
    )
    socket.destroy()
  }, timeoutMs)
  socket.on('connect', () => {
    connected = performance.now()
    if (congestion !== undefined) setCongestion(socketFd(socket), congestion)
    socket.write(congestion !== undefined ? `GET ${bytes} ${congestion}\n` : `GET ${bytes}\n`)
  })
  socket.on('data', (d: Buffer) => {
    if (got === 0) first = performance.now()
    got += d.length
    last = performance.now()
  })
  socket.on('end', () => {
    clearTimeout(deadline)
    const done = performance.now()
    process.stdout.write(
      `${JSON.stringify({ bytes: got, connectMs: connected - t0, ttfbMs: first - t0, lastByteMs: last - t0, completionMs: done - t0 })}\n`
    )
    socket.destroy()
  })
  socket.on('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(deadline)
    process.stderr.write(`rr: ${err.code ?? err.message}\n`)
    process.exitCode = 1
  })
}

const argv = process.argv.slice(2)
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
if (argv[0] === 'server') serve(Number(arg('port') ?? '5210'))
else if (argv[0] === 'client') {
  client(
    arg('host') ?? '127.0.0.1',
    Number(arg('port') ?? '5210'),
    Number(arg('bytes') ?? '0'),
    arg('congestion'),
    Number(arg('timeout-ms') ?? '60000')
  )
} else {
  process.stderr.write(
    'usage: rr.js server --port P | client --host H --port P --bytes N [--congestion C] [--timeout-ms T]\n'
  )
  process.exitCode = 2
}
