/**
 * The data path end to end on loopback: real tx_proxy and rx_proxy processes, a real destination
 * in this process, sha256 on both ends (issue 2's integration tests).
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { queryStatus } from '../../src/app/control.js'
import { freePort, lastFailedPair, ROOT, startPair, type ProxyPair } from '../helpers/proxies.js'

const execFileP = promisify(execFile)
import {
  readAll,
  randomSizer,
  writeBytes,
  EMPTY_SHA256,
  type ReadResult
} from '../helpers/transfer.js'

const MiB = 1024 * 1024

/** A destination whose per-connection behaviour each test sets. */
interface Destination {
  readonly server: Server
  readonly port: number
  handler: (socket: Socket) => void
  connections: number
}

async function startDestination(): Promise<Destination> {
  const port = await freePort()
  const dest: Destination = {
    server: createServer({ allowHalfOpen: true }, (s) => {
      dest.connections++
      // Resets are expected in some tests; each test asserts on the ones it cares about.
      s.on('error', () => undefined)
      dest.handler(s)
    }),
    port,
    handler: (s) => s.destroy(),
    connections: 0
  }
  await new Promise<void>((resolve) => dest.server.listen(port, '127.0.0.1', resolve))
  return dest
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
    s.once('connect', () => {
      resolve(s)
    })
    s.once('error', reject)
  })
}

/** A destination and a pair in front of it for one test, stopped however the test ends. */
async function withPair(
  opts: { readonly subflows?: number; readonly extra?: readonly string[] },
  run: (dest: Destination, pair: ProxyPair) => Promise<void>
): Promise<void> {
  const dest = await startDestination()
  const pair = await startPair({
    destinationPort: dest.port,
    subflows: opts.subflows ?? 2,
    extra: opts.extra ?? []
  })
  try {
    await run(dest, pair)
  } finally {
    await pair.stop()
    dest.server.close()
  }
}

