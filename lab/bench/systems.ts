/**
 * The systems the benchmark compares and one bulk transfer of each over the impaired testbed:
 * direct TCP, Tandem, iperf3 -P 8, kcptun and kernel MPTCP, with the proxies' CPU per GB.
 */
import { errorMessage } from '../../src/common/errors.js'
import { readFileSync, writeFileSync } from 'node:fs'

import { queryStatus, type ProxyStatus } from '../../src/app/control.js'
import {
  dist,
  runIn,
  startIn,
  startReceive,
  type ImpairedTestbed,
  type NsProcess
} from '../testbed/impaired.js'
import { TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'
import { median } from './median.js'

/** One measured system. */
export interface SystemSpec {
  readonly name: string
  readonly kind: 'direct' | 'tandem' | 'iperf3' | 'kcptun' | 'mptcp'
  /**
   * The congestion control of the system's connections; for Tandem, `trunk.congestion`, where
   * `unset` leaves the key out of network.conf (what an operator who never heard of it runs).
   */
  readonly congestion: 'cubic' | 'bbr' | 'unset' | 'tandem'
  /**
   * Tandem only: the boxes' own default congestion control (net.ipv4.tcp_congestion_control
   * in the tx and rx namespaces) for this run, as on a stock Debian box; default: the testbed's.
   */
  readonly boxCongestion?: 'cubic'
  readonly subflows?: number
  /** Tandem without encryption between the proxies (security.encrypt = false). */
  readonly plain?: boolean
  /** Tandem's trunk.frame_payload_bytes (default: the configuration's default). */
  readonly framePayload?: string
  /** Tandem told the link's rate (trunk.link_rate = the bench's --rate) instead of learning it. */
  readonly linkRate?: boolean
}

/** CPU seconds used so far by `pid` (utime + stime). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return 0
  }
}

/** Run `transfer` and measure the CPU the two proxies used, per GB moved. */
export async function withCpu(
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

export function systemsFrom(list: string): SystemSpec[] {
  // 'none': no bulk transfers (only the short flows, the ceiling or the path rows).
  if (list === 'none') return []
  return list.split(',').map((name) => {
    let m = /^direct-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'direct', congestion: m[1] as 'cubic' | 'bbr' }
    // tandem-8-bbr, tandem-8-cubic-f16k (frame payload), tandem-8-bbr-link (link_rate set);
    // tandem-8-unset: no trunk.congestion in network.conf; tandem-8-unset-cubic-boxes: the same
    // on boxes whose default congestion control is cubic.
    m = /^tandem-(\d+)-(cubic|bbr|unset|tandem)(-cubic-boxes)?(?:-f(\d+k))?(-link)?$/.exec(name)
    if (m)
      return {
        name,
        kind: 'tandem',
        congestion: m[2] as 'cubic' | 'bbr' | 'unset' | 'tandem',
        subflows: Number(m[1]),
        ...(m[3] !== undefined ? { boxCongestion: 'cubic' as const } : {}),
        ...(m[4] !== undefined ? { framePayload: m[4].replace('k', 'KiB') } : {}),
        ...(m[5] !== undefined ? { linkRate: true } : {})
      }
    m = /^iperf3-P8-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'iperf3', congestion: m[1] as 'cubic' | 'bbr' }
    if (name === 'kcptun') return { name, kind: 'kcptun', congestion: 'cubic' }
    m = /^mptcp-4-(cubic|bbr)$/.exec(name)
    if (m) return { name, kind: 'mptcp', congestion: m[1] as 'cubic' | 'bbr' }
    throw new Error(`unknown system ${name}`)
  })
}

/**
 * Goodput in Mbit/s of a bulk transfer from src to `host:port`, measured at the receiver over a
 * fixed time: `./receive --stop-after` counts what reached dst in the first `seconds` after it
 * accepted the connection, then resets it. Whatever a proxy still holds is not counted, and a
 * slow system costs its `seconds`, not the time to drain its buffers.
 */
