/**
 * Flow: two flows wired back to back through a fake trunk (opener ↔ acceptor), driven through
 * their public handlers only. Transfers with half-close and clean close, credit and backpressure,
 * resets from either side and from a misbehaving peer, the global budget, and the OPEN re-send
 * path when the subflow that carried the OPEN dies before the peer answered.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { PepErrorCodes, ProtocolError } from '../../../src/common/errors.js'
import { silentLogger } from '../../../src/common/log/logger.js'
import {
  ResetReason,
  type DataFrame,
  type ReleaseFrame,
  type Frame,
  type OpenFrame
} from '../../../src/common/wire/frame.js'
import {
  UNSENT_BYTES_FROM_WHOLE_BUDGET,
  BUDGET_KEPT_FOR_NEW_FLOWS,
  Flow,
  RELEASE_RESEND_MIN_MS,
  type FlowState
} from '../../../src/core/flow.js'
import { MemoryBudget } from '../../../src/core/memory-budget.js'
import { FakeClock } from '../../helpers/fake-clock.js'
import { FakeAppPort, FakeTrunkPort } from '../../helpers/fake-ports.js'
import { patternBytes } from '../../helpers/frames.js'

/** A MemoryBudget that records any release of more than it holds (which it would hide at 0). */
class CheckedBudget extends MemoryBudget {
  overReleased = 0
  override release(bytes: number): void {
    if (bytes > this.used) this.overReleased += bytes - this.used
    super.release(bytes)
  }
}

interface Side {
  readonly flow: Flow
  readonly app: FakeAppPort
  readonly trunk: FakeTrunkPort
  readonly budget: CheckedBudget
  /** Every state the flow was seen in, without repeats. */
  readonly states: FlowState[]
}

/** A frame on the wire, on a subflow, towards one side. */
interface InFlight {
  readonly to: 'opener' | 'acceptor'
  readonly subflow: number
  readonly frame: Frame
}

interface PairOptions {
  /** Credit each side grants, in bytes. */
  readonly windowBytes?: number
  /** Most credit after the window grows, in bytes (default: no growth). */
  readonly maxWindowBytes?: number
  readonly maxPayloadBytes?: number
  readonly sendBufferBytes?: number
  readonly maxReorderSegments?: number
  readonly budgetBytes?: number
  /** `Flow`'s creditReleaseIdleMs (default 0: never). */
  readonly creditReleaseIdleMs?: number
  /** Attach the acceptor's application at once (as if the destination connected at once). */
  readonly attach?: boolean
  /** Budgets shared with other pairs (one per proxy); a fresh one per side otherwise. */
  readonly openerBudget?: CheckedBudget
  readonly acceptorBudget?: CheckedBudget
}

const FLOW_ID = 0x1234

/** The `i`th 1000-byte DATA frame of the flow, in order. */
function dataAt(i: number): DataFrame {
  return {
    type: 'data',
    flowId: FLOW_ID,
    offset: i * 1000,
    fin: false,
    payload: patternBytes(1000, i)
  }
}
const OPEN: OpenFrame = {
  type: 'open',
  flowId: FLOW_ID,
  dst: { family: 4, address: '192.0.2.10', port: 80 },
  src: undefined
}

/**
 * Opener and acceptor of one flow, with a wire of three subflows between them. `run()` moves
 * frames until nothing moves; subflows can be held (frames wait) and killed (frames are lost).
 */
class Pair {
  readonly clock = new FakeClock(1000)
  readonly opener: Side
  readonly acceptor: Side
  readonly wire: InFlight[] = []
  readonly live = new Set([1, 2, 3])
  readonly held = new Set<number>()
  /** Every DATA frame put on the wire, in order, by sender. */
  readonly sent: {
    readonly from: 'opener' | 'acceptor'
    readonly subflow: number
    readonly resend: boolean
    readonly offset: number
    readonly length: number
  }[] = []
  private rr = 0

  constructor(opts: PairOptions = {}) {
    const window = opts.windowBytes ?? 8192
    const make = (opener: boolean): Side => {
      const trunk = new FakeTrunkPort(this.clock)
      const budget =
        (opener ? opts.openerBudget : opts.acceptorBudget) ??
        new CheckedBudget(opts.budgetBytes ?? 1 << 30)
      const flow = new Flow({
        flowId: FLOW_ID,
        opener,
        openFrame: opener ? OPEN : undefined,
        localWindowBytes: window,
        maxWindowBytes: opts.maxWindowBytes ?? window,
        peerWindowBytes: window,
        maxPayloadBytes: opts.maxPayloadBytes ?? 1000,
        sendBufferBytes: opts.sendBufferBytes ?? 16384,
        maxReorderSegments: opts.maxReorderSegments ?? 4096,
        creditReleaseIdleMs: opts.creditReleaseIdleMs ?? 0,
        budget,
        trunk,
        log: silentLogger
      })
      return { flow, app: new FakeAppPort(), trunk, budget, states: [flow.state] }
    }
    this.opener = make(true)
    this.acceptor = make(false)
    this.opener.flow.attachApp(this.opener.app)
    this.opener.flow.announcedOn.add(1)
    if (opts.attach ?? true) this.attachAcceptor()
  }

  /** The destination connected. */
  attachAcceptor(): void {
    this.acceptor.flow.attachApp(this.acceptor.app)
    this.observe()
  }

  side(name: 'opener' | 'acceptor'): Side {
    return name === 'opener' ? this.opener : this.acceptor
  }

  /** Record state changes and check the budgets after every step. */
  observe(): void {
    for (const s of [this.opener, this.acceptor]) {
      if (s.states[s.states.length - 1] !== s.flow.state) s.states.push(s.flow.state)
      assert.ok(s.budget.used >= 0)
      assert.equal(s.budget.overReleased, 0, 'budget released more than it held')
    }
  }

  private pickSubflow(s: Side): number | undefined {
    if (!s.flow.peerSeen) {
      // Until the peer answered, frames go only on subflows that carried the OPEN; this fake
      // announces on one at a time, and on the next one when all announced ones died.
      const announced = [...s.flow.announcedOn].find((id) => this.live.has(id))
      if (announced !== undefined) return announced
      const next = [...this.live][0]
      if (next !== undefined) s.flow.announcedOn.add(next)
      return next
    }
    const ids = [...this.live]
    if (ids.length === 0) return undefined
    return ids[this.rr++ % ids.length]
  }

  /** Put what each side has to send on the wire. Returns the number of frames. */
  private produce(): number {
    let n = 0
    for (const name of ['opener', 'acceptor'] as const) {
      const s = this.side(name)
      const to = name === 'opener' ? 'acceptor' : 'opener'
      for (const frame of s.trunk.takeControl()) {
        const subflow = [...this.live][0]
        if (subflow === undefined) continue
        this.wire.push({ to, subflow, frame })
        n++
      }
      while (s.flow.hasSendable()) {
        const subflow = this.pickSubflow(s)
        if (subflow === undefined) break
        const d = s.flow.nextData(subflow)
        if (d === undefined) break
        this.sent.push({
          from: name,
          subflow,
          resend: d.resend,
          offset: d.offset,
          length: d.payload.length
        })
        this.wire.push({
          to,
          subflow,
          frame: { type: 'data', flowId: FLOW_ID, offset: d.offset, fin: d.fin, payload: d.payload }
        })
        n++
      }
    }
    return n
  }

