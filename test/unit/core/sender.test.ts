/**
 * Sender: the pure decision on plain subflow views. A round serves every ready flow in turn,
 * sees a written subflow's fresh view, copies redundant frames onto the other path (waiting a
 * bounded time for a slot there), and asks a gate before each frame.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RedundancyPolicy } from '../../../src/core/redundancy.js'
import { createScheduler, type SubflowView } from '../../../src/core/scheduler/index.js'
import type { DataToSend, SubflowId } from '../../../src/core/send-buffer.js'
import {
  REDUNDANT_WAIT_MS,
  Sender,
  type SendGate,
  type SenderFlow,
  type SendIo
} from '../../../src/core/sender.js'

/** A flow with `frames` frames of 1000 bytes to send. */
class FakeFlow implements SenderFlow {
  peerSeen = true
  sentBytes = 0
  constructor(
    readonly name: string,
    public frames: number
  ) {}
  hasSendable(): boolean {
    return this.frames > 0
  }
  nextData(): DataToSend | undefined {
    if (this.frames === 0) return undefined
    this.frames--
    const d = { offset: this.sentBytes, payload: new Uint8Array(1000), fin: false, resend: false }
    this.sentBytes += 1000
    return d
  }
}

function view(id: number, over: Partial<SubflowView> = {}): SubflowView {
  return {
    id,
    writable: true,
    queuedBytes: 0,
    unsentBytes: 0,
    srttMs: 10,
    pathId: 0,
    rateBytesPerSec: 0,
    weight: 1,
    ...over
  }
}

/** Subflows with a queue limit: each write grows the subflow's queue, as a socket's would. */
class FakeSubflows implements SendIo<FakeFlow> {
  readonly sent: { flow: string; on: SubflowId; copy: SubflowId | undefined }[] = []
  readonly announced: string[] = []
  readonly views = new Map<SubflowId, SubflowView>()
  constructor(
    list: SubflowView[],
    private readonly limit = 3000
  ) {
    for (const v of list) this.views.set(v.id, v)
  }
  snapshot(): SubflowView[] {
    return [...this.views.values()]
  }
  announce(flow: FakeFlow): void {
    this.announced.push(flow.name)
  }
  transmit(flow: FakeFlow, d: DataToSend, on: SubflowId, copy: SubflowId | undefined): void {
    this.sent.push({ flow: flow.name, on, copy })
    for (const id of copy === undefined ? [on] : [on, copy]) {
      const v = this.views.get(id)!
      const q = v.queuedBytes + d.payload.length
      this.views.set(id, { ...v, queuedBytes: q, unsentBytes: q, writable: q < this.limit })
    }
  }
  view(id: SubflowId): SubflowView | undefined {
    return this.views.get(id)
  }
}

function sender(opts: { everyFrame?: boolean; gate?: SendGate } = {}): Sender<FakeFlow> {
  return new Sender<FakeFlow>({
    scheduler: createScheduler('first-free'),
    redundancy: new RedundancyPolicy<FakeFlow>({
      everyFrame: opts.everyFrame ?? false,
      ports: [],
      firstBytes: 0
    }),
    maxPayloadBytes: 1000,
    gate: opts.gate
  })
}

describe('Sender', () => {
  it('serves ready flows in turn until no subflow takes more, on the fresh view of each write', () => {
    const s = sender()
    const io = new FakeSubflows([view(1), view(2)])
    const a = new FakeFlow('a', 10)
    const b = new FakeFlow('b', 10)
    s.markReady(a)
    s.markReady(b)
    const r = s.round(io.snapshot(), 0, io)
    assert.equal(r.retryInMs, undefined)
    // Two subflows of 3000 bytes each: six frames, alternating flows, spread by queue length.
    assert.deepEqual(
      io.sent.map((x) => x.flow),
      ['a', 'b', 'a', 'b', 'a', 'b']
    )
    assert.deepEqual(
      io.sent.map((x) => x.on),
      [1, 2, 1, 2, 1, 2]
    )
    // A drained subflow: the next round goes on.
    io.views.set(1, view(1))
    s.round(io.snapshot(), 1, io)
    assert.equal(io.sent.length, 9)
  })

  it('drops finished flows from the ready set and announces a flow the peer has not seen', () => {
    const s = sender()
    const io = new FakeSubflows([view(1)], 1_000_000)
    const f = new FakeFlow('f', 2)
    f.peerSeen = false
    s.markReady(f)
    s.round(io.snapshot(), 0, io)
    assert.equal(io.sent.length, 2)
    assert.ok(io.announced.includes('f'))
    assert.equal(s.readyCount, 0)
  })

  it('a redundant frame goes with its copy on the other path; without a slot there it waits, then goes alone', () => {
    const s = sender({ everyFrame: true })
    const io = new FakeSubflows([view(1, { pathId: 0 }), view(2, { pathId: 1 })], 1_000_000)
    const f = new FakeFlow('f', 3)
    s.markReady(f)
    s.round(io.snapshot(), 0, io)
    assert.deepEqual(io.sent[0], { flow: 'f', on: 1, copy: 2 })
    // The other path takes nothing: the flow waits (a retry is asked for) ...
    const g = new FakeFlow('g', 1)
    s.markReady(g)
    io.views.set(2, view(2, { pathId: 1, writable: false }))
    const before = io.sent.length
    s.markReady(f)
    f.frames = 1
    const r = s.round(io.snapshot(), 100, io)
    assert.equal(io.sent.length, before)
    assert.equal(r.retryInMs !== undefined && r.retryInMs > REDUNDANT_WAIT_MS, true)
    // ... but not past REDUNDANT_WAIT_MS: then it goes alone on the live path.
    s.round(io.snapshot(), 100 + REDUNDANT_WAIT_MS, io)
    assert.deepEqual(
      io.sent.slice(before).map((x) => x.copy),
      [undefined, undefined]
    )
  })

  it('asks the gate before each frame and tells it what left', () => {
    let allowance = 2500
    const sentBytes: number[] = []
    const gate: SendGate = {
      admits: (bytes) => allowance >= bytes,
      onSent: (bytes) => {
        allowance -= bytes
        sentBytes.push(bytes)
      },
      retryInMs: () => 7
    }
    const s = sender({ gate })
    const io = new FakeSubflows([view(1)], 1_000_000)
    s.markReady(new FakeFlow('f', 10))
    const r = s.round(io.snapshot(), 0, io)
    assert.deepEqual(sentBytes, [1000, 1000])
    assert.equal(r.retryInMs, 7)
  })
})
