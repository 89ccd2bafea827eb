/**
 * The encrypted record layer (docs/protocol.md §2.1, HELLO_FLAG_ENCRYPT): after an authenticated
 * handshake, each direction of a subflow is a sequence of AES-256-GCM records:
 *
 *   length u32 (of the ciphertext) | ciphertext | tag (16)
 *
 * The length is authenticated as additional data. The 12-byte nonce is 4 zero bytes and a
 * 64-bit record counter; keys are fresh per subflow and direction (HKDF over both handshake
 * nonces), so a nonce is never used twice with one key. A record holds one frame. The opener
 * checks the length against the maximum before buffering, like the frame decoder.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { PepErrorCodes, ProtocolError } from '../errors.js'
import { ResetReason } from './frame.js'

/** GCM tag, in bytes. */
export const TAG_LENGTH = 16
/** Record header (the length), in bytes. */
export const RECORD_HEADER_LENGTH = 4

function nonce(counter: bigint): Buffer {
  const n = Buffer.alloc(12)
  n.writeBigUInt64BE(counter, 4)
  return n
}

/** Seals plaintext into records for one direction. */
export class RecordSealer {
  private counter = 0n
  private readonly key: Uint8Array

  constructor(key: Uint8Array) {
    this.key = key
  }

  /** One record holding `parts` (written back to back): returns the buffers to write. */
  seal(parts: readonly Uint8Array[]): Uint8Array[] {
    let length = 0
    for (const p of parts) length += p.length
    const header = Buffer.alloc(RECORD_HEADER_LENGTH)
    header.writeUInt32BE(length, 0)
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(this.counter++), {
      authTagLength: TAG_LENGTH
    })
    cipher.setAAD(header)
    const out: Uint8Array[] = [header]
    for (const p of parts) out.push(cipher.update(p))
    cipher.final()
    out.push(cipher.getAuthTag())
    return out
  }
}

/** Opens records of one direction, incrementally. Throws only ProtocolError. */
export class RecordOpener {
  private counter = 0n
  private readonly key: Uint8Array
  private readonly maxRecord: number
  private chunks: Buffer[] = []
  private buffered = 0

  /** `maxRecordBytes`: the largest ciphertext accepted (the largest frame). */
  constructor(key: Uint8Array, maxRecordBytes: number) {
    this.key = key
    this.maxRecord = maxRecordBytes
  }

  /** Bytes waiting for the rest of their record. */
  get bufferedBytes(): number {
    return this.buffered
  }

  /** Feed bytes; returns the plaintexts of the records they complete. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
      this.buffered += chunk.length
    }
    const out: Uint8Array[] = []
    for (;;) {
      if (this.buffered < RECORD_HEADER_LENGTH) break
      const length = this.peekLength()
      if (length > this.maxRecord) {
        throw new ProtocolError(
          PepErrorCodes.FRAME_TOO_LARGE,
          `encrypted record of ${length} bytes exceeds the maximum of ${this.maxRecord}`,
          ResetReason.PROTOCOL_ERROR
        )
      }
      const total = RECORD_HEADER_LENGTH + length + TAG_LENGTH
      // Join the pieces only once the whole record is here: a peer trickling bytes costs
      // linear time, not quadratic.
      if (this.buffered < total) break
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
      const decipher = createDecipheriv('aes-256-gcm', this.key, nonce(this.counter++), {
        authTagLength: TAG_LENGTH
      })
      decipher.setAAD(all.subarray(0, RECORD_HEADER_LENGTH))
      decipher.setAuthTag(all.subarray(RECORD_HEADER_LENGTH + length, total))
      const plain = decipher.update(
        all.subarray(RECORD_HEADER_LENGTH, RECORD_HEADER_LENGTH + length)
      )
      try {
        decipher.final()
      } catch {
        throw new ProtocolError(
          PepErrorCodes.DECRYPT,
          'encrypted record failed authentication (tampered, or not from our peer)',
          ResetReason.PROTOCOL_ERROR
        )
      }
      out.push(plain)
      const rest = all.subarray(total)
      this.chunks = rest.length > 0 ? [rest] : []
      this.buffered = rest.length
    }
    return out
  }

  private peekLength(): number {
    const first = this.chunks[0]!
    if (first.length >= RECORD_HEADER_LENGTH) return first.readUInt32BE(0)
    // Only the first four bytes are read, from as few chunks as hold them.
    let length = 0
    let got = 0
    for (const c of this.chunks) {
      for (let i = 0; i < c.length && got < RECORD_HEADER_LENGTH; i++, got++)
        length = length * 256 + c[i]!
      if (got === RECORD_HEADER_LENGTH) break
    }
    return length
  }
}
