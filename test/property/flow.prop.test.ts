/**
 * The flow state machine (src/core/flow.ts) driven by random sequences of peer frames (DATA at
 * random offsets and lengths, with or without FIN; ACKs with random received/limit/FIN; RESET)
 * and application and trunk events (data, end, full/drain, error, close, attach, pump, subflow
 * lost, budget freed, ACK flush). After every step: nothing escapes (a peer's ProtocolError
 * becomes a RESET, never a throw), the MemoryBudget never goes below zero and returns to zero
 * when the flow is done, held bytes stay within window + send buffer, the state moves only along
 * the allowed table, delivered and sent bytes are the right bytes, and credit is respected both
 * ways.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import type { Logger } from '../../src/common/log/logger.js'
import { FrameDecoder } from '../../src/common/wire/decode.js'
import { encodeFrame } from '../../src/common/wire/encode.js'
import {
  ResetReason,
  type AckFrame,
  type ReleaseFrame,
  type DataFrame,
  type OpenFrame,
  type ResetFrame
} from '../../src/common/wire/frame.js'
import { Flow, type AppPort, type FlowState } from '../../src/core/flow.js'
import { MemoryBudget } from '../../src/core/memory-budget.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { FakeTrunkPort } from '../helpers/fake-ports.js'
import { patternBytes } from '../helpers/frames.js'

/** The allowed transitions, from the house style and docs/protocol.md (not from flow.ts). */
const ALLOWED: Readonly<Record<FlowState, readonly FlowState[]>> = {
  connecting: ['open', 'reset'],
  open: ['local-fin', 'remote-fin', 'reset'],
  'local-fin': ['both-fin', 'reset'],
  'remote-fin': ['both-fin', 'reset'],
  'both-fin': ['closed', 'reset'],
  closed: [],
  reset: []
}

/** True when the table leads from `from` to `to` in one or more transitions. */
function reachable(from: FlowState, to: FlowState): boolean {
  const seen = new Set<FlowState>()
  const queue: FlowState[] = [...ALLOWED[from]]
  while (queue.length > 0) {
    const s = queue.shift()!
    if (s === to) return true
    if (seen.has(s)) continue
    seen.add(s)
    queue.push(...ALLOWED[s])
  }
  return false
}

/**
 * A logger with debug on that checks every transition the flow logs ("a -> b: why") against the
 * table, edge by edge; `watchState` in the run checks the states it samples in between.
 */
function transitionChecker(): Logger {
  const check = (message: string): void => {
    const m = /^([a-z-]+) -> ([a-z-]+): /.exec(message)
    if (m === null) return
    const [from, to] = [m[1] as FlowState, m[2] as FlowState]
    assert.ok(ALLOWED[from]?.includes(to), `transition ${from} -> ${to} is not in the table`)
  }
  const log: Logger = {
    debug: check,
    info: () => undefined,
    warn: () => undefined,
    error: () => undefined,
    child: () => log,
    isDebugEnabled: () => true
  }
  return log
}

/** A MemoryBudget that records every release of more than it holds (which it hides at 0). */
class CheckedBudget extends MemoryBudget {
  overReleased = 0
  override release(bytes: number): void {
    if (bytes > this.used) this.overReleased += bytes - this.used
    super.release(bytes)
  }
}

/** The fake trunk, calling `hook` first on every call the flow makes (to watch its state). */
class WatchedTrunk extends FakeTrunkPort {
  hook: () => void = () => undefined
  override sendControl(flow: Flow, frame: AckFrame | ReleaseFrame | ResetFrame): void {
    this.hook()
    super.sendControl(flow, frame)
  }
  override markReady(flow: Flow): void {
    this.hook()
    super.markReady(flow)
  }
  override waitForBudget(flow: Flow): void {
    this.hook()
    super.waitForBudget(flow)
  }
  override onFinished(flow: Flow): void {
    this.hook()
    super.onFinished(flow)
  }
  override countError(code: string): void {
    this.hook()
    super.countError(code)
  }
  override now(): number {
    this.hook()
    return super.now()
  }
}

