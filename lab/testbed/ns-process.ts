/**
 * A process started inside a namespace, with its output collected and waited on: proxies,
 * `./receive`, `./stream` in the five-namespace tests.
 */
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { Netns } from './netns.js'
import { PROJECT_ROOT } from './topology.js'

/** A process with its output so far. */
export interface NsProcess {
  readonly child: ChildProcess
  output(): string
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  /** Resolves with the exit code once it exits. */
  exited(): Promise<number | null>
  /** SIGTERM, SIGKILL after 3 s. */
  stop(signal?: NodeJS.Signals): Promise<void>
}

/** Path of a built entry point, e.g. dist('tx-proxy/main.js'). */
export function dist(rel: string): string {
  return join(PROJECT_ROOT, 'dist', 'src', rel)
}

/** Path of a built test-bed program, e.g. labDist('link-emulator/main.js'). */
export function labDist(rel: string): string {
  return join(PROJECT_ROOT, 'dist', 'lab', rel)
}

/** Start `argv` (node is prefixed when argv[0] ends in .js) in `ns`. */
export function startIn(ns: Netns, argv: readonly string[], name = argv[0] ?? '?'): NsProcess {
  const full = argv[0]?.endsWith('.js') === true ? [process.execPath, ...argv] : [...argv]
  const child = ns.spawn(full)
  let text = ''
  const listeners = new Set<() => void>()
  const onText = (d: Buffer): void => {
    text += d.toString()
    if (process.env.TANDEM_TEST_VERBOSE)
      process.stderr.write(`[${name}@${ns.name}] ${d.toString()}`)
    for (const l of listeners) l()
  }
  child.stdout.on('data', onText)
  child.stderr.on('data', onText)
  const exit = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code)
    })
  })
  return {
    child,
    output: () => text,
    waitFor: (re, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          const m = re.exec(text)
          if (m) {
            listeners.delete(onCheck)
            clearTimeout(timer)
            resolve(m)
            return true
          }
          return false
        }
        const onCheck = (): void => {
          check()
        }
        const timer = setTimeout(() => {
          listeners.delete(onCheck)
          reject(new Error(`${name}: no ${String(re)} within ${timeoutMs} ms; output:\n${text}`))
        }, timeoutMs)
        if (!check()) listeners.add(onCheck)
      }),
    exited: () => exit,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill(signal)
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exit
      clearTimeout(t)
    }
  }
}

/** Run `argv` in `ns` to completion; resolves with exit code and output. */
export async function runIn(
  ns: Netns,
  argv: readonly string[],
  timeoutMs = 60_000
): Promise<{ code: number | null; output: string }> {
  const p = startIn(ns, argv)
  const t = setTimeout(() => {
    p.child.kill('SIGKILL')
  }, timeoutMs)
  const code = await p.exited()
  clearTimeout(t)
  return { code, output: p.output() }
}
