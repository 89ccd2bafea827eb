/**
 * Subflow handshakes (docs/protocol.md §2, protocol v3): mutual authentication with a
 * pre-shared key over every byte of the handshake and, when either side asks, encrypted records
 * afterwards.
 *
 *   dialer   → HELLO      client nonce (+ padding), parameters, flags
 *   acceptor → CHALLENGE  server nonce + server proof   (no larger than the HELLO)
 *   dialer   → AUTH       client proof
 *   acceptor → REPLY      status, parameters, flags, MAC (after the trunk is found or made)
 *
 * Each proof or MAC covers the exact bytes of every message before it and of its own message
 * (src/common/auth.ts), so a man in the middle can change no field unnoticed. The acceptor keeps
 * no trunk or flow state and sends nothing larger than what it received until the dialer has
 * proved itself; a refused socket is destroyed once its refusal is flushed, or after
 * REFUSAL_LINGER_MS at the latest.
 */
import { connect, type Socket } from 'node:net'
import {
  HandshakeMac,
  messageAuthentic,
  newNonce,
  signMessage,
  trafficKeys,
  trunkAuthKey
} from '../common/auth.js'
import { PepError, PepErrorCodes, ProtocolError } from '../common/errors.js'
import { HelloDecoder, VersionMismatchError, type HelloResult } from '../common/wire/decode.js'
import { encodeHello } from '../common/wire/encode.js'
import {
  AuthMethod,
  HELLO_AUTH_LENGTH,
  HELLO_FLAG_ENCRYPT,
  HelloKind,
  HelloStatus,
  NONCE_LENGTH,
  PROOF_LENGTH,
  PROTOCOL_VERSION,
  REPLY_MAC_LENGTH,
  ResetReason,
  type Hello
} from '../common/wire/frame.js'

/** Our side's hello parameters. */
export interface LocalHelloParams {
  readonly trunkId: Uint8Array
  readonly maxFrameBodyBytes: number
  readonly flowWindowBytes: number
  /** The pre-shared key. */
  readonly psk: Uint8Array
  /** Ask for encrypted records (either side asking is enough). */
  readonly encrypt: boolean
}

/** Traffic keys of a subflow as one side uses them. */
export interface SubflowKeys {
  readonly send: Uint8Array
  readonly receive: Uint8Array
}

/** A completed, authenticated handshake. */
export interface Handshake {
  readonly socket: Socket
  /** The peer's HELLO (acceptor) or REPLY (dialer), every field authenticated. */
  readonly peer: Hello
  /** Bytes that followed the peer's last handshake message. */
  readonly rest: Uint8Array
  /** Traffic keys when frames are encrypted, else undefined. */
  readonly keys: SubflowKeys | undefined
}

/** The acceptor's side of a completed handshake: what its REPLY's MAC needs. */
export interface AcceptedHandshake extends Handshake {
  /** HELLO, CHALLENGE and AUTH exactly as they went over the wire. */
  readonly transcript: readonly Uint8Array[]
  /** The per-trunk authentication key. */
  readonly authKey: Uint8Array
}

/**
 * How long a refused or failed handshake socket may take to flush its refusal before it is
 * destroyed, in ms: a peer that never reads (or never closes) must not hold a descriptor.
 */
export const REFUSAL_LINGER_MS = 1000

const NO_AUTH = new Uint8Array(0)

function message(kind: number, fields: Partial<Hello> & { trunkId: Uint8Array }): Uint8Array {
  return encodeHello({
    version: PROTOCOL_VERSION,
    kind: kind as Hello['kind'],
    authMethod: AuthMethod.PSK_HMAC_SHA256,
    status: HelloStatus.OK,
    subflowIndex: 0,
    maxFrameBody: 64,
    flowWindow: 0,
    pathId: 0,
    flags: 0,
    auth: NO_AUTH,
    ...fields
  })
}

function discard(): void {
  // bytes a refused peer still sends are read and dropped, so that its close is seen
}

/**
 * Send `reply` (if any), then close: the socket is destroyed as soon as the reply is flushed, and
 * after REFUSAL_LINGER_MS whatever happens. Until 'close' it still counts as pending for whoever
 * tracks it. Reading on (and dropping) keeps a paused socket from missing the peer's FIN.
 */