export async function streamGoodput(
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
export async function waitForLine(
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
export async function startReceiver(
  bed: ImpairedTestbed,
  port: number,
  seconds: number,
  wrap: readonly string[] = []
): Promise<NsProcess> {
  return startReceive(bed, port, ['--keep-listening', '--stop-after', String(seconds)], wrap)
}

/** The receivers of one link: 5201 for direct TCP, Tandem and kcptun; 5203 for MPTCP. */
export interface Receivers {
  readonly main: NsProcess
  readonly mptcp?: NsProcess | undefined
}

/** What one run of a system measured. */
export interface Measured {
  readonly mbit: number
  readonly cpu?: { tx: number; rx: number }
  /** Tandem: what tx_proxy's subflows say of the trunk (TCP_INFO, from `status --json`). */
  readonly trunk?: TrunkFigures
}

/** The trunk's own figures over one Tandem run (tx_proxy's subflows carry the data). */
export interface TrunkFigures {
  /** Bytes the subflows retransmitted, in percent of the bytes they sent (tcpi_bytes_retrans / tcpi_bytes_sent). */
  readonly retransPercent: number
  /** Median smoothed RTT (tcpi_rtt) of the subflows over the last part of the measured time, ms. */
  readonly subflowRttMs: number | undefined
  /** The trunk's congestion control choice as `status` names it (e.g. `bbr (auto)`). */
  readonly congestion: string | undefined
  /** The congestion control the subflows ran (TCP_CONGESTION), distinct names. */
  readonly subflowCongestion: readonly string[]
}

/** How often the trunk's subflows are read during a Tandem run, in ms. */
const TRUNK_SAMPLE_MS = 1000
/**
 * The RTT under full load is the median over the samples taken in the last part of the
 * measured time: past slow start, while the sender still has data.
 */
const RTT_WINDOW_FROM = 0.6

/**
 * Samples tx_proxy's subflow RTTs while `transfer` runs, then reads the retransmitted share at
 * its end. The measured time starts about one path RTT after the stream (the handshake crosses).
 */
async function withTrunkFigures(
  control: string,
  rttMs: number,
  seconds: number,
  transfer: () => Promise<{ mbit: number; cpu?: { tx: number; rx: number } }>
): Promise<Measured> {
  // The counters are the subflows' lives: a warm trunk carried earlier runs.
  const before = upSubflows(await queryStatus(control, 3000).catch(() => undefined))
  const sentBefore = before.reduce((a, f) => a + (f.tcpBytesSent ?? 0), 0)
  const retransBefore = before.reduce((a, f) => a + (f.tcpBytesRetrans ?? 0), 0)
  const t0 = performance.now()
  const from = rttMs + RTT_WINDOW_FROM * seconds * 1000
  const to = rttMs + seconds * 1000
  const rtts: number[] = []
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      await new Promise((r) => setTimeout(r, TRUNK_SAMPLE_MS))
      const t = performance.now() - t0
      if (!sampling || t > to) break
      if (t < from) continue
      const s = await queryStatus(control, 2000).catch(() => undefined)
      for (const f of upSubflows(s)) if (f.tcpRttMs !== undefined) rtts.push(f.tcpRttMs)
    }
  })()
  let measured: { mbit: number; cpu?: { tx: number; rx: number } }
  try {
    measured = await transfer()
  } finally {
    sampling = false
    await sampler
  }
  const end = await queryStatus(control, 3000).catch(() => undefined)
  const subflows = upSubflows(end)
  const sent = subflows.reduce((a, f) => a + (f.tcpBytesSent ?? 0), 0) - sentBefore
  const retrans = subflows.reduce((a, f) => a + (f.tcpBytesRetrans ?? 0), 0) - retransBefore
  if (end === undefined || sent <= 0) return measured
  return {
    ...measured,
    trunk: {
      retransPercent: (100 * retrans) / sent,
      subflowRttMs: rtts.length > 0 ? median(rtts) : undefined,
      congestion: end.trunks[0]?.congestion?.label,
      subflowCongestion: [...new Set(subflows.map((f) => f.congestion ?? '?'))]
    }
  }
}

function upSubflows(s: ProxyStatus | undefined): ProxyStatus['trunks'][number]['subflows'] {
  return (s?.trunks[0]?.subflows ?? []).filter((f) => (f.state ?? 'up') === 'up')
}

/** Path of the root namespace's list of congestion controls a namespace may make its default. */
const ALLOWED_CONGESTION = '/proc/sys/net/ipv4/tcp_allowed_congestion_control'

/**
 * Runs `body` with the tx and rx boxes defaulting to `name` (net.ipv4.tcp_congestion_control
 * in their namespaces), then restores them. A namespace may only default to an algorithm in
 * the allowed list, which only the root namespace can change: `name` is added to it for the
 * run and the list restored after.
 */
async function withBoxCongestion<T>(
  bed: ImpairedTestbed,
  name: string,
  body: () => Promise<T>
): Promise<T> {
  const allowed = readFileSync(ALLOWED_CONGESTION, 'utf8').trim()
  const boxes = [bed.topo.ns.tx, bed.topo.ns.rx]
  const before: string[] = []
  try {
    if (!allowed.split(/\s+/).includes(name)) {
      writeFileSync(ALLOWED_CONGESTION, `${allowed} ${name}`)
    }
    for (const ns of boxes) {
      before.push(
        (await ns.exec(['sysctl', '-n', 'net.ipv4.tcp_congestion_control'])).stdout.trim()
      )
      await ns.exec(['sysctl', '-q', '-w', `net.ipv4.tcp_congestion_control=${name}`])
    }
    return await body()
  } finally {
    for (const [i, value] of before.entries()) {
      await boxes[i]!.exec(['sysctl', '-q', '-w', `net.ipv4.tcp_congestion_control=${value}`])
    }
    writeFileSync(ALLOWED_CONGESTION, allowed)
  }
}

