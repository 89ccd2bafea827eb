/** The systemd units render for this checkout and pass `systemd-analyze verify` (issue 7). */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ROOT } from '../helpers/proxies.js'

test('systemd units pass systemd-analyze verify, with the order bridge → rules → proxy', () => {
  const dest = mkdtempSync(join(tmpdir(), 'tandem-units-'))
  execFileSync('sh', [
    join(ROOT, 'deploy', 'install-units.sh'),
    '--dest',
    dest,
    '--config',
    join(ROOT, 'network.conf'),
    '--no-reload'
  ])
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
  assert.equal(r.stderr.trim(), '', `systemd-analyze verify complained:\n${r.stderr}`)
  const tx = readFileSync(join(dest, 'tandem-tx-proxy.service'), 'utf8')
  assert.match(tx, /After=tandem-rules@tx\.service/)
  assert.match(tx, /Restart=on-failure/)
  assert.match(tx, /ExecReload=\/bin\/kill -HUP \$MAINPID/)
  assert.match(
    readFileSync(join(dest, 'tandem-rules@.service'), 'utf8'),
    /After=tandem-bridge@%i\.service/
  )
})
