import assert from 'node:assert/strict'
import { test } from 'node:test'
import { downloadSeconds, type LossModel } from '../../../lab/bench/loss-model.js'

const M: LossModel = {
  bytes: 1_000_000,
  rttS: 0.6,
  loss: 0,
  rateBytesPerS: 94e6 / 8,
  subflows: 8,
  copies: 1
}

test('no loss: the request one way, the reply at the link rate, one way back', () => {
  const t = downloadSeconds(M, () => 0.5)
  const segments = Math.ceil(M.bytes / 1448)
  assert.ok(Math.abs(t - (0.6 + ((segments - 1) * 1448) / M.rateBytesPerS)) < 1e-9, `${t}`)
})

test('a lost segment waits for the SACK of the next one, a round trip after that left', () => {
  // Only the very first draw loses: segment 0 on subflow 0, followed by segment 1.
  let first = true
  const t = downloadSeconds({ ...M, loss: 0.5 }, () => {
    const r = first ? 0 : 0.9
    first = false
    return r
  })
  assert.ok(Math.abs(t - (0.3 + 1448 / M.rateBytesPerS + 0.6 + 0.3)) < 1e-9, `${t}`)
})

test('a copy on another subflow delivers what one subflow lost', () => {
  let n = 0
  // The first copy of segment 0 is lost, its second copy is not.
  const t = downloadSeconds({ ...M, loss: 0.5, copies: 2 }, () => (n++ === 0 ? 0 : 0.9))
  const clean = downloadSeconds({ ...M, copies: 2 }, () => 0.9)
  assert.equal(t, clean)
})