  /** Hand every frame not on a held subflow to its receiver; each receiver then flushes its ACK. */
  private deliver(): number {
    const now = this.wire.filter((f) => !this.held.has(f.subflow))
    const later = this.wire.filter((f) => this.held.has(f.subflow))
    this.wire.length = 0
    this.wire.push(...later)
    const touched = new Set<Side>()
    for (const { to, frame } of now) {
      const s = this.side(to)
      touched.add(s)
      switch (frame.type) {
        case 'data':
          s.flow.onData(frame)
          break
        case 'ack':
          s.flow.onAck(frame)
          break
        case 'release':
          s.flow.onRelease(frame)
          break
        case 'reset':
          s.flow.onReset(frame)
          break
        case 'open':
        case 'ping':
        case 'pong':
        case 'goaway':
          assert.fail(`unexpected ${frame.type} on the wire`)
      }
      this.observe()
    }
    for (const s of touched) s.flow.flushAck()
    this.observe()
    return now.length
  }

  /**
   * Deliver the frames waiting on held `subflow` up to and including its `count`-th DATA frame
   * (control frames queued before them go too); the rest keep waiting.
   */
  deliverHeld(subflow: number, count: number): void {
    const go = new Set<InFlight>()
    let data = 0
    for (const f of this.wire) {
      if (f.subflow !== subflow || data === count) continue
      go.add(f)
      if (f.frame.type === 'data') data++
    }
    const stay = this.wire.filter((f) => !go.has(f))
    this.wire.length = 0
    this.wire.push(...go)
    this.held.delete(subflow)
    this.deliver()
    this.held.add(subflow)
    this.wire.push(...stay)
  }

  /** Move frames until nothing moves. */
  run(): void {
    for (let i = 0; ; i++) {
      assert.ok(i < 100_000, 'the pair does not settle')
      const produced = this.produce()
      const delivered = this.deliver()
      this.observe()
      if (produced === 0 && delivered === 0) return
    }
  }

  /** A subflow dies: its frames in flight are lost; both flows are told (then flush ACKs). */
  kill(subflow: number): void {
    this.live.delete(subflow)
    this.held.delete(subflow)
    const keep = this.wire.filter((f) => f.subflow !== subflow)
    this.wire.length = 0
    this.wire.push(...keep)
    for (const s of [this.opener, this.acceptor]) {
      s.flow.onSubflowLost(subflow)
      s.flow.flushAck()
    }
    this.observe()
  }

  /** Application bytes in, in chunks of `chunk` bytes. */
  write(name: 'opener' | 'acceptor', bytes: Uint8Array, chunk = 3000): void {
    for (let i = 0; i < bytes.length; i += chunk) {
      this.side(name).flow.onAppData(bytes.subarray(i, i + chunk))
    }
    this.observe()
  }

  end(name: 'opener' | 'acceptor'): void {
    this.side(name).flow.onAppEnd()
    this.observe()
  }

  assertBudgetsEmpty(): void {
    for (const s of [this.opener, this.acceptor]) {
      assert.equal(
        s.budget.used,
        0,
        `${s.flow.opener ? 'opener' : 'acceptor'} budget not back to 0`
      )
      assert.equal(s.budget.overReleased, 0)
    }
  }
}

/** A pair (4000-byte window, at most 64 000) whose acceptor has a global budget of `cap` bytes, not attached yet. */
function budgetedPair(cap: number): { p: Pair; budget: CheckedBudget } {
  const budget = new CheckedBudget(cap)
  const p = new Pair({
    windowBytes: 4000,
    maxWindowBytes: 64_000,
    attach: false,
    acceptorBudget: budget
  })
  return { p, budget }
}

function assertBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.equal(actual.length, expected.length)
  assert.ok(Buffer.from(actual).equals(Buffer.from(expected)), 'bytes differ')
}

