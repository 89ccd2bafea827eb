/**
 * The link emulator: impairs the wan hop of the namespace topology (a bridge with two ports,
 * portA and portB) in both directions with a one-way delay, random loss and a rate limit.
 *
 * Direction "ab" is traffic that enters at portA and leaves at portB; "ba" the reverse.
 *
 * - Where the kernel has netem (probed once), each port's egress gets one netem qdisc with
 *   delay, jitter, loss and rate for the direction leaving through it.
 * - Otherwise (our kernels): loss is `iptables -m physdev --physdev-in <port> -m statistic
 *   --mode random -j DROP`, delay is a user-space NFQUEUE stage per direction (delay.ts) fed by
 *   a rule placed after the loss rule (a dropped packet is never delayed), and rate is tbf on
 *   each port's egress with a queue of one bandwidth-delay product. Bridged frames reach
 *   iptables because bridge-nf-call-iptables is set to 1 inside the wan namespace.
 * - Segmentation offloads are turned off on both ports and the bridge: with them on, one
 *   "packet" can be a 64 KB super-packet, and one random drop loses ~40 real packets.
 *
 * Everything it adds is recorded as an undo step and removed in reverse order by `stop()`
 * (held packets are released after the jump to the NFQUEUE chain is gone and before the
 * queue is unbound). All commands run through an injected `CommandRunner`; the NFQUEUE stages
 * run in this process, so in that mode the process itself must live in the wan namespace
 * (`ip netns exec WAN node dist/lab/link-emulator/main.js ...`).
 *
 * NFQUEUE rules carry no --queue-bypass, on purpose: if the emulator dies without cleaning up
 * (SIGKILL), the link black-holes instead of quietly running without delay. A benchmark then
 * fails loudly instead of measuring a link it did not ask for.
 */
import { execFile } from 'node:child_process'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

import { ConfigError, errorMessage, NativeError } from '../../src/common/errors.js'
import { DELAY_QUEUE_MAX_LEN, DelayStage, type DelayStageStats } from './delay.js'

/** Output of a command that exited with status 0. */
export interface ExecResult {
  /** Standard output, UTF-8. */
  readonly stdout: string
  /** Standard error, UTF-8. */
  readonly stderr: string
}

/** Runs `argv` (in the wan namespace); rejects when the command fails. */
export type CommandRunner = (argv: readonly string[], timeoutMs?: number) => Promise<ExecResult>

/** Impairments of one direction. */
export interface DirectionSettings {
  /** One-way delay, milliseconds. */
  readonly delayMs: number
  /** Random loss, percent (0..100). */
  readonly lossPercent: number
  /** Rate limit, Mbit/s (10^6 bit/s, L2 bytes as tbf counts them); 0 for none. */
  readonly rateMbit: number
  /** NFQUEUE queue number of this direction's delay stage. */
  readonly queueNum: number
}

/** How to emulate: netem when the kernel has it (`auto`), or forced. */
export type EmulatorMode = 'auto' | 'netem' | 'nfqueue'

/** Everything the emulator needs to know. */
export interface LinkEmulatorConfig {
  /** Bridge port on side a (traffic from a enters here). */
  readonly portA: string
  /** Bridge port on side b. */
  readonly portB: string
  /** Traffic entering at portA, leaving at portB. */
  readonly ab: DirectionSettings
  /** Traffic entering at portB, leaving at portA. */
  readonly ba: DirectionSettings
  /** Uniform jitter around the delay, milliseconds; 0 for none. */
  readonly jitterMs: number
  /** With jitter: let packets overtake each other (netem's default) instead of keeping order. */
  readonly reorder: boolean
  /** Which mechanism to use. */
  readonly mode: EmulatorMode
}

/** What `start()` set up. */
export interface ReadyInfo {
  /** The mechanism in use. */
  readonly mode: 'netem' | 'nfqueue'
  /** The bridge the ports belong to. */
  readonly bridge: string
  /** Commands run to set it up, for the log. */
  readonly commands: readonly string[]
}

/** One queue's line of /proc/net/netfilter/nfnetlink_queue. */
export interface QueueProcStats {
  /** Queue number. */
  readonly queueNum: number
  /** Packets waiting for a verdict right now. */
  readonly queueTotal: number
  /** Packets dropped because the queue was full. */
  readonly queueDropped: number
  /** Packets dropped because the netlink socket was full. */
  readonly userDropped: number
  /** Last packet id handed out. */
  readonly idSequence: number
}