/** The application socket: records bytes and calls; `write()` answers `writable`. */
class RecordingApp implements AppPort {
  hook: () => void = () => undefined
  readonly chunks: Uint8Array[] = []
  received = 0
  writable = true
  paused = false
  ended = 0
  resets = 0
  write(chunk: Uint8Array): boolean {
    this.hook()
    this.chunks.push(chunk)
    this.received += chunk.length
    return this.writable
  }
  end(): void {
    this.hook()
    this.ended++
  }
  reset(): void {
    this.hook()
    this.resets++
  }
  pause(): void {
    this.hook()
    this.paused = true
  }
  resume(): void {
    this.hook()
    this.paused = false
  }
}

/** The flow's settings for one run. */
interface Params {
  readonly opener: boolean
  readonly windowBytes: number
  readonly maxWindowBytes: number
  readonly peerWindowBytes: number
  readonly maxPayloadBytes: number
  readonly sendBufferBytes: number
  readonly maxReorderSegments: number
  /** Global budget: tight (the window alone fills it) or roomy. */
  readonly budgetBytes: number
}

const paramsArb: fc.Arbitrary<Params> = fc
  .record({
    opener: fc.boolean(),
    windowBytes: fc.constantFrom(512, 2048),
    grow: fc.constantFrom(1, 4),
    peerWindowBytes: fc.constantFrom(256, 4096),
    maxPayloadBytes: fc.constantFrom(64, 500),
    sendBufferBytes: fc.constantFrom(256, 2048),
    maxReorderSegments: fc.constantFrom(4, 16),
    tight: fc.boolean()
  })
  .map((p) => ({
    opener: p.opener,
    windowBytes: p.windowBytes,
    maxWindowBytes: p.windowBytes * p.grow,
    peerWindowBytes: p.peerWindowBytes,
    maxPayloadBytes: p.maxPayloadBytes,
    sendBufferBytes: p.sendBufferBytes,
    maxReorderSegments: p.maxReorderSegments,
    budgetBytes: p.tight ? p.windowBytes : 1 << 20
  }))

/** One step of a run. */
type Cmd =
  /** DATA anywhere (often beyond credit or past a FIN). */
  | { readonly k: 'data'; readonly offset: number; readonly length: number; readonly fin: boolean }
  /** DATA near what was delivered (mostly in credit, overlapping, duplicated). */
  | { readonly k: 'near'; readonly delta: number; readonly length: number; readonly fin: boolean }
  /** The peer's next bytes in order from what was delivered, within credit; FIN at one place. */
  | { readonly k: 'inOrder'; readonly length: number; readonly fin: boolean }
  /** ACK with any values. */
  | {
      readonly k: 'ack'
      readonly received: number
      readonly limit: number
      readonly fin: boolean
      /** Added to the flow's credit epoch: -1 an old ACK, 1 one from an epoch not begun. */
      readonly epochDelta: number
    }
  /** The peer gives credit back: honest (next epoch, a limit it may give) or anything. */
  | {
      readonly k: 'release'
      readonly honest: boolean
      readonly epochDelta: number
      readonly pick: number
    }
  /** Time passes; the flow looks at whether to give credit back. */
  | { readonly k: 'tick'; readonly advanceMs: number }
  /** ACK of everything sent so far, with credit for `more` bytes after it. */
  | { readonly k: 'ackAll'; readonly more: number }
  | { readonly k: 'reset' }
  | { readonly k: 'appData'; readonly length: number }
  | { readonly k: 'appEnd' }
  | { readonly k: 'appFull' }
  | { readonly k: 'appDrain' }
  | { readonly k: 'appError' }
  | { readonly k: 'appClosed' }
  | { readonly k: 'attach' }
  | { readonly k: 'pump'; readonly subflow: number; readonly count: number }
  | { readonly k: 'lost'; readonly subflow: number }
  | { readonly k: 'budget' }
  | { readonly k: 'flush' }