describe('Flow: transfer and close', () => {
  it('frames ramp: the first MiB of a burst in 16 KiB frames, then full frames; again after idling', () => {
    const KiB = 1024
    const p = new Pair({
      windowBytes: 8 << 20,
      maxPayloadBytes: 64 * KiB,
      sendBufferBytes: 8 << 20
    })
    const data = patternBytes(2 << 20, 5)
    for (let o = 0; o < data.length; o += 64 * KiB)
      p.write('opener', data.subarray(o, o + 64 * KiB))
    p.run()
    assertBytes(p.acceptor.app.received, data)
    const sizes = (from: number): number[] =>
      p.sent
        .slice(from)
        .filter((f) => f.from === 'opener' && f.length > 0)
        .map((f) => f.length)
    const first = sizes(0)
    const split = first.findIndex((n) => n > 16 * KiB)
    assert.equal(
      first.slice(0, split).reduce((a, b) => a + b, 0),
      1 << 20
    )
    assert.ok(first.slice(split).every((n) => n === 64 * KiB))
    // A second burst right away goes on in full frames; after a second of silence it ramps again.
    let mark = p.sent.length
    p.write('opener', patternBytes(64 * KiB, 6))
    p.run()
    assert.deepEqual(sizes(mark), [64 * KiB])
    p.clock.advance(1500)
    mark = p.sent.length
    p.write('opener', patternBytes(64 * KiB, 7))
    p.run()
    assert.deepEqual(sizes(mark), [16 * KiB, 16 * KiB, 16 * KiB, 16 * KiB])
  })

  it('both ways, opener ends first: open → local-fin → both-fin → closed on both sides', () => {
    const p = new Pair()
    const up = patternBytes(50_000, 1)
    const down = patternBytes(30_000, 2)
    p.write('opener', up)
    p.run()
    assertBytes(p.acceptor.app.received, up)
    p.write('acceptor', down)
    p.run()
    assertBytes(p.opener.app.received, down)

    p.end('opener')
    assert.equal(p.opener.flow.state, 'local-fin')
    p.run()
    assert.equal(p.acceptor.app.count('end'), 1)
    assert.equal(p.acceptor.flow.state, 'remote-fin')
    // Half-closed: the acceptor still sends.
    const more = patternBytes(12_345, 3)
    p.write('acceptor', more)
    p.run()
    assertBytes(p.opener.app.received.subarray(down.length), more)
    assert.equal(p.opener.flow.state, 'local-fin')

    p.end('acceptor')
    p.run()
    assert.deepEqual(p.opener.states, ['open', 'local-fin', 'both-fin', 'closed'])
    assert.deepEqual(p.acceptor.states, ['connecting', 'open', 'remote-fin', 'both-fin', 'closed'])
    assert.equal(p.opener.app.count('end'), 1)
    assert.equal(p.opener.app.count('reset'), 0)
    assert.equal(p.acceptor.app.count('reset'), 0)
    assert.deepEqual(p.opener.trunk.finished, [p.opener.flow])
    assert.deepEqual(p.acceptor.trunk.finished, [p.acceptor.flow])
    assert.equal(p.opener.flow.endReason, 'both streams ended')
    assert.equal(p.opener.trunk.resets.length + p.acceptor.trunk.resets.length, 0)
    p.assertBudgetsEmpty()
  })

  it('acceptor ends first: open → remote-fin → both-fin → closed on the opener', () => {
    const p = new Pair()
    p.write('acceptor', patternBytes(5000, 4))
    p.end('acceptor')
    p.run()
    assert.equal(p.opener.flow.state, 'remote-fin')
    assert.equal(p.acceptor.flow.state, 'local-fin')
    const up = patternBytes(20_000, 5)
    p.write('opener', up)
    p.end('opener')
    p.run()
    assertBytes(p.acceptor.app.received, up)
    assert.deepEqual(p.opener.states, ['open', 'remote-fin', 'both-fin', 'closed'])
    assert.deepEqual(p.acceptor.states, ['connecting', 'open', 'local-fin', 'both-fin', 'closed'])
    p.assertBudgetsEmpty()
  })

  it('both end at once, with no data at all', () => {
    const p = new Pair()
    p.end('opener')
    p.end('acceptor')
    p.run()
    assert.equal(p.opener.flow.state, 'closed')
    assert.equal(p.acceptor.flow.state, 'closed')
    assert.equal(p.opener.app.receivedBytes, 0)
    assert.equal(p.acceptor.app.count('end'), 1)
    p.assertBudgetsEmpty()
  })

  it('data after the end and a second end are ignored', () => {
    const p = new Pair()
    p.write('opener', patternBytes(100, 1))
    p.end('opener')
    p.opener.flow.onAppData(patternBytes(100, 2))
    p.opener.flow.onAppEnd()
    p.run()
    assert.equal(p.acceptor.app.receivedBytes, 100)
    assert.equal(p.opener.flow.stats().bytesFromApp, 100)
  })

  it('invalid transitions throw: the acceptor cannot end before it is connected', () => {
    const p = new Pair({ attach: false })
    assert.throws(
      () => {
        p.acceptor.flow.onAppEnd()
      },
      (err: unknown) => err instanceof ProtocolError && err.code === PepErrorCodes.FLOW_STATE
    )
  })

  it('the application closing after both FINs is normal; before them it resets the peer', () => {
    const p = new Pair()
    p.end('opener')
    p.end('acceptor')
    p.run()
    p.opener.flow.onAppClosed()
    assert.equal(p.opener.flow.state, 'closed')

    const q = new Pair()
    q.end('opener')
    q.run()
    q.opener.flow.onAppClosed()
    assert.equal(q.opener.flow.state, 'reset')
    assert.equal(q.opener.trunk.resets[0]?.reason, ResetReason.APP_RESET)
    q.run()
    assert.equal(q.acceptor.flow.state, 'reset')
    q.assertBudgetsEmpty()
  })

  it('stats count bytes both ways and age from the trunk clock', () => {
    const p = new Pair()
    p.clock.advance(2500)
    p.write('opener', patternBytes(4000, 1))
    p.run()
    const s = p.opener.flow.stats()
    assert.equal(s.flowId, FLOW_ID)
    assert.equal(s.bytesFromApp, 4000)
    assert.equal(s.ageMs, 2500)
    assert.equal(s.sendBufferedBytes, 0)
    assert.equal(p.acceptor.flow.stats().bytesToApp, 4000)
  })
})

describe('Flow: acceptor connecting', () => {
  it("starts 'connecting', sends nothing, and becomes 'open' only on attachApp", () => {
    const p = new Pair({ attach: false })
    assert.equal(p.acceptor.flow.state, 'connecting')
    assert.equal(p.acceptor.flow.opener, false)
    assert.equal(p.acceptor.flow.openFrame, undefined)
    assert.equal(p.opener.flow.openFrame, OPEN)
    const up = patternBytes(5000, 1)
    p.write('opener', up)
    p.end('opener')
    p.run()
    assert.equal(p.acceptor.flow.state, 'connecting')
    assert.equal(p.acceptor.flow.hasSendable(), false)
    assert.equal(p.acceptor.app.receivedBytes, 0)
    // Its ACK told the opener the OPEN arrived.
    assert.ok(p.opener.flow.peerSeen)
    p.attachAcceptor()
    assert.equal(p.acceptor.flow.state, 'remote-fin')
    assertBytes(p.acceptor.app.received, up)
    assert.deepEqual(p.acceptor.states, ['connecting', 'remote-fin'])
  })

  it("goes from 'connecting' straight to 'open' on attachApp, and only then sends", () => {
    const p = new Pair({ attach: false })
    p.acceptor.flow.onAppData(patternBytes(10, 1))
    assert.equal(p.acceptor.flow.hasSendable(), false)
    p.run()
    assert.equal(p.opener.app.receivedBytes, 0)
    p.attachAcceptor()
    assert.equal(p.acceptor.flow.state, 'open')
    p.run()
    assert.equal(p.opener.app.receivedBytes, 10)
    // attachApp again changes nothing.
    p.acceptor.flow.attachApp(p.acceptor.app)
    assert.equal(p.acceptor.flow.state, 'open')
  })

  it('an ACK from the peer marks it seen; an announced flow may be known to the peer', () => {
    const p = new Pair()
    assert.equal(p.opener.flow.peerSeen, false)
    assert.ok(p.acceptor.flow.peerSeen)
    const fresh = new Pair({ attach: false })
    assert.equal(fresh.opener.flow.peerMayKnow, false)
    fresh.opener.flow.announcedOnSubflow(7)
    assert.ok(fresh.opener.flow.peerMayKnow)
    p.opener.flow.onAck({
      type: 'ack',
      flowId: p.opener.flow.id,
      received: 0,
      limit: 1,
      finReceived: false,
      epoch: 0
    })
    assert.ok(p.opener.flow.peerSeen)
  })

  it('a RESET while connecting ends it without an application', () => {
    const p = new Pair({ attach: false })
    p.opener.flow.abort(ResetReason.SHUTDOWN, 'going away')
    p.run()
    assert.equal(p.acceptor.flow.state, 'reset')
    assert.ok(p.acceptor.flow.done)
    p.assertBudgetsEmpty()
  })
})

