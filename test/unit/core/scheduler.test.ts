/**
 * Schedulers: one contract suite run against every scheduler `createScheduler` knows (bufferutil's
 * `use(native)` / `use(fallback)`), then what each one promises on its own.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import {
  SCHEDULER_NAMES,
  createScheduler,
  type SubflowView
} from '../../../src/core/scheduler/index.js'
import { copyPath } from '../../../src/core/redundancy.js'
import { FakeClock } from '../../helpers/fake-clock.js'

/** A view; `unsentBytes` is `queuedBytes` (nothing held in the kernel) unless given. */
function view(id: number, over: Partial<SubflowView> = {}): SubflowView {
  const v = {
    id,
    writable: true,
    queuedBytes: 0,
    srttMs: 10,
    pathId: 0,
    rateBytesPerSec: 0,
    weight: 1,
    ...over
  }
  return { ...v, unsentBytes: over.unsentBytes ?? v.queuedBytes }
}

/** Subflow views as the trunk passes them: unique ids, sorted by id. */
const viewsArb: fc.Arbitrary<SubflowView[]> = fc
  .uniqueArray(
    fc.record(
      {
        id: fc.nat(64),
        writable: fc.boolean(),
        queuedBytes: fc.oneof(fc.constant(0), fc.nat(1 << 20)),
        unsentBytes: fc.oneof(fc.constant(0), fc.nat(1 << 21)),
        srttMs: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 2000, noNaN: true })),
        pathId: fc.nat(3),
        rateBytesPerSec: fc.oneof(fc.constant(0), fc.nat(20_000_000)),
        weight: fc.integer({ min: 1, max: 5 })
      },
      { noNullPrototype: true }
    ),
    { selector: (v) => v.id, maxLength: 8 }
  )
  .map((views) => [...views].sort((a, b) => a.id - b.id))

describe('scheduler contract', () => {
  assert.deepEqual([...SCHEDULER_NAMES].sort(), [
    'first-free',
    'min-rtt',
    'redundant',
    'round-robin',
    'weighted'
  ])

  for (const name of SCHEDULER_NAMES) {
    describe(name, () => {
      const clock = new FakeClock()

      it('is created by name and carries it', () => {
        assert.equal(createScheduler(name).name, name)
        assert.notEqual(createScheduler(name), createScheduler(name))
      })

      it('returns undefined for an empty list', () => {
        assert.equal(createScheduler(name).pick(1000, [], clock.now()), undefined)
      })

      it('returns undefined when no subflow is writable', () => {
        const s = createScheduler(name)
        const views = [view(1, { writable: false }), view(2, { writable: false })]
        for (let i = 0; i < 5; i++) assert.equal(s.pick(1000, views, clock.now()), undefined)
      })

      it('picks the only writable subflow, whatever its queue or RTT', () => {
        const s = createScheduler(name)
        const views = [
          view(1, { writable: false, queuedBytes: 0, srttMs: 1 }),
          view(2, { queuedBytes: 1 << 20, srttMs: 900 }),
          view(3, { writable: false, queuedBytes: 0, srttMs: 0 })
        ]
        for (let i = 0; i < 10; i++) {
          assert.equal(s.pick(1000, views, clock.now()), 2)
          clock.advance(7)
        }
      })

      it('never picks a non-writable or absent subflow, and always picks when one is writable', () => {
        const s = createScheduler(name)
        fc.assert(
          fc.property(fc.array(viewsArb, { minLength: 1, maxLength: 20 }), (rounds) => {
            for (const views of rounds) {
              clock.advance(1)
              const id = s.pick(16384, views, clock.now())
              if (views.some((v) => v.writable)) {
                assert.ok(
                  views.some((v) => v.id === id && v.writable),
                  `picked ${String(id)}`
                )
              } else {
                assert.equal(id, undefined)
              }
            }
          }),
          { numRuns: 300 }
        )
      })

      it('handles subflows joining and leaving between calls', () => {
        const s = createScheduler(name)
        let views = [view(1), view(2), view(3)]
        const seen = new Set<number>()
        for (let i = 0; i < 3; i++) seen.add(s.pick(1000, views, clock.now())!)
        // 2 and 3 leave, 7 joins.
        views = [view(1), view(7, { srttMs: 5 })]
        for (let i = 0; i < 6; i++) {
          const id = s.pick(1000, views, clock.now())
          assert.ok(id === 1 || id === 7)
        }
        // Everything leaves, then one comes back.
        assert.equal(s.pick(1000, [], clock.now()), undefined)
        assert.equal(s.pick(1000, [view(9)], clock.now()), 9)
      })
    })
  }
})

