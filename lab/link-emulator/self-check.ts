/**
 * Self-check of the link emulator: measures the emulated link between the two end namespaces
 * and compares it with the settings.
 *
 * - RTT: the median of 50 pings (a -> b) against delay ab + delay ba, within 10%.
 * - Loss: 10,000 pings at 1 ms intervals; echo requests sent and replies delivered are counted
 *   by the kernel of namespace a (/proc/net/snmp), a real count of delivered vs sent packets
 *   that a busy ping process cannot skew. A ping survives both directions, so it is compared
 *   with the round-trip loss 1 - (1 - p_ab)(1 - p_ba), within 20% relative. Round trip rather than one
 *   way: the same 10,000 packets see about twice the losses, which halves the relative noise
 *   (at 1% per direction: ~199 losses, standard deviation ~7%, so 20% is ~2.8 sigma).
 * - Rate: a UDP flow paced at 1.3x the rate limit for a few seconds, each direction in turn;
 *   the sink measures what arrives. UDP rather than TCP because a TCP transfer over a lossy
 *   link measures its congestion control (cubic gets 2.6 Mbit/s at 1% loss), not the link;
 *   overdriving the limiter measures the limiter. Rates are counted in Ethernet-frame bytes
 *   (payload + 8 UDP + 20 IPv4 + 14 Ethernet), which is what tbf and netem meter.
 *
 * This file is also the probe program the rate check runs inside the namespaces:
 *   node self-check.js udp-sink <port> <idle-ms> <deadline-ms>
 *   node self-check.js udp-source <host> <port> <mbit> <seconds> <payload-bytes>
 */
import type { ChildProcessByStdio } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { performance } from 'node:perf_hooks'
import type { Readable } from 'node:stream'
import { fileURLToPath, pathToFileURL } from 'node:url'

import { ensureTools, localRunner, type ExecResult } from './emulator.js'

/** Runs commands in one namespace (test/helpers/netns.ts `Netns` fits). */
export interface NamespaceRunner {
  /** Runs `argv` in the namespace; rejects when it fails. */
  exec(argv: readonly string[], timeoutMs?: number): Promise<ExecResult>
  /** Starts `argv` in the namespace. */
  spawn(argv: readonly string[]): ChildProcessByStdio<null, Readable, Readable>
}

/** The settings of one direction, as the emulator was given them. */
export interface DirectionTarget {
  /** One-way delay, milliseconds. */
  readonly delayMs: number
  /** Random loss, percent. */
  readonly lossPercent: number
  /** Rate limit, Mbit/s; 0 for none (the rate check is skipped). */
  readonly rateMbit: number
}

/** Relative tolerances (0.1 = 10%). */
export interface SelfCheckTolerances {
  /** RTT against the sum of the delays. */
  readonly rtt: number
  /** Measured loss against the setting. */
  readonly loss: number
  /** Measured rate against the limit. */
  readonly rate: number
}

/** What to check, and how. */
export interface SelfCheckOptions {
  /** Namespace of end a (the side of portA). */
  readonly a: NamespaceRunner
  /** Namespace of end b. */
  readonly b: NamespaceRunner
  /** IPv4 address of a. */
  readonly aAddress: string
  /** IPv4 address of b. */
  readonly bAddress: string
  /** Settings a -> b. */
  readonly ab: DirectionTarget
  /** Settings b -> a. */
  readonly ba: DirectionTarget
  /** Pings of the loss check (default 10,000). */
  readonly lossPings?: number
  /** Interval of the loss pings, milliseconds (default 1). */
  readonly lossPingIntervalMs?: number
  /** Pings of the RTT check (default 50). */
  readonly rttPings?: number
  /** Length of each rate measurement, seconds (default 3). */
  readonly rateSeconds?: number
  /** Offered load as a multiple of the rate limit (default 1.3). */
  readonly rateOverdrive?: number
  /** UDP port of the rate sink (default 5299). */
  readonly udpPort?: number
  /** Tolerances (default 10% / 20% / 10%). */
  readonly tolerances?: Partial<SelfCheckTolerances>
}

/** One checked figure. */
export interface CheckItem {
  /** What was checked. */
  readonly name: string
  /** True when `measured` is within tolerance of `expected`. */
  readonly pass: boolean
  /** The value the settings call for. */
  readonly expected: number
  /** The value measured. */
  readonly measured: number
  /** Unit of both values. */
  readonly unit: string
  /** Largest accepted |measured - expected|, in `unit`. */
  readonly allowed: number
  /** Other figures of the measurement. */
  readonly detail: Readonly<Record<string, number>>
}

