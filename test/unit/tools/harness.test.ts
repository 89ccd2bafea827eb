import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { deflateSync } from 'node:zlib'

import { formatEndpoint } from '../../../src/common/endpoint.js'
import { ConfigError } from '../../../src/common/errors.js'
import {
  checkExpectation,
  createProgressBar,
  createWriteSizer,
  expectedSha256,
  formatBitRate,
  formatBytes,
  formatClock,
  formatProgress,
  formatWriteSize,
  GENERATED_BLOCK_BYTES,
  generateChunks,
  generatedBytes,
  generatedSource,
  GeneratedData,
  goodput,
  parseCount,
  parsePort,
  parseSecondsToMs,
  parseSeed,
  parseSha256,
  parseSize,
  parseWriteSize,
  ProgressBar,
  sha256Hex,
  type ProgressSink
} from '../../../src/tools/harness.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

function isConfigError(key: string): (err: unknown) => boolean {
  return (err) => err instanceof ConfigError && err.code === 'PEP_ERR_CONFIG' && err.key === key
}

describe('parseSize', () => {
  const good: readonly (readonly [string, number])[] = [
    ['0', 0],
    ['4096', 4096],
    [' 7 ', 7],
    ['10B', 10],
    ['1K', KiB],
    ['1k', KiB],
    ['1KiB', KiB],
    ['1kib', KiB],
    ['1KB', 1000],
    ['1.5K', 1536],
    ['1M', MiB],
    ['64MiB', 64 * MiB],
    ['3 MiB', 3 * MiB],
    ['1MB', 1e6],
    ['2G', 2 * GiB],
    ['1GiB', GiB],
    ['1GB', 1e9],
    ['1TiB', 1024 * GiB]
  ]
  for (const [text, bytes] of good) {
    it(`reads '${text}' as ${bytes}`, () => {
      assert.equal(parseSize(text), bytes)
    })
  }

  const bad = [
    '',
    ' ',
    'abc',
    'K',
    '-1',
    '+1',
    '1X',
    '1 KiBs',
    '1.5',
    '0.1K',
    '1e3',
    '1..2K',
    '0x10'
  ]
  for (const text of [...bad, 'Infinity', 'NaN', '99999999T']) {
    it(`rejects '${text}' with a ConfigError naming the key`, () => {
      assert.throws(() => parseSize(text, 'bytes'), isConfigError('bytes'))
    })
  }
})

describe('parseWriteSize', () => {
  it('reads fixed sizes and random ranges', () => {
    assert.deepEqual(parseWriteSize('64KiB'), { kind: 'fixed', bytes: 64 * KiB })
    assert.deepEqual(parseWriteSize('random:1-64K'), {
      kind: 'random',
      minBytes: 1,
      maxBytes: 64 * KiB
    })
    assert.deepEqual(parseWriteSize('random:100-100'), {
      kind: 'random',
      minBytes: 100,
      maxBytes: 100
    })
  })

  for (const text of [
    '0',
    'random:',
    'random:1',
    'random:5-1',
    'random:0-5',
    'random:1-2-3',
    '65MiB'
  ]) {
    it(`rejects '${text}'`, () => {
      assert.throws(() => parseWriteSize(text), isConfigError('write-size'))
    })
  }

  it('formats back to what it parses', () => {
    for (const text of ['1460', 'random:1-65536']) {
      assert.equal(formatWriteSize(parseWriteSize(text)), text)
    }
  })
})

