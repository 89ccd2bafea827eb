/**
 * The subflows' congestion control decision (src/common/congestion.ts): `auto` on the kernels a
 * box may have (bbr built in, loaded, missing, not allowed), `system`, a configured name, the
 * fallback after the kernel refuses, and the settings the config accepts. The edge
 * (src/trunk/congestion.ts) is tested with a fake setter and a recording log.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import fc from 'fast-check'

import {
  afterRefusal,
  chooseCongestion,
  isCongestionSetting,
  LONG_PATH_RTT_MS,
  parseCongestionList,
  withoutLongPath,
  type CongestionSystem
} from '../../../src/common/congestion.js'
import { loadConfig } from '../../../src/common/config/load.js'
import { ConfigError, NativeError } from '../../../src/common/errors.js'
import type { Logger } from '../../../src/common/log/logger.js'
import { hasNetAdmin, SubflowCongestion } from '../../../src/trunk/congestion.js'

/** A stock Debian box: cubic by default, bbr loaded (setup ran modprobe), not allowed. */
const DEBIAN_WITH_BBR: CongestionSystem = {
  available: ['reno', 'cubic', 'bbr'],
  allowed: ['reno', 'cubic'],
  systemDefault: 'cubic',
  netAdmin: true
}
/** A box set up by tune-box.sh: bbr loaded and Tandem's congestion control registered. */
const TUNED_BOX: CongestionSystem = {
  available: ['reno', 'cubic', 'bbr', 'tandem'],
  allowed: ['reno', 'cubic'],
  systemDefault: 'cubic',
  netAdmin: true
}
/** A stock Debian box before tcp_bbr is loaded. */
const DEBIAN_NO_BBR: CongestionSystem = {
  available: ['reno', 'cubic'],
  allowed: ['reno', 'cubic'],
  systemDefault: 'cubic',
  netAdmin: true
}

