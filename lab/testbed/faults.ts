/**
 * Faults for the two-path testbed and the polling helpers the netns tests and the path
 * benchmark measure with.
 *
 * Ways to kill one subflow (or a whole path) from outside the proxies, each undone by
 * `restore()`. Kill methods, from loudest to quietest:
 * - `ss-kill`: `ss -K` on the subflow's socket in the tx box (SOCK_DESTROY: the local socket
 *   fails with ECONNABORTED and the peer gets a RST).
 * - `rst-inject`: an iptables rule in the tx box answers the subflow's next outgoing segment
 *   with a TCP reset (REJECT --reject-with tcp-reset in OUTPUT resets the local socket).
 *   The rule stays until `restore()`, so a reset subflow cannot come back on the same port.
 * - `silent-drop`: the subflow's packets are dropped both ways in its path's wan box
 *   (FORWARD): neither end hears anything, only the proxies' ping timeout finds out.
 * - `link-down`: `ip link set DEV down` on the tx box's interface of the path (every subflow
 *   of that path loses its link; nothing is signalled to the sockets) and up on restore.
 * Subflow stats in the proxies' status carry no ports: sockets are found with `ss` in the tx
 * box (established connections to rx_proxy's port).
 */
import { setTimeout as sleep } from 'node:timers/promises'

import { wallMs } from '../../src/tools/harness.js'
import type { Netns } from './netns.js'

export { wallMs }

/** The four ways to kill a subflow, in the order the resilience test rotates them. */
export const KILL_METHODS = ['ss-kill', 'rst-inject', 'silent-drop', 'link-down'] as const
/** One kill method. */
export type KillMethod = (typeof KILL_METHODS)[number]

/** One subflow's TCP connection as the tx box sees it. */
export interface SubflowSocket {
  readonly localAddress: string
  readonly localPort: number
  readonly peerAddress: string
  readonly peerPort: number
  /** Bytes sent and not yet acknowledged (ss's Send-Q): non-zero while it carries data. */
  readonly sendQueue: number
}

/** A fault in place. */
export interface ActiveFault {
  readonly method: KillMethod | 'black-hole'
  /** One line for logs: what was hit, and how. */
  readonly description: string
  /** Undo it (rules removed, link up). Idempotent. */
  restore(): Promise<void>
}

/** Established connections from `ns` to `peerPort` (the subflows when `ns` is the tx box). */
export async function subflowSockets(ns: Netns, peerPort: number): Promise<SubflowSocket[]> {
  const r = await ns.exec(['ss', '-tnH', 'state', 'established', `( dport = :${peerPort} )`])
  const out: SubflowSocket[] = []
  for (const line of r.stdout.split('\n')) {
    // Recv-Q Send-Q Local:Port Peer:Port (state is left out when one is asked for)
    const cols = line.trim().split(/\s+/)
    const local = /^(.*):(\d+)$/.exec(cols[2] ?? '')
    const peer = /^(.*):(\d+)$/.exec(cols[3] ?? '')
    if (local === null || peer === null) continue
    out.push({
      localAddress: local[1]!.replace(/^\[?::ffff:/, '').replace(/\]$/, ''),
      localPort: Number(local[2]),
      peerAddress: peer[1]!.replace(/^\[?::ffff:/, '').replace(/\]$/, ''),
      peerPort: Number(peer[2]),
      sendQueue: Number(cols[1] ?? 0)
    })
  }
  return out
}