describe('Flow: ACKs', () => {
  it('carry received, limit and finReceived', () => {
    const p = new Pair({ windowBytes: 8192 })
    const first = p.acceptor.trunk.acks[0]
    // The acceptor's first ACK goes out at once (it tells the opener the OPEN arrived).
    assert.deepEqual(first, {
      type: 'ack',
      flowId: FLOW_ID,
      received: 0,
      limit: 8192,
      finReceived: false,
      epoch: 0
    })
    p.write('opener', patternBytes(3000, 1))
    p.run()
    const last = p.acceptor.trunk.acks.at(-1)
    assert.deepEqual(last, {
      type: 'ack',
      flowId: FLOW_ID,
      received: 3000,
      limit: 3000 + 8192,
      finReceived: false,
      epoch: 0
    })
    p.end('opener')
    p.run()
    assert.deepEqual(p.acceptor.trunk.acks.at(-1), {
      type: 'ack',
      flowId: FLOW_ID,
      received: 3000,
      limit: 3000 + 8192,
      finReceived: true,
      epoch: 0
    })
  })

  it('only grow, and are not repeated when nothing changed', () => {
    const p = new Pair()
    p.write('opener', patternBytes(20_000, 1), 700)
    p.run()
    const acks = p.acceptor.trunk.acks
    for (let i = 1; i < acks.length; i++) {
      assert.ok(acks[i]!.received >= acks[i - 1]!.received)
      assert.ok(acks[i]!.limit >= acks[i - 1]!.limit)
    }
    const n = acks.length
    p.acceptor.flow.flushAck()
    p.run()
    assert.equal(p.acceptor.trunk.acks.length, n)
  })
})

