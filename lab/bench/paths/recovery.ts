/** Figure 1 of the path benchmark: recovery after a subflow or a path is killed. */
import { setTimeout as sleep } from 'node:timers/promises'

import { queryStatus } from '../../../src/app/control.js'
import { readReceiver, slopeMbit } from '../../testbed/delivery.js'
import {
  blackHole,
  FaultLedger,
  injectReset,
  pollUntil,
  sleepUntil,
  ssKill,
  subflowSockets,
  wallMs,
  type ActiveFault
} from '../../testbed/faults.js'
import {
  TWO_PATH_ADDRESSES,
  TWO_PATH_RX_PORT,
  type PathImpairment,
  type PathName,
  type TwoPathTestbed
} from '../../testbed/two-path.js'
import {
  GAP_WINDOW_MS,
  linkText,
  longestStall,
  MiB,
  recoveryMs,
  round,
  stallsOf,
  SUBFLOWS_PER_PATH,
  traceOf,
  errorText
} from './measure.js'
import type {
  PathLinks,
  RecoveryDefinition,
  RecoveryKill,
  RecoveryKillMethod,
  RecoveryResult,
  TransferCheck
} from './results.js'
import { tandemTransfer } from './transfer.js'

/** One planned fault of figure 1. */
interface KillStep {
  readonly method: RecoveryKillMethod
  /** When, ms after the first byte at dst. */
  readonly atMs: number
  /** Black hole: how long it is held, ms. */
  readonly holdMs: number
}

const RECOVERY_LINK: PathImpairment = { delayMs: 50, rateMbit: 40 }
const RECOVERY_DEFINITION: RecoveryDefinition = {
  preWindowMs: 3000,
  threshold: 0.9,
  windowMs: 1000,
  windows: 2,
  maxStallMs: 300
}
const PING_INTERVAL_MS = 500
const PING_TIMEOUT_MS = 2500
/**
 * An injected reset: the REJECT rule is lifted once tx_proxy has noticed (at most this long, ms).
 * Left in place it would also swallow the tx kernel's RSTs to rx_proxy's end of the subflow,
 * which then stays half-open until rx_proxy's ping timeout: a black hole for that subflow's
 * return direction, not the single reset the row is about.
 */
const RESET_RULE_MAX_MS = 1000
/**
 * A flow that delivers nothing this long is ended (rx_proxy killed, so dst sees a reset and
 * reports what it got) rather than waited on until the stream's own timeout, ms.
 */
const STALL_ABORT_MS = 10_000