describe('tx_proxy + rx_proxy on loopback', () => {
  let dest: Destination
  let pair: ProxyPair

  before(async () => {
    dest = await startDestination()
    // 200 flows at once below: at the default 1 GiB budget their 4 MiB first windows alone are
    // 78 % of it on each proxy, and whether the last OPENs still find a first window free
    // depended on timing (peaks of 808-899 MiB sampled every 20 ms; one CI run in five of
    // session 17 had a flow refused). Admission under a full budget is tested apart ('memory
    // budget' below); here the budget leaves room for every flow.
    pair = await startPair({
      destinationPort: dest.port,
      subflows: 4,
      extra: ['--set', 'limits.max_buffered_bytes=2GiB']
    })
  })
  after(async () => {
    await pair.stop()
    dest.server.close()
  })

  test('256 MiB each way at once through one flow: sha256 equal on both ends', async () => {
    const size = 256 * MiB
    const atDest = new Promise<{ got: ReadResult; sent: string }>((resolve) => {
      dest.handler = (s) => {
        const got = readAll(s)
        const sent = writeBytes(s, size, randomSizer(7, 1, 256 * 1024))
        void Promise.all([got, sent]).then(([g, snt]) => {
          resolve({ got: g, sent: snt })
        })
      }
    })
    const client = await dial(pair.txPort)
    const started = performance.now()
    const got = readAll(client)
    const sent = await writeBytes(client, size, randomSizer(3, 1, 256 * 1024))
    const clientGot = await got
    const d = await atDest
    const seconds = (performance.now() - started) / 1000
    assert.equal(d.got.bytes, size)
    assert.equal(d.got.sha256, sent)
    assert.equal(d.got.ending, 'end')
    assert.equal(clientGot.bytes, size)
    assert.equal(clientGot.sha256, d.sent)
    assert.equal(clientGot.ending, 'end')
    process.stdout.write(
      `# 256 MiB each way in ${seconds.toFixed(2)} s: ${((2 * size) / MiB / seconds).toFixed(0)} MB/s total\n`
    )
  })

  test('200 concurrent flows of random sizes (0..8 MiB), random writes: all sha256 equal', async () => {
    const n = 200
    const sizes = Array.from({ length: n }, (_, i) =>
      i === 0 ? 0 : randomSizer(1000 + i, 0, 8 * MiB)()
    )
    // The destination echoes a digest line: "<bytes> <sha256>" after the client's FIN.
    dest.handler = (s) => {
      void readAll(s).then((r) => {
        s.end(`${r.bytes} ${r.sha256}\n`)
      })
    }
    const results = await Promise.all(
      sizes.map(async (size, i) => {
        const client = await dial(pair.txPort)
        const reply = readAll(client)
        const chunks: Buffer[] = []
        client.on('data', (d: Buffer) => chunks.push(d))
        const sent = await writeBytes(client, size, randomSizer(i + 1, 1, 100_000)).catch(
          (err: unknown) => `write failed: ${String(err)}`
        )
        const { ending } = await reply
        return { size, sent, ending, reply: Buffer.concat(chunks).toString() }
      })
    )
    const wrong = results.filter(
      (r) => r.reply !== `${r.size} ${r.size === 0 ? EMPTY_SHA256 : r.sent}\n`
    )
    if (wrong.length > 0) {
      // Say why: a refusal or reset is in the proxies' counters.
      const why = (c: Record<string, number>): string =>
        Object.entries(c)
          .filter(([k, v]) => v > 0 && /refused|reset|error|timeout/.test(k))
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')
      const tx = await queryStatus(pair.txControl)
      const rx = await queryStatus(pair.rxControl)
      assert.fail(
        `${wrong.length} of ${n} flows wrong, first: ${wrong[0]?.size} bytes, ended by ` +
          `${wrong[0]?.ending}, reply ${JSON.stringify(wrong[0]?.reply)}; ` +
          `tx: ${why(tx.counters)}; rx: ${why(rx.counters)}`
      )
    }
  })

  test('half-close: the client shuts its write side and still receives the full reply', async () => {
    const replySize = 8 * MiB
    let destSaw: ReadResult | undefined
    let replySha = ''
    dest.handler = (s) => {
      void readAll(s).then(async (r) => {
        destSaw = r
        // Only after the client's FIN does the destination answer: the half-open direction works.
        replySha = await writeBytes(s, replySize, randomSizer(9, 1, 70_000))
      })
    }
    const client = await dial(pair.txPort)
    const reply = readAll(client)
    const sent = await writeBytes(client, 3 * MiB + 17)
    const r = await reply
    assert.equal(destSaw?.sha256, sent)
    assert.equal(destSaw?.ending, 'end')
    assert.equal(r.bytes, replySize)
    assert.equal(r.sha256, replySha)
    assert.equal(r.ending, 'end')
  })

  test('RST from the destination resets the client', async () => {
    dest.handler = (s) => {
      s.once('data', () => {
        s.resetAndDestroy()
      })
    }
    const client = await dial(pair.txPort)
    const r = readAll(client)
    client.write('hello')
    const got = await r
    assert.equal(got.ending, 'ECONNRESET')
  })

  test('RST from the client resets the destination', async () => {
    const destResult = new Promise<ReadResult>((resolve) => {
      dest.handler = (s) => {
        void readAll(s).then(resolve)
      }
    })
    const client = await dial(pair.txPort)
    client.write('some bytes')
    await new Promise((r) => setTimeout(r, 200))
    client.resetAndDestroy()
    const got = await destResult
    assert.equal(got.ending, 'ECONNRESET')
  })

  test('a keystroke is not held back waiting for a full frame', async () => {
    const echoed = new Promise<number>((resolve) => {
      dest.handler = (s) => {
        s.once('data', (d: Buffer) => {
          s.write(d)
          resolve(d.length)
        })
      }
    })
    const client = await dial(pair.txPort)
    await new Promise((r) => setTimeout(r, 100))
    const t0 = performance.now()
    client.write('k')
    const back = await new Promise<Buffer>((resolve) => client.once('data', resolve))
    const ms = performance.now() - t0
    assert.equal(back.toString(), 'k')
    assert.equal(await echoed, 1)
    // Loopback: a held keystroke would wait for a timer or more bytes; generous bound for a busy CI.
    assert.ok(ms < 200, `keystroke round trip took ${ms} ms`)
    client.destroy()
  })
})

describe('destination refusing connections', () => {
  test('the client is reset within 1 s, with the reason logged', async () => {
    const closedPort = await freePort()
    const pair = await startPair({ destinationPort: closedPort, subflows: 2 })
    try {
      const client = await dial(pair.txPort)
      const t0 = performance.now()
      const r = await readAll(client)
      const ms = performance.now() - t0
      assert.equal(r.ending, 'ECONNRESET')
      assert.ok(ms < 1000, `reset took ${ms} ms`)
      await pair.rx.waitFor(/connect to 127\.0\.0\.1:\d+ failed: ECONNREFUSED/)
      await pair.tx.waitFor(/CONNECT_REFUSED/)
    } finally {
      await pair.stop()
    }
  })
})

