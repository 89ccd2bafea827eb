/**
 * What idle keep-alive connections cost a bulk download through a warm trunk (root only): the
 * bench's five-namespace testbed (default 600 ms RTT, 1 % loss each way, 100 Mbit/s) and a pair
 * of 8 subflows. `--idle N` connections each download `--idle-bytes` (`./rr ... keep`) and stay
 * open; after `--wait` seconds one bulk download runs for `--seconds`, and the line printed gives
 * its goodput and what both proxies held (`status`) before and after the wait. On a warm trunk
 * every flow's credit starts at twice the bandwidth-delay product, so idle connections that
 * keep it leave a new flow only its first window; `--set limits.credit_release_idle_ms=0` turns
 * the giving back (RELEASE) off, for the side-by-side run.
 *
 *   node dist/lab/bench/idle-credit.js [--rtt 600] [--loss 1] [--idle 60] [--idle-bytes 100000]
 *     [--wait 12] [--seconds 15] [--set KEY=VALUE ...]
 *
 * The client side runs in the src namespace as this same file with `client` first.
 * Namespaces are named `idlecr<pid>-N` and removed on every exit path.
 */
import { once } from 'node:events'
import net, { type Socket } from 'node:net'

import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'

import { startIn } from '../testbed/impaired.js'
import { labDist } from '../testbed/ns-process.js'
import { LINK_OPTIONS, RR_PORT, withRrPair } from '../testbed/rr-pair.js'
import { TOPOLOGY_ADDRESSES as A } from '../testbed/topology.js'
import { oneShot } from './short-flows.js'

const MiB = 1024 * 1024

/** One request on `s` (`GET n cubic keep`), resolved once its `bytes` arrived. */
async function download(s: Socket, bytes: number, keep: boolean): Promise<void> {
  let got = 0
  const done = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      got += d.length
      if (got >= bytes) {
        s.off('data', onData)
        resolve()
      }
    }
    s.on('data', onData)
    s.once('error', reject)
  })
  s.write(`GET ${bytes} cubic${keep ? ' keep' : ''}\n`)
  await done
}

/** The client side, in src: idle connections, the wait, the bulk download; one JSON line. */
async function client(argv: readonly string[]): Promise<number> {
  const args = await yargs(argv)
    .options({
      idle: { type: 'number', demandOption: true },
      'idle-bytes': { type: 'number', demandOption: true },
      wait: { type: 'number', demandOption: true },
      seconds: { type: 'number', demandOption: true }
    })
    .strict()
    .parse()
  const connect = async (): Promise<Socket> => {
    const s = net.connect({ host: A.dst.v4, port: RR_PORT })
    await once(s, 'connect')
    return s
  }
  const idle: Socket[] = []
  for (let i = 0; i < args.idle; i++) {
    const s = await connect()
    await download(s, args['idle-bytes'], true)
    idle.push(s)
  }
  process.stdout.write('idle connections open\n')
  await new Promise((r) => setTimeout(r, args.wait * 1000))
  process.stdout.write('bulk starts\n')
  const bulk = await connect()
  let bytes = 0
  bulk.on('data', (d: Buffer) => {
    bytes += d.length
  })
  bulk.write(`GET ${4 * 1024 * MiB} cubic\n`)
  await new Promise((r) => setTimeout(r, args.seconds * 1000))
  bulk.destroy()
  for (const s of idle) s.destroy()
  process.stdout.write(`${JSON.stringify({ bulkBytes: bytes, seconds: args.seconds })}\n`)
  return 0
}

async function main(): Promise<number> {
  const args = await yargs(hideBin(process.argv))
    .scriptName('idle-credit')
    .options(LINK_OPTIONS)
    .option('idle', { type: 'number', default: 60, describe: 'idle keep-alive connections' })
    .option('idle-bytes', { type: 'number', default: 100_000, describe: 'each one downloads this' })
    .option('wait', { type: 'number', default: 12, describe: 'seconds idle before the bulk' })
    .option('seconds', { type: 'number', default: 15, describe: 'the bulk download, seconds' })
    .strict()
    .parse()
  return withRrPair('idlecr', args, {}, async ({ bed, status, defer }) => {
    const held = async (): Promise<string> => {
      const t = await status('tx')
      const r = await status('rx')
      return `tx ${(t.bufferedBytes / MiB).toFixed(0)} MiB, rx ${(r.bufferedBytes / MiB).toFixed(0)} MiB`
    }
    // Warm the trunk as the bench does: one bulk reply teaches it the path.
    await oneShot(bed, 30 * MiB, 'cubic')
    const c = startIn(
      bed.topo.ns.src,
      [
        labDist('bench/idle-credit.js'),
        'client',
        '--idle',
        String(args.idle),
        '--idle-bytes',
        String(args['idle-bytes']),
        '--wait',
        String(args.wait),
        '--seconds',
        String(args.seconds)
      ],
      'idle-client'
    )
    defer(() => c.stop())
    await c.waitFor(/idle connections open/, 300_000)
    const before = await held()
    await c.waitFor(/bulk starts/, (args.wait + 10) * 1000)
    const after = await held()
    await c.exited()
    const line = c
      .output()
      .split('\n')
      .find((l) => l.startsWith('{'))
    if (line === undefined) throw new Error(`the client printed no result: ${c.output()}`)
    const r = JSON.parse(line) as { bulkBytes: number; seconds: number }
    const t = await status('tx')
    process.stdout.write(
      `idle-credit: ${args.rtt} ms, ${args.loss} % loss, ${args.idle} idle connections of ${args['idle-bytes']} B` +
        `${args.set.length > 0 ? ` (${args.set.join(' ')})` : ''}: held ${before} with them open, ${after} after ${args.wait} s idle; ` +
        `bulk ${((r.bulkBytes * 8) / r.seconds / 1e6).toFixed(1)} Mbit/s over ${r.seconds} s; ` +
        `tx credit releases received ${t.counters.releases_received ?? 0}, budget waits ${t.counters.budget_waits ?? 0}\n`
    )
    return 0
  })
}

const argv = hideBin(process.argv)
;(argv[0] === 'client' ? client(argv.slice(1)) : main()).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`idle-credit: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
)
