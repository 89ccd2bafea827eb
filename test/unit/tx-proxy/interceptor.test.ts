/**
 * Interceptor against the fake NFQUEUE: each SYN gets its verdict (marked when accelerated),
 * retransmitted SYNs keep their first decision, the policy, trunk health and its limits decide, anything
 * that is not a plain SYN passes, and a queue error is counted (fail-open).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { NfqueueReader } from '../../../native/nfqueue.js'
import { Counters } from '../../../src/common/counters.js'
import { silentLogger } from '../../../src/common/log/logger.js'
import { parsePortList, parseSubnetList, type Policy } from '../../../src/common/policy.js'
import { Interceptor } from '../../../src/tx-proxy/interceptor.js'
import { FakeClock } from '../../helpers/fake-clock.js'
import { createFakeNfqueue } from '../../helpers/fake-nfqueue.js'

const SYN = 0x02
const ACK = 0x10
const MARK = 0x7a

/** An IPv4 TCP segment 192.0.2.1:`srcPort` -> 198.51.100.7:`dstPort` (checksums left zero). */
function segment(srcPort: number, dstPort: number, flags = SYN): Buffer {
  const b = Buffer.alloc(40)
  b[0] = 0x45
  b.writeUInt16BE(40, 2)
  b.writeUInt16BE(0x4000, 6)
  b[8] = 64
  b[9] = 6
  b.set([192, 0, 2, 1], 12)
  b.set([198, 51, 100, 7], 16)
  b.writeUInt16BE(srcPort, 20)
  b.writeUInt16BE(dstPort, 22)
  b[32] = 5 << 4
  b[33] = flags
  b.writeUInt16BE(64240, 34)
  return b
}

function setup(policy: Partial<Policy> = {}): {
  interceptor: Interceptor
  queue: ReturnType<typeof createFakeNfqueue>['queues'][number]
  counters: Counters
  clock: FakeClock
  health: { up: boolean; full: boolean }
} {
  const fake = createFakeNfqueue()
  const reader = new NfqueueReader(3, {}, fake.NfQueue)
  const counters = new Counters()
  const clock = new FakeClock(1000)
  const health = { up: true, full: false }
  const interceptor = new Interceptor(reader, {
    policy: { ports: [], subnets: [], excludePorts: [], excludeSubnets: [], ...policy },
    mark: MARK,
    synTableSize: 16,
    synTableTtlMs: 5000,
    healthy: () => health.up,
    atCapacity: () => health.full,
    now: () => clock.now(),
    counters,
    log: silentLogger
  })
  const queue = fake.queues[0]!
  return { interceptor, queue, counters, clock, health }
}

describe('Interceptor (fake NFQUEUE)', () => {
  it('marks an accepted SYN and remembers it for the accepted connection', () => {
    const { interceptor, queue, counters } = setup()
    const [p] = queue.deliver([{ payload: segment(40000, 443) }])
    assert.deepEqual(queue.verdicts.at(-1), {
      id: p!.id,
      verdict: 'accept',
      mark: MARK,
      batch: false
    })
    assert.equal(counters.get('syns_accelerated'), 1)
    assert.equal(counters.get('syns_seen'), 1)
    const seen = interceptor.take({ family: 4, address: '192.0.2.1', port: 40000 })
    assert.deepEqual(seen?.dst, { family: 4, address: '198.51.100.7', port: 443 })
    assert.equal(seen?.accelerated, true)
    assert.equal(interceptor.latency().samples, 1)
  })

  it('lets a SYN the policy excludes, or any SYN while the trunk is down, pass unmarked', () => {
    const { queue, counters, health } = setup({
      excludePorts: parsePortList('interception.exclude_ports', '22'),
      excludeSubnets: parseSubnetList('interception.exclude_subnets', '203.0.113.0/24')
    })
    queue.deliver([{ payload: segment(40001, 22) }])
    assert.equal(queue.verdicts.at(-1)?.mark, undefined)
    assert.equal(counters.get('syns_bypassed_policy'), 1)
    health.up = false
    queue.deliver([{ payload: segment(40002, 443) }])
    assert.equal(queue.verdicts.at(-1)?.verdict, 'accept')
    assert.equal(queue.verdicts.at(-1)?.mark, undefined)
    assert.equal(counters.get('syns_bypassed_trunk_down'), 1)
  })

  it('lets a SYN pass unmarked while the trunk is at a limit (it would reset the connection)', () => {
    const { queue, counters, health } = setup()
    health.full = true
    queue.deliver([{ payload: segment(40004, 443) }])
    assert.equal(queue.verdicts.at(-1)?.verdict, 'accept')
    assert.equal(queue.verdicts.at(-1)?.mark, undefined)
    assert.equal(counters.get('syns_bypassed_capacity'), 1)
    health.full = false
    queue.deliver([{ payload: segment(40005, 443) }])
    assert.equal(queue.verdicts.at(-1)?.mark, MARK)
  })

  it('a retransmitted SYN keeps the first decision, even after the trunk went down', () => {
    const { queue, counters, health, clock } = setup()
    queue.deliver([{ payload: segment(40003, 443) }])
    health.up = false
    clock.advance(1000)
    queue.deliver([{ payload: segment(40003, 443) }])
    assert.equal(queue.verdicts.at(-1)?.mark, MARK)
    assert.equal(counters.get('syns_retransmitted'), 1)
  })

  it('SIGHUP policy applies to new SYNs only', () => {
    const { interceptor, queue, counters } = setup()
    interceptor.setPolicy({
      ports: [],
      subnets: [],
      excludePorts: parsePortList('interception.exclude_ports', '443'),
      excludeSubnets: []
    })
    queue.deliver([{ payload: segment(40004, 443) }])
    assert.equal(queue.verdicts.at(-1)?.mark, undefined)
    assert.equal(counters.get('syns_bypassed_policy'), 1)
  })

  it('passes anything that is not a plain SYN, garbage included, and counts it', () => {
    const { queue, counters } = setup()
    queue.deliver([
      { payload: segment(40005, 443, SYN | ACK) },
      { payload: Buffer.from([1, 2, 3]) }
    ])
    assert.equal(queue.verdicts.length, 2)
    assert.ok(queue.verdicts.every((v) => v.verdict === 'accept' && v.mark === undefined))
    assert.equal(counters.get('nfqueue_not_syn'), 2)
    assert.equal(counters.get('syns_seen'), 0)
  })

  it('a queue error is counted; close() closes the queue (with --queue-bypass SYNs then pass)', () => {
    const { interceptor, queue, counters } = setup()
    queue.fail(105, 'ENOBUFS')
    assert.equal(counters.get('nfqueue_errors'), 1)
    interceptor.close()
    assert.equal(queue.closed, true)
  })
})
