/**
 * Configuration: defaults, every key refusing a bad value with a ConfigError naming it, size
 * suffixes and hex, cross-key checks, freezing, the acceleration policy; and the built CLI spawned
 * (exit code 2 and one stderr line naming the key; --help lists every key). The CLI cases need the
 * build (`npx tsc -p tsconfig.build.json`).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

import {
  buildConfig,
  findKey,
  parseHostPort,
  parseValue
} from '../../../src/common/config/config.js'
import { loadConfig, parseOverrides, readConfigFile } from '../../../src/common/config/load.js'
import { KEYS, type KeySpec } from '../../../src/common/config/schema.js'
import { ConfigError, PepErrorCodes } from '../../../src/common/errors.js'
import {
  inSubnet,
  parsePortList,
  parseSubnetList,
  policyAccepts,
  type Policy
} from '../../../src/common/policy.js'

/** Repository root: this file runs from dist/test/unit/config/. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..')

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

function nameOf(spec: KeySpec): string {
  return `${spec.section}.${spec.key}`
}

/** buildConfig with `section.key` → text overrides. */
function build(values: Record<string, string> = {}): ReturnType<typeof buildConfig> {
  return buildConfig(new Map(Object.entries(values)))
}

/** Assert `fn` throws a ConfigError for `key`. */
function assertConfigError(fn: () => unknown, key: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.key, key)
    assert.equal(err.code, PepErrorCodes.CONFIG)
    assert.ok(err.message.startsWith(`${key}: `), err.message)
    if (message) assert.match(err.message, message)
    return true
  })
}

/** Bad values for the text keys, each of which has its own check. */
const BAD_TEXT: Readonly<Record<string, readonly string[]>> = {
  'trunk.congestion': ['BBR', 'bbr cubic', 'a'.repeat(16), 'bbr;rm', 'any text / at all'],
  'interception.bridge': ['', 'br 0', 'a-name-longer-than-15', 'br0;rm'],
  'interception.lan_interface': ['', 'eth0/1', 'x'.repeat(16)],
  'interception.wan_interface': ['', 'eth 1'],
  'interception.tx_bridge_address': [
    '192.168.2.201',
    '192.168.2.201/0',
    '192.168.2.201/33',
    'x/24',
    '::1/129'
  ],
  'interception.rx_bridge_address': ['', '1.2.3/24', '192.168.2.202/x'],
  'interception.ports': ['0', '65536', '10-5', 'http', '80-', '-80', '1.5'],
  'trunk.redundant_ports': ['0', '65536', 'ssh', '22-'],
  'rx_proxy.allow_ports': ['0', '65536', 'http'],
  'rx_proxy.allow_subnets': ['10.0.0.0/33', 'nonsense'],
  'rx_proxy.allow_peers': ['10.0.0.0/33', 'tx-box.example', '::1/129'],
  'rx_proxy.deny_subnets': ['1.2.3.4/', 'x'],
  'interception.subnets': ['10.0.0.0/33', 'x', '::/129', '10.0.0.0/-1', '1.2.3/8'],
  'interception.exclude_ports': ['22x', '70000'],
  'interception.exclude_subnets': ['10.0.0.0/8.5', 'fe80::/200']
}