/** Largest app write in a run, in bytes. */
const MAX_APP_CHUNK = 700
/** The peer's stream and our application's stream (DATA payloads are slices of them). */
const PEER = Buffer.from(patternBytes(1 << 16, 11))
const APP = Buffer.from(patternBytes(1 << 16, 12))

/**
 * Steps, weighted so that runs live long enough to matter: mostly an honest peer and busy
 * applications, with hostile frames and aborts mixed in.
 */
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      k: fc.constant('data' as const),
      offset: fc.oneof(
        fc.nat(6000),
        fc.constantFrom(0, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER - 600)
      ),
      length: fc.nat(600),
      fin: fc.boolean()
    }),
    weight: 1
  },
  {
    arbitrary: fc.record({
      k: fc.constant('near' as const),
      delta: fc.integer({ min: -100, max: 400 }),
      length: fc.nat(400),
      fin: fc.constantFrom(false, false, false, false, true)
    }),
    weight: 6
  },
  {
    arbitrary: fc.record({
      k: fc.constant('inOrder' as const),
      length: fc.nat(600),
      fin: fc.constantFrom(false, false, false, true)
    }),
    weight: 6
  },
  {
    arbitrary: fc.record({
      k: fc.constant('ack' as const),
      received: fc.nat(10_000),
      limit: fc.oneof(fc.nat(10_000), fc.constant(Number.MAX_SAFE_INTEGER)),
      fin: fc.boolean(),
      epochDelta: fc.constantFrom(0, 0, 0, -1, 1)
    }),
    weight: 1
  },
  {
    arbitrary: fc.record({
      k: fc.constant('release' as const),
      honest: fc.constantFrom(true, true, false),
      epochDelta: fc.integer({ min: -1, max: 2 }),
      pick: fc.double({ min: 0, max: 1, noNaN: true })
    }),
    weight: 2
  },
  {
    arbitrary: fc.record({
      k: fc.constant('tick' as const),
      advanceMs: fc.constantFrom(0, 500, 1500, 3000)
    }),
    weight: 3
  },
  { arbitrary: fc.record({ k: fc.constant('ackAll' as const), more: fc.nat(8192) }), weight: 6 },
  {
    arbitrary: fc.constantFrom(
      { k: 'reset' as const },
      { k: 'appError' as const },
      { k: 'appClosed' as const }
    ),
    weight: 1
  },
  {
    arbitrary: fc.record({
      k: fc.constant('appData' as const),
      length: fc.integer({ min: 1, max: MAX_APP_CHUNK })
    }),
    weight: 6
  },
  { arbitrary: fc.constant({ k: 'appEnd' as const }), weight: 2 },
  { arbitrary: fc.constant({ k: 'appFull' as const }), weight: 2 },
  { arbitrary: fc.constant({ k: 'appDrain' as const }), weight: 4 },
  { arbitrary: fc.constant({ k: 'attach' as const }), weight: 3 },
  {
    arbitrary: fc.record({
      k: fc.constant('pump' as const),
      subflow: fc.integer({ min: 1, max: 3 }),
      count: fc.integer({ min: 1, max: 8 })
    }),
    weight: 8
  },
  {
    arbitrary: fc.record({
      k: fc.constant('lost' as const),
      subflow: fc.integer({ min: 1, max: 3 })
    }),
    weight: 1
  },
  { arbitrary: fc.constant({ k: 'budget' as const }), weight: 2 },
  { arbitrary: fc.constant({ k: 'flush' as const }), weight: 4 }
)

const OPEN: OpenFrame = {
  type: 'open',
  flowId: 7,
  dst: { family: 4, address: '192.0.2.1', port: 80 },
  src: undefined
}

/** Over all runs: RELEASEs the flows sent, and the peer's RELEASEs they took (coverage). */
const seen = { flowReleases: 0, peerReleases: 0 }

