/**
 * The path benchmark (issue 5), on the two-path testbed (testbed/two-path.ts): the three figures
 * a user asks about when the boxes have two paths between them.
 *
 * 1. Recovery after a kill: one bulk flow over four subflows (two per path); one subflow is
 *    destroyed with `ss -K`, one reset by an injected TCP RST (full mode only), and a whole path
 *    turned into a black hole (found only by the ping timeout). For each: the longest gap in delivery at dst,
 *    the time until delivery is back at 90 % of what the surviving capacity gives, and that the
 *    transfer stayed exact (sha256) on one destination connection.
 * 2. Aggregation of two unequal paths (30 + 20 Mbit/s): plain TCP over each path, Tandem over
 *    each path alone and over both (first-free, weighted), as a share of the sum.
 * 3. Latency of small request/response exchanges on one persistent connection through a warm
 *    trunk over two lossy paths: `trunk.scheduler = redundant` against each path alone.
 *
 *   node dist/src/tools/bench/paths.js [--quick] [--json] [--congestion cubic]   (root)
 *   node dist/src/tools/bench/paths.js rr-server --port P [--reply-bytes N]
 *   node dist/src/tools/bench/paths.js rr-client --host H --port P --count N [--warmup W]
 *       [--request-bytes N] [--reply-bytes N] [--timeout-ms T]
 *
 * Run as the benchmark it prints progress on stderr and three markdown tables on stdout (the
 * JSON result instead with --json); exit status 2 when namespaces cannot be used. The rr-server
 * and rr-client modes are what the benchmark runs inside dst and src for figure 3.
 */
import { once } from 'node:events'
import { createConnection, createServer, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { queryStatus, type ProxyStatus } from '../../app/control.js'
import { netnsUnavailableReason } from '../testbed/netns.js'
import { dist, runIn, type NsProcess } from '../testbed/ns-process.js'
import {
  blackHole,
  createTwoPathTestbed,
  DUPLEX_RECEIVER_COMMAND,
  FaultLedger,
  injectReset,
  pollUntil,
  rateMbit,
  readReceiver,
  readStream,
  sleepUntil,
  slopeMbit,
  ssKill,
  subflowSockets,
  TWO_PATH_ADDRESSES,
  TWO_PATH_RX_PORT,
  TWO_PATH_TX_PORT,
  wallMs,
  type ActiveFault,
  type DuplexReport,
  type PathImpairment,
  type PathName,
  type StreamReport,
  type TwoPathConfig,
  type TwoPathConfigOptions,
  type TwoPathTestbed
} from '../testbed/two-path.js'

const MiB = 1024 * 1024
/** This module, run inside the namespaces as rr-server / rr-client. */
const SELF = fileURLToPath(import.meta.url)
/** Subflows per path in every Tandem run. */
const SUBFLOWS_PER_PATH = 2
/** Step of the recovery search, ms (the duplex receiver samples every 20 ms). */
const SEARCH_STEP_MS = 20
/**
 * Congestion control used unless told otherwise. Not the boxes' default on purpose: where that
 * is bbr, two bbr subflows sharing one shaped path overfill the emulator's tbf queue (about one
 * BDP) and lose a few percent of their packets; each loss holds the whole flow behind it in the
 * reorder buffer, so delivery at dst comes in bursts with 100-400 ms gaps even with no fault, and
 * a recovery to 90 % of the rate cannot be told from that noise. Cubic subflows deliver evenly.
 */
const DEFAULT_CONGESTION = 'cubic'
/**
 * A gap in delivery belongs to a kill when it is in progress at the kill or starts this soon
 * after it, ms: the kill's own stall starts within a round trip or two; a later one (a loss on
 * a re-dialled subflow's slow start, say) shows in the recovery time instead.
 */
const GAP_WINDOW_MS = 1000
/** Bin of the rate trace kept with each kill, ms. */
export const TRACE_BIN_MS = 250

// ---- results ---------------------------------------------------------------------------------

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

// ---- small helpers ---------------------------------------------------------------------------

/** Nearest-rank percentile of ascending `sorted` (p in 0..100); null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1] ?? null
}

/** A stretch with no data delivered: [start, end] wall-clock ms. */
interface Stall {
  readonly start: number
  readonly end: number
}

/**
 * Stretches where the received-bytes samples do not move: from the first sample showing a count
 * to the first sample showing more (so each is accurate to a sample period, 20 ms).
 */
export function stallsOf(samples: readonly (readonly [number, number])[]): Stall[] {
  const out: Stall[] = []
  let since: readonly [number, number] | undefined
  for (const s of samples) {
    if (since === undefined || s[1] !== since[1]) {
      if (since !== undefined && s[0] - since[0] > 0) out.push({ start: since[0], end: s[0] })
      since = s
    }
  }
  return out
}

/** Longest stall overlapping [from, to], ms (0 when none). */
function longestStall(stalls: readonly Stall[], from: number, to: number): number {
  let best = 0
  for (const s of stalls) {
    if (s.end > from && s.start < to) best = Math.max(best, s.end - s.start)
  }
  return best
}

/**
 * Recovery after a kill at `killAt`: the first instant t ≥ killAt (in 20 ms steps) from which
 * each of `def.windows` consecutive windows of `def.windowMs` delivers at least `targetMbit`, and
 * no stall longer than `def.maxStallMs` touches them (a stall counts whole, so a gap caused by
 * the kill must be over before t). Milliseconds from the kill; 0 when delivery never fell short;
 * null when not before `horizonEnd`.
 */
export function recoveryMs(
  samples: readonly (readonly [number, number])[],
  killAt: number,
  horizonEnd: number,
  targetMbit: number,
  def: RecoveryDefinition
): number | null {
  const stalls = stallsOf(samples)
  const span = def.windowMs * def.windows
  for (let t = killAt; t + span <= horizonEnd; t += SEARCH_STEP_MS) {
    if (longestStall(stalls, t, t + span) > def.maxStallMs) continue
    let ok = true
    for (let k = 0; k < def.windows && ok; k++) {
      const from = t + k * def.windowMs
      ok = rateMbit(samples, from, from + def.windowMs) >= targetMbit
    }
    if (ok) return t - killAt
  }
  return null
}

/** Delivered rate in bins of TRACE_BIN_MS over [from, to], Mbit/s. */
function traceOf(
  samples: readonly (readonly [number, number])[],
  from: number,
  to: number
): number[] {
  const out: number[] = []
  for (let t = from; t + TRACE_BIN_MS <= to; t += TRACE_BIN_MS) {
    out.push(round(rateMbit(samples, t, t + TRACE_BIN_MS)))
  }
  return out
}

/** A message from anything thrown. */
function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 200) ?? ''
}