/** Invalid texts for one key, by its type. */
function badValues(spec: KeySpec): readonly string[] {
  const t = spec.type
  switch (t.kind) {
    case 'int': {
      const out = [
        t.min > 0 ? String(t.min - 1) : '-1',
        String(t.max + 1),
        `0x${(t.max + 1).toString(16)}`,
        'abc',
        '1.5',
        '',
        '12 apples',
        '1e3',
        '99999999999999999999999'
      ]
      if (!spec.key.endsWith('_bytes')) out.push('1k', '2MiB')
      return out
    }
    case 'ip':
      return ['garbage', '1.2.3', '256.1.1.1', '01.2.3.4', ':::', '1::2::3', '', 'localhost']
    case 'host':
      return [
        '1.2.3',
        '256.1.1.1',
        '',
        'a b',
        '-rx.example',
        'rx_.example',
        `${'x'.repeat(64)}.example`
      ]
    case 'enum':
      return ['nope', '', `${t.values[0]!} `.repeat(2), t.values[0]!.toUpperCase()]
    case 'endpoint':
      return [
        'garbage',
        'host',
        'host:0',
        'host:65536',
        '[1.2.3.4]:80',
        ':80',
        'host:',
        '[::1]',
        'a b:80'
      ]
    case 'string':
      return BAD_TEXT[nameOf(spec)] ?? []
    case 'rate':
      return ['fast', '-1mbit', '100 apples', '1e3', '10kbit', '2tbit', '100mbyte', 'mbit']
  }
}

describe('config: defaults', () => {
  it('build, and match the schema', () => {
    const c = build()
    assert.equal(c.tx.localIp, '0.0.0.0')
    assert.equal(c.tx.localPort, 5000)
    assert.equal(c.tx.rxProxyIp, '127.0.0.1')
    assert.equal(c.tx.rxProxyPort, 6000)
    assert.equal(c.tx.destination, undefined)
    assert.equal(c.tx.subflows, 8)
    assert.equal(c.rx.recvPort, 6000)
    assert.equal(c.trunk.scheduler, 'first-free')
    assert.equal(c.trunk.framePayloadBytes, 64 * KiB)
    assert.equal(c.limits.flowWindowBytes, 4 * MiB)
    assert.equal(c.limits.maxBufferedBytes, 1 * GiB)
    assert.equal(c.limits.maxFrameBodyBytes, 256 * KiB)
    assert.equal(c.interception.enabled, false)
    assert.equal(c.interception.transparent, true)
    assert.deepEqual(c.interception.policy.excludePorts, [{ from: 22, to: 22 }])
    assert.deepEqual(c.interception.policy.ports, [])
    assert.equal(c.log.level, 'info')
  })

  it('every default parses as a value of its own key', () => {
    for (const spec of KEYS) parseValue(spec, spec.default)
  })

  it('every key is found by name; names are unique', () => {
    const names = KEYS.map(nameOf)
    assert.equal(new Set(names).size, names.length)
    for (const n of names) assert.equal(findKey(n) !== undefined, true)
    assert.equal(findKey('tx_proxy.nope'), undefined)
  })

  it('loadConfig with no file and no overrides is the defaults', () => {
    assert.deepEqual(loadConfig(undefined, new Map()), build())
  })
})

describe('config: every key refuses invalid values', () => {
  for (const spec of KEYS) {
    const name = nameOf(spec)
    const bad = badValues(spec)
    if (spec.type.kind === 'string' && bad.length === 0) {
      // Free text (a path, a name the kernel checks): nothing is invalid here.
      it(`${name} (free text) takes any text`, () => {
        assert.equal(typeof build({ [name]: 'any text / at all' }), 'object')
      })
      continue
    }
    it(`${name} (${spec.type.kind})`, () => {
      assert.ok(bad.length > 0)
      for (const value of bad) assertConfigError(() => build({ [name]: value }), name)
    })
  }

  it('an unknown key is refused by name', () => {
    assertConfigError(() => build({ 'tx_proxy.bogus': '1' }), 'tx_proxy.bogus', /unknown key/)
    assertConfigError(() => build({ nosection: '1' }), 'nosection')
  })

  it('values are trimmed before parsing', () => {
    assert.equal(build({ 'tx_proxy.local_port': ' 6001 ' }).tx.localPort, 6001)
    assert.equal(build({ 'trunk.scheduler': ' min-rtt' }).trunk.scheduler, 'min-rtt')
  })
})

