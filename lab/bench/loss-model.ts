/**
 * A model, not a measurement: how long a download through the trunk takes when every segment
 * of it may be lost, for ways of spreading it over TCP subflows. It answers one question from
 * issue 15: can any arrangement of TCP subflows bring a 1 MB download at 600 ms / 1 % under
 * 1.0 s? (`short-trace` measured why it takes 1.29 s: nearly every such download loses a
 * segment, and TCP recovers it a round trip after it left.)
 *
 * The reply leaves the replying proxy at the link's rate from `startS` (the request's one-way
 * trip), in frames of `frameSegments` segments, frame k (and its copies) on subflows
 * k·copies, k·copies + 1, ... modulo `subflows`. Each transmission of a segment is lost with
 * probability `loss`. A lost segment is sent again one round trip after the next segment on its
 * subflow left (its SACK had to come back), or two round trips after its own last try when
 * nothing follows it or the re-send was lost (the tail loss probe, the timeout). A subflow
 * delivers in order; a segment counts at the first of its copies to be delivered. Queueing,
 * congestion control and the copies' cost on the link are left out: the model flatters every
 * arrangement, so what it cannot bring under a target, the real trunk cannot either.
 *
 *   node dist/lab/bench/loss-model.js [--rtt 600] [--loss 1] [--bytes 1000000] [--target 1.0]
 *     [--runs 2000] [--arrangements 8x1,8x2,...]
 */
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'

import { rng } from '../../test/helpers/frames.js'
import { median } from './median.js'

/** One arrangement and its link. */
export interface LossModel {
  readonly bytes: number
  readonly rttS: number
  readonly loss: number
  readonly rateBytesPerS: number
  readonly subflows: number
  /** Copies of every frame, each on its own subflow. */
  readonly copies: number
  readonly segmentBytes?: number
  readonly frameSegments?: number
}

/**
 * Seconds from the request to the last byte delivered in order, for one download; `random`
 * returns uniform numbers in [0, 1).
 */
export function downloadSeconds(m: LossModel, random: () => number): number {
  const mss = m.segmentBytes ?? 1448
  const frame = m.frameSegments ?? 45
  const oneWay = m.rttS / 2
  const segments = Math.ceil(m.bytes / mss)
  const perSubflow: { sentS: number; segment: number }[][] = Array.from(
    { length: m.subflows },
    () => []
  )
  let k = 0
  for (let first = 0; first < segments; first += frame) {
    for (let c = 0; c < m.copies; c++) {
      const sub = ((first / frame) * m.copies + c) % m.subflows
      for (let i = first; i < Math.min(segments, first + frame); i++) {
        perSubflow[sub]!.push({ sentS: oneWay + (k * mss) / m.rateBytesPerS, segment: i })
        k++
      }
    }
  }
  const delivered = new Array<number>(segments).fill(Infinity)
  for (const list of perSubflow) {
    let inOrder = 0
    list.forEach((s, j) => {
      let t = s.sentS
      let tries = 0
      while (random() < m.loss) {
        const next = list[j + 1]
        t = tries === 0 && next !== undefined ? next.sentS + m.rttS : t + 2 * m.rttS
        tries++
      }
      inOrder = Math.max(inOrder, t + oneWay)
      delivered[s.segment] = Math.min(delivered[s.segment]!, inOrder)
    })
  }
  return Math.max(...delivered)
}

async function main(): Promise<number> {
  const args = await yargs(hideBin(process.argv))
    .scriptName('loss-model')
    .option('rtt', { type: 'number', default: 600, describe: 'link RTT, ms' })
    .option('loss', { type: 'number', default: 1, describe: 'random loss each way, %' })
    .option('rate', { type: 'number', default: 94, describe: 'goodput of the link, Mbit/s' })
    .option('bytes', { type: 'number', default: 1_000_000 })
    .option('target', { type: 'number', default: 1.0, describe: 'seconds' })
    .option('runs', { type: 'number', default: 2000 })
    .option('seed', { type: 'number', default: 1 })
    .option('arrangements', {
      type: 'string',
      default: '8x1,8x2,16x1,32x1,32x2,64x2,64x3,64x4,128x2',
      describe: 'SUBFLOWSxCOPIES, comma-separated'
    })
    .strict()
    .parse()
  const random = rng(args.seed) // the tests' seeded generator: a run can be made again
  process.stdout.write(
    `loss-model (a model, not a measurement): ${args.bytes} B at ${args.rtt} ms, ${args.loss} % loss, ${args.rate} Mbit/s, ${args.runs} downloads each\n` +
      `| subflows | copies of each frame | median s | downloads within ${args.target} s |\n|---:|---:|---:|---:|\n`
  )
  for (const a of args.arrangements.split(',')) {
    const [subflows, copies] = a.split('x').map(Number)
    if (
      subflows === undefined ||
      copies === undefined ||
      !(subflows >= 1 && copies >= 1 && copies <= subflows)
    ) {
      throw new Error(`--arrangements: ${a} is not SUBFLOWSxCOPIES with 1 <= COPIES <= SUBFLOWS`)
    }
    const m: LossModel = {
      bytes: args.bytes,
      rttS: args.rtt / 1000,
      loss: args.loss / 100,
      rateBytesPerS: (args.rate * 1e6) / 8,
      subflows,
      copies
    }
    const times = Array.from({ length: args.runs }, () => downloadSeconds(m, random))
    const within = times.filter((t) => t <= args.target).length / times.length
    process.stdout.write(
      `| ${subflows} | ${copies} | ${median(times).toFixed(2)} | ${(100 * within).toFixed(1)} % |\n`
    )
  }
  return 0
}

if (process.argv[1]?.endsWith('loss-model.js') === true) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`loss-model: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    }
  )
}