/** `x` rounded to `digits` decimals, for JSON that stays readable. */
function round(x: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** Bytes tx_proxy sent on each path over `ms`, Mbit/s. */
function sentPerPath(s: ProxyStatus, ms: number): { a: number; b: number } {
  const on = (id: number): number =>
    (s.trunks[0]?.subflows ?? [])
      .filter((x) => x.pathId === id)
      .reduce((acc, x) => acc + x.bytesSent, 0)
  const mbit = (bytes: number): number => (ms > 0 ? round((bytes * 8) / (ms * 1000)) : 0)
  return { a: mbit(on(0)), b: mbit(on(1)) }
}

/** The link settings as one short phrase: `a 50 ms one-way, 40 Mbit/s, 0 % loss`. */
function linkText(name: PathName, l: PathImpairment): string {
  const rtt = 2 * (l.delayMs ?? 0)
  const rate = l.rateMbit !== undefined && l.rateMbit > 0 ? `${l.rateMbit} Mbit/s` : 'unshaped'
  return `path ${name}: ${rtt} ms RTT, ${rate}, ${l.lossPercent ?? 0} % loss each way`
}

// ---- one transfer through Tandem, one plain TCP transfer --------------------------------------

/** What a Tandem transfer left behind. */
interface TandemTransfer {
  readonly conf: TwoPathConfig
  readonly report: DuplexReport
  readonly sent: StreamReport | undefined
  /** Why `./stream` failed (its error code and message), or undefined when it exited 0. */
  readonly streamFailure: string | undefined
  readonly accepted: number
  /** The proxies' status at the end; undefined when one no longer answers. */
  readonly txStatus: ProxyStatus | undefined
  readonly rxStatus: ProxyStatus | undefined
}

/** Handed to `during` while the stream runs. */
interface TransferContext {
  readonly conf: TwoPathConfig
  readonly receiver: NsProcess
  readonly stream: NsProcess
  readonly rx: NsProcess
}

/** One line saying why `./stream` exited `code`. */
function streamFailureText(code: number | null, sent: StreamReport | undefined): string {
  return sent?.error !== undefined
    ? `stream: ${sent.error.code}: ${sent.error.message}`
    : `stream exited ${code === null ? 'on a signal' : String(code)}`
}

/**
 * Proxies, the duplex receiver in dst and `./stream` in src for one transfer; `during` runs while
 * the stream does. A failed stream is reported (`streamFailure`), not thrown, as long as dst
 * reports its connection. Everything it started is stopped before it returns or throws.
 */
async function tandemTransfer(
  bed: TwoPathTestbed,
  name: string,
  options: TwoPathConfigOptions,
  streamArgs: readonly string[],
  replyBytes: number,
  during?: (ctx: TransferContext) => Promise<void>
): Promise<TandemTransfer> {
  const conf = bed.config(name, options)
  const subflows = (options.paths ?? ['a', 'b']).length * (options.subflowsPerPath ?? 2)
  const procs: NsProcess[] = []
  try {
    const { tx, rx } = await bed.startProxies(conf, subflows)
    procs.push(rx, tx)
    const receiver = await bed.startReceiver(options.destinationPort, replyBytes)
    procs.push(receiver)
    const stream = bed.startStream(streamArgs)
    procs.push(stream)
    await during?.({ conf, receiver, stream, rx })
    const code = await stream.exited()
    const sent = readStream(stream)
    const streamFailure = code === 0 ? undefined : streamFailureText(code, sent)
    await pollUntil(
      'the receiver report',
      () => readReceiver(receiver).reports.length > 0,
      15_000
    ).catch((err: unknown) => {
      throw new Error(`${streamFailure ?? 'stream ok'}; ${errorText(err)}`)
    })
    const got = readReceiver(receiver)
    const report = got.reports[0]
    if (report === undefined) throw new Error('no receiver report')
    return {
      conf,
      report,
      sent,
      streamFailure,
      accepted: got.accepted,
      txStatus: await queryStatus(conf.txControl).catch(() => undefined),
      rxStatus: await queryStatus(conf.rxControl).catch(() => undefined)
    }
  } finally {
    // The next run binds the same ports: this run's processes go first, newest first.
    for (const p of procs.reverse()) await p.stop()
  }
}

/**
 * One plain TCP connection from the tx box to the rx box over `path` (their addresses on that
 * path), for `seconds`: the path's capacity as one TCP connection sees it. The end hosts route
 * over path a only, so the boxes are the ends here, for both paths alike.
 */
async function tcpTransfer(
  bed: TwoPathTestbed,
  path: PathName,
  port: number,
  seconds: number,
  congestion: string
): Promise<{ report: DuplexReport; sent: StreamReport | undefined }> {
  const procs: NsProcess[] = []
  try {
    const receiver = bed.start(
      bed.ns.rx,
      [
        dist('tools/testbed/two-path.js'),
        DUPLEX_RECEIVER_COMMAND,
        '--port',
        String(port),
        '--reply-bytes',
        '0'
      ],
      `tcp-receiver:${path}`
    )
    procs.push(receiver)
    await receiver.waitFor(/listening on/)
    const stream = bed.start(
      bed.ns.tx,
      [
        dist('tools/stream.js'),
        TWO_PATH_ADDRESSES[path].peer,
        String(port),
        '--duration',
        String(seconds),
        '--congestion',
        congestion,
        '--timeout',
        String(seconds + 60),
        '--json',
        '--quiet'
      ],
      `tcp-stream:${path}`
    )
    procs.push(stream)
    const code = await stream.exited()
    if (code !== 0) throw new Error(streamFailureText(code, readStream(stream)))
    await pollUntil('the receiver report', () => readReceiver(receiver).reports.length > 0, 15_000)
    const report = readReceiver(receiver).reports[0]
    if (report === undefined) throw new Error('no receiver report')
    return { report, sent: readStream(stream) }
  } finally {
    for (const p of procs.reverse()) await p.stop()
  }
}

// ---- figure 1: recovery after a kill ---------------------------------------------------------

/** One planned fault of figure 1. */
interface KillStep {
  readonly method: RecoveryKillMethod
  /** When, ms after the first byte at dst. */
  readonly atMs: number
  /** Black hole: how long it is held, ms. */
  readonly holdMs: number
}

const RECOVERY_LINK: PathImpairment = { delayMs: 50, rateMbit: 40 }
const RECOVERY_DEFINITION: RecoveryDefinition = {
  preWindowMs: 3000,
  threshold: 0.9,
  windowMs: 1000,
  windows: 2,
  maxStallMs: 300
}
const PING_INTERVAL_MS = 500
const PING_TIMEOUT_MS = 2500
/**
 * An injected reset: the REJECT rule is lifted once tx_proxy has noticed (at most this long, ms).
 * Left in place it would also swallow the tx kernel's RSTs to rx_proxy's end of the subflow,
 * which then stays half-open until rx_proxy's ping timeout: a black hole for that subflow's
 * return direction, not the single reset the row is about.
 */
const RESET_RULE_MAX_MS = 1000
/**
 * A flow that delivers nothing this long is ended (rx_proxy killed, so dst sees a reset and
 * reports what it got) rather than waited on until the stream's own timeout, ms.
 */
const STALL_ABORT_MS = 10_000

async function recoveryFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<RecoveryResult> {
  const links: PathLinks = { a: RECOVERY_LINK, b: RECOVERY_LINK }
  // Each kill gets the time until the next one to recover in; the black hole comes last, is
  // held long enough for detection (ping timeout) plus the recovery windows, then lifted.
  const plan: readonly KillStep[] = quick
    ? [
        { method: 'ss-kill', atMs: 5000, holdMs: 0 },
        { method: 'black-hole', atMs: 11_000, holdMs: 7000 }
      ]
    : [
        { method: 'ss-kill', atMs: 7000, holdMs: 0 },
        { method: 'rst-inject', atMs: 14_000, holdMs: 0 },
        { method: 'black-hole', atMs: 21_000, holdMs: 8000 }
      ]
  const last = plan[plan.length - 1]
  const durationS = Math.ceil(((last?.atMs ?? 0) + (last?.holdMs ?? 0)) / 1000) + 3
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    pingIntervalMs: PING_INTERVAL_MS,
    pingTimeoutMs: PING_TIMEOUT_MS,
    durationS,
    definition: RECOVERY_DEFINITION
  }
  log(`recovery: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${durationS} s transfer`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const faults = new FaultLedger()
  interface Raw {
    readonly step: KillStep
    readonly fault: ActiveFault
    readonly path: PathName
    readonly at: number
    readonly horizonEnd: number
    readonly detected: Promise<number | null>
  }
  const raws: Raw[] = []
  let aborted: string | undefined
  try {
    const t = await tandemTransfer(
      bed,
      'recovery',
      {
        destinationPort: 5601,
        subflowsPerPath: SUBFLOWS_PER_PATH,
        overrides: {
          'trunk.congestion': congestion,
          // The defaults, written out so the result states what was used.
          'trunk.ping_interval_ms': String(PING_INTERVAL_MS),
          'trunk.ping_timeout_ms': String(PING_TIMEOUT_MS)
        }
      },
      ['--duration', String(durationS), '--timeout', String(durationS + 90)],
      MiB,
      async ({ conf, receiver, stream, rx }) => {
        await pollUntil(
          'first bytes at dst',
          () => readReceiver(receiver).receivedBytes > 0,
          30_000
        )
        const firstAt = wallMs()
        const watchdog = (async (): Promise<void> => {
          let bytes = readReceiver(receiver).receivedBytes
          let movedAt = wallMs()
          while (stream.child.exitCode === null && stream.child.signalCode === null) {
            await sleep(250)
            const now = readReceiver(receiver).receivedBytes
            if (now !== bytes || readReceiver(receiver).reports.length > 0) {
              bytes = now
              movedAt = wallMs()
            } else if (wallMs() - movedAt > STALL_ABORT_MS) {
              aborted =
                `flow stalled: nothing delivered for ${STALL_ABORT_MS / 1000} s from ` +
                `+${((movedAt - firstAt) / 1000).toFixed(1)} s; run ended`
              log(`recovery: ${aborted}`)
              await rx.stop('SIGKILL')
              await stream.stop()
              return
            }
          }
        })()
        const lost = async (): Promise<number> =>
          (await queryStatus(conf.txControl)).counters.subflows_lost ?? 0
        for (const [i, step] of plan.entries()) {
          await sleepUntil(firstAt + step.atMs)
          if (aborted !== undefined) break
          const next = plan[i + 1]
          const horizonEnd =
            firstAt + (step.holdMs > 0 ? step.atMs + step.holdMs : (next?.atMs ?? durationS * 1000))
          const sockets = await subflowSockets(bed.ns.tx, TWO_PATH_RX_PORT)
          // The busiest subflow (most bytes unacknowledged), so that the kill hits data.
          const victim = [...sockets].sort((x, y) => y.sendQueue - x.sendQueue)[0]
          const path: PathName =
            step.method === 'black-hole' || victim?.localAddress === TWO_PATH_ADDRESSES.b.local
              ? 'b'
              : 'a'
          const lostBefore = await lost()
          const at = wallMs()
          let fault: ActiveFault
          switch (step.method) {
            case 'ss-kill':
            case 'rst-inject':
              if (victim === undefined) throw new Error('no subflow socket to kill')
              fault =
                step.method === 'ss-kill'
                  ? await ssKill(bed.ns.tx, victim)
                  : await injectReset(bed.ns.tx, victim)
              break
            case 'black-hole':
              fault = await blackHole(bed.wanOf('b'))
              break
          }
          faults.add(fault)
          log(`recovery: ${fault.description} at +${((at - firstAt) / 1000).toFixed(1)} s`)
          const detected = pollUntil(
            `tx_proxy noticing ${fault.description}`,
            async () => (await lost()) > lostBefore,
            horizonEnd - at,
            50
          ).then(
            () => round(wallMs() - at, 0),
            () => null
          )
          raws.push({ step, fault, path, at, horizonEnd, detected })
          if (step.method === 'rst-inject') {
            await Promise.race([detected, sleep(RESET_RULE_MAX_MS)])
            await fault.restore()
          } else if (step.holdMs > 0) {
            await sleepUntil(at + step.holdMs)
            await fault.restore()
            log(`recovery: ${fault.description} lifted`)
          }
        }
        await watchdog
      }
    )
    const { report, sent } = t
    const samples = report.samples
    const stalls = stallsOf(samples)
    const kills: RecoveryKill[] = []
    for (const r of raws) {
      const share = r.step.method === 'black-hole' ? 0.5 : 1
      const pre = slopeMbit(samples, r.at - RECOVERY_DEFINITION.preWindowMs, r.at)
      const target = RECOVERY_DEFINITION.threshold * pre * share
      const rec = recoveryMs(samples, r.at, r.horizonEnd, target, RECOVERY_DEFINITION)
      kills.push({
        method: r.step.method,
        description: r.fault.description,
        path: r.path,
        atMs: round(r.at - report.firstByteAt, 0),
        heldMs: r.step.holdMs,
        detectedMs: await r.detected,
        survivingShare: share,
        preRateMbit: round(pre),
        targetMbit: round(target),
        maxGapMs: round(longestStall(stalls, r.at, r.at + GAP_WINDOW_MS), 0),
        recoveryMs: rec === null ? null : round(rec, 0),
        horizonMs: round(r.horizonEnd - r.at, 0),
        traceMbit: traceOf(samples, r.at - 1000, r.horizonEnd)
      })
    }
    const resent = (t.txStatus?.totals.resentBytes ?? 0) + (t.rxStatus?.totals.resentBytes ?? 0)
    const transfer: TransferCheck = {
      bytes: report.receivedBytes,
      sha256Equal:
        sent?.sentBytes === report.receivedBytes && sent.sentSha256 === report.receivedSha256,
      replySha256Equal:
        sent?.replyBytes === report.replyBytes && sent.replySha256 === report.replySha256,
      destinationConnections: Math.max(t.accepted, t.rxStatus?.counters.connects ?? 0),
      ending: report.ending,
      maxGapMs: round(report.maxGapMs, 0),
      resentMiB: round(resent / MiB),
      failure: aborted ?? t.streamFailure ?? null
    }
    for (const k of kills) {
      log(
        `recovery: ${k.method}: gap ${k.maxGapMs} ms, ${k.recoveryMs ?? '-'} ms to ${k.targetMbit} Mbit/s ` +
          `(from ${k.preRateMbit}), detected ${k.detectedMs ?? '-'} ms`
      )
    }
    return { ...base, kills, transfer }
  } catch (err) {
    log(`recovery: failed: ${errorText(err)}`)
    return { ...base, kills: [], transfer: null, error: errorText(err) }
  } finally {
    await faults.restoreAll()
    for (const e of emulators) await e.stop()
  }
}

// ---- figure 2: aggregation of two unequal paths ----------------------------------------------

const AGGREGATION_LINKS: PathLinks = {
  a: { delayMs: 25, rateMbit: 30 },
  b: { delayMs: 25, rateMbit: 20 }
}

async function aggregationFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<AggregationResult> {
  const links = AGGREGATION_LINKS
  const seconds = quick ? 5 : 12
  // Steady state: start-up left out (several RTTs of slow start and the window growing), and
  // the last second (the sender stops).
  const steadyFromMs = quick ? 2000 : 3000
  const steadyToMs = (seconds - 1) * 1000
  const nominalSumMbit = (links.a.rateMbit ?? 0) + (links.b.rateMbit ?? 0)
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    seconds,
    steadyFromMs,
    steadyToMs,
    nominalSumMbit
  }
  log(`aggregation: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${seconds} s runs`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const steady = (r: DuplexReport): number =>
    round(slopeMbit(r.samples, r.firstByteAt + steadyFromMs, r.firstByteAt + steadyToMs), 2)
  const runs: AggregationRun[] = []
  let port = 5610
  const plan: readonly {
    name: string
    system: 'tcp' | 'tandem'
    paths: readonly PathName[]
    scheduler: string | null
  }[] = [
    { name: 'TCP, path a', system: 'tcp', paths: ['a'], scheduler: null },
    { name: 'TCP, path b', system: 'tcp', paths: ['b'], scheduler: null },
    { name: 'Tandem, path a only', system: 'tandem', paths: ['a'], scheduler: 'first-free' },
    { name: 'Tandem, path b only', system: 'tandem', paths: ['b'], scheduler: 'first-free' },
    {
      name: 'Tandem, both, first-free',
      system: 'tandem',
      paths: ['a', 'b'],
      scheduler: 'first-free'
    },
    { name: 'Tandem, both, weighted', system: 'tandem', paths: ['a', 'b'], scheduler: 'weighted' }
  ]
  try {
    for (const c of plan) {
      const p = port++
      try {
        if (c.system === 'tcp') {
          const path = c.paths[0] ?? 'a'
          const { report, sent } = await tcpTransfer(bed, path, p, seconds, congestion)
          runs.push({
            ...c,
            goodputMbit: steady(report),
            sentMbit: null,
            sha256Equal: sent?.sentSha256 === report.receivedSha256
          })
        } else {
          const t = await tandemTransfer(
            bed,
            `agg-${p}`,
            {
              destinationPort: p,
              paths: c.paths,
              subflowsPerPath: SUBFLOWS_PER_PATH,
              overrides: {
                'trunk.scheduler': c.scheduler ?? 'first-free',
                'trunk.congestion': congestion
              }
            },
            ['--duration', String(seconds), '--timeout', String(seconds + 60)],
            0
          )
          if (t.streamFailure !== undefined) throw new Error(t.streamFailure)
          runs.push({
            ...c,
            goodputMbit: steady(t.report),
            sentMbit:
              t.txStatus === undefined
                ? null
                : sentPerPath(t.txStatus, t.report.lastByteAt - t.report.firstByteAt),
            sha256Equal: t.sent?.sentSha256 === t.report.receivedSha256
          })
        }
      } catch (err) {
        runs.push({
          ...c,
          goodputMbit: null,
          sentMbit: null,
          sha256Equal: null,
          error: errorText(err)
        })
      }
      const r = runs[runs.length - 1]
      log(`aggregation: ${c.name}: ${r?.goodputMbit ?? r?.error ?? '?'} Mbit/s`)
    }
  } catch (err) {
    return { ...base, runs, ratios: [], error: errorText(err) }
  } finally {
    for (const e of emulators) await e.stop()
  }
  const g = (name: string): number | null => runs.find((r) => r.name === name)?.goodputMbit ?? null
  const sum = (x: number | null, y: number | null): number | null =>
    x === null || y === null ? null : x + y
  const tcpSum = sum(g('TCP, path a'), g('TCP, path b'))
  const tandemA = g('Tandem, path a only')
  const tandemSum = sum(tandemA, g('Tandem, path b only'))
  const pct = (x: number, of: number | null): number | null =>
    of === null || of <= 0 ? null : round((100 * x) / of)
  const ratios: AggregationRatio[] = []
  for (const r of runs) {
    if (r.paths.length < 2 || r.goodputMbit === null) continue
    ratios.push({
      name: r.name,
      aggregateMbit: r.goodputMbit,
      ofNominalPct: round((100 * r.goodputMbit) / nominalSumMbit),
      ofTcpSumPct: pct(r.goodputMbit, tcpSum),
      ofTandemSumPct: pct(r.goodputMbit, tandemSum),
      vsFasterAlone: tandemA === null || tandemA <= 0 ? null : round(r.goodputMbit / tandemA, 2)
    })
  }
  return { ...base, runs, ratios }
}

// ---- figure 3: request/response latency ------------------------------------------------------

const LATENCY_LINKS: PathLinks = {
  a: { delayMs: 30, lossPercent: 1 },
  b: { delayMs: 40, lossPercent: 1 }
}
const REQUEST_BYTES = 100
const REPLY_BYTES = 1024
const WARMUP_EXCHANGES = 5

/** The rr-client's result line. */
interface RrClientReport {
  readonly ok: boolean
  readonly latenciesMs?: readonly number[]
  readonly error?: string
}

async function latencyFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<LatencyResult> {
  const links = LATENCY_LINKS
  const exchanges = quick ? 100 : 400
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    requestBytes: REQUEST_BYTES,
    replyBytes: REPLY_BYTES,
    exchanges,
    warmup: WARMUP_EXCHANGES
  }
  log(`latency: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${exchanges} exchanges`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const plan: readonly { name: string; paths: readonly PathName[]; scheduler: string }[] = [
    { name: 'Tandem, path a only', paths: ['a'], scheduler: 'first-free' },
    { name: 'Tandem, path b only', paths: ['b'], scheduler: 'first-free' },
    { name: 'Tandem, both, redundant', paths: ['a', 'b'], scheduler: 'redundant' }
  ]
  const runs: LatencyRun[] = []
  let port = 5620
  try {
    for (const c of plan) {
      runs.push(await latencyRun(bed, c, port++, exchanges, congestion))
      const r = runs[runs.length - 1]
      log(
        `latency: ${c.name}: p50 ${r?.p50Ms ?? '-'} p99 ${r?.p99Ms ?? '-'} max ${r?.maxMs ?? '-'} ms` +
          (r?.error !== undefined ? ` (${r.error})` : '')
      )
    }
  } catch (err) {
    return { ...base, runs, bestSinglePath: null, redundantVsBestP99: null, error: errorText(err) }
  } finally {
    for (const e of emulators) await e.stop()
  }
  const singles = runs.filter((r) => r.paths.length === 1 && r.p99Ms !== null)
  const best = singles.sort((x, y) => (x.p99Ms ?? Infinity) - (y.p99Ms ?? Infinity))[0]
  const red = runs.find((r) => r.scheduler === 'redundant')?.p99Ms ?? null
  return {
    ...base,
    runs,
    bestSinglePath: best?.name ?? null,
    redundantVsBestP99:
      best?.p99Ms === undefined || best.p99Ms === null || red === null || best.p99Ms <= 0
        ? null
        : round(red / best.p99Ms, 2)
  }
}

/** One configuration of figure 3: proxies, the rr-server in dst, the rr-client in src. */
async function latencyRun(
  bed: TwoPathTestbed,
  c: { name: string; paths: readonly PathName[]; scheduler: string },
  port: number,
  exchanges: number,
  congestion: string
): Promise<LatencyRun> {
  const conf = bed.config(`rr-${port}`, {
    destinationPort: port,
    paths: c.paths,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    overrides: { 'trunk.scheduler': c.scheduler, 'trunk.congestion': congestion }
  })
  const procs: NsProcess[] = []
  const empty = {
    ...c,
    exchanges: 0,
    p50Ms: null,
    p90Ms: null,
    p99Ms: null,
    maxMs: null,
    meanMs: null,
    framesSent: null,
    framesCopied: null
  }
  try {
    const { tx, rx } = await bed.startProxies(conf, c.paths.length * SUBFLOWS_PER_PATH)
    procs.push(rx, tx)
    const server = bed.start(
      bed.ns.dst,
      [SELF, 'rr-server', '--port', String(port), '--reply-bytes', String(REPLY_BYTES)],
      'rr-server'
    )
    procs.push(server)
    await server.waitFor(/listening on/)
    // A warm trunk: every subflow up and idle for a moment before the connection opens.
    await sleep(1000)
    const framesBefore = (await queryStatus(conf.txControl)).counters
    const r = await runIn(
      bed.ns.src,
      [
        SELF,
        'rr-client',
        '--host',
        TWO_PATH_ADDRESSES.a.local,
        '--port',
        String(TWO_PATH_TX_PORT),
        '--count',
        String(exchanges),
        '--warmup',
        String(WARMUP_EXCHANGES),
        '--request-bytes',
        String(REQUEST_BYTES),
        '--reply-bytes',
        String(REPLY_BYTES)
      ],
      exchanges * 3000 + 30_000
    )
    const line = r.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .pop()
    const j = line === undefined ? undefined : (JSON.parse(line) as RrClientReport)
    if (j?.ok !== true || j.latenciesMs === undefined) {
      throw new Error(j?.error ?? `rr-client exited ${r.code}: ${r.output.slice(-200)}`)
    }
    const after = (await queryStatus(conf.txControl)).counters
    const sorted = [...j.latenciesMs].sort((x, y) => x - y)
    const at = (p: number): number | null => {
      const v = percentile(sorted, p)
      return v === null ? null : round(v)
    }
    return {
      ...c,
      exchanges: sorted.length,
      p50Ms: at(50),
      p90Ms: at(90),
      p99Ms: at(99),
      maxMs: at(100),
      meanMs: sorted.length > 0 ? round(sorted.reduce((a, x) => a + x, 0) / sorted.length) : null,
      framesSent: (after.frames_sent ?? 0) - (framesBefore.frames_sent ?? 0),
      framesCopied: (after.frames_duplicated ?? 0) - (framesBefore.frames_duplicated ?? 0)
    }
  } catch (err) {
    return { ...empty, error: errorText(err) }
  } finally {
    for (const p of procs.reverse()) await p.stop()
  }
}

// ---- the benchmark ---------------------------------------------------------------------------

/**
 * Runs the three figures on one two-path testbed (root only). A figure that fails is reported
 * with its `error` and the others still run; the testbed is destroyed on every path.
 */
export async function runPathBench(opts: PathBenchOptions): Promise<PathBenchResult> {
  const started = new Date()
  const t0 = performance.now()
  const { quick } = opts
  const congestion = opts.congestion ?? DEFAULT_CONGESTION
  const log = (line: string): void => {
    opts.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${line}`)
  }
  log(`paths: building the two-path testbed (${quick ? 'quick' : 'full'} mode, ${congestion})`)
  const bed = await createTwoPathTestbed({ prefix: 'tpb' })
  try {
    const recovery = await recoveryFigure(bed, quick, congestion, log)
    await bed.stopAll()
    const aggregation = await aggregationFigure(bed, quick, congestion, log)
    await bed.stopAll()
    const latency = await latencyFigure(bed, quick, congestion, log)
    return {
      started: started.toISOString(),
      quick,
      elapsedS: round((performance.now() - t0) / 1000),
      recovery,
      aggregation,
      latency
    }
  } finally {
    await bed.destroy()
    log('paths: testbed removed')
  }
}

// ---- markdown --------------------------------------------------------------------------------

const KILL_LABEL: Record<RecoveryKillMethod, string> = {
  'ss-kill': 'one subflow, `ss -K`',
  'rst-inject': 'one subflow, injected RST',
  'black-hole': 'path b black hole (DROP both ways)'
}

/** A number for a table cell; '–' when missing. */
function cell(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits)
}

function yesNo(b: boolean | null | undefined): string {
  return b === true ? 'yes' : b === false ? 'no' : '–'
}

function recoveryMarkdown(r: RecoveryResult): string {
  const d = r.definition
  const out = [
    `**Recovery after a kill** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} ${r.congestion} subflows per path; ping every ${r.pingIntervalMs} ms, timeout ${r.pingTimeoutMs} ms; ` +
      `one ${r.durationS} s bulk transfer, kills in sequence):`,
    '',
    '| kill | victim on | at (s) | detected (ms) | longest gap (ms) | rate before (Mbit/s) | target (Mbit/s) | recovery (ms) |',
    '|---|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const k of r.kills) {
    const held = k.heldMs > 0 ? `, held ${(k.heldMs / 1000).toFixed(0)} s` : ''
    out.push(
      `| ${KILL_LABEL[k.method]}${held} | path ${k.path} | ${(k.atMs / 1000).toFixed(1)} | ${cell(k.detectedMs, 0)} | ` +
        `${k.maxGapMs.toFixed(0)} | ${k.preRateMbit.toFixed(1)} | ${k.targetMbit.toFixed(1)} | ` +
        `${k.recoveryMs === null ? `> ${(k.horizonMs / 1000 - (d.windowMs * d.windows) / 1000).toFixed(1)} s` : k.recoveryMs.toFixed(0)} |`
    )
  }
  if (r.kills.length === 0)
    out.push(`| (not measured${r.error !== undefined ? `: ${r.error}` : ''}) | | | | | | | |`)
  out.push('')
  out.push(
    `Target = ${d.threshold * 100} % × rate before (slope of the ${d.preWindowMs / 1000} s before the kill) × share of capacity left ` +
      `(1 for a subflow, re-dialled on the same path; 0.5 for a path of two equal ones). Recovery = time from the kill to the first instant ` +
      `from which each of the next ${d.windows} windows of ${d.windowMs} ms delivers at the target or more and no gap over ${d.maxStallMs} ms ` +
      `touches them (0: delivery never fell short). Longest gap: in progress at the kill or starting within ${GAP_WINDOW_MS / 1000} s of it, from 20 ms samples of bytes at dst.`
  )
  const t = r.transfer
  if (t !== null) {
    out.push(
      `Transfer: ${(t.bytes / MiB).toFixed(0)} MiB, sha256 equal ${yesNo(t.sha256Equal)} (reply ${yesNo(t.replySha256Equal)}), ` +
        `destination connections ${t.destinationConnections}, ending \`${t.ending}\`, ${t.resentMiB.toFixed(1)} MiB re-sent` +
        (t.failure === null ? '.' : `; **failed**: ${t.failure}.`)
    )
  } else if (r.error !== undefined) {
    out.push(`Failed: ${r.error}`)
  }
  return out.join('\n')
}

