/**
 * The wire protocol: frame and handshake types and constants (docs/protocol.md; the version
 * spoken is PROTOCOL_VERSION).
 * Types and constants only; encode.ts and decode.ts hold the logic.
 */

/**
 * Protocol version this build speaks (4: a PONG carries its sender's sending rate, which the
 * PING's sender sizes the credit of new flows by; 3: every byte of the handshake authenticated,
 * the REPLY carries a MAC; 2 had proofs over the nonces only, so a man in the middle could
 * change the REPLY's flags and parameters).
 */
export const PROTOCOL_VERSION = 5

/** "TNDM": first four bytes of every HELLO and HELLO_REPLY. */
export const MAGIC = Uint8Array.of(0x54, 0x4e, 0x44, 0x4d)

/** Fixed part of HELLO / HELLO_REPLY, in bytes. */
export const HELLO_FIXED_LENGTH = 40

/** Most auth data a HELLO may carry, in bytes. */
export const MAX_AUTH_LENGTH = 1024

/** Length of the trunk id, in bytes. */
export const TRUNK_ID_LENGTH = 16

/** Every frame header, in bytes. */
export const FRAME_HEADER_LENGTH = 12

/** DATA frame header including the 8-byte offset, in bytes. */
export const DATA_HEADER_LENGTH = FRAME_HEADER_LENGTH + 8

/** Smallest `max frame body` a peer may announce, in bytes. */
export const MIN_MAX_FRAME_BODY = 64

/** Largest `max frame body` a peer may announce, in bytes (16 MiB). */
export const MAX_MAX_FRAME_BODY = 16 * 1024 * 1024

/** Longest RESET / GOAWAY message, in bytes of UTF-8. */
export const MAX_REASON_MESSAGE = 256

/** Offsets at or above this are rejected (JavaScript numbers are exact below it). */
export const MAX_OFFSET = Number.MAX_SAFE_INTEGER

/** Handshake message kinds. */
export const HelloKind = { HELLO: 1, REPLY: 2, CHALLENGE: 3, AUTH: 4 } as const

/** Authentication methods. */
export const AuthMethod = {
  /** Challenge-response with HMAC-SHA256 over both nonces, keyed by a pre-shared key. */
  PSK_HMAC_SHA256: 1
} as const

/** Bytes of each side's nonce. */
export const NONCE_LENGTH = 32

/** Bytes of an HMAC-SHA256 proof. */
export const PROOF_LENGTH = 32

/** HELLO auth data: the client nonce and padding, so that the CHALLENGE is no larger. */
export const HELLO_AUTH_LENGTH = NONCE_LENGTH + PROOF_LENGTH

/** Bytes of the MAC that ends an authenticated REPLY's auth data (HMAC-SHA256). */
export const REPLY_MAC_LENGTH = 32

/** HELLO / HELLO_REPLY flag: frames after the handshake are encrypted (AES-256-GCM records). */
export const HELLO_FLAG_ENCRYPT = 0x02

/** HELLO_REPLY status codes. */
export const HelloStatus = {
  OK: 0,
  VERSION_MISMATCH: 1,
  AUTH_FAILED: 2,
  LIMIT: 3,
  BAD_HELLO: 4,
  /** The acceptor is shutting down or overloaded with handshakes. */
  BUSY: 5
} as const
/** One HELLO_REPLY status. */
export type HelloStatusCode = (typeof HelloStatus)[keyof typeof HelloStatus]

/** HELLO_REPLY flag: this HELLO created the trunk. */
export const REPLY_FLAG_TRUNK_NEW = 0x01

/** A HELLO or HELLO_REPLY. */
export interface Hello {
  /** Protocol version of the sender. */
  readonly version: number
  /** HELLO or HELLO_REPLY. */
  readonly kind: (typeof HelloKind)[keyof typeof HelloKind]
  /** 0 = none in v1. */
  readonly authMethod: number
  /** Reply status; 0 in a HELLO. */
  readonly status: number
  /** 16 random bytes naming the trunk. */
  readonly trunkId: Uint8Array
  /** Which subflow of the trunk. */
  readonly subflowIndex: number
  /** Largest frame body the sender accepts, in bytes. */
  readonly maxFrameBody: number
  /** Credit the sender grants per new flow, in bytes. */
  readonly flowWindow: number
  /** Local path the subflow uses (HELLO only). */
  readonly pathId: number
  /** REPLY flags (REPLY_FLAG_*). */
  readonly flags: number
  /** Authentication data (empty in v1). */
  readonly auth: Uint8Array
}

/** Frame type bytes. */
export const FrameType = {
  OPEN: 0x01,
  DATA: 0x02,
  ACK: 0x03,
  RESET: 0x04,
  PING: 0x05,
  PONG: 0x06,
  GOAWAY: 0x07,
  RELEASE: 0x08
} as const

