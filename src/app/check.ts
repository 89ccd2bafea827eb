/**
 * `check`: is this box ready to run its proxy? It reads what the proxy and the set-up scripts
 * would use (the configuration through the proxies' own loader, the key through the same
 * loader as the proxy) and looks at the system: interfaces, bridge addresses, congestion
 * control, sysctls, rules. Every problem is one line; the key itself is never printed.
 * The systemd units run it as ExecStartPre, so a box that is not ready says why in the journal.
 * They run it as root (reading rules and sysctls needs that) with `--user` naming their User=,
 * so the configuration and the key are checked as the proxy will open them, not as root can.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs'
import { basename } from 'node:path'
import type { Config } from '../common/config/config.js'
import { loadConfig, loadPsk } from '../common/config/load.js'
import { ConfigError, errorMessage } from '../common/errors.js'
import type { Role } from './cli.js'
import { readableBy, type Account } from './readable-by.js'

/** The result of running a system command. */
export interface RunResult {
  readonly ok: boolean
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command (no shell); never throws. Injectable so tests can stand in for the system. */
export type Runner = (command: string, args: readonly string[]) => RunResult

/** The real system. */
export const runCommand: Runner = (command, args) => {
  try {
    const stdout = execFileSync(command, [...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 10_000
    })
    return { ok: true, stdout, stderr: '' }
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: string; message: string }
    return {
      ok: false,
      stdout: e.stdout ?? '',
      stderr: (e.stderr ?? '').trim() || (e.code ?? e.message)
    }
  }
}

/** The sysctls the tuning sets (scripts/tune-box.sh and the packaged sysctl.d file). */
const TUNING: readonly { key: string; check: (v: string) => boolean; want: string }[] = [
  { key: 'net.ipv4.tcp_slow_start_after_idle', check: (v) => v === '0', want: '0' },
  {
    key: 'net.ipv4.tcp_rmem',
    check: (v) => Number(v.split(/\s+/)[2]) >= 64 * 1024 * 1024,
    want: 'a maximum of at least 67108864'
  },
  {
    key: 'net.ipv4.tcp_wmem',
    check: (v) => Number(v.split(/\s+/)[2]) >= 64 * 1024 * 1024,
    want: 'a maximum of at least 67108864'
  }
]

/** Reads sysctl `key` (dotted) from /proc; undefined when absent. */
function sysctl(key: string): string | undefined {
  try {
    const text = readFileSync(`/proc/sys/${key.replace(/\./g, '/')}`, 'utf8')
    return text.trim().replace(/\s+/g, ' ')
  } catch {
    return undefined
  }
}

function ifaceExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`)
}

function masterOf(name: string): string | undefined {
  try {
    return basename(readlinkSync(`/sys/class/net/${name}/master`))
  } catch {
    return undefined
  }
}

/** IPv6 is on for `dev` (the kernel has IPv6 and it is not disabled there). */
function ipv6Enabled(dev: string): boolean {
  return sysctl(`net.ipv6.conf.${dev}.disable_ipv6`) === '0'
}

/** Addresses (without prefix) on `dev`, from `ip -j addr`; undefined when ip fails. */
function addressesOf(run: Runner, dev: string): { local: string; scope: string }[] | undefined {
  const r = run('ip', ['-j', 'addr', 'show', 'dev', dev])
  if (!r.ok) return undefined
  try {
    const links = JSON.parse(r.stdout) as { addr_info?: { local?: string; scope?: string }[] }[]
    return links.flatMap((l) =>
      (l.addr_info ?? []).map((a) => ({ local: a.local ?? '', scope: a.scope ?? '' }))
    )
  } catch {
    return undefined
  }
}

/** The configured bridge addresses of `role` (address/prefix; IPv4, then IPv6 when set). */
function bridgeAddresses(config: Readonly<Config>, role: Role): string[] {
  const i = config.interception
  const both =
    role === 'tx_proxy'
      ? [i.txBridgeAddress, i.txBridgeAddress6]
      : [i.rxBridgeAddress, i.rxBridgeAddress6]
  return both.flatMap((text) => text.split(/[\s,]+/)).filter((a) => a !== '')
}

/** One family's rule tool. */
interface Family {
  readonly tool: 'iptables' | 'ip6tables'
  readonly ipOpt: '-4' | '-6'
}

/** Problems with the rules of `role` for one family. */
function ruleProblems(run: Runner, config: Readonly<Config>, role: Role, f: Family): string[] {
  const problems: string[] = []
  const side = role === 'tx_proxy' ? 'tx' : 'rx'
  const fix = `apply them: iptables/apply.sh -c FILE --role ${side} (systemctl restart tandem-rules@${side})`
  const chain = (table: string, needle: string, what: string): void => {
    const jump = run(f.tool, ['-w', '-t', table, '-C', 'PREROUTING', '-j', 'TANDEM_PRE'])
    const rules = run(f.tool, ['-w', '-t', table, '-S', 'TANDEM_PRE'])
    if (!rules.ok && /permission denied|must be root/i.test(rules.stderr)) {
      problems.push(
        `rules: cannot read ${f.tool} ${table}: ${rules.stderr.split('\n')[0]} (run check as root)`
      )
    } else if (!rules.ok || !jump.ok) {
      problems.push(`rules: ${f.tool} ${table} chain TANDEM_PRE is missing (${what}); ${fix}`)
    } else if (!rules.stdout.includes(needle)) {
      problems.push(
        `rules: ${f.tool} ${table} TANDEM_PRE has no "${needle}" rule (${what}); ${fix}`
      )
    }
  }
  const i = config.interception
  if (role === 'tx_proxy') {
    chain('mangle', `--queue-num ${i.queueNum}`, 'client SYNs to NFQUEUE')
    chain('nat', `--to-ports ${config.tx.localPort}`, `REDIRECT to tx_proxy.local_port`)
  } else if (i.transparent) {
    chain('mangle', '--transparent', "marks replies to rx_proxy's transparent sockets")
    const rule = run('ip', [f.ipOpt, 'rule', 'show', 'pref', '1000'])
    if (!rule.ok || !rule.stdout.includes('lookup 7462')) {
      problems.push(`rules: ip ${f.ipOpt} rule pref 1000 (fwmark → table 7462) is missing; ${fix}`)
    }
  }
  return problems
}

/** `name`'s uid and groups (`id`), or undefined when there is no such user. */
function lookupAccount(run: Runner, name: string): Account | undefined {
  const uid = run('id', ['-u', name])
  const gids = run('id', ['-G', name])
  if (!uid.ok || !gids.ok) return undefined
  return {
    name,
    uid: Number(uid.stdout.trim()),
    gids: gids.stdout
      .trim()
      .split(/\s+/)
      .filter((g) => g !== '')
      .map(Number)
  }
}

/** The name of uid or gid `id` (`getent`), else the number. */
function nameOf(run: Runner, database: 'passwd' | 'group', id: number): string {
  const r = run('getent', [database, String(id)])
  const name = r.ok ? r.stdout.split(':')[0] : undefined
  return name === undefined || name === '' ? String(id) : name
}

/**
 * One line saying why `account` cannot read `file`, with the fix; undefined when it can, or
 * when the file is missing (the loader's own line says so). A `secret` file (the key, or a
 * configuration holding it) is fixed by giving it to the user, a `shared` one by a read bit.
 */
function unreadableLine(
  file: string,
  account: Account,
  run: Runner,
  what: 'secret' | 'shared'
): string | undefined {
  const r = readableBy(file, account)
  if (r.ok || r.kind === 'missing') return undefined
  const who = account.name
  const owner = `owner ${nameOf(run, 'passwd', r.ownerUid)}:${nameOf(run, 'group', r.ownerGid)}, mode ${r.mode.toString(8).padStart(4, '0')}`
  const letter = r.applied === 'owner' ? 'u' : r.applied === 'group' ? 'g' : 'o'
  if (r.kind === 'directory') {
    return `${file} is not readable by ${who}: it cannot enter ${r.path} (${owner}): chmod ${letter}+x ${r.path}`
  }
  const fix =
    what === 'shared'
      ? `chmod ${letter}+r ${r.path}`
      : r.applied === 'owner'
        ? `chmod 600 ${r.path}`
        : `chown ${who}: ${r.path} and chmod 600 ${r.path}`
  return `${file} is not readable by ${who} (${owner}): ${fix}`
}

/** Every problem of this box's set-up for `role`, one line each (empty: ready). */
export function checkBox(
  role: Role,
  configPath: string | undefined,
  user?: string,
  run: Runner = runCommand
): string[] {
  let config: Readonly<Config>
  try {
    config = loadConfig(configPath, new Map())
  } catch (err) {
    // Nothing else can be checked without a configuration.
    return [`config: ${errorMessage(err)}`]
  }
  const problems: string[] = []
  const account = user === undefined ? undefined : lookupAccount(run, user)
  if (user !== undefined && account === undefined) {
    problems.push(`user: ${user} does not exist (the proxy runs as it)`)
  }
  if (account !== undefined && configPath !== undefined) {
    // SIGHUP re-reads the file as the proxy's user, and a restart needs it too.
    const inline = config.security.pskHex !== ''
    const line = unreadableLine(configPath, account, run, inline ? 'secret' : 'shared')
    if (line !== undefined) problems.push(`config: ${line}`)
  }
  try {
    loadPsk(config)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problems.push(`key: ${err.message}`)
  }
  if (account !== undefined) {
    const sec = config.security
    if (sec.pskHex === '' && sec.pskFile !== '') {
      const line = unreadableLine(sec.pskFile, account, run, 'secret')
      if (line !== undefined) problems.push(`key: ${line}`)
    } else if (configPath !== undefined && (statSync(configPath).mode & 0o077) !== 0) {
      // The key is in the configuration itself, so the file is as secret as a key file.
      problems.push(
        `key: security.psk is set in ${configPath}, which group or others can read: move the key to security.psk_file, or chown ${user}: ${configPath} and chmod 600 ${configPath}`
      )
    }
  }

  const congestion = config.trunk.congestion
  if (congestion !== '') {
    const available = sysctl('net.ipv4.tcp_available_congestion_control') ?? ''
    const release = run('uname', ['-r']).stdout.trim()
    const module = `/lib/modules/${release}/kernel/net/ipv4/tcp_${congestion}.ko`
    const loadable = ['', '.xz', '.zst', '.gz'].some((ext) => existsSync(module + ext))
    if (!available.split(/\s+/).includes(congestion) && !loadable) {
      problems.push(
        `congestion: trunk.congestion = ${congestion} is not available (kernel offers: ${available || 'unknown'}); modprobe tcp_${congestion} or change the key`
      )
    }
  }
  for (const t of TUNING) {
    const v = sysctl(t.key)
    if (v === undefined) problems.push(`sysctl: ${t.key} is not readable`)
    else if (!t.check(v))
      problems.push(
        `sysctl: ${t.key} is "${v}", want ${t.want} (the Tandem sysctl.d file or scripts/tune-box.sh sets it)`
      )
  }

  const i = config.interception
  if (!i.enabled) return problems
  // The bridged deployment: br0 over the two ports, its address, br_netfilter, the rules.
  const side = role === 'tx_proxy' ? 'tx' : 'rx'
  const own = i.ports[side]
  const keyOf = (port: 'lan' | 'wan', name: string): string =>
    name === (port === 'lan' ? i.lanInterface : i.wanInterface) && name !== ''
      ? `interception.${port}_interface`
      : `interception.${side}_${port}_interface`
  const ports: readonly (readonly [string, string])[] = [
    [keyOf('lan', own.lan), own.lan],
    [keyOf('wan', own.wan), own.wan]
  ]
  for (const [key, name] of [['interception.bridge', i.bridge] as const, ...ports]) {
    if (!ifaceExists(name)) problems.push(`interface: ${name} (${key}) does not exist`)
  }
  const bridgeUp = ifaceExists(i.bridge)
  if (bridgeUp && !existsSync(`/sys/class/net/${i.bridge}/bridge`)) {
    problems.push(`interface: ${i.bridge} (interception.bridge) is not a bridge`)
  }
  for (const [key, name] of ports) {
    if (ifaceExists(name) && bridgeUp && masterOf(name) !== i.bridge) {
      problems.push(
        `interface: ${name} (${key}) is not a port of ${i.bridge}: run bridge-setup.sh up`
      )
    }
  }
  // IPv6 counts once any Tandem ip6tables rule is there: a box may carry IPv4 alone (rules
  // applied with --family 4, or IPv6 off), and then IPv6 flows simply pass uncarried.
  const v6 =
    bridgeUp &&
    ipv6Enabled(i.bridge) &&
    run('ip6tables', ['-w', '-t', 'mangle', '-S', 'TANDEM_PRE']).ok
  if (bridgeUp) {
    const have = addressesOf(run, i.bridge)
    const key =
      role === 'tx_proxy' ? 'interception.tx_bridge_address' : 'interception.rx_bridge_address'
    if (have === undefined)
      problems.push(`address: cannot list the addresses of ${i.bridge} (ip -j addr)`)
    else {
      for (const want of bridgeAddresses(config, role)) {
        const addr = want.split('/')[0] ?? ''
        if (!have.some((a) => a.local === addr)) {
          const k = addr.includes(':') ? `${key}6` : key
          problems.push(`address: ${i.bridge} lacks ${want} (${k}): run bridge-setup.sh up`)
        }
      }
      if (!have.some((a) => !a.local.includes(':'))) {
        problems.push(
          `address: ${i.bridge} has no IPv4 address (REDIRECT and rx_proxy need one; ${key})`
        )
      }
      if (
        role === 'tx_proxy' &&
        v6 &&
        !have.some((a) => a.local.includes(':') && a.scope === 'global')
      ) {
        problems.push(
          `address: ${i.bridge} has IPv6 rules but no global IPv6 address, so IPv6 flows cannot be redirected: set ${key}6, or apply the rules with --family 4`
        )
      }
    }
  }
  const families: Family[] = [{ tool: 'iptables', ipOpt: '-4' }]
  if (v6) families.push({ tool: 'ip6tables', ipOpt: '-6' })
  for (const f of families) {
    const name = f.tool === 'iptables' ? 'bridge-nf-call-iptables' : 'bridge-nf-call-ip6tables'
    const v = sysctl(`net.bridge.${name}`)
    if (v !== '1') {
      problems.push(
        `sysctl: net.bridge.${name} is ${v === undefined ? 'absent (br_netfilter not loaded)' : `"${v}"`}, want 1: run bridge-setup.sh up`
      )
    }
    problems.push(...ruleProblems(run, config, role, f))
  }
  if (role === 'rx_proxy' && i.transparent) {
    const nft = run('nft', ['list', 'table', 'bridge', 'tandem'])
    if (!nft.ok) {
      problems.push(
        `rules: nft table bridge tandem is missing (carries the servers' replies to rx_proxy); apply them: iptables/apply.sh -c FILE --role rx`
      )
    }
  }
  return problems
}
