/**
 * The five-namespace testbed and the scripts that build it (root only): src reaches dst over
 * IPv4 and IPv6 through both bridges with no proxy running (the tx box's NFQUEUE rule sees the
 * SYNs and --queue-bypass lets them through), bridge-setup.sh and iptables/apply.sh are
 * idempotent and report errors in one line, and nothing is left behind.
 */
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'

import { ConfigError } from '../../src/common/errors.js'
import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { APPLY_RULES, BRIDGE_SETUP, createTopology, type Topology } from '../helpers/topology.js'

/** Namespace prefix of this file; with the pid it tells our namespaces from anyone else's. */
const PREFIX = 'ttp'
/** Queue and mark of test/fixtures/topology.conf (not the defaults, so reading it shows). */
const QUEUE_NUM = 7
const MARK_HEX = '0x20'
const LOCAL_PORT = 5000
/** Port of the echo server in dst. */
const ECHO_PORT = 5201
/** Destination port whose SYNs the REDIRECT test marks (nothing listens on it in dst). */
const REDIRECT_TEST_PORT = 5202
/** Limit for one client connection attempt, milliseconds. */
const CONNECT_TIMEOUT_MS = 5000

/** Outcome of a command that may fail. */
interface RunResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `argv` in `ns` and reports its exit status instead of rejecting. */
function run(ns: Netns, argv: readonly string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      'ip',
      ['netns', 'exec', ns.name, ...argv],
      { encoding: 'utf8', timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
        resolve({ code, stdout, stderr })
      }
    )
  })
}

/** Accepts connections, answers each with the peer's address and what it sent. */
const ECHO_SERVER = `
const net = require('node:net')
const server = net.createServer((socket) => {
  socket.once('data', (data) => {
    socket.end(JSON.stringify({ peer: socket.remoteAddress, data: data.toString() }))
  })
})
server.listen({ host: '::', port: Number(process.argv[1]) }, () => console.log('ready'))
`

/** Connects to argv[1]:argv[2], sends "hello", prints the reply. */
const ECHO_CLIENT = `
const net = require('node:net')
const socket = net.connect({ host: process.argv[1], port: Number(process.argv[2]) })
socket.setTimeout(${CONNECT_TIMEOUT_MS}, () => {
  console.error('timed out')
  process.exit(2)
})
let reply = ''
socket.on('connect', () => socket.write('hello'))
socket.on('data', (d) => { reply += d })
socket.on('end', () => console.log(reply))
`

/** Echo reply as seen by the client in src. */
interface EchoReply {
  readonly peer: string
  readonly data: string
}

async function echo(topo: Topology, host: string, port = ECHO_PORT): Promise<EchoReply> {
  const out = await topo.ns.src.exec([process.execPath, '-e', ECHO_CLIENT, host, `${port}`])
  return JSON.parse(out.stdout) as EchoReply
}

/** Packet count of the rule in `tool -t table -L chain` whose target is `target`. */
async function targetPackets(
  ns: Netns,
  tool: 'iptables' | 'ip6tables',
  table: string,
  chain: string,
  target: string
): Promise<number> {
  const { stdout } = await ns.exec([tool, '-w', '-t', table, '-L', chain, '-v', '-x', '-n'])
  const line = stdout.split('\n').find((l) => l.trim().split(/\s+/)[2] === target)
  assert.ok(line !== undefined, `no ${target} rule in ${table}/${chain}:\n${stdout}`)
  return Number(line.trim().split(/\s+/)[0])
}

/** Lines of `tool-save` in `ns` matching `re`. */
async function savedLines(
  ns: Netns,
  tool: 'iptables' | 'ip6tables',
  re: RegExp
): Promise<string[]> {
  const { stdout } = await ns.exec([`${tool}-save`])
  return stdout.split('\n').filter((l) => re.test(l))
}

