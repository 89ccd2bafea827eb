/**
 * The two-path testbed (root only): the five-namespace line plus a second, separate path
 * between the tx and rx boxes through a wan box of its own, so each path can be impaired,
 * shaped or cut on its own:
 *
 *   src ── tx box ─ br0 .201 ── wan (bridge) ── .202 br0 ─ rx box ── dst        path a
 *                 └ pb 10.9.0.1 ── wanB (bridge) ── 10.9.0.2 pb ┘               path b
 *
 * Path a is the topology's own line (192.168.2.0/24); path b is a veth from each box into the
 * wanB namespace, whose bridge joins them (10.9.0.0/24). Both wan boxes have
 * bridge-nf-call-iptables on, so iptables (FORWARD) and the link emulator's physdev rules see
 * the bridged packets there. Offloads are off on every interface of both paths.
 *
 * The proxies run in static mode (`tx_proxy.destination`, no interception, no transparency):
 * src connects to tx_proxy on 192.168.2.201, which dials two subflows on each path
 * (`[path.a]`, `[path.b]`), and rx_proxy (listening on `::`) connects to dst.
 *
 * Run as a script, this module is also the duplex receiver the tests put in dst
 * (`node two-path.js duplex-receiver --port P --reply-bytes N`): it counts the connections
 * it accepts, sends a generated reply while it reads (both directions at once), and reports
 * hashes, how each connection ended, the longest gap between data arrivals and a time series
 * of received bytes (JSON lines on stdout).
 *
 * Cleanup rests on netns.ts (namespaces, and the processes in them, go on every exit path);
 * `destroy()` also stops processes gracefully and removes the temporary directory.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { GeneratedData, parseSize } from '../../src/tools/harness.js'
import { createNetns, type AfterHook, type Netns } from './netns.js'
import { dist, labDist, startIn, type NsProcess } from './ns-process.js'
import {
  createTopology,
  PROJECT_ROOT,
  TOPOLOGY_ADDRESSES,
  type ConfigOverrides,
  type Topology,
  type TopologyNamespaces
} from './topology.js'

/** The two paths by name, as in `[path.a]` and `[path.b]`. */
export type PathName = 'a' | 'b'

/** Addresses of the two paths (tx side `local`, rx side `peer`) and of the end hosts. */
export const TWO_PATH_ADDRESSES = {
  a: { local: TOPOLOGY_ADDRESSES.tx.v4, peer: TOPOLOGY_ADDRESSES.rx.v4, prefixLength: 24 },
  b: { local: '10.9.0.1', peer: '10.9.0.2', prefixLength: 24 },
  src: TOPOLOGY_ADDRESSES.src.v4,
  dst: TOPOLOGY_ADDRESSES.dst.v4
} as const

/** Port rx_proxy listens on for subflows (both paths). */
export const TWO_PATH_RX_PORT = 6000
/** Port tx_proxy listens on for clients (on the tx box's br0 address). */
export const TWO_PATH_TX_PORT = 5000

/** One path's interfaces. */
export interface PathInterfaces {
  /** The tx box's interface on this path (`ip link set … down` cuts the path there). */
  readonly tx: string
  /** The rx box's interface on this path. */
  readonly rx: string
  /** The path's wan box: its bridge and ports (packets entering `toRx` travel tx → rx). */
  readonly wan: { readonly bridge: string; readonly toTx: string; readonly toRx: string }
}

/** A path's impairment by the link emulator (each direction alike). */
export interface PathImpairment {
  /** One-way delay, ms. */
  readonly delayMs?: number
  /** Random loss, percent. */
  readonly lossPercent?: number
  /** Rate limit (tbf), Mbit/s; 0 or absent: none. */
  readonly rateMbit?: number
}

/** A written network.conf and the control sockets it names. */
export interface TwoPathConfig {
  readonly path: string
  readonly txControl: string
  readonly rxControl: string
}