/** What `selfCheck` found. */
export interface SelfCheckResult {
  /** True when every item passed. */
  readonly pass: boolean
  /** Median ping RTT. */
  readonly rtt: CheckItem
  /** Round-trip loss over the loss pings. */
  readonly loss: CheckItem
  /** Rate a -> b; undefined without a limit. */
  readonly rateAb: CheckItem | undefined
  /** Rate b -> a; undefined without a limit. */
  readonly rateBa: CheckItem | undefined
  /** Every item, for printing. */
  readonly items: readonly CheckItem[]
}

/** What the UDP sink prints when it is done. */
export interface SinkReport {
  /** Datagrams received. */
  readonly packets: number
  /** Ethernet-frame bytes received (payload + 42 per datagram). */
  readonly frameBytes: number
  /** Frame bytes of the first datagram (not part of the rate: the clock starts with it). */
  readonly firstFrameBytes: number
  /** Time between the first and the last datagram, milliseconds. */
  readonly spanMs: number
}

const DEFAULT_TOLERANCES: SelfCheckTolerances = { rtt: 0.1, loss: 0.2, rate: 0.1 }
/** Below this the RTT tolerance is absolute: the namespaces' own RTT and timer granularity. */
const RTT_MIN_ALLOWED_MS = 1
/** UDP + IPv4 + Ethernet header bytes around a datagram's payload. */
const FRAME_OVERHEAD_BYTES = 8 + 20 + 14
/** UDP payload that fills a 1500-byte MTU. */
const PAYLOAD_BYTES = 1472
/** The sink stops this long after the last datagram, milliseconds. */
const SINK_IDLE_MS = 500
/**
 * Pings the loss check may keep in flight (`ping -l`). Without a preload iputils ping slows to
 * ~150/s once replies are outstanding; it needs the RTT's worth (50 at 1 ms x 50 ms) plus every
 * ping lost so far (lost pings stay "in flight": ~200 of 10,000 at 2%). Larger is worse: ping
 * sends the preload as one burst, and a burst of replies beyond what its socket buffer holds
 * (~550 replies with the default rmem_max) is counted as loss that the link did not cause.
 * With much higher loss settings ping just runs slower.
 */
const LOSS_PING_PRELOAD = 300
/** Separates the parts of the loss check's output. */
const SNMP_SEPARATOR = '--- link-emulator self-check ---'
/** The compiled file itself, run as the probe program. */
const PROBE_SCRIPT = fileURLToPath(import.meta.url)

/**
 * Measures RTT, loss and rate between the end namespaces and compares them with the settings.
 * Installs ping with apt-get when it is missing (in this process's namespace, which must reach a
 * mirror). Runs ~20 s with the defaults.
 */
export async function selfCheck(options: SelfCheckOptions): Promise<SelfCheckResult> {
  const tol = { ...DEFAULT_TOLERANCES, ...options.tolerances }
  await ensureTools(localRunner(), ['ping'])
  const rtt = await checkRtt(options, tol.rtt)
  const loss = await checkLoss(options, tol.loss)
  const rateAb =
    options.ab.rateMbit > 0
      ? await checkRate(
          options,
          options.b,
          options.a,
          options.bAddress,
          options.ab,
          'rate a->b',
          tol.rate
        )
      : undefined
  const rateBa =
    options.ba.rateMbit > 0
      ? await checkRate(
          options,
          options.a,
          options.b,
          options.aAddress,
          options.ba,
          'rate b->a',
          tol.rate
        )
      : undefined
  const items = [rtt, loss, rateAb, rateBa].filter((i): i is CheckItem => i !== undefined)
  return { pass: items.every((i) => i.pass), rtt, loss, rateAb, rateBa, items }
}

/** One line per item: `name: measured unit (expected X ± Y) PASS|FAIL; detail`. */
export function formatSelfCheck(result: SelfCheckResult): string {
  return result.items
    .map((i) => {
      const detail = Object.entries(i.detail)
        .map(([k, v]) => `${k} ${round(v)}`)
        .join(', ')
      return (
        `${i.name}: ${round(i.measured)} ${i.unit} (expected ${round(i.expected)} ± ` +
        `${round(i.allowed)}) ${i.pass ? 'PASS' : 'FAIL'}; ${detail}`
      )
    })
    .join('\n')
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000
}

function item(
  name: string,
  expected: number,
  measured: number,
  unit: string,
  allowed: number,
  detail: Record<string, number>
): CheckItem {
  return {
    name,
    pass: Math.abs(measured - expected) <= allowed,
    expected,
    measured,
    unit,
    allowed,
    detail
  }
}

