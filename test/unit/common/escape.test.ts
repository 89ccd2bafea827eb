/**
 * escapePeerText: a peer's RESET reason cannot break a log line, forge one, or run on.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'

import { escapePeerText, MAX_PEER_TEXT } from '../../../src/common/log/escape.js'

describe('escapePeerText', () => {
  it('keeps ordinary text as it is', () => {
    assert.equal(
      escapePeerText('connection refused by 10.0.0.1:80 — ok'),
      'connection refused by 10.0.0.1:80 — ok'
    )
  })

  it('escapes newlines, carriage returns, escape sequences, NUL, DEL and C1 controls', () => {
    assert.equal(
      escapePeerText('a\nwarn: forged line\r\u001b[31mred\u0000\u007f\u0085'),
      'a\\x0awarn: forged line\\x0d\\x1b[31mred\\x00\\x7f\\x85'
    )
  })

  it('doubles backslashes, so that an escape cannot be faked', () => {
    assert.equal(escapePeerText('\\x0a'), '\\\\x0a')
  })

  it('escapes line separators and bidirectional overrides', () => {
    assert.equal(escapePeerText('a\u2028b\u202ec\u2066'), 'a\\u2028b\\u202ec\\u2066')
  })

  it(`cuts at ${MAX_PEER_TEXT} characters`, () => {
    const out = escapePeerText('x'.repeat(1000))
    assert.equal(out, `${'x'.repeat(MAX_PEER_TEXT)}…`)
    assert.equal(escapePeerText('x'.repeat(MAX_PEER_TEXT)), 'x'.repeat(MAX_PEER_TEXT))
  })
})
