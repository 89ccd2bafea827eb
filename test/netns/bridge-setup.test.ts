/**
 * bridge-setup.sh cannot lock the operator out (root only). A box whose port p1 carries the
 * management addresses and routes, a peer namespace on the other end of p1 (the operator's
 * side) and a third one behind p2:
 *
 *   peer [q1 10.9.0.2, fd00:9::2; lo 10.77.0.1, 10.88.0.1] ── [p1 10.9.0.1, fd00:9::1] box [p2] ── far
 *
 * Without --move-addresses `up` refuses in one line and changes nothing; with it the
 * addresses, the default routes and a route through p1 move to br0, reachability holds both
 * ways and an open TCP connection (an operator's ssh session) survives the move; `down`
 * puts everything back and leaves addresses it did not add alone.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { startIn, type NsProcess } from '../helpers/ns-process.js'
import { BRIDGE_SETUP } from '../helpers/topology.js'

const PREFIX = 'tbs'

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

/** An echo server: what an sshd is to the operator, one line at a time. */
const ECHO_SERVER = `
const net = require('node:net')
net.createServer((s) => s.pipe(s)).listen({ host: process.argv[1], port: 2222 }, () => console.log('ready'))
`
/**
 * The operator's session: sends "before", waits for the file process.argv[2] to exist (the
 * test creates it once the bridge is up), then sends "after" over the same connection.
 */
const SESSION = `
const net = require('node:net')
const fs = require('node:fs')
const socket = net.connect({ host: process.argv[1], port: 2222 })
let text = ''
socket.on('data', (d) => {
  text += d
  if (text === 'before\\n') {
    console.log('echo before')
    const poll = setInterval(() => {
      if (fs.existsSync(process.argv[2])) {
        clearInterval(poll)
        socket.write('after\\n')
      }
    }, 50)
  } else if (text === 'before\\nafter\\n') {
    console.log('echo after')
    socket.end()
  }
})
socket.on('error', (e) => console.log('session error ' + e.message))
socket.write('before\\n')
`