function aggregationMarkdown(r: AggregationResult): string {
  const out = [
    `**Aggregation of two unequal paths** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} subflows per path; ${r.congestion} everywhere; ${r.seconds} s per run, goodput from ${r.steadyFromMs / 1000} to ${r.steadyToMs / 1000} s):`,
    '',
    `| run | goodput (Mbit/s) | % of ${r.links.a.rateMbit ?? 0} + ${r.links.b.rateMbit ?? 0} | % of TCP a + TCP b | % of Tandem a + Tandem b | × Tandem a alone | sent on a / b (Mbit/s) |`,
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const run of r.runs) {
    const q = r.ratios.find((x) => x.name === run.name)
    const goodput =
      run.goodputMbit === null ? `failed: ${run.error ?? '?'}` : run.goodputMbit.toFixed(1)
    const nominal =
      q?.ofNominalPct ??
      (run.goodputMbit === null
        ? null
        : (100 * run.goodputMbit) /
          (run.paths[0] === 'b' ? (r.links.b.rateMbit ?? 0) : (r.links.a.rateMbit ?? 0)))
    const split =
      run.sentMbit === null ? '–' : `${run.sentMbit.a.toFixed(1)} / ${run.sentMbit.b.toFixed(1)}`
    out.push(
      `| ${run.name}${run.sha256Equal === false ? ' (sha256 differs!)' : ''} | ${goodput} | ${cell(nominal, 0)}${q === undefined && nominal !== null ? ' (of its path)' : ''} | ` +
        `${cell(q?.ofTcpSumPct, 0)} | ${cell(q?.ofTandemSumPct, 0)} | ${cell(q?.vsFasterAlone, 2)} | ${split} |`
    )
  }
  if (r.error !== undefined) out.push(`\nFailed: ${r.error}`)
  out.push('')
  out.push(
    'TCP = one plain TCP connection between the boxes over that path alone (the end hosts route over path a only). ' +
      'Goodput = least-squares slope of bytes at the receiver over the steady window.'
  )
  return out.join('\n')
}