/** One run: a flow, its fakes, and what the driver knows. */
class Run {
  readonly clock = new FakeClock(1000)
  readonly trunk = new WatchedTrunk(this.clock)
  readonly budget: CheckedBudget
  readonly app = new RecordingApp()
  readonly flow: Flow
  attached = false
  /** Bytes our application gave the flow. */
  appBytes = 0
  appEnded = false
  /** Highest credit the driver granted the flow (its hello window, then ACK limits). */
  peerLimit: number
  /** Highest end of what the flow sent, and whether it sent a FIN. */
  sentEnd = 0
  finSent = false
  /** Where the honest peer put its FIN, once it did. */
  peerFin: number | undefined
  /** End of the highest byte of the peer's stream the flow took. */
  peerHighest = 0
  /** Credit epoch of the peer's stream (RELEASEs the driver sent and the flow took). */
  peerEpoch = 0
  /** Credit epoch of our stream (the flow's last RELEASE). */
  flowEpoch = 0
  /** Credit the flow announced (its window, then its ACKs' limits). */
  advertised: number
  /** Bytes of the peer's stream checked so far. */
  private delivered = 0
  private lastAck: AckFrame | undefined
  private controlSeen = 0
  private state: FlowState
  private controlAtDone = -1

  constructor(readonly p: Params) {
    this.budget = new CheckedBudget(p.budgetBytes)
    this.peerLimit = p.peerWindowBytes
    this.advertised = p.windowBytes
    this.flow = new Flow({
      flowId: OPEN.flowId,
      opener: p.opener,
      openFrame: p.opener ? OPEN : undefined,
      localWindowBytes: p.windowBytes,
      maxWindowBytes: p.maxWindowBytes,
      peerWindowBytes: p.peerWindowBytes,
      maxPayloadBytes: p.maxPayloadBytes,
      sendBufferBytes: p.sendBufferBytes,
      maxReorderSegments: p.maxReorderSegments,
      creditReleaseIdleMs: 2000,
      budget: this.budget,
      trunk: this.trunk,
      log: transitionChecker()
    })
    this.state = this.flow.state
    this.trunk.hook = this.app.hook = () => {
      this.watchState('during a call')
    }
    if (p.opener) this.attach()
  }

  private attach(): void {
    this.attached = true
    this.flow.attachApp(this.app)
  }

  private data(offset: number, length: number, fin: boolean): void {
    const end = offset + length
    const before = this.flow.stats().bytesToApp
    const wasDone = this.flow.done
    const resetsBefore = this.trunk.resets.length
    const payload = end <= PEER.length ? PEER.subarray(offset, end) : Buffer.alloc(length, 0x5a)
    const frame: DataFrame = { type: 'data', flowId: OPEN.flowId, offset, fin, payload }
    this.flow.onData(frame)
    if (wasDone) return
    // An empty DATA carries no byte; a FIN's offset counts (nothing at or beyond it is sent).
    if (!this.flow.done && (length > 0 || fin)) this.peerHighest = Math.max(this.peerHighest, end)
    // Beyond any credit the flow can have granted: it must reset, never throw.
    if (end > before + this.p.maxWindowBytes) {
      assert.equal(this.flow.state, 'reset', `DATA up to ${end} beyond credit did not reset`)
    }
    const newResets = this.trunk.resets.slice(resetsBefore)
    for (const r of newResets) {
      if (r.reason === ResetReason.CREDIT_EXCEEDED) {
        assert.ok(
          end > this.advertised,
          `CREDIT_EXCEEDED for ${end} within credit ${this.advertised}`
        )
      }
    }
    if (this.flow.state === 'reset' && newResets.length > 0) {
      assert.ok(this.trunk.errors.length > 0, 'a flow error is counted by its code')
    }
  }