describe('Flow: credit and backpressure', () => {
  it('a receiver that stops reading stops the credit, the sender, then the sending application', () => {
    const window = 4096
    const p = new Pair({ windowBytes: window, maxPayloadBytes: 1000, sendBufferBytes: 8192 })
    p.acceptor.app.writeReturns = false
    const data = patternBytes(20_000, 7)
    p.write('opener', data, 2000)
    p.run()
    // The acceptor took one chunk (its write said "full") and holds the rest of the window.
    const delivered = p.acceptor.app.receivedBytes
    assert.ok(delivered > 0 && delivered <= 1000)
    const limit = delivered + window
    assert.equal(p.acceptor.trunk.acks.at(-1)?.limit, limit)
    assert.equal(p.opener.flow.hasSendable(), false)
    assert.equal(p.opener.flow.nextData(1), undefined)
    assert.equal(p.opener.flow.nextData(2), undefined)
    const sentEnd = Math.max(
      ...p.sent.filter((s) => s.from === 'opener').map((s) => s.offset + s.length)
    )
    assert.equal(sentEnd, limit)
    assert.ok(p.opener.flow.stats().creditStalls > 0)
    assert.ok(p.acceptor.flow.stats().reorderBytes <= window)
    // The application was paused once the send buffer held sendBufferBytes.
    assert.ok(p.opener.app.paused)
    assert.equal(p.opener.app.count('pause'), 1)

    // Nothing moves while the receiver does not read: the limit stays put.
    const acks = p.acceptor.trunk.acks.length
    p.run()
    assert.equal(p.acceptor.trunk.acks.length, acks)

    // The receiver drains: credit, data, ACKs, and the sender's application resumes.
    p.acceptor.app.writeReturns = true
    p.acceptor.flow.onAppDrain()
    p.run()
    assertBytes(p.acceptor.app.received, data)
    assert.equal(p.opener.app.paused, false)
    assert.equal(p.opener.app.count('resume'), 1)
    assert.equal(p.opener.flow.stats().sendBufferedBytes, 0)
  })

  it('a stalled receiver stalls only its own flow', () => {
    // Two flows between the same two proxies: one budget per proxy.
    const openerBudget = new CheckedBudget(1 << 30)
    const acceptorBudget = new CheckedBudget(1 << 30)
    const stalled = new Pair({ windowBytes: 4096, openerBudget, acceptorBudget })
    const busy = new Pair({ windowBytes: 4096, openerBudget, acceptorBudget })
    stalled.acceptor.app.writeReturns = false
    stalled.write('opener', patternBytes(50_000, 1))
    const data = patternBytes(100_000, 2)
    busy.write('opener', data)
    busy.end('opener')
    busy.end('acceptor')
    for (let i = 0; i < 3; i++) {
      stalled.run()
      busy.run()
    }
    assertBytes(busy.acceptor.app.received, data)
    assert.equal(busy.opener.flow.state, 'closed')
    assert.equal(busy.acceptor.flow.state, 'closed')
    assert.ok(stalled.acceptor.app.receivedBytes <= 1000)
    assert.equal(stalled.opener.flow.state, 'open')
    assert.equal(stalled.opener.flow.hasSendable(), false)
    // What is left in the budgets is the stalled flow's alone.
    assert.equal(openerBudget.used, 4096 + stalled.opener.flow.stats().sendBufferedBytes)
  })

  it('the sender pauses at send_buffer_bytes unsent and resumes below half', () => {
    // Credit 5000: of 12000 bytes written, 5000 go out and 7000 stay unsent.
    const p = new Pair({ windowBytes: 5000, sendBufferBytes: 10_000 })
    p.held.add(1)
    p.write('opener', patternBytes(12_000, 1), 12_000)
    assert.ok(p.opener.app.paused)
    p.run()
    assert.equal(p.opener.flow.stats().sendBufferedBytes, 12_000)
    assert.ok(p.opener.app.paused, '7000 unsent: above half of 10000')
    const ack = (limit: number): void => {
      p.opener.flow.onAck({
        type: 'ack',
        flowId: FLOW_ID,
        received: 0,
        limit,
        finReceived: false,
        epoch: 0
      })
      p.run()
    }
    ack(7000)
    assert.ok(p.opener.app.paused, 'exactly half unsent')
    ack(7001)
    assert.equal(p.opener.app.paused, false)
    assert.deepEqual(
      p.opener.app.events.filter((e) => e === 'pause' || e === 'resume'),
      ['pause', 'resume']
    )
  })

  it('the receive window grows while reordering holds half of it, up to the maximum', () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 16_000 })
    // A gap at offset 0 while later bytes arrive: half the window held → the window doubles.
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 1000,
      fin: false,
      payload: patternBytes(2000, 3)
    })
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 0,
      fin: false,
      payload: patternBytes(1000, 4)
    })
    assert.ok(p.acceptor.flow.stats().windowBytes > 4000)
    assert.ok(p.acceptor.flow.stats().windowBytes <= 16_000)
  })

  it('the receive window grows while the application takes half of it in under two RTTs', () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 64_000 })
    p.acceptor.trunk.rttMs = 100
    // In order and taken at once: the window, not the application, limits the rate.
    for (let i = 0; i < 4; i++) {
      p.clock.advance(10)
      p.acceptor.flow.onData(dataAt(i))
    }
    assert.ok(p.acceptor.flow.stats().windowBytes >= 8000)
    // Grown past the hint (none here): reported, so that a warm trunk hints it to later flows.
    const grown = p.acceptor.trunk.grownWindows
    assert.ok(grown.length > 0, 'the doubling was reported')
    assert.equal(grown[grown.length - 1], p.acceptor.flow.stats().windowBytes)
  })

  it("the trunk's remembered window is granted once the flow delivered half its first credit (a bulk transfer), not before", () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 64_000, attach: false })
    p.acceptor.trunk.grownWindow = 48_000
    p.attachAcceptor()
    assert.equal(
      p.acceptor.flow.stats().windowBytes,
      4000,
      'a short flow reserves its first credit only'
    )
    const data = (i: number): void => {
      p.acceptor.flow.onData(dataAt(i))
    }
    data(0)
    assert.equal(p.acceptor.flow.stats().windowBytes, 4000)
    data(1)
    assert.equal(p.acceptor.flow.stats().windowBytes, 48_000)
    assert.deepEqual(
      p.acceptor.trunk.grownWindows,
      [],
      'granted from the trunk: nothing new learned'
    )
  })

  it("the trunk's remembered window never takes the last quarter of the global budget (new flows' first credit)", () => {
    const { p, budget } = budgetedPair(40_000)
    p.acceptor.trunk.grownWindow = 48_000
    p.attachAcceptor()
    for (let i = 0; i < 2; i++) {
      p.acceptor.flow.onData(dataAt(i))
    }
    const window = p.acceptor.flow.stats().windowBytes
    assert.ok(window > 4000 && window < 48_000, `window ${window}`)
    assert.ok(budget.free >= 40_000 * BUDGET_KEPT_FOR_NEW_FLOWS, `free ${budget.free}`)
  })

  it("reading from the application leaves the budget's last quarter to new flows' first credit, beyond 256 KiB unsent", () => {
    const cap = 2 << 20
    const openerBudget = new CheckedBudget(cap)
    const chunk = 16 * 1024
    // Credit 8192 and a large send buffer: only the global budget stops the reading.
    const bulk = new Pair({ windowBytes: 8192, sendBufferBytes: 8 << 20, openerBudget })
    bulk.held.add(1).add(2).add(3)
    const feed = (p: Pair, bytes: number): number => {
      let read = 0
      while (read < bytes && !p.opener.app.paused) {
        p.opener.flow.onAppData(patternBytes(chunk, read))
        read += chunk
      }
      return read
    }
    const read = feed(bulk, cap)
    assert.ok(bulk.opener.app.paused, 'the application was paused')
    assert.ok(read > UNSENT_BYTES_FROM_WHOLE_BUDGET, `read ${read}`)
    const kept = cap * BUDGET_KEPT_FOR_NEW_FLOWS
    // Paused at the chunk that reached the kept share (the old code read until nothing was free).
    assert.ok(
      openerBudget.free <= kept && openerBudget.free > kept - chunk,
      `free ${openerBudget.free}`
    )
    assert.ok(bulk.opener.trunk.budgetWaits.includes(bulk.opener.flow), 'waits for the budget')
    // A new flow is granted its first credit and still reads its first bytes from that share.
    const small = new Pair({ windowBytes: 8192, sendBufferBytes: 8 << 20, openerBudget })
    small.held.add(1).add(2).add(3)
    assert.equal(feed(small, 64 * 1024), 64 * 1024)
    assert.equal(small.opener.app.paused, false)
  })

  it('bytes in flight do not count against the kept share: a flow with its credit on the wire still reads 256 KiB unsent', () => {
    const cap = 4 << 20
    const openerBudget = new CheckedBudget(cap)
    const chunk = 16 * 1024
    // Credit 1.5 MiB each way: the opener reserves its own and puts the peer's on the wire.
    const window = 1536 * 1024
    const p = new Pair({ windowBytes: window, sendBufferBytes: 8 << 20, openerBudget })
    p.held.add(1).add(2).add(3)
    p.write('opener', patternBytes(1400 * 1024, 1), chunk)
    p.run()
    assert.equal(p.opener.flow.stats().sendBufferedBytes, 1400 * 1024)
    const kept = cap * BUDGET_KEPT_FOR_NEW_FLOWS
    assert.ok(openerBudget.freeBeyond(BUDGET_KEPT_FOR_NEW_FLOWS) < 256 * 1024)
    let unsent = 0
    while (!p.opener.app.paused && unsent < cap) {
      p.opener.flow.onAppData(patternBytes(chunk, unsent))
      unsent += chunk
    }
    // Paused at 256 KiB unsent, not at once: the 1.4 MiB in flight are the peer's credit.
    assert.ok(
      unsent >= UNSENT_BYTES_FROM_WHOLE_BUDGET && unsent < UNSENT_BYTES_FROM_WHOLE_BUDGET + chunk,
      `unsent ${unsent}`
    )
    assert.ok(openerBudget.free < kept && openerBudget.free > 0, `free ${openerBudget.free}`)
  })

  it('a window the hint raised is not reported to the trunk as grown (nothing learned)', () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 64_000, attach: false })
    p.acceptor.trunk.windowHint = 48_000
    p.attachAcceptor()
    assert.equal(p.acceptor.flow.stats().windowBytes, 48_000)
    assert.deepEqual(
      p.acceptor.trunk.grownWindows,
      [],
      'raised by the hint itself: nothing learned'
    )
  })

  it("the receive window goes to twice the rate controller's BDP at the first grant, within the maximum and the budget", () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 64_000, attach: false })
    // A warm trunk: the controller knows the path (credit hint = 2 × BDP = 48 000 bytes).
    p.acceptor.trunk.windowHint = 48_000
    p.attachAcceptor()
    assert.equal(p.acceptor.flow.stats().windowBytes, 48_000)
    // The first ACK grants the whole window, not the hello's 4000 bytes.
    const ack = p.acceptor.trunk.control.find((f) => f.type === 'ack')
    assert.ok(ack !== undefined && ack.type === 'ack')
    assert.equal(ack.limit, 48_000)
    // A hint beyond max_flow_window_bytes is cut to it.
    p.acceptor.trunk.windowHint = 1_000_000
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 0,
      fin: false,
      payload: patternBytes(1000, 1)
    })
    assert.equal(p.acceptor.flow.stats().windowBytes, 64_000)
  })

  it('the credit hint is bounded by the memory budget: the flow waits for it rather than over-granting', () => {
    const { p, budget } = budgetedPair(20_000)
    p.acceptor.trunk.windowHint = 48_000
    p.attachAcceptor()
    const ack = p.acceptor.trunk.control.find((f) => f.type === 'ack')
    assert.ok(ack !== undefined && ack.type === 'ack')
    assert.ok(ack.limit <= 20_000, `granted ${ack.limit}`)
    assert.ok(budget.used <= budget.capBytes)
    assert.ok(p.acceptor.trunk.budgetWaits.length > 0)
  })

  it("on a warm trunk the hint never takes the budget's last quarter: new flows keep their first credit", () => {
    const budget = new CheckedBudget(100_000)
    const warmFlow = (): Pair => {
      const p = new Pair({
        windowBytes: 4000,
        maxWindowBytes: 64_000,
        attach: false,
        acceptorBudget: budget
      })
      // Twice the BDP of a long fat path, far more than the first credit.
      p.acceptor.trunk.windowHint = 48_000
      p.attachAcceptor()
      return p
    }
    const limit = (p: Pair): number => {
      const acks = p.acceptor.trunk.control.filter((f) => f.type === 'ack')
      const ack = acks[acks.length - 1]
      return ack !== undefined && ack.type === 'ack' ? ack.limit : 4000
    }
    const first = warmFlow()
    const second = warmFlow()
    assert.equal(limit(first), 48_000)
    assert.ok(limit(second) > 4000 && limit(second) < 48_000, `second ${limit(second)}`)
    // Two idle flows hold three quarters: the rest is six first credits, not one.
    assert.ok(budget.free >= 100_000 * BUDGET_KEPT_FOR_NEW_FLOWS, `free ${budget.free}`)
    const third = warmFlow()
    assert.equal(limit(third), 4000, 'beyond three quarters: the first credit only')
    assert.ok(third.acceptor.trunk.budgetWaits.length > 0, 'it waits for the budget to grow')
    // Its first credit is given back as it delivers, from the last quarter too.
    third.acceptor.flow.onData(dataAt(0))
    third.acceptor.flow.flushAck()
    assert.equal(limit(third), third.acceptor.flow.stats().bytesToApp + 4000)
    for (const p of [first, second, third]) p.acceptor.flow.abort(ResetReason.APP_RESET, 'end')
    assert.equal(budget.used, 0)
  })

  it('the receive window stays when the application is slower than the window allows', () => {
    const p = new Pair({ windowBytes: 4000, maxWindowBytes: 64_000 })
    p.acceptor.trunk.rttMs = 100
    // Half the window per second at a 100 ms RTT: the window is ten times what the rate needs.
    for (let i = 0; i < 8; i++) {
      p.clock.advance(500)
      p.acceptor.flow.onData(dataAt(i))
    }
    assert.equal(p.acceptor.flow.stats().windowBytes, 4000)
  })

  it('ACKs lost with a dying subflow are sent again when it is declared dead (no credit deadlock)', () => {
    const p = new Pair({ windowBytes: 4096, maxPayloadBytes: 1000 })
    p.write('opener', patternBytes(100, 1))
    p.run()
    // The acceptor's ACKs go into a socket that is dying: the opener uses up its credit and waits.
    p.acceptor.trunk.dropControl = true
    const data = patternBytes(8192, 2)
    p.write('opener', data)
    p.run()
    assert.equal(p.acceptor.app.received.length, 100 + 4096)
    // The subflow is declared dead: a fresh ACK goes on a live one and the transfer completes.
    p.acceptor.trunk.dropControl = false
    p.kill(1)
    p.run()
    assertBytes(p.acceptor.app.received.subarray(100), data)
  })

  it('data beyond the granted credit from a misbehaving peer → RESET CREDIT_EXCEEDED', () => {
    const p = new Pair({ windowBytes: 4096 })
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 4000,
      fin: false,
      payload: patternBytes(97, 1)
    })
    assert.equal(p.acceptor.flow.state, 'reset')
    assert.equal(p.acceptor.app.count('reset'), 1)
    const reset = p.acceptor.trunk.resets[0]
    assert.equal(reset?.reason, ResetReason.CREDIT_EXCEEDED)
    assert.equal(reset.flowId, FLOW_ID)
    p.run()
    assert.equal(p.opener.flow.state, 'reset')
    assert.equal(p.opener.app.count('reset'), 1)
    p.assertBudgetsEmpty()
  })

  it('a FIN that moves from a misbehaving peer → RESET PROTOCOL_ERROR', () => {
    const p = new Pair()
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 0,
      fin: true,
      payload: patternBytes(10, 1)
    })
    p.acceptor.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 0,
      fin: true,
      payload: patternBytes(5, 1)
    })
    assert.equal(p.acceptor.flow.state, 'reset')
    assert.equal(p.acceptor.trunk.resets[0]?.reason, ResetReason.PROTOCOL_ERROR)
  })

  it('a receiver that is not reading holds many small in-order frames without a reset', () => {
    const p = new Pair({ windowBytes: 65536, maxReorderSegments: 16 })
    p.acceptor.app.writeReturns = false
    for (let i = 0; i < 40; i++) {
      p.write('opener', patternBytes(10, i))
      p.run()
    }
    assert.equal(p.acceptor.flow.state, 'open')
    assert.equal(p.acceptor.trunk.resets.length, 0)
  })
})

