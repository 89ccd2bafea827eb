/**
 * Two trunks in one process, their subflows and application sockets on loopback pairs: open,
 * data both ways, half-close, reset, the loss of a subflow mid-transfer, and a flow opened before
 * any subflow surviving a peer restart.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { buildConfig } from '../../src/common/config/config.js'
import { Counters } from '../../src/common/counters.js'
import { silentLogger } from '../../src/common/log/logger.js'
import { ResetReason, type Endpoint } from '../../src/common/wire/frame.js'
import { MemoryBudget } from '../../src/core/memory-budget.js'
import { createScheduler } from '../../src/core/scheduler/index.js'
import { trunkSettings } from '../../src/trunk/settings.js'
import { Trunk, type TrunkOptions } from '../../src/trunk/trunk.js'
import { socketPair } from '../helpers/socket-pair.js'
import { readAll, writeBytes } from '../helpers/transfer.js'

const MiB = 1024 * 1024
const DST: Endpoint = { family: 4, address: '192.0.2.80', port: 80 }
const settings = trunkSettings(buildConfig(new Map()))
const peer = {
  flowWindowBytes: settings.flowWindowBytes,
  maxFrameBodyBytes: settings.maxFrameBodyBytes
}

function trunk(role: 'tx' | 'rx', extra: Partial<TrunkOptions> = {}): Trunk {
  return new Trunk({
    role,
    trunkId: randomBytes(16),
    settings,
    scheduler: createScheduler('first-free'),
    budget: new MemoryBudget(256 * MiB),
    counters: new Counters(),
    log: silentLogger,
    now: () => performance.now(),
    ...extra
  })
}

/** A tx and an rx trunk joined by `subflows` subflows; rx hands each destination to the test. */
async function trunkPair(
  subflows: number,
  txExtra: Partial<TrunkOptions> = {},
  rxExtra: Partial<TrunkOptions> = {}
): Promise<{
  tx: Trunk
  rx: Trunk
  destinations: Promise<Socket>[]
  join(tx: Trunk, rx: Trunk): Promise<void>
  close(): void
}> {
  const waiting: ((s: Socket) => void)[] = []
  const destinations = Array.from(
    { length: 4 },
    () => new Promise<Socket>((resolve) => waiting.push(resolve))
  )
  const sockets: Socket[] = []
  const rx = trunk('rx', {
    ...rxExtra,
    connect: async () => {
      const p = await socketPair()
      sockets.push(p.a, p.b)
      p.a.on('error', () => undefined)
      waiting.shift()?.(p.a)
      return p.b
    }
  })
  const tx = trunk('tx', txExtra)
  const join = async (t: Trunk, r: Trunk): Promise<void> => {
    for (let i = 0; i < subflows; i++) {
      const p = await socketPair()
      sockets.push(p.a, p.b)
      t.addSubflow(p.a, peer, i, 0, new Uint8Array(0))
      r.addSubflow(p.b, peer, i, 0, new Uint8Array(0))
    }
  }
  await join(tx, rx)
  return {
    tx,
    rx,
    destinations,
    join,
    close: () => {
      tx.close(ResetReason.SHUTDOWN, 'test over')
      rx.close(ResetReason.SHUTDOWN, 'test over')
      for (const s of sockets) s.destroy()
    }
  }
}