async function checkRtt(options: SelfCheckOptions, tolerance: number): Promise<CheckItem> {
  const count = options.rttPings ?? 50
  const { stdout } = await options.a.exec(
    ['ping', '-n', '-c', `${count}`, '-i', '0.02', '-W', '2', options.bAddress],
    60_000
  )
  const times = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]))
  if (times.length === 0) {
    throw new Error(`no ping replies from ${options.bAddress}:\n${stdout}`)
  }
  times.sort((x, y) => x - y)
  const median = times[Math.floor(times.length / 2)]!
  const expected = options.ab.delayMs + options.ba.delayMs
  return item('rtt', expected, median, 'ms', Math.max(RTT_MIN_ALLOWED_MS, tolerance * expected), {
    min: times[0]!,
    max: times[times.length - 1]!,
    mean: times.reduce((s, x) => s + x, 0) / times.length,
    replies: times.length
  })
}

async function checkLoss(options: SelfCheckOptions, tolerance: number): Promise<CheckItem> {
  const count = options.lossPings ?? 10_000
  const intervalS = (options.lossPingIntervalMs ?? 1) / 1000
  // The kernel's ICMP counters of namespace a, read before and after, count what a sent and
  // what came back to its IP stack; ping's own tally would also count replies its socket or
  // scheduling lost, which on a busy machine is not the link. A short sleep lets stragglers in.
  // ping exits 1 when some replies are missing: that is the measurement, not a failure.
  const { stdout } = await options.a.exec(
    [
      'sh',
      '-c',
      `cat /proc/net/snmp; echo ${SNMP_SEPARATOR}; ` +
        `ping -n -q -c ${count} -i ${intervalS} -l ${LOSS_PING_PRELOAD} -W 2 ${options.bAddress}; ` +
        `sleep 0.5; echo ${SNMP_SEPARATOR}; cat /proc/net/snmp`
    ],
    count * (options.lossPingIntervalMs ?? 1) * 3 + 30_000
  )
  const [snmpBefore = '', pingOutput = '', snmpAfter = ''] = stdout.split(`${SNMP_SEPARATOR}\n`)
  const m = /(\d+) packets transmitted, (\d+) received/.exec(pingOutput)
  if (m === null) {
    throw new Error(`cannot read ping's summary:\n${stdout}`)
  }
  const before = icmpCounters(snmpBefore)
  const after = icmpCounters(snmpAfter)
  const sent = after.OutEchos - before.OutEchos
  const received = after.InEchoReps - before.InEchoReps
  if (!(sent > 0)) {
    throw new Error(`no echo requests counted in /proc/net/snmp:\n${stdout}`)
  }
  const measured = (100 * (sent - received)) / sent
  const expected =
    100 * (1 - (1 - options.ab.lossPercent / 100) * (1 - options.ba.lossPercent / 100))
  // With no loss set, allow one stray loss in 10,000 rather than a relative zero.
  const allowed = expected > 0 ? tolerance * expected : 100 / sent
  return item('round-trip loss', expected, measured, '%', allowed, {
    sent,
    received,
    pingSent: Number(m[1]),
    pingReceived: Number(m[2]),
    // One direction's loss if both are equal: 1 - sqrt(1 - L).
    perDirectionPercent: 100 * (1 - Math.sqrt(1 - measured / 100))
  })
}

/** The `Icmp:` counters of a /proc/net/snmp text (a header line, then a value line). */
function icmpCounters(snmp: string): { OutEchos: number; InEchoReps: number } {
  const lines = snmp.split('\n').filter((l) => l.startsWith('Icmp: '))
  const names = lines[0]?.split(/\s+/) ?? []
  const values = lines[1]?.split(/\s+/).map(Number) ?? []
  const get = (name: string): number => {
    const at = names.indexOf(name)
    const v = at < 0 ? undefined : values[at]
    if (v === undefined || Number.isNaN(v)) {
      throw new Error(`no Icmp ${name} in /proc/net/snmp:\n${snmp}`)
    }
    return v
  }
  return { OutEchos: get('OutEchos'), InEchoReps: get('InEchoReps') }
}

async function checkRate(
  options: SelfCheckOptions,
  sinkNs: NamespaceRunner,
  sourceNs: NamespaceRunner,
  sinkAddress: string,
  target: DirectionTarget,
  name: string,
  tolerance: number
): Promise<CheckItem> {
  const port = options.udpPort ?? 5299
  const seconds = options.rateSeconds ?? 3
  const offeredMbit = target.rateMbit * (options.rateOverdrive ?? 1.3)
  const deadlineMs = (seconds + 10) * 1000
  const sink = sinkNs.spawn([
    process.execPath,
    PROBE_SCRIPT,
    'udp-sink',
    `${port}`,
    `${SINK_IDLE_MS}`,
    `${deadlineMs}`
  ])
  const sinkLines = readLines(sink.stdout)
  let stderr = ''
  sink.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = new Promise<number | null>((resolve) => {
    sink.on('exit', (code) => {
      resolve(code)
    })
  })
  try {
    const first = await sinkLines.next()
    if (first.done === true || first.value !== 'listening') {
      throw new Error(`udp sink did not start: ${stderr}`)
    }
    await sourceNs.exec(
      [process.execPath, PROBE_SCRIPT, 'udp-source', sinkAddress, `${port}`].concat([
        `${offeredMbit}`,
        `${seconds}`,
        `${PAYLOAD_BYTES}`
      ]),
      deadlineMs
    )
    const result = await sinkLines.next()
    if (result.done === true) {
      throw new Error(`udp sink gave no result: ${stderr}`)
    }
    const report = JSON.parse(result.value) as SinkReport
    const measured =
      report.spanMs > 0
        ? ((report.frameBytes - report.firstFrameBytes) * 8) / (report.spanMs * 1000)
        : 0
    return item(name, target.rateMbit, measured, 'Mbit/s', tolerance * target.rateMbit, {
      offeredMbit,
      packets: report.packets,
      seconds: report.spanMs / 1000
    })
  } finally {
    sink.kill('SIGTERM')
    await exited
  }
}