describe('Flow: resets', () => {
  it('abort sends a RESET with the reason and resets the application on both sides', () => {
    const p = new Pair()
    p.write('opener', patternBytes(30_000, 1))
    p.run()
    p.write('opener', patternBytes(30_000, 2))
    p.opener.flow.abort(ResetReason.IDLE_TIMEOUT, 'idle for 300 s')
    assert.equal(p.opener.flow.state, 'reset')
    assert.deepEqual(p.opener.trunk.resets, [
      {
        type: 'reset',
        flowId: FLOW_ID,
        reason: ResetReason.IDLE_TIMEOUT,
        message: 'idle for 300 s'
      }
    ])
    assert.equal(p.opener.app.count('reset'), 1)
    p.run()
    assert.equal(p.acceptor.flow.state, 'reset')
    assert.equal(p.acceptor.app.count('reset'), 1)
    assert.match(p.acceptor.flow.endReason, /IDLE_TIMEOUT/)
    assert.deepEqual(p.acceptor.trunk.finished, [p.acceptor.flow])
    // Nothing is sent back for a RESET; a second abort does nothing.
    assert.equal(p.acceptor.trunk.resets.length, 0)
    p.opener.flow.abort(ResetReason.INTERNAL, 'again')
    assert.equal(p.opener.trunk.resets.length, 1)
    assert.equal(p.opener.trunk.finished.length, 1)
    p.assertBudgetsEmpty()
  })

  it('an application error resets the peer with APP_RESET', () => {
    const p = new Pair()
    p.acceptor.flow.onAppError('ECONNRESET')
    p.run()
    assert.equal(p.acceptor.trunk.resets[0]?.reason, ResetReason.APP_RESET)
    assert.equal(p.acceptor.trunk.resets[0]?.message, 'ECONNRESET')
    assert.equal(p.opener.flow.state, 'reset')
    assert.equal(p.opener.app.count('reset'), 1)
    p.assertBudgetsEmpty()
  })

  it("a RESET from the peer resets the application and ends in 'reset'", () => {
    const p = new Pair()
    p.opener.flow.onReset({ type: 'reset', flowId: FLOW_ID, reason: 99, message: '' })
    assert.equal(p.opener.flow.state, 'reset')
    assert.equal(p.opener.app.count('reset'), 1)
    assert.match(p.opener.flow.endReason, /UNKNOWN_99/)
    assert.equal(p.opener.trunk.resets.length, 0)
  })

  it('frames after the end are ignored', () => {
    const p = new Pair()
    p.opener.flow.onReset({ type: 'reset', flowId: FLOW_ID, reason: 1, message: '' })
    p.opener.flow.onData({
      type: 'data',
      flowId: FLOW_ID,
      offset: 0,
      fin: false,
      payload: patternBytes(10, 1)
    })
    p.opener.flow.onAck({
      type: 'ack',
      flowId: FLOW_ID,
      received: 0,
      limit: 1 << 20,
      finReceived: false,
      epoch: 0
    })
    p.opener.flow.onAppData(patternBytes(10, 1))
    p.opener.flow.onAppDrain()
    p.opener.flow.onBudgetFreed()
    p.opener.flow.onSubflowLost(1)
    assert.equal(p.opener.flow.hasSendable(), false)
    assert.equal(p.opener.flow.nextData(1), undefined)
    assert.equal(p.opener.app.receivedBytes, 0)
    assert.equal(p.opener.trunk.finished.length, 1)
  })
})