describe('chooseCongestion: auto', () => {
  it('takes bbr where the kernel offers it, setting it on every subflow', () => {
    const c = chooseCongestion('auto', DEBIAN_WITH_BBR)
    assert.equal(c.set, 'bbr')
    assert.equal(c.algorithm, 'bbr')
    assert.equal(c.source, 'auto')
    assert.equal(c.label, 'bbr (auto)')
    assert.equal(c.reason, undefined)
  })

  it('sets nothing when bbr is the system default already', () => {
    const c = chooseCongestion('auto', {
      available: ['reno', 'bbr'],
      allowed: ['reno', 'bbr'],
      systemDefault: 'bbr',
      netAdmin: false
    })
    assert.equal(c.set, undefined)
    assert.equal(c.algorithm, 'bbr')
    assert.equal(c.label, 'bbr (auto)')
  })

  it('keeps the system default when the kernel lacks bbr, and says how to load it', () => {
    const c = chooseCongestion('auto', DEBIAN_NO_BBR)
    assert.equal(c.set, undefined)
    assert.equal(c.algorithm, 'cubic')
    assert.equal(c.source, 'auto-fallback')
    assert.equal(c.label, 'cubic (bbr not available: the system default, not paced by Tandem)')
    assert.match(c.reason ?? '', /offers reno cubic; load it with modprobe tcp_bbr/)
  })

  it('names Tandem’s own pacing in the fallback when the trunk paces', () => {
    const c = chooseCongestion('auto', DEBIAN_NO_BBR, { tandemPaces: true })
    assert.equal(c.label, 'cubic (bbr not available: Tandem paces itself)')
  })

  it('needs CAP_NET_ADMIN or the allowed list to set bbr', () => {
    const unprivileged = { ...DEBIAN_WITH_BBR, netAdmin: false }
    const refused = chooseCongestion('auto', unprivileged)
    assert.equal(refused.source, 'auto-fallback')
    assert.match(
      refused.reason ?? '',
      /tcp_allowed_congestion_control \(reno cubic\).*CAP_NET_ADMIN/
    )
    const allowed = chooseCongestion('auto', {
      ...unprivileged,
      allowed: ['reno', 'cubic', 'bbr']
    })
    assert.equal(allowed.set, 'bbr')
  })

  it('falls back when the kernel cannot be read', () => {
    const c = chooseCongestion('auto', {
      available: undefined,
      allowed: undefined,
      systemDefault: undefined,
      netAdmin: false
    })
    assert.equal(c.set, undefined)
    assert.equal(c.algorithm, undefined)
    assert.equal(c.source, 'auto-fallback')
    assert.match(c.label, /^system default \(bbr not available/)
  })

  it('sets only available names, and only bbr, for any kernel (property)', () => {
    const names = fc.constantFrom('reno', 'cubic', 'bbr', 'htcp', 'vegas')
    fc.assert(
      fc.property(
        fc.option(fc.uniqueArray(names), { nil: undefined }),
        fc.option(fc.uniqueArray(names), { nil: undefined }),
        fc.option(names, { nil: undefined }),
        fc.boolean(),
        (available, allowed, systemDefault, netAdmin) => {
          const c = chooseCongestion('auto', { available, allowed, systemDefault, netAdmin })
          if (c.set !== undefined) {
            assert.equal(c.set, 'bbr')
            assert.ok(available?.includes('bbr'))
            assert.ok(netAdmin || allowed?.includes('bbr'))
          }
          assert.equal(c.source === 'auto', c.algorithm === 'bbr' && c.reason === undefined)
          if (c.source === 'auto-fallback') {
            assert.equal(c.algorithm, systemDefault)
            assert.ok(c.reason !== undefined)
          }
        }
      )
    )
  })
})

describe('chooseCongestion: system and configured names', () => {
  it('system and empty leave the subflows on the system default', () => {
    for (const setting of ['system', '']) {
      const c = chooseCongestion(setting, DEBIAN_WITH_BBR)
      assert.equal(c.set, undefined)
      assert.equal(c.algorithm, 'cubic')
      assert.equal(c.setting, 'system')
      assert.equal(c.label, 'cubic (system default)')
    }
  })

  it('a name is set as configured, even one the kernel does not list', () => {
    const c = chooseCongestion('htcp', DEBIAN_NO_BBR)
    assert.deepEqual(
      { set: c.set, algorithm: c.algorithm, source: c.source, label: c.label },
      { set: 'htcp', algorithm: 'htcp', source: 'configured', label: 'htcp' }
    )
  })
})

describe('chooseCongestion: auto and tandem', () => {
  it('auto takes bbr, and tandem for long paths where it is registered and the trunk paces', () => {
    const c = chooseCongestion('auto', TUNED_BOX, { tandemPaces: true })
    assert.equal(c.label, `bbr (auto); tandem from ${LONG_PATH_RTT_MS} ms RTT`)
    assert.equal(c.set, 'bbr')
    assert.equal(c.longPath, 'tandem')
    // Without the trunk's pacing tandem would have no congestion control at all.
    assert.equal(chooseCongestion('auto', TUNED_BOX).longPath, undefined)
    // Not registered (no BTF, no clang): bbr everywhere, as the label says.
    const plain = chooseCongestion('auto', DEBIAN_WITH_BBR, { tandemPaces: true })
    assert.equal(plain.longPath, undefined)
    assert.equal(plain.label, 'bbr (auto)')
    // Configured names and `system` have no long-path algorithm.
    assert.equal(chooseCongestion('bbr', TUNED_BOX, { tandemPaces: true }).longPath, undefined)
    assert.equal(chooseCongestion('system', TUNED_BOX, { tandemPaces: true }).longPath, undefined)
  })

  it('a refused long-path algorithm is dropped, label and all; a refused bbr keeps it', () => {
    const c = chooseCongestion('auto', TUNED_BOX, { tandemPaces: true })
    const dropped = withoutLongPath(c)
    assert.equal(dropped.longPath, undefined)
    assert.equal(dropped.label, 'bbr (auto)')
    assert.equal(dropped.set, 'bbr')
    const fallback = afterRefusal(c, 'EPERM', 'cubic', { tandemPaces: true })
    assert.equal(fallback.source, 'auto-fallback')
    assert.equal(fallback.longPath, 'tandem')
    assert.match(fallback.label, /^cubic \(bbr not available: Tandem paces itself\); tandem from/)
  })

  it('tandem by name is set as configured', () => {
    const c = chooseCongestion('tandem', TUNED_BOX, { tandemPaces: true })
    assert.deepEqual(
      { set: c.set, algorithm: c.algorithm, source: c.source, label: c.label },
      { set: 'tandem', algorithm: 'tandem', source: 'configured', label: 'tandem' }
    )
  })
})

describe('afterRefusal', () => {
  it('auto falls back to the system default with the kernel’s error', () => {
    const c = afterRefusal(chooseCongestion('auto', DEBIAN_WITH_BBR), 'EPERM', 'cubic')
    assert.equal(c.set, undefined)
    assert.equal(c.algorithm, 'cubic')
    assert.equal(c.source, 'auto-fallback')
    assert.equal(c.reason, 'setting bbr on a subflow failed: EPERM')
  })

  it('a configured name and a fallback stay as they are', () => {
    const configured = chooseCongestion('cubic', DEBIAN_WITH_BBR)
    assert.equal(afterRefusal(configured, 'ENOENT', 'cubic'), configured)
    const fallback = chooseCongestion('auto', DEBIAN_NO_BBR)
    assert.equal(afterRefusal(fallback, 'EPERM', 'cubic'), fallback)
  })
})

describe('trunk.congestion settings', () => {
  it('accepts auto, system, empty and kernel names; refuses the rest', () => {
    for (const ok of ['auto', 'system', '', 'bbr', 'cubic', 'bbr2', 'dctcp', 'a'.repeat(15)]) {
      assert.ok(isCongestionSetting(ok), ok)
    }
    for (const bad of ['BBR', 'bbr cubic', '-bbr', 'a'.repeat(16), 'bbr;', '2bbr']) {
      assert.ok(!isCongestionSetting(bad), bad)
    }
  })

  it('defaults to auto, and a bad value is a ConfigError naming the key', () => {
    assert.equal(loadConfig(undefined, new Map()).trunk.congestion, 'auto')
    assert.throws(
      () => loadConfig(undefined, new Map([['trunk.congestion', 'BBR please']])),
      (err: unknown) => err instanceof ConfigError && err.key === 'trunk.congestion'
    )
  })

  it('reads the sysctl lists', () => {
    assert.deepEqual(parseCongestionList('reno cubic\tbbr\n'), ['reno', 'cubic', 'bbr'])
    assert.deepEqual(parseCongestionList(''), [])
    assert.equal(parseCongestionList(undefined), undefined)
  })
})

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = []
  const log: Logger = {
    debug: () => undefined,
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
    child: () => log,
    isDebugEnabled: () => false
  }
  return { log, lines }
}