describe('bridge-setup.sh: safe bridging', { skip: netnsUnavailableReason() }, () => {
  let box: Netns
  let peer: Netns
  let far: Netns
  let dir: string
  let stateFile: string
  const procs: NsProcess[] = []

  /** Everything `up` could change: links, addresses, routes of both families. */
  const snapshot = async (): Promise<string> => {
    const parts = await Promise.all([
      box.exec(['ip', '-o', 'link', 'show']),
      box.exec(['ip', '-o', 'addr', 'show']),
      box.exec(['ip', '-4', 'route', 'show', 'table', 'all']),
      box.exec(['ip', '-6', 'route', 'show', 'table', 'all']),
      box.exec(['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])
    ])
    return parts.map((p) => p.stdout).join('\n')
  }
  const ping = async (ns: Netns, address: string): Promise<boolean> =>
    (await run(ns, ['ping', '-c', '1', '-W', '2', address])).code === 0
  const addressesOf = async (dev: string): Promise<string[]> => {
    const { stdout } = await box.exec(['ip', '-o', 'addr', 'show', 'dev', dev, 'scope', 'global'])
    return stdout
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split(/\s+/)[3] ?? '')
  }
  const routeDev = async (family: string, dst: string): Promise<string> => {
    const { stdout } = await box.exec(['ip', family, 'route', 'show', dst])
    return /\bdev (\S+)/.exec(stdout)?.[1] ?? `(no route to ${dst}: ${stdout})`
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tandem-bs-'))
    box = createNetns(PREFIX)
    peer = createNetns(PREFIX)
    far = createNetns(PREFIX)
    stateFile = `/run/tandem-bridge/br0.${box.name}.state`
    for (const ns of [box, peer, far]) {
      await ns.exec(['ip', 'link', 'set', 'lo', 'up'])
      await ns.exec(['sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad'])
      await ns.exec(['sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad'])
    }
    await box.exec([
      'ip',
      'link',
      'add',
      'p1',
      'type',
      'veth',
      'peer',
      'name',
      'q1',
      'netns',
      peer.name
    ])
    await box.exec([
      'ip',
      'link',
      'add',
      'p2',
      'type',
      'veth',
      'peer',
      'name',
      'r2',
      'netns',
      far.name
    ])
    const sh = (ns: Netns, script: string): Promise<unknown> => ns.exec(['sh', '-ec', script])
    await sh(
      box,
      `ip addr add 10.9.0.1/24 dev p1
       ip addr add fd00:9::1/64 dev p1 nodad
       ip link set p1 up; ip link set p2 up
       ip route add default via 10.9.0.2
       ip route add 10.77.0.0/16 via 10.9.0.2 metric 5
       ip -6 route add default via fd00:9::2`
    )
    await sh(
      peer,
      `ip addr add 10.9.0.2/24 dev q1
       ip addr add fd00:9::2/64 dev q1 nodad
       ip link set q1 up
       ip addr add 10.77.0.1/32 dev lo
       ip addr add 10.88.0.1/32 dev lo`
    )
    await sh(far, 'ip link set r2 up')
    // Not 1 to begin with, so that restoring it shows.
    await sh(box, 'echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables')
  })
  after(async () => {
    for (const p of procs) await p.stop()
    for (const ns of [box, peer, far]) ns.destroy()
    rmSync(stateFile, { force: true })
    rmSync(dir, { recursive: true, force: true })
  })

  test('before: the box is reachable through p1, and reaches out through it', async () => {
    assert.ok(await ping(peer, '10.9.0.1'))
    assert.ok(await ping(peer, 'fd00:9::1'))
    assert.ok(await ping(box, '10.88.0.1'), 'default route')
    assert.ok(await ping(box, '10.77.0.1'), 'route through p1')
  })

  test('up without --move-addresses refuses in one line and changes nothing', async () => {
    const before = await snapshot()
    const r = await run(box, [BRIDGE_SETUP, 'up', 'p1', 'p2'])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.equal(
      r.stderr,
      'bridge-setup.sh: p1 carries 10.9.0.1/24 fd00:9::1/64 and would lose it on br0 (cutting off access through it): run again with --move-addresses to move its addresses and routes to br0\n'
    )
    assert.equal(await snapshot(), before)
    assert.equal(existsSync(stateFile), false, 'no state file')
    process.stdout.write(`refused: ${r.stderr}`)
  })

  test('up --move-addresses: addresses and routes move to br0, an open connection survives', async () => {
    const server = startIn(box, [process.execPath, '-e', ECHO_SERVER, '10.9.0.1'], 'echo')
    procs.push(server)
    await server.waitFor(/ready/)
    const go = join(dir, 'go')
    const session = startIn(peer, [process.execPath, '-e', SESSION, '10.9.0.1', go], 'session')
    procs.push(session)
    await session.waitFor(/echo before/)

    const r = await run(box, [
      BRIDGE_SETUP,
      'up',
      '--move-addresses',
      '--address',
      '192.168.50.1/24',
      'p1',
      'p2'
    ])
    assert.equal(r.code, 0, r.stderr)
    process.stdout.write(r.stdout)
    assert.deepEqual(await addressesOf('p1'), [])
    assert.deepEqual((await addressesOf('br0')).sort(), [
      '10.9.0.1/24',
      '192.168.50.1/24',
      'fd00:9::1/64'
    ])
    assert.equal(await routeDev('-4', 'default'), 'br0')
    assert.equal(await routeDev('-4', '10.77.0.0/16'), 'br0')
    assert.equal(await routeDev('-6', 'default'), 'br0')
    // The bridge answers with p1's MAC: the peer's neighbour cache stays right.
    const mac = async (dev: string): Promise<string> =>
      (await box.exec(['cat', `/sys/class/net/${dev}/address`])).stdout
    assert.equal(await mac('br0'), await mac('p1'))

    assert.ok(await ping(peer, '10.9.0.1'), 'peer → box, IPv4')
    assert.ok(await ping(peer, 'fd00:9::1'), 'peer → box, IPv6')
    assert.ok(await ping(box, '10.88.0.1'), 'box → out by the default route')
    assert.ok(await ping(box, '10.77.0.1'), 'box → out by the moved route')
    writeFileSync(go, '')
    await session.waitFor(/echo after|session error/)
    assert.match(session.output(), /echo after/, session.output())
    assert.doesNotMatch(session.output(), /session error/)
    assert.ok(existsSync(stateFile), `state file ${stateFile}`)
    const nf = await box.exec(['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])
    assert.equal(nf.stdout.trim(), '1')
  })

  test('down puts addresses, routes and sysctls back, and leaves a foreign address alone', async () => {
    // Someone else's address on br0: down must neither remove it nor delete the bridge under it.
    await box.exec(['ip', 'addr', 'add', '10.55.0.1/24', 'dev', 'br0'])
    const r = await run(box, [BRIDGE_SETUP, 'down'])
    assert.equal(r.code, 0, r.stderr)
    process.stdout.write(`${r.stdout}${r.stderr}`)
    assert.match(
      r.stderr,
      /kept bridge br0: it carries addresses up did not add \(10\.55\.0\.1\/24\)/
    )
    assert.deepEqual(await addressesOf('br0'), ['10.55.0.1/24'])
    assert.deepEqual((await addressesOf('p1')).sort(), ['10.9.0.1/24', 'fd00:9::1/64'])
    assert.equal(await routeDev('-4', 'default'), 'p1')
    assert.equal(await routeDev('-4', '10.77.0.0/16'), 'p1')
    assert.equal(await routeDev('-6', 'default'), 'p1')
    const ports = await box.exec(['ip', '-o', 'link', 'show', 'master', 'br0'])
    assert.equal(ports.stdout, '', 'ports released')
    const nf = await box.exec(['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'])
    assert.equal(nf.stdout.trim(), '0', 'bridge-nf-call-iptables back to 0')
    assert.ok(await ping(peer, '10.9.0.1'))
    assert.ok(await ping(box, '10.88.0.1'))
    assert.equal(existsSync(stateFile), false, 'state file removed')
    // Nothing recorded any more: a second down changes nothing and says why.
    const again = await run(box, [BRIDGE_SETUP, 'down'])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /no record of what up did .*nothing changed/)
    assert.deepEqual(await addressesOf('br0'), ['10.55.0.1/24'])
    await box.exec(['ip', 'link', 'del', 'br0'])
  })

  test('a bridge that existed before up: down removes only its own address and ports', async () => {
    await box.exec(['ip', 'link', 'add', 'br1', 'type', 'bridge'])
    await box.exec(['ip', 'addr', 'add', '10.56.0.1/24', 'dev', 'br1'])
    await box.exec(['ip', 'link', 'add', 'a1', 'type', 'veth', 'peer', 'name', 'a2'])
    const state = join(dir, 'br1.state')
    const up = await run(box, [
      BRIDGE_SETUP,
      'up',
      '--bridge',
      'br1',
      '--state',
      state,
      '--address',
      '10.57.0.1/24',
      'a1',
      'a2'
    ])
    assert.equal(up.code, 0, up.stderr)
    assert.deepEqual((await addressesOf('br1')).sort(), ['10.56.0.1/24', '10.57.0.1/24'])
    const down = await run(box, [BRIDGE_SETUP, 'down', '--bridge', 'br1', '--state', state])
    assert.equal(down.code, 0, down.stderr)
    assert.deepEqual(await addressesOf('br1'), ['10.56.0.1/24'])
    assert.equal((await box.exec(['ip', '-o', 'link', 'show', 'master', 'br1'])).stdout, '')
    assert.equal((await run(box, ['ip', 'link', 'show', 'br1'])).code, 0, 'br1 still there')
  })
})