/** CPU used by this process. */
export interface CpuReport {
  /** User + system CPU time since start, seconds. */
  readonly cpuSeconds: number
  /** Wall time since start, seconds. */
  readonly wallSeconds: number
  /** cpuSeconds / wallSeconds, as percent of one core. */
  readonly percentOfCore: number
}

/** Periodic snapshot. */
export interface EmulatorStats {
  /** The mechanism in use. */
  readonly mode: 'netem' | 'nfqueue'
  /** CPU since start. */
  readonly cpu: CpuReport
  /** Delay stage counters (nfqueue mode). */
  readonly stages: readonly DelayStageStats[]
  /** Kernel counters of the queues (nfqueue mode). */
  readonly queues: readonly QueueProcStats[]
}

/** What `stop()` reports. */
export interface EmulatorSummary {
  /** The mechanism that was in use. */
  readonly mode: 'netem' | 'nfqueue'
  /** Packets that went through a delay stage (both directions). */
  readonly packetsDelayed: number
  /** Most packets one delay stage held at once. */
  readonly maxQueueDepth: number
  /** Packets the kernel dropped from the queues (full queue or socket), both directions. */
  readonly queueDrops: number
  /** ENOBUFS seen by the stages. */
  readonly enobufs: number
  /** CPU over the run. */
  readonly cpu: CpuReport
  /** Per-stage counters at the end. */
  readonly stages: readonly DelayStageStats[]
  /** Undo steps that failed (each "what: why"); empty when everything was removed. */
  readonly cleanupErrors: readonly string[]
}

/** Injected collaborators. */
export interface LinkEmulatorDeps {
  /** Runs commands in the wan namespace. */
  readonly run: CommandRunner
  /** Called when a delay stage fails while running; the owner should stop the emulator. */
  readonly onFatal: (err: Error) => void
  /** Opens a delay stage (tests inject one built on FakeNfqueue). */
  readonly createStage?: (
    options: ConstructorParameters<typeof DelayStage>[0],
    onError: (err: NativeError) => void
  ) => DelayStage
  /** Reads /proc/net/netfilter/nfnetlink_queue (tests inject text). */
  readonly readQueueProc?: () => string
}

/** Smallest tbf bucket, bytes: ten full-size frames. */
const TBF_MIN_BURST_BYTES = 16 * 1024
/** The tbf bucket holds this much time at the configured rate, milliseconds. */
const TBF_BURST_MS = 1
/** Smallest tbf queue, bytes: some room even at tiny rate x delay products. */
const TBF_MIN_LIMIT_BYTES = 64 * 1024
/** Limit of one command, milliseconds (apt-get is the slow one). */
const COMMAND_TIMEOUT_MS = 30_000
/** Offload features we turn off, with the names `ethtool -k` prints for them. */
const OFFLOADS = [
  { flag: 'tso', name: 'tcp-segmentation-offload' },
  { flag: 'gso', name: 'generic-segmentation-offload' },
  { flag: 'gro', name: 'generic-receive-offload' }
] as const
/** sysctls that make bridged IPv4/IPv6 traverse iptables/ip6tables. */
const BRIDGE_NF_SYSCTLS = [
  'net.bridge.bridge-nf-call-iptables',
  'net.bridge.bridge-nf-call-ip6tables'
]
/** Package that provides each tool we run (Debian/Ubuntu). */
const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  ethtool: 'ethtool',
  ping: 'iputils-ping',
  tc: 'iproute2',
  ip: 'iproute2',
  iptables: 'iptables',
  ip6tables: 'iptables',
  sysctl: 'procps'
}

/** A CommandRunner that runs commands in this process's own namespace. */
export function localRunner(): CommandRunner {
  return (argv, timeoutMs = COMMAND_TIMEOUT_MS) =>
    new Promise((resolve, reject) => {
      const [file, ...args] = argv
      if (file === undefined) {
        reject(new TypeError('empty command'))
        return
      }
      execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err !== null) {
          const detail = stderr.trim().split('\n')[0] ?? ''
          reject(new Error(`${argv.join(' ')}: ${detail === '' ? err.message : detail}`))
          return
        }
        resolve({ stdout, stderr })
      })
    })
}

/**
 * Makes sure each tool is on the PATH, installing its package with apt-get when missing
 * (run this where the network reaches a mirror: an isolated namespace cannot download).
 * @throws Error naming the package when it cannot be installed.
 */
