/**
 * The one owner of an application socket (tx: the client; rx: the destination) once its flow
 * has it. It attaches the socket's listeners, gives the flow its `AppPort`, and is the only
 * place that resets and destroys the socket. Listeners are module-level named functions that
 * find their owner through a symbol on the socket (as ws does), so they show by name in stack
 * traces and no closure per socket is made.
 */
import type { Socket } from 'node:net'
import type { AppPort, Flow } from '../core/flow.js'

const kAppSocket = Symbol('tandem.appSocket')

/** A socket with its owner attached. */
interface OwnedSocket extends Socket {
  [kAppSocket]?: AppSocket
}

/** What the owner needs besides the flow. */
export interface AppSocketOptions {
  /**
   * Sets the socket's close to abortive (SO_LINGER 0) or back to graceful. While a flow runs
   * its sockets are abortive, so that if this process dies the applications see a reset, never
   * a clean end of a truncated stream; the flow's own FIN makes them graceful.
   */
  readonly setAbortiveClose?: ((socket: Socket, abortive: boolean) => void) | undefined
  /** The socket drained (after the flow heard of it): the trunk flushes ACKs that were held. */
  readonly onDrain: () => void
}

/** Abort a socket nobody owns yet or any more (RST), once. */
export function abortSocket(socket: Socket): void {
  if (!socket.destroyed) socket.resetAndDestroy()
}

/** An application socket tied to its flow. */
export class AppSocket implements AppPort {
  readonly flow: Flow
  private readonly socket: OwnedSocket
  private readonly opts: AppSocketOptions

  private constructor(socket: Socket, flow: Flow, opts: AppSocketOptions) {
    this.socket = socket
    this.flow = flow
    this.opts = opts
  }

  /**
   * Tie `socket` to `flow`: listeners, abortive close, and the flow's application port. A flow
   * that ended meanwhile (reset while its destination was connecting) gets no socket: it is
   * aborted and undefined is returned.
   */
  static attach(socket: Socket, flow: Flow, opts: AppSocketOptions): AppSocket | undefined {
    if (flow.done) {
      abortSocket(socket)
      return undefined
    }
    const app = new AppSocket(socket, flow, opts)
    const owned: OwnedSocket = socket
    owned[kAppSocket] = app
    socket.setNoDelay(true)
    socket.on('data', appSocketOnData)
    socket.on('end', appSocketOnEnd)
    socket.on('drain', appSocketOnDrain)
    socket.on('error', appSocketOnError)
    socket.on('close', appSocketOnClose)
    opts.setAbortiveClose?.(socket, true)
    flow.attachApp(app)
    return app
  }

  /** @inheritdoc */
  write(chunk: Uint8Array): boolean {
    return this.socket.write(chunk)
  }

  /** @inheritdoc */
  end(): void {
    // Every byte was handed over before this FIN: from here a close may be graceful.
    this.opts.setAbortiveClose?.(this.socket, false)
    this.socket.end()
  }

  /** @inheritdoc (the flow calls it when it is reset: the one place the socket is aborted) */
  reset(): void {
    abortSocket(this.socket)
  }

  /** @inheritdoc */
  pause(): void {
    this.socket.pause()
  }

  /** @inheritdoc */
  resume(): void {
    this.socket.resume()
  }

  /** Called by the 'drain' listener. */
  drained(): void {
    this.flow.onAppDrain()
    this.opts.onDrain()
  }
}

function appSocketOnData(this: OwnedSocket, chunk: Buffer): void {
  this[kAppSocket]?.flow.onAppData(chunk)
}

function appSocketOnEnd(this: OwnedSocket): void {
  this[kAppSocket]?.flow.onAppEnd()
}

function appSocketOnDrain(this: OwnedSocket): void {
  this[kAppSocket]?.drained()
}

function appSocketOnError(this: OwnedSocket, err: NodeJS.ErrnoException): void {
  this[kAppSocket]?.flow.onAppError(err.code ?? err.message)
}

function appSocketOnClose(this: OwnedSocket): void {
  this[kAppSocket]?.flow.onAppClosed()
}
