/**
 * Subflow authentication and key derivation (protocol v2, docs/protocol.md §2 and
 * docs/security.md). Pure computation on node:crypto: no I/O, no clocks.
 *
 * Both sides prove knowledge of the pre-shared key over a transcript that binds the trunk id,
 * the subflow index, the flags and BOTH fresh nonces, so a recorded handshake is worthless:
 * replaying a HELLO gets a new server nonce, replaying a CHALLENGE meets a new client nonce.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import { NONCE_LENGTH, PROOF_LENGTH } from './wire/frame.js'

/** Shortest accepted pre-shared key, in bytes (256 bits, what `genkey` makes). */
export const MIN_PSK_BYTES = 32

/** What both proofs cover. */
export interface Transcript {
  readonly trunkId: Uint8Array
  readonly subflowIndex: number
  readonly flags: number
  readonly clientNonce: Uint8Array
  readonly serverNonce: Uint8Array
}

/** A fresh nonce. */
export function newNonce(): Uint8Array {
  return randomBytes(NONCE_LENGTH)
}

/** The per-trunk authentication key: HKDF-SHA256(psk, salt = trunk id). */
export function trunkAuthKey(psk: Uint8Array, trunkId: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', psk, trunkId, 'tandem v2 auth', 32))
}

function transcriptBytes(label: string, t: Transcript): Uint8Array {
  const head = Buffer.alloc(3)
  head.writeUInt16BE(t.subflowIndex, 0)
  head.writeUInt8(t.flags, 2)
  return Buffer.concat([Buffer.from(label), t.trunkId, head, t.clientNonce, t.serverNonce])
}

/** The acceptor's proof (sent in the CHALLENGE). */
export function serverProof(authKey: Uint8Array, t: Transcript): Uint8Array {
  return createHmac('sha256', authKey).update(transcriptBytes('tandem v2 server', t)).digest()
}

/** The dialer's proof (sent in the AUTH). */
export function clientProof(authKey: Uint8Array, t: Transcript): Uint8Array {
  return createHmac('sha256', authKey).update(transcriptBytes('tandem v2 client', t)).digest()
}

/** Constant-time comparison of a received proof. */
export function proofMatches(expected: Uint8Array, received: Uint8Array): boolean {
  return received.length === PROOF_LENGTH && timingSafeEqual(expected, received)
}

/** Traffic keys of one subflow, one per direction, fresh for every handshake. */
export interface TrafficKeys {
  readonly clientToServer: Uint8Array
  readonly serverToClient: Uint8Array
}

/** HKDF-SHA256(psk, salt = both nonces, info = direction and trunk id). */
export function trafficKeys(psk: Uint8Array, t: Transcript): TrafficKeys {
  const salt = Buffer.concat([t.clientNonce, t.serverNonce])
  const key = (dir: string): Uint8Array =>
    new Uint8Array(hkdfSync('sha256', psk, salt, Buffer.concat([Buffer.from(dir), t.trunkId]), 32))
  return { clientToServer: key('tandem v2 c2s'), serverToClient: key('tandem v2 s2c') }
}
