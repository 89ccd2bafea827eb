/**
 * The rate controller reaches the kernel: two trunks on loopback with trunk.link_rate set, and
 * every subflow socket's SO_MAX_PACING_RATE (read back through TCP_INFO tcpi_max_pacing_rate)
 * is the configured rate split over the subflows; a subflow that leaves hands its share to the
 * others. Unset, a trunk that knows only its RTT paces its first flight. Needs the native addon
 * (npm run build:native), as the proxies do.
 */
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { getTcpInfo, socketFd } from '../../native/index.js'
import {
  FIRST_FLIGHT_RTT_SHARE,
  LINK_PAYLOAD_SHARE,
  STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES
} from '../../src/core/rate-controller.js'
import { RATE_SAMPLE_MS } from '../../src/trunk/rate-loop.js'
import { nativeRateProbe } from '../../src/trunk/tune.js'
import { loopbackTrunks } from '../helpers/trunks.js'

/** 80 Mbit/s on the wire, in bytes per second of payload (LINK_PAYLOAD_SHARE). */
const LINK = 10_000_000 * LINK_PAYLOAD_SHARE
const SUBFLOWS = 4

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
    const { tx, close } = await loopbackTrunks({
      subflows: SUBFLOWS,
      config: new Map([['trunk.link_rate', '80mbit']]),
      tx: { rateProbe: nativeRateProbe },
      rx: { rateProbe: nativeRateProbe }
    })
    try {
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
      close()
    }
  })

  it("learning: no rate measured yet, only the RTT: the subflows are paced at the first flight's pace (the floor within a quarter of the RTT)", async () => {
    const { tx, txSockets, close } = await loopbackTrunks({
      subflows: 1,
      tx: { rateProbe: nativeRateProbe },
      rx: { rateProbe: nativeRateProbe }
    })
    try {
      // ~0 as a 64-bit unsigned is no cap: wait until the trunk set one.
      await until(() => tx.rateState() !== undefined && maxPacing(txSockets[0]!) < 2 ** 60)
      const state = tx.rateState()!
      assert.ok(state.minRttMs > 0, 'the RTT is known')
      const firstFlight =
        (STARTUP_MIN_INFLIGHT_PER_SUBFLOW_BYTES * 1000) /
        (Math.max(1, state.minRttMs) * FIRST_FLIGHT_RTT_SHARE)
      assert.equal(state.targetBytesPerSec, Math.round(firstFlight))
      assert.ok(maxPacing(txSockets[0]!) > 0)
    } finally {
      close()
    }
  })
})