export function closeRefused(socket: Socket, reply?: Uint8Array): void {
  if (socket.destroyed) return
  const timer = setTimeout(() => {
    socket.destroy()
  }, REFUSAL_LINGER_MS)
  timer.unref()
  socket.once('close', () => {
    clearTimeout(timer)
  })
  socket.once('finish', () => {
    socket.destroy()
  })
  socket.on('data', discard)
  socket.resume()
  if (reply !== undefined) socket.end(reply)
  else socket.end()
}

/**
 * Read one handshake message of `kind` from `socket` before `deadline` (performance.now()), and
 * its first byte within `firstByteMs` when given.
 */
function readHello(
  socket: Socket,
  kind: number,
  deadline: number,
  firstByteMs?: number
): Promise<HelloResult> {
  return new Promise((resolve, reject) => {
    const decoder = new HelloDecoder(kind)
    let settled = false
    let gotByte = false
    const cleanup = (): void => {
      settled = true
      clearTimeout(timer)
      clearTimeout(firstByteTimer)
      socket.off('data', onData)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    const onData = (chunk: Buffer): void => {
      gotByte = true
      clearTimeout(firstByteTimer)
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
          `subflow failed during the handshake: ${err.code ?? err.message}`,
          true
        )
      )
    }
    const onClose = (): void => {
      cleanup()
      reject(
        new ProtocolError(
          PepErrorCodes.TRUNCATED,
          'peer closed during the handshake',
          ResetReason.PROTOCOL_ERROR
        )
      )
    }
    // Timers run before the event loop reads sockets: after a stall, bytes that arrived in time
    // may still wait in the kernel. Decide only after this turn's reads (setImmediate).
    const expire = (stillDue: () => boolean, message: string): void => {
      setImmediate(() => {
        if (settled || !stillDue()) return
        cleanup()
        reject(new PepError(PepErrorCodes.TIMEOUT, message, true))
      })
    }
    const timer = setTimeout(
      () => {
        expire(() => true, 'handshake not completed in time')
      },
      Math.max(1, deadline - performance.now())
    )
    // An idle connection is the cheapest way to hold a handshake slot: it gets less time.
    const firstByteTimer =
      firstByteMs === undefined
        ? undefined
        : setTimeout(() => {
            expire(() => !gotByte, `no hello byte within ${firstByteMs} ms`)
          }, firstByteMs)
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.resume()
  })
}

/**
 * The error for a REPLY that refused us. `authentic`: its MAC checked out. An unauthenticated
 * refusal may come from anyone on the path, so it only ever fails this dial (counted, retried with
 * backoff); nothing else is read from it.
 */
function refusal(status: number, authentic: boolean): PepError {
  const unauth = authentic ? '' : ' (unauthenticated refusal)'
  switch (status) {
    case HelloStatus.AUTH_FAILED:
      return new PepError(
        PepErrorCodes.AUTH_FAILED,
        `rx_proxy refused our proof${unauth}: the pre-shared keys differ, or the handshake was changed on the path`,
        true
      )
    case HelloStatus.VERSION_MISMATCH:
      return new PepError(
        PepErrorCodes.VERSION_MISMATCH,
        `rx_proxy speaks another version${unauth}`,
        true
      )
    case HelloStatus.LIMIT:
    case HelloStatus.BUSY:
      return new PepError(
        PepErrorCodes.HELLO_REJECTED,
        `rx_proxy is at a limit${unauth}: try later`,
        true
      )
    default:
      return new PepError(
        PepErrorCodes.HELLO_REJECTED,
        `rx_proxy refused the subflow${unauth}: status ${status}`,
        true
      )
  }
}