describe('round-robin', () => {
  it('rotates evenly over writable subflows', () => {
    const s = createScheduler('round-robin')
    const views = [view(1), view(2), view(5), view(8)]
    const counts = new Map<number, number>()
    for (let i = 0; i < 4000; i++) {
      const id = s.pick(1000, views, 0)!
      counts.set(id, (counts.get(id) ?? 0) + 1)
    }
    assert.deepEqual(
      [...counts.entries()].sort((a, b) => a[0] - b[0]),
      [
        [1, 1000],
        [2, 1000],
        [5, 1000],
        [8, 1000]
      ]
    )
  })

  it('visits in id order and skips non-writable ones', () => {
    const s = createScheduler('round-robin')
    const views = [view(1), view(2, { writable: false }), view(3)]
    assert.deepEqual(
      Array.from({ length: 6 }, () => s.pick(1000, views, 0)),
      [1, 3, 1, 3, 1, 3]
    )
  })

  it('ignores queue lengths and RTTs', () => {
    const s = createScheduler('round-robin')
    const views = [
      view(1, { queuedBytes: 1 << 20, srttMs: 999 }),
      view(2, { queuedBytes: 0, srttMs: 1 })
    ]
    assert.deepEqual(
      Array.from({ length: 4 }, () => s.pick(1000, views, 0)),
      [1, 2, 1, 2]
    )
  })

  it('keeps its place when the subflow it picked last leaves, and takes in new ones', () => {
    const s = createScheduler('round-robin')
    assert.equal(s.pick(1000, [view(1), view(2), view(3)], 0), 1)
    assert.equal(s.pick(1000, [view(1), view(2), view(3)], 0), 2)
    // 2 left: the next after it is 3.
    assert.equal(s.pick(1000, [view(1), view(3)], 0), 3)
    // 4 joined: it comes after 3, then back to 1.
    assert.equal(s.pick(1000, [view(1), view(3), view(4)], 0), 4)
    assert.equal(s.pick(1000, [view(1), view(3), view(4)], 0), 1)
  })
})

describe('first-free', () => {
  it('picks the writable subflow with the least queued', () => {
    const s = createScheduler('first-free')
    const views = [
      view(1, { queuedBytes: 5000 }),
      view(2, { queuedBytes: 100 }),
      view(3, { queuedBytes: 0, writable: false }),
      view(4, { queuedBytes: 2000 })
    ]
    assert.equal(s.pick(1000, views, 0), 2)
    assert.equal(s.pick(1000, views, 0), 2)
  })

  it('breaks ties by the lower RTT', () => {
    const s = createScheduler('first-free')
    const views = [
      view(1, { queuedBytes: 0, srttMs: 80 }),
      view(2, { queuedBytes: 0, srttMs: 20 }),
      view(3, { queuedBytes: 0, srttMs: 50 })
    ]
    assert.equal(s.pick(1000, views, 0), 2)
  })

  it('prefers an empty queue over a low RTT', () => {
    const s = createScheduler('first-free')
    assert.equal(
      s.pick(
        1000,
        [view(1, { queuedBytes: 1, srttMs: 1 }), view(2, { queuedBytes: 0, srttMs: 500 })],
        0
      ),
      2
    )
  })

  it('spreads a burst over the subflows whose windows have room, lowest RTT first', () => {
    const s = createScheduler('first-free')
    // 1 has 30 KB in the kernel it cannot send yet; 2 and 3 can send at once.
    const views = [
      view(1, { srttMs: 5, unsentBytes: 30_000 }),
      view(2, { srttMs: 40 }),
      view(3, { srttMs: 20 })
    ]
    assert.equal(s.pick(1000, views, 0), 3)
  })

  it('always returns a minimum of unsentBytes among writable subflows', () => {
    fc.assert(
      fc.property(viewsArb, (views) => {
        const id = createScheduler('first-free').pick(1000, views, 0)
        const writable = views.filter((v) => v.writable)
        if (writable.length === 0) return
        const picked = writable.find((v) => v.id === id)!
        const least = Math.min(...writable.map((v) => v.unsentBytes))
        assert.equal(picked.unsentBytes, least)
        const tied = writable.filter((v) => v.unsentBytes === least)
        assert.equal(picked.srttMs, Math.min(...tied.map((v) => v.srttMs)))
      }),
      { numRuns: 500 }
    )
  })
})

