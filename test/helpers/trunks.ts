/**
 * A tx and an rx trunk in this process, joined by subflows on loopback socket pairs: for tests
 * of what a trunk does to its subflow sockets (pacing, congestion control) without proxies.
 */
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'

import { buildConfig } from '../../src/common/config/config.js'
import { Counters } from '../../src/common/counters.js'
import { silentLogger } from '../../src/common/log/logger.js'
import { ResetReason } from '../../src/common/wire/frame.js'
import { MemoryBudget } from '../../src/core/memory-budget.js'
import { createScheduler } from '../../src/core/scheduler/index.js'
import { trunkSettings } from '../../src/trunk/settings.js'
import { Trunk, type TrunkOptions } from '../../src/trunk/trunk.js'
import { socketPair } from './socket-pair.js'

/** What the peer announced in its hello, as the tests' trunks see it. */
const PEER = { flowWindowBytes: 4 << 20, maxFrameBodyBytes: 256 << 10 }

/** Options for `loopbackTrunks`. */
export interface LoopbackTrunksOptions {
  /** Subflows joining the two trunks. */
  readonly subflows: number
  /** Configuration keys of both trunks (`trunk.link_rate` ...); the defaults otherwise. */
  readonly config?: ReadonlyMap<string, string>
  /** More options of the tx trunk (a rate probe, a long-path tuner). */
  readonly tx?: Partial<TrunkOptions>
  /** More options of the rx trunk. */
  readonly rx?: Partial<TrunkOptions>
  /** Tunes tx's end of each subflow before it joins (what the runtime's tuner does). */
  readonly tuneTx?: (socket: Socket) => void
}

/** The two trunks, the subflows' tx ends, and `close` (trunks and sockets). */
export interface LoopbackTrunks {
  readonly tx: Trunk
  readonly rx: Trunk
  /** tx's end of each subflow, in join order. */
  readonly txSockets: readonly Socket[]
  readonly close: () => void
}

/** A tx and an rx trunk joined by `opts.subflows` loopback subflows. */
export async function loopbackTrunks(opts: LoopbackTrunksOptions): Promise<LoopbackTrunks> {
  const settings = trunkSettings(buildConfig(new Map(opts.config ?? [])))
  const make = (role: 'tx' | 'rx', extra: Partial<TrunkOptions> = {}): Trunk =>
    new Trunk({
      role,
      trunkId: randomBytes(16),
      settings,
      scheduler: createScheduler('min-rtt'),
      budget: new MemoryBudget(64 << 20),
      counters: new Counters(),
      log: silentLogger,
      now: () => performance.now(),
      ...extra
    })
  const tx = make('tx', opts.tx)
  const rx = make('rx', opts.rx)
  const sockets: Socket[] = []
  const txSockets: Socket[] = []
  const close = (): void => {
    tx.close(ResetReason.SHUTDOWN, 'test over')
    rx.close(ResetReason.SHUTDOWN, 'test over')
    for (const s of sockets) s.destroy()
  }
  try {
    for (let i = 0; i < opts.subflows; i++) {
      const p = await socketPair()
      sockets.push(p.a, p.b)
      txSockets.push(p.a)
      opts.tuneTx?.(p.a)
      tx.addSubflow(p.a, PEER, i, 0, new Uint8Array(0))
      rx.addSubflow(p.b, PEER, i, 0, new Uint8Array(0))
    }
  } catch (err) {
    close()
    throw err
  }
  return { tx, rx, txSockets, close }
}
