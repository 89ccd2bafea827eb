/**
 * scripts/tune-box.sh writing into a staging root (--root, as the tests and the package build
 * do): the sysctl.d file systemd-sysctl loads at boot, the modules-load.d file naming tcp_bbr
 * and the route list the route-tuning unit re-applies, nothing else; the sysctl file is valid for systemd-sysctl's parser.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'

import { ROOT } from '../../helpers/proxies.js'

const TUNE = join(ROOT, 'scripts', 'tune-box.sh')

function tune(args: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync('sh', [TUNE, ...args], { encoding: 'utf8', env })
  assert.equal(r.status, 0, r.stderr)
  return r.stdout
}

/** Every file under `dir`, as paths relative to it. */
function files(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(dir, join(prefix, e.name)) : [join(prefix, e.name)]
  )
}

describe('tune-box.sh --root (staging root)', () => {
  const dirs: string[] = []
  const stage = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'tandem-tune-'))
    dirs.push(d)
    return d
  }
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('writes etc/sysctl.d/90-tandem.conf, etc/modules-load.d/tandem.conf and etc/tandem/route-tuning, nothing else', () => {
    const root = stage()
    const out = tune(['--root', root, '--peer', '192.168.2.202', '--dev', 'br0'])
    assert.match(out, /wrote .*90-tandem\.conf/)
    assert.deepEqual(files(root).sort(), [
      'etc/modules-load.d/tandem.conf',
      'etc/sysctl.d/90-tandem.conf',
      'etc/tandem/route-tuning'
    ])
    // tcp_bbr at every boot, for trunk.congestion = auto; modules-load.d takes names and comments.
    const modules = readFileSync(join(root, 'etc/modules-load.d/tandem.conf'), 'utf8')
    assert.deepEqual(
      modules.split('\n').filter((l) => l !== '' && !l.startsWith('#')),
      ['tcp_bbr']
    )
    const sysctl = readFileSync(join(root, 'etc/sysctl.d/90-tandem.conf'), 'utf8')
    assert.match(sysctl, /^net\.ipv4\.tcp_slow_start_after_idle = 0$/m)
    assert.match(sysctl, /^net\.ipv4\.tcp_rmem = 4096 1048576 67108864$/m)
    assert.match(sysctl, /^net\.ipv4\.tcp_wmem = 4096 65536 67108864$/m)
    assert.match(sysctl, /^-net\.core\.rmem_max = 67108864$/m)
    const routes = readFileSync(join(root, 'etc/tandem/route-tuning'), 'utf8')
    assert.deepEqual(
      routes.split('\n').filter((l) => l !== '' && !l.startsWith('#')),
      ['192.168.2.202 br0']
    )
  })

  it('twice, and with a second (IPv6) peer: one line per route', () => {
    const root = stage()
    tune(['--root', root, '--peer', '192.168.2.202'])
    tune(['--root', root, '--peer', '192.168.2.202'])
    tune([], { ...process.env, TANDEM_ROOT: root, PATH: process.env.PATH ?? '' })
    tune(['--root', root, '--peer', 'fd00:2::202'])
    const routes = readFileSync(join(root, 'etc/tandem/route-tuning'), 'utf8')
    assert.deepEqual(
      routes.split('\n').filter((l) => l !== '' && !l.startsWith('#')),
      ['192.168.2.202 br0', 'fd00:2::202 br0']
    )
  })

  it('every line of the sysctl file is a comment or key = value (loaded for real in test/netns/boxes)', () => {
    const root = stage()
    tune(['--root', root])
    const lines = readFileSync(join(root, 'etc/sysctl.d/90-tandem.conf'), 'utf8').split('\n')
    for (const line of lines) {
      assert.match(line, /^(#.*|-?[a-z0-9_.]+ = [0-9 ]+|)$/, line)
    }
  })

  it('a missing staging root is an error, not a live change', () => {
    const r = spawnSync('sh', [TUNE, '--root', '/nonexistent-tandem-root'], { encoding: 'utf8' })
    assert.equal(r.status, 1)
    assert.equal(r.stderr, 'tune-box.sh: --root /nonexistent-tandem-root is not a directory\n')
  })
})
