/**
 * A process-wide byte budget: the global cap on what all flows together may hold (send buffers
 * and granted receive credit). One instance per proxy, passed down; never a module global.
 */
export class MemoryBudget {
  private usedBytes = 0
  /** Most bytes that may be held at once. */
  readonly capBytes: number

  constructor(capBytes: number) {
    this.capBytes = capBytes
  }

  /** Bytes held now. */
  get used(): number {
    return this.usedBytes
  }

  /** Bytes still free. */
  get free(): number {
    return Math.max(0, this.capBytes - this.usedBytes)
  }

  /**
   * Bytes free beyond `keptShare` of the cap (0 when no more is free): what a use may take
   * that must leave that share to others.
   */
  freeBeyond(keptShare: number): number {
    return Math.max(0, this.free - this.capBytes * keptShare)
  }

  /** Take up to `bytes`; returns what was granted (possibly 0). */
  reserve(bytes: number): number {
    const granted = Math.min(bytes, this.free)
    this.usedBytes += granted
    return granted
  }

  /** Account `bytes` that are held whether or not the budget allows (already read). */
  force(bytes: number): void {
    this.usedBytes += bytes
  }

  /** Give `bytes` back. */
  release(bytes: number): void {
    this.usedBytes = Math.max(0, this.usedBytes - bytes)
  }
}
