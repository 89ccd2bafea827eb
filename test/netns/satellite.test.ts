/**
 * A GEO satellite hop (root only): the five-namespace testbed with the lab's link emulator in
 * the wan box (600 ms RTT, delay in user space through NFQUEUE; 1 % random loss each way with
 * iptables statistic rules; 100 Mbit/s), the pair in Tandem's default configuration (no
 * trunk.congestion: auto), and one flow of 16 MiB from src to dst through it. The test asserts
 * only that dst got the same bytes (sha256); the rate it got, and the congestion control the
 * subflows ran, are printed as diagnostics: speed is measured by the bench, not asserted here.
 * Namespaces are named `tsat<pid>-N` and deleted on every exit path (after(), and at exit).
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, test } from 'node:test'

import { queryStatus } from '../../src/app/control.js'
import { nativeAddonPath } from '../../native/index.js'
import {
  createImpairedTestbed,
  dist,
  runIn,
  startReceive,
  type NsProcess
} from '../../lab/testbed/impaired.js'
import { netnsUnavailableReason } from '../helpers/netns.js'
import { TOPOLOGY_ADDRESSES as A } from '../helpers/topology.js'

const LINK = { rttMs: 600, lossPercent: 1, rateMbit: 100 } as const
const BYTES = 16 * 1024 * 1024
const SUBFLOWS = 8
/** The transfer's own deadline, s: far above what it takes, well inside the test's bound. */
const TRANSFER_TIMEOUT_S = 40

function skipReason(): string | undefined {
  return (
    netnsUnavailableReason() ??
    (existsSync(nativeAddonPath()) ? undefined : 'native addon not built (npm run build:native)')
  )
}

describe('a 600 ms, 1 % link', { skip: skipReason(), timeout: 90_000 }, () => {
  test('carries a flow through the pair intact, and prints the rate', async (t) => {
    // createImpairedTestbed removes what it built when it fails; from here on the hook does.
    const bed = await createImpairedTestbed('tsat', LINK)
    const procs: NsProcess[] = []
    t.after(async () => {
      // The receiver stops before its namespace goes.
      for (const p of procs) await p.stop()
      await bed.destroy()
    })
    // Tandem as deployed by the book: no congestion setting (static mode on the testbed).
    const conf = bed.config('sat', {
      'tx_proxy.subflows': String(SUBFLOWS),
      'interception.transparent': 'false'
    })
    const recv = await startReceive(bed, 5201)
    procs.push(recv)
    await bed.startProxies(conf, SUBFLOWS)

    const started = performance.now()
    const sent = await runIn(
      bed.topo.ns.src,
      [
        process.execPath,
        dist('tools/stream.js'),
        A.dst.v4,
        '5201',
        '--bytes',
        String(BYTES),
        '--json',
        '--quiet',
        '--timeout',
        String(TRANSFER_TIMEOUT_S)
      ],
      (TRANSFER_TIMEOUT_S + 10) * 1000
    )
    const wallS = (performance.now() - started) / 1000
    assert.equal(sent.code, 0, `stream failed:\n${sent.output}`)
    const line = (await recv.waitFor(/^\{.*\}$/m, 10_000))[0]
    const got = JSON.parse(line) as {
      receivedBytes: number
      receivedSha256: string
      goodputMbitPerSec?: number
    }
    const report = JSON.parse(sent.output.trim().split('\n').pop() ?? '{}') as {
      sentSha256: string
      goodputMbitPerSec: number
    }

    const status = await queryStatus(bed.controlSocket('sat', 'tx')).catch(() => undefined)
    const trunk = status?.trunks[0]
    const sentBytes = trunk?.subflows.reduce((a, f) => a + (f.tcpBytesSent ?? 0), 0) ?? 0
    const retrans = trunk?.subflows.reduce((a, f) => a + (f.tcpBytesRetrans ?? 0), 0) ?? 0
    t.diagnostic(
      `600 ms RTT, 1 % loss each way, 100 Mbit/s: ${BYTES} bytes in ${wallS.toFixed(1)} s wall ` +
        `(connect included), ${report.goodputMbitPerSec.toFixed(1)} Mbit/s as the sender counts it` +
        (got.goodputMbitPerSec !== undefined
          ? `, ${got.goodputMbitPerSec.toFixed(1)} Mbit/s at dst`
          : '')
    )
    t.diagnostic(
      `congestion control: ${trunk?.congestion?.label ?? '?'}; subflows ran ` +
        `${[...new Set(trunk?.subflows.map((f) => f.congestion ?? '?'))].join(', ')}; ` +
        `retransmitted ${sentBytes > 0 ? ((100 * retrans) / sentBytes).toFixed(1) : '?'} % of the subflows' bytes`
    )
    assert.equal(got.receivedBytes, BYTES)
    assert.equal(got.receivedSha256, report.sentSha256)
  })
})
