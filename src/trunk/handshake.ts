/**
 * Subflow handshakes (docs/protocol.md §2, protocol v2): mutual authentication with a
 * pre-shared key and, when either side asks, encrypted records afterwards.
 *
 *   dialer   → HELLO      client nonce (+ padding)
 *   acceptor → CHALLENGE  server nonce + server proof   (no larger than the HELLO)
 *   dialer   → AUTH       client proof
 *   acceptor → REPLY      status, parameters, flags     (after the trunk is found or made)
 *
 * The acceptor keeps no trunk or flow state and sends nothing larger than what it received
 * until the dialer has proved itself.
 */
import { connect, type Socket } from 'node:net'
import {
  clientProof,
  newNonce,
  proofMatches,
  serverProof,
  trafficKeys,
  trunkAuthKey,
  type Transcript
} from '../common/auth.js'
import { PepError, PepErrorCodes, ProtocolError } from '../common/errors.js'
import { HelloDecoder, VersionMismatchError } from '../common/wire/decode.js'
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
  /** The peer's HELLO (acceptor) or HELLO_REPLY (dialer). */
  readonly peer: Hello
  /** Bytes that followed the peer's last handshake message. */
  readonly rest: Uint8Array
  /** Traffic keys when frames are encrypted, else undefined. */
  readonly keys: SubflowKeys | undefined
}

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

/** Read one handshake message of `kind` from `socket` before `deadline` (performance.now()). */
function readHello(
  socket: Socket,
  kind: number,
  deadline: number
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
    const timer = setTimeout(
      () => {
        cleanup()
        reject(new PepError(PepErrorCodes.TIMEOUT, 'handshake not completed in time', true))
      },
      Math.max(1, deadline - performance.now())
    )
    socket.on('data', onData)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.resume()
  })
}

/** The error for a REPLY that refused us. */
function refusal(status: number): PepError {
  switch (status) {
    case HelloStatus.AUTH_FAILED:
      return new PepError(
        PepErrorCodes.AUTH_FAILED,
        'rx_proxy refused our proof: the pre-shared keys differ',
        true
      )
    case HelloStatus.VERSION_MISMATCH:
      return new PepError(PepErrorCodes.VERSION_MISMATCH, 'rx_proxy speaks another version', true)
    case HelloStatus.LIMIT:
    case HelloStatus.BUSY:
      return new PepError(PepErrorCodes.HELLO_REJECTED, 'rx_proxy is at a limit: try later', true)
    default:
      return new PepError(
        PepErrorCodes.HELLO_REJECTED,
        `rx_proxy refused the subflow: status ${status}`,
        true
      )
  }
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
    const clientNonce = newNonce()
    const flags = local.encrypt ? HELLO_FLAG_ENCRYPT : 0
    const helloAuth = new Uint8Array(HELLO_AUTH_LENGTH)
    helloAuth.set(clientNonce, 0)
    socket.write(
      message(HelloKind.HELLO, {
        trunkId: local.trunkId,
        subflowIndex: opts.index,
        maxFrameBody: local.maxFrameBodyBytes,
        flowWindow: local.flowWindowBytes,
        pathId: opts.pathId,
        flags,
        auth: helloAuth
      })
    )
    const challenge = (await readHello(socket, HelloKind.CHALLENGE, deadline)).hello
    if (challenge.kind === HelloKind.REPLY) throw refusal(challenge.status)
    if (challenge.auth.length !== NONCE_LENGTH + PROOF_LENGTH) {
      throw new PepError(PepErrorCodes.AUTH_FAILED, 'rx_proxy sent a malformed challenge', true)
    }
    const t: Transcript = {
      trunkId: local.trunkId,
      subflowIndex: opts.index,
      flags,
      clientNonce,
      serverNonce: challenge.auth.subarray(0, NONCE_LENGTH)
    }
    const authKey = trunkAuthKey(local.psk, local.trunkId)
    if (!proofMatches(serverProof(authKey, t), challenge.auth.subarray(NONCE_LENGTH))) {
      throw new PepError(
        PepErrorCodes.AUTH_FAILED,
        'the peer failed to prove it knows the pre-shared key (wrong key, or not our rx_proxy)',
        true
      )
    }
    socket.write(
      message(HelloKind.AUTH, {
        trunkId: local.trunkId,
        subflowIndex: opts.index,
        auth: clientProof(authKey, t)
      })
    )
    const { hello: reply, rest } = await readHello(socket, HelloKind.REPLY, deadline)
    if (reply.status !== HelloStatus.OK) throw refusal(reply.status)
    const keys = trafficKeys(local.psk, t)
    return {
      socket,
      peer: reply,
      rest,
      keys:
        (reply.flags & HELLO_FLAG_ENCRYPT) !== 0
          ? { send: keys.clientToServer, receive: keys.serverToClient }
          : undefined
    }
  } catch (err) {
    socket.destroy()
    throw err
  }
}