describe('other argument parsers', () => {
  it('parse seeds, ports, counts, durations and digests', () => {
    assert.equal(parseSeed('0'), 0)
    assert.equal(parseSeed('0xffffffff'), 0xffffffff)
    assert.throws(() => parseSeed('4294967296'), isConfigError('seed'))
    assert.throws(() => parseSeed('-1'), isConfigError('seed'))
    assert.equal(parsePort('5000'), 5000)
    assert.equal(parsePort('0', 'port', true), 0)
    assert.throws(() => parsePort('0'), isConfigError('port'))
    assert.throws(() => parsePort('65536'), isConfigError('port'))
    assert.throws(() => parsePort('http'), isConfigError('port'))
    assert.equal(parseCount('3'), 3)
    assert.throws(() => parseCount('0'), isConfigError('count'))
    assert.equal(parseSecondsToMs('1.5'), 1500)
    assert.throws(() => parseSecondsToMs('0'), isConfigError('timeout'))
    assert.throws(() => parseSecondsToMs('soon'), isConfigError('timeout'))
    const digest = sha256Hex(Buffer.from('x'))
    assert.equal(parseSha256(digest.toUpperCase()), digest)
    assert.throws(() => parseSha256(digest.slice(1)), isConfigError('sha256'))
  })
})

describe('generated data', () => {
  it('is deterministic per seed and differs between seeds', () => {
    const a = generatedBytes(300_000, 42)
    assert.deepEqual(generatedBytes(300_000, 42), a)
    assert.notDeepEqual(generatedBytes(300_000, 43), a)
  })

  it('is the same bytes however it is cut', () => {
    const total = 3 * GENERATED_BLOCK_BYTES + 12_345
    const whole = generatedBytes(total, 9)
    const sizer = createWriteSizer(parseWriteSize('random:1-70000'), 4)
    const data = new GeneratedData(9)
    for (let offset = 0; offset < total;) {
      const piece = Buffer.alloc(Math.min(sizer(), total - offset))
      data.fill(piece, offset)
      assert.deepEqual(piece, whole.subarray(offset, offset + piece.byteLength), `at ${offset}`)
      offset += piece.byteLength
    }
    // Unaligned targets inside a bigger buffer take the copy path and must agree too.
    const backing = Buffer.alloc(GENERATED_BLOCK_BYTES + 3)
    data.fill(backing.subarray(3), GENERATED_BLOCK_BYTES)
    assert.deepEqual(
      backing.subarray(3),
      whole.subarray(GENERATED_BLOCK_BYTES, 2 * GENERATED_BLOCK_BYTES)
    )
    assert.deepEqual(Buffer.concat([...generateChunks(total, 9, 10_000)]), whole)
  })

  it('never repeats a block, is not zero and does not compress', () => {
    const bytes = generatedBytes(64 * GENERATED_BLOCK_BYTES, 1)
    const seen = new Set<string>()
    for (let i = 0; i < 64; i++) {
      seen.add(
        sha256Hex(bytes.subarray(i * GENERATED_BLOCK_BYTES, (i + 1) * GENERATED_BLOCK_BYTES))
      )
    }
    assert.equal(seen.size, 64)
    assert.ok(bytes.some((byte) => byte !== 0))
    assert.ok(deflateSync(bytes).byteLength > bytes.byteLength * 0.99)
  })

  it('has a digest that expectedSha256 predicts', async () => {
    for (const total of [0, 1, 65_535, 65_536, 1_048_577, 3 * MiB + 7]) {
      const source = generatedSource(total, 77)
      assert.equal(source.totalBytes, total)
      const chunks: Uint8Array[] = []
      for (
        let chunk = await source.read(50_000);
        chunk !== null;
        chunk = await source.read(50_000)
      ) {
        chunks.push(chunk)
      }
      const sent = Buffer.concat(chunks)
      assert.equal(sent.byteLength, total)
      assert.equal(sha256Hex(sent), expectedSha256(total, 77), `${total} bytes`)
    }
  })

  it('random write sizes stay in range and repeat per seed', () => {
    const spec = parseWriteSize('random:10-20')
    const one = createWriteSizer(spec, 5)
    const two = createWriteSizer(spec, 5)
    const sizes = Array.from({ length: 2000 }, () => one())
    assert.deepEqual(
      sizes,
      Array.from({ length: 2000 }, () => two())
    )
    assert.ok(sizes.every((size) => size >= 10 && size <= 20))
    assert.equal(new Set(sizes).size, 11)
  })
})

