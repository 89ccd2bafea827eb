/** SynTable: bounded, expiring, oldest out first; time is a parameter (no clock is read). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SynTable } from '../../../src/core/syn-table.js'
import type { Endpoint } from '../../../src/common/wire/frame.js'

const client = (port: number): Endpoint => ({ family: 4, address: '192.0.2.1', port })
const dst: Endpoint = { family: 4, address: '198.51.100.7', port: 443 }

describe('SynTable', () => {
  it('remembers a decision until it is taken, once', () => {
    const t = new SynTable(8, 1000)
    t.record(client(1), { dst, accelerated: true, seenMs: 0 })
    assert.equal(t.lookup(client(1), 10)?.accelerated, true)
    assert.equal(t.size, 1)
    assert.deepEqual(t.take(client(1), 20)?.dst, dst)
    assert.equal(t.take(client(1), 20), undefined)
    assert.equal(t.size, 0)
    // Another client, or the same address with another family, is another key.
    t.record(client(2), { dst, accelerated: false, seenMs: 0 })
    assert.equal(t.lookup({ ...client(2), family: 6 }, 0), undefined)
    assert.equal(t.lookup(client(3), 0), undefined)
  })

  it('expires entries past the TTL and counts them when purged', () => {
    const t = new SynTable(8, 1000)
    t.record(client(1), { dst, accelerated: true, seenMs: 0 })
    t.record(client(2), { dst, accelerated: true, seenMs: 500 })
    assert.ok(t.lookup(client(1), 1000) !== undefined)
    assert.equal(t.lookup(client(1), 1001), undefined)
    assert.equal(t.take(client(1), 1001), undefined)
    t.purge(1600)
    assert.equal(t.size, 0)
    assert.equal(t.expired, 1) // client 1 was taken (removed), client 2 expired
  })

  it('holds at most maxEntries: the oldest goes first, a refresh moves an entry to the back', () => {
    const t = new SynTable(3, 60_000)
    for (let p = 1; p <= 3; p++) t.record(client(p), { dst, accelerated: true, seenMs: p })
    t.record(client(1), { dst, accelerated: false, seenMs: 4 }) // refreshed: now the newest
    t.record(client(4), { dst, accelerated: true, seenMs: 5 })
    assert.equal(t.size, 3)
    assert.equal(t.evicted, 1)
    assert.equal(t.lookup(client(2), 5), undefined)
    assert.equal(t.lookup(client(1), 5)?.accelerated, false)
    assert.ok(t.lookup(client(3), 5) !== undefined)
    assert.ok(t.lookup(client(4), 5) !== undefined)
  })
})