export async function recoveryFigure(
  bed: TwoPathTestbed,
  quick: boolean,
  congestion: string,
  log: (line: string) => void
): Promise<RecoveryResult> {
  const links: PathLinks = { a: RECOVERY_LINK, b: RECOVERY_LINK }
  // Each kill gets the time until the next one to recover in; the black hole comes last, is
  // held long enough for detection (ping timeout) plus the recovery windows, then lifted.
  const plan: readonly KillStep[] = quick
    ? [
        { method: 'ss-kill', atMs: 5000, holdMs: 0 },
        { method: 'black-hole', atMs: 11_000, holdMs: 7000 }
      ]
    : [
        { method: 'ss-kill', atMs: 7000, holdMs: 0 },
        { method: 'rst-inject', atMs: 14_000, holdMs: 0 },
        { method: 'black-hole', atMs: 21_000, holdMs: 8000 }
      ]
  const last = plan[plan.length - 1]
  const durationS = Math.ceil(((last?.atMs ?? 0) + (last?.holdMs ?? 0)) / 1000) + 3
  const base = {
    links,
    subflowsPerPath: SUBFLOWS_PER_PATH,
    congestion,
    pingIntervalMs: PING_INTERVAL_MS,
    pingTimeoutMs: PING_TIMEOUT_MS,
    durationS,
    definition: RECOVERY_DEFINITION
  }
  log(`recovery: ${linkText('a', links.a)}; ${linkText('b', links.b)}; ${durationS} s transfer`)
  const emulators = [await bed.impair('a', links.a), await bed.impair('b', links.b)]
  const faults = new FaultLedger()
  interface Raw {
    readonly step: KillStep
    readonly fault: ActiveFault
    readonly path: PathName
    readonly at: number
    readonly horizonEnd: number
    readonly detected: Promise<number | null>
  }
  const raws: Raw[] = []
  let aborted: string | undefined
  try {
    const t = await tandemTransfer(
      bed,
      'recovery',
      {
        destinationPort: 5601,
        subflowsPerPath: SUBFLOWS_PER_PATH,
        overrides: {
          'trunk.congestion': congestion,
          // The defaults, written out so the result states what was used.
          'trunk.ping_interval_ms': String(PING_INTERVAL_MS),
          'trunk.ping_timeout_ms': String(PING_TIMEOUT_MS)
        }
      },
      ['--duration', String(durationS), '--timeout', String(durationS + 90)],
      MiB,
      async ({ conf, receiver, stream, rx }) => {
        await pollUntil(
          'first bytes at dst',
          () => readReceiver(receiver).receivedBytes > 0,
          30_000
        )
        const firstAt = wallMs()
        const watchdog = (async (): Promise<void> => {
          let bytes = readReceiver(receiver).receivedBytes
          let movedAt = wallMs()
          while (stream.child.exitCode === null && stream.child.signalCode === null) {
            await sleep(250)
            const now = readReceiver(receiver).receivedBytes
            if (now !== bytes || readReceiver(receiver).reports.length > 0) {
              bytes = now
              movedAt = wallMs()
            } else if (wallMs() - movedAt > STALL_ABORT_MS) {
              aborted =
                `flow stalled: nothing delivered for ${STALL_ABORT_MS / 1000} s from ` +
                `+${((movedAt - firstAt) / 1000).toFixed(1)} s; run ended`
              log(`recovery: ${aborted}`)
              await rx.stop('SIGKILL')
              await stream.stop()
              return
            }
          }
        })()
        const lost = async (): Promise<number> =>
          (await queryStatus(conf.txControl)).counters.subflows_lost ?? 0
        for (const [i, step] of plan.entries()) {
          await sleepUntil(firstAt + step.atMs)
          if (aborted !== undefined) break
          const next = plan[i + 1]
          const horizonEnd =
            firstAt + (step.holdMs > 0 ? step.atMs + step.holdMs : (next?.atMs ?? durationS * 1000))
          const sockets = await subflowSockets(bed.ns.tx, TWO_PATH_RX_PORT)
          // The busiest subflow (most bytes unacknowledged), so that the kill hits data.
          const victim = [...sockets].sort((x, y) => y.sendQueue - x.sendQueue)[0]
          const path: PathName =
            step.method === 'black-hole' || victim?.localAddress === TWO_PATH_ADDRESSES.b.local
              ? 'b'
              : 'a'
          const lostBefore = await lost()
          const at = wallMs()
          let fault: ActiveFault
          switch (step.method) {
            case 'ss-kill':
            case 'rst-inject':
              if (victim === undefined) throw new Error('no subflow socket to kill')
              fault =
                step.method === 'ss-kill'
                  ? await ssKill(bed.ns.tx, victim)
                  : await injectReset(bed.ns.tx, victim)
              break
            case 'black-hole':
              fault = await blackHole(bed.wanOf('b'))
              break
          }
          faults.add(fault)
          log(`recovery: ${fault.description} at +${((at - firstAt) / 1000).toFixed(1)} s`)
          const detected = pollUntil(
            `tx_proxy noticing ${fault.description}`,
            async () => (await lost()) > lostBefore,
            horizonEnd - at,
            50
          ).then(
            () => round(wallMs() - at, 0),
            () => null
          )
          raws.push({ step, fault, path, at, horizonEnd, detected })
          if (step.method === 'rst-inject') {
            await Promise.race([detected, sleep(RESET_RULE_MAX_MS)])
            await fault.restore()
          } else if (step.holdMs > 0) {
            await sleepUntil(at + step.holdMs)
            await fault.restore()
            log(`recovery: ${fault.description} lifted`)
          }
        }
        await watchdog
      }
    )
    const { report, sent } = t
    const samples = report.samples
    const stalls = stallsOf(samples)
    const kills: RecoveryKill[] = []
    for (const r of raws) {
      const share = r.step.method === 'black-hole' ? 0.5 : 1
      const pre = slopeMbit(samples, r.at - RECOVERY_DEFINITION.preWindowMs, r.at)
      const target = RECOVERY_DEFINITION.threshold * pre * share
      const rec = recoveryMs(samples, r.at, r.horizonEnd, target, RECOVERY_DEFINITION)
      kills.push({
        method: r.step.method,
        description: r.fault.description,
        path: r.path,
        atMs: round(r.at - report.firstByteAt, 0),
        heldMs: r.step.holdMs,
        detectedMs: await r.detected,
        survivingShare: share,
        preRateMbit: round(pre),
        targetMbit: round(target),
        maxGapMs: round(longestStall(stalls, r.at, r.at + GAP_WINDOW_MS), 0),
        recoveryMs: rec === null ? null : round(rec, 0),
        horizonMs: round(r.horizonEnd - r.at, 0),
        traceMbit: traceOf(samples, r.at - 1000, r.horizonEnd)
      })
    }
    const resent = (t.txStatus?.totals.resentBytes ?? 0) + (t.rxStatus?.totals.resentBytes ?? 0)
    const transfer: TransferCheck = {
      bytes: report.receivedBytes,
      sha256Equal:
        sent?.sentBytes === report.receivedBytes && sent.sentSha256 === report.receivedSha256,
      replySha256Equal:
        sent?.replyBytes === report.replyBytes && sent.replySha256 === report.replySha256,
      destinationConnections: Math.max(t.accepted, t.rxStatus?.counters.connects ?? 0),
      ending: report.ending,
      maxGapMs: round(report.maxGapMs, 0),
      resentMiB: round(resent / MiB),
      failure: aborted ?? t.streamFailure ?? null
    }
    for (const k of kills) {
      log(
        `recovery: ${k.method}: gap ${k.maxGapMs} ms, ${k.recoveryMs ?? '-'} ms to ${k.targetMbit} Mbit/s ` +
          `(from ${k.preRateMbit}), detected ${k.detectedMs ?? '-'} ms`
      )
    }
    return { ...base, kills, transfer }
  } catch (err) {
    log(`recovery: failed: ${errorText(err)}`)
    return { ...base, kills: [], transfer: null, error: errorText(err) }
  } finally {
    await faults.restoreAll()
    for (const e of emulators) await e.stop()
  }
}
