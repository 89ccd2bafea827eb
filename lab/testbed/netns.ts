/**
 * Network namespaces for root-only tests: every namespace created here is deleted when its
 * test ends, when the process exits (also after an uncaught exception), and on SIGINT,
 * SIGTERM or SIGHUP. Namespaces left by a killed run (SIGKILL) are swept the next time a
 * namespace with the same prefix is created, once their owner process is gone.
 *
 * A Node process cannot switch namespaces, so everything inside one runs as a child through
 * `ip netns exec`.
 */
import {
  execFile,
  execFileSync,
  spawn,
  type ChildProcess,
  type ChildProcessByStdio
} from 'node:child_process'
import type { Readable } from 'node:stream'

/** Output of a command that exited with status 0. */
export interface ExecResult {
  /** Standard output, UTF-8. */
  readonly stdout: string
  /** Standard error, UTF-8. */
  readonly stderr: string
}

/** The part of node:test's TestContext (or a suite) used to register cleanup. */
export interface AfterHook {
  /** Registers `fn` to run when the test (or suite) ends, whether it passed or failed. */
  after(fn: () => void): void
}

/** A live namespace. */
export interface Netns {
  /** `${prefix}${pid}-${n}`, at most 15 characters so it can double as an interface name. */
  readonly name: string
  /** Runs `argv` inside the namespace; rejects with stdout/stderr in the message on failure. */
  exec(argv: readonly string[], timeoutMs?: number): Promise<ExecResult>
  /** Starts `argv` inside the namespace; it is killed when the namespace is destroyed. */
  spawn(argv: readonly string[]): ChildProcessByStdio<null, Readable, Readable>
  /** Kills the children and deletes the namespace. Idempotent. */
  destroy(): void
}

/** Longest name we hand out (IFNAMSIZ - 1), so names are usable as interface names too. */
const MAX_NAME_LENGTH = 15
/** Default limit for one command inside a namespace, milliseconds. */
const DEFAULT_EXEC_TIMEOUT_MS = 30_000

/**
 * Process-wide by necessity: the exit and signal handlers must find every namespace this
 * process created, whichever test created it (house style rule 7 allows no other module
 * state; this is a test helper with a process-lifetime resource).
 */
const live = new Map<string, Netns>()
let nextIndex = 1
let handlersInstalled = false

/** Why netns tests cannot run here, or undefined when they can (root and `ip netns` works). */
export function netnsUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) {
    return 'needs root (network namespaces and iptables)'
  }
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' })
    execFileSync('iptables', ['--version'], { stdio: 'ignore' })
  } catch {
    return '`ip netns` or `iptables` is not available'
  }
  return undefined
}

/** Runs `argv` inside namespace `ns` through `ip netns exec`. */
export function exec(
  ns: string,
  argv: readonly string[],
  timeoutMs: number = DEFAULT_EXEC_TIMEOUT_MS
): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, ...argv], timeoutMs)
}

/**
 * Creates a namespace named `${prefix}${process.pid}-${n}`. With `hook` (a TestContext or
 * suite), it is deleted when that test ends; in any case it is deleted at process exit.
 */
export function createNetns(prefix: string, hook?: AfterHook): Netns {
  installHandlers()
  sweepStale(prefix)
  const name = `${prefix}${process.pid}-${nextIndex++}`
  if (name.length > MAX_NAME_LENGTH) {
    throw new Error(`namespace name ${name} is longer than ${MAX_NAME_LENGTH}: shorten the prefix`)
  }
  execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'ignore', 'pipe'] })
  const children = new Set<ChildProcess>()
  let destroyed = false
  const ns: Netns = {
    name,
    exec: (argv, timeoutMs) => exec(name, argv, timeoutMs),
    spawn: (argv) => {
      const child = spawn('ip', ['netns', 'exec', name, ...argv], {
        stdio: ['ignore', 'pipe', 'pipe']
      })
      children.add(child)
      child.on('exit', () => children.delete(child))
      return child
    },
    destroy: () => {
      if (destroyed) {
        return
      }
      destroyed = true
      live.delete(name)
      for (const child of children) {
        // `ip netns exec` execs the command, so this is the command's own pid.
        child.kill('SIGKILL')
      }
      deleteNamespace(name)
    }
  }
  live.set(name, ns)
  hook?.after(() => {
    ns.destroy()
  })
  return ns
}

/** Deletes every namespace still alive (the exit and signal paths). */
export function destroyAllNetns(): void {
  for (const ns of [...live.values()]) {
    ns.destroy()
  }
}

function deleteNamespace(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
  } catch {
    // Already gone: nothing to clean.
  }
}

function onSignal(signal: NodeJS.Signals): void {
  destroyAllNetns()
  // Re-raise with the default action so the exit status still says "killed by signal".
  process.removeListener(signal, onSignal)
  process.kill(process.pid, signal)
}

function installHandlers(): void {
  if (handlersInstalled) {
    return
  }
  handlersInstalled = true
  process.on('exit', destroyAllNetns)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, onSignal)
  }
}

/** Deletes `${prefix}<pid>-<n>` namespaces whose creating process no longer exists. */
function sweepStale(prefix: string): void {
  let listing: string
  try {
    listing = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  } catch {
    return
  }
  const pattern = new RegExp(`^${escapeRegExp(prefix)}(\\d+)-\\d+$`)
  for (const line of listing.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const match = pattern.exec(name)
    if (match?.[1] !== undefined && !processExists(Number(match[1]))) {
      deleteNamespace(name)
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

function run(file: string, args: readonly string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) {
        reject(
          new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`, {
            cause: err
          })
        )
        return
      }
      resolve({ stdout, stderr })
    })
  })
}

/** Interfaces of `ns` other than lo (for turning offloads off on each). */
export async function interfacesOf(ns: Netns): Promise<string[]> {
  const r = await ns.exec(['ip', '-o', 'link', 'show'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'lo')
}
