/**
 * The systemd service protocol (sd_notify(3)): READY=1 once the proxy serves, STATUS= lines
 * that `systemctl status` shows, WATCHDOG=1 keep-alives from the event loop, STOPPING=1 on
 * shutdown. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op.
 */
import { sdNotify } from '../../native/index.js'
import { errorMessage } from '../common/errors.js'
import { Ticker } from '../trunk/ticker.js'
import type { Logger } from '../common/log/logger.js'

/** Sends one notification datagram (the native addon; tests pass their own). */
export type NotifySend = (socketPath: string, message: string) => void

/** The variables systemd sets for a Type=notify service with WatchdogSec=. */
export interface NotifyEnv {
  readonly NOTIFY_SOCKET?: string | undefined
  readonly WATCHDOG_USEC?: string | undefined
  readonly WATCHDOG_PID?: string | undefined
}

/** The watchdog period systemd asks for, in ms, or undefined when it asks for none (or not us). */
export function watchdogIntervalMs(env: NotifyEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC)
  if (!Number.isFinite(usec) || usec <= 0) return undefined
  // WATCHDOG_PID names the process the watchdog is meant for; a child that inherited the
  // variables must not feed it.
  if (env.WATCHDOG_PID !== undefined && env.WATCHDOG_PID !== '' && Number(env.WATCHDOG_PID) !== pid)
    return undefined
  return usec / 1000
}

/** One proxy's link to the service manager. */
export class ServiceNotifier {
  private readonly socketPath: string | undefined
  private readonly watchdogMs: number | undefined
  private watchdog: Ticker | undefined
  private failed = false
  private readyValue = false

  constructor(
    private readonly log: Logger,
    env: NotifyEnv = process.env,
    private readonly send: NotifySend = sdNotify,
    pid: number = process.pid
  ) {
    const path = env.NOTIFY_SOCKET
    this.socketPath = path !== undefined && path !== '' ? path : undefined
    this.watchdogMs = this.socketPath === undefined ? undefined : watchdogIntervalMs(env, pid)
  }

  /** True under a service manager that listens for notifications. */
  get enabled(): boolean {
    return this.socketPath !== undefined
  }

  /** True once READY=1 was sent. */
  get isReady(): boolean {
    return this.readyValue
  }

  /** READY=1, with a STATUS= line. Sent once. */
  ready(status: string): void {
    if (this.readyValue) return
    this.readyValue = true
    this.notify(`READY=1\nSTATUS=${oneLine(status)}`)
  }

  /** STATUS=: what `systemctl status` shows under the unit's name. */
  status(status: string): void {
    this.notify(`STATUS=${oneLine(status)}`)
  }

  /** STOPPING=1: the manager knows the exit that follows is a stop, not a crash. */
  stopping(status: string): void {
    this.stopWatchdog()
    this.notify(`STOPPING=1\nSTATUS=${oneLine(status)}`)
  }

  /**
   * WATCHDOG=1 every half of WatchdogSec, from a timer of the event loop: a loop stuck longer
   * than WatchdogSec stops the keep-alives, and systemd kills and restarts the service.
   */
  startWatchdog(): void {
    if (this.watchdogMs === undefined || this.watchdog !== undefined) return
    this.notify('WATCHDOG=1')
    // Unref'd: the keep-alive alone must not keep a stopping process alive.
    this.watchdog = new Ticker(Math.max(1, Math.floor(this.watchdogMs / 2)), () => {
      this.notify('WATCHDOG=1')
    }).start()
  }

  /** Stop the keep-alives (on shutdown). */
  stopWatchdog(): void {
    this.watchdog?.stop()
    this.watchdog = undefined
  }

  private notify(message: string): void {
    if (this.socketPath === undefined) return
    try {
      this.send(this.socketPath, message)
      this.failed = false
    } catch (err) {
      // One line per run of failures, not one per keep-alive.
      if (!this.failed) {
        this.log.warn(`sd_notify to ${this.socketPath} failed: ${errorMessage(err)}`)
      }
      this.failed = true
    }
  }
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ')
}

/**
 * Resolve once `isReady()` holds, or after `maxWaitMs` (whichever comes first), checking every
 * `pollMs`. Returns whether it became ready: a service that waits for its peer must still
 * report in, so that `systemctl start` does not hang on a peer that is down.
 */
export async function waitUntilReady(
  isReady: () => boolean,
  maxWaitMs: number,
  pollMs = 100
): Promise<boolean> {
  const deadline = performance.now() + maxWaitMs
  while (!isReady()) {
    const left = deadline - performance.now()
    if (left <= 0) return false
    await new Promise((r) => setTimeout(r, Math.min(pollMs, left)))
  }
  return true
}