/** What `config()` takes. */
export interface TwoPathConfigOptions {
  /** Port of the service in dst that every flow goes to. */
  readonly destinationPort: number
  /** Paths tx_proxy dials (default both). */
  readonly paths?: readonly PathName[]
  /** Subflows per path (default 2). */
  readonly subflowsPerPath?: number
  /** Applied last. */
  readonly overrides?: ConfigOverrides
}

/** A live two-path testbed. */
export interface TwoPathTestbed {
  readonly topo: Topology
  /** The five namespaces of the line plus `wanB`, path b's wan box. */
  readonly ns: TopologyNamespaces & { readonly wanB: Netns }
  readonly interfaces: { readonly a: PathInterfaces; readonly b: PathInterfaces }
  /** Temporary directory for configs and control sockets (removed by destroy). */
  readonly dir: string
  /** The wan box of `path`. */
  wanOf(path: PathName): Netns
  /**
   * Writes a network.conf (through the topology's `writeConfig`, so keys it adds itself are
   * kept) for static mode with `[path.a]` and/or `[path.b]`.
   */
  config(name: string, options: TwoPathConfigOptions): TwoPathConfig
  /** Starts rx_proxy then tx_proxy with `conf`; resolves once `subflows` are up. */
  startProxies(conf: TwoPathConfig, subflows: number): Promise<{ tx: NsProcess; rx: NsProcess }>
  /** Starts `argv` in `ns`, stopped by `stopAll()`/`destroy()`. */
  start(ns: Netns, argv: readonly string[], name: string): NsProcess
  /** Starts the duplex receiver in dst; resolves once it listens. */
  startReceiver(port: number, replyBytes: number): Promise<NsProcess>
  /**
   * Starts `./stream` in src towards tx_proxy (192.168.2.201:5000) with `args` (e.g.
   * `--bytes 64MiB`); `--json --quiet` are added.
   */
  startStream(args: readonly string[]): NsProcess
  /** Starts the link emulator on `path`'s wan box; resolves once its rules are in place. */
  impair(path: PathName, spec: PathImpairment): Promise<NsProcess>
  /** Stops every process started through this testbed (last started first). */
  stopAll(): Promise<void>
  /** Everything down: processes, namespaces, temporary directory. Idempotent. */
  destroy(): Promise<void>
}

/** Options of createTwoPathTestbed. */
export interface TwoPathOptions {
  /** Namespace name prefix (at most 4 characters keeps names within 15). */
  readonly prefix: string
  /** A TestContext or suite: everything is removed when it ends (a safety net for destroy()). */
  readonly hook?: AfterHook
}

