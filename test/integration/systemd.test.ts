/**
 * The systemd units: they render for this checkout and pass `systemd-analyze verify`; the proxy
 * units are sandboxed (`systemd-analyze security` exposure at most 4.0); no unit installs
 * packages; install-units.sh has --dry-run and --uninstall; and a proxy under a notify socket
 * sends READY=1, WATCHDOG=1 and STOPPING=1 (to a real datagram receiver).
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { datagramReceiver } from '../helpers/observe.js'
import { freePort, ROOT, spawnProxy, startPair, TEST_PSK } from '../helpers/proxies.js'

const INSTALL = join(ROOT, 'deploy', 'install-units.sh')

/** A fresh temporary directory, removed when the test `t` ends. */
function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** Render the units into a fresh directory (no user, no daemon-reload), removed when `t` ends. */
function render(t: TestContext, extra: readonly string[] = []): string {
  const dest = tempDir(t, 'tandem-units-')
  execFileSync('sh', [
    INSTALL,
    '--dest',
    dest,
    '--config',
    join(ROOT, 'network.conf'),
    '--no-reload',
    '--no-user',
    ...extra
  ])
  return dest
}

describe('systemd units', () => {
  test('they pass systemd-analyze verify, with the order bridge → rules → proxy', (t) => {
    const dest = render(t)
    // Template units are verified through an instance of each role.
    const files: string[] = []
    for (const f of readdirSync(dest)) {
      if (f.endsWith('@.service')) {
        for (const role of ['tx', 'rx']) {
          const inst = f.replace('@.service', `@${role}.service`)
          copyFileSync(join(dest, f), join(dest, inst))
          files.push(join(dest, inst))
        }
      } else files.push(join(dest, f))
    }
    const r = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8', cwd: dest })
    assert.equal(r.status, 0, r.stderr)
    // The service user may not exist on the test machine; everything else must be clean.
    const complaints = r.stderr
      .split('\n')
      .filter((l) => l.trim() !== '' && !/User=|Group=|tandem: no such user/i.test(l))
    assert.deepEqual(complaints, [], `systemd-analyze verify complained:\n${r.stderr}`)
    const tx = readFileSync(join(dest, 'tandem-tx-proxy.service'), 'utf8')
    assert.match(tx, /After=tandem-rules@tx\.service/)
    assert.match(tx, /Restart=on-failure/)
    assert.match(tx, /ExecReload=\/bin\/kill -HUP \$MAINPID/)
    assert.match(
      readFileSync(join(dest, 'tandem-rules@.service'), 'utf8'),
      /After=tandem-bridge@%i\.service/
    )
  })

  test('the proxy units are Type=notify with a watchdog, a dedicated user and exposure ≤ 4.0', (t) => {
    const dest = render(t)
    for (const unit of ['tandem-tx-proxy.service', 'tandem-rx-proxy.service']) {
      const text = readFileSync(join(dest, unit), 'utf8')
      assert.match(text, /^Type=notify$/m)
      assert.match(text, /^WatchdogSec=\d+$/m)
      assert.match(text, /^User=tandem$/m)
      assert.match(text, /^AmbientCapabilities=CAP_NET_ADMIN$/m)
      assert.match(text, /^CapabilityBoundingSet=CAP_NET_ADMIN$/m)
      assert.match(text, /^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK$/m)
      for (const want of [
        'ProtectSystem=strict',
        'ProtectHome=yes',
        'PrivateTmp=yes',
        'NoNewPrivileges=yes'
      ]) {
        assert.match(text, new RegExp(`^${want}$`, 'm'))
      }
      const r = spawnSync('systemd-analyze', ['security', '--offline=true', join(dest, unit)], {
        encoding: 'utf8'
      })
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(`${r.stdout}${r.stderr}`)
      assert.ok(m, `no exposure level in:\n${r.stdout}${r.stderr}`)
      const exposure = Number(m[1])
      process.stdout.write(`# ${unit}: exposure ${exposure}\n`)
      assert.ok(exposure <= 4.0, `${unit}: exposure ${exposure} > 4.0`)
    }
  })

  test('no unit installs packages: the rules and bridge units forbid their scripts to', () => {
    const dir = join(ROOT, 'deploy', 'systemd')
    for (const f of readdirSync(dir)) {
      const text = readFileSync(join(dir, f), 'utf8')
      assert.doesNotMatch(text, /apt(-get)?\s+install|dpkg -i/, f)
      if (/^Exec(Start|Stop)=.*\.sh /m.test(text)) {
        assert.match(
          text,
          /^Environment=TANDEM_NO_INSTALL=1$/m,
          `${f} runs a script that may install`
        )
      }
    }
    // The scripts' installer honours it.
    const lib = readFileSync(join(ROOT, 'iptables', 'lib.sh'), 'utf8')
    assert.match(lib, /\[ -z "\$\{TANDEM_NO_INSTALL:-\}" \] && is_root && command -v apt-get/)
    const rules = readFileSync(join(ROOT, 'iptables', 'rules.sh'), 'utf8')
    for (const line of rules.split('\n').filter((l) => /apt-get update/.test(l))) {
      assert.ok(
        rules.includes('[ -z "${TANDEM_NO_INSTALL:-}" ]'),
        `rules.sh installs without checking TANDEM_NO_INSTALL: ${line}`
      )
    }
  })
})