describe('config: numbers', () => {
  it('size suffixes on *_bytes keys', () => {
    const cases: readonly (readonly [string, number])[] = [
      ['4MiB', 4 * MiB],
      ['4 MiB', 4 * MiB],
      ['4mib', 4 * MiB],
      ['4m', 4 * MiB],
      ['4096k', 4 * MiB],
      ['4096KiB', 4 * MiB],
      ['4_194_304', 4 * MiB],
      ['1g', GiB],
      ['1GiB', GiB],
      // One size rule with the tools: decimal units are powers of 1000, fractions whole bytes.
      ['4MB', 4_000_000],
      ['4.5MiB', 4.5 * MiB]
    ]
    for (const [text, bytes] of cases) {
      const c = build({ 'limits.flow_window_bytes': text, 'limits.max_flow_window_bytes': '1GiB' })
      assert.equal(c.limits.flowWindowBytes, bytes, text)
    }
    assert.equal(build({ 'limits.max_buffered_bytes': '64GiB' }).limits.maxBufferedBytes, 64 * GiB)
    for (const text of ['4 M B', '4TiB', 'MiB', '4XB', '4.3KiB']) {
      assertConfigError(
        () => build({ 'limits.flow_window_bytes': text }),
        'limits.flow_window_bytes'
      )
    }
  })

  it('suffixes are refused on keys that are not sizes', () => {
    assertConfigError(() => build({ 'tx_proxy.local_port': '5k' }), 'tx_proxy.local_port')
    assertConfigError(() => build({ 'trunk.ping_interval_ms': '1k' }), 'trunk.ping_interval_ms')
  })

  it('hex values: marks and any other integer', () => {
    assert.equal(build({ 'interception.mark': '0x10' }).interception.mark, 16)
    assert.equal(build({ 'interception.mark': '0x7fffffff' }).interception.mark, 0x7fffffff)
    assert.equal(build({ 'interception.mark': '0xAbC' }).interception.mark, 0xabc)
    assert.equal(build({ 'interception.queue_num': '0xff' }).interception.queueNum, 255)
    for (const text of ['0x80000000', '0x0', '0x', '0xg', '0X10']) {
      assertConfigError(() => build({ 'interception.mark': text }), 'interception.mark')
    }
  })

  it('range edges are inclusive', () => {
    assert.equal(build({ 'tx_proxy.local_port': '1' }).tx.localPort, 1)
    assert.equal(build({ 'tx_proxy.local_port': '65535' }).tx.localPort, 65535)
    assert.equal(build({ 'limits.max_flows': '1000000' }).limits.maxFlows, 1_000_000)
  })
})

describe('config: link rate', () => {
  it('reads bits per second with decimal prefixes, as tc and iperf do, into bytes per second', () => {
    const rate = (text: string): number =>
      build({ 'trunk.link_rate': text }).trunk.linkRateBytesPerSec
    assert.equal(build().trunk.linkRateBytesPerSec, 0, 'empty by default: learn it')
    assert.equal(rate('0'), 0)
    assert.equal(rate('100mbit'), 12_500_000)
    assert.equal(rate('100Mbit'), 12_500_000)
    assert.equal(rate('1.5gbit'), 187_500_000)
    assert.equal(rate('20M'), 2_500_000)
    assert.equal(rate('512kbit/s'), 64_000)
    assert.equal(rate('800000'), 100_000)
  })

  it('refuses a bad or out-of-range rate with a ConfigError naming the key', () => {
    // bps and B/s are refused: tc reads bps as bytes, people read MB/s as megabytes.
    for (const bad of ['fast', '100 MB/s', '100mbps', '-5mbit', '50kbit', '2tbit']) {
      assertConfigError(() => build({ 'trunk.link_rate': bad }), 'trunk.link_rate')
    }
  })
})