/** Runs each undo step once, in reverse order; keeps going past a failing step. */
function undoable(
  method: ActiveFault['method'],
  description: string,
  steps: (() => Promise<unknown>)[]
): ActiveFault {
  let restored = false
  return {
    method,
    description,
    async restore() {
      if (restored) return
      restored = true
      const errors: unknown[] = []
      for (const step of [...steps].reverse()) {
        try {
          await step()
        } catch (err) {
          errors.push(err)
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, `restoring ${description} failed`)
    }
  }
}

/** Inserts iptables `rule` (filter table) in `ns`; returns the step that deletes it. */
async function insertRule(
  ns: Netns,
  chain: string,
  rule: readonly string[]
): Promise<() => Promise<unknown>> {
  await ns.exec(['iptables', '-w', '-I', chain, ...rule])
  return () => ns.exec(['iptables', '-w', '-D', chain, ...rule])
}

/** (a) `ss -K` the subflow's socket in `txBox`. Nothing to restore. */
export async function ssKill(txBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  await txBox.exec([
    'ss',
    '-K',
    'dst',
    s.peerAddress,
    'dport',
    '=',
    `:${s.peerPort}`,
    'sport',
    '=',
    `:${s.localPort}`
  ])
  return undoable('ss-kill', `ss -K :${s.localPort} -> ${s.peerAddress}`, [])
}

/** (b) A TCP reset for the subflow's next segment, from an iptables rule in `txBox`. */
export async function injectReset(txBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  const rule = [
    '-p',
    'tcp',
    '-s',
    s.localAddress,
    '--sport',
    String(s.localPort),
    '-d',
    s.peerAddress,
    '--dport',
    String(s.peerPort),
    '-j',
    'REJECT',
    '--reject-with',
    'tcp-reset'
  ]
  const del = await insertRule(txBox, 'OUTPUT', rule)
  return undoable('rst-inject', `REJECT tcp-reset :${s.localPort} -> ${s.peerAddress}`, [del])
}

/** (c) Every packet of the subflow dropped, both ways, in its path's wan box (bridged: FORWARD). */
export async function silentDrop(wanBox: Netns, s: SubflowSocket): Promise<ActiveFault> {
  const out = ['-p', 'tcp', '--sport', String(s.localPort), '-j', 'DROP']
  const back = ['-p', 'tcp', '--dport', String(s.localPort), '-j', 'DROP']
  const steps = [await insertRule(wanBox, 'FORWARD', out)]
  steps.push(await insertRule(wanBox, 'FORWARD', back))
  return undoable(
    'silent-drop',
    `DROP :${s.localPort} <-> ${s.peerAddress} in ${wanBox.name}`,
    steps
  )
}

/** (d) `ip link set dev down` in `ns`; up again on restore. */
export async function linkDown(ns: Netns, dev: string): Promise<ActiveFault> {
  await ns.exec(['ip', 'link', 'set', 'dev', dev, 'down'])
  return undoable('link-down', `link ${dev} down in ${ns.name}`, [
    () => ns.exec(['ip', 'link', 'set', 'dev', dev, 'up'])
  ])
}

/** Every packet crossing `wanBox`'s bridge dropped, both ways, until restore. */
export async function blackHole(wanBox: Netns): Promise<ActiveFault> {
  const del = await insertRule(wanBox, 'FORWARD', ['-j', 'DROP'])
  return undoable('black-hole', `black hole in ${wanBox.name}`, [del])
}

/**
 * Keeps every fault a test made, so that an `after` hook can restore what an assertion left in
 * place (a failing test must not leave a path cut for the next one).
 */
export class FaultLedger {
  private readonly faults: ActiveFault[] = []

  /** Record `fault` and return it. */
  add(fault: ActiveFault): ActiveFault {
    this.faults.push(fault)
    return fault
  }

  /** Restore everything still in place (idempotent per fault), newest first. */
  async restoreAll(): Promise<void> {
    while (this.faults.length > 0) await this.faults.pop()?.restore()
  }
}

/**
 * Polls `check` every `intervalMs` until it returns true; resolves with the milliseconds it
 * took. Rejects after `timeoutMs` with `what` in the message. No fixed sleeps: a test waits
 * exactly as long as the condition needs.
 */
export async function pollUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 25
): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    const elapsed = performance.now() - started
    if (elapsed > timeoutMs) {
      throw new Error(`${what}: not within ${timeoutMs} ms`)
    }
    await sleep(Math.min(intervalMs, Math.max(1, timeoutMs - elapsed)))
  }
}

/** Resolves at wall-clock time `atMs` (`wallMs()` scale); at once if it has passed. */
export async function sleepUntil(atMs: number): Promise<void> {
  const wait = atMs - wallMs()
  if (wait > 0) await sleep(wait)
}
