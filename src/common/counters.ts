/**
 * Named monotonic counters of one proxy (never a module global: each proxy owns one set).
 * Metrics and `status` read them; tests assert on them.
 */
export class Counters {
  private readonly values = new Map<string, number>()

  /** Add `n` (default 1) to `name`. */
  inc(name: string, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n)
  }

  /** Current value of `name` (0 if never counted). */
  get(name: string): number {
    return this.values.get(name) ?? 0
  }

  /** Every counter, sorted by name. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.values.entries()].sort(([a], [b]) => a.localeCompare(b)))
  }
}