describe('config: endpoints and addresses', () => {
  it('destination host:port and [v6]:port; empty is none', () => {
    assert.deepEqual(build({ 'tx_proxy.destination': '10.0.0.1:8080' }).tx.destination, {
      host: '10.0.0.1',
      port: 8080
    })
    assert.deepEqual(build({ 'tx_proxy.destination': '[2001:db8::1]:443' }).tx.destination, {
      host: '2001:db8::1',
      port: 443
    })
    assert.deepEqual(build({ 'tx_proxy.destination': 'server.example:80' }).tx.destination, {
      host: 'server.example',
      port: 80
    })
    assert.equal(build({ 'tx_proxy.destination': '' }).tx.destination, undefined)
    assert.equal(parseHostPort('[::1]:65536'), undefined)
  })

  it('the peer may be a host name (resolved at every dial), also per path', () => {
    assert.equal(build({ 'tx_proxy.rx_proxy_ip': 'rx.example' }).tx.rxProxyIp, 'rx.example')
    assert.equal(build({ 'tx_proxy.rx_proxy_ip': 'localhost' }).paths[0]?.peerIp, 'localhost')
    assert.equal(
      build({ 'tx_proxy.rx_proxy_ip': '10.0.0.1', 'path.a.peer_ip': 'rx-a.example' }).paths[0]
        ?.peerIp,
      'rx-a.example'
    )
    assertConfigError(() => build({ 'path.a.peer_ip': 'not a name' }), 'path.a.peer_ip')
  })

  it('ip keys take IPv4 and IPv6', () => {
    assert.equal(build({ 'rx_proxy.recv_ip': '::' }).rx.recvIp, '::')
    assert.equal(
      build({ 'tx_proxy.rx_proxy_ip': '::ffff:10.0.0.1' }).tx.rxProxyIp,
      '::ffff:10.0.0.1'
    )
  })
})

describe('config: cross-key checks', () => {
  it('redial_min_ms must not exceed redial_max_ms', () => {
    assertConfigError(
      () => build({ 'tx_proxy.redial_min_ms': '6000', 'tx_proxy.redial_max_ms': '5000' }),
      'tx_proxy.redial_min_ms'
    )
    build({ 'tx_proxy.redial_min_ms': '5000', 'tx_proxy.redial_max_ms': '5000' })
  })

  it('ping_timeout_ms must exceed ping_interval_ms', () => {
    assertConfigError(
      () => build({ 'trunk.ping_interval_ms': '5000', 'trunk.ping_timeout_ms': '5000' }),
      'trunk.ping_timeout_ms'
    )
    build({ 'trunk.ping_interval_ms': '4999', 'trunk.ping_timeout_ms': '5000' })
  })

  it('frame_payload_bytes + 8 must fit max_frame_body_bytes', () => {
    assertConfigError(
      () => build({ 'trunk.frame_payload_bytes': '1MiB' }),
      'trunk.frame_payload_bytes'
    )
    assertConfigError(
      () => build({ 'trunk.frame_payload_bytes': '4096', 'limits.max_frame_body_bytes': '4103' }),
      'trunk.frame_payload_bytes'
    )
    build({ 'trunk.frame_payload_bytes': '4096', 'limits.max_frame_body_bytes': '4104' })
  })

  it('flow_window_bytes must not exceed max_buffered_bytes', () => {
    assertConfigError(
      () => build({ 'limits.flow_window_bytes': '8MiB', 'limits.max_buffered_bytes': '4MiB' }),
      'limits.flow_window_bytes'
    )
    build({ 'limits.flow_window_bytes': '4MiB', 'limits.max_buffered_bytes': '4MiB' })
  })
})

