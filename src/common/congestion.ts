/**
 * Which congestion control the subflows run: the pure decision behind `trunk.congestion`. The
 * trunk's edge (trunk/congestion.ts) reads what the kernel offers, asks `chooseCongestion` and
 * sets the answer on every subflow; `status` and the start log print the answer's label.
 *
 * Why not the box's default: each subflow is a TCP connection across the bad link, and a
 * loss-based controller (cubic, the Debian default) halves its window at every random loss, so
 * at 1 % loss and 50 ms a cubic subflow moves a few Mbit/s (Mathis) and eight of them stay far
 * below the link; bbr subflows fill it. A box whose kernel lacks bbr keeps its own default,
 * and says so. Tandem's own algorithm, `tandem` (native/bpf/tandem_cc.bpf.c, registered by
 * scripts/tandem-cc.sh), which leaves the rate to the trunk's rate controller, is where `auto`
 * moves the subflows once the trunk knows its min RTT and it is at least LONG_PATH_RTT_MS: it
 * has neither bbr's loss-recovery clamp at each new flow nor its PROBE_RTT. First measured at
 * 600 ms (four bench runs alternating with bbr: warm flows 85.0, 82.6, 87.6 and 87.8 Mbit/s at
 * 1 % loss each way against bbr's 80.3, 85.2, 82.2, 83.7), where it became the default for
 * paths from 300 ms. With the rate controller as it is now it is ahead
 * in bulk on every link the bench measures: one run of `bench --rtt 100,50,200 --loss
 * 0,1,2,0.5 --systems tandem-8-tandem,tandem-8-unset --sweep-runs 3` (medians of three warm
 * flows, tandem against bbr) gave 95.2 / 94.6 / 94.2 / 94.0 against 94.2 / 92.4 / 91.7 / 92.3
 * at 50 ms and 0 / 0.5 / 1 / 2 % loss, 95.0 / 93.5 / 93.8 / 93.4 against 92.4 / 91.4 / 90.8 /
 * 91.2 at 100 ms, 94.4 / 91.6 / 92.2 / 89.0 against 91.1 / 89.7 / 89.4 / 87.4 at 200 ms, with
 * the retransmitted share within 0.35 points. But at 50 ms, 1 % a 100 KB reply through a warm
 * trunk took 130 and 144 ms on tandem against 81 and 88 on bbr (`bench --rtt 50,200 --loss 1
 * --systems none --short-congestion auto --short-direct false`, alternated), while at 100 and
 * 200 ms the short replies were level (three runs each, the same command with `--rtt 100,200`:
 * 100 KB at 100 ms 131, 135, 130 against 128, 137, 143 ms; 1 MB at 200 ms 500, 506, 512
 * against 507, 521, 512 ms). So a long path starts between the two, at 80 ms, and the 50 ms
 * link keeps bbr. That reason is not settled: later `short-trace` runs at 50 ms, 1 % (100 KB,
 * alternated) spread as widely on bbr alone, medians 116 and 78 ms against tandem's 88 and 88.
 */

/** `trunk.congestion = auto`: bbr where the kernel has it, else the system default. */
export const CONGESTION_AUTO = 'auto'
/** `trunk.congestion = system` (or empty): leave every subflow on the system default. */
export const CONGESTION_SYSTEM = 'system'
/** What `auto` picks when the kernel offers it. */
export const PREFERRED_CONGESTION = 'bbr'
/** What `auto` moves a long path's subflows to, where it is registered and the trunk paces. */
export const LONG_PATH_CONGESTION = 'tandem'
/**
 * A trunk whose min RTT is at least this, in ms, is a long path for `auto`, which moves its
 * subflows to LONG_PATH_CONGESTION: the bench's 100, 200 and 600 ms links, not its 50 ms one,
 * where short replies were slower on tandem (see the top).
 */
export const LONG_PATH_RTT_MS = 80

