/**
 * The five-namespace line testbed (root only), shaped like the deployment:
 *
 *   src ── [lan] tx box (br0) [wan] ── wan (bridge) ── [wan] rx box (br0) [lan] ── dst
 *
 * One subnet, 192.168.2.0/24 and fd00:2::/64: src .11, dst .12, tx br0 .201, rx br0 .202.
 * The tx and rx boxes are set up exactly as a user would: the real `bridge-setup.sh up` and
 * `iptables/apply.sh`, run inside the namespaces with a network.conf written for this topology.
 * The wan namespace bridges its two ports too, so a link emulator can impair each direction
 * with physdev rules there.
 *
 * Interface names carry the pid. Both boxes name their ports alike (`lan<pid>`, `wan<pid>`),
 * as two real boxes sharing one network.conf do; names only need to be unique inside a
 * namespace, and every veth is created from inside a namespace, never in the root one.
 *
 * Cleanup rests on netns.ts: deleting a namespace deletes its veths and bridges, and every
 * namespace is deleted on destroy(), at the end of the test given as `hook`, and at exit.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { loadConfig, readConfigFile } from '../../src/common/config/load.js'
import { createNetns, type AfterHook, type Netns } from './netns.js'

/** An IPv4 and an IPv6 address (without prefix length). */
export interface AddressPair {
  readonly v4: string
  readonly v6: string
}

/** The fixed addressing plan. */
export const TOPOLOGY_ADDRESSES = {
  /** Prefix lengths of the one subnet. */
  prefixLength: { v4: 24, v6: 64 },
  src: { v4: '192.168.2.11', v6: 'fd00:2::11' },
  dst: { v4: '192.168.2.12', v6: 'fd00:2::12' },
  /** br0 of the tx box (REDIRECT sends intercepted flows here). */
  tx: { v4: '192.168.2.201', v6: 'fd00:2::201' },
  /** br0 of the rx box (rx_proxy listens here). */
  rx: { v4: '192.168.2.202', v6: 'fd00:2::202' }
} as const

/** The five namespaces, in line order. */
export interface TopologyNamespaces {
  readonly src: Netns
  readonly tx: Netns
  readonly wan: Netns
  readonly rx: Netns
  readonly dst: Netns
}

/** Interface names, each valid inside its own namespace. */
export interface TopologyInterfaces {
  /** src's only interface (peer of the tx box's lan port). */
  readonly src: string
  /** dst's only interface (peer of the rx box's lan port). */
  readonly dst: string
  /** The tx box: its bridge and the two ports (`lan` faces src, `wan` faces the wan box). */
  readonly tx: { readonly bridge: string; readonly lan: string; readonly wan: string }
  /** The rx box: its bridge and the two ports (`lan` faces dst, `wan` faces the wan box). */
  readonly rx: { readonly bridge: string; readonly lan: string; readonly wan: string }
  /**
   * The wan box's bridge and ports: packets entering on `toTx` travel rx → tx, those entering
   * on `toRx` travel tx → rx (`-m physdev --physdev-in` picks a direction).
   */
  readonly wan: { readonly bridge: string; readonly toTx: string; readonly toRx: string }
}

/** Config overrides: `section.key` → value, as with the proxies' `--set`. */
export type ConfigOverrides = Readonly<Record<string, string>>

/** What createTopology builds. */
export interface TopologyOptions {
  /** Namespace name prefix (names are `${prefix}${pid}-${n}`, at most 15 chars). Default 'tt'. */
  readonly prefix?: string
  /** Also give every host and bridge its IPv6 address and apply ip6tables rules. Default true. */
  readonly ipv6?: boolean
  /** Run iptables/apply.sh on the tx and rx boxes. Default true. */
  readonly applyRules?: boolean
  /**
   * Base network.conf whose values the generated config keeps (queue, mark, ports, limits…);
   * the topology replaces the addresses and interface names. Default test/fixtures/topology.conf.
   */
  readonly config?: string
  /** Applied last to the generated config (so they win over the topology's own keys). */
  readonly overrides?: ConfigOverrides
  /**
   * Keep bridge-nf-call-iptables on in the wan box (the link emulator's physdev rules need it).
   * Default false: bridged packets there skip iptables, as the testbed notes advise.
   */
  readonly wanNetfilter?: boolean
  /** A TestContext or suite: the topology is destroyed when it ends. */
  readonly hook?: AfterHook
}