describe('config: the result is frozen', () => {
  it('at every level', () => {
    const c = build({ 'interception.ports': '80,443' })
    const objects: unknown[] = [
      c,
      c.tx,
      c.rx,
      c.trunk,
      c.limits,
      c.interception,
      c.log,
      c.interception.policy,
      c.interception.policy.ports,
      c.interception.policy.ports[0]
    ]
    for (const o of objects) assert.ok(Object.isFrozen(o))
    assert.throws(() => {
      ;(c.tx as { localPort: number }).localPort = 1
    }, TypeError)
    assert.throws(() => {
      ;(c.interception.policy.ports as unknown as { from: number }[]).push({ from: 1 })
    }, TypeError)
    assert.equal(c.tx.localPort, 5000)
  })

  it('with subnets in the policy', () => {
    const c = build({
      'interception.subnets': '10.0.0.0/8',
      'interception.exclude_subnets': '10.1.0.0/16'
    })
    assert.equal(c.interception.policy.subnets[0]?.prefix, 8)
    assert.ok(Object.isFrozen(c.interception.policy.subnets[0]))
    assert.ok(!policyAccepts(c.interception.policy, '10.1.2.3', 80))
    assert.ok(policyAccepts(c.interception.policy, '10.2.2.3', 80))
  })
})

describe('config: loading', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-config-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('defaults < file < overrides', async () => {
    const path = join(dir, 'a.conf')
    await writeFile(
      path,
      '[tx_proxy]\nlocal_port = 7000\nsubflows = 4\n[limits]\nflow_window_bytes = 8MiB\n'
    )
    const c = loadConfig(path, parseOverrides(['tx_proxy.subflows=2']))
    assert.equal(c.tx.localPort, 7000)
    assert.equal(c.tx.subflows, 2)
    assert.equal(c.limits.flowWindowBytes, 8 * MiB)
    assert.equal(c.tx.rxProxyPort, 6000)
  })

  it('a file with an unknown key, a key outside a section, or no file at all', async () => {
    const unknown = join(dir, 'unknown.conf')
    await writeFile(unknown, '[limits]\nflow_window_bytes = 8MiB\nwindow = 3\n')
    assertConfigError(() => loadConfig(unknown, new Map()), 'limits.window')
    const top = join(dir, 'top.conf')
    await writeFile(top, 'subflows = 3\n[tx_proxy]\nlocal_port = 1\n')
    assertConfigError(() => readConfigFile(top), 'subflows')
    assertConfigError(() => readConfigFile(join(dir, 'missing.conf')), 'config', /ENOENT/)
  })

  it('--set overrides need section.key=value with a known key', () => {
    assertConfigError(() => parseOverrides(['tx_proxy.local_port']), 'tx_proxy.local_port')
    assertConfigError(() => parseOverrides(['tx_proxy.nope=1']), 'tx_proxy.nope')
    assert.deepEqual(
      [...parseOverrides(['log.level=debug', 'interception.ports=80,443-444'])],
      [
        ['log.level', 'debug'],
        ['interception.ports', '80,443-444']
      ]
    )
  })
})