describe('status through the control socket', () => {
  test('counts the bytes moved, the subflows and the flows', async () => {
    const dest = await startDestination()
    const pair = await startPair({ destinationPort: dest.port, subflows: 3 })
    try {
      dest.handler = (s) => {
        void readAll(s).then(() => s.end())
      }
      const size = 5 * MiB + 123
      const client = await dial(pair.txPort)
      const done = readAll(client)
      await writeBytes(client, size)
      await done
      const tx = await queryStatus(pair.txControl)
      const rx = await queryStatus(pair.rxControl)
      assert.equal(tx.role, 'tx_proxy')
      assert.equal(tx.trunks[0]?.subflows.length, 3)
      assert.equal(rx.trunks[0]?.subflows.length, 3)
      // The flow has closed: its bytes are in the counters.
      assert.equal(tx.counters.bytes_from_app, size)
      assert.equal(rx.counters.bytes_to_app, size)
      assert.equal(tx.counters.flows_closed, 1)
      const { stdout } = await execFileP(join(ROOT, 'tx_proxy'), [
        'status',
        '--control',
        pair.txControl
      ])
      assert.match(stdout, /tx_proxy pid \d+/)
      assert.match(stdout, /3 subflow\(s\)/)
    } finally {
      await pair.stop()
      dest.server.close()
    }
  })
})

describe('limits and policy', () => {
  test('an idle flow is reset after limits.idle_timeout_ms, on both ends', async () => {
    const dest = await startDestination()
    const pair = await startPair({
      destinationPort: dest.port,
      subflows: 2,
      extra: ['--set', 'limits.idle_timeout_ms=800']
    })
    try {
      const atDest = new Promise<ReadResult>((resolve) => {
        dest.handler = (s) => {
          void readAll(s).then(resolve)
        }
      })
      const client = await dial(pair.txPort)
      const r = readAll(client)
      client.write('hello, then nothing')
      const [c, d] = await Promise.all([r, atDest])
      assert.equal(c.ending, 'ECONNRESET')
      assert.equal(d.ending, 'ECONNRESET')
      const tx = await queryStatus(pair.txControl)
      const rx = await queryStatus(pair.rxControl)
      assert.ok((tx.counters.flows_idle_timeout ?? 0) + (rx.counters.flows_idle_timeout ?? 0) >= 1)
    } finally {
      await pair.stop()
      dest.server.close()
    }
  })

  test('no open relay: rx_proxy refuses a destination outside its policy, with a counter', async () => {
    const dest = await startDestination()
    // Only port 1-10 allowed: the destination's port is not.
    const pair = await startPair({
      destinationPort: dest.port,
      subflows: 2,
      extra: ['--set', 'rx_proxy.allow_ports=1-10']
    })
    try {
      const client = await dial(pair.txPort)
      const r = await readAll(client)
      assert.equal(r.ending, 'ECONNRESET')
      assert.equal(dest.connections, 0)
      const rx = await queryStatus(pair.rxControl)
      assert.equal(rx.counters.flows_refused_destination, 1)
      await pair.tx.waitFor(/POLICY_DENIED/)
    } finally {
      await pair.stop()
      dest.server.close()
    }
  })

  test('a wrong pre-shared key: no subflow comes up, both sides count it, one clear line', async () => {
    const dest = await startDestination()
    await assert.rejects(
      startPair({
        destinationPort: dest.port,
        subflows: 1,
        txExtra: ['--set', `security.psk=${'77'.repeat(32)}`],
        waitMs: 3000
      })
    )
    dest.server.close()
    assert.match(lastFailedPair?.tx ?? '', /failed to prove it knows the pre-shared key/)
    assert.match(lastFailedPair?.rx ?? '', /refused/)
  })
})

