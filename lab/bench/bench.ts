/**
 * `npm run bench`: goodput of a bulk transfer over an emulated bad link for direct TCP, Tandem
 * and the alternatives a user would pick (iperf3 -P 8, kcptun, kernel MPTCP), short-flow
 * completion times, CPU per GB and the clean-link ceiling. Prints a markdown table, writes JSON
 * and an SVG plot (goodput against loss, one line per system, one panel per RTT).
 *
 *   npm run bench -- --quick            one RTT (50 ms), loss 0 and 1 %, one run each
 *   npm run bench                       RTT 50/200/600 ms × loss 0/0.5/1/2 %, median of 3
 *   npm run bench -- --rtt 600 --loss 1 --systems direct-cubic,tandem-8-bbr
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import yargs from 'yargs'

import { errorMessage } from '../../src/common/errors.js'
import { netnsUnavailableReason } from '../testbed/netns.js'
import {
  createImpairedTestbed,
  dist,
  runIn,
  startIn,
  type ImpairedTestbed,
  type LinkSpec,
  type NsProcess
} from '../testbed/impaired.js'
import { PROJECT_ROOT, TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'
import { pathBenchMarkdown, runPathBench, type PathBenchResult } from './paths.js'
import { renderPlot } from './plot.js'
import { median, medianOrNull } from './median.js'
import { parseShortSample, SHORT_FLOW_TIMEOUT_MS, type ShortSample } from './short-flow.js'

/** One measured system. */
interface SystemSpec {
  readonly name: string
  readonly kind: 'direct' | 'tandem' | 'iperf3' | 'kcptun' | 'mptcp'
  readonly congestion: 'cubic' | 'bbr'
  readonly subflows?: number
  /** Tandem without encryption between the proxies (security.encrypt = false). */
  readonly plain?: boolean
  /** Tandem's trunk.frame_payload_bytes (default: the configuration's default). */
  readonly framePayload?: string
}

/** One result row. */
export interface BenchRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly rateMbit: number
  /** Median goodput, Mbit/s; undefined when the system could not run. */
  readonly goodputMbit: number | undefined
  readonly runs: readonly number[]
  /** CPU seconds per GB moved, both proxies (Tandem: tx_proxy + rx_proxy; kcptun: client + server). */
  readonly cpuSecondsPerGB?: number
  /** The same for the sending-side proxy (tx_proxy, kcptun client) alone. */
  readonly cpuTxSecondsPerGB?: number
  /** The same for the receiving-side proxy (rx_proxy, kcptun server) alone. */
  readonly cpuRxSecondsPerGB?: number
  readonly note?: string
}

/** Short-flow timing row. */
export interface ShortFlowRow {
  readonly system: string
  readonly rttMs: number
  readonly lossPercent: number
  readonly bytes: number
  /** Median time to first byte, ms from connect(); null when no run got a byte. */
  readonly ttfbMs: number | null
  /** Median completion time, ms; a run past the deadline counts as longer than any other, and null means most runs were. */
  readonly completionMs: number | null
  /** Runs that had not finished by `timeoutMs` (or failed). */
  readonly timedOut: number
  readonly runs: number
  readonly timeoutMs: number
}

/** CPU seconds used so far by `pid` (utime + stime). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return 0
  }
}

/** Run `transfer` and measure the CPU the two proxies used, per GB moved. */
async function withCpu(
  tx: NsProcess,
  rx: NsProcess,
  seconds: number,
  transfer: () => Promise<number>
): Promise<{ mbit: number; cpu?: { tx: number; rx: number } }> {
  const t0 = cpuSeconds(tx.child.pid)
  const r0 = cpuSeconds(rx.child.pid)
  const mbit = await transfer()
  const gb = (mbit * 1e6 * seconds) / 8 / 1e9
  if (gb <= 0) return { mbit }
  return {
    mbit,
    cpu: { tx: (cpuSeconds(tx.child.pid) - t0) / gb, rx: (cpuSeconds(rx.child.pid) - r0) / gb }
  }
}