describe('policy', () => {
  it('parses ports and ranges, separated by commas or spaces', () => {
    assert.deepEqual(parsePortList('k', '80,443, 5000-5999  8080'), [
      { from: 80, to: 80 },
      { from: 443, to: 443 },
      { from: 5000, to: 5999 },
      { from: 8080, to: 8080 }
    ])
    assert.deepEqual(parsePortList('k', ''), [])
    assert.deepEqual(parsePortList('k', '1-65535'), [{ from: 1, to: 65535 }])
    for (const bad of ['0', '65536', '10-5', 'ssh', '1-', '1-2-3', '80;443']) {
      assertConfigError(() => parsePortList('interception.ports', bad), 'interception.ports')
    }
  })

  it('parses IPv4 and IPv6 subnets; a bare address is a host route', () => {
    const s = parseSubnetList('k', '10.0.0.0/8, 2001:db8::/32 192.0.2.7 ::1')
    assert.deepEqual(
      s.map((x) => [x.family, x.prefix, x.text]),
      [
        [4, 8, '10.0.0.0/8'],
        [6, 32, '2001:db8::/32'],
        [4, 32, '192.0.2.7'],
        [6, 128, '::1']
      ]
    )
    for (const bad of ['10.0.0.0/33', '::/129', 'example.com/8', '10.0.0.0/-1', '10.0.0.0/x']) {
      assertConfigError(() => parseSubnetList('interception.subnets', bad), 'interception.subnets')
    }
  })

  it('inSubnet masks whole and partial bytes, and never matches across families', () => {
    const [v4, v6, zero, odd] = parseSubnetList(
      'k',
      '10.1.0.0/16 2001:db8::/33 0.0.0.0/0 192.168.0.0/20'
    )
    assert.ok(v4 && v6 && zero && odd)
    assert.ok(inSubnet(v4, '10.1.255.255'))
    assert.ok(!inSubnet(v4, '10.2.0.0'))
    assert.ok(inSubnet(v6, '2001:db8:7fff::1'))
    assert.ok(!inSubnet(v6, '2001:db8:8000::1'))
    assert.ok(inSubnet(zero, '255.255.255.255'))
    assert.ok(!inSubnet(zero, '::1'))
    assert.ok(inSubnet(odd, '192.168.15.255'))
    assert.ok(!inSubnet(odd, '192.168.16.0'))
    assert.ok(!inSubnet(v4, 'not an address'))
  })

  function policy(
    ports: string,
    subnets: string,
    excludePorts: string,
    excludeSubnets: string
  ): Policy {
    return {
      ports: parsePortList('k', ports),
      subnets: parseSubnetList('k', subnets),
      excludePorts: parsePortList('k', excludePorts),
      excludeSubnets: parseSubnetList('k', excludeSubnets)
    }
  }

  it('empty include lists accept everything', () => {
    const p = policy('', '', '', '')
    assert.ok(policyAccepts(p, '203.0.113.9', 1))
    assert.ok(policyAccepts(p, '2001:db8::9', 65535))
  })

  it('include lists restrict by port and by subnet, both at once', () => {
    const p = policy('80,443,5000-5999', '10.0.0.0/8,2001:db8::/32', '', '')
    assert.ok(policyAccepts(p, '10.9.9.9', 443))
    assert.ok(policyAccepts(p, '10.9.9.9', 5999))
    assert.ok(policyAccepts(p, '2001:db8::1', 80))
    assert.ok(!policyAccepts(p, '10.9.9.9', 6000))
    assert.ok(!policyAccepts(p, '11.0.0.1', 80))
    assert.ok(!policyAccepts(p, '2001:db9::1', 80))
  })

  it('exclusions win over inclusions', () => {
    const p = policy('1-65535', '10.0.0.0/8,fd00::/8', '22,8000-8001', '10.1.0.0/16,fd00:1::/32')
    assert.ok(policyAccepts(p, '10.2.0.1', 80))
    assert.ok(!policyAccepts(p, '10.2.0.1', 22))
    assert.ok(!policyAccepts(p, '10.2.0.1', 8001))
    assert.ok(!policyAccepts(p, '10.1.0.1', 80))
    assert.ok(!policyAccepts(p, 'fd00:1::5', 80))
    assert.ok(policyAccepts(p, 'fd00:2::5', 80))
  })

  it('the default configuration excludes ssh only', () => {
    const p = build().interception.policy
    assert.ok(!policyAccepts(p, '10.0.0.1', 22))
    assert.ok(policyAccepts(p, '10.0.0.1', 23))
  })

  it('refuses a prefix that is empty or not a plain number', () => {
    for (const bad of [
      '10.0.0.0/',
      '10.0.0.0/8/9',
      '10.0.0.0/0x8',
      '10.0.0.0/8.0',
      '10.0.0.0/1e1'
    ]) {
      assertConfigError(
        () => parseSubnetList('interception.exclude_subnets', bad),
        'interception.exclude_subnets'
      )
    }
    assertConfigError(
      () => build({ 'interception.tx_bridge_address': '192.168.2.201/24/7' }),
      'interception.tx_bridge_address'
    )
  })
})

/** Run a built program; resolves with its exit code and output. */
async function runProgram(
  program: string,
  args: readonly string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, program), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t))
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t))
  const [code] = (await once(child, 'close')) as [number | null]
  return { code, stdout, stderr }
}