/** A client socket carried by `tx`: the test's end. */
async function client(tx: Trunk): Promise<Socket> {
  const p = await socketPair()
  p.a.on('error', () => undefined)
  assert.ok(tx.openFlow(p.b, DST, undefined) !== undefined)
  return p.a
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms
  while (!cond()) {
    if (performance.now() > deadline) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('two trunks in one process', () => {
  it('open, data both ways, half-close: every byte arrives (sha256 equal) and both ends see a clean end', async () => {
    const t = await trunkPair(2)
    try {
      const c = await client(t.tx)
      const d = await t.destinations[0]!
      const atDest = readAll(d)
      const atClient = readAll(c)
      const up = writeBytes(c, 3 * MiB)
      const down = writeBytes(d, 2 * MiB)
      const [u, w, r1, r2] = await Promise.all([up, down, atDest, atClient])
      assert.equal(r1.sha256, u)
      assert.equal(r1.ending, 'end')
      assert.equal(r2.sha256, w)
      assert.equal(r2.ending, 'end')
      await until(() => t.tx.flowCount === 0 && t.rx.flowCount === 0)
    } finally {
      t.close()
    }
  })

  it('a warm trunk grants a new bulk flow the largest window an earlier flow grew to, a short one its first credit', async () => {
    const t = await trunkPair(1)
    try {
      assert.equal(t.tx.grownWindowBytes(), 0)
      t.tx.noteWindowGrown(12 * MiB)
      t.tx.noteWindowGrown(6 * MiB)
      assert.equal(t.tx.grownWindowBytes(), 12 * MiB, 'the largest is kept')
      const c = await client(t.tx)
      const flow = t.tx.flowList()[0]
      assert.ok(flow !== undefined)
      // Nothing received yet: the first credit only (the global budget is not reserved for
      // every short flow).
      assert.equal(flow.stats().windowBytes, settings.flowWindowBytes)
      // Half the first credit delivered: a bulk transfer, granted the remembered window.
      const d = await t.destinations[0]!
      const atClient = readAll(c)
      const sent = writeBytes(d, 3 * MiB)
      await until(() => flow.stats().bytesToApp >= settings.flowWindowBytes / 2)
      await until(() => flow.stats().windowBytes === 12 * MiB)
      c.end()
      const [w, r] = await Promise.all([sent, atClient])
      assert.equal(r.sha256, w)
    } finally {
      t.close()
    }
  })

  it('a client reset resets the destination', async () => {
    const t = await trunkPair(1)
    try {
      const c = await client(t.tx)
      const d = await t.destinations[0]!
      const atDest = readAll(d)
      c.write(Buffer.alloc(4096, 7))
      await until(() => t.rx.liveTotals().bytesToApp >= 4096)
      c.resetAndDestroy()
      const r = await atDest
      assert.notEqual(r.ending, 'end')
      await until(() => t.rx.flowCount === 0)
    } finally {
      t.close()
    }
  })

  it('a subflow that stops delivering without closing: the frames stuck on it are reinjected on another, sha256 equal', async () => {
    const counters = new Counters()
    // Pings would find the stuck subflow dead after ping_timeout_ms and re-send what it
    // carried; with a long timeout only the reinjection can move the flow on.
    const patient = { ...settings, pingTimeoutMs: 600_000 }
    const t = await trunkPair(
      2,
      { counters, settings: patient, scheduler: createScheduler('round-robin') },
      { settings: patient }
    )
    try {
      const c = await client(t.tx)
      const d = await t.destinations[0]!
      const atDest = readAll(d)
      // rx stops reading one subflow: whatever tx put there never arrives, and the socket
      // stays open (a subflow deep in loss recovery looks like this from the flow's side).
      t.rx.liveSubflows()[1]!.rawSocket.pause()
      const sent = writeBytes(c, 2 * MiB, () => 16 * 1024)
      const [sha, r] = await Promise.all([sent, atDest])
      assert.equal(r.sha256, sha)
      assert.equal(r.ending, 'end')
      assert.ok(counters.get('frames_reinjected') > 0, 'no frame was reinjected')
      assert.equal(t.tx.subflowCount, 2, 'the stuck subflow was not closed')
    } finally {
      t.close()
    }
  })

  it('a subflow lost mid-transfer: what it carried is re-sent, sha256 equal', async () => {
    const t = await trunkPair(3)
    try {
      const c = await client(t.tx)
      const d = await t.destinations[0]!
      const atDest = readAll(d)
      const sent = writeBytes(c, 16 * MiB, () => 16 * 1024)
      await until(() => t.rx.liveTotals().bytesToApp > 2 * MiB)
      t.tx.liveSubflows()[0]!.close('killed by the test', undefined)
      const [sha, r] = await Promise.all([sent, atDest])
      assert.equal(r.sha256, sha)
      assert.equal(r.ending, 'end')
      assert.equal(t.tx.subflowCount, 2)
    } finally {
      t.close()
    }
  })

  it('a peer restart resets only flows the old peer may know; one opened with no subflow up goes on', async () => {
    const t = await trunkPair(1)
    try {
      const known = await client(t.tx)
      await t.destinations[0]
      const knownResult = readAll(known)
      for (const s of [...t.tx.liveSubflows()]) s.close('peer died', undefined)
      assert.equal(t.tx.subflowCount, 0)
      const fresh = await client(t.tx)
      const atClient = readAll(fresh)
      assert.equal(t.tx.peerRestarted(), 1)
      assert.notEqual((await knownResult).ending, 'end')
      // A new peer: a fresh rx trunk, joined to the same tx trunk.
      const newRx = trunk('rx', {
        connect: async () => {
          const p = await socketPair()
          void readAll(p.a).then((r) => p.a.end(`${r.bytes} ${r.sha256}`))
          return p.b
        }
      })
      await t.join(t.tx, newRx)
      const chunks: Buffer[] = []
      fresh.on('data', (b: Buffer) => chunks.push(b))
      const sha = await writeBytes(fresh, MiB)
      const r = await atClient
      assert.equal(r.ending, 'end')
      // The new peer's destination saw every byte of the flow opened during the outage.
      assert.equal(Buffer.concat(chunks).toString(), `${MiB} ${sha}`)
      newRx.close(ResetReason.SHUTDOWN, 'test over')
    } finally {
      t.close()
    }
  })
})
