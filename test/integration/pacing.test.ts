/**
 * The rate controller reaches the kernel: two trunks on loopback with trunk.link_rate set, and
 * every subflow socket's SO_MAX_PACING_RATE (read back through TCP_INFO tcpi_max_pacing_rate)
 * is the configured rate split over the subflows; a subflow that leaves hands its share to the
 * others. Needs the native addon (npm run build:native), as the proxies do.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { getTcpInfo, socketFd } from '../../native/index.js'
import { buildConfig } from '../../src/common/config/config.js'
import { Counters } from '../../src/common/counters.js'
import { silentLogger } from '../../src/common/log/logger.js'
import { ResetReason } from '../../src/common/wire/frame.js'
import { MemoryBudget } from '../../src/core/memory-budget.js'
import { LINK_PAYLOAD_SHARE } from '../../src/core/rate-controller.js'
import { createScheduler } from '../../src/core/scheduler/index.js'
import { RATE_SAMPLE_MS } from '../../src/trunk/rate-loop.js'
import { trunkSettings } from '../../src/trunk/settings.js'
import { Trunk } from '../../src/trunk/trunk.js'
import { nativeRateProbe } from '../../src/trunk/tune.js'
import { socketPair } from '../helpers/socket-pair.js'

/** 80 Mbit/s on the wire, in bytes per second of payload (LINK_PAYLOAD_SHARE). */
const LINK = 10_000_000 * LINK_PAYLOAD_SHARE
const SUBFLOWS = 4

function trunk(role: 'tx' | 'rx', linkRate: string): Trunk {
  const settings = trunkSettings(buildConfig(new Map([['trunk.link_rate', linkRate]])))
  return new Trunk({
    role,
    trunkId: randomBytes(16),
    settings,
    scheduler: createScheduler('min-rtt'),
    budget: new MemoryBudget(64 << 20),
    counters: new Counters(),
    log: silentLogger,
    now: () => performance.now(),
    rateProbe: nativeRateProbe
  })
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, RATE_SAMPLE_MS / 2))
  }
}

const maxPacing = (s: Socket): number => getTcpInfo(socketFd(s)).maxPacingRate

describe('pacing on real sockets', () => {
  it('link_rate 80mbit over 4 subflows: SO_MAX_PACING_RATE is 19 Mbit/s (76 of payload / 4) on each, 25.3 once one left', async () => {
    const tx = trunk('tx', '80mbit')
    const rx = trunk('rx', '80mbit')
    const sockets: Socket[] = []
    const peer = { flowWindowBytes: 4 << 20, maxFrameBodyBytes: 256 << 10 }
    try {
      for (let i = 0; i < SUBFLOWS; i++) {
        const p = await socketPair()
        sockets.push(p.a, p.b)
        tx.addSubflow(p.a, peer, i, 0, new Uint8Array(0))
        rx.addSubflow(p.b, peer, i, 0, new Uint8Array(0))
      }
      const share = LINK / SUBFLOWS
      await until(() => tx.liveSubflows().every((s) => maxPacing(s.rawSocket) === share))
      for (const s of tx.liveSubflows()) {
        const info = getTcpInfo(socketFd(s.rawSocket))
        assert.equal(info.maxPacingRate, share)
        assert.ok(info.pacingRate <= share, `pacing ${info.pacingRate} above the cap`)
      }
      const state = tx.rateState()
      assert.ok(state !== undefined)
      assert.equal(state.source, 'configured')
      assert.equal(state.targetBytesPerSec, LINK)
      // One subflow goes: the three left share the rate.
      tx.liveSubflows()[0]!.close('killed by the test', undefined)
      const third = Math.floor(LINK / (SUBFLOWS - 1))
      await until(() => tx.liveSubflows().every((s) => maxPacing(s.rawSocket) === third))
      assert.equal(tx.liveSubflows().length, SUBFLOWS - 1)
    } finally {
      tx.close(ResetReason.SHUTDOWN, 'test over')
      rx.close(ResetReason.SHUTDOWN, 'test over')
      for (const s of sockets) s.destroy()
    }
  })

  it('learning: nothing measured yet, so the subflows are left unpaced (the cap lifted)', async () => {
    const tx = trunk('tx', '')
    const rx = trunk('rx', '')
    const sockets: Socket[] = []
    const peer = { flowWindowBytes: 4 << 20, maxFrameBodyBytes: 256 << 10 }
    try {
      const p = await socketPair()
      sockets.push(p.a, p.b)
      tx.addSubflow(p.a, peer, 0, 0, new Uint8Array(0))
      rx.addSubflow(p.b, peer, 0, 0, new Uint8Array(0))
      await until(() => tx.rateState()?.source !== undefined && tx.rateState()!.subflows.length > 0)
      assert.equal(tx.rateState()!.targetBytesPerSec, 0)
      // ~0 as a 64-bit unsigned: no cap.
      assert.ok(maxPacing(p.a) > 2 ** 60)
    } finally {
      tx.close(ResetReason.SHUTDOWN, 'test over')
      rx.close(ResetReason.SHUTDOWN, 'test over')
      for (const s of sockets) s.destroy()
    }
  })
})
