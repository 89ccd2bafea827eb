/**
 * The Debian package on two fresh namespace boxes, following the README's deployment: build the
 * .deb, unpack it into each box's own root directory (dpkg -x; never into this machine's /),
 * write network.conf, make the key with genkey --out and copy it, bridge, tune, apply the rules,
 * check, then start what the installed units start (ExecStartPre, ExecStart). Flows from src to
 * dst and their replies cross the pair with sha256 equal. Then `check` is shown to name each of
 * five broken set-ups in one line: a missing key, a 0644 key, a missing interface, a missing
 * rule, an unknown key.
 *
 *   src ── [lan] tx box (br0) [wan] ── wan (bridge) ── [wan] rx box (br0) [lan] ── dst
 */
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { dist, startIn, type NsProcess } from '../helpers/ns-process.js'
import { PROJECT_ROOT } from '../helpers/topology.js'

const unavailable = netnsUnavailableReason()
if (unavailable !== undefined) throw new Error(`netns tests cannot run: ${unavailable}`)

const MiB = 1024 * 1024
const pid = process.pid
const A = {
  src: { v4: '192.168.2.11', v6: 'fd00:2::11' },
  dst: { v4: '192.168.2.12', v6: 'fd00:2::12' },
  tx: { v4: '192.168.2.201', v6: 'fd00:2::201' },
  rx: { v4: '192.168.2.202', v6: 'fd00:2::202' }
} as const
/** Both boxes name their ports alike, as the README's single network.conf assumes. */
const LAN = `lan${pid}`
const WAN = `wan${pid}`

/** Sets `key = value` in [section] of ini `text`: replaces the line (or its commented form). */
function setIni(text: string, section: string, key: string, value: string): string {
  const lines = text.split('\n')
  let start = lines.findIndex((l) => l.trim() === `[${section}]`)
  if (start < 0) {
    lines.push('', `[${section}]`)
    start = lines.length - 1
  }
  let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l))
  if (end < 0) end = lines.length
  const re = new RegExp(`^\\s*;?\\s*${key}\\s*=`)
  const at = lines.findIndex((l, i) => i > start && i < end && re.test(l))
  if (at >= 0) lines[at] = `${key} = ${value}`
  else lines.splice(start + 1, 0, `${key} = ${value}`)
  return lines.join('\n')
}

interface Box {
  readonly ns: Netns
  readonly role: 'tx' | 'rx'
  /** The box's own root directory: the package is unpacked here. */
  readonly root: string
  readonly conf: string
  readonly psk: string
  /** /usr/bin/tandem-ROLE-proxy inside the root. */
  readonly cli: string
  readonly lib: string
}