/** A live topology. */
export interface Topology {
  readonly ns: TopologyNamespaces
  readonly addresses: typeof TOPOLOGY_ADDRESSES
  readonly interfaces: TopologyInterfaces
  /** Whether IPv6 addresses and ip6tables rules were set up. */
  readonly ipv6: boolean
  /** The network.conf the boxes were set up with (in a temporary directory). */
  readonly configPath: string
  /** What bridge-setup.sh and apply.sh printed, in order. */
  readonly setupLog: readonly string[]
  /**
   * Writes a network.conf for this topology to `path`: the base config's values, then the
   * topology's addresses and interface names, then `overrides`. Validated with the proxies'
   * own loader (throws ConfigError naming the key).
   */
  writeConfig(path: string, overrides?: ConfigOverrides): void
  /** Deletes every namespace (and with them every veth and bridge) and the temp dir. Idempotent. */
  destroy(): void
}

/** The project root: the nearest directory above this module holding bridge-setup.sh. */
export const PROJECT_ROOT = findProjectRoot(dirname(fileURLToPath(import.meta.url)))
/** The scripts the topology runs, as a user would. */
export const BRIDGE_SETUP = join(PROJECT_ROOT, 'bridge-setup.sh')
export const APPLY_RULES = join(PROJECT_ROOT, 'iptables', 'apply.sh')
/** Base config used when TopologyOptions.config is not given. */
export const DEFAULT_TOPOLOGY_CONFIG = join(PROJECT_ROOT, 'test', 'fixtures', 'topology.conf')

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'bridge-setup.sh'))) {
      return dir
    }
    if (dirname(dir) === dir) {
      throw new Error(`bridge-setup.sh not found above ${start}`)
    }
  }
}

/** Interface names for this process (pid ≤ 4194304, so at most 10 characters). */
function interfaceNames(pid: number): TopologyInterfaces {
  const box = { bridge: 'br0', lan: `lan${pid}`, wan: `wan${pid}` }
  return {
    src: `src${pid}`,
    dst: `dst${pid}`,
    tx: box,
    rx: box,
    wan: { bridge: `wbr${pid}`, toTx: `wtx${pid}`, toRx: `wrx${pid}` }
  }
}

/** The keys the topology itself decides, as `section.key` → value. */
function topologyKeys(names: TopologyInterfaces): Map<string, string> {
  const a = TOPOLOGY_ADDRESSES
  return new Map([
    ['tx_proxy.rx_proxy_ip', a.rx.v4],
    ['rx_proxy.recv_ip', a.rx.v4],
    ['interception.enabled', 'true'],
    ['interception.bridge', names.tx.bridge],
    ['interception.lan_interface', names.tx.lan],
    ['interception.wan_interface', names.tx.wan],
    ['interception.tx_bridge_address', `${a.tx.v4}/${a.prefixLength.v4}`],
    ['interception.rx_bridge_address', `${a.rx.v4}/${a.prefixLength.v4}`],
    // As the README's IPv6 set-up: br0's IPv6 address from the config, not the command line.
    ['interception.tx_bridge_address6', `${a.tx.v6}/${a.prefixLength.v6}`],
    ['interception.rx_bridge_address6', `${a.rx.v6}/${a.prefixLength.v6}`]
  ])
}