function latencyMarkdown(r: LatencyResult): string {
  const out = [
    `**Request/response latency** (${linkText('a', r.links.a)}; ${linkText('b', r.links.b)}; ` +
      `${r.subflowsPerPath} ${r.congestion} subflows per path; one connection through a warm trunk, ${r.exchanges} sequential exchanges of ` +
      `${r.requestBytes} B → ${r.replyBytes} B after ${r.warmup} warm-up ones; ms, nearest rank):`,
    '',
    '| run | p50 | p90 | p99 | max | mean | frames copied |',
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const run of r.runs) {
    if (run.error !== undefined) {
      out.push(`| ${run.name} | failed: ${run.error} | | | | | |`)
      continue
    }
    const copied = run.framesSent === null ? '–' : `${run.framesCopied ?? 0} of ${run.framesSent}`
    out.push(
      `| ${run.name} | ${cell(run.p50Ms)} | ${cell(run.p90Ms)} | ${cell(run.p99Ms)} | ${cell(run.maxMs)} | ${cell(run.meanMs)} | ${copied} |`
    )
  }
  if (r.error !== undefined) out.push(`\nFailed: ${r.error}`)
  out.push('')
  out.push(
    r.bestSinglePath === null || r.redundantVsBestP99 === null
      ? 'Redundant vs best single path: not measured.'
      : `Best single path (lower p99): ${r.bestSinglePath}; redundant p99 = ${r.redundantVsBestP99.toFixed(2)} × its p99.`
  )
  return out.join('\n')
}