export async function ensureTools(run: CommandRunner, tools: readonly string[]): Promise<void> {
  const missing: string[] = []
  for (const tool of tools) {
    try {
      await run(['sh', '-c', `command -v ${tool}`])
    } catch {
      missing.push(tool)
    }
  }
  if (missing.length === 0) {
    return
  }
  const packages = [...new Set(missing.map((t) => TOOL_PACKAGES[t] ?? t))]
  try {
    await run(['apt-get', 'install', '-y', '--no-install-recommends', ...packages], 300_000)
  } catch (err) {
    const reason = errorMessage(err)
    throw new Error(
      `missing ${missing.join(', ')}: apt-get install ${packages.join(' ')} failed (${reason})`
    )
  }
}

/**
 * The name under /run/netns of the namespace this process is in, undefined when it is in
 * none of them (for instance the host's own namespace). Compares nsfs inodes, as
 * `ip netns identify` does.
 */
export function currentNamedNetns(): string | undefined {
  let self
  try {
    self = statSync('/proc/self/ns/net')
  } catch {
    return undefined
  }
  let names: string[]
  try {
    names = readdirSync('/run/netns')
  } catch {
    return undefined
  }
  for (const name of names) {
    try {
      const st = statSync(`/run/netns/${name}`)
      if (st.ino === self.ino && st.dev === self.dev) {
        return name
      }
    } catch {
      // Being deleted: skip.
    }
  }
  return undefined
}

/** Bandwidth-delay product, bytes. */
export function bdpBytes(rateMbit: number, rttMs: number): number {
  return Math.ceil(((rateMbit * 1e6) / 8) * (rttMs / 1000))
}

/** tbf bucket for `rateMbit`, bytes. */
export function tbfBurstBytes(rateMbit: number): number {
  return Math.max(TBF_MIN_BURST_BYTES, bdpBytes(rateMbit, TBF_BURST_MS))
}

/** tbf queue for `rateMbit` on a path whose round trip is `rttMs`, bytes. */
export function tbfLimitBytes(rateMbit: number, rttMs: number): number {
  return Math.max(TBF_MIN_LIMIT_BYTES, bdpBytes(rateMbit, rttMs))
}

/**
 * Checks ranges and names; returns the config unchanged.
 * @throws ConfigError naming the bad setting.
 */
export function verifyEmulatorConfig(config: LinkEmulatorConfig): LinkEmulatorConfig {
  const ifname = /^[A-Za-z0-9_.-]{1,15}$/
  if (!ifname.test(config.portA)) throw new ConfigError('port-a', 'not an interface name')
  if (!ifname.test(config.portB)) throw new ConfigError('port-b', 'not an interface name')
  if (config.portA === config.portB) throw new ConfigError('port-b', 'must differ from port-a')
  for (const [key, d] of [
    ['ab', config.ab],
    ['ba', config.ba]
  ] as const) {
    if (!(d.delayMs >= 0 && d.delayMs <= 10_000)) {
      throw new ConfigError(`delay-${key}-ms`, 'must be 0..10000')
    }
    if (!(d.lossPercent >= 0 && d.lossPercent <= 100)) {
      throw new ConfigError(`loss-${key}`, 'must be 0..100 (percent)')
    }
    if (!(d.rateMbit >= 0 && d.rateMbit <= 100_000)) {
      throw new ConfigError(`rate-${key}-mbit`, 'must be 0..100000 (0: no limit)')
    }
    if (!Number.isInteger(d.queueNum) || d.queueNum < 0 || d.queueNum > 65535) {
      throw new ConfigError(`queue-${key}`, 'must be an integer 0..65535')
    }
  }
  if (config.ab.queueNum === config.ba.queueNum) {
    throw new ConfigError('queue-ba', 'must differ from queue-ab')
  }
  if (!(config.jitterMs >= 0 && config.jitterMs <= 10_000)) {
    throw new ConfigError('jitter-ms', 'must be 0..10000')
  }
  return config
}

/** Parses /proc/net/netfilter/nfnetlink_queue. */
export function parseQueueProc(text: string): QueueProcStats[] {
  const out: QueueProcStats[] = []
  for (const line of text.split('\n')) {
    // queue_number peer_portid queue_total copy_mode copy_range queue_dropped user_dropped
    // id_sequence 1
    const f = line.trim().split(/\s+/).map(Number)
    if (f.length < 8 || f.some((n) => Number.isNaN(n))) {
      continue
    }
    out.push({
      queueNum: f[0]!,
      queueTotal: f[2]!,
      queueDropped: f[5]!,
      userDropped: f[6]!,
      idSequence: f[7]!
    })
  }
  return out
}