/** Tandem's network.conf for a bench row on `bed`. */
function tandemConfig(bed: ImpairedTestbed, sys: SystemSpec): string {
  const bdp =
    ((bed.link.rateMbit > 0 ? bed.link.rateMbit : 1000) *
      1e6 *
      Math.max(0.05, bed.link.rttMs / 1000)) /
    8
  const configured = sys.congestion !== 'unset'
  return bed.config(sys.name, {
    'tx_proxy.subflows': String(sys.subflows ?? 8),
    ...(configured ? { 'trunk.congestion': sys.congestion } : {}),
    // The README's advice for long links (8 BDPs of credit); an unconfigured row takes none of it.
    ...(configured
      ? { 'limits.max_flow_window_bytes': String(Math.max(32 * 1048576, Math.ceil(8 * bdp))) }
      : {}),
    'security.encrypt': sys.plain === true ? 'false' : 'true',
    'interception.transparent': 'false',
    ...(sys.framePayload !== undefined ? { 'trunk.frame_payload_bytes': sys.framePayload } : {}),
    ...(sys.linkRate === true && bed.link.rateMbit > 0
      ? { 'trunk.link_rate': `${bed.link.rateMbit}mbit` }
      : {})
  })
}

/** Tandem: proxies started for this run, a stream through them, CPU of both proxies. */
async function runTandem(
  bed: ImpairedTestbed,
  receivers: Receivers,
  sys: SystemSpec,
  seconds: number
): Promise<Measured> {
  const r = await runTandemSession(bed, receivers, sys, seconds, 0)
  if (r.cold === undefined) throw new Error(r.error ?? 'Tandem run failed')
  return r.cold
}

/** What one Tandem pair measured on one link: its first flow, then the flows after it. */
export interface TandemSession {
  /** The first transfer, on a cold trunk (no rate learned yet); undefined when it failed. */
  readonly cold: Measured | undefined
  /** The transfers after it, on the warm trunk the first one left. */
  readonly warm: readonly Measured[]
  /** The last failure's message, if any. */
  readonly error?: string
}

/**
 * One Tandem pair, started once, carrying `1 + warmRuns` transfers one after the other: the
 * first on a cold trunk (the pair just started, nothing learned), then `warmRuns` on the warm
 * trunk, as every flow after the first meets it on a deployed pair (its proxies run for days
 * and keep the rate they learned). Each transfer has its own CPU and trunk figures.
 */
export async function runTandemSession(
  bed: ImpairedTestbed,
  receivers: Receivers,
  sys: SystemSpec,
  seconds: number,
  warmRuns: number
): Promise<TandemSession> {
  const conf = tandemConfig(bed, sys)
  const session = async (): Promise<TandemSession> => {
    const { tx, rx } = await bed.startProxies(conf, sys.subflows ?? 8)
    const one = (): Promise<Measured> =>
      withTrunkFigures(bed.controlSocket(sys.name, 'tx'), bed.link.rttMs, seconds, () =>
        withCpu(tx, rx, seconds, () =>
          streamGoodput(bed, receivers.main, A.dst.v4, 5201, seconds, 'cubic')
        )
      )
    let cold: Measured | undefined
    const warm: Measured[] = []
    let error: string | undefined
    try {
      try {
        cold = await one()
      } catch (err) {
        error = errorMessage(err)
      }
      for (let i = 0; i < warmRuns; i++) {
        try {
          warm.push(await one())
        } catch (err) {
          error = errorMessage(err)
        }
      }
    } finally {
      await tx.stop()
      await rx.stop()
    }
    return { cold, warm, ...(error !== undefined ? { error } : {}) }
  }
  return sys.boxCongestion !== undefined
    ? withBoxCongestion(bed, sys.boxCongestion, session)
    : session()
}

/** iperf3 -P 8 from src to dst, its own server (goodput as iperf3 counts it at the receiver). */
async function runIperf3(
  bed: ImpairedTestbed,
  sys: SystemSpec,
  seconds: number
): Promise<Measured> {
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

/** kcptun between the boxes, a stream through it, CPU of its client and server. */
async function runKcptun(
  bed: ImpairedTestbed,
  receivers: Receivers,
  seconds: number
): Promise<Measured> {
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

/** Run one system once on the testbed; Mbit/s, plus CPU s/GB for Tandem and kcptun. */
export async function runOnce(
  bed: ImpairedTestbed,
  receivers: Receivers,
  sys: SystemSpec,
  seconds: number
): Promise<Measured> {
  switch (sys.kind) {
    case 'direct':
      return {
        mbit: await streamGoodput(bed, receivers.main, A.dst.v4, 5201, seconds, sys.congestion)
      }
    case 'tandem':
      return runTandem(bed, receivers, sys, seconds)
    case 'iperf3':
      return runIperf3(bed, sys, seconds)
    case 'kcptun':
      return runKcptun(bed, receivers, seconds)
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
export async function setupMptcp(bed: ImpairedTestbed, seconds: number): Promise<NsProcess> {
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
