/**
 * An impaired five-namespace testbed for the demo and the benchmark: the topology, offloads off
 * on every interface of the path, the link emulator in the wan box, the boxes tuned, and helpers
 * to run the proxies, `receive` and `stream` inside the namespaces.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { interfacesOf } from './netns.js'
import { startIn, runIn, dist, labDist, type NsProcess } from './ns-process.js'
import {
  createTopology,
  PROJECT_ROOT,
  TOPOLOGY_ADDRESSES,
  type ConfigOverrides,
  type Topology
} from './topology.js'

/** The bad link between the boxes. */
export interface LinkSpec {
  /** Round-trip time added by the link, in ms (half each way). */
  readonly rttMs: number
  /** Random loss in each direction, in percent. */
  readonly lossPercent: number
  /** Rate limit each way, in Mbit/s (0: none). */
  readonly rateMbit: number
  /** Loss on the data direction only (tx → rx); the ACK direction then has none. */
  readonly lossDataOnly?: boolean
}

/** A running impaired testbed. */
export interface ImpairedTestbed {
  readonly topo: Topology
  readonly dir: string
  readonly link: LinkSpec
  /** The emulator's process (its summary line arrives when it stops). */
  readonly emulator: NsProcess | undefined
  /** Write a network.conf for this testbed with `overrides`; returns its path. */
  config(name: string, overrides?: ConfigOverrides): string
  /** The control socket of `role` in the network.conf `config(name)` wrote (for `status`). */
  controlSocket(name: string, role: 'tx' | 'rx'): string
  /** Start rx_proxy then tx_proxy with `conf`; resolves once `subflows` are up. */
  startProxies(conf: string, subflows: number): Promise<{ tx: NsProcess; rx: NsProcess }>
  /** Everything down: processes, emulator, namespaces, temporary directory. */
  destroy(): Promise<void>
}

/** Build it. `prefix` names the namespaces. */
export async function createImpairedTestbed(
  prefix: string,
  link: LinkSpec
): Promise<ImpairedTestbed> {
  const topo = await createTopology({ prefix, wanNetfilter: true, ipv6: false })
  const dir = mkdtempSync(join(tmpdir(), `tandem-${prefix}-`))
  const procs: NsProcess[] = []
  let emulator: NsProcess | undefined
  try {
    // With offloads on, one "packet" at the wan box can be a 64 KB super-packet and one random
    // drop loses ~40 real packets: off on every interface of the path.
    const { src, tx, wan, rx, dst } = topo.ns
    for (const ns of [src, tx, wan, rx, dst]) {
      for (const dev of await interfacesOf(ns)) {
        await ns
          .exec(['ethtool', '-K', dev, 'tso', 'off', 'gso', 'off', 'gro', 'off'])
          .catch(() => undefined)
      }
      // Comparable runs: no cached slow-start state per destination.
      await ns.exec(['sysctl', '-q', '-w', 'net.ipv4.tcp_no_metrics_save=1']).catch(() => undefined)
      await ns
        .exec(['sysctl', '-q', '-w', 'net.ipv4.tcp_rmem=4096 131072 67108864'])
        .catch(() => undefined)
      await ns
        .exec(['sysctl', '-q', '-w', 'net.ipv4.tcp_wmem=4096 65536 67108864'])
        .catch(() => undefined)
    }
    // --no-persist: tune the namespaces only; never write this machine's /etc.
    const tune = join(PROJECT_ROOT, 'scripts', 'tune-box.sh')
    await topo.ns.tx.exec([
      'sh',
      tune,
      '--no-persist',
      '--peer',
      TOPOLOGY_ADDRESSES.rx.v4,
      '--dev',
      topo.interfaces.tx.bridge
    ])
    await topo.ns.rx.exec([
      'sh',
      tune,
      '--no-persist',
      '--peer',
      TOPOLOGY_ADDRESSES.tx.v4,
      '--dev',
      topo.interfaces.rx.bridge
    ])
    if (link.rttMs > 0 || link.lossPercent > 0 || link.rateMbit > 0) {
      const w = topo.interfaces.wan
      emulator = startIn(
        topo.ns.wan,
        [
          labDist('link-emulator/main.js'),
          '--port-a',
          w.toTx,
          '--port-b',
          w.toRx,
          '--delay-ms',
          String(link.rttMs / 2),
          '--loss-ab',
          String(link.lossPercent),
          '--loss-ba',
          String(link.lossDataOnly === true ? 0 : link.lossPercent),
          '--rate-mbit',
          String(link.rateMbit),
          '--json'
        ],
        'link-emulator'
      )
      await emulator.waitFor(/"event":"ready"/, 30_000)
    }
  } catch (err) {
    await emulator?.stop()
    topo.destroy()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const controlSocket = (name: string, role: 'tx' | 'rx'): string =>
    join(dir, `${name}-${role}.sock`)
  return {
    topo,
    dir,
    link,
    emulator,
    controlSocket,
    config(name, overrides = {}) {
      const path = join(dir, `${name}.conf`)
      topo.writeConfig(path, {
        'tx_proxy.control_socket': controlSocket(name, 'tx'),
        'rx_proxy.control_socket': controlSocket(name, 'rx'),
        ...overrides
      })
      return path
    },
    async startProxies(conf, subflows) {
      const rx = startIn(topo.ns.rx, [dist('rx-proxy/main.js'), '-c', conf], 'rx_proxy')
      procs.push(rx)
      await rx.waitFor(/listening on/)
      const tx = startIn(topo.ns.tx, [dist('tx-proxy/main.js'), '-c', conf], 'tx_proxy')
      procs.push(tx)
      const up = new RegExp(`(subflow up(.|\\n)*){${subflows}}`)
      await tx.waitFor(up, 30_000)
      return { tx, rx }
    },
    async destroy() {
      for (const p of procs.reverse()) await p.stop()
      await emulator?.stop()
      topo.destroy()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/**
 * `receive` in the dst box on `port`, one JSON report per connection on stdout (`options` adds
 * to its arguments; `wrap` runs it under another program, e.g. mptcpize); resolves once it
 * listens.
 */
export async function startReceive(
  bed: ImpairedTestbed,
  port: number,
  options: readonly string[] = [],
  wrap: readonly string[] = []
): Promise<NsProcess> {
  const argv = [dist('tools/receive.js'), '--port', String(port), '--json', '--quiet', ...options]
  const p = startIn(
    bed.topo.ns.dst,
    wrap.length > 0 ? [...wrap, process.execPath, ...argv] : argv,
    'receive'
  )
  await p.waitFor(/listening on/)
  return p
}

export { runIn, startIn, dist }
export type { NsProcess }