/** Three small markdown tables (recovery, aggregation, latency), each with its link settings. */
export function pathBenchMarkdown(r: PathBenchResult): string {
  return (
    [
      `Tandem path benchmark, ${r.started}, ${r.quick ? 'quick' : 'full'} mode, ${r.elapsedS.toFixed(0)} s.`,
      recoveryMarkdown(r.recovery),
      aggregationMarkdown(r.aggregation),
      latencyMarkdown(r.latency)
    ].join('\n\n') + '\n'
  )
}

// ---- rr-server / rr-client (run inside the namespaces) ----------------------------------------

/** `--name value` from `argv`, or `dflt`. */
function argOf(argv: readonly string[], name: string, dflt: string): string {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? (argv[i + 1] ?? dflt) : dflt
}

/** Answers every request (a newline-terminated line) with `replyBytes` bytes, on one connection. */
async function rrServerMain(argv: readonly string[]): Promise<number> {
  const port = Number(argOf(argv, 'port', '5620'))
  const reply = Buffer.alloc(Number(argOf(argv, 'reply-bytes', String(REPLY_BYTES))), 0x72)
  const server = createServer(function rrServerOnConnection(socket: Socket): void {
    socket.setNoDelay(true)
    socket.on('data', function rrServerOnData(chunk: Buffer): void {
      // A request ends with its only newline: one reply per newline, however TCP split them.
      for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, i + 1)) socket.write(reply)
    })
    socket.on('end', function rrServerOnEnd(): void {
      socket.end()
    })
    socket.on('error', function rrServerOnError(): void {
      socket.destroy()
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '0.0.0.0', port }, resolve)
  })
  process.stderr.write(`rr-server: listening on ${port}\n`)
  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')])
  server.close()
  return 0
}

