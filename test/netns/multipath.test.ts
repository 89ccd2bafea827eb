/**
 * Issue 5, several paths (two-path testbed): redundant sending over a lossy path that is then
 * cut delivers every byte exactly once while rx_proxy drops the copies; two paths of different
 * rates add up for one bulk flow (weighted and first-free schedulers, against the faster path
 * alone, side by side); and the time a bulk flow needs to get its rate back after a subflow is
 * killed (the benchmark's recovery figure). Figures are printed as `# ...` lines.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'

import { queryStatus, type ProxyStatus } from '../../src/app/control.js'
import {
  createTwoPathTestbed,
  TWO_PATH_RX_PORT,
  type TwoPathConfigOptions,
  type TwoPathTestbed
} from '../../lab/testbed/two-path.js'
import {
  rateMbit,
  readReceiver,
  readStream,
  slopeMbit,
  type DuplexReport
} from '../../lab/testbed/delivery.js'
import {
  FaultLedger,
  linkDown,
  pollUntil,
  silentDrop,
  sleepUntil,
  ssKill,
  subflowSockets,
  wallMs
} from '../../lab/testbed/faults.js'
import { netnsUnavailableReason } from '../helpers/netns.js'
import type { NsProcess } from '../helpers/ns-process.js'

const MiB = 1024 * 1024
const unavailable = netnsUnavailableReason()
if (unavailable !== undefined) throw new Error(`netns tests cannot run: ${unavailable}`)

/** Rates of the two shaped paths, Mbit/s, and their one-way delay, ms. */
const RATE_A_MBIT = 30
// The issue's example is 30 + 10 Mbit/s, where 1.3x sits within 2.5 % of the ideal 1.33x and
// measurement noise decides; 30 + 20 (ideal 1.67x) tests the same property with a margin.
const RATE_B_MBIT = 20
const SHAPED_DELAY_MS = 10

/** The middle value of `xs`. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

/** The single report of a receiver that must have seen exactly one connection. */
async function finalReport(receiver: NsProcess): Promise<DuplexReport> {
  await pollUntil('the receiver report', () => readReceiver(receiver).reports.length > 0, 15_000)
  const got = readReceiver(receiver)
  assert.equal(got.accepted, 1, 'the destination saw exactly one connection')
  return got.reports[0]!
}

