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
 * The duplex receiver in dst is `./receive --duplex` (reads while replying, reports a delivery
 * trace: delivery.ts reads it); faults and polling helpers are in faults.ts.
 *
 * Cleanup rests on netns.ts (namespaces, and the processes in them, go on every exit path);
 * `destroy()` also stops processes gracefully and removes the temporary directory.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { DUPLEX_REPLY_SEED } from './delivery.js'
import { createNetns, interfacesOf, type AfterHook, type Netns } from './netns.js'
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

/** Sets sysctl `key` inside `ns` through /proc (procps may be missing). */
async function setSysctl(ns: Netns, key: string, value: string): Promise<void> {
  const path = `/proc/sys/${key.replace(/\./g, '/')}`
  await ns.exec(['sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sysctl', value, path])
}

/** Path b: a veth from each box into `wb`, whose bridge joins them, and its addresses. */
async function buildPathB(topo: Topology, wb: Netns, b: PathInterfaces): Promise<void> {
  const { tx, rx } = topo.ns
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
}

/** Offloads off and no saved TCP metrics in every namespace; both boxes tuned per path. */
async function tuneBoxes(topo: Topology, wb: Netns, pathBDev: string): Promise<void> {
  const { tx, rx } = topo.ns
  const names = topo.interfaces
  const addr = TWO_PATH_ADDRESSES.b
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
    [tx, addr.peer, pathBDev],
    [rx, TWO_PATH_ADDRESSES.a.local, names.rx.bridge],
    [rx, addr.local, pathBDev]
  ]
  // --no-persist: tune the namespaces only; never write this machine's /etc.
  for (const [ns, peer, dev] of tuned) {
    await ns.exec(['sh', tune, '--no-persist', '--peer', peer, '--dev', dev])
  }
}

/** The network.conf values of a static-mode run over `opts.paths` (overrides not applied). */
function configValues(
  opts: TwoPathConfigOptions,
  txControl: string,
  rxControl: string
): Record<string, string> {
  const paths = opts.paths ?? ['a', 'b']
  const perPath = String(opts.subflowsPerPath ?? 2)
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
  return values
}

/** The link emulator's command line for `path`'s wan box. */
function emulatorArgs(path: PathName, w: PathInterfaces['wan'], spec: PathImpairment): string[] {
  return [
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
  ]
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
    await buildPathB(topo, wb, interfaces.b)
    await tuneBoxes(topo, wb, interfaces.b.tx)
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
      const path = join(dir, `${name}.conf`)
      const txControl = join(dir, `${name}-tx.sock`)
      const rxControl = join(dir, `${name}-rx.sock`)
      const values = configValues(opts, txControl, rxControl)
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
          dist('tools/receive.js'),
          '--port',
          String(port),
          '--keep-listening',
          '--duplex',
          '--reply-bytes',
          String(replyBytes),
          '--reply-seed',
          String(DUPLEX_REPLY_SEED)
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
      const p = start(
        path === 'a' ? topo.ns.wan : wanBox,
        emulatorArgs(path, interfaces[path].wan, spec),
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