function tampered(what: string): PepError {
  return new PepError(
    PepErrorCodes.HANDSHAKE_TAMPERED,
    `${what}: something on the path changed the handshake (man in the middle?)`,
    true
  )
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

/** Dialer: connect, authenticate both ways, and wait for an OK reply. Rejects with a PepError. */
export async function dialSubflow(opts: {
  readonly host: string
  readonly port: number
  readonly localAddress?: string
  readonly index: number
  readonly pathId: number
  readonly timeoutMs: number
  readonly local: LocalHelloParams
}): Promise<Handshake> {
  const deadline = performance.now() + opts.timeoutMs
  const socket = connect({
    host: opts.host,
    port: opts.port,
    allowHalfOpen: false,
    noDelay: true,
    ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {})
  })
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
          new PepError(PepErrorCodes.CONNECT_FAILED, `connect failed: ${err.code ?? err.message}`)
        )
      })
    })
    const local = opts.local
    const helloAuth = new Uint8Array(HELLO_AUTH_LENGTH)
    helloAuth.set(newNonce(), 0)
    const hello = message(HelloKind.HELLO, {
      trunkId: local.trunkId,
      subflowIndex: opts.index,
      maxFrameBody: local.maxFrameBodyBytes,
      flowWindow: local.flowWindowBytes,
      pathId: opts.pathId,
      flags: local.encrypt ? HELLO_FLAG_ENCRYPT : 0,
      auth: helloAuth
    })
    socket.write(hello)
    const challenge = await readHello(socket, HelloKind.CHALLENGE, deadline)
    // A refusal before our AUTH cannot be authenticated: it fails this dial and nothing more.
    if (challenge.hello.kind === HelloKind.REPLY) throw refusal(challenge.hello.status, false)
    if (challenge.hello.auth.length !== NONCE_LENGTH + PROOF_LENGTH) {
      throw new PepError(PepErrorCodes.AUTH_FAILED, 'rx_proxy sent a malformed challenge', true)
    }
    const authKey = trunkAuthKey(local.psk, local.trunkId)
    if (!messageAuthentic(authKey, HandshakeMac.SERVER, [hello], challenge.bytes)) {
      throw new PepError(
        PepErrorCodes.AUTH_FAILED,
        'the peer failed to prove it knows the pre-shared key (wrong key, not our rx_proxy, or the handshake was changed on the path)',
        true
      )
    }
    const auth = signMessage(
      authKey,
      HandshakeMac.CLIENT,
      [hello, challenge.bytes],
      message(HelloKind.AUTH, {
        trunkId: local.trunkId,
        subflowIndex: opts.index,
        auth: new Uint8Array(PROOF_LENGTH)
      })
    )
    socket.write(auth)
    const transcript = [hello, challenge.bytes, auth]
    const {
      hello: reply,
      bytes: replyBytes,
      rest
    } = await readHello(socket, HelloKind.REPLY, deadline)
    // The MAC first: no field of the REPLY, its status included, counts before it checks out.
    const authentic =
      reply.auth.length === REPLY_MAC_LENGTH &&
      messageAuthentic(authKey, HandshakeMac.REPLY, transcript, replyBytes)
    if (!authentic) {
      if (reply.status !== HelloStatus.OK) throw refusal(reply.status, false)
      throw tampered('the REPLY failed authentication')
    }
    if (reply.status !== HelloStatus.OK) throw refusal(reply.status, true)
    if (!sameBytes(reply.trunkId, local.trunkId) || reply.subflowIndex !== opts.index) {
      throw new PepError(
        PepErrorCodes.HELLO_REJECTED,
        'rx_proxy answered for another trunk or subflow',
        true
      )
    }
    const encrypted = (reply.flags & HELLO_FLAG_ENCRYPT) !== 0
    // The REPLY is authentic, so only a broken peer gets here; refuse it all the same.
    if (local.encrypt && !encrypted) throw tampered('the subflow came up without encryption')
    const keys = encrypted ? trafficKeys(local.psk, local.trunkId, transcript) : undefined
    return {
      socket,
      peer: reply,
      rest,
      keys:
        keys === undefined ? undefined : { send: keys.clientToServer, receive: keys.serverToClient }
    }
  } catch (err) {
    socket.destroy()
    throw err
  }
}

/** What the acceptor needs to run a handshake. */
export interface AcceptOptions {
  /** Time the whole handshake may take, in ms. */
  readonly timeoutMs: number
  /** Time until the first HELLO byte, in ms (shorter: idle connections are cheap to make). */
  readonly firstByteMs?: number
  readonly psk: Uint8Array
  /** Encrypt even when the dialer does not ask. */
  readonly encrypt: boolean
}

