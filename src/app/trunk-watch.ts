/**
 * What tx_proxy's dialer did, for the log and for `status`: the trunk going down and coming
 * back (one warning each, with the count of failed dials in between, instead of a line per
 * subflow per retry), the state of each subflow slot, and the last dial error with its time.
 */
import { errorMessage, isPepError } from '../common/errors.js'
import { Ticker } from '../trunk/ticker.js'
import type { Logger } from '../common/log/logger.js'
import type { DialError, SubflowState } from './control.js'

/** What the watch reads from the trunk. */
export interface TrunkProbe {
  /** Live subflows. */
  subflowCount(): number
  /** True after the peer sent GOAWAY (it takes no new flows). */
  peerDraining(): boolean
}

/** One subflow slot's dial state. */
interface Slot {
  dialing: boolean
  /** Failed dials since the slot was last up. */
  failures: number
  /** Monotonic ms of the next dial, while backing off. */
  nextDialAt: number | undefined
}

/** The stable code of a dial error: PEP_ERR_..., the errno name (ECONNREFUSED), or 'error'. */
export function dialErrorCode(err: unknown): string {
  if (isPepError(err)) return err.code
  const code = (err as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : 'error'
}

/** Dial errors that a retry cannot fix: they name a configuration problem on one side. */
const CONFIG_CODES: ReadonlySet<string> = new Set([
  'PEP_ERR_AUTH_FAILED',
  'PEP_ERR_VERSION_MISMATCH'
])

/** Watches one trunk of tx_proxy. */
export class TrunkWatch {
  private readonly slots: Slot[]
  private state: 'starting' | 'up' | 'down' = 'starting'
  private downSinceMs: number
  private failuresWhileDown = 0
  /** Codes already reported during this outage. */
  private readonly reported = new Set<string>()
  private lastError: DialError | undefined
  private encryptedValue: boolean | undefined
  private readonly ticker = new Ticker(1000, () => {
    this.check()
  })

  constructor(
    private readonly peer: string,
    slotCount: number,
    private readonly probe: TrunkProbe,
    private readonly log: Logger,
    private readonly now: () => number = () => performance.now(),
    private readonly wallNow: () => number = () => Date.now()
  ) {
    this.slots = Array.from({ length: slotCount }, () => ({
      dialing: false,
      failures: 0,
      nextDialAt: undefined
    }))
    this.downSinceMs = now()
  }

  /** Check the trunk every second too: a GOAWAY or a lost subflow is not a dial event. */
  start(): void {
    this.ticker.start()
  }

  stop(): void {
    this.ticker.stop()
  }

  /** Subflow `index` starts a dial. */
  dialStarted(index: number): void {
    const slot = this.slots[index]
    if (slot === undefined) return
    slot.dialing = true
    slot.nextDialAt = undefined
  }

  /** Subflow `index` finished its handshake. */
  dialSucceeded(index: number, encrypted: boolean): void {
    const slot = this.slots[index]
    if (slot !== undefined) {
      slot.dialing = false
      slot.failures = 0
    }
    this.encryptedValue = encrypted
  }

  /** Subflow `index` failed to dial; the next try is in `retryInMs`. */
  dialFailed(index: number, err: unknown, retryInMs: number): void {
    const slot = this.slots[index]
    const code = dialErrorCode(err)
    const message = errorMessage(err)
    this.lastError = { subflow: index, message, code, at: new Date(this.wallNow()).toISOString() }
    if (slot !== undefined) {
      slot.dialing = false
      slot.failures++
    }
    this.check()
    if (this.state !== 'up') this.failuresWhileDown++
    const first = this.reported.size === 0
    if (this.state === 'starting' && first) {
      this.reported.add(code)
      this.log.warn(
        `trunk to ${this.peer} not up: subflow ${index}: ${message}; retrying with backoff (status shows the failed dials)`,
        { code }
      )
    } else if (CONFIG_CODES.has(code) && !this.reported.has(code)) {
      // A wrong key or version will not heal by retrying: say so once per outage.
      this.reported.add(code)
      this.log.warn(`trunk to ${this.peer}: subflow ${index}: ${message}`, { code })
    } else if (this.state === 'up' && slot !== undefined && slot.failures === 1) {
      // The trunk is up on other subflows: one line for this one, not one per retry.
      this.log.info(`subflow ${index} to ${this.peer} cannot connect: ${message}; retrying`, {
        code
      })
    } else if (this.log.isDebugEnabled()) {
      this.log.debug(`subflow ${index} dial failed: ${message}`, { code })
    }
    if (slot !== undefined) slot.nextDialAt = this.now() + retryInMs
  }

  /** Compare the trunk with what was last seen and log a change (one line each way). */
  check(): void {
    const up = this.probe.subflowCount() > 0 && !this.probe.peerDraining()
    if (up && this.state !== 'up') {
      const n = this.probe.subflowCount()
      const failed = this.failuresWhileDown
      if (this.state === 'starting') {
        // After a "not up" warning, its end is a warning too.
        const line = `trunk to ${this.peer} up: ${n} subflow(s)${failed > 0 ? `, after ${failed} failed dial(s)` : ''}`
        if (failed > 0) this.log.warn(line)
        else this.log.info(line)
      } else {
        // A warning, like the line that said it went down: at log.level=warn an outage shows
        // its end too.
        this.log.warn(
          `trunk to ${this.peer} back after ${((this.now() - this.downSinceMs) / 1000).toFixed(1)} s: ${n} subflow(s), ${failed} failed dial(s) meanwhile`
        )
      }
      this.state = 'up'
      this.failuresWhileDown = 0
      this.reported.clear()
    } else if (!up && this.state === 'up') {
      this.state = 'down'
      this.downSinceMs = this.now()
      this.log.warn(
        `trunk to ${this.peer} down: ${this.probe.peerDraining() ? 'the peer is shutting down (GOAWAY)' : 'no subflow left'}; new flows pass directly until it is back`
      )
    }
  }

  /** up, down or starting (never up yet). */
  get trunkState(): 'starting' | 'up' | 'down' {
    return this.state
  }

  /** Failed dials since the trunk was last up. */
  get failedDials(): number {
    return this.failuresWhileDown
  }

  /** The last dial error, if any. */
  get lastDialError(): DialError | undefined {
    return this.lastError
  }

  /** Whether the last handshake agreed on encryption (undefined before any). */
  get encrypted(): boolean | undefined {
    return this.encryptedValue
  }

  /** A slot that has no live subflow: connecting or backing off, its failures, next dial. */
  slot(index: number): {
    state: SubflowState
    failedDials: number
    nextDialInMs: number | undefined
  } {
    const s = this.slots[index]
    if (s === undefined) return { state: 'connecting', failedDials: 0, nextDialInMs: undefined }
    const next = s.nextDialAt === undefined ? undefined : Math.max(0, s.nextDialAt - this.now())
    return {
      state: s.dialing || next === undefined ? 'connecting' : 'backing off',
      failedDials: s.failures,
      nextDialInMs: next === undefined ? undefined : Math.round(next)
    }
  }
}
