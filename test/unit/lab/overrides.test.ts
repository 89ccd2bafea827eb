import assert from 'node:assert/strict'
import { test } from 'node:test'
import { configOverrides } from '../../../lab/testbed/overrides.js'

test('--set KEY=VALUE options become overrides; a value may hold "="', () => {
  assert.deepEqual(configOverrides(['trunk.congestion=bbr', 'tls.psk=a=b']), {
    'trunk.congestion': 'bbr',
    'tls.psk': 'a=b'
  })
  assert.deepEqual(configOverrides([]), {})
})

test('an option without a key is refused by name instead of becoming a mangled key', () => {
  assert.throws(
    () => configOverrides(['trunk.congestion']),
    /--set trunk\.congestion: expected KEY=VALUE/
  )
  assert.throws(() => configOverrides(['=bbr']), /--set =bbr: expected KEY=VALUE/)
})
