/**
 * Connected socket pairs on loopback, in this process: the two ends of one TCP connection, for
 * tests that run trunks, subflows or application sockets without spawning proxies.
 */
import { connect, createServer, type Socket } from 'node:net'

/** Two connected sockets: what is written on `a` is read on `b` and back. */
export interface SocketPair {
  readonly a: Socket
  readonly b: Socket
}

/** One connected pair (`allowHalfOpen` on both ends, as the proxies' sockets are). */
export async function socketPair(): Promise<SocketPair> {
  const server = createServer({ allowHalfOpen: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  const a = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await new Promise<void>((resolve) => a.once('connect', resolve))
  const b = await accepted
  server.close()
  return { a, b }
}