describe('memory budget', () => {
  test('clients that write faster than the trunk carries do not keep a new flow out', async () => {
    const STALLED = 7
    // 24 MiB in all, 1 MiB first credit: seven clients whose destinations never read held about
    // 3.6 MiB each on tx_proxy (reply credit, bytes in flight, unsent bytes up to
    // send_buffer_bytes), 25.2 MiB in all, and the next client was reset; now unsent bytes stop
    // at 256 KiB while the budget's last quarter is all that is free (19.2 MiB in all).
    const extra = [
      '--set',
      'limits.max_buffered_bytes=24MiB',
      '--set',
      'limits.flow_window_bytes=1MiB',
      '--set',
      'limits.max_flow_window_bytes=4MiB'
    ]
    await withPair({ extra }, async (dest, pair) => {
      const stalled: Socket[] = []
      try {
        dest.handler = (s) => {
          if (dest.connections <= STALLED) {
            s.pause()
            return
          }
          void readAll(s).then((r) => s.end(`${r.bytes} ${r.sha256}\n`))
        }
        for (let i = 0; i < STALLED; i++) {
          const c = await dial(pair.txPort)
          c.on('error', () => undefined)
          c.write(Buffer.alloc(32 * MiB, i + 1))
          stalled.push(c)
        }
        // Wait until tx_proxy stops reading (its buffered bytes hold still).
        let last = -1
        let still = 0
        let status = await queryStatus(pair.txControl)
        for (let i = 0; i < 100 && still < 3; i++) {
          await new Promise((r) => setTimeout(r, 100))
          status = await queryStatus(pair.txControl)
          still = status.bufferedBytes === last ? still + 1 : 0
          last = status.bufferedBytes
        }
        // What reading took left a new flow's first credit free (the old code read until 0 was free).
        assert.ok(
          status.maxBufferedBytes - status.bufferedBytes >= 1 * MiB,
          `tx_proxy holds ${status.bufferedBytes} of ${status.maxBufferedBytes} bytes`
        )
        const client = await dial(pair.txPort)
        const reply = readAll(client)
        const chunks: Buffer[] = []
        client.on('data', (d: Buffer) => chunks.push(d))
        const sent = await writeBytes(client, 100_000)
        const r = await reply
        const tx = await queryStatus(pair.txControl)
        assert.equal(
          r.ending,
          'end',
          `reply ended by ${r.ending}; tx flows_refused_memory=${tx.counters.flows_refused_memory ?? 0}`
        )
        assert.equal(Buffer.concat(chunks).toString(), `100000 ${sent}\n`)
        assert.equal(tx.counters.flows_refused_memory ?? 0, 0)
        // The stalled clients' reading waited for the budget, and the counter says so.
        assert.ok((tx.counters.budget_waits ?? 0) >= 1, `budget_waits ${tx.counters.budget_waits}`)
      } finally {
        // Before the pair stops: it would wait for these flows.
        for (const c of stalled) c.destroy()
      }
    })
  })
})

describe('idle credit (RELEASE)', () => {
  test("an idle keep-alive connection gives the peer's credit back, and its next reply still arrives whole", async () => {
    const extra = [
      '--set',
      'limits.credit_release_idle_ms=500',
      '--set',
      'limits.flow_window_bytes=1MiB'
    ]
    await withPair({ extra }, async (dest, pair) => {
      let server: Socket | undefined
      dest.handler = (s) => {
        server = s
      }
      const client = await dial(pair.txPort)
      const hash = (): { update: (b: Buffer) => void; bytes: number; digest: () => string } => {
        const h = createHash('sha256')
        const st = {
          bytes: 0,
          update: (b: Buffer) => {
            h.update(b)
            st.bytes += b.length
          },
          digest: () => h.digest('hex')
        }
        return st
      }
      let current = hash()
      client.on('data', (d: Buffer) => {
        current.update(d)
      })
      while (server === undefined) await new Promise((r) => setTimeout(r, 10))
      const srv = server
      // A 64 MiB reply: tx_proxy's window for the reply grows (the client keeps up).
      const sent1 = await writeBytes(srv, 64 * MiB, randomSizer(5, 1, 256 * 1024), false)
      while (current.bytes < 64 * MiB) await new Promise((r) => setTimeout(r, 10))
      assert.equal(current.digest(), sent1)
      const grown = (await queryStatus(pair.txControl)).bufferedBytes
      // Idle for longer than credit_release_idle_ms: rx_proxy gives tx_proxy's credit back.
      let tx = await queryStatus(pair.txControl)
      for (let i = 0; i < 50 && (tx.counters.releases_received ?? 0) === 0; i++) {
        await new Promise((r) => setTimeout(r, 100))
        tx = await queryStatus(pair.txControl)
      }
      const rx = await queryStatus(pair.rxControl)
      assert.ok((rx.counters.releases_sent ?? 0) >= 1, 'rx_proxy sent a RELEASE')
      assert.ok((tx.counters.releases_received ?? 0) >= 1, 'tx_proxy took it')
      process.stdout.write(
        `# tx_proxy held ${(grown / MiB).toFixed(1)} MiB after the reply, ${(tx.bufferedBytes / MiB).toFixed(1)} MiB once idle\n`
      )
      // tx_proxy holds the reply's credit: it grew beyond the first window (1 MiB), and once
      // idle only the first window is left.
      assert.ok(grown > 2 * MiB, `the reply's window grew: ${grown}`)
      assert.ok(tx.bufferedBytes <= 1 * MiB, `tx_proxy still holds ${tx.bufferedBytes}`)
      // The same connection carries the next reply whole.
      current = hash()
      const sent2 = await writeBytes(srv, 16 * MiB, randomSizer(6, 1, 256 * 1024), false)
      while (current.bytes < 16 * MiB) await new Promise((r) => setTimeout(r, 10))
      assert.equal(current.digest(), sent2)
      client.destroy()
    })
  })
})
