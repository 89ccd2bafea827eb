/**
 * Subflow authentication and key derivation (protocol v3, docs/protocol.md §2 and
 * docs/security.md). Pure computation on node:crypto: no I/O, no clocks.
 *
 * The handshake transcript is the exact bytes of every handshake message so far. Each proof or
 * MAC covers the whole transcript up to and including its own message, whose MAC field (the last
 * 32 bytes of its auth data) counts as zero. So every byte of every message is authenticated:
 * the HELLO's parameters and flags by both proofs, the CHALLENGE by both, the AUTH by the client
 * proof, the REPLY (status, flags, parameters) by its MAC. Both nonces are fresh, so a recorded
 * handshake is worthless: replaying a HELLO gets a new server nonce, replaying a CHALLENGE meets
 * a new client nonce.
 */
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { HELLO_FIXED_LENGTH, NONCE_LENGTH, PROOF_LENGTH } from './wire/frame.js'

/** Shortest accepted pre-shared key, in bytes (256 bits, what `genkey` makes). */
export const MIN_PSK_BYTES = 32

/** Which message a MAC authenticates; each has its own label, so no MAC stands for another. */
export const HandshakeMac = {
  /** The CHALLENGE's server proof. */
  SERVER: 'tandem v3 server',
  /** The AUTH's client proof. */
  CLIENT: 'tandem v3 client',
  /** The REPLY's MAC. */
  REPLY: 'tandem v3 reply'
} as const
/** One MAC label. */
export type HandshakeMacLabel = (typeof HandshakeMac)[keyof typeof HandshakeMac]

/** A fresh nonce. */
export function newNonce(): Uint8Array {
  return randomBytes(NONCE_LENGTH)
}

/** The per-trunk authentication key: HKDF-SHA256(psk, salt = trunk id). */
export function trunkAuthKey(psk: Uint8Array, trunkId: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', psk, trunkId, 'tandem v3 auth', 32))
}

/**
 * HMAC-SHA256(authKey, label ‖ 0 ‖ earlier messages ‖ `message` with its last 32 bytes zeroed).
 * Messages are self-delimiting (a fixed part that states the auth length), so the concatenation
 * is unambiguous.
 */
export function handshakeMac(
  authKey: Uint8Array,
  label: HandshakeMacLabel,
  earlier: readonly Uint8Array[],
  message: Uint8Array
): Uint8Array {
  const h = createHmac('sha256', authKey)
  h.update(label)
  h.update(Uint8Array.of(0))
  for (const m of earlier) h.update(m)
  h.update(message.subarray(0, message.length - PROOF_LENGTH))
  h.update(new Uint8Array(PROOF_LENGTH))
  return new Uint8Array(h.digest())
}

/**
 * Write the MAC of `message` into its last 32 bytes (which the caller left zero) and return it.
 */
export function signMessage(
  authKey: Uint8Array,
  label: HandshakeMacLabel,
  earlier: readonly Uint8Array[],
  message: Uint8Array
): Uint8Array {
  message.set(handshakeMac(authKey, label, earlier, message), message.length - PROOF_LENGTH)
  return message
}

/** Does `message` (as received) end with the right MAC? Constant-time. */
export function messageAuthentic(
  authKey: Uint8Array,
  label: HandshakeMacLabel,
  earlier: readonly Uint8Array[],
  message: Uint8Array
): boolean {
  if (message.length < HELLO_FIXED_LENGTH + PROOF_LENGTH) return false
  const expected = handshakeMac(authKey, label, earlier, message)
  return timingSafeEqual(expected, message.subarray(message.length - PROOF_LENGTH))
}

/** Traffic keys of one subflow, one per direction, fresh for every handshake. */
export interface TrafficKeys {
  readonly clientToServer: Uint8Array
  readonly serverToClient: Uint8Array
}

/**
 * HKDF-SHA256(psk, salt = SHA-256(HELLO ‖ CHALLENGE ‖ AUTH), info = direction ‖ trunk id). The
 * salt binds the keys to this very handshake: both nonces and every parameter the two sides
 * agreed on.
 */
export function trafficKeys(
  psk: Uint8Array,
  trunkId: Uint8Array,
  transcript: readonly Uint8Array[]
): TrafficKeys {
  const hash = createHash('sha256')
  for (const m of transcript) hash.update(m)
  const salt = hash.digest()
  const key = (dir: string): Uint8Array =>
    new Uint8Array(hkdfSync('sha256', psk, salt, Buffer.concat([Buffer.from(dir), trunkId]), 32))
  return { clientToServer: key('tandem v3 c2s'), serverToClient: key('tandem v3 s2c') }
}