/**
 * `warmup + count` sequential exchanges on one connection: writes a request, waits for the whole
 * reply, and so on. Prints one JSON line with the latencies of the last `count` (ms).
 */
async function rrClientMain(argv: readonly string[]): Promise<number> {
  const host = argOf(argv, 'host', '127.0.0.1')
  const port = Number(argOf(argv, 'port', '5620'))
  const count = Number(argOf(argv, 'count', '100'))
  const warmup = Number(argOf(argv, 'warmup', '0'))
  const requestBytes = Math.max(1, Number(argOf(argv, 'request-bytes', String(REQUEST_BYTES))))
  const replyBytes = Number(argOf(argv, 'reply-bytes', String(REPLY_BYTES)))
  const timeoutMs = Number(argOf(argv, 'timeout-ms', '10000'))
  const request = Buffer.alloc(requestBytes, 0x71)
  request[requestBytes - 1] = 0x0a
  const socket = createConnection({ host, port })
  let received = 0
  let failure: string | undefined
  let wake: (() => void) | undefined
  socket.on('data', function rrClientOnData(chunk: Buffer): void {
    received += chunk.length
    wake?.()
  })
  socket.on('error', function rrClientOnError(err: NodeJS.ErrnoException): void {
    failure ??= err.code ?? err.message
    wake?.()
  })
  socket.on('close', function rrClientOnClose(): void {
    failure ??= 'connection closed'
    wake?.()
  })
  const latencies: number[] = []
  try {
    await once(socket, 'connect')
    socket.setNoDelay(true)
    for (let i = 0; i < warmup + count; i++) {
      const need = (i + 1) * replyBytes
      const t0 = performance.now()
      socket.write(request)
      while (received < need) {
        if (failure !== undefined) throw new Error(`exchange ${i}: ${failure}`)
        if (performance.now() - t0 > timeoutMs) throw new Error(`exchange ${i}: timed out`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, timeoutMs)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
        wake = undefined
      }
      if (i >= warmup) latencies.push(round(performance.now() - t0, 2))
    }
    socket.end()
    process.stdout.write(`${JSON.stringify({ ok: true, latenciesMs: latencies })}\n`)
    return 0
  } catch (err) {
    socket.destroy()
    process.stdout.write(
      `${JSON.stringify({ ok: false, error: errorText(err), completed: latencies.length })}\n`
    )
    return 1
  }
}

