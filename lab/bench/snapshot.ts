/**
 * An operator's snapshot taken during a benchmark transfer (root only): the bench's five-namespace
 * testbed with the lab's link emulator (default 600 ms RTT, 1 % loss each way, 100 Mbit/s), the
 * pair in its default configuration with `metrics_listen` set on both boxes, and one flow from src
 * to dst. At `--at` seconds into the transfer it saves, under `--out`:
 *   - `tx-status.txt`, `rx-status.txt`, `tx-status.json` (the proxies' own `status` command);
 *   - `tx-metrics.txt`, `rx-metrics.txt` (a scrape of each) and `promtool.txt` (`promtool check
 *     metrics` on each scrape);
 *   - `ss.txt` (`ss -tin` of the subflows on both boxes; the wan box's qdiscs, NFQUEUE and iptables counters), `rx-status.json`;
 *   - `health.txt` (`/healthz` and `/readyz` of each box).
 * Then it lets the flow finish, checks sha256 at dst and prints one line with the rate.
 *
 *   node dist/lab/bench/snapshot.js [--rtt 600] [--loss 1] [--rate 100] [--seconds 40] [--at 20]
 *     [--set KEY=VALUE ...] [--out DIR]
 *
 * Namespaces are named `tsnap<pid>-N` and removed on every exit path.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'

import {
  createImpairedTestbed,
  dist,
  runIn,
  startReceive,
  type NsProcess
} from '../testbed/impaired.js'
import { configOverrides } from '../testbed/overrides.js'
import { LINK_OPTIONS } from '../testbed/rr-pair.js'
import { TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'

const METRICS = '127.0.0.1:9464'

function inNs(ns: string, argv: readonly string[]): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' })
  return `${r.stdout}${r.stderr}`
}

function local(argv: readonly string[], input?: string): { code: number; out: string } {
  const r = spawnSync(argv[0] ?? 'false', argv.slice(1), { encoding: 'utf8', input })
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` }
}

async function main(): Promise<number> {
  const args = await yargs(hideBin(process.argv))
    .scriptName('snapshot')
    .options(LINK_OPTIONS)
    .option('subflows', { type: 'number', default: 8 })
    .option('seconds', { type: 'number', default: 40, describe: 'length of the transfer' })
    .option('at', { type: 'number', default: 20, describe: 'seconds into it to take the snapshot' })
    .option('out', {
      type: 'string',
      default: 'dist/snapshot',
      describe: 'directory for the files'
    })
    .strict()
    .parse()
  const out = resolve(args.out)
  mkdirSync(out, { recursive: true })
  const bed = await createImpairedTestbed('tsnap', {
    rttMs: args.rtt,
    lossPercent: args.loss,
    rateMbit: args.rate
  })
  const procs: NsProcess[] = []
  const cleanup = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop()
    await bed.destroy()
  }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
  try {
    const conf = bed.config('snap', {
      'tx_proxy.subflows': String(args.subflows),
      'tx_proxy.metrics_listen': METRICS,
      'rx_proxy.metrics_listen': METRICS,
      'interception.transparent': 'false',
      ...configOverrides(args.set)
    })
    const recv = await startReceive(bed, 5201)
    procs.push(recv)
    await bed.startProxies(conf, args.subflows)
    const started = performance.now()
    const sending = runIn(
      bed.topo.ns.src,
      [
        process.execPath,
        dist('tools/stream.js'),
        A.dst.v4,
        '5201',
        '--duration',
        String(args.seconds),
        '--json',
        '--quiet'
      ],
      (args.seconds + 60) * 1000
    )
    await sleep(args.at * 1000)
    const cli = (role: 'tx' | 'rx', extra: readonly string[]): string =>
      local([
        process.execPath,
        dist(`${role}-proxy/main.js`),
        'status',
        '--control',
        bed.controlSocket('snap', role),
        ...extra
      ]).out
    writeFileSync(join(out, 'tx-status.txt'), cli('tx', []))
    writeFileSync(join(out, 'rx-status.txt'), cli('rx', []))
    writeFileSync(join(out, 'tx-status.json'), cli('tx', ['--json']))
    const health: string[] = []
    const promtool: string[] = []
    for (const [role, ns] of [
      ['tx', bed.topo.ns.tx.name],
      ['rx', bed.topo.ns.rx.name]
    ] as const) {
      const scrape = inNs(ns, ['curl', '-sS', `http://${METRICS}/metrics`])
      writeFileSync(join(out, `${role}-metrics.txt`), scrape)
      const check = local(['promtool', 'check', 'metrics'], scrape)
      promtool.push(`${role}_proxy: promtool check metrics exit ${check.code}\n${check.out}`)
      for (const path of ['/healthz', '/readyz']) {
        const r = inNs(ns, [
          'curl',
          '-sS',
          '-w',
          ' (HTTP %{http_code})',
          `http://${METRICS}${path}`
        ])
        health.push(`${role}_proxy ${path}: ${r.trim()}`)
      }
    }
    writeFileSync(
      join(out, 'ss.txt'),
      `tx box, the subflows:\n${inNs(bed.topo.ns.tx.name, ['ss', '-tin', 'dport', '=', ':6000'])}\n` +
        `rx box, the subflows:\n${inNs(bed.topo.ns.rx.name, ['ss', '-tin', 'sport', '=', ':6000'])}\n` +
        `wan box, the link's queues:\n${inNs(bed.topo.ns.wan.name, ['tc', '-s', 'qdisc'])}\n` +
        `${inNs(bed.topo.ns.wan.name, ['cat', '/proc/net/netfilter/nfnetlink_queue'])}\n` +
        inNs(bed.topo.ns.wan.name, ['iptables-save', '-c'])
    )
    writeFileSync(join(out, 'rx-status.json'), cli('rx', ['--json']))
    writeFileSync(join(out, 'promtool.txt'), `${promtool.join('\n')}\n`)
    writeFileSync(join(out, 'health.txt'), `${health.join('\n')}\n`)
    const sent = await sending
    const line = (await recv.waitFor(/^\{.*\}$/m, 30_000))[0]
    const got = JSON.parse(line) as {
      receivedBytes: number
      receivedSha256: string
      goodputMbitPerSec?: number
    }
    const report = JSON.parse(sent.output.trim().split('\n').pop() ?? '{}') as {
      sentSha256?: string
      goodputMbitPerSec?: number
    }
    const same = got.receivedSha256 === report.sentSha256
    process.stdout.write(
      `snapshot: ${args.rtt} ms, ${args.loss} % loss, ${args.rate} Mbit/s: ${got.receivedBytes} bytes in ` +
        `${((performance.now() - started) / 1000).toFixed(1)} s, ${(got.goodputMbitPerSec ?? 0).toFixed(1)} Mbit/s at dst, ` +
        `sha256 ${same ? 'equal' : 'DIFFERENT'}; files in ${out}\n`
    )
    return same && sent.code === 0 ? 0 : 1
  } finally {
    await cleanup()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`snapshot: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
)