function systemsFrom(list: string): SystemSpec[] {
  // 'none': no bulk transfers (only the short flows, the ceiling or the path rows).
  if (list === 'none') return []
  return list.split(',').map((name) => {
    let m = /^direct-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'direct', congestion: m[1] as 'cubic' | 'bbr' }
    m = /^tandem-(\d+)-(cubic|bbr)(?:-f(\d+k))?$/.exec(name)
    if (m)
      return {
        name,
        kind: 'tandem',
        congestion: m[2] as 'cubic' | 'bbr',
        subflows: Number(m[1]),
        ...(m[3] !== undefined ? { framePayload: m[3].replace('k', 'KiB') } : {})
      }
    m = /^iperf3-P8-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'iperf3', congestion: m[1] as 'cubic' | 'bbr' }
    if (name === 'kcptun') return { name, kind: 'kcptun', congestion: 'cubic' }
    m = /^mptcp-4-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'mptcp', congestion: m[1] as 'cubic' | 'bbr' }
    throw new Error(`unknown system ${name}`)
  })
}

/** Install what the alternatives need from Debian's packages; say what cannot run. */
function ensurePackages(): Set<string> {
  const missing: string[] = []
  const have = (cmd: string): boolean => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
      return true
    } catch {
      return false
    }
  }
  if (!have('iperf3')) missing.push('iperf3')
  if (!have('kcptun-client')) missing.push('kcptun')
  if (!have('mptcpize')) missing.push('mptcpd')
  if (missing.length > 0) {
    process.stderr.write(`bench: installing ${missing.join(' ')} from Debian's packages\n`)
    const apt = (args: readonly string[]): void => {
      execFileSync('apt-get', args, {
        stdio: 'ignore',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
      })
    }
    try {
      apt(['install', '-y', '-qq', ...missing])
    } catch {
      // A fresh machine may have no package lists yet (setup.sh updates them only when it
      // installs something itself): refresh them once and try again.
      try {
        apt(['update', '-qq'])
        apt(['install', '-y', '-qq', ...missing])
      } catch {
        process.stderr.write(`bench: apt-get install ${missing.join(' ')} failed\n`)
      }
    }
  }
  const unavailable = new Set<string>()
  if (!have('iperf3')) unavailable.add('iperf3')
  if (!have('kcptun-client')) unavailable.add('kcptun')
  if (!have('mptcpize')) unavailable.add('mptcp')
  return unavailable
}

/**
 * Goodput in Mbit/s of a bulk transfer from src to `host:port`, measured at the receiver over a
 * fixed time: `./receive --stop-after` counts what reached dst in the first `seconds` after it
 * accepted the connection, then resets it. Whatever a proxy still holds is not counted, and a
 * slow system costs its `seconds`, not the time to drain its buffers.
 */
