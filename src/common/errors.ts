/**
 * Typed errors with stable codes.
 *
 * Every error a user or a peer can cause is a `PepError` with a `code` that tests and
 * counters key on. Messages are one line and name the problem; they never need a stack
 * trace to be understood.
 */

import type { ResetReasonCode } from './wire/frame.js'

/** Every stable error code Tandem emits. Literal union, checked exhaustively where switched on. */
export const PepErrorCodes = {
  /** Hello did not start with the Tandem magic. */
  BAD_MAGIC: 'PEP_ERR_BAD_MAGIC',
  /** Peer speaks another protocol version. */
  VERSION_MISMATCH: 'PEP_ERR_VERSION_MISMATCH',
  /** Frame type byte is not one the protocol defines. */
  UNKNOWN_FRAME_TYPE: 'PEP_ERR_UNKNOWN_FRAME_TYPE',
  /** Declared frame body length exceeds the negotiated maximum. */
  FRAME_TOO_LARGE: 'PEP_ERR_FRAME_TOO_LARGE',
  /** Frame body does not have the size or content its type requires. */
  MALFORMED_FRAME: 'PEP_ERR_MALFORMED_FRAME',
  /** Input ended in the middle of a frame or hello. */
  TRUNCATED: 'PEP_ERR_TRUNCATED',
  /** Hello reply refused the subflow. */
  HELLO_REJECTED: 'PEP_ERR_HELLO_REJECTED',
  /** A subflow's TCP connect failed (refused, unreachable): the peer was not reached at all. */
  CONNECT_FAILED: 'PEP_ERR_CONNECT_FAILED',
  /** Peer sent data beyond the credit it was granted. */
  CREDIT_EXCEEDED: 'PEP_ERR_CREDIT_EXCEEDED',
  /** Reorder buffer would hold too many separate ranges. */
  TOO_MANY_GAPS: 'PEP_ERR_TOO_MANY_GAPS',
  /** Peer changed data it had already sent (FIN offset moved, data beyond FIN). */
  FLOW_STATE: 'PEP_ERR_FLOW_STATE',
  /** A byte limit (global, per queue) was reached. */
  LIMIT: 'PEP_ERR_LIMIT',
  /** A configuration value is invalid. */
  CONFIG: 'PEP_ERR_CONFIG',
  /** The native addon is missing or a system call failed. */
  NATIVE: 'PEP_ERR_NATIVE',
  /** The peer did not answer in time. */
  TIMEOUT: 'PEP_ERR_TIMEOUT',
  /** The peer failed to prove it knows the pre-shared key (or we did, to it). */
  AUTH_FAILED: 'PEP_ERR_AUTH_FAILED',
  /** An encrypted record failed authentication. */
  DECRYPT: 'PEP_ERR_DECRYPT',
  /**
   * A handshake message that both sides authenticate failed its check although the peer knows
   * the key (the REPLY's MAC), or the subflow came up without the encryption this side asked
   * for: something on the path changed the handshake.
   */
  HANDSHAKE_TAMPERED: 'PEP_ERR_HANDSHAKE_TAMPERED'
} as const

/** One of the stable error codes. */
export type PepErrorCode = (typeof PepErrorCodes)[keyof typeof PepErrorCodes]

/** Base of every Tandem error. `code` is stable; `message` is one human line. */
export class PepError extends Error {
  /** Stable machine-readable code. */
  readonly code: PepErrorCode
  /** True when the fault lies with the remote peer (it sent the bad input). */
  readonly remote: boolean

  constructor(code: PepErrorCode, message: string, remote = false) {
    super(message)
    this.name = 'PepError'
    this.code = code
    this.remote = remote
  }
}

/** The peer broke the wire protocol: the subflow (or flow) is closed with `closeReason`. */
export class ProtocolError extends PepError {
  /** Reset reason to put on the wire. */
  readonly closeReason: ResetReasonCode

  constructor(code: PepErrorCode, message: string, closeReason: ResetReasonCode, remote = true) {
    super(code, message, remote)
    this.name = 'ProtocolError'
    this.closeReason = closeReason
  }
}

/** A configuration value is invalid; `key` names it. Exit code 2. */
export class ConfigError extends PepError {
  /** The offending key, e.g. `tx_proxy.local_port`. */
  readonly key: string

  constructor(key: string, message: string) {
    super(PepErrorCodes.CONFIG, `${key}: ${message}`)
    this.name = 'ConfigError'
    this.key = key
  }
}

/** The native addon is not built, or a system call it made failed. */
export class NativeError extends PepError {
  /** errno of the failed call, when there was one. */
  readonly errno: number | undefined

  constructor(message: string, errno?: number) {
    super(PepErrorCodes.NATIVE, message)
    this.name = 'NativeError'
    this.errno = errno
  }
}

/** True when `err` is a Tandem error (checked by class, never by duck typing). */
export function isPepError(err: unknown): err is PepError {
  return err instanceof PepError
}

/** The message of anything thrown: an Error's `message`, or the value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
