/**
 * The subflows' congestion control at the I/O edge: reads what the kernel offers (the
 * net.ipv4 congestion sysctls and whether this process holds CAP_NET_ADMIN), decides with
 * common/congestion.ts, sets the answer on each subflow (and, once a trunk turns out to be a long
 * path, the long-path algorithm on its subflows), and falls back to the system default when the
 * kernel refuses it on a real socket (a stale module list, a seccomp or LSM rule).
 */
import { readFileSync } from 'node:fs'
import {
  afterRefusal,
  chooseCongestion,
  parseCongestionList,
  type ChooseOptions,
  type CongestionChoice,
  type CongestionSystem,
  withoutLongPath
} from '../common/congestion.js'
import { errorMessage } from '../common/errors.js'
import type { Logger } from '../common/log/logger.js'
import { setCongestion } from '../../native/index.js'

/** Bit of CAP_NET_ADMIN in the capability masks of /proc/self/status. */
const CAP_NET_ADMIN_BIT = 12n

/** One sysctl under /proc/sys/net/ipv4, trimmed; undefined when it cannot be read. */
function ipv4Sysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim()
  } catch {
    return undefined
  }
}

/** Whether the effective capability set of this process holds CAP_NET_ADMIN. */
export function hasNetAdmin(statusText?: string): boolean {
  let text = statusText
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8')
    } catch {
      return false
    }
  }
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(text)?.[1]
  if (hex === undefined) return false
  return ((BigInt(`0x${hex}`) >> CAP_NET_ADMIN_BIT) & 1n) === 1n
}

/** What this kernel, in this network namespace, offers this process. */
export function readCongestionSystem(): CongestionSystem {
  return {
    available: parseCongestionList(ipv4Sysctl('tcp_available_congestion_control')),
    allowed: parseCongestionList(ipv4Sysctl('tcp_allowed_congestion_control')),
    systemDefault: ipv4Sysctl('tcp_congestion_control'),
    netAdmin: hasNetAdmin()
  }
}

/** Sets TCP_CONGESTION on a descriptor; throws NativeError (tests pass a fake). */
export type SetCongestion = (fd: number, name: string) => void

/**
 * One proxy's congestion control decision: made once at start (and logged), applied to every
 * subflow socket, and revised if the kernel refuses it.
 */
export class SubflowCongestion {
  private choice: CongestionChoice
  /** A configured name was refused once already (warned). */
  private refusedOnce = false

  constructor(
    setting: string,
    private readonly log: Logger,
    private readonly system: CongestionSystem = readCongestionSystem(),
    private readonly opts: ChooseOptions = {},
    private readonly set: SetCongestion = setCongestion
  ) {
    this.choice = chooseCongestion(setting, system, opts)
  }

  /**
   * Log the decision: one line, a warning for a fallback. Called once the proxy is up, so that
   * a proxy that cannot start says only why it cannot.
   */
  announce(): void {
    const why = this.choice.reason !== undefined ? `: ${this.choice.reason}` : ''
    const line = `subflow congestion control: ${this.choice.label}${why}`
    if (this.choice.source === 'auto-fallback') this.log.warn(line)
    else this.log.info(line)
  }

  /** The decision as it stands. */
  get current(): CongestionChoice {
    return this.choice
  }

  /** Puts the subflow on `fd` on the chosen congestion control (nothing when none is set). */
  apply(fd: number): void {
    const name = this.choice.set
    if (name === undefined) return
    const message = this.trySet(fd, name)
    if (message === undefined) return
    const next = afterRefusal(this.choice, message, this.system.systemDefault, this.opts)
    if (next === this.choice) {
      // A configured name: the operator asked for it, so it stays asked for; warned once,
      // and `status` shows what each subflow really runs.
      if (this.refusedOnce) return
      this.refusedOnce = true
      this.log.warn(`subflow congestion control ${name} refused: ${message}`)
      return
    }
    this.choice = next
    this.log.warn(`subflow congestion control: ${next.label}: ${next.reason ?? message}`)
  }

  /**
   * Moves the subflow on `fd`, of a trunk whose min RTT reached LONG_PATH_RTT_MS, to the
   * long-path algorithm (auto: tandem), when there is one. A refusal is warned about once, and
   * long paths then stay where `apply` put them.
   */
  applyLongPath(fd: number): void {
    const name = this.choice.longPath
    if (name === undefined) return
    const message = this.trySet(fd, name)
    if (message === undefined) return
    this.choice = withoutLongPath(this.choice)
    this.log.warn(
      `subflow congestion control: ${name} refused on a long path: ${message}; its subflows stay on ${this.choice.algorithm ?? 'the system default'}`
    )
  }

  /** Sets `name` on `fd`; the kernel's refusal as text, or undefined when it took it. */
  private trySet(fd: number, name: string): string | undefined {
    try {
      this.set(fd, name)
      return undefined
    } catch (err) {
      return errorMessage(err)
    }
  }
}
