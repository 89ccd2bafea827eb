/**
 * Tuning that survives a reboot (root only): the files scripts/tune-box.sh writes into a
 * staging root are loaded in a fresh namespace (a "rebooted" box): the sysctl.d file by
 * sysctl, the route list by `tune-box.sh --routes` (what tandem-route-tuning@br0.service runs
 * when br0 appears), also when br0 is re-created and is still down when the unit starts.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'

import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'
import { startIn } from '../helpers/ns-process.js'
import { PROJECT_ROOT } from '../helpers/topology.js'

const TUNE = join(PROJECT_ROOT, 'scripts', 'tune-box.sh')

interface RunResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

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

describe('tune-box.sh: tuning that survives a reboot', { skip: netnsUnavailableReason() }, () => {
  let root: string
  let box: Netns

  const routeTo = async (family: string, dst: string): Promise<string> =>
    (await box.exec(['ip', family, 'route', 'show', dst])).stdout.trim()

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'tandem-tune-'))
    box = createNetns('ttb')
    await box.exec(['ip', 'link', 'set', 'lo', 'up'])
    // What the operator (or the package build) runs: files only, nothing live.
    for (const peer of ['192.168.2.202', 'fd00:2::202']) {
      const r = await run(box, ['sh', TUNE, '--root', root, '--peer', peer, '--dev', 'br0'])
      assert.equal(r.code, 0, r.stderr)
    }
  })
  after(() => {
    box.destroy()
    rmSync(root, { recursive: true, force: true })
  })

  test('the sysctl.d file loads and sets the TCP tuning', async () => {
    const file = join(root, 'etc', 'sysctl.d', '90-tandem.conf')
    const r = await run(box, ['sysctl', '-p', file])
    assert.equal(r.code, 0, r.stderr)
    const read = async (key: string): Promise<string> =>
      (await box.exec(['cat', `/proc/sys/net/ipv4/${key}`])).stdout.trim().replace(/\s+/g, ' ')
    assert.equal(await read('tcp_slow_start_after_idle'), '0')
    assert.equal(await read('tcp_rmem'), '4096 1048576 67108864')
    assert.equal(await read('tcp_wmem'), '4096 65536 67108864')
  })

  test('--routes tunes the routes through br0 once it is up', async () => {
    await box.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    await box.exec(['ip', 'link', 'set', 'br0', 'up'])
    const r = await run(box, ['sh', TUNE, '--routes', '--root', root, '--dev', 'br0'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(
      r.stdout,
      'tune-box.sh: 2 route(s) through br0 tuned (initcwnd 100 initrwnd 100)\n'
    )
    assert.match(await routeTo('-4', '192.168.2.202'), /dev br0 .*initcwnd 100 initrwnd 100/)
    assert.match(await routeTo('-6', 'fd00:2::202'), /dev br0 .*initcwnd 100 initrwnd 100/)
  })

  test('br0 re-created: the routes went with it, --routes waits for it to come up and restores them', async () => {
    await box.exec(['ip', 'link', 'del', 'br0'])
    assert.equal(await routeTo('-4', '192.168.2.202'), '')
    // The unit starts when the device appears, before bridge-setup.sh has set it up.
    await box.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge'])
    const unit = startIn(
      box,
      ['sh', TUNE, '--routes', '--root', root, '--dev', 'br0', '--wait', '20'],
      'tune'
    )
    await new Promise((resolve) => setTimeout(resolve, 1500))
    assert.equal(unit.child.exitCode, null, `--routes did not wait: ${unit.output()}`)
    await box.exec(['ip', 'link', 'set', 'br0', 'up'])
    assert.equal(await unit.exited(), 0, unit.output())
    assert.match(await routeTo('-4', '192.168.2.202'), /dev br0 .*initcwnd 100 initrwnd 100/)
    assert.match(await routeTo('-6', 'fd00:2::202'), /dev br0 .*initcwnd 100 initrwnd 100/)
  })

  test('--routes gives up with one line when br0 never comes up', async () => {
    await box.exec(['ip', 'link', 'set', 'br0', 'down'])
    const r = await run(box, [
      'sh',
      TUNE,
      '--routes',
      '--root',
      root,
      '--dev',
      'br0',
      '--wait',
      '1'
    ])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'tune-box.sh: br0 is not up after 1s: routes not tuned\n')
  })
})