/**
 * Longest congestion control name, in bytes: TCP_CA_NAME_MAX (16) in the kernel, less its NUL.
 */
const CONGESTION_NAME_MAX = 15

/** What the kernel tells about congestion control, read by the edge (undefined: unreadable). */
export interface CongestionSystem {
  /** net.ipv4.tcp_available_congestion_control: built in or loaded modules. */
  readonly available: readonly string[] | undefined
  /** net.ipv4.tcp_allowed_congestion_control: what a process without CAP_NET_ADMIN may set. */
  readonly allowed: readonly string[] | undefined
  /** net.ipv4.tcp_congestion_control of this network namespace: what a socket starts with. */
  readonly systemDefault: string | undefined
  /** The process holds CAP_NET_ADMIN, so it may set any available algorithm. */
  readonly netAdmin: boolean
}

/** How the choice came about. */
export type CongestionSource = 'configured' | 'auto' | 'auto-fallback' | 'system'

/** The decision, for the tuner, the start log and `status`. */
export interface CongestionChoice {
  /** `trunk.congestion` as configured ('' reads as `system`). */
  readonly setting: string
  /** The name to set with TCP_CONGESTION on every subflow; undefined leaves the socket as it is. */
  readonly set: string | undefined
  /** The algorithm the subflows are expected to run; undefined when the kernel did not say. */
  readonly algorithm: string | undefined
  readonly source: CongestionSource
  /**
   * One phrase for people: `bbr (auto)`, `cubic (bbr not available: ...)`, with
   * `; tandem from 80 ms RTT` when there is a long-path algorithm (built by `withLongPath`).
   */
  readonly label: string
  /** The label without the long-path phrase. */
  readonly baseLabel: string
  /** Why auto did not get bbr, with what to do about it (auto-fallback only). */
  readonly reason?: string
  /**
   * `auto`: the algorithm for the subflows of a trunk whose min RTT reaches LONG_PATH_RTT_MS
   * (set when the trunk learns it); undefined: such subflows stay on `set`.
   */
  readonly longPath?: string
}

/** Options of the decision that depend on the rest of the trunk. */
export interface ChooseOptions {
  /**
   * The trunk paces its subflows itself (a trunk-wide rate controller), so a loss-based
   * default controller is less of a loss. The fallback label says which case holds.
   */
  readonly tandemPaces?: boolean
}

/**
 * Whether `setting` is a valid `trunk.congestion`: `auto`, `system`, empty, or a kernel module
 * name (lower case letters, digits and `_`, at most 15 bytes, as the kernel spells them).
 */
export function isCongestionSetting(setting: string): boolean {
  if (setting === '' || setting === CONGESTION_AUTO || setting === CONGESTION_SYSTEM) return true
  return setting.length <= CONGESTION_NAME_MAX && /^[a-z][a-z0-9_]*$/.test(setting)
}

/** Splits a sysctl list value (`reno cubic bbr`) into names; undefined stays undefined. */
export function parseCongestionList(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined
  return text.split(/\s+/).filter((w) => w !== '')
}

/**
 * The subflows' congestion control for `setting` on a kernel described by `system`:
 * - a name: that name (whether the kernel takes it shows per subflow in `status`);
 * - `system` or empty: nothing is set, the subflows keep the system default;
 * - `auto`: bbr when the kernel offers it and this process may set it (it is allowed, or the
 *   process holds CAP_NET_ADMIN, or it is the default already), else the system default, with
 *   the reason in `reason`; and `longPath` = tandem where the kernel offers it and the trunk
 *   paces (`opts.tandemPaces`: tandem has no congestion control of its own), for trunks whose
 *   min RTT reaches LONG_PATH_RTT_MS.
 */
