/**
 * Fakes of the ports a Flow talks through (src/core/flow.ts): an application socket that records
 * what it is asked to do and answers write() as the test says, and a trunk that records control
 * frames, readiness and endings and takes its time from a FakeClock.
 */
import type { AppPort, Flow, TrunkPort } from '../../src/core/flow.js'
import type { AckFrame, ReleaseFrame, ResetFrame } from '../../src/common/wire/frame.js'
import type { FakeClock } from './fake-clock.js'

/** One call made on a FakeAppPort, in order. */
export type AppEvent = 'write' | 'end' | 'reset' | 'pause' | 'resume'

/** The application socket, faked: records every call; `write()` returns `writeReturns`. */
export class FakeAppPort implements AppPort {
  /** Every chunk written, copied at write time. */
  readonly writes: Uint8Array[] = []
  /** Every call, in order. */
  readonly events: AppEvent[] = []
  /** What the next `write()` calls return (false: "socket full, wait for drain"). */
  writeReturns = true
  private pausedNow = false

  write(chunk: Uint8Array): boolean {
    this.writes.push(chunk.slice())
    this.events.push('write')
    return this.writeReturns
  }

  end(): void {
    this.events.push('end')
  }

  reset(): void {
    this.events.push('reset')
  }

  pause(): void {
    this.pausedNow = true
    this.events.push('pause')
  }

  resume(): void {
    this.pausedNow = false
    this.events.push('resume')
  }

  /** How many times `event` was called. */
  count(event: AppEvent): number {
    return this.events.filter((e) => e === event).length
  }

  /** True between a `pause()` and the next `resume()`. */
  get paused(): boolean {
    return this.pausedNow
  }

  /** Every byte written, in order. */
  get received(): Uint8Array {
    let n = 0
    for (const w of this.writes) n += w.length
    const out = new Uint8Array(n)
    let at = 0
    for (const w of this.writes) {
      out.set(w, at)
      at += w.length
    }
    return out
  }

  /** Number of bytes written. */
  get receivedBytes(): number {
    let n = 0
    for (const w of this.writes) n += w.length
    return n
  }
}

/** The trunk, faked: records what flows ask of it. */
export class FakeTrunkPort implements TrunkPort {
  /** Every control frame sent, in order. */
  readonly control: (AckFrame | ReleaseFrame | ResetFrame)[] = []
  /** Flows that called `markReady`, one entry per call. */
  readonly ready: Flow[] = []
  /** Flows that called `waitForBudget`, one entry per call. */
  readonly budgetWaits: Flow[] = []
  /** Flows that ended, one entry per call. */
  readonly finished: Flow[] = []
  private readonly clock: FakeClock
  private taken = 0

  constructor(clock: FakeClock) {
    this.clock = clock
  }

  /** While true, control frames are lost (written into a socket that is dying). */
  dropControl = false

  sendControl(_flow: Flow, frame: AckFrame | ReleaseFrame | ResetFrame): void {
    if (!this.dropControl) this.control.push(frame)
  }

  markReady(flow: Flow): void {
    this.ready.push(flow)
  }

  waitForBudget(flow: Flow): void {
    this.budgetWaits.push(flow)
  }

  onFinished(flow: Flow): void {
    this.finished.push(flow)
  }

  now(): number {
    return this.clock.now()
  }

  /** The trunk's RTT as flows see it (0: not measured yet). */
  rttMs = 0

  srttMs(): number {
    return this.rttMs
  }

  /** The rate controller's credit hint as flows see it (0: no estimate yet). */
  windowHint = 0

  windowHintBytes(): number {
    return this.windowHint
  }

  /** Windows flows reported grown past the hint (noteWindowGrown), in order. */
  readonly grownWindows: number[] = []

  noteWindowGrown(bytes: number): void {
    this.grownWindows.push(bytes)
  }

  /** The trunk's remembered window as flows see it (0: none). */
  grownWindow = 0

  grownWindowBytes(): number {
    return this.grownWindow
  }

  /** Flow errors counted, by code. */
  readonly errors: string[] = []

  countError(code: string): void {
    this.errors.push(code)
  }

  /** Control frames sent since the last call (what is still to be put on the wire). */
  takeControl(): (AckFrame | ReleaseFrame | ResetFrame)[] {
    const out = this.control.slice(this.taken)
    this.taken = this.control.length
    return out
  }

  /** Every ACK sent. */
  get acks(): AckFrame[] {
    return this.control.filter((f): f is AckFrame => f.type === 'ack')
  }

  /** Every RESET sent. */
  get resets(): ResetFrame[] {
    return this.control.filter((f): f is ResetFrame => f.type === 'reset')
  }
}
