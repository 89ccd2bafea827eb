/**
 * The link emulator on a real namespace topology (root only): a -- wan (bridge of two veths) --
 * b on one subnet. The emulator runs inside wan with D = 25 ms each way, 1% loss each way and
 * 100 Mbit/s; the self-check must find RTT, loss and rate within tolerance, the kernel queues
 * must drop nothing, and after SIGTERM every rule and qdisc it added must be gone and the link
 * clean again.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { nativeAddonPath } from '../../native/index.js'
import { ensureTools, localRunner, type EmulatorSummary } from '../../lab/link-emulator/emulator.js'
import { formatSelfCheck, selfCheck } from '../../lab/link-emulator/self-check.js'
import { createNetns, netnsUnavailableReason, type Netns } from '../helpers/netns.js'

/** The compiled CLI (dist/lab/link-emulator/main.js). */
const EMULATOR_MAIN = fileURLToPath(new URL('../../lab/link-emulator/main.js', import.meta.url))
const A_ADDRESS = '10.77.0.1'
const B_ADDRESS = '10.77.0.2'
const DELAY_MS = 25
const LOSS_PERCENT = 1
const RATE_MBIT = 100
/** Longest the emulator may take to set up or to clean up, milliseconds. */
const EMULATOR_STEP_TIMEOUT_MS = 20_000

function skipReason(): string | undefined {
  return (
    netnsUnavailableReason() ??
    (existsSync(nativeAddonPath()) ? undefined : 'native addon not built (npm run build:native)')
  )
}

/** a -- [pa br0 pb] -- b, offloads off on the end veths (the emulator does the wan side). */
async function topology(t: {
  after(fn: () => void): void
}): Promise<{ a: Netns; wan: Netns; b: Netns }> {
  const a = createNetns('tlea', t)
  const wan = createNetns('tlew', t)
  const b = createNetns('tleb', t)
  // Created from inside wan, so no interface ever appears in the root namespace.
  await wan.exec([
    'ip',
    'link',
    'add',
    'pa',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    a.name
  ])
  await wan.exec([
    'ip',
    'link',
    'add',
    'pb',
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    b.name
  ])
  await wan.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge'])
  for (const port of ['pa', 'pb']) {
    await wan.exec(['ip', 'link', 'set', port, 'master', 'br0'])
  }
  for (const dev of ['lo', 'pa', 'pb', 'br0']) {
    await wan.exec(['ip', 'link', 'set', dev, 'up'])
  }
  for (const [ns, address] of [
    [a, A_ADDRESS],
    [b, B_ADDRESS]
  ] as const) {
    await ns.exec(['ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0'])
    await ns.exec(['ip', 'link', 'set', 'lo', 'up'])
    await ns.exec(['ip', 'link', 'set', 'eth0', 'up'])
    await ns.exec(['ethtool', '-K', 'eth0', 'tso', 'off', 'gso', 'off', 'gro', 'off'])
  }
  return { a, wan, b }
}

/** A JSON line the emulator printed. */
type EmulatorEvent = { event: string } & Record<string, unknown>

