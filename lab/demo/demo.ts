/**
 * `make demo`: five namespaces with a bad link between the boxes (default 100 ms RTT, 1 % loss,
 * 100 Mbit/s), the same transfer directly (end hosts on cubic, as most clients are) and through
 * Tandem, the goodputs and the speed-up printed, everything removed afterwards.
 */
import { spawn } from 'node:child_process'
import yargs from 'yargs'

import { errorMessage } from '../../src/common/errors.js'
import { netnsUnavailableReason } from '../testbed/netns.js'
import { createImpairedTestbed, dist, startIn, type ImpairedTestbed } from '../testbed/impaired.js'
import { configOverrides } from '../testbed/overrides.js'
import { TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'

/** What ./stream --json reports (the fields the demo reads). */
interface StreamReport {
  readonly sentBytes: number
  readonly sentSha256: string
  readonly deliveredMs: number
  readonly goodputMbitPerSec: number
}

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s)

/** Run ./stream in src with the progress bar on our terminal; resolve with its JSON report. */
function streamFromSrc(
  bed: ImpairedTestbed,
  port: number,
  seconds: number,
  congestion: string
): Promise<StreamReport> {
  return new Promise((resolve, reject) => {
    const argv = [
      'netns',
      'exec',
      bed.topo.ns.src.name,
      process.execPath,
      dist('tools/stream.js'),
      A.dst.v4,
      String(port),
      '--duration',
      String(seconds),
      '--congestion',
      congestion,
      '--json',
      '--progress',
      '--timeout',
      String(seconds + 120)
    ]
    const child = spawn('ip', argv, { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.on('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`stream failed (exit ${code ?? 'signal'}): ${out.trim()}`))
        return
      }
      resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}') as StreamReport)
    })
  })
}

async function main(): Promise<number> {
  const args = yargs(process.argv.slice(2))
    .scriptName('make demo --')
    .option('rtt-ms', { type: 'number', default: 100, describe: 'round-trip time of the bad link' })
    .option('loss', { type: 'number', default: 1, describe: 'random loss each way, percent' })
    .option('rate-mbit', { type: 'number', default: 100, describe: 'link rate each way' })
    .option('seconds', { type: 'number', default: 20, describe: 'length of each transfer' })
    .option('subflows', { type: 'number', default: 8, describe: 'Tandem subflows' })
    .option('set', {
      type: 'string',
      array: true,
      describe: 'extra network.conf setting for the proxies: --set section.key=value'
    })
    .option('congestion', {
      type: 'string',
      default: 'cubic',
      describe: 'congestion control of the end hosts'
    })
    .strict()
    .help()
    .version(false)
    // A usage error exits 2 with one line, as every script of the project does.
    .fail((msg: string | null, err: Error | null) => {
      process.stderr.write(`demo: ${msg ?? err?.message ?? 'bad arguments'} (see --help)\n`)
      process.exit(2)
    })
    .parseSync()
  const why = netnsUnavailableReason()
  if (why !== undefined) {
    process.stderr.write(`demo: ${why}\n`)
    return 2
  }
  const link = { rttMs: args['rtt-ms'], lossPercent: args.loss, rateMbit: args['rate-mbit'] }
  process.stdout.write(
    `${bold('Tandem demo')}: src ── tx box ══ bad link (${link.rttMs} ms RTT, ${link.lossPercent} % loss each way, ${link.rateMbit} Mbit/s) ══ rx box ── dst\n` +
      `Building five network namespaces and the link emulator...\n`
  )
  const bed = await createImpairedTestbed('demo', link)
  try {
    const bdpBytes = (link.rateMbit * 1e6 * (link.rttMs / 1000)) / 8
    const window = Math.max(4 * 1024 * 1024, Math.ceil((2 * bdpBytes) / 1048576) * 1048576)
    const conf = bed.config('demo', {
      'tx_proxy.subflows': String(args.subflows),
      'trunk.congestion': 'bbr',
      'limits.flow_window_bytes': String(window),
      'limits.send_buffer_bytes': String(window),
      'interception.transparent': 'false',
      ...configOverrides(args.set ?? [])
    })
    const recv = startIn(
      bed.topo.ns.dst,
      [
        dist('tools/receive.js'),
        '--port',
        '5201',
        '--keep-listening',
        '--reply-bytes',
        '1KiB',
        '--json',
        '--quiet'
      ],
      'receive'
    )
    await recv.waitFor(/listening on/)

    process.stdout.write(
      `\n${bold(`1/2 direct TCP`)} (end hosts on ${args.congestion}), ${args.seconds} s:\n`
    )
    const direct = await streamFromSrc(bed, 5201, args.seconds, args.congestion)
    process.stdout.write(`    ${direct.goodputMbitPerSec.toFixed(1)} Mbit/s\n`)

    process.stdout.write(
      `\n${bold('2/2 through Tandem')} (${args.subflows} subflows, bbr), ${args.seconds} s:\n`
    )
    process.stdout.write(
      '    starting rx_proxy and tx_proxy (the trunk warms up before the transfer)...\n'
    )
    await bed.startProxies(conf, args.subflows)
    const tandem = await streamFromSrc(bed, 5201, args.seconds, args.congestion)
    process.stdout.write(`    ${tandem.goodputMbitPerSec.toFixed(1)} Mbit/s\n`)

    const results = recv
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
    const check = results.map((l) => (JSON.parse(l) as { receivedSha256: string }).receivedSha256)
    const intact = check[0] === direct.sentSha256 && check[1] === tandem.sentSha256
    const speedup = tandem.goodputMbitPerSec / Math.max(0.001, direct.goodputMbitPerSec)
    process.stdout.write(
      `\n${bold('Result')}\n` +
        `| path | goodput (Mbit/s) | bytes | sha256 at dst |\n|---|---:|---:|---|\n` +
        `| direct TCP (${args.congestion}) | ${direct.goodputMbitPerSec.toFixed(1)} | ${direct.sentBytes} | ${check[0] === direct.sentSha256 ? 'equal' : 'DIFFERENT'} |\n` +
        `| Tandem, ${args.subflows} subflows | ${tandem.goodputMbitPerSec.toFixed(1)} | ${tandem.sentBytes} | ${check[1] === tandem.sentSha256 ? 'equal' : 'DIFFERENT'} |\n\n` +
        `${bold(`Speed-up: ${speedup.toFixed(1)}×`)}\n`
    )
    return intact ? 0 : 1
  } finally {
    process.stdout.write('Removing the namespaces, rules and processes...\n')
    await bed.destroy()
  }
}

main().then(
  (code) => {
    process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`demo: ${errorMessage(err)}\n`)
    process.exit(1)
  }
)