export function chooseCongestion(
  setting: string,
  system: CongestionSystem,
  opts: ChooseOptions = {}
): CongestionChoice {
  const systemDefault = system.systemDefault
  const defaultName = systemDefault ?? 'the system default'
  if (setting === '' || setting === CONGESTION_SYSTEM) {
    const label = `${defaultName} (system default)`
    return {
      setting: CONGESTION_SYSTEM,
      set: undefined,
      algorithm: systemDefault,
      source: 'system',
      label,
      baseLabel: label
    }
  }
  if (setting !== CONGESTION_AUTO) {
    return {
      setting,
      set: setting,
      algorithm: setting,
      source: 'configured',
      label: setting,
      baseLabel: setting
    }
  }
  const want = PREFERRED_CONGESTION
  const why = whyUnusable(want, system)
  const longPath =
    opts.tandemPaces === true && whyUnusable(LONG_PATH_CONGESTION, system) === undefined
      ? LONG_PATH_CONGESTION
      : undefined
  const choice: CongestionChoice =
    why === undefined
      ? {
          setting,
          // Already every socket's default: nothing to set (and nothing that could be refused).
          set: systemDefault === want ? undefined : want,
          algorithm: want,
          source: 'auto',
          label: `${want} (auto)`,
          baseLabel: `${want} (auto)`
        }
      : autoFallback(setting, systemDefault, why, opts)
  return longPath === undefined ? choice : withLongPath(choice, longPath)
}

/** `choice` with `longPath` as its long-path algorithm, and the label saying so. */
function withLongPath(choice: CongestionChoice, longPath: string): CongestionChoice {
  return {
    ...choice,
    longPath,
    label: `${choice.baseLabel}; ${longPath} from ${LONG_PATH_RTT_MS} ms RTT`
  }
}

/** The choice once the kernel refused its long-path algorithm: long paths stay on `set`. */
export function withoutLongPath(choice: CongestionChoice): CongestionChoice {
  const { longPath, ...rest } = choice
  return longPath === undefined ? choice : { ...rest, label: rest.baseLabel }
}

/**
 * The choice once setting `choice.set` on a subflow failed with `failure` (the error's text):
 * for `auto`, the system default with the reason; a configured name stays what was asked for
 * (the operator chose it; `status` shows what the subflows really run).
 */
export function afterRefusal(
  choice: CongestionChoice,
  failure: string,
  systemDefault: string | undefined,
  opts: ChooseOptions = {}
): CongestionChoice {
  if (choice.source !== 'auto' || choice.set === undefined) return choice
  const fallback = autoFallback(
    choice.setting,
    systemDefault,
    `setting ${choice.set} on a subflow failed: ${failure}`,
    opts
  )
  return choice.longPath === undefined ? fallback : withLongPath(fallback, choice.longPath)
}

function autoFallback(
  setting: string,
  systemDefault: string | undefined,
  reason: string,
  opts: ChooseOptions
): CongestionChoice {
  const then =
    opts.tandemPaces === true ? 'Tandem paces itself' : 'the system default, not paced by Tandem'
  const label = `${systemDefault ?? 'system default'} (${PREFERRED_CONGESTION} not available: ${then})`
  return {
    setting,
    set: undefined,
    algorithm: systemDefault,
    source: 'auto-fallback',
    label,
    baseLabel: label,
    reason
  }
}

/** Why this process cannot put its subflows on `name`, or undefined when it can. */
function whyUnusable(name: string, system: CongestionSystem): string | undefined {
  if (system.systemDefault === name) return undefined
  if (system.available === undefined) {
    return 'net.ipv4.tcp_available_congestion_control is not readable'
  }
  if (!system.available.includes(name)) {
    return `the kernel offers ${system.available.join(' ') || 'nothing'}; load it with modprobe tcp_${name} (scripts/tune-box.sh does, and persists it)`
  }
  if (!system.netAdmin && !(system.allowed ?? []).includes(name)) {
    return `${name} is not in net.ipv4.tcp_allowed_congestion_control (${(system.allowed ?? []).join(' ')}) and the process lacks CAP_NET_ADMIN`
  }
  return undefined
}
