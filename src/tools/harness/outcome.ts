/** How a transfer can fail (TransferError), and the checks against what was expected. */

/**
 * A connection failed or broke mid-transfer. `code` is Node's errno name (`ECONNREFUSED`,
 * `ECONNRESET`, `EPIPE`, `ETIMEDOUT`, ...), or `ECONNABORTED` when the socket closed early
 * without one. The message is one line naming the peer, the phase and the code.
 */
export class TransferError extends Error {
  /** Errno name, e.g. `ECONNRESET`. */
  readonly code: string
  /** What the connection was doing when it failed. */
  readonly phase: TransferPhase

  constructor(code: string, phase: TransferPhase, message: string) {
    super(message)
    this.name = 'TransferError'
    this.code = code
    this.phase = phase
  }
}

/** Stage of a transfer, for error messages: connect, send/receive the data, or the reply. */
export type TransferPhase = 'connect' | 'send' | 'receive' | 'reply'

/** What a transfer was checked against (`--expect-*`). */
export type ExpectationField = 'bytes' | 'sha256' | 'replyBytes' | 'replySha256'

/** A transfer completed but its bytes or digest differ from what was expected. */
export class ExpectationError extends Error {
  /** Stable code, for tests and scripts. */
  readonly code = 'HARNESS_ERR_MISMATCH'
  /** Which expectation failed. */
  readonly field: ExpectationField
  /** Expected value (count or hex digest). */
  readonly expected: string
  /** Actual value. */
  readonly actual: string

  constructor(field: ExpectationField, expected: string, actual: string, message: string) {
    super(message)
    this.name = 'ExpectationError'
    this.field = field
    this.expected = expected
    this.actual = actual
  }
}

/** Expected length and digest of one direction of a transfer; absent fields are not checked. */
export interface Expectation {
  /** Expected byte count. */
  readonly bytes?: number | undefined
  /** Expected SHA-256, lower-case hex. */
  readonly sha256?: string | undefined
}

/**
 * Compares what was seen with what was expected.
 *
 * @param what - `data` (checks `bytes`/`sha256`) or `reply` (`replyBytes`/`replySha256`)
 * @returns the first mismatch, or undefined when everything matches
 */
export function checkExpectation(
  what: 'data' | 'reply',
  actualBytes: number,
  actualSha256: string,
  expect: Expectation
): ExpectationError | undefined {
  const noun = what === 'data' ? 'received' : 'reply was'
  if (expect.bytes !== undefined && expect.bytes !== actualBytes) {
    const diff = actualBytes - expect.bytes
    const how = diff < 0 ? `short by ${-diff}` : `${diff} too many`
    return new ExpectationError(
      what === 'data' ? 'bytes' : 'replyBytes',
      String(expect.bytes),
      String(actualBytes),
      `${noun} ${actualBytes} bytes, expected ${expect.bytes} (${how})`
    )
  }
  if (expect.sha256 !== undefined && expect.sha256 !== actualSha256) {
    return new ExpectationError(
      what === 'data' ? 'sha256' : 'replySha256',
      expect.sha256,
      actualSha256,
      `${what === 'data' ? 'data' : 'reply'} sha256 ${actualSha256} differs from expected ${expect.sha256}`
    )
  }
  return undefined
}

export function errnoCode(err: unknown): string {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    return err.code
  }
  return 'EUNKNOWN'
}
