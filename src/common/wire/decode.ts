/**
 * Pure, incremental decoders for the wire protocol (docs/protocol.md).
 *
 * "Need more bytes" is a return value, never an exception; the only thing thrown is a typed
 * `ProtocolError`. Lengths are checked when the header arrives, before any body is buffered, so a
 * decoder never holds more than one header plus `maxFrameBody` bytes of an unfinished frame.
 */
import { PepErrorCodes, ProtocolError } from '../errors.js'
import { formatIPv4, formatIPv6 } from '../ip.js'
import {
  ACK_FLAG_FIN_RECEIVED,
  DATA_FLAG_FIN,
  FRAME_HEADER_LENGTH,
  FrameType,
  HELLO_FIXED_LENGTH,
  HelloKind,
  HelloStatus,
  MAGIC,
  MAX_AUTH_LENGTH,
  MAX_MAX_FRAME_BODY,
  MAX_REASON_MESSAGE,
  MIN_MAX_FRAME_BODY,
  OPEN_FLAG_SOURCE,
  PROTOCOL_VERSION,
  ResetReason,
  type Endpoint,
  type Frame,
  type Hello
} from './frame.js'

const textDecoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })

/** The peer speaks another protocol version; `peerVersion` says which. */
export class VersionMismatchError extends ProtocolError {
  /** Version byte the peer sent. */
  readonly peerVersion: number

  constructor(peerVersion: number) {
    super(
      PepErrorCodes.VERSION_MISMATCH,
      `peer speaks protocol version ${peerVersion}, this build speaks ${PROTOCOL_VERSION}`,
      ResetReason.PROTOCOL_ERROR
    )
    this.name = 'VersionMismatchError'
    this.peerVersion = peerVersion
  }
}

function malformed(message: string): ProtocolError {
  return new ProtocolError(PepErrorCodes.MALFORMED_FRAME, message, ResetReason.PROTOCOL_ERROR)
}

/** Read a u64 that must be below 2^53. */
function readU64(view: DataView, pos: number, what: string): number {
  const hi = view.getUint32(pos)
  if (hi >= 0x20_0000) throw malformed(`${what} ${hi}*2^32 is beyond 2^53`)
  return hi * 0x1_0000_0000 + view.getUint32(pos + 4)
}

/**
 * A queue of received chunks from which exact byte counts are taken, copying only across chunks.
 * Chunks are consumed through an index (no Array.shift per chunk), so a peer that trickles
 * tiny segments costs linear time, not quadratic.
 */
class ChunkQueue {
  private chunks: Uint8Array[] = []
  /** Index of the first live chunk in `chunks`. */
  private first = 0
  /** Offset of the first unread byte in `chunks[first]`. */
  private head = 0
  /** Bytes held. */
  length = 0

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  /** Look at byte `i` without consuming. Caller guarantees i < length. */
  peek(i: number): number {
    let pos = this.head + i
    for (let k = this.first; k < this.chunks.length; k++) {
      const c = this.chunks[k]!
      if (pos < c.length) return c[pos]!
      pos -= c.length
    }
    return 0
  }

  /** Remove and return exactly `n` bytes (n <= length): a view when they lie in one chunk. */
  take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0)
    this.length -= n
    const firstChunk = this.chunks[this.first]!
    if (firstChunk.length - this.head >= n) {
      const out = firstChunk.subarray(this.head, this.head + n)
      this.head += n
      if (this.head === firstChunk.length) this.dropFirst()
      return out
    }
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const c = this.chunks[this.first]!
      const want = Math.min(c.length - this.head, n - filled)
      out.set(c.subarray(this.head, this.head + want), filled)
      filled += want
      this.head += want
      if (this.head === c.length) this.dropFirst()
    }
    return out
  }

  /** Remove and return everything held. */
  takeAll(): Uint8Array {
    return this.take(this.length)
  }

  private dropFirst(): void {
    this.first++
    this.head = 0
    if (this.first === this.chunks.length) {
      this.chunks = []
      this.first = 0
    } else if (this.first >= 1024 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first)
      this.first = 0
    }
  }
}

/** Parsed HELLO plus the bytes that followed it in the same reads (frames already sent). */
export interface HelloResult {
  readonly hello: Hello
  /** The message exactly as received: the handshake transcript is made of these bytes. */
  readonly bytes: Uint8Array
  readonly rest: Uint8Array
}

/**
 * Decodes one handshake message. Checks the magic byte by byte, so garbage is refused before 40
 * bytes are waited for. The version is judged only once the 40-byte fixed part is in: every
 * version sends at least that much, and the acceptor's VERSION_MISMATCH answer (40 bytes) must
 * be no larger than what it received (a 5-byte probe gets no answer at all).
 */
export class HelloDecoder {
  private readonly queue = new ChunkQueue()
  private readonly expectKind: number