/**
 * Acceptor: read the HELLO, challenge, verify the dialer's proof. On success the caller sends
 * the REPLY (`helloReply`) once it has found or made the trunk. On a version mismatch or a
 * failed proof it answers with a refusal no larger than what it received, closes, and rejects.
 */
export async function acceptSubflow(
  socket: Socket,
  timeoutMs: number,
  psk: Uint8Array,
  encrypt: boolean
): Promise<Handshake> {
  const deadline = performance.now() + timeoutMs
  let hello: Hello
  let rest: Uint8Array
  try {
    ;({ hello, rest } = await readHello(socket, HelloKind.HELLO, deadline))
  } catch (err) {
    if (err instanceof VersionMismatchError) {
      socket.end(
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
  const refuse = (status: number, code: string, text: string): never => {
    socket.end(message(HelloKind.REPLY, { trunkId: hello.trunkId, status }))
    throw new PepError(code as PepError['code'], text, true)
  }
  if (hello.authMethod !== AuthMethod.PSK_HMAC_SHA256 || hello.auth.length !== HELLO_AUTH_LENGTH) {
    refuse(
      HelloStatus.BAD_HELLO,
      PepErrorCodes.AUTH_FAILED,
      `unsupported authentication (method ${hello.authMethod})`
    )
  }
  const serverNonce = newNonce()
  const t: Transcript = {
    trunkId: hello.trunkId,
    subflowIndex: hello.subflowIndex,
    flags: hello.flags,
    clientNonce: hello.auth.subarray(0, NONCE_LENGTH),
    serverNonce
  }
  const authKey = trunkAuthKey(psk, hello.trunkId)
  const challengeAuth = new Uint8Array(NONCE_LENGTH + PROOF_LENGTH)
  challengeAuth.set(serverNonce, 0)
  challengeAuth.set(serverProof(authKey, t), NONCE_LENGTH)
  socket.write(
    message(HelloKind.CHALLENGE, {
      trunkId: hello.trunkId,
      subflowIndex: hello.subflowIndex,
      auth: challengeAuth
    })
  )
  let auth: Hello
  try {
    ;({ hello: auth, rest } = await readHello(socket, HelloKind.AUTH, deadline))
  } catch (err) {
    socket.destroy()
    throw err
  }
  if (!proofMatches(clientProof(authKey, t), auth.auth)) {
    refuse(
      HelloStatus.AUTH_FAILED,
      PepErrorCodes.AUTH_FAILED,
      'the dialer failed to prove it knows the pre-shared key'
    )
  }
  const keys = trafficKeys(psk, t)
  const encrypted = encrypt || (hello.flags & HELLO_FLAG_ENCRYPT) !== 0
  return {
    socket,
    peer: hello,
    rest,
    keys: encrypted ? { send: keys.serverToClient, receive: keys.clientToServer } : undefined
  }
}

/** Acceptor: the OK reply to an authenticated HELLO (or a refusal with `status`). */
export function helloReply(
  hello: Hello,
  local: Omit<LocalHelloParams, 'psk' | 'encrypt'>,
  status: number,
  flags: number
): Uint8Array {
  return message(HelloKind.REPLY, {
    trunkId: hello.trunkId,
    subflowIndex: hello.subflowIndex,
    maxFrameBody: local.maxFrameBodyBytes,
    flowWindow: local.flowWindowBytes,
    status,
    flags
  })
}