async function streamGoodput(
  bed: ImpairedTestbed,
  receiver: NsProcess,
  host: string,
  port: number,
  seconds: number,
  congestion: string,
  wrap: readonly string[] = []
): Promise<number> {
  const seen = receiver.output().length
  // Send past the receiver's stop, which comes `seconds` after the handshake has crossed.
  const duration = seconds + Math.ceil((2 * bed.link.rttMs) / 1000) + 5
  const r = await runIn(
    bed.topo.ns.src,
    [
      ...wrap,
      process.execPath,
      dist('tools/stream.js'),
      host,
      String(port),
      '--duration',
      String(duration),
      '--congestion',
      congestion,
      '--json',
      '--quiet',
      '--timeout',
      String(duration + 30)
    ],
    (duration + 60) * 1000
  )
  const line = await waitForLine(receiver, seen, /^\{"ok".*$/m, 10_000)
  if (line === undefined) {
    // The harness prints {"ok":false,"error":{"code":...}}: name the code.
    const code = /"code":"([A-Z_]+)"/.exec(r.output)?.[1]
    throw new Error(code ?? `stream failed: ${r.output.trim().slice(0, 300)}`)
  }
  const j = JSON.parse(line) as {
    ok: boolean
    goodputMbitPerSec?: number
    error?: { code: string }
  }
  if (!j.ok || j.goodputMbitPerSec === undefined) throw new Error(j.error?.code ?? 'receive failed')
  return j.goodputMbitPerSec
}

/** The first match of `re` in what `p` printed after offset `from`, polled until `timeoutMs`. */
async function waitForLine(
  p: NsProcess,
  from: number,
  re: RegExp,
  timeoutMs: number
): Promise<string | undefined> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const m = re.exec(p.output().slice(from))
    if (m !== null) return m[0]
    if (Date.now() > until) return undefined
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A receiver in dst (kept for a whole link) measuring each connection for `seconds`. */
async function startReceiver(
  bed: ImpairedTestbed,
  port: number,
  seconds: number,
  wrap: readonly string[] = []
): Promise<NsProcess> {
  const p = startIn(
    bed.topo.ns.dst,
    [
      ...wrap,
      process.execPath,
      dist('tools/receive.js'),
      '--port',
      String(port),
      '--keep-listening',
      '--json',
      '--quiet',
      '--stop-after',
      String(seconds)
    ],
    'receive'
  )
  await p.waitFor(/listening on/)
  return p
}

/** The receivers of one link: 5201 for direct TCP, Tandem and kcptun; 5203 for MPTCP. */
interface Receivers {
  readonly main: NsProcess
  readonly mptcp?: NsProcess | undefined
}

/** Run one system once on the testbed; Mbit/s, plus CPU s/GB for Tandem. */
async function runOnce(
  bed: ImpairedTestbed,
  receivers: Receivers,
  sys: SystemSpec,
  seconds: number
): Promise<{ mbit: number; cpu?: { tx: number; rx: number } }> {
  switch (sys.kind) {
    case 'direct':
      return {
        mbit: await streamGoodput(bed, receivers.main, A.dst.v4, 5201, seconds, sys.congestion)
      }
    case 'tandem': {
      const bdp =
        ((bed.link.rateMbit > 0 ? bed.link.rateMbit : 1000) *
          1e6 *
          Math.max(0.05, bed.link.rttMs / 1000)) /
        8
      const conf = bed.config(sys.name, {
        'tx_proxy.subflows': String(sys.subflows ?? 8),
        'trunk.congestion': sys.congestion,
        'limits.max_flow_window_bytes': String(Math.max(32 * 1048576, Math.ceil(8 * bdp))),
        'security.encrypt': sys.plain === true ? 'false' : 'true',
        'interception.transparent': 'false',
        ...(sys.framePayload !== undefined ? { 'trunk.frame_payload_bytes': sys.framePayload } : {})
      })
      const { tx, rx } = await bed.startProxies(conf, sys.subflows ?? 8)
      try {
        return await withCpu(tx, rx, seconds, () =>
          streamGoodput(bed, receivers.main, A.dst.v4, 5201, seconds, 'cubic')
        )
      } finally {
        await tx.stop()
        await rx.stop()
      }
    }
    case 'iperf3': {
      const server = startIn(
        bed.topo.ns.dst,
        ['iperf3', '-s', '-1', '-p', '5202', '--forceflush'],
        'iperf3-server'
      )
      await server.waitFor(/Server listening/)
      const r = await runIn(
        bed.topo.ns.src,
        [
          'iperf3',
          '-c',
          A.dst.v4,
          '-p',
          '5202',
          '-P',
          '8',
          '-t',
          String(seconds),
          '-C',
          sys.congestion,
          '-J'
        ],
        seconds * 1000 + 60_000
      )
      await server.stop()
      const j = JSON.parse(r.output) as { end?: { sum_received?: { bits_per_second?: number } } }
      return { mbit: (j.end?.sum_received?.bits_per_second ?? 0) / 1e6 }
    }
    case 'kcptun': {
      // Tuned for long fat links: fast mode, no compression or crypto, windows above the BDP.
      const wnd = String(
        Math.max(
          1024,
          Math.ceil(
            ((bed.link.rateMbit || 100) * 1e6 * Math.max(0.05, bed.link.rttMs / 1000)) / 8 / 1350
          ) * 2
        )
      )
      const common = [
        '--mode',
        'fast',
        '--nocomp',
        '--crypt',
        'none',
        '--mtu',
        '1350',
        '--sndwnd',
        wnd,
        '--rcvwnd',
        wnd,
        '--quiet'
      ]
      const server = startIn(
        bed.topo.ns.rx,
        ['kcptun-server', '-l', ':29900', '-t', `${A.dst.v4}:5201`, ...common],
        'kcptun-server'
      )
      const client = startIn(
        bed.topo.ns.tx,
        ['kcptun-client', '-l', ':12948', '-r', `${A.rx.v4}:29900`, ...common],
        'kcptun-client'
      )
      await new Promise((r) => setTimeout(r, 1000))
      try {
        return await withCpu(client, server, seconds, () =>
          streamGoodput(bed, receivers.main, A.tx.v4, 12948, seconds, 'cubic')
        )
      } finally {
        await client.stop()
        await server.stop()
      }
    }
    case 'mptcp': {
      if (receivers.mptcp === undefined) throw new Error('no MPTCP receiver')
      const mbit = await streamGoodput(
        bed,
        receivers.mptcp,
        A.dst.v4,
        5203,
        seconds,
        sys.congestion,
        ['mptcpize', 'run']
      )
      return { mbit }
    }
  }
}

/** Kernel MPTCP set-up in src and dst: 4 subflows from 4 src addresses; a receiver on 5203. */
async function setupMptcp(bed: ImpairedTestbed, seconds: number): Promise<NsProcess> {
  const { src, dst } = bed.topo.ns
  for (const ns of [src, dst])
    await ns.exec(['ip', 'mptcp', 'limits', 'set', 'subflow', '8', 'add_addr_accepted', '8'])
  for (const n of [21, 22, 23]) {
    await src.exec(['ip', 'addr', 'add', `192.168.2.${n}/24`, 'dev', bed.topo.interfaces.src])
    await src.exec([
      'ip',
      'mptcp',
      'endpoint',
      'add',
      `192.168.2.${n}`,
      'dev',
      bed.topo.interfaces.src,
      'subflow'
    ])
  }
  await new Promise((r) => setTimeout(r, 2500)) // DAD-free v4, but ARP for the new addresses
  return await startReceiver(bed, 5203, seconds, ['mptcpize', 'run'])
}

/** Short flows: request/response through the warm trunk vs direct. */
async function shortFlows(
  bed: ImpairedTestbed,
  sizes: readonly number[],
  runs: number,
  tandemCongestions: readonly string[]
): Promise<ShortFlowRow[]> {
  const rows: ShortFlowRow[] = []
  const server = startIn(
    bed.topo.ns.dst,
    [dist('tools/rr.js'), 'server', '--port', '5210'],
    'rr-server'
  )
  await server.waitFor(/listening/)
  const once = async (bytes: number, congestion: string): Promise<ShortSample> => {
    const r = await runIn(
      bed.topo.ns.src,
      [
        process.execPath,
        dist('tools/rr.js'),
        'one-shot',
        '--host',
        A.dst.v4,
        '--port',
        '5210',
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
    await measure('direct-cubic', 'cubic')
    await measure('direct-bbr', 'bbr')
    for (const congestion of tandemCongestions) {
      const conf = bed.config(`short-${congestion}`, {
        'tx_proxy.subflows': '8',
        'trunk.congestion': congestion,
        'interception.transparent': 'false'
      })
      const { tx, rx } = await bed.startProxies(conf, 8)
      try {
        await new Promise((r) => setTimeout(r, 2000)) // a warm trunk: connected and idle
        await measure(`tandem-8-${congestion} (warm trunk)`, 'cubic')
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

/** A completion cell: the median, or that most runs had not finished by the deadline. */
function shortCompletion(r: ShortFlowRow): string {
  const late = r.timedOut > 0 ? ` (${r.timedOut} of ${r.runs} past ${r.timeoutMs / 1000} s)` : ''
  return r.completionMs === null ? `> ${r.timeoutMs}${late}` : `${r.completionMs.toFixed(1)}${late}`
}

function markdown(rows: readonly BenchRow[], short: readonly ShortFlowRow[], meta: string): string {
  const links = [...new Set(rows.map((r) => `${r.rttMs}|${r.lossPercent}`))]
  const systems = [...new Set(rows.map((r) => r.system))]
  const head = `| system | ${links
    .map((l) => {
      const [rtt, loss] = l.split('|')
      return `${rtt} ms, ${loss} %`
    })
    .join(' | ')} |`
  const sep = `|---|${links.map(() => '---:').join('|')}|`
  const body = systems.map((s) => {
    const cells = links.map((l) => {
      const r = rows.find((x) => x.system === s && `${x.rttMs}|${x.lossPercent}` === l)
      return r?.goodputMbit === undefined ? (r?.note ?? '–') : r.goodputMbit.toFixed(1)
    })
    return `| ${s} | ${cells.join(' | ')} |`
  })
  let out = `${meta}\n\nGoodput in Mbit/s (median of the runs; link rate ${rows[0]?.rateMbit ?? '?'} Mbit/s; columns: RTT, loss each way):\n\n${[head, sep, ...body].join('\n')}\n`
  const cpu = rows.filter((r) => r.cpuSecondsPerGB !== undefined)
  if (cpu.length > 0) {
    out += `\nCPU seconds per GB moved by each proxy (median over the links; per link in the JSON):\n\n| system | sending side (tx_proxy, kcptun client) | receiving side (rx_proxy, kcptun server) | both |\n|---|---:|---:|---:|\n`
    for (const name of [...new Set(cpu.map((r) => r.system))]) {
      const of = cpu.filter((r) => r.system === name)
      const m = (f: (r: BenchRow) => number | undefined): string =>
        median(of.map((r) => f(r) ?? NaN).filter((x) => !Number.isNaN(x))).toFixed(1)
      out += `| ${name} | ${m((r) => r.cpuTxSecondsPerGB)} | ${m((r) => r.cpuRxSecondsPerGB)} | ${m((r) => r.cpuSecondsPerGB)} |\n`
    }
  }
  if (short.length > 0) {
    out += `\nShort flows (request, then a download of N bytes; medians, ms from connect()):\n\n| system | link | bytes | time to first byte | completion |\n|---|---|---:|---:|---:|\n`
    for (const r of short)
      out += `| ${r.system} | ${r.rttMs} ms, ${r.lossPercent} % | ${r.bytes} | ${r.ttfbMs === null ? '–' : r.ttfbMs.toFixed(1)} | ${shortCompletion(r)} |\n`
  }
  return out
}

async function main(): Promise<number> {
  const args = yargs(process.argv.slice(2))
    .scriptName('npm run bench --')
    .option('quick', {
      type: 'boolean',
      default: false,
      describe: 'one RTT (50 ms), loss 0 and 1 %, one run'
    })
    .option('rtt', { type: 'string', describe: 'RTTs in ms, comma-separated (default 50,200,600)' })
    .option('loss', {
      type: 'string',
      describe: 'loss percentages, comma-separated (default 0,0.5,1,2)'
    })
    .option('rate', { type: 'number', default: 100, describe: 'link rate, Mbit/s' })
    .option('runs', {
      type: 'number',
      describe: 'runs per cell (median) for the core systems; default 3, quick 1'
    })
    .option('core', {
      type: 'string',
      default: 'direct-cubic,direct-bbr,tandem-8-bbr,iperf3-P8-cubic,kcptun,mptcp-4-cubic',
      describe: 'systems measured --runs times; the others (the subflow sweep) --sweep-runs times'
    })
    .option('sweep-runs', {
      type: 'number',
      describe: 'runs per cell for the other systems (subflow sweep, alternatives); default 1'
    })
    .option('seconds', {
      type: 'number',
      describe:
        'bulk transfer length; default 8 s at RTT <= 50 ms, 10 s to 200 ms, 15 s above; quick 12'
    })
    .option('systems', {
      type: 'string',
      describe: "comma-separated systems (see the source for names); 'none' for no bulk transfers"
    })
    .option('short', { type: 'boolean', default: true, describe: 'also time short flows' })
    .option('short-congestion', {
      type: 'string',
      default: 'bbr,cubic',
      describe: 'subflow congestion controls for the short-flow Tandem rows'
    })
    .option('ceiling', {
      type: 'boolean',
      default: true,
      describe: 'also measure the clean-link ceiling'
    })
    .option('paths', {
      type: 'boolean',
      default: true,
      describe:
        'also the two-path rows: recovery after a subflow kill, aggregation, redundant p99 latency'
    })
    .option('out', {
      type: 'string',
      default: join(PROJECT_ROOT, 'results'),
      describe: 'where JSON and markdown go'
    })
    .strict()
    .help()
    .version(false)
    .parseSync()
  const why = netnsUnavailableReason()
  if (why !== undefined) {
    process.stderr.write(`bench: ${why}\n`)
    return 2
  }
  const quick = args.quick
  // The command as it was given, so that every figure names what produced it.
  const given = process.argv.slice(2)
  const commandArgs = given.length > 0 ? ` -- ${given.join(' ')}` : ''
  const rtts = (args.rtt ?? (quick ? '50' : '50,200,600')).split(',').map(Number)
  const losses = (args.loss ?? (quick ? '0,1' : '0,0.5,1,2')).split(',').map(Number)
  const runs = args.runs ?? (quick ? 1 : 3)
  const sweepRuns = args.sweepRuns ?? Math.min(1, runs)
  const core = new Set(args.core.split(','))
  // Long enough to leave slow start (it takes about ten round trips to fill 100 Mbit/s).
  const secondsFor = (rttMs: number): number =>
    args.seconds ?? (quick ? 12 : rttMs <= 50 ? 8 : rttMs <= 200 ? 10 : 15)
  const defaultSystems = quick
    ? 'direct-cubic,direct-bbr,tandem-8-bbr,tandem-8-cubic,iperf3-P8-cubic,kcptun,mptcp-4-cubic'
    : 'direct-cubic,direct-bbr,tandem-1-bbr,tandem-2-bbr,tandem-4-bbr,tandem-8-bbr,tandem-16-bbr,tandem-1-cubic,tandem-2-cubic,tandem-4-cubic,tandem-8-cubic,tandem-16-cubic,iperf3-P8-cubic,kcptun,mptcp-4-cubic'
  const systems = systemsFrom(args.systems ?? defaultSystems)
  const unavailable = ensurePackages()
  const rows: BenchRow[] = []
  const short: ShortFlowRow[] = []
  const started = new Date()
  let ceiling: { direct: number; tandem: number; tandemPlain: number; runs: number[][] } | undefined
  let paths: PathBenchResult | undefined
  const secondsList = rtts.map((r) => `${secondsFor(r)} s at ${r} ms`).join(', ')
  const bulk =
    systems.length === 0
      ? 'no bulk transfers'
      : `bulk transfers of ${secondsList}, goodput counted at the receiver; ${runs} run(s) per cell (median) for ${[...core].join(', ')}, ${sweepRuns} for the others`
  const meta = `Tandem benchmark, ${started.toISOString()}, ${quick ? 'quick mode' : 'full mode'}: ${bulk}; command: npm run bench${commandArgs}`
  mkdirSync(args.out, { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  // Written after every link as well, so that an interrupted run keeps what it measured.
  const writeResults = (done: boolean): string => {
    let md = markdown(rows, short, done ? meta : `${meta} (partial: still running)`)
    if (ceiling !== undefined) {
      md += `\nClean-link ceiling (no impairment, 8 s transfers, median of ${runs} interleaved runs): direct TCP ${ceiling.direct.toFixed(0)} Mbit/s; Tandem (8 subflows) ${ceiling.tandem.toFixed(0)} Mbit/s encrypted = ${((100 * ceiling.tandem) / ceiling.direct).toFixed(0)} %, ${ceiling.tandemPlain.toFixed(0)} Mbit/s without encryption = ${((100 * ceiling.tandemPlain) / ceiling.direct).toFixed(0)} %.\n`
    }
    if (paths !== undefined) md += `\n${pathBenchMarkdown(paths)}`
    const json = JSON.stringify({ meta, done, rows, short, ceiling, paths }, null, 2)
    writeFileSync(join(args.out, `bench-${stamp}.json`), json)
    writeFileSync(join(args.out, 'latest.json'), json)
    writeFileSync(join(args.out, 'latest.md'), md)
    writeFileSync(join(args.out, 'latest.svg'), renderPlot(rows))
    return md
  }
  for (const rttMs of rtts) {
    for (const lossPercent of losses) {
      const link: LinkSpec = { rttMs, lossPercent, rateMbit: args.rate }
      process.stderr.write(
        `\n== link: ${rttMs} ms RTT, ${lossPercent} % loss each way, ${args.rate} Mbit/s\n`
      )
      const bed = await createImpairedTestbed('bench', link)
      try {
        const receiver = await startReceiver(bed, 5201, secondsFor(rttMs))
        const mptcpReceiver =
          systems.some((s) => s.kind === 'mptcp') && !unavailable.has('mptcp')
            ? await setupMptcp(bed, secondsFor(rttMs)).catch(() => undefined)
            : undefined
        for (const sys of systems) {
          const skip =
            sys.kind === 'iperf3'
              ? unavailable.has('iperf3')
              : sys.kind === 'kcptun'
                ? unavailable.has('kcptun')
                : sys.kind === 'mptcp'
                  ? unavailable.has('mptcp') || mptcpReceiver === undefined
                  : false
          if (skip) {
            rows.push({
              system: sys.name,
              rttMs,
              lossPercent,
              rateMbit: args.rate,
              goodputMbit: undefined,
              runs: [],
              note: 'n/a'
            })
            continue
          }
          const samples: number[] = []
          const cpu: { tx: number; rx: number }[] = []
          let note: string | undefined
          const n = core.has(sys.name) ? runs : sweepRuns
          for (let i = 0; i < n; i++) {
            try {
              const r = await runOnce(
                bed,
                { main: receiver, mptcp: mptcpReceiver },
                sys,
                secondsFor(rttMs)
              )
              samples.push(r.mbit)
              if (r.cpu !== undefined) cpu.push(r.cpu)
            } catch (err) {
              note = errorMessage(err).slice(0, 80)
            }
          }
          const g = samples.length > 0 ? median(samples) : undefined
          process.stderr.write(
            `   ${sys.name.padEnd(18)} ${g === undefined ? (note !== undefined ? `failed: ${note}` : 'failed') : `${g.toFixed(1)} Mbit/s`}  [${samples.map((x) => x.toFixed(1)).join(', ')}]\n`
          )
          rows.push({
            system: sys.name,
            rttMs,
            lossPercent,
            rateMbit: args.rate,
            goodputMbit: g,
            runs: samples,
            ...(cpu.length > 0
              ? {
                  cpuSecondsPerGB: median(cpu.map((c) => c.tx + c.rx)),
                  cpuTxSecondsPerGB: median(cpu.map((c) => c.tx)),
                  cpuRxSecondsPerGB: median(cpu.map((c) => c.rx))
                }
              : {}),
            ...(note !== undefined && g === undefined ? { note: `failed (${note})` } : {})
          })
        }
        await receiver.stop()
        await mptcpReceiver?.stop()
        // Short flows on a clean and a 1 % link (or the last loss rate when 1 % is not measured).
        const shortLosses = losses.includes(1) ? [0, 1] : [losses[losses.length - 1]]
        if (args.short && shortLosses.includes(lossPercent)) {
          short.push(
            ...(await shortFlows(
              bed,
              // 1 KB: time to first byte of a small request/response; then short downloads.
              [1_000, 100_000, 1_000_000, 10_000_000],
              Math.max(1, runs),
              args.shortCongestion.split(',')
            ))
          )
        }
        process.stderr.write(
          `   emulator: ${
            bed.emulator
              ?.output()
              .split('\n')
              .filter((l) => l.includes('"stats"'))
              .pop()
              ?.slice(0, 200) ?? ''
          }\n`
        )
      } finally {
        await bed.destroy()
      }
      writeResults(false)
    }
  }
  if (args.ceiling) {
    process.stderr.write(`\n== clean link (no emulator): the ceiling of the pair\n`)
    const bed = await createImpairedTestbed('bench', { rttMs: 0, lossPercent: 0, rateMbit: 0 })
    try {
      const receiver = await startReceiver(bed, 5201, 8)
      // Interleaved, median of `runs` each: this machine is shared and its speed drifts.
      const ceilingSystems: SystemSpec[] = [
        { name: 'direct', kind: 'direct', congestion: 'cubic' },
        { name: 'tandem-8-cubic', kind: 'tandem', congestion: 'cubic', subflows: 8 },
        {
          name: 'tandem-8-cubic-plain',
          kind: 'tandem',
          congestion: 'cubic',
          subflows: 8,
          plain: true
        }
      ]
      const got: number[][] = ceilingSystems.map(() => [])
      for (let i = 0; i < runs; i++) {
        for (const [k, sys] of ceilingSystems.entries())
          got[k]!.push((await runOnce(bed, { main: receiver }, sys, 8)).mbit)
      }
      const [d, t, p] = got.map((g) => median(g)) as [number, number, number]
      ceiling = { direct: d, tandem: t, tandemPlain: p, runs: got }
      process.stderr.write(
        `   direct ${d.toFixed(0)} Mbit/s, Tandem ${t.toFixed(0)} Mbit/s encrypted, ${p.toFixed(0)} Mbit/s plain (${got.map((g) => g.map((x) => x.toFixed(0)).join('/')).join('; ')})\n`
      )
      await receiver.stop()
    } catch (err) {
      process.stderr.write(`   ceiling failed: ${errorMessage(err)}\n`)
    } finally {
      await bed.destroy()
    }
    writeResults(false)
  }
  if (args.paths) {
    process.stderr.write(`\n== two paths between the boxes (recovery, aggregation, latency)\n`)
    // A failure here must not lose the matrix measured so far: it is reported and skipped.
    paths = await runPathBench({
      quick,
      log: (line) => process.stderr.write(`   ${line}\n`)
    }).catch((err: unknown) => {
      process.stderr.write(`   two-path rows failed: ${errorMessage(err)}\n`)
      return undefined
    })
  }
  const md = writeResults(true)
  process.stdout.write(
    `\n${md}\nWrote ${join(args.out, 'latest.json')}, latest.md and latest.svg\n`
  )
  return 0
}

main().then(
  (code) => {
    process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${errorMessage(err)}\n`)
    process.exit(1)
  }
)