  /** `expectKind`: HelloKind.HELLO on the accepting side, HelloKind.REPLY on the dialing side. */
  constructor(expectKind: number) {
    this.expectKind = expectKind
  }

  /** Bytes buffered so far. */
  get bufferedBytes(): number {
    return this.queue.length
  }

  /** Feed bytes; returns the hello once complete, undefined while more bytes are needed. */
  push(chunk: Uint8Array): HelloResult | undefined {
    this.queue.push(chunk)
    const q = this.queue
    const magicSeen = Math.min(q.length, MAGIC.length)
    for (let i = 0; i < magicSeen; i++) {
      if (q.peek(i) !== MAGIC[i]) {
        throw new ProtocolError(
          PepErrorCodes.BAD_MAGIC,
          'not a Tandem peer: bad magic in hello',
          ResetReason.PROTOCOL_ERROR
        )
      }
    }
    if (q.length < HELLO_FIXED_LENGTH) return undefined
    if (q.peek(4) !== PROTOCOL_VERSION) throw new VersionMismatchError(q.peek(4))
    const authLength = (q.peek(26) << 8) | q.peek(27)
    if (authLength > MAX_AUTH_LENGTH)
      throw malformed(`hello auth length ${authLength} > ${MAX_AUTH_LENGTH}`)
    if (q.length < HELLO_FIXED_LENGTH + authLength) return undefined
    const raw = q.take(HELLO_FIXED_LENGTH + authLength)
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
    const kind = raw[5]!
    // A refusal (a REPLY with a non-OK status) may come instead of the message we wait for.
    const refusal = kind === HelloKind.REPLY && raw[7] !== HelloStatus.OK
    if (kind !== this.expectKind && !refusal) {
      throw malformed(`expected hello kind ${this.expectKind}, got ${kind}`)
    }
    const maxFrameBody = view.getUint32(28)
    if (maxFrameBody < MIN_MAX_FRAME_BODY || maxFrameBody > MAX_MAX_FRAME_BODY) {
      throw malformed(
        `hello max frame body ${maxFrameBody} outside ${MIN_MAX_FRAME_BODY}..${MAX_MAX_FRAME_BODY}`
      )
    }
    const hello: Hello = {
      version: raw[4]!,
      kind: kind as Hello['kind'],
      authMethod: raw[6]!,
      status: raw[7]!,
      trunkId: raw.slice(8, 24),
      subflowIndex: view.getUint16(24),
      maxFrameBody,
      flowWindow: view.getUint32(32),
      pathId: raw[36]!,
      flags: raw[37]!,
      auth: raw.slice(HELLO_FIXED_LENGTH)
    }
    return { hello, bytes: raw.slice(), rest: q.takeAll() }
  }
}

interface Header {
  readonly type: number
  readonly flags: number
  readonly flowId: number
  readonly bodyLength: number
}

/** Checks that only need the header; throws the typed error for each violation. */
function checkHeader(h: Header, maxFrameBody: number): void {
  const isTrunkFrame =
    h.type === FrameType.PING || h.type === FrameType.PONG || h.type === FrameType.GOAWAY
  if (h.type < FrameType.OPEN || h.type > FrameType.RELEASE) {
    throw new ProtocolError(
      PepErrorCodes.UNKNOWN_FRAME_TYPE,
      `unknown frame type 0x${h.type.toString(16).padStart(2, '0')}`,
      ResetReason.PROTOCOL_ERROR
    )
  }
  if (h.bodyLength > maxFrameBody) {
    throw new ProtocolError(
      PepErrorCodes.FRAME_TOO_LARGE,
      `frame body of ${h.bodyLength} bytes exceeds the maximum of ${maxFrameBody}`,
      ResetReason.PROTOCOL_ERROR
    )
  }
  if (isTrunkFrame !== (h.flowId === 0)) {
    throw malformed(`frame type 0x${h.type.toString(16)} with flow id ${h.flowId}`)
  }
  const n = h.bodyLength
  let ok: boolean
  switch (h.type) {
    case FrameType.OPEN:
      ok = n === 12 || n === 16 || n === 24 || n === 40
      break
    case FrameType.DATA:
      ok = n >= 8
      break
    case FrameType.ACK:
      ok = n === 20
      break
    case FrameType.RELEASE:
      ok = n === 12
      break
    case FrameType.PONG:
      ok = n === 16
      break
    case FrameType.RESET:
    case FrameType.GOAWAY:
      ok = n >= 2 && n <= 2 + MAX_REASON_MESSAGE
      break
    default:
      ok = n === 8
  }
  if (!ok) throw malformed(`frame type 0x${h.type.toString(16)} cannot have a ${n}-byte body`)
}