/** Interfaces of `ns` other than lo. */
async function interfacesOf(ns: Netns): Promise<string[]> {
  const r = await ns.exec(['ip', '-o', 'link', 'show'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'lo')
}

/** Sets sysctl `key` inside `ns` through /proc (procps may be missing). */
async function setSysctl(ns: Netns, key: string, value: string): Promise<void> {
  const path = `/proc/sys/${key.replace(/\./g, '/')}`
  await ns.exec(['sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sysctl', value, path])
}

/** Builds the testbed. On failure everything created so far is removed before rethrowing. */
export async function createTwoPathTestbed(options: TwoPathOptions): Promise<TwoPathTestbed> {
  const { prefix } = options
  const pid = process.pid
  const topo = await createTopology({
    prefix,
    ipv6: false,
    applyRules: false,
    wanNetfilter: true
  })
  const dir = mkdtempSync(join(tmpdir(), `tandem-${prefix}-`))
  const procs: NsProcess[] = []
  let wanB: Netns | undefined
  let destroyed = false
  const destroyNow = (): void => {
    if (destroyed) return
    destroyed = true
    // Deleting a namespace kills what runs in it (netns.ts), so this is safe on any path.
    wanB?.destroy()
    topo.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
  options.hook?.after(destroyNow)

  const names = topo.interfaces
  const interfaces = {
    a: { tx: names.tx.wan, rx: names.rx.wan, wan: names.wan },
    b: {
      tx: `pb${pid}`,
      rx: `pb${pid}`,
      wan: { bridge: `bw${pid}`, toTx: `btx${pid}`, toRx: `brx${pid}` }
    }
  } as const
  try {
    const wb = createNetns(prefix)
    wanB = wb
    const { tx, rx } = topo.ns
    const b = interfaces.b
    await wb.exec(['ip', 'link', 'set', 'lo', 'up'])
    // Both veths are created inside the boxes with their peer sent straight to wanB: nothing
    // ever appears in the root namespace.
    const pair = (dev: string, peer: string): string[] => [
      'ip',
      'link',
      'add',
      dev,
      'type',
      'veth',
      'peer',
      'name',
      peer,
      'netns',
      wb.name
    ]
    await tx.exec(pair(b.tx, b.wan.toTx))
    await rx.exec(pair(b.rx, b.wan.toRx))
    await wb.exec(['ip', 'link', 'add', 'name', b.wan.bridge, 'type', 'bridge'])
    for (const port of [b.wan.toTx, b.wan.toRx]) {
      await wb.exec(['ip', 'link', 'set', port, 'master', b.wan.bridge, 'up'])
    }
    await wb.exec(['ip', 'link', 'set', b.wan.bridge, 'up'])
    // The link emulator's physdev rules and the faults' FORWARD rules need bridged IPv4 to
    // pass iptables here (it is the default in a new namespace; set it to be sure).
    await setSysctl(wb, 'net.bridge.bridge-nf-call-iptables', '1')
    const addr = TWO_PATH_ADDRESSES.b
    await tx.exec(['ip', 'addr', 'add', `${addr.local}/${addr.prefixLength}`, 'dev', b.tx])
    await tx.exec(['ip', 'link', 'set', b.tx, 'up'])
    await rx.exec(['ip', 'addr', 'add', `${addr.peer}/${addr.prefixLength}`, 'dev', b.rx])
    await rx.exec(['ip', 'link', 'set', b.rx, 'up'])

    // Offloads off everywhere: with them on, one "packet" at a wan box can be a 64 KB
    // super-packet, and one emulated drop loses ~40 real ones (testbed notes).
    const all = [topo.ns.src, tx, topo.ns.wan, wb, rx, topo.ns.dst]
    for (const ns of all) {
      for (const dev of await interfacesOf(ns)) {
        await ns.exec(['ethtool', '-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off'])
      }
      // Comparable runs: no cached slow-start state per destination.
      await setSysctl(ns, 'net.ipv4.tcp_no_metrics_save', '1')
    }
    const tune = join(PROJECT_ROOT, 'scripts', 'tune-box.sh')
    const tuned: [Netns, string, string][] = [
      [tx, TWO_PATH_ADDRESSES.a.peer, names.tx.bridge],
      [tx, addr.peer, b.tx],
      [rx, TWO_PATH_ADDRESSES.a.local, names.rx.bridge],
      [rx, addr.local, b.rx]
    ]
    for (const [ns, peer, dev] of tuned) await ns.exec(['sh', tune, '--peer', peer, '--dev', dev])
  } catch (err) {
    destroyNow()
    throw err
  }
  const wanBox = wanB

  const start = (ns: Netns, argv: readonly string[], name: string): NsProcess => {
    const p = startIn(ns, argv, name)
    procs.push(p)
    return p
  }
  const stopAll = async (): Promise<void> => {
    while (procs.length > 0) await procs.pop()?.stop()
  }

  return {
    topo,
    ns: { ...topo.ns, wanB: wanBox },
    interfaces,
    dir,
    wanOf: (path) => (path === 'a' ? topo.ns.wan : wanBox),
    config(name, opts) {
      const paths = opts.paths ?? ['a', 'b']
      const perPath = String(opts.subflowsPerPath ?? 2)
      const path = join(dir, `${name}.conf`)
      const txControl = join(dir, `${name}-tx.sock`)
      const rxControl = join(dir, `${name}-rx.sock`)
      const values: Record<string, string> = {
        'tx_proxy.local_ip': TWO_PATH_ADDRESSES.a.local,
        'tx_proxy.local_port': String(TWO_PATH_TX_PORT),
        'tx_proxy.destination': `${TWO_PATH_ADDRESSES.dst}:${opts.destinationPort}`,
        'tx_proxy.rx_proxy_port': String(TWO_PATH_RX_PORT),
        'tx_proxy.control_socket': txControl,
        'rx_proxy.recv_ip': '::',
        'rx_proxy.recv_port': String(TWO_PATH_RX_PORT),
        'rx_proxy.control_socket': rxControl,
        'interception.enabled': 'false',
        'interception.transparent': 'false'
      }
      for (const p of paths) {
        values[`path.${p}.local_ip`] = TWO_PATH_ADDRESSES[p].local
        values[`path.${p}.peer_ip`] = TWO_PATH_ADDRESSES[p].peer
        values[`path.${p}.subflows`] = perPath
      }
      topo.writeConfig(path, { ...values, ...opts.overrides })
      return { path, txControl, rxControl }
    },
    async startProxies(conf, subflows) {
      const rx = start(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', conf.path], 'rx_proxy')
      await rx.waitFor(/listening on/)
      const tx = start(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', conf.path], 'tx_proxy')
      await tx.waitFor(new RegExp(`(subflow up(.|\\n)*){${subflows}}`), 30_000)
      return { tx, rx }
    },
    start,
    async startReceiver(port, replyBytes) {
      const p = start(
        topo.ns.dst,
        [
          fileURLToPath(import.meta.url),
          DUPLEX_RECEIVER_COMMAND,
          '--port',
          String(port),
          '--reply-bytes',
          String(replyBytes)
        ],
        `receiver:${port}`
      )
      await p.waitFor(/listening on/)
      return p
    },
    startStream(args) {
      return start(
        topo.ns.src,
        [
          dist('tools/stream.js'),
          TWO_PATH_ADDRESSES.a.local,
          String(TWO_PATH_TX_PORT),
          ...args,
          '--json',
          '--quiet'
        ],
        'stream'
      )
    },
    async impair(path, spec) {
      const w = interfaces[path].wan
      const p = start(
        path === 'a' ? topo.ns.wan : wanBox,
        [
          labDist('link-emulator/main.js'),
          '--port-a',
          w.toTx,
          '--port-b',
          w.toRx,
          '--delay-ms',
          String(spec.delayMs ?? 0),
          '--loss',
          String(spec.lossPercent ?? 0),
          '--rate-mbit',
          String(spec.rateMbit ?? 0),
          // Path a and path b run an emulator each, in different namespaces: queue numbers
          // are per namespace, but distinct ones keep logs unambiguous.
          '--queue-ab',
          path === 'a' ? '10' : '20',
          '--queue-ba',
          path === 'a' ? '11' : '21',
          '--json'
        ],
        `link-emulator:${path}`
      )
      await p.waitFor(/"event":"ready"/, 30_000)
      return p
    },
    stopAll,
    async destroy() {
      await stopAll()
      destroyNow()
    }
  }
}

// ---- faults and polling -------------------------------------------------------------------
//
// Ways to kill one subflow (or a whole path) from outside the proxies, each undone by
// `restore()`, plus the polling helpers the netns tests and the path benchmark measure with
// (test/helpers/faults.ts re-exports them). Kill methods, from loudest to quietest:
// - `ss-kill`: `ss -K` on the subflow's socket in the tx box (SOCK_DESTROY: the local socket
//   fails with ECONNABORTED and the peer gets a RST).
// - `rst-inject`: an iptables rule in the tx box answers the subflow's next outgoing segment
//   with a TCP reset (REJECT --reject-with tcp-reset in OUTPUT resets the local socket).
//   The rule stays until `restore()`, so a reset subflow cannot come back on the same port.
// - `silent-drop`: the subflow's packets are dropped both ways in its path's wan box
//   (FORWARD): neither end hears anything, only the proxies' ping timeout finds out.
// - `link-down`: `ip link set DEV down` on the tx box's interface of the path (every subflow
//   of that path loses its link; nothing is signalled to the sockets) and up on restore.
// Subflow stats in the proxies' status carry no ports: sockets are found with `ss` in the tx
// box (established connections to rx_proxy's port).

/** The four ways to kill a subflow, in the order the resilience test rotates them. */
export const KILL_METHODS = ['ss-kill', 'rst-inject', 'silent-drop', 'link-down'] as const
/** One kill method. */
export type KillMethod = (typeof KILL_METHODS)[number]

/** One subflow's TCP connection as the tx box sees it. */
export interface SubflowSocket {
  readonly localAddress: string
  readonly localPort: number
  readonly peerAddress: string
  readonly peerPort: number
  /** Bytes sent and not yet acknowledged (ss's Send-Q): non-zero while it carries data. */
  readonly sendQueue: number
}

/** A fault in place. */
export interface ActiveFault {
  readonly method: KillMethod | 'black-hole'
  /** One line for logs: what was hit, and how. */
  readonly description: string
  /** Undo it (rules removed, link up). Idempotent. */
  restore(): Promise<void>
}

/** Established connections from `ns` to `peerPort` (the subflows when `ns` is the tx box). */
export async function subflowSockets(ns: Netns, peerPort: number): Promise<SubflowSocket[]> {
  const r = await ns.exec(['ss', '-tnH', 'state', 'established', `( dport = :${peerPort} )`])
  const out: SubflowSocket[] = []
  for (const line of r.stdout.split('\n')) {
    // Recv-Q Send-Q Local:Port Peer:Port (state is left out when one is asked for)
    const cols = line.trim().split(/\s+/)
    const local = /^(.*):(\d+)$/.exec(cols[2] ?? '')
    const peer = /^(.*):(\d+)$/.exec(cols[3] ?? '')
    if (local === null || peer === null) continue
    out.push({
      localAddress: local[1]!.replace(/^\[?::ffff:/, '').replace(/\]$/, ''),
      localPort: Number(local[2]),
      peerAddress: peer[1]!.replace(/^\[?::ffff:/, '').replace(/\]$/, ''),
      peerPort: Number(peer[2]),
      sendQueue: Number(cols[1] ?? 0)
    })
  }
  return out
}

/** Runs each undo step once, in reverse order; keeps going past a failing step. */
function undoable(
  method: ActiveFault['method'],
  description: string,
  steps: (() => Promise<unknown>)[]
): ActiveFault {
  let restored = false
  return {
    method,
    description,
    async restore() {
      if (restored) return
      restored = true
      const errors: unknown[] = []
      for (const step of [...steps].reverse()) {
        try {
          await step()
        } catch (err) {
          errors.push(err)
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, `restoring ${description} failed`)
    }
  }
}

/** Inserts iptables `rule` (filter table) in `ns`; returns the step that deletes it. */
async function insertRule(
  ns: Netns,
  chain: string,
  rule: readonly string[]
): Promise<() => Promise<unknown>> {
  await ns.exec(['iptables', '-w', '-I', chain, ...rule])
  return () => ns.exec(['iptables', '-w', '-D', chain, ...rule])
}

/** (a) `ss -K` the subflow's socket in `txBox`. Nothing to restore. */
export async function ssKill(txBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  await txBox.exec([
    'ss',
    '-K',
    'dst',
    s.peerAddress,
    'dport',
    '=',
    `:${s.peerPort}`,
    'sport',
    '=',
    `:${s.localPort}`
  ])
  return undoable('ss-kill', `ss -K :${s.localPort} -> ${s.peerAddress}`, [])
}

/** (b) A TCP reset for the subflow's next segment, from an iptables rule in `txBox`. */
export async function injectReset(txBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  const rule = [
    '-p',
    'tcp',
    '-s',
    s.localAddress,
    '--sport',
    String(s.localPort),
    '-d',
    s.peerAddress,
    '--dport',
    String(s.peerPort),
    '-j',
    'REJECT',
    '--reject-with',
    'tcp-reset'
  ]
  const del = await insertRule(txBox, 'OUTPUT', rule)
  return undoable('rst-inject', `REJECT tcp-reset :${s.localPort} -> ${s.peerAddress}`, [del])
}

/** (c) Every packet of the subflow dropped, both ways, in its path's wan box (bridged: FORWARD). */
export async function silentDrop(wanBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  const out = ['-p', 'tcp', '--sport', String(s.localPort), '-j', 'DROP']
  const back = ['-p', 'tcp', '--dport', String(s.localPort), '-j', 'DROP']
  const steps = [await insertRule(wanBox, 'FORWARD', out)]
  steps.push(await insertRule(wanBox, 'FORWARD', back))
  return undoable(
    'silent-drop',
    `DROP :${s.localPort} <-> ${s.peerAddress} in ${wanBox.name}`,
    steps
  )
}

/** (d) `ip link set dev down` in `ns`; up again on restore. */
export async function linkDown(ns: Netns, dev: string): Promise<ActiveFault> {
  await ns.exec(['ip', 'link', 'set', 'dev', dev, 'down'])
  return undoable('link-down', `link ${dev} down in ${ns.name}`, [
    () => ns.exec(['ip', 'link', 'set', 'dev', dev, 'up'])
  ])
}

/** Every packet crossing `wanBox`'s bridge dropped, both ways, until restore. */
export async function blackHole(wanBox: Netns): Promise<ActiveFault> {
  const del = await insertRule(wanBox, 'FORWARD', ['-j', 'DROP'])
  return undoable('black-hole', `black hole in ${wanBox.name}`, [del])
}

/**
 * Keeps every fault a test made, so that an `after` hook can restore what an assertion left in
 * place (a failing test must not leave a path cut for the next one).
 */
export class FaultLedger {
  private readonly faults: ActiveFault[] = []

  /** Record `fault` and return it. */
  add(fault: ActiveFault): ActiveFault {
    this.faults.push(fault)
    return fault
  }

  /** Restore everything still in place (idempotent per fault), newest first. */
  async restoreAll(): Promise<void> {
    while (this.faults.length > 0) await this.faults.pop()?.restore()
  }
}

/**
 * Polls `check` every `intervalMs` until it returns true; resolves with the milliseconds it
 * took. Rejects after `timeoutMs` with `what` in the message. No fixed sleeps: a test waits
 * exactly as long as the condition needs.
 */
export async function pollUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 25
): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    const elapsed = performance.now() - started
    if (elapsed > timeoutMs) {
      throw new Error(`${what}: not within ${timeoutMs} ms`)
    }
    await sleep(Math.min(intervalMs, Math.max(1, timeoutMs - elapsed)))
  }
}

/** Resolves at wall-clock time `atMs` (`wallMs()` scale); at once if it has passed. */
export async function sleepUntil(atMs: number): Promise<void> {
  const wait = atMs - wallMs()
  if (wait > 0) await sleep(wait)
}

// ---- the duplex receiver --------------------------------------------------------------------

/** argv[2] that runs this module as the duplex receiver. */
export const DUPLEX_RECEIVER_COMMAND = 'duplex-receiver'
/** Seed of the receiver's reply (the senders' ./stream uses 1 by default: keep them apart). */
export const DUPLEX_REPLY_SEED = 2
/** Period of the received-bytes samples in the final report, ms. */
const SAMPLE_INTERVAL_MS = 20
/** Period of progress lines while a connection runs, ms. */
const PROGRESS_INTERVAL_MS = 250
/** Bytes per reply write. */
const REPLY_WRITE_BYTES = 64 * 1024

/** Wall-clock milliseconds with sub-ms precision, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now()
}

/** One connection's report (`"event":"done"` line). */
export interface DuplexReport {
  readonly event: 'done'
  /** 1 for the first connection accepted. */
  readonly connection: number
  /** How the peer's stream ended: 'end' (FIN) or the error code (ECONNRESET…). */
  readonly ending: string
  readonly receivedBytes: number
  readonly receivedSha256: string
  /** Reply bytes written and accepted by the socket. */
  readonly replyBytes: number
  readonly replySha256: string
  /** True when the whole reply was written and the socket ended. */
  readonly replyComplete: boolean
  /** Wall-clock ms (`wallMs`) of the first and the last data arrival. */
  readonly firstByteAt: number
  readonly lastByteAt: number
  /** Longest time between two consecutive data arrivals, ms, and when that gap ended. */
  readonly maxGapMs: number
  readonly maxGapEndAt: number
  /** [wallMs, cumulative bytes received] every SAMPLE_INTERVAL_MS while the connection ran. */
  readonly samples: readonly (readonly [number, number])[]
}

/** A progress line (`"event":"progress"`). */
export interface DuplexProgress {
  readonly event: 'progress'
  readonly connection: number
  readonly at: number
  readonly bytes: number
}

/** What the duplex receiver printed so far. */
export interface ReceiverView {
  /** Connections accepted. */
  readonly accepted: number
  /** Bytes received on the latest connection, from its latest progress line or report. */
  readonly receivedBytes: number
  /** Reports of the connections that ended, in order. */
  readonly reports: readonly DuplexReport[]
}

/** Parses the duplex receiver's output (JSON lines). */
export function readReceiver(p: NsProcess): ReceiverView {
  let accepted = 0
  let receivedBytes = 0
  const reports: DuplexReport[] = []
  for (const line of p.output().split('\n')) {
    if (!line.startsWith('{')) continue
    const r = JSON.parse(line) as { event: string; bytes?: number; receivedBytes?: number }
    if (r.event === 'accepted') accepted++
    else if (r.event === 'progress') receivedBytes = r.bytes ?? receivedBytes
    else if (r.event === 'done') {
      reports.push(r as unknown as DuplexReport)
      receivedBytes = r.receivedBytes ?? receivedBytes
    }
  }
  return { accepted, receivedBytes, reports }
}

/** `./stream --json`'s result line (the fields the tests use). */
export interface StreamReport {
  readonly ok: boolean
  readonly sentBytes?: number
  readonly sentSha256?: string
  readonly replyBytes?: number
  readonly replySha256?: string
  readonly error?: { readonly code: string; readonly message: string }
}

/** The last JSON line `./stream --json` printed, or undefined. */
export function readStream(p: NsProcess): StreamReport | undefined {
  const lines = p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
  const last = lines[lines.length - 1]
  return last === undefined ? undefined : (JSON.parse(last) as StreamReport)
}

/**
 * Goodput in Mbit/s from a report's samples between `fromMs` and `toMs` (wall clock),
 * interpolating between samples.
 */
export function rateMbit(
  samples: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number
): number {
  const at = (t: number): number => {
    let prev: readonly [number, number] | undefined
    for (const s of samples) {
      if (s[0] >= t) {
        if (prev === undefined || s[0] === prev[0]) return s[1]
        return prev[1] + ((s[1] - prev[1]) * (t - prev[0])) / (s[0] - prev[0])
      }
      prev = s
    }
    return prev?.[1] ?? 0
  }
  return toMs > fromMs ? ((at(toMs) - at(fromMs)) * 8) / ((toMs - fromMs) * 1000) : 0
}

/**
 * Goodput in Mbit/s between `fromMs` and `toMs` (wall clock) as the least-squares slope of the
 * received-bytes samples: delivery through a reorder buffer comes in bursts, and a plain
 * difference between two instants moves by a whole burst with where the window edges fall.
 */
export function slopeMbit(
  samples: readonly (readonly [number, number])[],
  fromMs: number,
  toMs: number
): number {
  const pts = samples.filter(([t]) => t >= fromMs && t <= toMs)
  if (pts.length < 2) return 0
  const mt = pts.reduce((a, [t]) => a + t, 0) / pts.length
  const mb = pts.reduce((a, [, b]) => a + b, 0) / pts.length
  let num = 0
  let den = 0
  for (const [t, b] of pts) {
    num += (t - mt) * (b - mb)
    den += (t - mt) ** 2
  }
  return den > 0 ? (num / den) * 0.008 : 0
}

function emit(record: object): void {
  process.stdout.write(`${JSON.stringify(record)}\n`)
}

/** Serves one connection: reads to EOF while writing `replyBytes`, then reports. */
function serveDuplex(socket: Socket, connection: number, replyBytes: number): void {
  const received = createHash('sha256')
  const sent = createHash('sha256')
  const data = new GeneratedData(DUPLEX_REPLY_SEED)
  const samples: [number, number][] = []
  let bytes = 0
  let written = 0
  let firstByteAt = 0
  let lastByteAt = 0
  let maxGapMs = 0
  let maxGapEndAt = 0
  let ending: string | undefined
  let replyComplete = false
  let reported = false

  const sampler = setInterval(function duplexOnSample(): void {
    samples.push([wallMs(), bytes])
  }, SAMPLE_INTERVAL_MS)
  const progress = setInterval(function duplexOnProgress(): void {
    emit({ event: 'progress', connection, at: wallMs(), bytes })
  }, PROGRESS_INTERVAL_MS)
  let peerEnded = false
  const report = (): void => {
    if (reported || ending === undefined) return
    // A clean EOF waits for our own reply to finish; an error ends everything at once.
    if (ending === 'end' && !replyComplete && !socket.destroyed) return
    reported = true
    clearInterval(sampler)
    clearInterval(progress)
    samples.push([wallMs(), bytes])
    const r: DuplexReport = {
      event: 'done',
      connection,
      ending,
      receivedBytes: bytes,
      receivedSha256: received.digest('hex'),
      replyBytes: written,
      replySha256: sent.digest('hex'),
      replyComplete,
      firstByteAt,
      lastByteAt,
      maxGapMs,
      maxGapEndAt,
      samples
    }
    emit(r)
  }
  /** Writes the reply while the socket takes it; ends once it is written and the peer ended. */
  const writeMore = (): void => {
    while (written < replyBytes && !socket.destroyed) {
      const chunk = Buffer.allocUnsafe(Math.min(REPLY_WRITE_BYTES, replyBytes - written))
      data.fill(chunk, written)
      sent.update(chunk)
      written += chunk.length
      if (!socket.write(chunk)) return // 'drain' calls again
    }
    if (written >= replyBytes && peerEnded && !socket.destroyed && !socket.writableEnded) {
      socket.end(() => {
        replyComplete = true
        report()
      })
    }
  }

  socket.setNoDelay(true)
  socket.on('data', function duplexOnData(chunk: Buffer): void {
    const now = wallMs()
    if (bytes === 0) firstByteAt = now
    else if (now - lastByteAt > maxGapMs) {
      maxGapMs = now - lastByteAt
      maxGapEndAt = now
    }
    lastByteAt = now
    bytes += chunk.length
    received.update(chunk)
  })
  socket.on('drain', writeMore)
  socket.once('end', function duplexOnEnd(): void {
    ending ??= 'end'
    peerEnded = true
    writeMore()
    report()
  })
  socket.on('error', function duplexOnError(err: NodeJS.ErrnoException): void {
    ending ??= err.code ?? 'error'
    report()
  })
  socket.once('close', function duplexOnClose(): void {
    ending ??= 'close'
    report()
  })
  writeMore()
}

/** The receiver's main: `duplex-receiver --port P [--host H] [--reply-bytes N]`. */
async function duplexReceiverMain(argv: readonly string[]): Promise<void> {
  const arg = (name: string, dflt: string): string => {
    const i = argv.indexOf(`--${name}`)
    return i >= 0 ? (argv[i + 1] ?? dflt) : dflt
  }
  const port = Number(arg('port', '0'))
  const host = arg('host', '0.0.0.0')
  const replyBytes = parseSize(arg('reply-bytes', '0'), 'reply-bytes')
  let accepted = 0
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    accepted++
    emit({ event: 'accepted', connection: accepted, peer: socket.remoteAddress, at: wallMs() })
    serveDuplex(socket, accepted, replyBytes)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, resolve)
  })
  process.stderr.write(`listening on ${host}:${port}\n`)
  const stop = (): void => {
    server.close()
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

if (
  process.argv[1] === fileURLToPath(import.meta.url) &&
  process.argv[2] === DUPLEX_RECEIVER_COMMAND
) {
  await duplexReceiverMain(process.argv.slice(3))
}