const TX = 'dist/src/tx-proxy/main.js'
const RX = 'dist/src/rx-proxy/main.js'

describe('CLI (built)', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-cli-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** Exit 2 and exactly one stderr line that contains `needle`. */
  function assertRefused(r: { code: number | null; stderr: string }, needle: string): void {
    assert.equal(r.code, 2, `exit code, stderr: ${r.stderr}`)
    const lines = r.stderr.trimEnd().split('\n')
    assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`)
    assert.ok(lines[0]!.includes(needle), `${JSON.stringify(needle)} not in ${lines[0]!}`)
  }

  it('a bad value, a missing file, an unknown key in a file, an unknown flag: exit 2, one line', async () => {
    const ini = join(dir, 'network.conf')
    await writeFile(ini, '[tx_proxy]\nlocal_port = 5000\nno_such_key = 1\n')
    const cases: readonly (readonly [string, readonly string[], string])[] = [
      [
        TX,
        ['-c', '/dev/null', '--set', 'limits.flow_window_bytes=12', '--print-config'],
        'limits.flow_window_bytes'
      ],
      [TX, ['-c', '/dev/null', '--set', 'trunk.scheduler=fastest'], 'trunk.scheduler'],
      [TX, ['-c', '/dev/null', '--set', 'no.such_key=1'], 'no.such_key'],
      [TX, ['-c', '/dev/null', '--local-port', '0'], 'tx_proxy.local_port'],
      [TX, ['-c', join(dir, 'missing.conf'), '--print-config'], join(dir, 'missing.conf')],
      [TX, ['-c', ini, '--print-config'], 'tx_proxy.no_such_key'],
      [TX, ['-c', '/dev/null', '--bogus-flag'], 'bogus-flag'],
      [RX, ['-c', '/dev/null', '--recv-port', '70000', '--print-config'], 'rx_proxy.recv_port'],
      [
        RX,
        [
          '-c',
          '/dev/null',
          '--set',
          'trunk.ping_timeout_ms=500',
          '--set',
          'trunk.ping_interval_ms=500'
        ],
        'trunk.ping_timeout_ms'
      ]
    ]
    const results = await Promise.all(cases.map(([program, args]) => runProgram(program, args)))
    results.forEach((r, i) => {
      assertRefused(r, cases[i]![2])
      assert.equal(r.stdout, '')
    })
  })

  it('--print-config prints the effective configuration and exits 0', async () => {
    const r = await runProgram(TX, [
      '-c',
      '/dev/null',
      '--set',
      'limits.flow_window_bytes=8MiB',
      '--subflows',
      '3',
      '--print-config'
    ])
    assert.equal(r.code, 0, r.stderr)
    const printed = JSON.parse(r.stdout) as {
      limits: { flowWindowBytes: number }
      tx: { subflows: number }
    }
    assert.equal(printed.limits.flowWindowBytes, 8 * MiB)
    assert.equal(printed.tx.subflows, 3)
  })

  it('--print-config with subnets in the policy exits 0', async () => {
    const r = await runProgram(TX, [
      '-c',
      '/dev/null',
      '--set',
      'interception.subnets=10.0.0.0/8',
      '--print-config'
    ])
    assert.equal(r.code, 0, r.stderr)
  })

  it('--help exits 0 and lists every key', async () => {
    for (const program of [TX, RX]) {
      const r = await runProgram(program, ['--help'])
      assert.equal(r.code, 0, r.stderr)
      for (const spec of KEYS)
        assert.ok(r.stdout.includes(nameOf(spec)), `${nameOf(spec)} missing from --help`)
    }
  })
})

describe('README', () => {
  it('documents every network.conf key', () => {
    const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8')
    for (const k of KEYS)
      assert.ok(readme.includes(`\`${k.section}.${k.key}\``), `${k.section}.${k.key} missing`)
  })
})