/** Runs the emulator CLI in `wan`; resolves once it printed its ready line. */
async function startEmulator(wan: Netns): Promise<{
  events: EmulatorEvent[]
  stop: () => Promise<{ code: number | null; summary: EmulatorSummary }>
}> {
  const child = wan.spawn([
    process.execPath,
    EMULATOR_MAIN,
    '--port-a',
    'pa',
    '--port-b',
    'pb',
    '--delay-ms',
    `${DELAY_MS}`,
    '--loss',
    `${LOSS_PERCENT}`,
    '--rate-mbit',
    `${RATE_MBIT}`,
    '--json'
  ])
  const events: EmulatorEvent[] = []
  let stderr = ''
  let partial = ''
  let onEvent: () => void = () => undefined
  child.stdout.on('data', (chunk: Buffer) => {
    partial += chunk.toString()
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const l of lines) {
      events.push(JSON.parse(l) as EmulatorEvent)
    }
    onEvent()
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => {
      resolve(code)
      onEvent()
    })
  })
  const waitFor = (name: string): Promise<EmulatorEvent> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no ${name} line from the emulator; stderr: ${stderr}`))
      }, EMULATOR_STEP_TIMEOUT_MS)
      onEvent = () => {
        const found = events.find((e) => e.event === name)
        if (found !== undefined) {
          clearTimeout(timer)
          resolve(found)
        } else if (child.exitCode !== null) {
          clearTimeout(timer)
          reject(new Error(`emulator exited ${child.exitCode} before ${name}: ${stderr}`))
        }
      }
      onEvent()
    })
  await waitFor('ready')
  return {
    events,
    stop: async () => {
      child.kill('SIGTERM')
      const summary = (await waitFor('summary')) as unknown as EmulatorSummary
      return { code: await exited, summary }
    }
  }
}

async function medianRttMs(a: Netns): Promise<number> {
  const { stdout } = await a.exec(['ping', '-n', '-c', '10', '-i', '0.02', '-W', '2', B_ADDRESS])
  const times = [...stdout.matchAll(/time=([\d.]+) ms/g)]
    .map((m) => Number(m[1]))
    .sort((x, y) => x - y)
  assert.ok(times.length > 0, `ping got no replies:\n${stdout}`)
  return times[Math.floor(times.length / 2)]!
}

describe('link emulator in network namespaces', { skip: skipReason() }, () => {
  test(
    'delay, loss and rate within tolerance; nothing left after stop',
    { timeout: 120_000 },
    async (t) => {
      await ensureTools(localRunner(), ['ping', 'ethtool'])
      const { a, wan, b } = await topology(t)
      const before = await medianRttMs(a)
      assert.ok(before < 5, `unimpaired RTT ${before} ms`)

      const emulator = await startEmulator(wan)
      const runCheck = (): ReturnType<typeof selfCheck> =>
        selfCheck({
          a,
          b,
          aAddress: A_ADDRESS,
          bAddress: B_ADDRESS,
          ab: { delayMs: DELAY_MS, lossPercent: LOSS_PERCENT, rateMbit: RATE_MBIT },
          ba: { delayMs: DELAY_MS, lossPercent: LOSS_PERCENT, rateMbit: RATE_MBIT }
        })
      // The checks measure a shared 2-core machine: one more try when another process starved
      // the measuring sender (the emulator's own figures stay the ones asserted).
      let check = await runCheck()
      if (!check.pass) {
        process.stdout.write(`# self-check failed once (machine busy?), trying again\n`)
        check = await runCheck()
      }
      const { code, summary } = await emulator.stop()
      const busiest = Math.max(
        ...emulator.events
          .filter((e) => e.event === 'stats')
          .map((e) => Number(e.intervalCpuPercent))
      )
      for (const l of formatSelfCheck(check).split('\n')) {
        t.diagnostic(l)
      }
      t.diagnostic(
        `emulator: ${summary.packetsDelayed} packets delayed, max queue depth ${summary.maxQueueDepth}, ` +
          `queue drops ${summary.queueDrops}, enobufs ${summary.enobufs}, cpu ${summary.cpu.cpuSeconds.toFixed(2)} s ` +
          `over ${summary.cpu.wallSeconds.toFixed(1)} s = ${summary.cpu.percentOfCore.toFixed(1)}% of a core ` +
          `(busiest second ${busiest.toFixed(1)}%)`
      )

      assert.ok(check.rtt.pass, `RTT: ${JSON.stringify(check.rtt)}`)
      assert.ok(check.loss.pass, `loss: ${JSON.stringify(check.loss)}`)
      assert.equal(check.loss.detail.sent, 10_000)
      assert.ok(check.rateAb?.pass, `rate a->b: ${JSON.stringify(check.rateAb)}`)
      assert.ok(check.rateBa?.pass, `rate b->a: ${JSON.stringify(check.rateBa)}`)
      assert.equal(summary.queueDrops, 0, 'the kernel dropped queued packets (nfnetlink_queue)')
      assert.equal(summary.enobufs, 0)
      assert.ok(summary.packetsDelayed > 20_000, `${summary.packetsDelayed} packets delayed`)

      // Stopped: exit 0, and every rule, chain, qdisc and queue binding it made is gone.
      assert.equal(code, 0)
      assert.deepEqual(summary.cleanupErrors, [])
      for (const tool of ['iptables-save', 'ip6tables-save']) {
        const { stdout } = await wan.exec([tool])
        assert.doesNotMatch(
          stdout,
          /LINKEMU|NFQUEUE|statistic|physdev/,
          `${tool} after stop:\n${stdout}`
        )
      }
      const { stdout: qdiscs } = await wan.exec(['tc', 'qdisc', 'show'])
      assert.doesNotMatch(qdiscs, /tbf|netem/, `qdiscs after stop:\n${qdiscs}`)
      const { stdout: queues } = await wan.exec(['cat', '/proc/net/netfilter/nfnetlink_queue'])
      assert.equal(queues.trim(), '', 'no queue bound after stop')
      const after = await medianRttMs(a)
      assert.ok(after < 5, `RTT after stop ${after} ms`)
    }
  )
})
