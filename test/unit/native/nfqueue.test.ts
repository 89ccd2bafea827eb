import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { NativeError } from '../../../src/common/errors.js'
import {
  DEFAULT_NFQUEUE_OPTIONS,
  NfqueueReader,
  type NfQueuePacket
} from '../../../native/nfqueue.js'
import { createFakeNfqueue } from '../../helpers/fake-nfqueue.js'

const EPERM = 1
const ENOBUFS = 105

describe('NfqueueReader (fake binding)', () => {
  test('opens the queue with defaults merged with the given options', () => {
    const fake = createFakeNfqueue()
    const reader = new NfqueueReader(7, { copyRange: 128 }, fake.NfQueue)
    const queue = fake.queues[0]!
    assert.equal(queue.queueNum, 7)
    assert.deepEqual(queue.options, { ...DEFAULT_NFQUEUE_OPTIONS, copyRange: 128 })
    reader.close()
  })

  test('emits each batch and forwards verdicts with marks', () => {
    const fake = createFakeNfqueue()
    const reader = new NfqueueReader(0, {}, fake.NfQueue)
    const batches: (readonly NfQueuePacket[])[] = []
    reader.on('packets', (packets) => {
      batches.push(packets)
      for (const p of packets) {
        reader.verdict(p.id, p.id % 2 === 0 ? 'drop' : 'accept', p.id % 2 === 0 ? undefined : 0x10)
      }
    })
    const queue = fake.queues[0]!
    queue.deliver([{ payload: Buffer.from([0x45]) }, { payload: Buffer.from([0x45]) }])
    queue.deliver([{ payload: Buffer.from([0x60]) }])
    assert.deepEqual(
      batches.map((b) => b.map((p) => p.id)),
      [[1, 2], [3]]
    )
    assert.deepEqual(queue.verdicts, [
      { id: 1, verdict: 'accept', mark: 0x10, batch: false },
      { id: 2, verdict: 'drop', mark: undefined, batch: false },
      { id: 3, verdict: 'accept', mark: 0x10, batch: false }
    ])
    reader.verdictBatch(3, 'repeat')
    assert.deepEqual(queue.verdicts.at(-1), {
      id: 3,
      verdict: 'repeat',
      mark: undefined,
      batch: true
    })
    assert.equal(reader.stats().packets, 3)
    reader.close()
  })

  test('a failed open is a NativeError with the errno', () => {
    const fake = createFakeNfqueue({ openErrno: EPERM })
    assert.throws(
      () => new NfqueueReader(1, {}, fake.NfQueue),
      (err: unknown) => err instanceof NativeError && err.errno === EPERM
    )
  })

  test('a failed verdict is a NativeError with the errno', () => {
    const fake = createFakeNfqueue()
    const reader = new NfqueueReader(1, {}, fake.NfQueue)
    fake.queues[0]!.failNextVerdict(ENOBUFS, 'ENOBUFS')
    assert.throws(
      () => {
        reader.verdict(1, 'accept')
      },
      (err: unknown) => err instanceof NativeError && err.errno === ENOBUFS
    )
    reader.close()
  })

  test('socket errors arrive as NativeError events', () => {
    const fake = createFakeNfqueue()
    const reader = new NfqueueReader(1, {}, fake.NfQueue)
    const errors: NativeError[] = []
    reader.on('error', (err) => errors.push(err))
    fake.queues[0]!.fail(ENOBUFS, 'ENOBUFS')
    assert.equal(errors.length, 1)
    assert.equal(errors[0]!.errno, ENOBUFS)
    reader.close()
  })

  test('close is idempotent and later verdicts throw NativeError', () => {
    const fake = createFakeNfqueue()
    const reader = new NfqueueReader(1, {}, fake.NfQueue)
    reader.close()
    reader.close()
    assert.equal(reader.isClosed, true)
    assert.equal(fake.queues[0]!.closed, true)
    assert.throws(() => {
      reader.verdict(1, 'accept')
    }, NativeError)
    assert.throws(() => {
      reader.verdictBatch(1, 'accept')
    }, NativeError)
  })
})
