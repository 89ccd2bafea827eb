/** One transfer through Tandem, one plain TCP transfer, on the two-path testbed. */

import { queryStatus, type ProxyStatus } from '../../../src/app/control.js'
import { dist, type NsProcess } from '../../testbed/ns-process.js'
import {
  readReceiver,
  readStream,
  type DuplexReport,
  type StreamReport
} from '../../testbed/delivery.js'
import { pollUntil } from '../../testbed/faults.js'
import {
  TWO_PATH_ADDRESSES,
  type PathName,
  type TwoPathConfig,
  type TwoPathConfigOptions,
  type TwoPathTestbed
} from '../../testbed/two-path.js'
import { errorText } from './measure.js'

/** What a Tandem transfer left behind. */
export interface TandemTransfer {
  readonly conf: TwoPathConfig
  readonly report: DuplexReport
  readonly sent: StreamReport | undefined
  /** Why `./stream` failed (its error code and message), or undefined when it exited 0. */
  readonly streamFailure: string | undefined
  readonly accepted: number
  /** The proxies' status at the end; undefined when one no longer answers. */
  readonly txStatus: ProxyStatus | undefined
  readonly rxStatus: ProxyStatus | undefined
}

/** Handed to `during` while the stream runs. */
export interface TransferContext {
  readonly conf: TwoPathConfig
  readonly receiver: NsProcess
  readonly stream: NsProcess
  readonly rx: NsProcess
}

/** One line saying why `./stream` exited `code`. */
export function streamFailureText(code: number | null, sent: StreamReport | undefined): string {
  return sent?.error !== undefined
    ? `stream: ${sent.error.code}: ${sent.error.message}`
    : `stream exited ${code === null ? 'on a signal' : String(code)}`
}

/**
 * Proxies, the duplex receiver in dst and `./stream` in src for one transfer; `during` runs while
 * the stream does. A failed stream is reported (`streamFailure`), not thrown, as long as dst
 * reports its connection. Everything it started is stopped before it returns or throws.
 */
export async function tandemTransfer(
  bed: TwoPathTestbed,
  name: string,
  options: TwoPathConfigOptions,
  streamArgs: readonly string[],
  replyBytes: number,
  during?: (ctx: TransferContext) => Promise<void>
): Promise<TandemTransfer> {
  const conf = bed.config(name, options)
  const subflows = (options.paths ?? ['a', 'b']).length * (options.subflowsPerPath ?? 2)
  const procs: NsProcess[] = []
  try {
    const { tx, rx } = await bed.startProxies(conf, subflows)
    procs.push(rx, tx)
    const receiver = await bed.startReceiver(options.destinationPort, replyBytes)
    procs.push(receiver)
    const stream = bed.startStream(streamArgs)
    procs.push(stream)
    await during?.({ conf, receiver, stream, rx })
    const code = await stream.exited()
    const sent = readStream(stream)
    const streamFailure = code === 0 ? undefined : streamFailureText(code, sent)
    await pollUntil(
      'the receiver report',
      () => readReceiver(receiver).reports.length > 0,
      15_000
    ).catch((err: unknown) => {
      throw new Error(`${streamFailure ?? 'stream ok'}; ${errorText(err)}`)
    })
    const got = readReceiver(receiver)
    const report = got.reports[0]
    if (report === undefined) throw new Error('no receiver report')
    return {
      conf,
      report,
      sent,
      streamFailure,
      accepted: got.accepted,
      txStatus: await queryStatus(conf.txControl).catch(() => undefined),
      rxStatus: await queryStatus(conf.rxControl).catch(() => undefined)
    }
  } finally {
    // The next run binds the same ports: this run's processes go first, newest first.
    for (const p of procs.reverse()) await p.stop()
  }
}

/**
 * One plain TCP connection from the tx box to the rx box over `path` (their addresses on that
 * path), for `seconds`: the path's capacity as one TCP connection sees it. The end hosts route
 * over path a only, so the boxes are the ends here, for both paths alike.
 */
export async function tcpTransfer(
  bed: TwoPathTestbed,
  path: PathName,
  port: number,
  seconds: number,
  congestion: string
): Promise<{ report: DuplexReport; sent: StreamReport | undefined }> {
  const procs: NsProcess[] = []
  try {
    const receiver = bed.start(
      bed.ns.rx,
      [dist('tools/receive.js'), '--port', String(port), '--keep-listening', '--duplex'],
      `tcp-receiver:${path}`
    )
    procs.push(receiver)
    await receiver.waitFor(/listening on/)
    const stream = bed.start(
      bed.ns.tx,
      [
        dist('tools/stream.js'),
        TWO_PATH_ADDRESSES[path].peer,
        String(port),
        '--duration',
        String(seconds),
        '--congestion',
        congestion,
        '--timeout',
        String(seconds + 60),
        '--json',
        '--quiet'
      ],
      `tcp-stream:${path}`
    )
    procs.push(stream)
    const code = await stream.exited()
    if (code !== 0) throw new Error(streamFailureText(code, readStream(stream)))
    await pollUntil('the receiver report', () => readReceiver(receiver).reports.length > 0, 15_000)
    const report = readReceiver(receiver).reports[0]
    if (report === undefined) throw new Error('no receiver report')
    return { report, sent: readStream(stream) }
  } finally {
    for (const p of procs.reverse()) await p.stop()
  }
}