  /** Apply one command; the flow must not throw. */
  apply(c: Cmd): void {
    const f = this.flow
    switch (c.k) {
      case 'data':
        this.data(c.offset, c.length, c.fin)
        break
      case 'near': {
        const offset = Math.max(0, f.stats().bytesToApp + c.delta)
        this.data(offset, Math.min(c.length, Math.max(0, PEER.length - offset)), c.fin)
        break
      }
      case 'inOrder': {
        const offset = f.stats().bytesToApp
        let end = Math.min(offset + c.length, this.advertised, PEER.length)
        if (this.peerFin !== undefined) end = Math.min(end, this.peerFin)
        const fin = this.peerFin !== undefined ? end === this.peerFin : c.fin
        if (fin) this.peerFin = end
        this.data(offset, Math.max(0, end - offset), fin)
        break
      }
      case 'ack': {
        const epoch = Math.max(0, this.flowEpoch + c.epochDelta)
        const wasDone = f.done
        this.ack(c.received, c.limit, c.fin, epoch)
        if (!wasDone && epoch > this.flowEpoch) {
          assert.equal(f.state, 'reset', 'an ACK of an epoch not begun resets the flow')
        }
        break
      }
      case 'ackAll':
        this.ack(this.sentEnd, this.sentEnd + c.more, this.finSent, this.flowEpoch)
        break
      case 'release': {
        const epoch = c.honest ? this.peerEpoch + 1 : Math.max(0, this.peerEpoch + c.epochDelta)
        const low = this.peerHighest
        const high = Math.max(low, this.advertised)
        const limit = c.honest
          ? low + Math.floor(c.pick * (high - low))
          : Math.floor(c.pick * 10_000)
        const wasDone = f.done
        const usedBefore = this.budget.used
        f.onRelease({ type: 'release', flowId: OPEN.flowId, epoch, limit })
        if (wasDone) break
        if (epoch <= this.peerEpoch) {
          assert.notEqual(f.state, 'reset', 'a copy of a RELEASE taken is no error')
        } else if (epoch !== this.peerEpoch + 1 || limit < this.peerHighest) {
          assert.equal(
            f.state,
            'reset',
            `a RELEASE (epoch ${epoch}, limit ${limit}) that cannot be`
          )
        } else if (f.state === 'reset') {
          // Only a limit beyond what the flow granted (at least what its ACKs said) is refused.
          assert.ok(limit > this.advertised, `an honest RELEASE to ${limit} reset the flow`)
        } else {
          assert.ok(this.budget.used <= usedBefore, 'a RELEASE frees, never takes')
          this.peerEpoch = epoch
          seen.peerReleases++
          this.advertised = limit
          this.lastAck = undefined
        }
        break
      }
      case 'tick':
        this.clock.advance(c.advanceMs)
        f.tickCredit(this.clock.now())
        break
      case 'reset': {
        const wasDone = f.done
        const resetsBefore = this.trunk.resets.length
        f.onReset({
          type: 'reset',
          flowId: OPEN.flowId,
          reason: ResetReason.APP_RESET,
          message: ''
        })
        assert.equal(f.state, wasDone ? this.state : 'reset')
        assert.equal(this.trunk.resets.length, resetsBefore, 'a RESET is not answered')
        break
      }
      case 'appData': {
        // A paused socket emits nothing; an ended one has nothing more.
        if (!this.attached || this.app.paused || this.appEnded) break
        const from = this.appBytes % (APP.length - MAX_APP_CHUNK)
        this.appBytes += c.length
        f.onAppData(APP.subarray(from, from + c.length))
        break
      }
      case 'appEnd':
        if (!this.attached || this.appEnded) break
        this.appEnded = true
        f.onAppEnd()
        break
      case 'appFull':
        this.app.writable = false
        break
      case 'appDrain':
        this.app.writable = true
        if (this.attached) f.onAppDrain()
        break
      case 'appError':
        if (this.attached) f.onAppError('ECONNRESET')
        break
      case 'appClosed':
        if (this.attached) f.onAppClosed()
        break
      case 'attach':
        // The trunk attaches only a live flow that is still connecting.
        if (!this.attached && !f.done) this.attach()
        break
      case 'pump':
        for (let i = 0; i < c.count && f.hasSendable(); i++) {
          const d = f.nextData(c.subflow)
          if (d === undefined) break
          const end = d.offset + d.payload.length
          assert.ok(d.payload.length <= this.p.maxPayloadBytes)
          assert.ok(end <= this.peerLimit, `sent up to ${end} beyond credit ${this.peerLimit}`)
          assert.ok(end <= this.appBytes)
          // Our stream's bytes, at their offsets (APP wraps where runs are long).
          if (end <= APP.length - MAX_APP_CHUNK) {
            assert.ok(Buffer.from(d.payload).equals(APP.subarray(d.offset, end)), 'sent bytes')
          }
          this.sentEnd = Math.max(this.sentEnd, end)
          if (d.fin) {
            assert.equal(end, this.appBytes, 'the FIN follows the last byte')
            this.finSent = true
          }
        }
        break
      case 'lost':
        f.onSubflowLost(c.subflow)
        break
      case 'budget':
        f.onBudgetFreed()
        break
      case 'flush':
        f.flushAck()
        break
    }
  }

