/**
 * The SYN table: what tx_proxy decided for each client SYN it saw through NFQUEUE, kept until the
 * redirected connection is accepted (or the entry expires). Bounded and expiring; pure (time is
 * a parameter).
 */
import type { Endpoint } from '../common/wire/frame.js'

/** One remembered SYN. */
export interface SynEntry {
  /** Where the client was going. */
  readonly dst: Endpoint
  /** Was the flow marked for acceleration. */
  readonly accelerated: boolean
  /** When the SYN was seen, in milliseconds. */
  readonly seenMs: number
}

/** Key of a client endpoint. */
function key(family: 4 | 6, address: string, port: number): string {
  return `${family}|${address}|${port}`
}

/** A bounded, expiring map from client endpoint to its SYN decision. */
export class SynTable {
  private readonly entries = new Map<string, SynEntry>()
  private readonly maxEntries: number
  private readonly ttlMs: number
  /** Entries pushed out by the size bound. */
  evicted = 0
  /** Entries that expired unused. */
  expired = 0

  constructor(maxEntries: number, ttlMs: number) {
    this.maxEntries = maxEntries
    this.ttlMs = ttlMs
  }

  /** Entries held. */
  get size(): number {
    return this.entries.size
  }

  /** Record (or refresh) the decision for the client `src`. */
  record(src: Endpoint, entry: SynEntry): void {
    const k = key(src.family, src.address, src.port)
    this.entries.delete(k) // re-insert at the back: insertion order is age order
    this.purge(entry.seenMs)
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
      this.evicted++
    }
    this.entries.set(k, entry)
  }

  /** The live entry for client `src`, if any (without removing it). */
  lookup(src: Endpoint, nowMs: number): SynEntry | undefined {
    const e = this.entries.get(key(src.family, src.address, src.port))
    if (e === undefined) return undefined
    if (nowMs - e.seenMs > this.ttlMs) return undefined
    return e
  }

  /** Remove and return the entry for client `src` (the connection was accepted). */
  take(src: Endpoint, nowMs: number): SynEntry | undefined {
    const e = this.lookup(src, nowMs)
    this.entries.delete(key(src.family, src.address, src.port))
    return e
  }

  /** Drop entries older than the TTL (the oldest are first). */
  purge(nowMs: number): void {
    for (const [k, e] of this.entries) {
      if (nowMs - e.seenMs <= this.ttlMs) break
      this.entries.delete(k)
      this.expired++
    }
  }
}
