/**
 * Pure encoders for the wire protocol (docs/protocol.md). No I/O, no clocks.
 */
import { ProtocolError, PepErrorCodes } from '../errors.js'
import { parseIPv4, parseIPv6 } from '../ip.js'
import {
  ACK_FLAG_FIN_RECEIVED,
  DATA_FLAG_FIN,
  DATA_HEADER_LENGTH,
  FRAME_HEADER_LENGTH,
  FrameType,
  HELLO_FIXED_LENGTH,
  MAGIC,
  MAX_AUTH_LENGTH,
  MAX_REASON_MESSAGE,
  OPEN_FLAG_SOURCE,
  ResetReason,
  TRUNK_ID_LENGTH,
  type Endpoint,
  type Frame,
  type Hello
} from './frame.js'

const textEncoder = new TextEncoder()

/** Write a u64 below 2^53 at `pos`. */
function writeU64(view: DataView, pos: number, value: number): void {
  view.setUint32(pos, Math.floor(value / 0x1_0000_0000))
  view.setUint32(pos + 4, value >>> 0)
}

/** Bytes of an endpoint's address; throws when text and family disagree. */
function addressBytes(ep: Endpoint): Uint8Array {
  const bytes = ep.family === 4 ? parseIPv4(ep.address) : parseIPv6(ep.address)
  if (!bytes) {
    throw new ProtocolError(
      PepErrorCodes.MALFORMED_FRAME,
      `not an IPv${ep.family} address: ${ep.address}`,
      ResetReason.INTERNAL,
      false
    )
  }
  return bytes
}

/** Reason message truncated to the protocol's maximum, on a character boundary. */
function reasonBytes(message: string): Uint8Array {
  let bytes = textEncoder.encode(message)
  if (bytes.length <= MAX_REASON_MESSAGE) return bytes
  // Cut whole code points, never half a surrogate pair.
  const chars = Array.from(message)
  while (bytes.length > MAX_REASON_MESSAGE) {
    chars.pop()
    bytes = textEncoder.encode(chars.join(''))
  }
  return bytes
}

/** Encode a HELLO or HELLO_REPLY. */
export function encodeHello(hello: Hello): Uint8Array {
  if (hello.trunkId.length !== TRUNK_ID_LENGTH) throw new RangeError('trunk id must be 16 bytes')
  if (hello.auth.length > MAX_AUTH_LENGTH) throw new RangeError('auth data too long')
  const out = new Uint8Array(HELLO_FIXED_LENGTH + hello.auth.length)
  const view = new DataView(out.buffer)
  out.set(MAGIC, 0)
  out[4] = hello.version
  out[5] = hello.kind
  out[6] = hello.authMethod
  out[7] = hello.status
  out.set(hello.trunkId, 8)
  view.setUint16(24, hello.subflowIndex)
  view.setUint16(26, hello.auth.length)
  view.setUint32(28, hello.maxFrameBody)
  view.setUint32(32, hello.flowWindow)
  out[36] = hello.pathId
  out[37] = hello.flags
  out.set(hello.auth, HELLO_FIXED_LENGTH)
  return out
}

/** Body length of a frame, without encoding it (quic-go's `Length`). */
export function frameBodyLength(frame: Frame): number {
  switch (frame.type) {
    case 'open': {
      const addr = frame.dst.family === 4 ? 4 : 16
      return 8 + (frame.src ? 2 * addr : addr)
    }
    case 'data':
      return 8 + frame.payload.length
    case 'ack':
      return 20
    case 'release':
      return 12
    case 'reset':
    case 'goaway':
      return 2 + reasonBytes(frame.message).length
    case 'ping':
      return 8
    case 'pong':
      return 16
  }
}

/** Whole encoded length of a frame, header included. */
export function frameLength(frame: Frame): number {
  return FRAME_HEADER_LENGTH + frameBodyLength(frame)
}

/** Write the 12-byte frame header. */
function writeHeader(
  view: DataView,
  type: number,
  flags: number,
  flowId: number,
  bodyLength: number
): void {
  view.setUint8(0, type)
  view.setUint8(1, flags)
  view.setUint16(2, 0)
  view.setUint32(4, flowId)
  view.setUint32(8, bodyLength)
}

/**
 * The 20-byte header of a DATA frame whose payload is written separately, so that bulk payload
 * is never copied (the caller writes header and payload back to back under cork()).
 */
export function encodeDataHeader(
  flowId: number,
  offset: number,
  payloadLength: number,
  fin: boolean
): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_LENGTH)
  const view = new DataView(out.buffer)
  writeHeader(view, FrameType.DATA, fin ? DATA_FLAG_FIN : 0, flowId, 8 + payloadLength)
  writeU64(view, FRAME_HEADER_LENGTH, offset)
  return out
}

/** Encode one frame into a new buffer (payload copied; bulk DATA uses `encodeDataHeader`). */
export function encodeFrame(frame: Frame): Uint8Array {
  const bodyLength = frameBodyLength(frame)
  const out = new Uint8Array(FRAME_HEADER_LENGTH + bodyLength)
  const view = new DataView(out.buffer)
  const body = FRAME_HEADER_LENGTH
  switch (frame.type) {
    case 'open': {
      const src = frame.src
      if (src && src.family !== frame.dst.family) {
        throw new RangeError('OPEN source and destination must be of one family')
      }
      writeHeader(view, FrameType.OPEN, 0, frame.flowId, bodyLength)
      out[body] = frame.dst.family
      out[body + 1] = src ? OPEN_FLAG_SOURCE : 0
      view.setUint16(body + 2, frame.dst.port)
      view.setUint16(body + 4, src ? src.port : 0)
      view.setUint16(body + 6, 0)
      const dst = addressBytes(frame.dst)
      out.set(dst, body + 8)
      if (src) out.set(addressBytes(src), body + 8 + dst.length)
      break
    }
    case 'data':
      writeHeader(view, FrameType.DATA, frame.fin ? DATA_FLAG_FIN : 0, frame.flowId, bodyLength)
      writeU64(view, body, frame.offset)
      out.set(frame.payload, body + 8)
      break
    case 'ack':
      writeHeader(
        view,
        FrameType.ACK,
        frame.finReceived ? ACK_FLAG_FIN_RECEIVED : 0,
        frame.flowId,
        bodyLength
      )
      writeU64(view, body, frame.received)
      writeU64(view, body + 8, frame.limit)
      view.setUint32(body + 16, frame.epoch)
      break
    case 'release':
      writeHeader(view, FrameType.RELEASE, 0, frame.flowId, bodyLength)
      view.setUint32(body, frame.epoch)
      writeU64(view, body + 4, frame.limit)
      break
    case 'reset':
    case 'goaway': {
      const type = frame.type === 'reset' ? FrameType.RESET : FrameType.GOAWAY
      writeHeader(view, type, 0, frame.flowId, bodyLength)
      view.setUint16(body, frame.reason)
      out.set(reasonBytes(frame.message), body + 2)
      break
    }
    case 'ping':
      writeHeader(view, FrameType.PING, 0, 0, bodyLength)
      writeU64(view, body, frame.token)
      break
    case 'pong':
      writeHeader(view, FrameType.PONG, 0, 0, bodyLength)
      writeU64(view, body, frame.token)
      writeU64(view, body + 8, frame.sendRate)
      break
  }
  return out
}
