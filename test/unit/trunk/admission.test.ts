/**
 * Admission: a new flow is refused at max_flows and when its first credit does not fit the
 * budget; `atCapacity` says so before a SYN is taken, also for a while after the peer refused a
 * flow for a limit (tx_proxy then lets SYNs pass directly instead of resetting them).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Counters } from '../../../src/common/counters.js'
import { silentLogger } from '../../../src/common/log/logger.js'
import { ResetReason } from '../../../src/common/wire/frame.js'
import { MemoryBudget } from '../../../src/core/memory-budget.js'
import { Admission } from '../../../src/trunk/admission.js'
import { PEER_FULL_HOLD_MS, type TrunkSettings } from '../../../src/trunk/settings.js'
import { FakeClock } from '../../helpers/fake-clock.js'

const WINDOW = 1000

function admission(
  maxFlows: number,
  budgetBytes: number
): {
  a: Admission
  budget: MemoryBudget
  clock: FakeClock
} {
  const budget = new MemoryBudget(budgetBytes)
  const clock = new FakeClock(5000)
  const settings = { maxFlows, flowWindowBytes: WINDOW } as unknown as TrunkSettings
  const a = new Admission({
    settings,
    budget,
    counters: new Counters(),
    log: silentLogger,
    now: () => clock.now()
  })
  return { a, budget, clock }
}

describe('Admission', () => {
  it('refuses at max_flows and when a first credit does not fit the budget, and says so before', () => {
    const { a, budget } = admission(2, 3 * WINDOW)
    assert.equal(a.limitRefusal(1), undefined)
    assert.equal(a.atCapacity(1), false)
    assert.equal(a.limitRefusal(2)?.reason, ResetReason.FLOW_LIMIT)
    assert.equal(a.atCapacity(2), true)
    budget.reserve(2.5 * WINDOW)
    assert.equal(a.limitRefusal(0)?.reason, ResetReason.MEMORY_LIMIT)
    assert.equal(a.atCapacity(0), true)
  })

  it("a peer's refusal for a limit marks the trunk full for PEER_FULL_HOLD_MS; other resets do not", () => {
    const { a, clock } = admission(10, 10 * WINDOW)
    a.notePeerReset(ResetReason.CONNECT_REFUSED)
    assert.equal(a.atCapacity(0), false, 'a refused destination is not a full peer')
    a.notePeerReset(ResetReason.MEMORY_LIMIT)
    assert.equal(a.atCapacity(0), true)
    clock.advance(PEER_FULL_HOLD_MS - 1)
    assert.equal(a.atCapacity(0), true)
    clock.advance(1)
    assert.equal(a.atCapacity(0), false)
    a.notePeerReset(ResetReason.FLOW_LIMIT)
    assert.equal(a.atCapacity(0), true)
  })
})
