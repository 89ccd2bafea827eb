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
 * scripts/tandem-cc.sh), which leaves the rate to the trunk's rate controller, is opt-in
 * (`trunk.congestion = tandem`): on a warm 600 ms trunk it did as well as bbr, on a cold one
 * (a pair's first flow) worse (57.6 against 72.9 Mbit/s in one bench run), so it is not what
 * `auto` picks.
 */

/** `trunk.congestion = auto`: bbr where the kernel has it, else the system default. */
export const CONGESTION_AUTO = 'auto'
/** `trunk.congestion = system` (or empty): leave every subflow on the system default. */
export const CONGESTION_SYSTEM = 'system'
/** What `auto` picks when the kernel offers it. */
export const PREFERRED_CONGESTION = 'bbr'

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
  /** One phrase for people: `bbr (auto)`, `cubic (bbr not available: ...)`. */
  readonly label: string
  /** Why auto did not get bbr, with what to do about it (auto-fallback only). */
  readonly reason?: string
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
 *   the reason in `reason`. Never tandem (see the top of this file).
 */
export function chooseCongestion(
  setting: string,
  system: CongestionSystem,
  opts: ChooseOptions = {}
): CongestionChoice {
  const systemDefault = system.systemDefault
  const defaultName = systemDefault ?? 'the system default'
  if (setting === '' || setting === CONGESTION_SYSTEM) {
    return {
      setting: CONGESTION_SYSTEM,
      set: undefined,
      algorithm: systemDefault,
      source: 'system',
      label: `${defaultName} (system default)`
    }
  }
  if (setting !== CONGESTION_AUTO) {
    return { setting, set: setting, algorithm: setting, source: 'configured', label: setting }
  }
  const want = PREFERRED_CONGESTION
  const why = whyUnusable(want, system)
  if (why === undefined) {
    return {
      setting,
      // Already every socket's default: nothing to set (and nothing that could be refused).
      set: systemDefault === want ? undefined : want,
      algorithm: want,
      source: 'auto',
      label: `${want} (auto)`
    }
  }
  return autoFallback(setting, systemDefault, why, opts)
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
  return autoFallback(
    choice.setting,
    systemDefault,
    `setting ${choice.set} on a subflow failed: ${failure}`,
    opts
  )
}

function autoFallback(
  setting: string,
  systemDefault: string | undefined,
  reason: string,
  opts: ChooseOptions
): CongestionChoice {
  const then =
    opts.tandemPaces === true ? 'Tandem paces itself' : 'the system default, not paced by Tandem'
  return {
    setting,
    set: undefined,
    algorithm: systemDefault,
    source: 'auto-fallback',
    label: `${systemDefault ?? 'system default'} (${PREFERRED_CONGESTION} not available: ${then})`,
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