/** DATA flag: the stream ends after this payload. */
export const DATA_FLAG_FIN = 0x01
/** ACK flag: the peer's FIN and everything before it was received. */
export const ACK_FLAG_FIN_RECEIVED = 0x01
/** OPEN flag: a source endpoint follows the destination. */
export const OPEN_FLAG_SOURCE = 0x01

/** RESET / GOAWAY reasons. */
export const ResetReason = {
  APP_RESET: 1,
  CONNECT_REFUSED: 2,
  CONNECT_UNREACHABLE: 3,
  CONNECT_TIMEOUT: 4,
  PROTOCOL_ERROR: 5,
  FLOW_LIMIT: 6,
  MEMORY_LIMIT: 7,
  SHUTDOWN: 8,
  TRUNK_LOST: 9,
  POLICY_DENIED: 10,
  INTERNAL: 11,
  IDLE_TIMEOUT: 12,
  CREDIT_EXCEEDED: 13,
  PEER_RESTARTED: 14
} as const
/** One reset reason. */
export type ResetReasonCode = (typeof ResetReason)[keyof typeof ResetReason]

/** Human name of a reset reason (unknown ones are named by number). */
export function resetReasonName(reason: number): string {
  for (const [name, value] of Object.entries(ResetReason)) {
    if (value === reason) return name
  }
  return `UNKNOWN_${reason}`
}

/** A TCP endpoint. `address` is in text form (dotted quad or RFC 5952 IPv6). */
export interface Endpoint {
  readonly family: 4 | 6
  readonly address: string
  readonly port: number
}

/** OPEN: carry a new flow to `dst`. */
export interface OpenFrame {
  readonly type: 'open'
  readonly flowId: number
  readonly dst: Endpoint
  /** The client's own endpoint, for source-transparent connects. */
  readonly src: Endpoint | undefined
}

/** DATA: `payload` at stream `offset`; `fin` ends the stream after it. */
export interface DataFrame {
  readonly type: 'data'
  readonly flowId: number
  readonly offset: number
  readonly fin: boolean
  readonly payload: Uint8Array
}

/** ACK: cumulative receipt and credit of one stream. */
export interface AckFrame {
  readonly type: 'ack'
  readonly flowId: number
  /** Every byte below this offset was received. */
  readonly received: number
  /** The peer may send bytes below this offset. */
  readonly limit: number
  /** The FIN was received. */
  readonly finReceived: boolean
  /**
   * The credit epoch `limit` belongs to: 0 for the credit of the hello, then the epoch of the
   * stream sender's last RELEASE the receiver took. Below 2^32.
   */
  readonly epoch: number
}

/**
 * RELEASE: the sender of a stream gives credit back (its application went idle): it sends no
 * byte at or beyond `limit` until an ACK of epoch `epoch` grants more.
 */
export interface ReleaseFrame {
  readonly type: 'release'
  readonly flowId: number
  /** The new credit epoch: one more than the sender's last. Below 2^32. */
  readonly epoch: number
  /** Bytes at or beyond this offset are not sent under any earlier epoch's credit. */
  readonly limit: number
}

/** RESET: abort the flow. */
export interface ResetFrame {
  readonly type: 'reset'
  readonly flowId: number
  /**
   * A `ResetReason` value when we send it; as received, any u16 (a newer peer may send a reason
   * this build does not know: it is logged by number, never rejected).
   */
  readonly reason: number
  readonly message: string
}

/** PING: RTT probe and liveness, per subflow. */
export interface PingFrame {
  readonly type: 'ping'
  readonly flowId: 0
  /** Opaque u64 (below 2^53), echoed by the PONG. */
  readonly token: number
}

/** PONG: the answer to a PING, with the rate its sender sends to us at. */
export interface PongFrame {
  readonly type: 'pong'
  readonly flowId: 0
  /** The PING's token. */
  readonly token: number
  /**
   * The PONG sender's estimate of the rate it can send to us at (its trunk's estimate, a
   * burst's rate included while it still learns the path), bytes per second; 0: not known yet.
   * Below 2^53.
   */
  readonly sendRate: number
}

/** GOAWAY: the sender closes this subflow on purpose. */
export interface GoAwayFrame {
  readonly type: 'goaway'
  readonly flowId: 0
  /**
   * A `ResetReason` value when we send it; as received, any u16 (a newer peer may send a reason
   * this build does not know: it is logged by number, never rejected).
   */
  readonly reason: number
  readonly message: string
}

/** Every frame of the protocol. */
export type Frame =
  OpenFrame | DataFrame | AckFrame | ReleaseFrame | ResetFrame | PingFrame | PongFrame | GoAwayFrame