function readEndpoint(body: Uint8Array, family: 4 | 6, at: number, port: number): Endpoint {
  const size = family === 4 ? 4 : 16
  const bytes = body.subarray(at, at + size)
  return { family, address: family === 4 ? formatIPv4(bytes) : formatIPv6(bytes), port }
}

/** Parse a body whose header passed `checkHeader`. */
function parseBody(h: Header, body: Uint8Array): Frame {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  switch (h.type) {
    case FrameType.OPEN: {
      const familyByte = body[0]!
      if (familyByte !== 4 && familyByte !== 6) throw malformed(`OPEN address family ${familyByte}`)
      const family: 4 | 6 = familyByte
      const hasSource = (body[1]! & OPEN_FLAG_SOURCE) !== 0
      const size = family === 4 ? 4 : 16
      if (body.length !== 8 + (hasSource ? 2 : 1) * size) {
        throw malformed(`OPEN body of ${body.length} bytes does not fit IPv${family}`)
      }
      const dst = readEndpoint(body, family, 8, view.getUint16(2))
      const src = hasSource ? readEndpoint(body, family, 8 + size, view.getUint16(4)) : undefined
      return { type: 'open', flowId: h.flowId, dst, src }
    }
    case FrameType.DATA: {
      const offset = readU64(view, 0, 'DATA offset')
      const payload = body.subarray(8)
      if (offset + payload.length > Number.MAX_SAFE_INTEGER) throw malformed('DATA end beyond 2^53')
      return {
        type: 'data',
        flowId: h.flowId,
        offset,
        fin: (h.flags & DATA_FLAG_FIN) !== 0,
        payload
      }
    }
    case FrameType.ACK:
      return {
        type: 'ack',
        flowId: h.flowId,
        received: readU64(view, 0, 'ACK received'),
        limit: readU64(view, 8, 'ACK limit'),
        finReceived: (h.flags & ACK_FLAG_FIN_RECEIVED) !== 0,
        epoch: view.getUint32(16)
      }
    case FrameType.RELEASE:
      return {
        type: 'release',
        flowId: h.flowId,
        epoch: view.getUint32(0),
        limit: readU64(view, 4, 'RELEASE limit')
      }
    case FrameType.RESET:
      return {
        type: 'reset',
        flowId: h.flowId,
        reason: view.getUint16(0),
        message: textDecoder.decode(body.subarray(2))
      }
    case FrameType.GOAWAY:
      return {
        type: 'goaway',
        flowId: 0,
        reason: view.getUint16(0),
        message: textDecoder.decode(body.subarray(2))
      }
    case FrameType.PING:
      return { type: 'ping', flowId: 0, token: readU64(view, 0, 'PING token') }
    default:
      return {
        type: 'pong',
        flowId: 0,
        token: readU64(view, 0, 'PONG token'),
        sendRate: readU64(view, 8, 'PONG send rate')
      }
  }
}

/**
 * Incremental frame decoder for one direction of one subflow.
 * `push()` returns the frames completed by the bytes given (possibly none).
 */
export class FrameDecoder {
  private readonly queue = new ChunkQueue()
  private header: Header | undefined
  private readonly maxFrameBody: number

  /** `maxFrameBody`: the largest body this side announced in its hello, in bytes. */
  constructor(maxFrameBody: number) {
    this.maxFrameBody = maxFrameBody
  }

  /** Bytes buffered and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.queue.length
  }

  /** True when no partial frame is buffered (a clean place for the stream to end). */
  get atBoundary(): boolean {
    return this.queue.length === 0 && this.header === undefined
  }

  /** Feed bytes; returns every frame they complete. Throws only `ProtocolError`. */
  push(chunk: Uint8Array): Frame[] {
    this.queue.push(chunk)
    const frames: Frame[] = []
    for (;;) {
      if (this.header === undefined) {
        if (this.queue.length < FRAME_HEADER_LENGTH) break
        const raw = this.queue.take(FRAME_HEADER_LENGTH)
        const view = new DataView(raw.buffer, raw.byteOffset, FRAME_HEADER_LENGTH)
        const header: Header = {
          type: raw[0]!,
          flags: raw[1]!,
          flowId: view.getUint32(4),
          bodyLength: view.getUint32(8)
        }
        checkHeader(header, this.maxFrameBody)
        this.header = header
      }
      if (this.queue.length < this.header.bodyLength) break
      const body = this.queue.take(this.header.bodyLength)
      frames.push(parseBody(this.header, body))
      this.header = undefined
    }
    return frames
  }

  /** The stream ended: throws TRUNCATED when a frame was cut off. */
  end(): void {
    if (!this.atBoundary) {
      throw new ProtocolError(
        PepErrorCodes.TRUNCATED,
        `stream ended inside a frame (${this.queue.length} bytes buffered)`,
        ResetReason.PROTOCOL_ERROR
      )
    }
  }
}