describe('the Debian package on two namespace boxes, by the README', () => {
  const base = join(tmpdir(), `tandem-pkg-${pid}`)
  const namespaces: Netns[] = []
  const procs: NsProcess[] = []
  let deb = ''
  let src: Netns, wan: Netns, dst: Netns
  let tx: Box, rx: Box
  const log: string[] = []

  /** Runs argv in `ns`; resolves with exit code and output (never rejects). */
  const sh = async (
    ns: Netns,
    argv: readonly string[]
  ): Promise<{ code: number; stdout: string; stderr: string }> => {
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'ip',
        ['netns', 'exec', ns.name, ...argv],
        { timeout: 120_000, maxBuffer: 16 * MiB },
        (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
          resolve({ code, stdout, stderr })
        }
      )
    })
    log.push(`[${ns.name}] $ ${argv.join(' ')} (exit ${r.code})\n${r.stdout}${r.stderr}`)
    return r
  }
  const must = async (ns: Netns, argv: readonly string[]): Promise<string> => {
    const r = await sh(ns, argv)
    assert.equal(r.code, 0, `${argv.join(' ')} failed:\n${r.stdout}${r.stderr}`)
    return r.stdout + r.stderr
  }
  const check = (box: Box, conf = box.conf) => sh(box.ns, [box.cli, 'check', '-c', conf])

  /** The installed unit's commands, with the package's paths moved into the box's root. */
  const unitCommands = (box: Box): { pre: string[]; start: string[] } => {
    const unit = readFileSync(
      join(box.root, 'lib/systemd/system', `tandem-${box.role}-proxy.service`),
      'utf8'
    )
    const words = (directive: string): string[] => {
      const line = unit.split('\n').find((l) => l.startsWith(`${directive}=`))
      assert.ok(line !== undefined, `${directive} missing from the unit`)
      return (
        line
          .slice(directive.length + 1)
          .replace(/^[-+@!]+/, '')
          .split(/\s+/)
          .filter((w) => w !== '')
          .map((w) =>
            w === '/etc/tandem/network.conf'
              ? box.conf
              : w.startsWith('/usr/')
                ? join(box.root, w)
                : w
          )
          // The test runs the proxies as root, not as the unit's User=: check is told so.
          .map((w, i, all) => (all[i - 1] === '--user' ? 'root' : w))
      )
    }
    return { pre: words('ExecStartPre'), start: words('ExecStart') }
  }

  before(async () => {
    rmSync(base, { recursive: true, force: true })
    mkdirSync(base, { recursive: true })
    // 1. The package, built from this checkout (uncompressed: the same files, in seconds).
    const built = execFileSync(
      'sh',
      [join(PROJECT_ROOT, 'scripts/build-deb.sh'), '--fast', '--out', base],
      {
        encoding: 'utf8'
      }
    )
    deb = /build-deb\.sh: (\S+\.deb)/.exec(built)?.[1] ?? ''
    assert.ok(deb !== '', built)

    // The five namespaces and their links; the boxes' ports carry no address (fresh boxes).
    const make = (): Netns => {
      const ns = createNetns('tpk')
      namespaces.push(ns)
      return ns
    }
    src = make()
    const txNs = make()
    wan = make()
    const rxNs = make()
    dst = make()
    for (const ns of namespaces) {
      await must(ns, ['ip', 'link', 'set', 'lo', 'up'])
      for (const k of ['all', 'default']) {
        await must(ns, ['sh', '-c', `echo 0 > /proc/sys/net/ipv6/conf/${k}/accept_dad`])
      }
    }
    for (const ns of [txNs, rxNs]) {
      for (const k of ['all', 'default'])
        await must(ns, ['sh', '-c', `echo 0 > /proc/sys/net/ipv4/conf/${k}/rp_filter`])
    }
    const veth = (from: Netns, name: string, to: Netns, peer: string) =>
      must(from, [
        'ip',
        'link',
        'add',
        name,
        'type',
        'veth',
        'peer',
        'name',
        peer,
        'netns',
        to.name
      ])
    await veth(txNs, LAN, src, `src${pid}`)
    await veth(txNs, WAN, wan, `wtx${pid}`)
    await veth(rxNs, WAN, wan, `wrx${pid}`)
    await veth(rxNs, LAN, dst, `dst${pid}`)
    await must(wan, ['ip', 'link', 'add', 'name', `wbr${pid}`, 'type', 'bridge'])
    for (const p of [`wtx${pid}`, `wrx${pid}`, `wbr${pid}`]) {
      if (p !== `wbr${pid}`) await must(wan, ['ip', 'link', 'set', p, 'master', `wbr${pid}`])
      await must(wan, ['ip', 'link', 'set', p, 'up'])
    }
    await must(wan, [
      'sh',
      '-c',
      'echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables; echo 0 > /proc/sys/net/bridge/bridge-nf-call-ip6tables'
    ])
    for (const [ns, dev, a] of [
      [src, `src${pid}`, A.src],
      [dst, `dst${pid}`, A.dst]
    ] as const) {
      await must(ns, ['ip', 'addr', 'add', `${a.v4}/24`, 'dev', dev])
      await must(ns, ['ip', 'addr', 'add', `${a.v6}/64`, 'dev', dev, 'nodad'])
      await must(ns, ['ip', 'link', 'set', dev, 'up'])
    }

    // 2. Install: the package into each box's own root.
    const box = (ns: Netns, role: 'tx' | 'rx'): Box => {
      const root = join(base, role)
      execFileSync('dpkg-deb', ['-x', deb, root])
      mkdirSync(join(root, 'run/tandem'), { recursive: true })
      return {
        ns,
        role,
        root,
        conf: join(root, 'etc/tandem/network.conf'),
        psk: join(root, 'etc/tandem/psk'),
        cli: join(root, `usr/bin/tandem-${role}-proxy`),
        lib: join(root, 'usr/lib/tandem')
      }
    }
    tx = box(txNs, 'tx')
    rx = box(rxNs, 'rx')

    // 3. network.conf: the shipped file with the README's edits (one file for both boxes).
    let conf = readFileSync(tx.conf, 'utf8')
    const edits: [string, string, string][] = [
      ['tx_proxy', 'local_ip', '::'],
      ['tx_proxy', 'rx_proxy_ip', A.rx.v4],
      ['rx_proxy', 'recv_ip', '::'],
      ['interception', 'enabled', 'true'],
      ['interception', 'lan_interface', LAN],
      ['interception', 'wan_interface', WAN],
      ['interception', 'tx_bridge_address', `${A.tx.v4}/24`],
      ['interception', 'rx_bridge_address', `${A.rx.v4}/24`],
      ['interception', 'tx_bridge_address6', `${A.tx.v6}/64`],
      ['interception', 'rx_bridge_address6', `${A.rx.v6}/64`],
      // Only the paths differ from a real box: each box's files live under its own root.
      ['tx_proxy', 'control_socket', join(tx.root, 'run/tandem/tx_proxy.sock')],
      ['rx_proxy', 'control_socket', join(rx.root, 'run/tandem/rx_proxy.sock')]
    ]
    for (const [s, k, v] of edits) conf = setIni(conf, s, k, v)
    for (const b of [tx, rx]) writeFileSync(b.conf, setIni(conf, 'security', 'psk_file', b.psk))

    // 4. The key: made on the tx box, copied to the rx box with its mode.
    await must(tx.ns, ['sh', '-c', 'umask 022 && exec "$0" genkey --out "$1"', tx.cli, tx.psk])
    copyFileSync(tx.psk, rx.psk)
    chmodSync(rx.psk, 0o600)

    // 5. Bridge, tune, rules, check, on each box.
    for (const [b, peer] of [
      [rx, A.tx],
      [tx, A.rx]
    ] as const) {
      const role = b.role
      await must(b.ns, [join(b.lib, 'bridge-setup.sh'), 'up', '-c', b.conf, '--role', role])
      // --root: the tuning's files go to the box's own root, not this machine's /etc.
      // The package's sysctl.d file, loaded as its postinst loads it.
      await must(b.ns, ['sysctl', '-q', '-p', join(b.root, 'etc/sysctl.d/90-tandem.conf')])
      // --root: the tuning's files go to the box's own root, not this machine's /etc; then what
      // tandem-route-tuning@br0 runs when br0 appears.
      const tune = join(b.lib, 'scripts/tune-box.sh')
      await must(b.ns, [tune, '--peer', peer.v4, '--root', b.root])
      await must(b.ns, [tune, '--routes', '--dev', 'br0', '--root', b.root])
      await must(b.ns, [join(b.lib, 'iptables/apply.sh'), '-c', b.conf, '--role', role])
      const c = await check(b)
      assert.equal(c.code, 0, `check on the ${role} box:\n${c.stdout}${c.stderr}`)
      assert.match(c.stdout, new RegExp(`^${role}_proxy check: ok`))
    }

    // 6. Enable: what the units run, rx first.
    for (const b of [rx, tx]) {
      const { pre, start } = unitCommands(b)
      await must(b.ns, pre)
      const p = startIn(b.ns, start, `${b.role}_proxy`)
      procs.push(p)
      await p.waitFor(b.role === 'rx' ? /listening on/ : /subflow up/, 30_000)
    }
  })

  after(() => {
    for (const p of procs) void p.stop()
    for (const ns of namespaces) ns.destroy()
    rmSync(base, { recursive: true, force: true })
    if (process.env.TANDEM_TEST_VERBOSE) process.stderr.write(log.join('\n'))
  })

  test('the package holds no compiler, no dev dependency, and its own Node', () => {
    const files = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 * MiB })
    assert.match(files, /\.\/usr\/lib\/tandem\/node\/bin\/node$/m)
    assert.match(files, /\.\/usr\/lib\/tandem\/native\/build\/Release\/tandem_native\.node$/m)
    assert.match(files, /\.\/usr\/lib\/tandem\/node_modules\/yargs\//)
    assert.doesNotMatch(files, /node_modules\/(typescript|eslint|node-gyp|fast-check)\//)
    const control = execFileSync('dpkg-deb', ['-f', deb, 'Depends'], { encoding: 'utf8' })
    for (const dep of ['iptables', 'iproute2', 'libnetfilter-queue1'])
      assert.ok(control.includes(dep), control)
    assert.doesNotMatch(control, /nodejs|npm|g\+\+/)
    const conffiles = execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' })
    assert.match(conffiles, /^\/etc\/tandem\/network\.conf$/m)
  })

  test('flows from src to dst and their replies cross the pair, sha256 equal', async () => {
    const server = startIn(
      dst,
      [
        dist('tools/receive.js'),
        '--port',
        '5201',
        '--host',
        '::',
        '--keep-listening',
        '--reply-bytes',
        '4MiB',
        '--json',
        '--quiet'
      ],
      'receive'
    )
    procs.push(server)
    await server.waitFor(/listening on/)
    const streams = await Promise.all(
      [A.dst.v4, A.dst.v6].map(async (host) => {
        const r = await sh(src, [
          process.execPath,
          dist('tools/stream.js'),
          host,
          '5201',
          '--bytes',
          '16MiB',
          '--json',
          '--quiet',
          '--timeout',
          '60'
        ])
        assert.equal(r.code, 0, r.stdout + r.stderr)
        return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
          sentSha256: string
          replyBytes: number
          replySha256: string
        }
      })
    )
    const received = () =>
      server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map(
          (l) =>
            JSON.parse(l) as {
              receivedBytes: number
              receivedSha256: string
              replySha256: string
              peerAddress: string
            }
        )
    const deadline = performance.now() + 30_000
    while (received().length < 2 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 50))
    const got = received()
    assert.equal(got.length, 2, server.output())
    for (const s of streams) {
      const match = got.find((g) => g.receivedSha256 === s.sentSha256)
      assert.ok(match !== undefined, 'a flow arrived changed')
      assert.equal(match.receivedBytes, 16 * MiB)
      assert.equal(s.replyBytes, 4 * MiB)
      assert.equal(s.replySha256, match.replySha256)
      // Source transparency: the server saw the client's own address.
      assert.match(match.peerAddress, /192\.168\.2\.11$|^fd00:2::11$/)
    }
    // Carried by the pair: the installed status command says so.
    const status = await must(tx.ns, [tx.cli, 'status', '--json', '-c', tx.conf])
    const s = JSON.parse(status.trim().split('\n')[0]!) as { counters: Record<string, number> }
    assert.ok((s.counters.flows_opened ?? 0) >= 2, JSON.stringify(s.counters))
  })

  test('check names each broken set-up in one line and never prints the key', async () => {
    const key = readFileSync(tx.psk, 'utf8').trim()
    const expectOne = async (box: Box, re: RegExp, conf?: string): Promise<void> => {
      const r = await check(box, conf)
      assert.equal(r.code, 1, `check should fail:\n${r.stdout}${r.stderr}`)
      const lines = r.stderr.trimEnd().split('\n')
      assert.equal(lines.length, 1, `one line expected:\n${r.stderr}`)
      assert.match(lines[0]!, re)
      assert.ok(!r.stdout.includes(key) && !r.stderr.includes(key), 'the key was printed')
    }
    // A missing key.
    renameSync(tx.psk, `${tx.psk}.away`)
    await expectOne(tx, /^tx_proxy check: key: security\.psk_file: cannot read .*psk: ENOENT/)
    renameSync(`${tx.psk}.away`, tx.psk)
    // A 0644 key.
    chmodSync(tx.psk, 0o644)
    await expectOne(
      tx,
      /^tx_proxy check: key: security\.psk_file: .*psk is readable by group or others/
    )
    chmodSync(tx.psk, 0o600)
    // A missing interface.
    const bad = join(tx.root, 'etc/tandem/bad.conf')
    writeFileSync(
      bad,
      setIni(readFileSync(tx.conf, 'utf8'), 'interception', 'wan_interface', 'nosuch0')
    )
    await expectOne(
      tx,
      /^tx_proxy check: interface: nosuch0 \(interception\.wan_interface\) does not exist$/,
      bad
    )
    // A missing rule: the nat jump to tx_proxy's port is gone.
    await must(tx.ns, ['iptables', '-w', '-t', 'nat', '-D', 'PREROUTING', '-j', 'TANDEM_PRE'])
    await expectOne(tx, /^tx_proxy check: rules: iptables nat chain TANDEM_PRE is missing/)
    await must(tx.ns, [join(tx.lib, 'iptables/apply.sh'), '-c', tx.conf, '--role', 'tx'])
    // The rx box's rules: the nft table that carries the servers' replies.
    await must(rx.ns, ['nft', 'delete', 'table', 'bridge', 'tandem'])
    await expectOne(rx, /^rx_proxy check: rules: nft table bridge tandem is missing/)
    await must(rx.ns, [join(rx.lib, 'iptables/apply.sh'), '-c', rx.conf, '--role', 'rx'])
    // An unknown key.
    writeFileSync(bad, setIni(readFileSync(tx.conf, 'utf8'), 'interception', 'bogus', '1'))
    await expectOne(tx, /^tx_proxy check: config: interception\.bogus: unknown key/, bad)
    // Repaired: both pass again.
    for (const b of [tx, rx]) assert.equal((await check(b)).code, 0)
  })
})