describe('Flow: memory budget', () => {
  it('never goes negative and returns to 0 after many transfers end, cleanly or not', () => {
    for (const ending of ['close', 'abort-opener', 'abort-acceptor', 'peer-reset'] as const) {
      const p = new Pair({ windowBytes: 16_384 })
      p.write('opener', patternBytes(40_000, 1))
      p.write('acceptor', patternBytes(25_000, 2))
      p.run()
      p.write('opener', patternBytes(5000, 3))
      switch (ending) {
        case 'close':
          p.end('opener')
          p.end('acceptor')
          break
        case 'abort-opener':
          p.opener.flow.abort(ResetReason.SHUTDOWN, '')
          break
        case 'abort-acceptor':
          p.acceptor.flow.abort(ResetReason.CONNECT_TIMEOUT, '')
          break
        case 'peer-reset':
          p.acceptor.flow.onReset({ type: 'reset', flowId: FLOW_ID, reason: 1, message: '' })
          p.opener.flow.onReset({ type: 'reset', flowId: FLOW_ID, reason: 1, message: '' })
          break
      }
      p.run()
      assert.ok(p.opener.flow.done && p.acceptor.flow.done, ending)
      p.assertBudgetsEmpty()
    }
  })

  it('holds the granted window plus what the application wrote and nobody acknowledged', () => {
    const p = new Pair({ windowBytes: 8192 })
    assert.equal(p.opener.budget.used, 8192)
    p.acceptor.app.writeReturns = false
    p.write('opener', patternBytes(30_000, 1))
    assert.equal(p.opener.budget.used, 8192 + 30_000)
    p.run()
    assert.equal(p.opener.budget.used, 8192 + p.opener.flow.stats().sendBufferedBytes)
  })

  it('a budget that runs out pauses the application and waits for the trunk', () => {
    const p = new Pair({ windowBytes: 8192, budgetBytes: 20_000, sendBufferBytes: 1 << 20 })
    p.acceptor.app.writeReturns = false
    p.write('opener', patternBytes(15_000, 1))
    assert.ok(p.opener.app.paused)
    assert.ok(p.opener.trunk.budgetWaits.length > 0)
    p.acceptor.app.writeReturns = true
    p.acceptor.flow.onAppDrain()
    p.run()
    p.opener.flow.onBudgetFreed()
    assert.equal(p.opener.app.paused, false)
    p.end('opener')
    p.end('acceptor')
    p.run()
    assert.equal(p.opener.flow.state, 'closed')
    p.assertBudgetsEmpty()
  })
})

describe('Flow: subflow loss', () => {
  it('every subflow that carried the OPEN dies before the peer answered: everything is sent again from 0', () => {
    const p = new Pair()
    p.held.add(1)
    const data = patternBytes(6000, 9)
    p.write('opener', data)
    p.run()
    assert.equal(p.opener.flow.peerSeen, false)
    assert.ok(p.sent.every((s) => s.subflow === 1))
    assert.equal(p.acceptor.app.receivedBytes, 0)
    const firstSent = p.sent.length
    p.kill(1)
    assert.equal(p.opener.flow.announcedOn.size, 0)
    p.run()
    const again = p.sent.slice(firstSent).filter((s) => s.from === 'opener')
    assert.equal(again[0]?.offset, 0)
    assert.ok(again[0]?.resend)
    assert.ok(again.every((s) => s.subflow === 2 || p.opener.flow.peerSeen))
    assertBytes(p.acceptor.app.received, data)
    assert.equal(p.opener.flow.stats().resentBytes, 6000)
    assert.ok(p.opener.flow.peerSeen)
  })

  it('the subflow that carried the OPEN dies after some frames arrived: duplicates are dropped', () => {
    const p = new Pair({ attach: false })
    const data = patternBytes(6000, 9)
    p.held.add(1)
    p.write('opener', data.subarray(0, 3000))
    p.run()
    // Two frames arrive; the acceptor's ACK goes back on subflow 1 and is lost with it.
    p.deliverHeld(1, 2)
    p.run()
    assert.equal(p.opener.flow.peerSeen, false)
    p.kill(1)
    p.write('opener', data.subarray(3000))
    p.attachAcceptor()
    p.run()
    assertBytes(p.acceptor.app.received, data)
    assert.equal(p.acceptor.flow.stats().duplicateBytes, 2000)
    assert.equal(p.opener.flow.stats().resentBytes, 3000)
  })

  it('after the peer answered, a lost subflow re-sends only what it carried', () => {
    const p = new Pair({ windowBytes: 1 << 20, maxPayloadBytes: 1000 })
    p.write('opener', patternBytes(1000, 1))
    p.run()
    assert.ok(p.opener.flow.peerSeen)
    p.held.add(2)
    const data = patternBytes(30_000, 2)
    p.write('opener', data)
    p.run()
    const onTwo = p.sent.filter((s) => s.from === 'opener' && s.subflow === 2 && !s.resend)
    const carried = onTwo.reduce((n, s) => n + s.length, 0)
    assert.ok(carried > 0)
    const before = p.sent.length
    p.kill(2)
    p.run()
    const resent = p.sent.slice(before).filter((s) => s.resend)
    assert.equal(
      resent.reduce((n, s) => n + s.length, 0),
      carried
    )
    assert.deepEqual(
      resent.map((s) => s.offset).sort((a, b) => a - b),
      onTwo.map((s) => s.offset).sort((a, b) => a - b)
    )
    assertBytes(p.acceptor.app.received.subarray(1000), data)
  })

  it('a FIN lost with its subflow is sent again and the flow still closes', () => {
    const p = new Pair()
    p.write('opener', patternBytes(2000, 1))
    p.run()
    p.held.add(1)
    p.held.add(2)
    p.held.add(3)
    p.end('opener')
    p.end('acceptor')
    p.run()
    p.kill(1)
    p.kill(2)
    p.held.delete(3)
    p.run()
    // Subflow 3 carried some of it; the rest was re-sent on it.
    assert.equal(p.opener.flow.state, 'closed')
    assert.equal(p.acceptor.flow.state, 'closed')
    p.assertBudgetsEmpty()
  })
})