/** Lines of a readable stream, as an async iterator. */
async function* readLines(stream: Readable): AsyncGenerator<string> {
  let buffered = ''
  for await (const chunk of stream) {
    buffered += (chunk as Buffer).toString()
    let nl = buffered.indexOf('\n')
    while (nl >= 0) {
      yield buffered.slice(0, nl)
      buffered = buffered.slice(nl + 1)
      nl = buffered.indexOf('\n')
    }
  }
}

/**
 * Receives datagrams until `idleMs` pass without one (after the first) or `deadlineMs` after
 * start; prints `listening` once bound and a SinkReport line at the end.
 */
function runUdpSink(port: number, idleMs: number, deadlineMs: number): void {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 8 * 1024 * 1024 })
  let packets = 0
  let frameBytes = 0
  let firstFrameBytes = 0
  let firstMs = 0
  let lastMs = 0
  let idleTimer: NodeJS.Timeout | undefined
  const finish = (): void => {
    clearTimeout(deadline)
    clearTimeout(idleTimer)
    const report: SinkReport = { packets, frameBytes, firstFrameBytes, spanMs: lastMs - firstMs }
    process.stdout.write(`${JSON.stringify(report)}\n`)
    socket.close()
  }
  const deadline = setTimeout(finish, deadlineMs)
  socket.on('message', (msg) => {
    const now = performance.now()
    const bytes = msg.length + FRAME_OVERHEAD_BYTES
    if (packets === 0) {
      firstMs = now
      firstFrameBytes = bytes
      idleTimer = setTimeout(function sinkOnIdle() {
        if (performance.now() - lastMs >= idleMs) {
          finish()
        } else {
          idleTimer = setTimeout(sinkOnIdle, idleMs)
        }
      }, idleMs)
    }
    packets++
    frameBytes += bytes
    lastMs = now
  })
  socket.bind(port, () => {
    process.stdout.write('listening\n')
  })
}

/**
 * Sends `payloadBytes` datagrams to host:port for `seconds`, paced to `mbit` counted in frame
 * bytes. Pacing is by elapsed time every millisecond, with a cap per tick so a stalled loop does
 * not turn into one huge burst.
 */
function runUdpSource(
  host: string,
  port: number,
  mbit: number,
  seconds: number,
  payloadBytes: number
): void {
  const socket = createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 })
  const payload = Buffer.alloc(payloadBytes, 0x5a)
  const frameBits = (payloadBytes + FRAME_OVERHEAD_BYTES) * 8
  const packetsPerMs = (mbit * 1000) / frameBits
  const maxPerTick = Math.ceil(packetsPerMs * 4)
  socket.connect(port, host, () => {
    const start = performance.now()
    let sent = 0
    const tick = setInterval(() => {
      const elapsed = performance.now() - start
      if (elapsed >= seconds * 1000) {
        clearInterval(tick)
        socket.close()
        return
      }
      const due = Math.min(Math.floor(elapsed * packetsPerMs) - sent, maxPerTick)
      for (let i = 0; i < due; i++) {
        socket.send(payload)
      }
      sent += Math.max(0, due)
    }, 1)
  })
}

function probeMain(argv: readonly string[]): void {
  const [role, ...rest] = argv
  const n = rest.map(Number)
  if (role === 'udp-sink' && rest.length === 3 && n.every(Number.isFinite)) {
    runUdpSink(n[0]!, n[1]!, n[2]!)
  } else if (role === 'udp-source' && rest.length === 5 && n.slice(1).every(Number.isFinite)) {
    runUdpSource(rest[0]!, n[1]!, n[2]!, n[3]!, n[4]!)
  } else {
    process.stderr.write(
      'usage: self-check.js udp-sink PORT IDLE_MS DEADLINE_MS | udp-source HOST PORT MBIT SECONDS PAYLOAD\n'
    )
    process.exitCode = 2
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  probeMain(process.argv.slice(2))
}
