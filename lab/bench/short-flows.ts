/** The benchmark's short-flow rows: `./rr one-shot` downloads, direct and through a warm trunk. */

import { dist, runIn, type ImpairedTestbed } from '../testbed/impaired.js'
import { RR_PORT, startRrServer } from '../testbed/rr-pair.js'
import { TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'
import { medianOrNull } from './median.js'
import {
  parseShortSample,
  shortTandemSpec,
  SHORT_FLOW_TIMEOUT_MS,
  type ShortSample
} from './short-flow.js'
import type { ShortFlowRow } from './report.js'

/**
 * One `./rr one-shot` download of `bytes` from dst's rr server (RR_PORT) to src, the request
 * sent with `congestion`.
 */
export async function oneShot(
  bed: ImpairedTestbed,
  bytes: number,
  congestion: string
): Promise<ShortSample> {
  const r = await runIn(
    bed.topo.ns.src,
    [
      process.execPath,
      dist('tools/rr.js'),
      'one-shot',
      '--host',
      A.dst.v4,
      '--port',
      String(RR_PORT),
      '--bytes',
      String(bytes),
      '--congestion',
      congestion,
      '--timeout',
      String(SHORT_FLOW_TIMEOUT_MS / 1000)
    ],
    SHORT_FLOW_TIMEOUT_MS + 30_000
  )
  return parseShortSample(r.output)
}

/** Short flows: request/response through the warm trunk vs direct. */
export async function shortFlows(
  bed: ImpairedTestbed,
  sizes: readonly number[],
  runs: number,
  tandemCongestions: readonly string[],
  direct = true
): Promise<ShortFlowRow[]> {
  const rows: ShortFlowRow[] = []
  const server = await startRrServer(bed)
  const once = (bytes: number, congestion: string): Promise<ShortSample> =>
    oneShot(bed, bytes, congestion)
  const measure = async (system: string, congestion: string): Promise<void> => {
    // One untimed exchange first, for every system alike: the ARP entries are fresh, and a
    // proxy's first flow runs code V8 has not compiled yet (10-20 ms once after a start; a
    // proxy in service has long paid it). What is timed is the steady state.
    await once(1_000, congestion)
    for (const bytes of sizes) {
      const samples: ShortSample[] = []
      for (let i = 0; i < runs; i++) samples.push(await once(bytes, congestion))
      rows.push({
        system,
        rttMs: bed.link.rttMs,
        lossPercent: bed.link.lossPercent,
        bytes,
        ttfbMs: medianOrNull(samples.map((s) => s.ttfbMs)),
        completionMs: medianOrNull(samples.map((s) => s.completionMs)),
        timedOut: samples.filter((s) => s.completionMs === null).length,
        runs,
        timeoutMs: SHORT_FLOW_TIMEOUT_MS
      })
    }
  }
  try {
    if (direct) {
      await measure('direct-cubic', 'cubic')
      await measure('direct-bbr', 'bbr')
    }
    for (const spec of tandemCongestions) {
      const { congestion, redundantFirstBytes } = shortTandemSpec(spec)
      const conf = bed.config(`short-${spec}`, {
        'tx_proxy.subflows': '8',
        'trunk.congestion': congestion,
        'interception.transparent': 'false',
        ...(redundantFirstBytes === undefined
          ? {}
          : { 'trunk.redundant_first_bytes': redundantFirstBytes })
      })
      const { tx, rx } = await bed.startProxies(conf, 8)
      try {
        await new Promise((r) => setTimeout(r, 2000)) // a warm trunk: connected and idle
        await measure(`tandem-8-${spec} (warm trunk)`, 'cubic')
      } finally {
        await tx.stop()
        await rx.stop()
      }
    }
  } finally {
    await server.stop()
  }
  return rows
}