  /**
   * State moves only along the table, and done is final. Sampled at every call the flow makes
   * into its ports and after every step, so each transition is seen on its own.
   */
  private watchState(when: string): void {
    const now = this.flow.state
    if (now === this.state) return
    assert.ok(
      reachable(this.state, now),
      `${when}: ${this.state} -> ${now} is no path of the table`
    )
    this.state = now
  }

  private ack(received: number, limit: number, fin: boolean, epoch: number): void {
    if (epoch === this.flowEpoch) this.peerLimit = Math.max(this.peerLimit, limit)
    this.flow.onAck({
      type: 'ack',
      flowId: OPEN.flowId,
      received,
      limit,
      finReceived: fin,
      epoch
    })
  }

  /** Every invariant, after every step. */
  check(step: string): void {
    const f = this.flow
    const s = f.stats()
    const b = this.budget
    assert.equal(b.overReleased, 0, `${step}: the budget released more than it held`)
    assert.ok(b.used >= 0)
    this.watchState(step)
    assert.equal(this.trunk.finished.length, f.done ? 1 : 0, `${step}: onFinished once at the end`)
    if (f.done) {
      assert.equal(b.used, 0, `${step}: ${b.used} bytes still held by a finished flow`)
      if (this.controlAtDone < 0) this.controlAtDone = this.trunk.control.length
      assert.equal(this.trunk.control.length, this.controlAtDone, `${step}: frames after the end`)
    } else {
      assert.ok(
        b.used >= s.reorderBytes + s.sendBufferedBytes,
        `${step}: budget ${b.used} below held ${s.reorderBytes} + ${s.sendBufferedBytes}`
      )
    }
    // Memory: reordering within the window, sending within window + send buffer (+ the chunk
    // that filled it: the application is paused after it).
    assert.ok(s.reorderBytes <= this.p.maxWindowBytes, `${step}: reorder ${s.reorderBytes}`)
    assert.ok(
      s.sendBufferedBytes <= this.p.maxWindowBytes + this.p.sendBufferBytes + MAX_APP_CHUNK,
      `${step}: send buffer ${s.sendBufferedBytes}`
    )
    // Bytes handed to the application are the peer's, in order.
    assert.equal(this.app.received, s.bytesToApp)
    if (this.app.chunks.length > 0 && this.app.received <= PEER.length) {
      let at = 0
      for (const c of this.app.chunks.splice(0)) {
        const want = PEER.subarray(this.delivered + at, this.delivered + at + c.length)
        assert.ok(Buffer.from(c).equals(want), `${step}: delivered bytes differ`)
        at += c.length
      }
      this.delivered += at
    }
    // ACKs only grow within an epoch, and credit never runs past delivered + the largest
    // window. A RELEASE keeps every byte sent, gives back only what was granted, and binds.
    for (const fr of this.trunk.control.slice(this.controlSeen)) {
      if (fr.type === 'release') {
        assert.ok(
          fr.epoch === this.flowEpoch + 1 || fr.epoch === this.flowEpoch,
          `${step}: RELEASE epoch ${fr.epoch} after ${this.flowEpoch}`
        )
        assert.ok(fr.limit >= this.sentEnd, `${step}: RELEASE below bytes sent`)
        assert.ok(fr.limit <= this.peerLimit, `${step}: RELEASE beyond the credit`)
        if (fr.epoch > this.flowEpoch) seen.flowReleases++
        this.flowEpoch = fr.epoch
        this.peerLimit = fr.limit
        continue
      }
      if (fr.type !== 'ack') continue
      assert.equal(fr.epoch, this.peerEpoch, `${step}: ACK of epoch ${fr.epoch}`)
      if (this.lastAck !== undefined) {
        assert.ok(fr.received >= this.lastAck.received && fr.limit >= this.lastAck.limit)
      }
      assert.ok(fr.limit - s.bytesToApp <= this.p.maxWindowBytes, `${step}: ACK limit ${fr.limit}`)
      this.advertised = Math.max(this.advertised, fr.limit)
      this.lastAck = fr
    }
    this.controlSeen = this.trunk.control.length
  }
}