describe('min-rtt', () => {
  it('picks the lowest smoothed RTT', () => {
    const s = createScheduler('min-rtt')
    const views = [view(1, { srttMs: 40 }), view(2, { srttMs: 12.5 }), view(3, { srttMs: 300 })]
    assert.equal(s.pick(1000, views, 0), 2)
  })

  it('passes over the lowest RTT while its window is full (bytes wait in the kernel)', () => {
    const s = createScheduler('min-rtt')
    const views = [view(1, { srttMs: 40 }), view(2, { srttMs: 12.5, unsentBytes: 50_000 })]
    assert.equal(s.pick(1000, views, 0), 1)
    // When no window has room, the lowest RTT again.
    assert.equal(s.pick(1000, [{ ...views[0]!, unsentBytes: 1 }, views[1]!], 0), 2)
  })

  it('spills to the next lowest when the fastest is not writable', () => {
    const s = createScheduler('min-rtt')
    const views = [
      view(1, { srttMs: 40 }),
      view(2, { srttMs: 10, writable: false }),
      view(3, { srttMs: 30 })
    ]
    assert.equal(s.pick(1000, views, 0), 3)
    const none = views.map((v) => ({ ...v, writable: false }))
    assert.equal(s.pick(1000, none, 0), undefined)
  })

  it('breaks RTT ties by the shorter queue', () => {
    const s = createScheduler('min-rtt')
    const views = [
      view(1, { srttMs: 20, queuedBytes: 900 }),
      view(2, { srttMs: 20, queuedBytes: 10 })
    ]
    assert.equal(s.pick(1000, views, 0), 2)
  })

  it('always returns a minimum of srttMs among writable subflows with room (or all writable)', () => {
    fc.assert(
      fc.property(viewsArb, (views) => {
        const id = createScheduler('min-rtt').pick(1000, views, 0)
        const writable = views.filter((v) => v.writable)
        if (writable.length === 0) return
        const room = writable.filter((v) => v.unsentBytes === 0)
        const candidates = room.length > 0 ? room : writable
        const picked = candidates.find((v) => v.id === id)!
        assert.equal(picked.srttMs, Math.min(...candidates.map((v) => v.srttMs)))
      }),
      { numRuns: 500 }
    )
  })
})

describe('weighted', () => {
  it('gives the next frame to the subflow that drains soonest at its measured rate', () => {
    const s = createScheduler('weighted')
    const fast = view(1, { queuedBytes: 100_000, rateBytesPerSec: 10_000_000 })
    const slow = view(2, { queuedBytes: 50_000, rateBytesPerSec: 1_000_000 })
    assert.equal(s.pick(16_384, [fast, slow], 0), 1)
    assert.equal(s.pick(16_384, [fast, { ...slow, weight: 20 }], 0), 2)
  })
})

describe('redundant', () => {
  it('copies each frame onto another path when there is one', () => {
    const s = createScheduler('redundant')
    const subs = [
      view(1, { pathId: 0 }),
      view(2, { pathId: 0, queuedBytes: 10 }),
      view(3, { pathId: 1, queuedBytes: 500 })
    ]
    const primary = s.pick(1000, subs, 0)
    assert.equal(primary, 1)
    assert.equal(s.copiesEveryFrame, true)
    assert.equal(copyPath(1, subs)?.id, 3)
    assert.equal(copyPath(1, [view(1), view(2)])?.id, 2)
    assert.equal(copyPath(1, [view(1)]), undefined)
    // Fewest bytes waiting to leave, the kernel's included, wins among the other path's subflows.
    const ranked = [
      view(1, { pathId: 0 }),
      view(2, { pathId: 1, queuedBytes: 0, unsentBytes: 90_000 }),
      view(3, { pathId: 1, queuedBytes: 500 }),
      view(4, { pathId: 1, writable: false })
    ]
    assert.equal(copyPath(1, ranked)?.id, 3)
  })
})