function readQueueProcFile(): string {
  try {
    return readFileSync('/proc/net/netfilter/nfnetlink_queue', 'utf8')
  } catch {
    return ''
  }
}

/** Undo step that releases the held packets (the kernel counters are read just before it). */
const STAGES_STEP = 'delay stages'

/** One thing `start()` did, and how to undo it. */
interface UndoStep {
  readonly what: string
  readonly undo: () => Promise<void>
}

/**
 * Sets up the impairments (`start`), reports (`stats`) and removes them again (`stop`).
 * Not reusable: one start, one stop.
 */
export class LinkEmulator {
  /** The settings it runs with. */
  readonly config: LinkEmulatorConfig
  private readonly deps: LinkEmulatorDeps
  private readonly undoSteps: UndoStep[] = []
  private readonly commands: string[] = []
  private readonly stages: DelayStage[] = []
  private mode: 'netem' | 'nfqueue' = 'nfqueue'
  private cpuStart = process.cpuUsage()
  private wallStartMs = performance.now()
  private stopped: Promise<EmulatorSummary> | undefined

  constructor(config: LinkEmulatorConfig, deps: LinkEmulatorDeps) {
    this.config = verifyEmulatorConfig(config)
    this.deps = deps
  }

  /** Chain holding this instance's rules, named after its queue pair. */
  get chain(): string {
    return `LINKEMU_${this.config.ab.queueNum}_${this.config.ba.queueNum}`
  }

