/**
 * Subflow handshakes (docs/protocol.md §2): the dialer's HELLO and the acceptor's reply.
 */
import { connect, type Socket } from 'node:net'
import { PepErrorCodes, ProtocolError, PepError } from '../common/errors.js'
import { HelloDecoder, VersionMismatchError } from '../common/wire/decode.js'
import { encodeHello } from '../common/wire/encode.js'
import {
  HelloKind,
  HelloStatus,
  PROTOCOL_VERSION,
  ResetReason,
  type Hello
} from '../common/wire/frame.js'

/** Our side's hello parameters. */
export interface LocalHelloParams {
  readonly trunkId: Uint8Array
  readonly maxFrameBodyBytes: number
  readonly flowWindowBytes: number
}

/** A completed handshake. */
export interface Handshake {
  readonly socket: Socket
  /** The peer's HELLO (acceptor) or HELLO_REPLY (dialer). */
  readonly peer: Hello
  /** Bytes that followed the peer's message. */
  readonly rest: Uint8Array
}

/** Read one hello message from `socket` within `timeoutMs`. */
function readHello(
  socket: Socket,
  kind: number,
  timeoutMs: number
): Promise<{ hello: Hello; rest: Uint8Array }> {
  return new Promise((resolve, reject) => {
    const decoder = new HelloDecoder(kind)
    const cleanup = (): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      try {
        const r = decoder.push(chunk)
        if (r) {
          cleanup()
          socket.pause()
          resolve(r)
        }
      } catch (err) {
        cleanup()
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    }
    const onError = (err: NodeJS.ErrnoException): void => {
      cleanup()
      reject(
        new PepError(
          PepErrorCodes.HELLO_REJECTED,
          `subflow failed during hello: ${err.code ?? err.message}`,
          true
        )
      )
    }
    const onClose = (): void => {
      cleanup()
      reject(
        new ProtocolError(
          PepErrorCodes.TRUNCATED,
          'peer closed during hello',
          ResetReason.PROTOCOL_ERROR
        )
      )
    }
    const timer = setTimeout(() => {
      cleanup()
      reject(new PepError(PepErrorCodes.TIMEOUT, `no hello within ${timeoutMs} ms`, true))
    }, timeoutMs)
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
  })
}

/** Dialer: connect, send HELLO, wait for an OK reply. Rejects with a PepError naming the problem. */
export async function dialSubflow(opts: {
  readonly host: string
  readonly port: number
  readonly localAddress?: string
  readonly index: number
  readonly pathId: number
  readonly timeoutMs: number
  readonly local: LocalHelloParams
}): Promise<Handshake> {
  const socket = connect({
    host: opts.host,
    port: opts.port,
    allowHalfOpen: false,
    noDelay: true,
    ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {})
  })
  const started = Date.now()
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        reject(new PepError(PepErrorCodes.TIMEOUT, `connect timed out after ${opts.timeoutMs} ms`))
      }, opts.timeoutMs)
      socket.once('connect', () => {
        clearTimeout(t)
        resolve()
      })
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(t)
        reject(
          new PepError(PepErrorCodes.HELLO_REJECTED, `connect failed: ${err.code ?? err.message}`)
        )
      })
    })
    socket.write(
      encodeHello({
        version: PROTOCOL_VERSION,
        kind: HelloKind.HELLO,
        authMethod: 0,
        status: 0,
        trunkId: opts.local.trunkId,
        subflowIndex: opts.index,
        maxFrameBody: opts.local.maxFrameBodyBytes,
        flowWindow: opts.local.flowWindowBytes,
        pathId: opts.pathId,
        flags: 0,
        auth: new Uint8Array(0)
      })
    )
    const remaining = Math.max(1, opts.timeoutMs - (Date.now() - started))
    const { hello, rest } = await readHello(socket, HelloKind.REPLY, remaining)
    if (hello.status !== HelloStatus.OK) {
      throw new PepError(
        PepErrorCodes.HELLO_REJECTED,
        `peer refused the subflow: status ${hello.status}`,
        true
      )
    }
    return { socket, peer: hello, rest }
  } catch (err) {
    socket.destroy()
    throw err
  }
}

/** Acceptor: wait for a HELLO. On a version mismatch, answer with ours and close, then reject. */
export async function acceptHello(
  socket: Socket,
  timeoutMs: number
): Promise<{ hello: Hello; rest: Uint8Array }> {
  try {
    return await readHello(socket, HelloKind.HELLO, timeoutMs)
  } catch (err) {
    if (err instanceof VersionMismatchError) {
      socket.end(
        encodeHello({
          version: PROTOCOL_VERSION,
          kind: HelloKind.REPLY,
          authMethod: 0,
          status: HelloStatus.VERSION_MISMATCH,
          trunkId: new Uint8Array(16),
          subflowIndex: 0,
          maxFrameBody: 64,
          flowWindow: 0,
          pathId: 0,
          flags: 0,
          auth: new Uint8Array(0)
        })
      )
    } else {
      socket.destroy()
    }
    throw err
  }
}

/** Acceptor: the reply to a valid HELLO. */
export function helloReply(
  hello: Hello,
  local: LocalHelloParams,
  status: number,
  flags: number
): Uint8Array {
  return encodeHello({
    version: PROTOCOL_VERSION,
    kind: HelloKind.REPLY,
    authMethod: 0,
    status,
    trunkId: hello.trunkId,
    subflowIndex: hello.subflowIndex,
    maxFrameBody: local.maxFrameBodyBytes,
    flowWindow: local.flowWindowBytes,
    pathId: 0,
    flags,
    auth: new Uint8Array(0)
  })
}
