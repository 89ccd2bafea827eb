/**
 * In-memory stand-in for the addon's `NfQueue` class (same `NfQueueClass` shape), so code
 * that reads NFQUEUE can be tested without root, netfilter or the addon.
 *
 * `createFakeNfqueue()` returns a class to inject and the list of queues it has opened; the
 * test pushes packets with `deliver()` and reads back the verdicts it was given.
 */
import type {
  NfQueueClass,
  NfQueueHandle,
  NfQueueOptions,
  NfQueuePacket,
  NfQueueStats,
  NfVerdict
} from '../../native/index.js'

/** A verdict the fake received. */
export interface FakeVerdict {
  /** Packet id, or the highest id for a batch verdict. */
  readonly id: number
  /** The verdict given. */
  readonly verdict: NfVerdict
  /** Mark passed with the verdict, if any. */
  readonly mark: number | undefined
  /** True for verdictBatch. */
  readonly batch: boolean
}

/** Fields of a packet to deliver; `id` is assigned by the fake when absent. */
export type FakePacketInit = Partial<NfQueuePacket> & { readonly payload: Buffer }

/** One fake queue, as opened by the code under test. */
export interface FakeNfqueue extends NfQueueHandle {
  /** Queue number the code under test asked for. */
  readonly queueNum: number
  /** Options the code under test passed. */
  readonly options: NfQueueOptions
  /** Verdicts received, in order. */
  readonly verdicts: FakeVerdict[]
  /** True once close() was called. */
  readonly closed: boolean
  /** Delivers one batch to onPackets, as one readiness event would; returns the packets. */
  deliver(packets: readonly FakePacketInit[]): NfQueuePacket[]
  /** Reports a socket error through onError, as the addon does when recv fails. */
  fail(errno: number, code: string): void
  /** The next verdict call throws like the addon does for a failed syscall. */
  failNextVerdict(errno: number, code: string): void
}

/** Options of the fake class. */
export interface FakeNfqueueOptions {
  /** When set, the constructor throws like a failed nfq_create_queue (e.g. 1 = EPERM). */
  readonly openErrno?: number
}

/** What `createFakeNfqueue` returns. */
export interface FakeNfqueueBinding {
  /** Pass this where the real `NfQueue` class is expected. */
  readonly NfQueue: NfQueueClass
  /** Every queue constructed so far. */
  readonly queues: FakeNfqueue[]
}

function errnoError(syscall: string, errno: number, code: string): Error {
  return Object.assign(new Error(`${syscall} failed: fake (${code})`), { errno, code, syscall })
}

/** A fresh fake `NfQueue` class with its own queue list (no state shared between tests). */
export function createFakeNfqueue(fakeOptions: FakeNfqueueOptions = {}): FakeNfqueueBinding {
  const queues: FakeNfqueue[] = []

  class FakeQueue implements FakeNfqueue {
    readonly queueNum: number
    readonly options: NfQueueOptions
    readonly verdicts: FakeVerdict[] = []
    closed = false
    private nextId = 1
    private pendingFailure: Error | undefined
    private readonly onPackets: (packets: NfQueuePacket[]) => void
    private readonly onError: ((err: Error) => void) | undefined
    private readonly counters = { packets: 0, batches: 0 }

    constructor(
      queueNum: number,
      options: NfQueueOptions,
      onPackets: (packets: NfQueuePacket[]) => void,
      onError?: (err: Error) => void
    ) {
      if (fakeOptions.openErrno !== undefined) {
        throw errnoError('nfq_create_queue', fakeOptions.openErrno, 'EFAKE')
      }
      this.queueNum = queueNum
      this.options = options
      this.onPackets = onPackets
      this.onError = onError
      queues.push(this)
    }

    deliver(inits: readonly FakePacketInit[]): NfQueuePacket[] {
      const packets = inits.map((init): NfQueuePacket => {
        const id = init.id ?? this.nextId
        this.nextId = Math.max(this.nextId, id + 1)
        return {
          hwProtocol: 0x0800,
          mark: 0,
          indev: 0,
          outdev: 1,
          physindev: 0,
          physoutdev: 0,
          ...init,
          id,
          payload: init.payload.subarray(0, this.options.copyRange || 0xffff)
        }
      })
      this.counters.packets += packets.length
      this.counters.batches++
      this.onPackets(packets)
      return packets
    }

    fail(errno: number, code: string): void {
      this.onError?.(errnoError('recv', errno, code))
    }

    failNextVerdict(errno: number, code: string): void {
      this.pendingFailure = errnoError('nfq_set_verdict', errno, code)
    }

    verdict(id: number, verdict: NfVerdict, mark?: number): void {
      this.record({ id, verdict, mark, batch: false })
    }

    verdictBatch(maxId: number, verdict: NfVerdict, mark?: number): void {
      this.record({ id: maxId, verdict, mark, batch: true })
    }

    close(): void {
      this.closed = true
    }

    stats(): NfQueueStats {
      return {
        open: !this.closed,
        packets: this.counters.packets,
        batches: this.counters.batches,
        enobufs: 0,
        recvErrors: 0,
        callbackErrors: 0
      }
    }

    private record(v: FakeVerdict): void {
      if (this.closed) {
        throw errnoError('nfq_set_verdict (queue closed)', 9, 'EBADF')
      }
      const failure = this.pendingFailure
      if (failure !== undefined) {
        this.pendingFailure = undefined
        throw failure
      }
      this.verdicts.push(v)
    }
  }

  return { NfQueue: FakeQueue, queues }
}