function ourNamespaces(): string[] {
  const listing = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  return listing
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${PREFIX}${process.pid}-`))
}

describe('five-namespace topology', { skip: netnsUnavailableReason() }, () => {
  let topo: Topology

  before(async () => {
    topo = await createTopology({ prefix: PREFIX, ipv6: true, applyRules: true })
  })
  after(() => {
    topo.destroy()
  })

  test('src reaches dst over IPv4 and IPv6 through both bridges, SYNs passing the queue', async (t) => {
    const server = topo.ns.dst.spawn([process.execPath, '-e', ECHO_SERVER, `${ECHO_PORT}`])
    t.after(() => server.kill('SIGKILL'))
    const [ready] = (await once(server.stdout, 'data')) as [Buffer]
    assert.match(ready.toString(), /ready/)

    const v4 = await echo(topo, topo.addresses.dst.v4)
    assert.deepEqual(v4, { peer: `::ffff:${topo.addresses.src.v4}`, data: 'hello' })
    const v6 = await echo(topo, topo.addresses.dst.v6)
    assert.deepEqual(v6, { peer: topo.addresses.src.v6, data: 'hello' })

    // The SYNs went through the NFQUEUE rule with nothing bound to the queue, and nothing was
    // marked, so nothing was redirected.
    const tx = topo.ns.tx
    assert.ok((await targetPackets(tx, 'iptables', 'mangle', 'TANDEM_PRE', 'NFQUEUE')) >= 1)
    assert.ok((await targetPackets(tx, 'ip6tables', 'mangle', 'TANDEM_PRE', 'NFQUEUE')) >= 1)
    assert.equal(await targetPackets(tx, 'iptables', 'nat', 'TANDEM_PRE', 'REDIRECT'), 0)
  })

  test('the REDIRECT rule sends marked flows to local_port on the tx box', async (t) => {
    const tx = topo.ns.tx
    // Stand-in for tx_proxy's accept verdict: mark the SYNs to REDIRECT_TEST_PORT before the
    // queue rule sees them (the bypass accepts them with the mark kept).
    const mark = ['PREROUTING', '-p', 'tcp', '--syn', '--dport', `${REDIRECT_TEST_PORT}`]
    const setMark = [...mark, '-j', 'MARK', '--set-mark', MARK_HEX]
    for (const tool of ['iptables', 'ip6tables']) {
      await tx.exec([tool, '-w', '-t', 'mangle', '-I', ...setMark])
      t.after(() => {
        execFileSync('ip', ['netns', 'exec', tx.name, tool, '-w', '-t', 'mangle', '-D', ...setMark])
      })
    }
    const server = tx.spawn([process.execPath, '-e', ECHO_SERVER, `${LOCAL_PORT}`])
    t.after(() => server.kill('SIGKILL'))
    const [ready] = (await once(server.stdout, 'data')) as [Buffer]
    assert.match(ready.toString(), /ready/)

    // Addressed to dst, answered by the tx box's listener: the connection was redirected.
    const v4 = await echo(topo, topo.addresses.dst.v4, REDIRECT_TEST_PORT)
    assert.deepEqual(v4, { peer: `::ffff:${topo.addresses.src.v4}`, data: 'hello' })
    const v6 = await echo(topo, topo.addresses.dst.v6, REDIRECT_TEST_PORT)
    assert.deepEqual(v6, { peer: topo.addresses.src.v6, data: 'hello' })
    assert.ok((await targetPackets(tx, 'iptables', 'nat', 'TANDEM_PRE', 'REDIRECT')) >= 1)
    assert.ok((await targetPackets(tx, 'ip6tables', 'nat', 'TANDEM_PRE', 'REDIRECT')) >= 1)
  })

  test('a failed createTopology leaves no namespace behind', async () => {
    const before = ourNamespaces().length
    // A bad value fails before any namespace exists…
    await assert.rejects(
      createTopology({ prefix: PREFIX, overrides: { 'interception.queue_num': 'many' } }),
      (err: unknown) => err instanceof ConfigError && err.key === 'interception.queue_num'
    )
    // …a wrong interface only when bridge-setup.sh runs, with five namespaces to remove.
    await assert.rejects(
      createTopology({ prefix: PREFIX, overrides: { 'interception.lan_interface': 'nosuch0' } }),
      /bridge-setup\.sh: interface nosuch0 does not exist/
    )
    assert.equal(ourNamespaces().length, before)
  })

  test('bridge-setup.sh up again on the live tx box changes nothing', async () => {
    const a = topo.addresses
    const argv = [BRIDGE_SETUP, 'up', '-c', topo.configPath, '--role', 'tx']
    const address = ['--address', `${a.tx.v4}/24`, '--address', `${a.tx.v6}/64`]
    const result = await run(topo.ns.tx, [...argv, ...address])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /already a port of br0/)
    const { stdout } = await topo.ns.tx.exec(['ip', '-o', 'addr', 'show', 'dev', 'br0'])
    assert.equal(stdout.split(`inet ${a.tx.v4}/24`).length - 1, 1, stdout)
    assert.equal(stdout.split(`inet6 ${a.tx.v6}/64`).length - 1, 1, stdout)
    const ports = await topo.ns.tx.exec(['ip', '-o', 'link', 'show', 'master', 'br0'])
    assert.equal(ports.stdout.trim().split('\n').length, 2)
  })

  test('bridge-setup.sh: up twice, down twice, and a missing interface', async (t) => {
    const ns = createNetns(PREFIX, t)
    const [p1, p2] = [`a${process.pid}`, `b${process.pid}`]
    await ns.exec(['ip', 'link', 'add', p1, 'type', 'veth', 'peer', 'name', p2])

    const missing = await run(ns, [BRIDGE_SETUP, 'up', p1, 'nosuch0'])
    assert.equal(missing.code, 1)
    assert.equal(missing.stderr, 'bridge-setup.sh: interface nosuch0 does not exist\n')
    assert.equal(missing.stdout, '')
    assert.equal((await run(ns, ['ip', 'link', 'show', 'br0'])).code, 1, 'no br0 after the error')

    for (let i = 0; i < 2; i++) {
      const up = await run(ns, [BRIDGE_SETUP, 'up', '--address', '192.168.2.201/24', p1, p2])
      assert.equal(up.code, 0, up.stderr)
    }
    const master = await ns.exec(['ip', '-o', 'link', 'show', 'master', 'br0'])
    assert.equal(master.stdout.trim().split('\n').length, 2)
    const addrs = await ns.exec(['ip', '-o', '-4', 'addr', 'show', 'dev', 'br0'])
    assert.equal(addrs.stdout.trim().split('\n').length, 1)
    const nf = await ns.exec(['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])
    assert.equal(nf.stdout.trim(), '1')

    for (let i = 0; i < 2; i++) {
      const down = await run(ns, [BRIDGE_SETUP, 'down'])
      assert.equal(down.code, 0, down.stderr)
    }
    assert.equal((await run(ns, ['ip', 'link', 'show', 'br0'])).code, 1, 'br0 is gone')
    const left = await ns.exec(['ip', '-o', 'link', 'show', p1])
    assert.doesNotMatch(left.stdout, /master/)
  })

  test('apply.sh --dry-run prints the configured rules and changes nothing', async () => {
    const tx = topo.ns.tx
    const before = (await tx.exec(['iptables-save'])).stdout.replace(/^#.*\n/gm, '')
    const { stdout } = await tx.exec([
      APPLY_RULES,
      '-c',
      topo.configPath,
      '--role',
      'tx',
      '--dry-run'
    ])
    const lan = topo.interfaces.tx.lan
    for (const tool of ['iptables', 'ip6tables']) {
      assert.ok(
        stdout.includes(
          `${tool} -w -t mangle -A TANDEM_PRE -i br0 -m physdev --physdev-in ${lan} -p tcp --syn -j NFQUEUE --queue-num ${QUEUE_NUM} --queue-bypass`
        ),
        stdout
      )
      assert.ok(
        stdout.includes(
          `${tool} -w -t nat -A TANDEM_PRE -i br0 -p tcp -m mark --mark ${MARK_HEX} -j REDIRECT --to-ports ${LOCAL_PORT}`
        ),
        stdout
      )
    }
    const afterDryRun = (await tx.exec(['iptables-save'])).stdout.replace(/^#.*\n/gm, '')
    assert.equal(afterDryRun, before)
  })

  test('apply.sh twice leaves one copy; --remove deletes only our chains and jumps', async () => {
    const tx = topo.ns.tx
    // Someone else's rule, which --remove must leave alone.
    await tx.exec([
      'iptables',
      '-t',
      'nat',
      '-A',
      'PREROUTING',
      '-p',
      'udp',
      '--dport',
      '9',
      '-j',
      'RETURN'
    ])
    const apply = [APPLY_RULES, '-c', topo.configPath, '--role', 'tx']
    await tx.exec(apply)
    await tx.exec(apply)
    for (const tool of ['iptables', 'ip6tables'] as const) {
      assert.equal((await savedLines(tx, tool, /-j NFQUEUE/)).length, 1, tool)
      assert.equal((await savedLines(tx, tool, /-j REDIRECT/)).length, 1, tool)
      assert.equal((await savedLines(tx, tool, /^-A PREROUTING -j TANDEM_PRE$/)).length, 2, tool)
    }
    const queued = await savedLines(tx, 'iptables', /-j NFQUEUE/)
    assert.match(queued[0] ?? '', new RegExp(`--queue-num ${QUEUE_NUM} --queue-bypass`))

    for (let i = 0; i < 2; i++) {
      await tx.exec([APPLY_RULES, '--remove'])
    }
    for (const tool of ['iptables', 'ip6tables'] as const) {
      assert.deepEqual(await savedLines(tx, tool, /TANDEM|NFQUEUE|REDIRECT/), [], tool)
    }
    assert.equal((await savedLines(tx, 'iptables', /--dport 9 -j RETURN/)).length, 1)
  })

  test('apply.sh rejects a bad role and a missing config in one line', async () => {
    const badRole = await run(topo.ns.tx, [APPLY_RULES, '--role', 'mx', '--dry-run'])
    assert.equal(badRole.code, 2)
    assert.equal(badRole.stderr.trim().split('\n').length, 1)
    assert.match(badRole.stderr, /bad role 'mx'/)
    const noConfig = await run(topo.ns.tx, [APPLY_RULES, '-c', '/nonexistent.conf', '--dry-run'])
    assert.equal(noConfig.code, 1)
    assert.equal(noConfig.stderr, 'apply.sh: cannot read config file /nonexistent.conf\n')
  })

  test('destroy() removes every namespace', () => {
    assert.ok(ourNamespaces().length >= 5)
    topo.destroy()
    assert.deepEqual(ourNamespaces(), [])
  })
})
