/**
 * Every shell script of the project answers a usage error (an unknown option, an option
 * without its value) the same way: exit status 2 and one line on stderr naming the problem,
 * before it changes anything. Scripts under scripts/ are found by listing the folder, so a
 * new one is covered without editing this test.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

import { ROOT } from '../../helpers/proxies.js'

const SCRIPTS = [
  'bridge-setup.sh',
  'iptables/apply.sh',
  'iptables/rules.sh',
  'deploy/install-units.sh',
  ...readdirSync(join(ROOT, 'scripts'))
    .filter((f) => f.endsWith('.sh'))
    .map((f) => `scripts/${f}`)
]

/** Runs `script` with `args` under sh, as a user would; never as a login to anything. */
function run(script: string, args: readonly string[]): { status: number | null; stderr: string } {
  const r = spawnSync('sh', [join(ROOT, script), ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    timeout: 30_000
  })
  return { status: r.status, stderr: r.stderr }
}

describe('usage errors exit 2 in every script', () => {
  it('lists the scripts it checks', () => {
    assert.ok(SCRIPTS.includes('scripts/tune-box.sh'), SCRIPTS.join(' '))
    assert.ok(SCRIPTS.includes('scripts/setup.sh'), SCRIPTS.join(' '))
    assert.ok(SCRIPTS.includes('scripts/tandem-cc.sh'), SCRIPTS.join(' '))
  })

  for (const script of SCRIPTS) {
    it(`${script} --bogus-option: exit 2, one line naming the option`, () => {
      const r = run(script, ['--bogus-option'])
      assert.equal(r.status, 2, `${script}: ${r.stderr}`)
      const lines = r.stderr.trim().split('\n')
      assert.equal(lines.length, 1, r.stderr)
      assert.match(lines[0] ?? '', /bogus-option/)
    })
  }

  const missingValue: readonly (readonly [string, readonly string[]])[] = [
    ['bridge-setup.sh', ['up', '--bridge']],
    ['bridge-setup.sh', ['up', 'only-one-interface']],
    ['bridge-setup.sh', ['sideways']],
    ['bridge-setup.sh', ['up', '--address', '10.0.0.1', 'a', 'b']],
    ['iptables/apply.sh', ['--role']],
    ['iptables/apply.sh', ['--role', 'mx']],
    ['iptables/apply.sh', ['--family', '5']],
    ['iptables/rules.sh', ['--family', '5']],
    ['scripts/tune-box.sh', ['--peer']],
    ['scripts/tune-box.sh', ['--peer', 'not an address']],
    ['scripts/tandem-cc.sh', []],
    ['scripts/tandem-cc.sh', ['build', 'register']],
    ['scripts/tandem-cc.sh', ['status', '--object']]
  ]
  for (const [script, args] of missingValue) {
    it(`${script} ${args.join(' ')}: exit 2, one line`, () => {
      const r = run(script, args)
      assert.equal(r.status, 2, `${script}: ${r.stderr}`)
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
    })
  }
})
