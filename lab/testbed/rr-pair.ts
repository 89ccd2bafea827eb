/**
 * The set-up the lab's short-download tools share (root only): the bench's impaired testbed, the
 * request/response server (`rr server`) in dst, and a pair of 8 subflows in static mode, torn
 * down on every exit path (SIGINT included). Its command-line options are LINK_OPTIONS.
 */
import type { Options } from 'yargs'

import { queryStatus, type ProxyStatus } from '../../src/app/control.js'
import {
  createImpairedTestbed,
  dist,
  startIn,
  type ImpairedTestbed,
  type NsProcess
} from './impaired.js'
import { configOverrides } from './overrides.js'

/** The options of every such tool: the link and configuration overrides. */
export const LINK_OPTIONS = {
  rtt: { type: 'number', default: 600, describe: 'link RTT, ms' },
  loss: { type: 'number', default: 1, describe: 'random loss each way, %' },
  rate: { type: 'number', default: 100, describe: 'link rate, Mbit/s' },
  set: {
    type: 'string',
    array: true,
    default: [] as string[],
    describe: 'KEY=VALUE configuration overrides (repeatable)'
  }
} as const satisfies Record<string, Options>

/** The parsed LINK_OPTIONS. */
export interface LinkArgs {
  readonly rtt: number
  readonly loss: number
  readonly rate: number
  readonly set: readonly string[]
}

/** The rr server's port in dst. */
export const RR_PORT = 5210

/** Start `rr server` in dst; resolves once it listens. */
export async function startRrServer(bed: ImpairedTestbed): Promise<NsProcess> {
  const server = startIn(
    bed.topo.ns.dst,
    [dist('tools/rr.js'), 'server', '--port', String(RR_PORT)],
    'rr-server'
  )
  await server.waitFor(/listening/)
  return server
}

/** What a tool gets inside `withRrPair`. */
export interface RrPair {
  readonly bed: ImpairedTestbed
  /** A proxy's `status --json`. */
  readonly status: (role: 'tx' | 'rx') => Promise<ProxyStatus>
  /** Stop this (a process the tool started) before the pair goes down. */
  readonly defer: (stop: () => Promise<void>) => void
}

/** Subflows of the pair. */
const SUBFLOWS = 8

/**
 * Build the testbed (namespaces `<prefix><pid>-N`), start the rr server and the pair with
 * `conf` and `--set` on top, wait until the trunk is connected and idle, run `body`, tear down.
 */
export async function withRrPair<T>(
  prefix: string,
  args: LinkArgs,
  conf: Readonly<Record<string, string>>,
  body: (pair: RrPair) => Promise<T>
): Promise<T> {
  const bed = await createImpairedTestbed(prefix, {
    rttMs: args.rtt,
    lossPercent: args.loss,
    rateMbit: args.rate
  })
  const stops: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop()
    await bed.destroy()
  }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))
  try {
    const server = await startRrServer(bed)
    stops.push(() => server.stop())
    const path = bed.config(prefix, {
      'tx_proxy.subflows': String(SUBFLOWS),
      'interception.transparent': 'false',
      ...conf,
      ...configOverrides(args.set)
    })
    const { tx, rx } = await bed.startProxies(path, SUBFLOWS)
    stops.push(
      () => rx.stop(),
      () => tx.stop()
    )
    await new Promise((r) => setTimeout(r, 2000)) // a warm trunk: connected and idle
    return await body({
      bed,
      status: (role) => queryStatus(bed.controlSocket(prefix, role)),
      defer: (stop) => {
        stops.push(stop)
      }
    })
  } finally {
    await cleanup()
  }
}