describe('install-units.sh', () => {
  test('--dry-run prints what it would do and changes nothing', (t) => {
    const dest = tempDir(t, 'tandem-dry-')
    const out = execFileSync(
      'sh',
      [INSTALL, '--dest', dest, '--config', join(ROOT, 'network.conf'), '--dry-run', '--no-reload'],
      { encoding: 'utf8' }
    )
    assert.match(out, /would install .*tandem-tx-proxy\.service/)
    assert.match(out, /would install .*tandem-rx-proxy\.service/)
    assert.deepEqual(readdirSync(dest), [])
  })

  test('a port below 1024 gets CAP_NET_BIND_SERVICE through a drop-in; --uninstall removes everything', (t) => {
    const dir = tempDir(t, 'tandem-low-')
    const conf = join(dir, 'network.conf')
    writeFileSync(conf, '[tx_proxy]\nlocal_port = 80 ; http\nmetrics_listen = 127.0.0.1:9464\n')
    const dest = join(dir, 'units')
    execFileSync('sh', [INSTALL, '--dest', dest, '--config', conf, '--no-user', '--no-reload'])
    const dropin = join(dest, 'tandem-tx-proxy.service.d', '50-low-port.conf')
    assert.match(readFileSync(dropin, 'utf8'), /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m)
    assert.equal(existsSync(join(dest, 'tandem-rx-proxy.service.d')), false)
    const out = execFileSync('sh', [INSTALL, '--dest', dest, '--uninstall', '--no-reload'], {
      encoding: 'utf8'
    })
    assert.match(out, /removed .*tandem-tx-proxy\.service/)
    assert.deepEqual(readdirSync(dest), [])
  })

  test("--dry-run reads the values through the proxies' loader (0x50 is port 80) and touches nothing", (t) => {
    const dir = tempDir(t, 'tandem-dry-conf-')
    const psk = join(dir, 'psk')
    writeFileSync(psk, `${'ab'.repeat(32)}\n`, { mode: 0o644 })
    const conf = join(dir, 'network.conf')
    writeFileSync(
      conf,
      `[tx_proxy]\nlocal_port = 0x50\n[rx_proxy]\nmetrics_listen = [::1]:443\n[security]\npsk_file = ${psk}\n`
    )
    const dest = join(dir, 'units')
    const r = spawnSync(
      'sh',
      [INSTALL, '--dest', dest, '--config', conf, '--dry-run', '--no-reload'],
      { encoding: 'utf8' }
    )
    assert.equal(r.status, 0, r.stderr)
    assert.match(
      r.stdout,
      /^would write .*tandem-tx-proxy\.service\.d\/50-low-port\.conf .*port\(s\) 80\)$/m
    )
    assert.match(
      r.stdout,
      /^would write .*tandem-rx-proxy\.service\.d\/50-low-port\.conf .*port\(s\) 443\)$/m
    )
    assert.match(r.stdout, new RegExp(`^would run: chown tandem:tandem ${psk}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^would run: chmod 600 ${psk}$`, 'm'))
    assert.equal(existsSync(dest), false)
    assert.equal(statSync(psk).mode & 0o777, 0o644)
  })

  test('a configuration the proxies refuse stops it before anything is installed, with their line', (t) => {
    const dir = tempDir(t, 'tandem-bad-conf-')
    const conf = join(dir, 'network.conf')
    writeFileSync(conf, '[tx_proxy]\nlocal_port = 80\nbogus = 1\n')
    const dest = join(dir, 'units')
    const r = spawnSync(
      'sh',
      [INSTALL, '--dest', dest, '--config', conf, '--no-user', '--no-reload'],
      { encoding: 'utf8' }
    )
    assert.equal(r.status, 1, r.stderr)
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    assert.match(r.stderr, /tx_proxy\.bogus: unknown key/)
    assert.equal(existsSync(dest), false)
  })

  test('a configuration not written yet: the units are installed, the drop-ins and the key left out, one warning', (t) => {
    const dir = tempDir(t, 'tandem-no-conf-')
    const conf = join(dir, 'network.conf')
    const dest = join(dir, 'units')
    const r = spawnSync(
      'sh',
      [INSTALL, '--dest', dest, '--config', conf, '--dry-run', '--no-reload'],
      { encoding: 'utf8' }
    )
    assert.equal(r.status, 0, r.stderr)
    assert.equal(
      r.stderr,
      `install-units.sh: ${conf} does not exist yet: no low-port drop-ins, key left as it is; run this again once it does\n`
    )
    assert.match(r.stdout, /would install .*tandem-tx-proxy\.service/)
    assert.doesNotMatch(r.stdout, /50-low-port|chown|chmod/)
  })

  test('usage errors exit 2 with one line', () => {
    for (const args of [['--bogus'], ['--dest'], ['--prefix', ''], ['--config', '', '--dry-run']]) {
      const r = spawnSync('sh', [INSTALL, ...args], { encoding: 'utf8' })
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, /^install-units\.sh: /)
    }
  })
})