  /**
   * Sets everything up. On failure, undoes what it did and rethrows.
   * @throws Error (a failed command, a missing tool) or NativeError (queue not available).
   */
  async start(): Promise<ReadyInfo> {
    this.cpuStart = process.cpuUsage()
    this.wallStartMs = performance.now()
    try {
      return await this.setUp()
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  /** CPU used by this process since `start()`. */
  cpu(): CpuReport {
    const used = process.cpuUsage(this.cpuStart)
    const cpuSeconds = (used.user + used.system) / 1e6
    const wallSeconds = (performance.now() - this.wallStartMs) / 1000
    return {
      cpuSeconds,
      wallSeconds,
      percentOfCore: wallSeconds > 0 ? (100 * cpuSeconds) / wallSeconds : 0
    }
  }

  /** Counter snapshot. */
  stats(): EmulatorStats {
    return {
      mode: this.mode,
      cpu: this.cpu(),
      stages: this.stages.map((s) => s.stats()),
      queues: this.queueProcStats()
    }
  }

  /**
   * Removes everything `start()` added, in reverse order, and reports. Never throws: failed
   * undo steps are listed in `cleanupErrors`. Idempotent (later calls return the same summary).
   */
  stop(): Promise<EmulatorSummary> {
    this.stopped ??= this.tearDown()
    return this.stopped
  }

  private async setUp(): Promise<ReadyInfo> {
    const { portA, portB } = this.config
    await ensureTools(this.deps.run, ['ip', 'tc', 'ethtool'])
    const bridge = await this.bridgeOf(portA)
    const bridgeB = await this.bridgeOf(portB)
    if (bridge !== bridgeB) {
      throw new ConfigError('port-b', `${portA} is on ${bridge} but ${portB} is on ${bridgeB}`)
    }
    this.mode = await this.chooseMode()
    for (const dev of [portA, portB, bridge]) {
      await this.offloadsOff(dev)
    }
    if (this.mode === 'netem') {
      await this.addNetem(portB, this.config.ab)
      await this.addNetem(portA, this.config.ba)
    } else {
      await ensureTools(this.deps.run, ['iptables', 'ip6tables', 'sysctl'])
      await this.addTbf(portB, this.config.ab)
      await this.addTbf(portA, this.config.ba)
      for (const key of BRIDGE_NF_SYSCTLS) {
        await this.setSysctl(key, '1')
      }
      this.startStages()
      for (const tool of ['iptables', 'ip6tables']) {
        await this.addRules(tool)
      }
    }
    return { mode: this.mode, bridge, commands: [...this.commands] }
  }

  private async tearDown(): Promise<EmulatorSummary> {
    const errors: string[] = []
    let queues: QueueProcStats[] = []
    let stagesStats: DelayStageStats[] = []
    while (this.undoSteps.length > 0) {
      const step = this.undoSteps.pop()!
      if (step.what === STAGES_STEP) {
        // Last look at the kernel's counters while the queues still exist.
        queues = this.queueProcStats()
      }
      try {
        await step.undo()
      } catch (err) {
        errors.push(`${step.what}: ${errorMessage(err)}`)
      }
      if (step.what === STAGES_STEP) {
        stagesStats = this.stages.map((s) => s.stats())
      }
    }
    return {
      mode: this.mode,
      packetsDelayed: stagesStats.reduce((n, s) => n + s.released, 0),
      maxQueueDepth: stagesStats.reduce((n, s) => Math.max(n, s.maxHeld), 0),
      queueDrops: queues.reduce((n, q) => n + q.queueDropped + q.userDropped, 0),
      enobufs: stagesStats.reduce((n, s) => n + s.enobufs, 0),
      cpu: this.cpu(),
      stages: stagesStats,
      cleanupErrors: errors
    }
  }

  /** Runs a set-up command and records it; `undo` (if given) is registered once it worked. */
  private async apply(argv: readonly string[], undo?: readonly string[]): Promise<ExecResult> {
    this.commands.push(argv.join(' '))
    const result = await this.deps.run(argv)
    if (undo !== undefined) {
      this.undoSteps.push({
        what: undo.join(' '),
        undo: async () => {
          await this.deps.run(undo)
        }
      })
    }
    return result
  }

  private async bridgeOf(port: string): Promise<string> {
    const { stdout } = await this.deps.run(['ip', '-j', 'link', 'show', 'dev', port])
    const links = JSON.parse(stdout) as { master?: string }[]
    const master = links[0]?.master
    if (master === undefined) {
      throw new ConfigError('port', `${port} is not a bridge port`)
    }
    return master
  }

  /** netem if the kernel has it (a throwaway qdisc on portA tells) and the mode allows. */
  private async chooseMode(): Promise<'netem' | 'nfqueue'> {
    if (this.config.mode === 'nfqueue') {
      return 'nfqueue'
    }
    const dev = this.config.portA
    let hasNetem = false
    try {
      await this.deps.run(['tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', '1ms'])
      hasNetem = true
      await this.deps.run(['tc', 'qdisc', 'del', 'dev', dev, 'root'])
    } catch (err) {
      if (hasNetem) {
        throw err
      }
    }
    if (!hasNetem && this.config.mode === 'netem') {
      throw new ConfigError('mode', 'netem asked for, but the kernel has no sch_netem')
    }
    return hasNetem ? 'netem' : 'nfqueue'
  }

  private async offloadsOff(dev: string): Promise<void> {
    const before = await this.offloadState(dev)
    const wasOn = OFFLOADS.filter((o) => before.get(o.name) === true).map((o) => o.flag)
    if (wasOn.length === 0) {
      return
    }
    const off = wasOn.flatMap((flag) => [flag, 'off'])
    const on = wasOn.flatMap((flag) => [flag, 'on'])
    await this.apply(['ethtool', '-K', dev, ...off], ['ethtool', '-K', dev, ...on])
    const after = await this.offloadState(dev)
    const still = OFFLOADS.filter((o) => after.get(o.name) === true).map((o) => o.flag)
    if (still.length > 0) {
      throw new Error(`${dev}: could not turn off ${still.join(', ')}`)
    }
  }

  private async offloadState(dev: string): Promise<Map<string, boolean>> {
    const { stdout } = await this.deps.run(['ethtool', '-k', dev])
    const state = new Map<string, boolean>()
    for (const line of stdout.split('\n')) {
      const m = /^([a-z0-9-]+): (on|off)/.exec(line)
      if (m !== null) {
        state.set(m[1]!, m[2] === 'on')
      }
    }
    return state
  }

  private async addTbf(dev: string, d: DirectionSettings): Promise<void> {
    if (d.rateMbit === 0) {
      return
    }
    const rttMs = this.config.ab.delayMs + this.config.ba.delayMs + 2 * this.config.jitterMs
    await this.apply(
      ['tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', `${d.rateMbit}mbit`].concat([
        'burst',
        `${tbfBurstBytes(d.rateMbit)}`,
        'limit',
        `${tbfLimitBytes(d.rateMbit, rttMs)}`
      ]),
      ['tc', 'qdisc', 'del', 'dev', dev, 'root']
    )
  }

  private async addNetem(dev: string, d: DirectionSettings): Promise<void> {
    const argv = [
      'tc',
      'qdisc',
      'add',
      'dev',
      dev,
      'root',
      'netem',
      'limit',
      `${DELAY_QUEUE_MAX_LEN}`
    ]
    if (d.delayMs > 0 || this.config.jitterMs > 0) {
      argv.push('delay', `${d.delayMs}ms`)
      if (this.config.jitterMs > 0) {
        argv.push(`${this.config.jitterMs}ms`)
      }
    }
    if (d.lossPercent > 0) {
      argv.push('loss', `${d.lossPercent}%`)
    }
    if (d.rateMbit > 0) {
      argv.push('rate', `${d.rateMbit}mbit`)
    }
    await this.apply(argv, ['tc', 'qdisc', 'del', 'dev', dev, 'root'])
  }

  private async setSysctl(key: string, value: string): Promise<void> {
    const { stdout } = await this.deps.run(['sysctl', '-n', key])
    const before = stdout.trim()
    if (before === value) {
      return
    }
    await this.apply(
      ['sysctl', '-q', '-w', `${key}=${value}`],
      ['sysctl', '-q', '-w', `${key}=${before}`]
    )
  }

  private directions(): readonly { inPort: string; d: DirectionSettings }[] {
    return [
      { inPort: this.config.portA, d: this.config.ab },
      { inPort: this.config.portB, d: this.config.ba }
    ]
  }

  private needsStage(d: DirectionSettings): boolean {
    return d.delayMs > 0 || this.config.jitterMs > 0
  }

  /** Binds the queues before any rule feeds them (a rule without a reader black-holes). */
  private startStages(): void {
    const create =
      this.deps.createStage ?? ((options, onError): DelayStage => new DelayStage(options, onError))
    for (const { d } of this.directions()) {
      if (!this.needsStage(d)) {
        continue
      }
      const stage = create(
        {
          queueNum: d.queueNum,
          delayMs: d.delayMs,
          jitterMs: this.config.jitterMs,
          reorder: this.config.reorder
        },
        (err) => {
          this.deps.onFatal(err)
        }
      )
      stage.start()
      this.stages.push(stage)
    }
    this.undoSteps.push({
      what: STAGES_STEP,
      undo: () => {
        for (const stage of this.stages) {
          stage.stop()
        }
        return Promise.resolve()
      }
    })
  }

  /** The chain with loss then NFQUEUE rules per direction, and last the jump into it. */
  private async addRules(tool: string): Promise<void> {
    const chain = this.chain
    await this.apply(
      [tool, '-w', '-t', 'filter', '-N', chain],
      [tool, '-w', '-t', 'filter', '-X', chain]
    )
    // Registered before the rules are added, so a failure half way still flushes them.
    this.undoSteps.push({
      what: `${tool} -F ${chain}`,
      undo: async () => {
        await this.deps.run([tool, '-w', '-t', 'filter', '-F', chain])
      }
    })
    for (const { inPort, d } of this.directions()) {
      const match = ['-m', 'physdev', '--physdev-in', inPort]
      if (d.lossPercent > 0) {
        const probability = (d.lossPercent / 100).toFixed(8)
        await this.apply(
          [tool, '-w', '-t', 'filter', '-A', chain, ...match].concat([
            '-m',
            'statistic',
            '--mode',
            'random',
            '--probability',
            probability,
            '-j',
            'DROP'
          ])
        )
      }
      if (this.needsStage(d)) {
        await this.apply(
          [tool, '-w', '-t', 'filter', '-A', chain, ...match, '-j', 'NFQUEUE'].concat([
            '--queue-num',
            `${d.queueNum}`
          ])
        )
      }
    }
    await this.apply(
      [tool, '-w', '-t', 'filter', '-I', 'FORWARD', '1', '-j', chain],
      [tool, '-w', '-t', 'filter', '-D', 'FORWARD', '-j', chain]
    )
  }

  private queueProcStats(): QueueProcStats[] {
    if (this.stages.length === 0) {
      return []
    }
    const ours = new Set(this.stages.map((s) => s.options.queueNum))
    const text = (this.deps.readQueueProc ?? readQueueProcFile)()
    return parseQueueProc(text).filter((q) => ours.has(q.queueNum))
  }
}
