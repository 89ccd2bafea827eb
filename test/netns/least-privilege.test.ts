/**
 * The proxies as the systemd units run them: an unprivileged user with CAP_NET_ADMIN as its only
 * (ambient) capability and no_new_privs (setpriv stands in for systemd). In a namespace of its
 * own: tx_proxy binds its NFQUEUE (`/readyz`), learns a REDIRECTed client's destination
 * (SO_ORIGINAL_DST), sets a congestion control outside tcp_allowed_congestion_control and forced
 * buffer sizes, reads a key file only that user can read, and creates its control socket;
 * IP_TRANSPARENT works; without the capability the same settings fail with EPERM.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ROOT, TEST_PSK } from '../helpers/proxies.js'

const NS = `lp${process.pid}`
/** A uid and gid no account uses, like a DynamicUser's. */
const UID = 64_999
const children: ChildProcess[] = []
let dir = ''

function ns(args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8' })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

/** setpriv arguments: UID, CAP_NET_ADMIN ambient (or no capability at all), no_new_privs. */
function unprivileged(withCap: boolean): string[] {
  return [
    'setpriv',
    `--reuid=${UID}`,
    `--regid=${UID}`,
    '--clear-groups',
    `--inh-caps=${withCap ? '-all,+net_admin' : '-all'}`,
    `--ambient-caps=${withCap ? '-all,+net_admin' : '-all'}`,
    `--bounding-set=${withCap ? '-all,+net_admin' : '-all'}`,
    '--no-new-privs'
  ]
}

/** Start `args` in the namespace; its output is collected. */
function start(args: readonly string[]): { child: ChildProcess; log: () => string } {
  const child = spawn('ip', ['netns', 'exec', NS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let text = ''
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()))
  return { child, log: () => text }
}

async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('least privilege: a dedicated user with CAP_NET_ADMIN alone', { timeout: 120_000 }, () => {
  before(() => {
    spawnSync('ip', ['netns', 'del', NS])
    assert.equal(spawnSync('ip', ['netns', 'add', NS]).status, 0)
    ns(['ip', 'link', 'set', 'lo', 'up'])
    ns(['ip', 'addr', 'add', '127.0.0.2/8', 'dev', 'lo'])
    dir = mkdtempSync(join(tmpdir(), 'tandem-lp-'))
    chownSync(dir, UID, UID)
    writeFileSync(join(dir, 'psk'), TEST_PSK, { mode: 0o600 })
    chownSync(join(dir, 'psk'), UID, UID)
  })
  after(() => {
    for (const c of children) c.kill('SIGKILL')
    spawnSync('ip', ['netns', 'del', NS])
    rmSync(dir, { recursive: true, force: true })
  })

  test('tx_proxy and rx_proxy carry a REDIRECTed flow with NFQUEUE bound, cubic and forced buffers', async () => {
    const common = [
      '-c',
      '/dev/null',
      '--set',
      `security.psk_file=${join(dir, 'psk')}`,
      '--set',
      'rx_proxy.deny_subnets=',
      // The destination is on this namespace's loopback, which rx_proxy refuses unless told.
      '--set',
      'rx_proxy.allow_loopback=true',
      '--set',
      `rx_proxy.control_socket=${join(dir, 'rx.sock')}`,
      '--set',
      `tx_proxy.control_socket=${join(dir, 'tx.sock')}`,
      // cubic is outside tcp_allowed_congestion_control here: setting it needs CAP_NET_ADMIN.
      '--set',
      'trunk.congestion=cubic',
      '--set',
      'trunk.socket_buffer_bytes=4194304'
    ]
    const rx = start([
      ...unprivileged(true),
      process.execPath,
      join(ROOT, 'dist', 'src', 'rx-proxy', 'main.js'),
      ...common,
      '--recv-ip',
      '127.0.0.1',
      '--recv-port',
      '16000'
    ])
    const tx = start([
      ...unprivileged(true),
      process.execPath,
      join(ROOT, 'dist', 'src', 'tx-proxy', 'main.js'),
      ...common,
      '--local-ip',
      '127.0.0.1',
      '--local-port',
      '15000',
      '--rx-proxy-ip',
      '127.0.0.1',
      '--rx-proxy-port',
      '16000',
      '--subflows',
      '2',
      '--set',
      'interception.enabled=true',
      '--set',
      'interception.queue_num=4711',
      '--set',
      'tx_proxy.metrics_listen=127.0.0.1:19464'
    ])
    // The client (root) goes to 127.0.0.2:5201; the kernel REDIRECTs it to tx_proxy, which
    // asks SO_ORIGINAL_DST where it was going.
    assert.equal(
      ns([
        'iptables',
        '-t',
        'nat',
        '-A',
        'OUTPUT',
        '-p',
        'tcp',
        '-d',
        '127.0.0.2',
        '--dport',
        '5201',
        '-m',
        'owner',
        '--uid-owner',
        '0',
        '-j',
        'REDIRECT',
        '--to-ports',
        '15000'
      ]).status,
      0
    )
    const recv = start([
      process.execPath,
      join(ROOT, 'dist', 'src', 'tools', 'receive.js'),
      '--port',
      '5201',
      '--host',
      '127.0.0.2',
      '--json'
    ])
    await until(
      () => /subflow up(.|\n)*subflow up/.test(tx.log()),
      `no trunk:\n${tx.log()}\n${rx.log()}`
    )
    await until(() => /listening/.test(recv.log()), 'receive did not listen')
    const ready = ns([
      process.execPath,
      '-e',
      "fetch('http://127.0.0.1:19464/readyz').then(async (r) => console.log(r.status, await r.text()))"
    ])
    assert.match(
      ready.out,
      /^200 ready: trunk to 127\.0\.0\.1:16000 up with 2 subflow\(s\)/,
      `${ready.out}\n${tx.log()}`
    )
    const run = ns([
      process.execPath,
      join(ROOT, 'dist', 'src', 'tools', 'stream.js'),
      '127.0.0.2',
      '5201',
      '--bytes',
      '4MiB',
      '--json',
      '--quiet'
    ])
    assert.equal(run.status, 0, run.out)
    await until(
      () => /"receivedBytes":4194304/.test(recv.log()),
      `dst did not get 4 MiB: ${recv.log()}`
    )
    assert.match(
      tx.log(),
      /flow open .*dst=127\.0\.0\.2:5201/,
      'the destination came from SO_ORIGINAL_DST'
    )
    const ss = ns(['ss', '-tni', 'sport', '=', '16000'])
    assert.match(ss.out, /cubic/, ss.out)
    assert.doesNotMatch(
      `${tx.log()}${rx.log()}`,
      /subflow tuning|NFQUEUE failed|EPERM|EACCES/,
      `${tx.log()}\n${rx.log()}`
    )
    const status = ns([join(ROOT, 'tx_proxy'), 'status', '--control', join(dir, 'tx.sock')])
    assert.match(status.out, /trunk peer 127\.0\.0\.1:16000: up, intercepting, encrypted/)
    for (const p of [tx, rx, recv]) p.child.kill('SIGTERM')
  })

  test('IP_TRANSPARENT, forced buffers and cubic need the capability: with it they work, without it EPERM', () => {
    const script = `
      const n = await import(${JSON.stringify(join(ROOT, 'dist', 'native', 'index.js'))})
      const net = await import('node:net')
      const c = n.nativeConstants()
      const server = net.createServer().listen(0, '127.0.0.1')
      await new Promise((r) => server.once('listening', r))
      const s = net.connect(server.address().port, '127.0.0.1')
      await new Promise((r) => s.once('connect', r))
      const fd = n.socketFd(s)
      const out = {}
      const attempt = (name, f) => { try { f(); out[name] = 'ok' } catch (e) { out[name] = /EPERM/.test(e.message) ? 'EPERM' : e.message } }
      attempt('IP_TRANSPARENT', () => n.setSockOptInt(fd, c.SOL_IP, c.IP_TRANSPARENT, 1))
      attempt('SO_SNDBUFFORCE', () => n.setSockOptInt(fd, c.SOL_SOCKET, c.SO_SNDBUFFORCE, 1 << 22))
      attempt('cubic', () => n.setCongestion(fd, 'cubic'))
      console.log(JSON.stringify(out))
      s.destroy(); server.close()
    `
    const run = (withCap: boolean): Record<string, string> => {
      const r = ns([
        ...unprivileged(withCap),
        process.execPath,
        '--input-type=module',
        '-e',
        script
      ])
      assert.equal(r.status, 0, r.out)
      return JSON.parse(r.out.trim().split('\n').pop() ?? '{}') as Record<string, string>
    }
    assert.deepEqual(run(true), { IP_TRANSPARENT: 'ok', SO_SNDBUFFORCE: 'ok', cubic: 'ok' })
    assert.deepEqual(run(false), {
      IP_TRANSPARENT: 'EPERM',
      SO_SNDBUFFORCE: 'EPERM',
      cubic: 'EPERM'
    })
  })
})
