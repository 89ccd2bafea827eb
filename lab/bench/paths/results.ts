/** The path benchmark's results: what each figure measured, JSON-serialisable. */

import { type PathImpairment, type PathName } from '../../testbed/two-path.js'

/** The link emulator's settings on each path (each direction alike). */
export interface PathLinks {
  readonly a: PathImpairment
  readonly b: PathImpairment
}

/** How a kill was made. */
export type RecoveryKillMethod = 'ss-kill' | 'rst-inject' | 'black-hole'

/** How recovery is measured (figure 1), so the output can state it. */
export interface RecoveryDefinition {
  /** Pre-kill rate: least-squares slope of delivered bytes over this long before the kill, ms. */
  readonly preWindowMs: number
  /** Share of the target rate delivery must reach (0.9). */
  readonly threshold: number
  /** Delivery is measured in consecutive windows of this length, ms ... */
  readonly windowMs: number
  /** ... this many of them, each at the threshold or above. */
  readonly windows: number
  /** And no gap in delivery longer than this may touch them, ms. */
  readonly maxStallMs: number
}

/** One kill of figure 1. */
export interface RecoveryKill {
  readonly method: RecoveryKillMethod
  /** What was hit (port, path, namespace). */
  readonly description: string
  /** The path the victim was on. */
  readonly path: PathName
  /** When, ms after the first byte arrived at dst. */
  readonly atMs: number
  /** How long the fault was held, ms (black hole), or 0 (a kill is instant). */
  readonly heldMs: number
  /** Time until tx_proxy counted a subflow lost, ms; null when it did not within the horizon. */
  readonly detectedMs: number | null
  /** Capacity left after the kill as a share of the capacity before (a path gone: 0.5). */
  readonly survivingShare: number
  /** Delivered rate before the kill, Mbit/s. */
  readonly preRateMbit: number
  /** The rate recovery is measured against: threshold × pre-kill rate × surviving share. */
  readonly targetMbit: number
  /**
   * Longest gap in delivery at dst in progress at the kill or starting within GAP_WINDOW_MS after
   * it, ms (20 ms resolution).
   */
  readonly maxGapMs: number
  /** Time from the kill until recovery, ms; null when not within the horizon. */
  readonly recoveryMs: number | null
  /** How long after the kill recovery was looked for (next kill or end of the hole), ms. */
  readonly horizonMs: number
  /**
   * Delivered rate at dst in bins of `TRACE_BIN_MS`, from 1 s before the kill to the horizon,
   * Mbit/s: what the figures above were read from.
   */
  readonly traceMbit: readonly number[]
}

/** The end-to-end checks of one transfer. */
export interface TransferCheck {
  readonly bytes: number
  /** src → dst: what dst received hashes to what src sent. */
  readonly sha256Equal: boolean
  /** dst → src: the reply, likewise. */
  readonly replySha256Equal: boolean
  /** Connections the destination accepted (1 when the flow survived as one). */
  readonly destinationConnections: number
  /** How the stream ended at dst ('end': a clean FIN). */
  readonly ending: string
  /** Longest gap in delivery over the whole transfer, ms. */
  readonly maxGapMs: number
  /** Bytes tx_proxy and rx_proxy sent again after subflow losses, MiB. */
  readonly resentMiB: number
  /** Why the transfer did not complete (a stalled flow ended by the watchdog, a failed stream). */
  readonly failure: string | null
}

/** Figure 1. */
export interface RecoveryResult {
  readonly links: PathLinks
  readonly subflowsPerPath: number
  /** Congestion control of the subflows. */
  readonly congestion: string
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  /** Length of the bulk transfer, s. */
  readonly durationS: number
  readonly definition: RecoveryDefinition
  readonly kills: readonly RecoveryKill[]
  readonly transfer: TransferCheck | null
  readonly error?: string
}

/** One run of figure 2. */
export interface AggregationRun {
  readonly name: string
  /** 'tcp': one plain TCP connection between the boxes over the path; 'tandem': src → dst. */
  readonly system: 'tcp' | 'tandem'
  readonly paths: readonly PathName[]
  /** Tandem's scheduler; null for plain TCP. */
  readonly scheduler: string | null
  /** Steady-state goodput at the receiver, Mbit/s; null when the run failed. */
  readonly goodputMbit: number | null
  /** What tx_proxy sent on each path over the run (frames, re-sends included), Mbit/s. */
  readonly sentMbit: { readonly a: number; readonly b: number } | null
  readonly sha256Equal: boolean | null
  readonly error?: string
}

/** Figure 2's ratios for one run over both paths. */
export interface AggregationRatio {
  readonly name: string
  readonly aggregateMbit: number
  /** aggregate / nominal sum of the rates (30 + 20), percent. */
  readonly ofNominalPct: number
  /** aggregate / (plain TCP over a + plain TCP over b), percent. */
  readonly ofTcpSumPct: number | null
  /** aggregate / (Tandem over a alone + Tandem over b alone), percent. */
  readonly ofTandemSumPct: number | null
  /** aggregate / Tandem over the faster path (a) alone. */
  readonly vsFasterAlone: number | null
}

/** Figure 2. */
export interface AggregationResult {
  readonly links: PathLinks
  readonly subflowsPerPath: number
  /** Congestion control of every TCP connection across the paths (subflows and plain TCP). */
  readonly congestion: string
  /** Length of each run, s, and the steady-state window, ms after the first byte. */
  readonly seconds: number
  readonly steadyFromMs: number
  readonly steadyToMs: number
  readonly nominalSumMbit: number
  readonly runs: readonly AggregationRun[]
  readonly ratios: readonly AggregationRatio[]
  readonly error?: string
}

/** One run of figure 3. */
export interface LatencyRun {
  readonly name: string
  readonly paths: readonly PathName[]
  readonly scheduler: string
  /** Exchanges measured (warm-up ones left out). */
  readonly exchanges: number
  readonly p50Ms: number | null
  readonly p90Ms: number | null
  readonly p99Ms: number | null
  readonly maxMs: number | null
  readonly meanMs: number | null
  /** tx_proxy's frames and how many of them also went out as a copy (redundant). */
  readonly framesSent: number | null
  readonly framesCopied: number | null
  readonly error?: string
}

/** Figure 3. */
export interface LatencyResult {
  readonly links: PathLinks
  readonly subflowsPerPath: number
  /** Congestion control of the subflows. */
  readonly congestion: string
  readonly requestBytes: number
  readonly replyBytes: number
  /** Exchanges per run, and the warm-up exchanges before them (not counted). */
  readonly exchanges: number
  readonly warmup: number
  readonly runs: readonly LatencyRun[]
  /** The single-path run with the lower p99, and redundant's p99 over it. */
  readonly bestSinglePath: string | null
  readonly redundantVsBestP99: number | null
  readonly error?: string
}

/** Everything `runPathBench` measured. JSON-serialisable. */
export interface PathBenchResult {
  /** ISO time the run started. */
  readonly started: string
  readonly quick: boolean
  /** Wall-clock length of the whole benchmark, s. */
  readonly elapsedS: number
  readonly recovery: RecoveryResult
  readonly aggregation: AggregationResult
  readonly latency: LatencyResult
}

/** What `runPathBench` takes. */
export interface PathBenchOptions {
  /** Shorter runs (about 2 minutes in all instead of 6). */
  readonly quick: boolean
  /** Progress lines. */
  readonly log: (line: string) => void
  /**
   * Congestion control of every TCP connection across the paths: Tandem's subflows
   * (`trunk.congestion`) and the plain TCP runs alike (default cubic; see DEFAULT_CONGESTION).
   */
  readonly congestion?: string
}