describe('flow state machine under random peer frames and events', () => {
  it('never throws, never leaks budget, stays within its bounds and its transition table', () => {
    fc.assert(
      fc.property(
        paramsArb,
        fc.array(cmdArb, { minLength: 1, maxLength: 100, size: 'max' }),
        (p, cmds) => {
          const run = new Run(p)
          run.check('start')
          cmds.forEach((c, i) => {
            const step = `step ${i} ${c.k}`
            try {
              run.apply(c)
            } catch (err) {
              if (err instanceof assert.AssertionError) throw err
              assert.fail(
                `${step} threw ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`
              )
            }
            run.check(step)
          })
          // However it went, aborting now leaves nothing held.
          run.flow.abort(ResetReason.SHUTDOWN, 'test over')
          run.check('abort')
          assert.equal(run.flow.done, true)
        }
      ),
      { numRuns: 10_000 }
    )
    assert.ok(seen.flowReleases > 100, `flows sent ${seen.flowReleases} RELEASEs`)
    assert.ok(seen.peerReleases > 100, `flows took ${seen.peerReleases} RELEASEs`)
  })
})

describe('reorder memory', () => {
  it('frames that are mostly duplicates pin no more memory than the bytes they add', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1024, max: 8192 }),
        fc.integer({ min: 20, max: 120 }),
        (length, frames) => {
          const p: Params = {
            opener: false,
            windowBytes: 1 << 20,
            maxWindowBytes: 1 << 20,
            peerWindowBytes: 4096,
            maxPayloadBytes: 1000,
            sendBufferBytes: 4096,
            maxReorderSegments: 4096,
            budgetBytes: 1 << 24
          }
          const run = new Run(p)
          run.apply({ k: 'attach' })
          // As the subflow sees them: each frame in its own received buffer, decoded.
          const decoder = new FrameDecoder(1 << 20)
          const feed = (offset: number, n: number): void => {
            const bytes = encodeFrame({
              type: 'data',
              flowId: OPEN.flowId,
              offset,
              fin: false,
              payload: PEER.subarray(offset, offset + n)
            })
            const chunk = Buffer.alloc(bytes.length)
            chunk.set(bytes)
            for (const fr of decoder.push(chunk)) if (fr.type === 'data') run.flow.onData(fr)
          }
          // Byte 0 comes last; frame i covers [1 + i, 1 + i + length): one new byte each.
          for (let i = 0; i < frames; i++) feed(1 + i, length)
          feed(0, 1)
          const pinned = new Set(run.app.chunks.map((c) => c.buffer))
          let pinnedBytes = 0
          for (const buf of pinned) pinnedBytes += buf.byteLength
          const delivered = run.app.received
          assert.equal(delivered, frames + length)
          // The first frame is held whole (its 20-byte header comes with it); every later
          // piece should cost about what it adds.
          assert.ok(
            pinnedBytes <= 2 * delivered + 64,
            `${pinnedBytes} bytes pinned for ${delivered} delivered`
          )
        }
      ),
      { numRuns: 50 }
    )
  })
})