describe('SubflowCongestion (the edge, with a fake setter)', () => {
  it('logs the choice once when announced (at start, once the proxy is up) and sets it on every subflow', () => {
    const { log, lines } = recordingLog()
    const set: [number, string][] = []
    const cc = new SubflowCongestion('auto', log, DEBIAN_WITH_BBR, {}, (fd, name) => {
      set.push([fd, name])
    })
    cc.announce()
    cc.apply(7)
    cc.apply(8)
    assert.deepEqual(set, [
      [7, 'bbr'],
      [8, 'bbr']
    ])
    assert.deepEqual(lines, ['info subflow congestion control: bbr (auto)'])
  })

  it('a fallback at start is a warning with its reason', () => {
    const { log, lines } = recordingLog()
    const cc = new SubflowCongestion('auto', log, DEBIAN_NO_BBR, {}, () => {
      assert.fail('nothing to set')
    })
    cc.announce()
    cc.apply(7)
    assert.equal(lines.length, 1)
    assert.match(
      lines[0]!,
      /^warn subflow congestion control: cubic \(bbr not available: .*modprobe tcp_bbr/
    )
  })

  it('falls back for good when the kernel refuses bbr on a socket', () => {
    const { log, lines } = recordingLog()
    let calls = 0
    const cc = new SubflowCongestion('auto', log, DEBIAN_WITH_BBR, {}, () => {
      calls++
      throw new NativeError('setsockopt(TCP_CONGESTION): Operation not permitted', 1)
    })
    cc.announce()
    cc.apply(7)
    cc.apply(8)
    assert.equal(calls, 1)
    assert.equal(cc.current.source, 'auto-fallback')
    assert.equal(cc.current.algorithm, 'cubic')
    assert.match(
      lines[1] ?? '',
      /^warn subflow congestion control: cubic \(bbr not available.*Operation not permitted/
    )
  })

  it('moves a long path to tandem; a refusal is warned about once and long paths stay on bbr', () => {
    const { log, lines } = recordingLog()
    const set: [number, string][] = []
    let refuse = false
    const cc = new SubflowCongestion('auto', log, TUNED_BOX, { tandemPaces: true }, (fd, name) => {
      if (refuse && name === 'tandem') {
        throw new NativeError('setsockopt(TCP_CONGESTION): No such file or directory', 2)
      }
      set.push([fd, name])
    })
    cc.apply(7)
    cc.applyLongPath(7)
    refuse = true // unregistered since the start
    cc.apply(8)
    cc.applyLongPath(8)
    cc.applyLongPath(9)
    assert.deepEqual(set, [
      [7, 'bbr'],
      [7, 'tandem'],
      [8, 'bbr']
    ])
    assert.equal(cc.current.longPath, undefined)
    assert.equal(cc.current.label, 'bbr (auto)')
    assert.deepEqual(lines, [
      'warn subflow congestion control: tandem refused on a long path: setsockopt(TCP_CONGESTION): No such file or directory; its subflows stay on bbr'
    ])
  })

  it('a refused configured name is warned about once and still tried', () => {
    const { log, lines } = recordingLog()
    let calls = 0
    const cc = new SubflowCongestion('htcp', log, DEBIAN_NO_BBR, {}, () => {
      calls++
      throw new NativeError('setsockopt(TCP_CONGESTION): No such file or directory', 2)
    })
    cc.apply(7)
    cc.apply(8)
    assert.equal(calls, 2)
    assert.equal(cc.current.label, 'htcp')
    assert.equal(lines.filter((l) => l.startsWith('warn')).length, 1)
  })
})

describe('hasNetAdmin', () => {
  it('reads bit 12 of CapEff', () => {
    assert.equal(hasNetAdmin('Name:\tnode\nCapEff:\t000001ffffffffff\n'), true)
    assert.equal(hasNetAdmin('CapEff:\t0000000000001000\n'), true)
    assert.equal(hasNetAdmin('CapEff:\t0000000000000fff\n'), false)
    assert.equal(hasNetAdmin('CapEff:\t0000000000000000\n'), false)
    assert.equal(hasNetAdmin('no caps here'), false)
  })
})
