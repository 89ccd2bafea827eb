/**
 * A man in the middle for handshake tests: a TCP relay on 127.0.0.1 that forwards a dialer's
 * connection to the acceptor, cuts each direction into handshake messages (40-byte fixed part
 * plus the auth length it states), lets a test change one message, and records every byte each
 * way so that the test can tell what would have been readable on the path.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

import { HELLO_FIXED_LENGTH } from '../../src/common/wire/frame.js'

/** Which way bytes go: `up` dialer → acceptor (HELLO, AUTH), `down` acceptor → dialer. */
export type Direction = 'up' | 'down'

/** One change to one handshake message. */
export interface Tamper {
  readonly name: string
  readonly direction: Direction
  /** 0: HELLO (up) or CHALLENGE (down); 1: AUTH (up) or REPLY (down). */
  readonly message: 0 | 1
  /** Change the message in place (its length must stay). */
  readonly change: (bytes: Uint8Array) => void
}

/** Cuts one direction into its first two handshake messages, then passes bytes through. */
class Splitter {
  private buffered = Buffer.alloc(0)
  /** Handshake messages seen so far. */
  messages = 0
  /** Bytes after the second handshake message. */
  after = 0

  constructor(private readonly onMessage: (index: 0 | 1, bytes: Uint8Array) => void) {}

  /** Feed bytes; returns what to forward now. */
  push(chunk: Buffer): Buffer {
    if (this.messages >= 2) {
      this.after += chunk.length
      return chunk
    }
    this.buffered = Buffer.concat([this.buffered, chunk])
    const out: Buffer[] = []
    while (this.messages < 2 && this.buffered.length >= HELLO_FIXED_LENGTH) {
      const length = HELLO_FIXED_LENGTH + this.buffered.readUInt16BE(26)
      if (this.buffered.length < length) break
      const message = Buffer.from(this.buffered.subarray(0, length))
      this.buffered = this.buffered.subarray(length)
      this.onMessage(this.messages as 0 | 1, message)
      this.messages++
      out.push(message)
    }
    if (this.messages >= 2 && this.buffered.length > 0) {
      this.after += this.buffered.length
      out.push(this.buffered)
      this.buffered = Buffer.alloc(0)
    }
    return Buffer.concat(out)
  }
}

/** One relayed connection. */
export class RelaySession {
  /** The change applied to this connection (undefined: none). */
  readonly tamper: Tamper | undefined
  /** True once the change was made. */
  tampered = false
  /** Every byte each way, as forwarded. */
  readonly bytes: Record<Direction, Buffer[]> = { up: [], down: [] }
  /** Resolves once both sockets are closed. */
  readonly closed: Promise<void>
  private readonly splitters: Record<Direction, Splitter>

  constructor(dialer: Socket, acceptorPort: number, tamper: Tamper | undefined) {
    this.tamper = tamper
    const onMessage =
      (direction: Direction) =>
      (index: 0 | 1, bytes: Uint8Array): void => {
        if (tamper?.direction === direction && tamper.message === index) {
          tamper.change(bytes)
          this.tampered = true
        }
      }
    this.splitters = { up: new Splitter(onMessage('up')), down: new Splitter(onMessage('down')) }
    const acceptor = connect({ host: '127.0.0.1', port: acceptorPort, noDelay: true })
    dialer.setNoDelay(true)
    const pipe = (from: Socket, to: Socket, direction: Direction): void => {
      from.on('data', (chunk: Buffer) => {
        const out = this.splitters[direction].push(chunk)
        if (out.length === 0) return
        this.bytes[direction].push(out)
        to.write(out)
      })
      from.on('end', () => to.end())
      from.on('error', () => undefined)
      // Let what was written flush, then make sure the other side goes too.
      from.on('close', () => {
        to.end()
        setTimeout(() => to.destroy(), 500).unref()
      })
    }
    pipe(dialer, acceptor, 'up')
    pipe(acceptor, dialer, 'down')
    this.closed = Promise.all([
      new Promise<void>((r) =>
        dialer.once('close', () => {
          r()
        })
      ),
      new Promise<void>((r) =>
        acceptor.once('close', () => {
          r()
        })
      )
    ]).then(() => undefined)
  }

  /** Bytes the dialer sent after its second handshake message (AUTH). */
  get upAfterHandshake(): number {
    return this.splitters.up.after
  }

  /** Bytes the acceptor sent after its second handshake message (REPLY). */
  get downAfterHandshake(): number {
    return this.splitters.down.after
  }

  /** All bytes one way, joined. */
  all(direction: Direction): Buffer {
    return Buffer.concat(this.bytes[direction])
  }
}

/** The relay: every new connection gets the tamper set at the time it arrives. */
export class HandshakeRelay {
  readonly sessions: RelaySession[] = []
  tamper: Tamper | undefined
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()

  constructor(private readonly acceptorPort: number) {}

  /** Listen on 127.0.0.1; resolves with the port. */
  async start(): Promise<number> {
    const server = createServer({ allowHalfOpen: true }, (socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
      this.sessions.push(new RelaySession(socket, this.acceptorPort, this.tamper))
    })
    this.server = server
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const a = server.address()
    return typeof a === 'object' && a !== null ? a.port : 0
  }

  /** The first session that carried `tamper` and has closed; undefined after `timeoutMs`. */
  async closedSessionWith(tamper: Tamper, timeoutMs: number): Promise<RelaySession | undefined> {
    const deadline = performance.now() + timeoutMs
    while (performance.now() < deadline) {
      const s = this.sessions.find((x) => x.tamper === tamper && x.tampered)
      if (s !== undefined) {
        const closed = await Promise.race([
          s.closed.then(() => true),
          new Promise<boolean>((r) =>
            setTimeout(
              () => {
                r(false)
              },
              Math.max(1, deadline - performance.now())
            )
          )
        ])
        return closed ? s : undefined
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    return undefined
  }

  /** Stop listening and close every relayed connection. */
  stop(): void {
    this.server?.close()
    for (const s of this.sockets) s.destroy()
  }
}
