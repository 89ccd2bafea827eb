/**
 * trunk.congestion = auto on a long path: a trunk whose min RTT reaches LONG_PATH_RTT_MS hands
 * each subflow once to its long-path tuner, which puts the socket on tandem (where the kernel
 * offers it: scripts/tandem-cc.sh register); a shorter trunk never does. Real loopback sockets;
 * the probe reports the RTT of the path under test (loopback has none), the rest is the
 * kernel's (TCP_CONGESTION read back).
 */
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'

import { getCongestion, getTcpInfo, socketFd, type TcpInfo } from '../../native/index.js'
import { LONG_PATH_RTT_MS } from '../../src/common/congestion.js'
import { buildConfig } from '../../src/common/config/config.js'
import { silentLogger } from '../../src/common/log/logger.js'
import { LINK_PAYLOAD_SHARE } from '../../src/core/rate-controller.js'
import { readCongestionSystem, SubflowCongestion } from '../../src/trunk/congestion.js'
import { RATE_SAMPLE_MS, type RateProbe } from '../../src/trunk/rate-loop.js'
import { createLongPathTuner, createSubflowTuner, nativeRateProbe } from '../../src/trunk/tune.js'
import { loopbackTrunks, type LoopbackTrunks } from '../helpers/trunks.js'

const SUBFLOWS = 3

/** The kernel's figures, but the RTT of a path of `rttMs`. */
function probeAt(rttMs: number): RateProbe {
  return {
    read: (s) => ({ ...nativeRateProbe.read(s), minRttMs: rttMs, srttMs: rttMs }),
    setPacing: (s, rate) => {
      nativeRateProbe.setPacing(s, rate)
    }
  }
}

async function trunkAt(
  rttMs: number,
  tuneLongPath: (socket: Socket) => void,
  tuneTx?: (socket: Socket) => void
): Promise<LoopbackTrunks> {
  return loopbackTrunks({
    subflows: SUBFLOWS,
    tx: { rateProbe: probeAt(rttMs), tuneLongPath },
    rx: { rateProbe: probeAt(rttMs) },
    ...(tuneTx === undefined ? {} : { tuneTx })
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('auto on a long path', () => {
  it(`a trunk from ${LONG_PATH_RTT_MS} ms hands each subflow once to the long-path tuner; below it never`, async () => {
    for (const [rtt, expected] of [
      [600, SUBFLOWS],
      [LONG_PATH_RTT_MS, SUBFLOWS],
      [LONG_PATH_RTT_MS - 1, 0]
    ] as const) {
      const seen: Socket[] = []
      const t = await trunkAt(rtt, (s) => seen.push(s))
      try {
        await sleep(RATE_SAMPLE_MS * 6)
        assert.equal(seen.length, expected, `at ${rtt} ms`)
        assert.equal(new Set(seen).size, seen.length, 'each subflow once')
      } finally {
        t.close()
      }
    }
  })

  const system = readCongestionSystem()
  const canTandem = system.available?.includes('tandem') === true && system.netAdmin
  it(
    'with tandem registered, the subflows start on bbr and a 600 ms trunk moves them to tandem',
    { skip: canTandem ? false : 'tandem is not registered here (scripts/tandem-cc.sh register)' },
    async () => {
      const congestion = new SubflowCongestion('auto', silentLogger, system, {
        tandemPaces: true
      })
      assert.equal(congestion.current.longPath, 'tandem')
      const tune = createSubflowTuner(buildConfig(new Map()), silentLogger, congestion)
      const t = await trunkAt(600, createLongPathTuner(congestion), tune)
      try {
        const cc = (): string[] =>
          t.tx.liveSubflows().map((s) => getCongestion(socketFd(s.rawSocket)))
        const before = cc()
        assert.ok(
          before.every((c) => c === 'bbr' || c === system.systemDefault),
          before.join()
        )
        await sleep(RATE_SAMPLE_MS * 6)
        assert.deepEqual(cc(), Array<string>(SUBFLOWS).fill('tandem'))
      } finally {
        t.close()
      }
    }
  )

  it(
    "tandem subflows pace at the trunk's SO_MAX_PACING_RATE: their ACKs do not undo it",
    { skip: canTandem ? false : 'tandem is not registered here (scripts/tandem-cc.sh register)' },
    async () => {
      // link_rate 80mbit over the subflows, PINGs every 50 ms so that ACKs keep coming. On
      // loopback twice the window per RTT (what tandem paced at before the trunk's rate won)
      // is far above the share, so a cc that ignores the cap shows at once.
      const config = new Map([
        ['trunk.link_rate', '80mbit'],
        ['trunk.congestion', 'tandem'],
        ['trunk.ping_interval_ms', '50']
      ])
      const congestion = new SubflowCongestion('tandem', silentLogger, system, {
        tandemPaces: true
      })
      const tune = createSubflowTuner(buildConfig(config), silentLogger, congestion)
      const t = await loopbackTrunks({
        subflows: SUBFLOWS,
        config,
        tx: { rateProbe: nativeRateProbe },
        rx: { rateProbe: nativeRateProbe },
        tuneTx: tune
      })
      try {
        const share = Math.floor((10_000_000 * LINK_PAYLOAD_SHARE) / SUBFLOWS)
        const info = (): TcpInfo[] =>
          t.tx.liveSubflows().map((s) => getTcpInfo(socketFd(s.rawSocket)))
        const deadline = performance.now() + 5000
        while (!info().every((i) => i.maxPacingRate === share)) {
          assert.ok(performance.now() < deadline, 'the trunk never set its pace')
          await sleep(RATE_SAMPLE_MS / 2)
        }
        const acked = info().map((i) => i.bytesAcked)
        await sleep(RATE_SAMPLE_MS * 3) // PINGs and their ACKs: tandem's cong_control runs
        const after = info()
        assert.deepEqual(
          t.tx.liveSubflows().map((s) => getCongestion(socketFd(s.rawSocket))),
          Array<string>(SUBFLOWS).fill('tandem')
        )
        after.forEach((i, n) => {
          assert.ok(i.bytesAcked > (acked[n] ?? 0), `subflow ${n}: no ACK came`)
          assert.equal(
            i.pacingRate,
            share,
            `subflow ${n}: paced at ${i.pacingRate}, not the trunk's ${share}`
          )
        })
      } finally {
        t.close()
      }
    }
  )
})