/**
 * Acceptor: read the HELLO, challenge, verify the dialer's proof. On success the caller sends
 * the REPLY (`helloReply`) once it has found or made the trunk. On a version mismatch or a
 * failed proof it answers with a refusal no larger than what it received and closes
 * (`closeRefused`); on anything else it destroys the socket. Either way it rejects.
 */
export async function acceptSubflow(
  socket: Socket,
  opts: AcceptOptions
): Promise<AcceptedHandshake> {
  const deadline = performance.now() + opts.timeoutMs
  let first: HelloResult
  try {
    first = await readHello(socket, HelloKind.HELLO, deadline, opts.firstByteMs)
  } catch (err) {
    if (err instanceof VersionMismatchError) {
      // 40 bytes, after at least 40 received (the decoder judges the version no earlier).
      closeRefused(
        socket,
        message(HelloKind.REPLY, {
          trunkId: new Uint8Array(16),
          status: HelloStatus.VERSION_MISMATCH
        })
      )
    } else {
      socket.destroy()
    }
    throw err
  }
  const hello = first.hello
  const refuse = (status: number, code: string, text: string): never => {
    closeRefused(socket, message(HelloKind.REPLY, { trunkId: hello.trunkId, status }))
    throw new PepError(code as PepError['code'], text, true)
  }
  if (hello.authMethod !== AuthMethod.PSK_HMAC_SHA256 || hello.auth.length !== HELLO_AUTH_LENGTH) {
    refuse(
      HelloStatus.BAD_HELLO,
      PepErrorCodes.AUTH_FAILED,
      `unsupported authentication (method ${hello.authMethod})`
    )
  }
  const authKey = trunkAuthKey(opts.psk, hello.trunkId)
  const challengeAuth = new Uint8Array(NONCE_LENGTH + PROOF_LENGTH)
  challengeAuth.set(newNonce(), 0)
  const challenge = signMessage(
    authKey,
    HandshakeMac.SERVER,
    [first.bytes],
    message(HelloKind.CHALLENGE, {
      trunkId: hello.trunkId,
      subflowIndex: hello.subflowIndex,
      auth: challengeAuth
    })
  )
  socket.write(challenge)
  let second: HelloResult
  try {
    second = await readHello(socket, HelloKind.AUTH, deadline)
  } catch (err) {
    socket.destroy()
    throw err
  }
  if (
    second.hello.kind !== HelloKind.AUTH ||
    second.hello.auth.length !== PROOF_LENGTH ||
    !messageAuthentic(authKey, HandshakeMac.CLIENT, [first.bytes, challenge], second.bytes)
  ) {
    refuse(
      HelloStatus.AUTH_FAILED,
      PepErrorCodes.AUTH_FAILED,
      'the dialer failed to prove it knows the pre-shared key (wrong key?)'
    )
  }
  const transcript = [first.bytes, challenge, second.bytes]
  const encrypted = opts.encrypt || (hello.flags & HELLO_FLAG_ENCRYPT) !== 0
  const keys = encrypted ? trafficKeys(opts.psk, hello.trunkId, transcript) : undefined
  return {
    socket,
    peer: hello,
    rest: second.rest,
    keys:
      keys === undefined ? undefined : { send: keys.serverToClient, receive: keys.clientToServer },
    transcript,
    authKey
  }
}

/**
 * Acceptor: the REPLY to an authenticated dialer (OK, or a refusal with `status`), with its MAC
 * over the whole transcript and every REPLY field. `flags` must say ENCRYPT exactly when the
 * handshake's keys are set.
 */
export function helloReply(
  hs: AcceptedHandshake,
  local: Omit<LocalHelloParams, 'psk' | 'encrypt'>,
  status: number,
  flags: number
): Uint8Array {
  return signMessage(
    hs.authKey,
    HandshakeMac.REPLY,
    hs.transcript,
    message(HelloKind.REPLY, {
      trunkId: hs.peer.trunkId,
      subflowIndex: hs.peer.subflowIndex,
      maxFrameBody: local.maxFrameBodyBytes,
      flowWindow: local.flowWindowBytes,
      status,
      flags,
      auth: new Uint8Array(REPLY_MAC_LENGTH)
    })
  )
}