/** Writes `values` (`section.key` → value) as an ini file, sections in first-seen order. */
function writeIni(path: string, values: ReadonlyMap<string, string>): void {
  const sections = new Map<string, string[]>()
  for (const [name, value] of values) {
    const dot = name.indexOf('.')
    if (dot <= 0 || /[;#\r\n]/.test(value)) {
      throw new Error(`cannot write ${name}=${JSON.stringify(value)} to an ini file`)
    }
    const section = name.slice(0, dot)
    const lines = sections.get(section) ?? []
    lines.push(`${name.slice(dot + 1)} = ${value}`)
    sections.set(section, lines)
  }
  const text = [
    '; Generated by test/helpers/topology.ts for one test topology.',
    ...[...sections].map(([section, lines]) => `\n[${section}]\n${lines.join('\n')}`)
  ].join('\n')
  writeFileSync(path, `${text}\n`)
}

/** Temporary directories are `${TEMP_DIR_PREFIX}${pid}-XXXXXX`, so stale ones can be found. */
const TEMP_DIR_PREFIX = 'tandem-topology-'

/**
 * Removes the temporary directories of topologies whose process is gone. A signal kills the
 * process right after netns.ts deleted the namespaces, before destroy() could run, so the
 * next topology cleans up after it (as netns.ts sweeps stale namespaces).
 */
function sweepStaleTempDirs(): void {
  const pattern = new RegExp(`^${TEMP_DIR_PREFIX}(\\d+)-`)
  for (const entry of readdirSync(tmpdir())) {
    const pid = Number(pattern.exec(entry)?.[1] ?? NaN)
    if (Number.isInteger(pid) && pid !== process.pid && !processExists(pid)) {
      rmSync(join(tmpdir(), entry), { recursive: true, force: true })
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Sets sysctl `key` (dotted) inside `ns`; writes /proc directly so procps is not needed. */
async function setSysctl(ns: Netns, key: string, value: string): Promise<void> {
  const path = `/proc/sys/${key.replace(/\./g, '/')}`
  await ns.exec(['sh', '-c', 'printf "%s\\n" "$1" > "$2"', 'sysctl', value, path])
}

/**
 * Builds the topology. On failure everything created so far is removed before the error
 * is rethrown.
 */
export async function createTopology(options: TopologyOptions = {}): Promise<Topology> {
  const prefix = options.prefix ?? 'tt'
  const ipv6 = options.ipv6 ?? true
  const baseConfig = options.config ?? DEFAULT_TOPOLOGY_CONFIG
  const names = interfaceNames(process.pid)
  const a = TOPOLOGY_ADDRESSES
  const created: Netns[] = []
  let tempDir: string | undefined
  let destroyed = false
  const destroy = (): void => {
    if (destroyed) {
      return
    }
    destroyed = true
    for (const ns of created) {
      ns.destroy()
      // What bridge-setup.sh up recorded for `down` (its default file, one per namespace).
      rmSync(`/run/tandem-bridge/br0.${ns.name}.state`, { force: true })
    }
    if (tempDir !== undefined) {
      rmSync(tempDir, { recursive: true, force: true })
    }
  }
  options.hook?.after(destroy)

  // One pre-shared key per testbed, written into every config it hands out (both boxes agree).
  const psk = randomBytes(32).toString('hex')
  const writeConfig = (path: string, overrides: ConfigOverrides = {}): void => {
    const values = readConfigFile(baseConfig)
    for (const [k, v] of topologyKeys(names)) values.set(k, v)
    if (!ipv6) {
      values.set('interception.tx_bridge_address6', '')
      values.set('interception.rx_bridge_address6', '')
    }
    values.set('security.psk', psk)
    for (const [k, v] of Object.entries(overrides)) values.set(k, v)
    writeIni(path, values)
    loadConfig(path, new Map())
  }

  try {
    // The config first: a bad base file or override fails before any namespace exists.
    sweepStaleTempDirs()
    tempDir = mkdtempSync(join(tmpdir(), `${TEMP_DIR_PREFIX}${process.pid}-`))
    const configPath = join(tempDir, 'network.conf')
    writeConfig(configPath, options.overrides)

    const make = (): Netns => {
      const ns = createNetns(prefix)
      created.push(ns)
      return ns
    }
    const ns: TopologyNamespaces = { src: make(), tx: make(), wan: make(), rx: make(), dst: make() }
    const all = [ns.src, ns.tx, ns.wan, ns.rx, ns.dst]

    for (const n of all) {
      await n.exec(['ip', 'link', 'set', 'lo', 'up'])
      if (ipv6) {
        // No duplicate address detection: addresses are usable at once, not "tentative" for
        // a second or two. Set before the interfaces exist so they inherit it.
        await setSysctl(n, 'net.ipv6.conf.all.accept_dad', '0')
        await setSysctl(n, 'net.ipv6.conf.default.accept_dad', '0')
      }
    }
    // The boxes receive packets whose source lies beyond the bridge (and, later, the rx box
    // answers for clients' addresses): strict reverse-path filtering would drop those.
    for (const box of [ns.tx, ns.rx]) {
      await setSysctl(box, 'net.ipv4.conf.all.rp_filter', '0')
      await setSysctl(box, 'net.ipv4.conf.default.rp_filter', '0')
    }

    // Each pair is created inside a namespace with its peer sent straight to the other one.
    const veth = async (from: Netns, name: string, to: Netns, peer: string): Promise<void> => {
      const pair = ['ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', peer]
      await from.exec([...pair, 'netns', to.name])
    }
    await veth(ns.tx, names.tx.lan, ns.src, names.src)
    await veth(ns.tx, names.tx.wan, ns.wan, names.wan.toTx)
    await veth(ns.rx, names.rx.wan, ns.wan, names.wan.toRx)
    await veth(ns.rx, names.rx.lan, ns.dst, names.dst)

    // The wan box: a plain bridge; netfilter off unless the link emulator will need it.
    const w = names.wan
    await ns.wan.exec(['ip', 'link', 'add', 'name', w.bridge, 'type', 'bridge'])
    for (const port of [w.toTx, w.toRx]) {
      await ns.wan.exec(['ip', 'link', 'set', port, 'master', w.bridge, 'up'])
    }
    await ns.wan.exec(['ip', 'link', 'set', w.bridge, 'up'])
    const wanNf = options.wanNetfilter === true ? '1' : '0'
    await setSysctl(ns.wan, 'net.bridge.bridge-nf-call-iptables', wanNf)
    await setSysctl(ns.wan, 'net.bridge.bridge-nf-call-ip6tables', wanNf)

    // The end hosts.
    const host = async (n: Netns, dev: string, addr: AddressPair): Promise<void> => {
      await n.exec(['ip', 'addr', 'add', `${addr.v4}/${a.prefixLength.v4}`, 'dev', dev])
      if (ipv6) {
        await n.exec(['ip', 'addr', 'add', `${addr.v6}/${a.prefixLength.v6}`, 'dev', dev, 'nodad'])
      }
      await n.exec(['ip', 'link', 'set', dev, 'up'])
    }
    await host(ns.src, names.src, a.src)
    await host(ns.dst, names.dst, a.dst)

    // The boxes, as a user sets them up: both addresses of br0 come from the config.
    const setupLog: string[] = []
    const boxes = [
      { n: ns.tx, role: 'tx' },
      { n: ns.rx, role: 'rx' }
    ] as const
    for (const { n, role } of boxes) {
      const out = await n.exec([BRIDGE_SETUP, 'up', '-c', configPath, '--role', role])
      setupLog.push(out.stdout, out.stderr)
    }
    if (options.applyRules ?? true) {
      for (const { n, role } of boxes) {
        const family = ipv6 ? 'all' : '4'
        const out = await n.exec([
          APPLY_RULES,
          '-c',
          configPath,
          '--role',
          role,
          '--family',
          family
        ])
        setupLog.push(out.stdout, out.stderr)
      }
    }

    return {
      ns,
      addresses: a,
      interfaces: names,
      ipv6,
      configPath,
      setupLog: setupLog.filter((s) => s !== ''),
      writeConfig,
      destroy
    }
  } catch (err) {
    destroy()
    throw err
  }
}