describe('expectations', () => {
  const digest = sha256Hex(Buffer.from('abc'))
  it('pass when everything matches or nothing is expected', () => {
    assert.equal(checkExpectation('data', 3, digest, {}), undefined)
    assert.equal(checkExpectation('data', 3, digest, { bytes: 3, sha256: digest }), undefined)
  })
  it('name the field that differs', () => {
    const short = checkExpectation('data', 3, digest, { bytes: 5 })
    assert.equal(short?.code, 'HARNESS_ERR_MISMATCH')
    assert.equal(short.field, 'bytes')
    assert.match(short.message, /short by 2/)
    assert.equal(
      checkExpectation('reply', 3, digest, { sha256: '0'.repeat(64) })?.field,
      'replySha256'
    )
  })
})

describe('formatting', () => {
  it('formats sizes, rates, clocks and endpoints', () => {
    assert.equal(formatBytes(512), '512 B')
    assert.equal(formatBytes(1536), '1.50 KiB')
    assert.equal(formatBytes(64 * MiB), '64.00 MiB')
    assert.equal(formatBitRate(125_000_000), '1.00 Gbit/s')
    assert.equal(formatBitRate(12_500_000), '100.0 Mbit/s')
    assert.equal(formatClock(65), '1:05')
    assert.equal(formatClock(3725), '1:02:05')
    assert.equal(formatEndpoint({ address: '::1', port: 80 }), '[::1]:80')
    assert.equal(formatEndpoint({ address: '10.0.0.1', port: 80 }), '10.0.0.1:80')
    assert.deepEqual(goodput(125_000_000, 1000), { mbitPerSec: 1000, mbytePerSec: 125 })
    assert.deepEqual(goodput(5, 0), { mbitPerSec: 0, mbytePerSec: 0 })
  })

  it('draws bytes, total, percent, rate and ETA', () => {
    assert.equal(
      formatProgress({
        label: 'sent',
        doneBytes: 25 * MiB,
        totalBytes: 100 * MiB,
        bytesPerSec: 25 * MiB
      }),
      'sent  25.00 MiB / 100.00 MiB   25%  209.7 Mbit/s  ETA 0:03'
    )
    assert.equal(
      formatProgress({ label: 'received', doneBytes: 1000, totalBytes: undefined, bytesPerSec: 0 }),
      'received  1000 B'
    )
  })
})

describe('ProgressBar', () => {
  function fakeSink(isTTY: boolean): ProgressSink & { readonly writes: string[] } {
    const writes: string[] = []
    return { isTTY, columns: 80, writes, write: (text: string) => writes.push(text) }
  }

  it('redraws at most every 100 ms and clears the line when done', () => {
    const sink = fakeSink(true)
    let nowMs = 0
    const bar = new ProgressBar(sink, 'sent', 1000, () => nowMs)
    bar.add(100)
    nowMs = 50
    bar.add(100)
    nowMs = 99
    bar.add(100)
    nowMs = 150
    bar.add(100)
    assert.equal(sink.writes.length, 2)
    const redraw = sink.writes[1]!
    assert.ok(redraw.startsWith('\r\x1b[K'), 'carriage return, then erase the line')
    // 300 bytes since the first redraw 150 ms before: 2000 B/s = 16 kbit/s, 0.3 s to go.
    assert.match(redraw, /400 B \/ 1000 B +40% +16\.0 kbit\/s +ETA 0:00$/)
    bar.finish()
    assert.equal(sink.writes.at(-1), '\r\x1b[K')
  })

  it('draws nothing on a non-TTY or when disabled', () => {
    for (const [sink, enabled] of [
      [fakeSink(false), true],
      [fakeSink(true), false]
    ] as const) {
      const bar = createProgressBar(sink, 'sent', 10, enabled)
      bar.add(5)
      bar.finish()
      assert.deepEqual(sink.writes, [])
    }
  })
})