/** The benchmark's command line: `[--quick] [--json]`. */
async function benchMain(argv: readonly string[]): Promise<number> {
  const ci = argv.indexOf('--congestion')
  const congestion = ci >= 0 ? argv[ci + 1] : undefined
  const unknown = argv.filter(
    (a, i) => a !== '--quick' && a !== '--json' && (ci < 0 || (i !== ci && i !== ci + 1))
  )
  if (unknown.length > 0) {
    process.stderr.write(
      `paths: unknown argument ${unknown[0] ?? ''}; usage: paths.js [--quick] [--json] [--congestion C] | rr-server ... | rr-client ...\n`
    )
    return 2
  }
  const why = netnsUnavailableReason()
  if (why !== undefined) {
    process.stderr.write(`paths: ${why}\n`)
    return 2
  }
  if (ci >= 0 && (congestion === undefined || !/^[a-z0-9_]+$/.test(congestion))) {
    process.stderr.write('paths: --congestion takes a name (cubic, bbr, reno...)\n')
    return 2
  }
  const result = await runPathBench({
    quick: argv.includes('--quick'),
    ...(congestion !== undefined ? { congestion } : {}),
    log: (line) => {
      process.stderr.write(`${line}\n`)
    }
  })
  process.stdout.write(
    argv.includes('--json') ? `${JSON.stringify(result, null, 2)}\n` : pathBenchMarkdown(result)
  )
  return 0
}

if (process.argv[1] === SELF) {
  const [mode, ...rest] = process.argv.slice(2)
  const main =
    mode === 'rr-server'
      ? rrServerMain(rest)
      : mode === 'rr-client'
        ? rrClientMain(rest)
        : benchMain(process.argv.slice(2))
  main.then(
    (code) => {
      process.exit(code)
    },
    (err: unknown) => {
      process.stderr.write(`paths: ${errorText(err)}\n`)
      process.exit(1)
    }
  )
}