describe('Flow: giving idle credit back (RELEASE)', () => {
  /** A pair whose acceptor grants 48 000 bytes to a warm flow (its hint), and the opener sent 10 000. */
  function warm(): Pair {
    const p = new Pair({
      windowBytes: 4000,
      maxWindowBytes: 64_000,
      attach: false,
      creditReleaseIdleMs: 2000
    })
    p.acceptor.trunk.windowHint = 48_000
    p.attachAcceptor()
    p.write('opener', patternBytes(10_000, 1))
    p.run()
    return p
  }
  const releases = (s: Side): ReleaseFrame[] =>
    s.trunk.control.filter((f): f is ReleaseFrame => f.type === 'release')
  const reserved = (p: Pair): number => p.acceptor.budget.used

  it('an idle sender keeps a first window beyond what it sent; the receiver holds no more than that', () => {
    const p = warm()
    assert.equal(p.acceptor.app.receivedBytes, 10_000)
    const before = reserved(p)
    assert.ok(before >= 10_000 + 48_000 - 10_000, `reserved ${before}`)
    p.clock.advance(1999)
    p.opener.flow.tickCredit(p.clock.now())
    assert.equal(releases(p.opener).length, 0, 'not idle long enough')
    p.clock.advance(1)
    p.opener.flow.tickCredit(p.clock.now())
    assert.deepEqual(releases(p.opener), [
      { type: 'release', flowId: FLOW_ID, epoch: 1, limit: 14_000 }
    ])
    assert.equal(p.opener.flow.stats().releasedBytes, 58_000 - 14_000)
    p.run()
    // The acceptor's own first window for the reply, plus 4000 for the opener's stream.
    assert.equal(reserved(p), before - 44_000)
    assert.equal(p.acceptor.trunk.acks.at(-1)?.epoch, 1)
    assert.equal(p.acceptor.trunk.acks.at(-1)?.limit, 14_000)
    // Answered: no second RELEASE however long it stays idle below the threshold.
    p.clock.advance(5000)
    p.opener.flow.tickCredit(p.clock.now())
    assert.equal(releases(p.opener).length, 1)
    // The next burst goes: a first window at once, then the acceptor's hint again.
    const more = patternBytes(100_000, 2)
    p.write('opener', more)
    p.run()
    assert.equal(p.acceptor.app.receivedBytes, 110_000)
    assertBytes(p.acceptor.app.received.subarray(10_000), more)
    p.end('opener')
    p.end('acceptor')
    p.run()
    assert.equal(p.opener.flow.state, 'closed')
    p.assertBudgetsEmpty()
  })

  it('after a RELEASE, an ACK of the old epoch does not give the credit back to the sender', () => {
    const p = warm()
    p.held.add(1).add(2).add(3)
    p.clock.advance(2000)
    p.opener.flow.tickCredit(p.clock.now())
    // An ACK the acceptor sent before it took the RELEASE arrives late, with its large limit.
    p.opener.flow.onAck({
      type: 'ack',
      flowId: FLOW_ID,
      received: 10_000,
      limit: 58_000,
      finReceived: false,
      epoch: 0
    })
    p.write('opener', patternBytes(30_000, 3))
    p.run()
    const sentEnd = Math.max(
      ...p.sent.filter((x) => x.from === 'opener').map((x) => x.offset + x.length)
    )
    assert.equal(sentEnd, 14_000, 'only the first window kept beyond what was sent')
    p.held.clear()
    p.run()
    assert.equal(p.acceptor.app.receivedBytes, 40_000)
  })

  it('a lost RELEASE goes again after RELEASE_RESEND_MIN_MS; a copy of one taken is answered, never an error', () => {
    const p = warm()
    p.opener.trunk.dropControl = true
    p.clock.advance(2000)
    p.opener.flow.tickCredit(p.clock.now())
    p.opener.trunk.dropControl = false
    assert.equal(releases(p.opener).length, 0)
    p.clock.advance(RELEASE_RESEND_MIN_MS - 1)
    p.opener.flow.tickCredit(p.clock.now())
    assert.equal(releases(p.opener).length, 0)
    p.clock.advance(1)
    p.opener.flow.tickCredit(p.clock.now())
    assert.equal(releases(p.opener).length, 1)
    p.run()
    const acks = p.acceptor.trunk.acks.length
    assert.equal(p.acceptor.trunk.acks.at(-1)?.epoch, 1)
    // A second copy of it (it went on two subflows): one more ACK, no reset.
    p.acceptor.flow.onRelease({ type: 'release', flowId: FLOW_ID, epoch: 1, limit: 14_000 })
    p.acceptor.flow.flushAck()
    assert.equal(p.acceptor.trunk.acks.length, acks + 1)
    assert.equal(p.acceptor.flow.state, 'open')
  })

  it('once its FIN is out, a sender gives back all credit beyond it without waiting', () => {
    const p = warm()
    p.end('opener')
    p.run()
    p.opener.flow.tickCredit(p.clock.now())
    assert.deepEqual(releases(p.opener).at(-1), {
      type: 'release',
      flowId: FLOW_ID,
      epoch: 1,
      limit: 10_000
    })
    p.run()
    // All 10 000 bytes were delivered: the acceptor reserves nothing more for that stream.
    assert.equal(reserved(p), 0)
    assert.equal(p.acceptor.flow.state, 'remote-fin')
  })

  for (const [what, frame, message] of [
    ['skips an epoch', { epoch: 2, limit: 14_000 }, /RELEASE of credit epoch 2 after 0/],
    ['gives back more than was granted', { epoch: 1, limit: 58_001 }, /beyond the granted 58000/],
    ['lies below bytes received', { epoch: 1, limit: 9_999 }, /below bytes received \(10000\)/]
  ] as const) {
    it(`a RELEASE that ${what} resets the flow with PEP_ERR_FLOW_STATE`, () => {
      const p = warm()
      p.acceptor.flow.onRelease({ type: 'release', flowId: FLOW_ID, ...frame })
      assert.equal(p.acceptor.flow.state, 'reset')
      assert.deepEqual(p.acceptor.trunk.errors, [PepErrorCodes.FLOW_STATE])
      assert.match(p.acceptor.flow.endReason, message)
    })
  }

  it('an ACK of an epoch the sender never began resets the flow', () => {
    const p = warm()
    p.opener.flow.onAck({
      type: 'ack',
      flowId: FLOW_ID,
      received: 0,
      limit: 1,
      finReceived: false,
      epoch: 1
    })
    assert.equal(p.opener.flow.state, 'reset')
    assert.deepEqual(p.opener.trunk.errors, [PepErrorCodes.FLOW_STATE])
  })
})
