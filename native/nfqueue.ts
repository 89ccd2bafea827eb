/**
 * NFQUEUE reader: the edge that brings queued packets into TypeScript.
 *
 * The binding class is a constructor parameter with the real addon as default (as serialport's
 * `Poller`), so tests pass `FakeNfqueue`. The reader moves packets and
 * verdicts only; `parseIpTcp` (src/common/packet.ts) and the caller decide.
 */
import { EventEmitter } from 'node:events'

import {
  loadNative,
  toNativeError,
  type NfQueueClass,
  type NfQueueHandle,
  type NfQueueOptions,
  type NfQueuePacket,
  type NfQueueStats,
  type NfVerdict
} from './index.js'
import { NativeError } from '../src/common/errors.js'

export type { NfQueueOptions, NfQueuePacket, NfQueueStats, NfVerdict }

/** Defaults for `NfqueueReader` options. */
export const DEFAULT_NFQUEUE_OPTIONS: NfQueueOptions = {
  /**
   * Enough for an IPv4 (60) or IPv6 (40 + extension headers) header plus a full TCP header
   * (60): the reader exists to see connection set-up, not payload.
   */
  copyRange: 256,
  /** Packets the kernel may hold while we are busy: a SYN burst, not a bulk transfer. */
  maxLen: 4096,
  /** A stalled proxy must not black-hole new connections: let them through unproxied. */
  failOpen: true,
  /** 4 MiB: room for maxLen headers-only messages with their netlink overhead. */
  rcvBufBytes: 4 * 1024 * 1024
}

/** Events of `NfqueueReader`. */
export interface NfqueueReaderEvents {
  /**
   * One readiness event's worth of packets, in queue order. Every packet needs a verdict
   * (`verdict`, or `verdictBatch` for a run of ids), or the queue fills up.
   */
  packets: [packets: readonly NfQueuePacket[]]
  /** The netlink socket failed; the reader stopped reading. Close it and open a new one. */
  error: [err: NativeError]
}

/**
 * Reads one NFQUEUE queue. Emits `'packets'` batches; `'error'` if the socket fails.
 * Keeps the process alive until `close()`, as a listening server does.
 */
export class NfqueueReader extends EventEmitter<NfqueueReaderEvents> {
  /** Queue number, as in `iptables ... -j NFQUEUE --queue-num`. */
  readonly queueNum: number
  private readonly queue: NfQueueHandle
  private closed = false

  /**
   * Binds queue `queueNum` (needs CAP_NET_ADMIN).
   * @param binding the addon's NfQueue class; tests pass a fake.
   * @throws NativeError if the addon is missing or the queue cannot be bound (EPERM without
   * CAP_NET_ADMIN or when another socket holds the queue).
   */
  constructor(
    queueNum: number,
    options: Partial<NfQueueOptions> = {},
    binding: NfQueueClass = loadNative().NfQueue
  ) {
    super()
    this.queueNum = queueNum
    const merged: NfQueueOptions = { ...DEFAULT_NFQUEUE_OPTIONS, ...options }
    try {
      this.queue = new binding(
        queueNum,
        merged,
        (packets) => {
          this.emit('packets', packets)
        },
        (err) => {
          this.onQueueError(err)
        }
      )
    } catch (err) {
      throw toNativeError(err, `NFQUEUE ${queueNum}`)
    }
  }

  /** True once `close()` ran. */
  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Verdict for packet `id`; `mark` also sets its netfilter mark.
   * @throws NativeError when the reader is closed or the kernel refuses the verdict.
   */
  verdict(id: number, verdict: NfVerdict, mark?: number): void {
    this.assertOpen()
    try {
      this.queue.verdict(id, verdict, mark)
    } catch (err) {
      throw toNativeError(err, `NFQUEUE ${this.queueNum} verdict`)
    }
  }

  /**
   * Verdict for every queued packet with an id up to and including `maxId` (ids grow
   * monotonically within a queue).
   * @throws NativeError when the reader is closed or the kernel refuses the verdict.
   */
  verdictBatch(maxId: number, verdict: NfVerdict, mark?: number): void {
    this.assertOpen()
    try {
      this.queue.verdictBatch(maxId, verdict, mark)
    } catch (err) {
      throw toNativeError(err, `NFQUEUE ${this.queueNum} verdictBatch`)
    }
  }

  /** Counter snapshot. */
  stats(): NfQueueStats {
    return this.queue.stats()
  }

  /**
   * Unbinds the queue. Packets still waiting for a verdict are then handled by the kernel
   * (accepted with --queue-bypass, otherwise dropped). Idempotent.
   */
  close(): void {
    if (this.closed) {
      return
    }
    this.closed = true
    this.queue.close()
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new NativeError(`NFQUEUE ${this.queueNum} is closed`)
    }
  }

  private onQueueError(err: Error): void {
    const nativeErr = toNativeError(err, `NFQUEUE ${this.queueNum}`)
    this.emit('error', nativeErr instanceof NativeError ? nativeErr : new NativeError(err.message))
  }
}
