import assert from 'node:assert/strict'
import { test } from 'node:test'
import { median, medianOrNull } from '../../../lab/bench/median.js'
import { parseShortSample, shortTandemSpec } from '../../../lab/bench/short-flow.js'

test('a finished download gives its first-byte and completion times', () => {
  const out =
    'noise\n{"bytes":1000,"connectMs":2.1,"ttfbMs":611.7,"lastByteMs":611.8,"completionMs":612.0}\n'
  assert.deepEqual(parseShortSample(out), { ttfbMs: 611.7, completionMs: 612.0 })
})

test('a download past its deadline keeps its first byte and has no completion', () => {
  const out = '{"bytes":4000,"timedOut":true,"timeoutMs":60000,"connectMs":603,"ttfbMs":1210}'
  assert.deepEqual(parseShortSample(out), { ttfbMs: 1210, completionMs: null })
  const none = '{"bytes":0,"timedOut":true,"timeoutMs":60000,"connectMs":null,"ttfbMs":null}'
  assert.deepEqual(parseShortSample(none), { ttfbMs: null, completionMs: null })
})

test('a killed client (no output, or half a line) is a failed run, not an exception', () => {
  assert.deepEqual(parseShortSample(''), { ttfbMs: null, completionMs: null })
  assert.deepEqual(parseShortSample('{"bytes":10'), { ttfbMs: null, completionMs: null })
})

test('runs that did not finish rank above every finished one in the median', () => {
  assert.equal(medianOrNull([3, 1, 2]), 2)
  assert.equal(medianOrNull([null, 1, 2]), 2)
  assert.equal(medianOrNull([null, null, 1]), null)
  assert.equal(medianOrNull([4, 2]), 3)
  assert.equal(medianOrNull([null, 2]), null)
  assert.equal(medianOrNull([]), null)
  assert.ok(Number.isNaN(median([])))
  assert.equal(median([5, 1, 3, 2]), 2.5)
})

test('a short-flow Tandem row names its congestion control and, with -rN, its redundant head', () => {
  assert.deepEqual(shortTandemSpec('bbr'), { congestion: 'bbr' })
  assert.deepEqual(shortTandemSpec('tandem-r1m'), {
    congestion: 'tandem',
    redundantFirstBytes: '1MiB'
  })
  assert.deepEqual(shortTandemSpec('cubic-r256k'), {
    congestion: 'cubic',
    redundantFirstBytes: '256KiB'
  })
  assert.throws(() => shortTandemSpec('bbr-x1'), /expected CC or CC-rN\{k,m\}/)
})
