/** Figure 3 of the path benchmark: request/response latency over two lossy paths. */
import { setTimeout as sleep } from 'node:timers/promises'

import { queryStatus } from '../../../src/app/control.js'
import { dist, runIn, type NsProcess } from '../../testbed/ns-process.js'
import {
  TWO_PATH_ADDRESSES,
  TWO_PATH_TX_PORT,
  type PathName,
  type TwoPathTestbed
} from '../../testbed/two-path.js'
import { linkText, percentile, round, SUBFLOWS_PER_PATH, errorText } from './measure.js'
import type { LatencyResult, LatencyRun, PathLinks } from './results.js'

const LATENCY_LINKS: PathLinks = {
  a: { delayMs: 30, lossPercent: 1 },
  b: { delayMs: 40, lossPercent: 1 }
}
const REQUEST_BYTES = 100
const REPLY_BYTES = 1024
const WARMUP_EXCHANGES = 5

/** `./rr persistent`'s result line. */
interface RrClientReport {
  readonly ok: boolean
  readonly latenciesMs?: readonly number[]
  readonly error?: string
}

export async function latencyFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<LatencyResult> {
  const links = LATENCY_LINKS
  const exchanges = quick ? 100 : 400
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    requestBytes: REQUEST_BYTES,
    replyBytes: REPLY_BYTES,
    exchanges,
    warmup: WARMUP_EXCHANGES
  }
  log(`latency: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${exchanges} exchanges`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const plan: readonly { name: string; paths: readonly PathName[]; scheduler: string }[] = [
    { name: 'Tandem, path a only', paths: ['a'], scheduler: 'first-free' },
    { name: 'Tandem, path b only', paths: ['b'], scheduler: 'first-free' },
    { name: 'Tandem, both, redundant', paths: ['a', 'b'], scheduler: 'redundant' }
  ]
  const runs: LatencyRun[] = []
  let port = 5620
  try {
    for (const c of plan) {
      runs.push(await latencyRun(bed, c, port++, exchanges, congestion))
      const r = runs[runs.length - 1]
      log(
        `latency: ${c.name}: p50 ${r?.p50Ms ?? '-'} p99 ${r?.p99Ms ?? '-'} max ${r?.maxMs ?? '-'} ms` +
          (r?.error !== undefined ? ` (${r.error})` : '')
      )
    }
  } catch (err) {
    return { ...base, runs, bestSinglePath: null, redundantVsBestP99: null, error: errorText(err) }
  } finally {
    for (const e of emulators) await e.stop()
  }
  const singles = runs.filter((r) => r.paths.length === 1 && r.p99Ms !== null)
  const best = singles.sort((x, y) => (x.p99Ms ?? Infinity) - (y.p99Ms ?? Infinity))[0]
  const red = runs.find((r) => r.scheduler === 'redundant')?.p99Ms ?? null
  return {
    ...base,
    runs,
    bestSinglePath: best?.name ?? null,
    redundantVsBestP99:
      best?.p99Ms === undefined || best.p99Ms === null || red === null || best.p99Ms <= 0
        ? null
        : round(red / best.p99Ms, 2)
  }
}

/** One configuration of figure 3: proxies, `./rr server` in dst, `./rr persistent` in src. */
async function latencyRun(
  bed: TwoPathTestbed,
  c: { name: string; paths: readonly PathName[]; scheduler: string },
  port: number,
  exchanges: number,
  congestion: string
): Promise<LatencyRun> {
  const conf = bed.config(`rr-${port}`, {
    destinationPort: port,
    paths: c.paths,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    overrides: { 'trunk.scheduler': c.scheduler, 'trunk.congestion': congestion }
  })
  const procs: NsProcess[] = []
  const empty = {
    ...c,
    exchanges: 0,
    p50Ms: null,
    p90Ms: null,
    p99Ms: null,
    maxMs: null,
    meanMs: null,
    framesSent: null,
    framesCopied: null
  }
  try {
    const { tx, rx } = await bed.startProxies(conf, c.paths.length * SUBFLOWS_PER_PATH)
    procs.push(rx, tx)
    const server = bed.start(
      bed.ns.dst,
      [dist('tools/rr.js'), 'server', '--port', String(port)],
      'rr-server'
    )
    procs.push(server)
    await server.waitFor(/listening on/)
    // A warm trunk: every subflow up and idle for a moment before the connection opens.
    await sleep(1000)
    const framesBefore = (await queryStatus(conf.txControl)).counters
    const r = await runIn(
      bed.ns.src,
      [
        dist('tools/rr.js'),
        'persistent',
        '--host',
        TWO_PATH_ADDRESSES.a.local,
        '--port',
        String(TWO_PATH_TX_PORT),
        '--count',
        String(exchanges),
        '--warmup',
        String(WARMUP_EXCHANGES),
        '--request-bytes',
        String(REQUEST_BYTES),
        '--reply-bytes',
        String(REPLY_BYTES)
      ],
      exchanges * 3000 + 30_000
    )
    const line = r.output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .pop()
    const j = line === undefined ? undefined : (JSON.parse(line) as RrClientReport)
    if (j?.ok !== true || j.latenciesMs === undefined) {
      throw new Error(j?.error ?? `rr persistent exited ${r.code}: ${r.output.slice(-200)}`)
    }
    const after = (await queryStatus(conf.txControl)).counters
    const sorted = [...j.latenciesMs].sort((x, y) => x - y)
    const at = (p: number): number | null => {
      const v = percentile(sorted, p)
      return v === null ? null : round(v)
    }
    return {
      ...c,
      exchanges: sorted.length,
      p50Ms: at(50),
      p90Ms: at(90),
      p99Ms: at(99),
      maxMs: at(100),
      meanMs: sorted.length > 0 ? round(sorted.reduce((a, x) => a + x, 0) / sorted.length) : null,
      framesSent: (after.frames_sent ?? 0) - (framesBefore.frames_sent ?? 0),
      framesCopied: (after.frames_duplicated ?? 0) - (framesBefore.frames_duplicated ?? 0)
    }
  } catch (err) {
    return { ...empty, error: errorText(err) }
  } finally {
    for (const p of procs.reverse()) await p.stop()
  }
}