describe('multipath: two paths between the boxes', () => {
  let tb: TwoPathTestbed | undefined
  const faults = new FaultLedger()

  before(async () => {
    tb = await createTwoPathTestbed({ prefix: 'tmp' })
  })
  afterEach(async () => {
    await faults.restoreAll()
    await tb?.stopAll()
  })
  after(async () => {
    await faults.restoreAll()
    await tb?.destroy()
  })

  /** Starts proxies, receiver and a stream for one run; resolves with what they did. */
  const run = async (
    name: string,
    options: TwoPathConfigOptions,
    streamArgs: readonly string[],
    during?: (ctx: {
      conf: ReturnType<TwoPathTestbed['config']>
      receiver: NsProcess
    }) => Promise<void>
  ): Promise<{
    report: DuplexReport
    sent: ReturnType<typeof readStream>
    txStatus: ProxyStatus
    rxStatus: ProxyStatus
  }> => {
    const bed = tb!
    const conf = bed.config(name, options)
    const subflows = (options.paths ?? ['a', 'b']).length * (options.subflowsPerPath ?? 2)
    const { tx, rx } = await bed.startProxies(conf, subflows)
    const receiver = await bed.startReceiver(options.destinationPort, MiB)
    const stream = bed.startStream([...streamArgs, '--timeout', '90'])
    await during?.({ conf, receiver })
    assert.equal(await stream.exited(), 0, `stream failed:\n${stream.output()}`)
    const report = await finalReport(receiver)
    const sent = readStream(stream)
    assert.equal(report.ending, 'end')
    assert.equal(report.receivedBytes, sent?.sentBytes, 'bytes exact at dst')
    assert.equal(report.receivedSha256, sent?.sentSha256, 'sha256 at dst')
    assert.equal(sent?.replySha256, report.replySha256, 'sha256 of the reply at src')
    const result = {
      report,
      sent,
      txStatus: await queryStatus(conf.txControl),
      rxStatus: await queryStatus(conf.rxControl)
    }
    // The next run binds the same ports: this run's processes go first.
    for (const p of [stream, receiver, tx, rx]) await p.stop()
    return result
  }

  /** What one redundant transfer showed. */
  interface RedundantResult {
    readonly report: DuplexReport
    /** Frames tx_proxy sent (each once), and how many of them it also sent a copy of. */
    readonly framesSent: number
    readonly framesCopied: number
    /** When path b was cut (wall clock) and how long until tx_proxy dropped its subflows, ms. */
    readonly cutAt: number
    readonly pathBGoneMs: number
  }

  /**
   * One redundant transfer: path b at 2% loss, cut (link down) once 24 MiB have arrived and
   * left down; dst must get exactly the bytes sent while rx_proxy drops the copies.
   */
  const redundantRun = async (
    label: string,
    port: number,
    overrides: Readonly<Record<string, string>>
  ): Promise<RedundantResult> => {
    const bed = tb!
    await bed.impair('b', { lossPercent: 2 })
    let cutAt = 0
    let pathBGoneMs = NaN
    const total = 96 * MiB
    const {
      report,
      txStatus: txs,
      rxStatus: rxs
    } = await run(
      label,
      { destinationPort: port, overrides },
      ['--bytes', `${total}`],
      async ({ conf: c, receiver }) => {
        await pollUntil(
          '24 MiB at dst',
          () => readReceiver(receiver).receivedBytes >= 24 * MiB,
          60_000
        )
        cutAt = wallMs()
        faults.add(await linkDown(bed.ns.tx, bed.interfaces.b.tx))
        await pollUntil(
          'path b subflows gone',
          async () => {
            const subs = (await queryStatus(c.txControl)).trunks[0]?.subflows ?? []
            return !subs.some((s) => s.pathId === 1)
          },
          10_000
        )
        pathBGoneMs = wallMs() - cutAt
      }
    )
    const framesSent = txs.counters.frames_sent ?? 0
    const framesCopied = txs.counters.frames_duplicated ?? 0
    process.stdout.write(
      `# ${label}: ${(rxs.totals.duplicateBytes / MiB).toFixed(1)} MiB of duplicates dropped at rx_proxy; ` +
        `${framesCopied} of ${framesSent} frames also sent as a copy; ${(txs.totals.resentBytes / MiB).toFixed(1)} MiB re-sent; ` +
        `path b cut ${((cutAt - report.firstByteAt) / 1000).toFixed(1)} s in, its subflows gone ${pathBGoneMs.toFixed(0)} ms later; ` +
        `longest stall at dst ${report.maxGapMs.toFixed(0)} ms, ending ${((report.maxGapEndAt - cutAt) / 1000).toFixed(2)} s after the cut\n`
    )
    assert.equal(report.receivedBytes, total, 'zero duplicates delivered: the exact count')
    assert.equal(rxs.counters.connects, 1)
    assert.ok(framesCopied > 0, 'tx_proxy sent frames twice')
    assert.ok(rxs.totals.duplicateBytes > 0, 'rx_proxy dropped duplicates (counted)')
    return { report, framesSent, framesCopied, cutAt, pathBGoneMs }
  }

  /** The redundant_ports run, for the test after it (which asks more of the same run). */
  let redundantPorts: RedundantResult | undefined

  test(
    'redundant flows (trunk.redundant_ports), path b at 2% loss then cut: dst gets exactly the bytes sent, rx_proxy dropped the duplicates',
    { timeout: 120_000 },
    async () => {
      redundantPorts = await redundantRun('redundant-ports', 5501, {
        'trunk.redundant_ports': '5501'
      })
    }
  )

  test('redundant flows: frames go out on both paths, so cutting path b does not stall delivery (the same run)', () => {
    const r = redundantPorts
    assert.ok(r !== undefined, 'the redundant_ports run did not complete')
    // While both paths take data every frame goes out twice; once path b is cut (and not yet
    // detected) the flow waits at most 250 ms for a copy slot, then goes on alone on path a.
    assert.ok(r.framesCopied > 0, 'no frame was sent twice')
    assert.ok(r.report.maxGapMs < 1000, `delivery stalled ${r.report.maxGapMs.toFixed(0)} ms`)
  })

  test(
    'trunk.scheduler = redundant, path b at 2% loss then cut: every frame sent twice, dst gets exactly the bytes sent',
    {
      timeout: 120_000
    },
    async () => {
      await redundantRun('redundant-scheduler', 5506, { 'trunk.scheduler': 'redundant' })
    }
  )

  test(
    `paths shaped to ${RATE_A_MBIT} and ${RATE_B_MBIT} Mbit/s: one bulk flow over both gets at least 1.3x the faster path alone (weighted and first-free)`,
    {
      timeout: 180_000
    },
    async () => {
      const bed = tb!
      await bed.impair('a', { rateMbit: RATE_A_MBIT, delayMs: SHAPED_DELAY_MS })
      await bed.impair('b', { rateMbit: RATE_B_MBIT, delayMs: SHAPED_DELAY_MS })
      const seconds = 10
      /**
       * Steady-state goodput at dst: from 2 s after the first byte (start-up left out) to 9 s
       * (before the sender stops), as the slope of the received bytes.
       */
      const goodput = (r: DuplexReport): number =>
        slopeMbit(r.samples, r.firstByteAt + 2000, r.firstByteAt + (seconds - 1) * 1000)
      /** What tx_proxy sent on each path over the run, Mbit/s (frames, re-sends included). */
      const perPath = (s: ProxyStatus, r: DuplexReport): string =>
        [0, 1]
          .map((id) => {
            const bytes = (s.trunks[0]?.subflows ?? [])
              .filter((x) => x.pathId === id)
              .reduce((a, x) => a + x.bytesSent, 0)
            return `${id === 0 ? 'a' : 'b'} ${((bytes * 8) / ((r.lastByteAt - r.firstByteAt) * 1000)).toFixed(1)}`
          })
          .join(', ')
      const configs = [
        { name: 'fast-only', options: { paths: ['a'] as const } },
        { name: 'weighted', options: { overrides: { 'trunk.scheduler': 'weighted' } } },
        { name: 'first-free', options: { overrides: { 'trunk.scheduler': 'first-free' } } }
      ]
      // Two rounds, interleaved, so that a slow moment of the machine hits every configuration.
      const figures = new Map<string, number[]>(configs.map((c) => [c.name, []]))
      const notes: string[] = []
      let port = 5510
      for (let round = 0; round < 2; round++) {
        for (const c of configs) {
          const r = await run(c.name, { destinationPort: port++, ...c.options }, [
            '--duration',
            String(seconds)
          ])
          const g = goodput(r.report)
          figures.get(c.name)?.push(g)
          notes.push(`${c.name} ${g.toFixed(1)} (sent ${perPath(r.txStatus, r.report)})`)
        }
      }
      const mean = (name: string): number => {
        const xs = figures.get(name) ?? []
        return xs.reduce((a, x) => a + x, 0) / xs.length
      }
      const single = mean('fast-only')
      const weighted = mean('weighted')
      const firstFree = mean('first-free')
      process.stdout.write(
        `# aggregation (${RATE_A_MBIT} + ${RATE_B_MBIT} Mbit/s, ${2 * SHAPED_DELAY_MS} ms RTT, one flow, ${seconds} s runs, mean of 2): ` +
          `path a alone ${single.toFixed(1)} Mbit/s; both paths: weighted ${weighted.toFixed(1)} Mbit/s ` +
          `(${(weighted / single).toFixed(2)}x), first-free ${firstFree.toFixed(1)} Mbit/s (${(firstFree / single).toFixed(2)}x)\n` +
          `#   runs (Mbit/s at dst; sent per path): ${notes.join('; ')}\n`
      )
      assert.ok(
        weighted >= 1.3 * single,
        `weighted: ${weighted.toFixed(1)} vs ${single.toFixed(1)}`
      )
      assert.ok(
        firstFree >= 1.3 * single,
        `first-free: ${firstFree.toFixed(1)} vs ${single.toFixed(1)}`
      )
    }
  )

  test(
    'recovery after a subflow kill: time until dst gets back to 80% of the rate before, median of 3 (ss -K, and a silent drop)',
    { timeout: 120_000 },
    async () => {
      const bed = tb!
      // One path, two subflows: the delivered rate of one path is steady at 500 ms (a 1 s
      // window over two paths of different rates still dips below 80% a tenth of the time:
      // head-of-line waits for the slower path), so a dip is the kill's, not the striping's.
      await bed.impair('a', { rateMbit: RATE_A_MBIT, delayMs: SHAPED_DELAY_MS })
      const plan: { method: 'ss-kill' | 'silent-drop'; offsetMs: number }[] = [
        { method: 'ss-kill', offsetMs: 3500 },
        { method: 'ss-kill', offsetMs: 7500 },
        { method: 'ss-kill', offsetMs: 11_500 },
        // A silent death is found by the ping timeout (default 2500 ms): 6 s apart.
        { method: 'silent-drop', offsetMs: 15_500 },
        { method: 'silent-drop', offsetMs: 21_500 },
        { method: 'silent-drop', offsetMs: 27_500 }
      ]
      const kills: { method: string; at: number }[] = []
      const { report } = await run(
        'recovery',
        { destinationPort: 5505, paths: ['a'] },
        ['--duration', '32'],
        async ({ receiver }) => {
          await pollUntil(
            'first bytes at dst',
            () => readReceiver(receiver).receivedBytes > 0,
            30_000
          )
          const firstAt = wallMs()
          for (const { method, offsetMs } of plan) {
            await sleepUntil(firstAt + offsetMs)
            // The busier one (most bytes in flight), so that the kill hits data.
            const victim = (await subflowSockets(bed.ns.tx, TWO_PATH_RX_PORT)).sort(
              (x, y) => y.sendQueue - x.sendQueue
            )[0]
            assert.ok(victim !== undefined, 'no subflow to kill')
            kills.push({ method, at: wallMs() })
            if (method === 'ss-kill') faults.add(await ssKill(bed.ns.tx, victim))
            else faults.add(await silentDrop(bed.wanOf('a'), victim))
          }
        }
      )
      /**
       * The rate is the trailing 500 ms window. A dip is the window falling below 80% of the
       * rate of the 2 s before the kill within 500 ms of it; the recovery is when the window is
       * back at 80%, counted from the kill. No dip: 0 (nothing a 500 ms window can see).
       */
      const windowMs = 500
      const recovery = (at: number): { before: number; ms: number } => {
        const before = rateMbit(report.samples, at - 2000, at)
        const trailing = (t: number): number => rateMbit(report.samples, t - windowMs, t)
        let dip: number | undefined
        for (let t = at; t <= at + windowMs && dip === undefined; t += 20) {
          if (trailing(t) < 0.8 * before) dip = t
        }
        if (dip === undefined) return { before, ms: 0 }
        for (let t = dip; t <= at + 5000; t += 20) {
          if (trailing(t) >= 0.8 * before) return { before, ms: t - at }
        }
        return { before, ms: Infinity }
      }
      const figures = (method: string): { before: number; ms: number }[] =>
        kills.filter((k) => k.method === method).map((k) => recovery(k.at))
      const loud = figures('ss-kill')
      const silent = figures('silent-drop')
      const line = (xs: { before: number; ms: number }[]): string =>
        `median ${median(xs.map((r) => r.ms)).toFixed(0)} ms (${xs.map((r) => `${r.ms.toFixed(0)} ms from ${r.before.toFixed(1)} Mbit/s`).join(', ')})`
      process.stdout.write(
        `# recovery to 80% of the rate (one path, ${RATE_A_MBIT} Mbit/s, ${2 * SHAPED_DELAY_MS} ms RTT, 2 subflows, ` +
          `trailing ${windowMs} ms window): ss -K ${line(loud)}; silent drop ${line(silent)}\n`
      )
      for (const r of [...loud, ...silent]) {
        assert.ok(r.ms <= 5000, `no recovery within 5 s: ${JSON.stringify({ loud, silent })}`)
      }
    }
  )
})