describe('sd_notify from a running proxy', { timeout: 60_000 }, () => {
  test('READY=1 once the trunk is up, WATCHDOG=1 every half WatchdogSec, STOPPING=1 on SIGTERM', async (t) => {
    // Removed after the test body, whose finally stops the proxies and closes the receiver.
    const dir = tempDir(t, 'tandem-sd-')
    const notify = await datagramReceiver(join(dir, 'notify'))
    const sink = await freePort()
    const pair = await startPair({ destinationPort: sink, subflows: 2 })
    // A second tx_proxy, under the "service manager", dialling the same rx_proxy.
    const tx = spawnProxy(
      'tx-proxy',
      [
        '-c',
        '/dev/null',
        '--set',
        `security.psk=${TEST_PSK}`,
        '--set',
        `tx_proxy.control_socket=${join(dir, 'tx.sock')}`,
        '--local-ip',
        '127.0.0.1',
        '--local-port',
        String(await freePort()),
        '--rx-proxy-ip',
        '127.0.0.1',
        '--rx-proxy-port',
        String(pair.rxPort),
        '--destination',
        `127.0.0.1:${sink}`,
        '--subflows',
        '2'
      ],
      { NOTIFY_SOCKET: join(dir, 'notify'), WATCHDOG_USEC: '400000' }
    )
    try {
      const ready = await notify.waitFor(/READY=1/)
      assert.match(
        ready,
        /^READY=1\nSTATUS=ready: trunk to 127\.0\.0\.1:\d+ up with \d subflow\(s\)$/
      )
      assert.match(tx.log(), /subflow up/, 'READY=1 came after the trunk was up')
      await notify.waitFor(/^WATCHDOG=1$/)
      await new Promise((r) => setTimeout(r, 900))
      const pings = notify.messages().filter((m) => m === 'WATCHDOG=1').length
      assert.ok(pings >= 3, `${pings} keep-alives in about a second at a 400 ms watchdog`)
      await tx.stop()
      assert.match(await notify.waitFor(/STOPPING=1/), /^STOPPING=1\nSTATUS=stopping \(SIGTERM\)$/)
    } finally {
      await tx.stop()
      await pair.stop()
      notify.close()
    }
  })
})
