/**
 * The shipped network.conf: it loads with the proxies' own loader, carries every section the
 * deployment steps edit, and one file names each box's interfaces (per-role keys win over
 * the shared ones, for the proxies and for the rules script alike).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'

import { loadConfig } from '../../../src/common/config/load.js'
import { ROOT } from '../../helpers/proxies.js'

const SHIPPED = join(ROOT, 'network.conf')

describe('network.conf', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-conf-'))
  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('the shipped file loads and has every section the deployment edits', () => {
    const config = loadConfig(SHIPPED, new Map())
    assert.equal(config.interception.bridge, 'br0')
    const sections = [...readFileSync(SHIPPED, 'utf8').matchAll(/^\[([a-z_]+)\]$/gm)].map(
      (m) => m[1]
    )
    for (const s of ['tx_proxy', 'rx_proxy', 'interception', 'security', 'log']) {
      assert.ok(sections.includes(s), `[${s}] missing from network.conf: ${sections.join(' ')}`)
    }
  })

  it('per-role interface names win over the shared ones, each on its own box', () => {
    const path = join(dir, 'roles.conf')
    writeFileSync(
      path,
      [
        '[interception]',
        'lan_interface = eth0',
        'wan_interface = eth1',
        'tx_lan_interface = enp1s0',
        'rx_wan_interface = eno2',
        'rx_bridge_address6 = fd00:2::202/64',
        ''
      ].join('\n')
    )
    const { interception: i } = loadConfig(path, new Map())
    assert.deepEqual(i.ports, {
      tx: { lan: 'enp1s0', wan: 'eth1' },
      rx: { lan: 'eth0', wan: 'eno2' }
    })
    assert.equal(i.rxBridgeAddress6, 'fd00:2::202/64')
    assert.equal(i.txBridgeAddress6, '')

    const dryRun = (role: string): string => {
      const r = spawnSync(
        'sh',
        [join(ROOT, 'iptables', 'apply.sh'), '-c', path, '--role', role, '--dry-run'],
        { encoding: 'utf8' }
      )
      assert.equal(r.status, 0, r.stderr)
      return r.stdout
    }
    assert.match(dryRun('tx'), /--physdev-in enp1s0 -p tcp --syn/)
    assert.match(dryRun('rx'), /--physdev-in eth0 -p tcp -m socket/)
    assert.doesNotMatch(dryRun('rx'), /enp1s0/)
  })
})
