/**
 * Real tx_proxy and rx_proxy processes on loopback, for integration tests: started with free
 * ports, waited for until the trunk is up, stopped (SIGKILL as a last resort) on every path.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Project root (this file is dist/test/helpers/proxies.js once built). */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

/** The kernel's ephemeral range (bind to port 0 and connect() take their ports from it). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
    if (lo !== undefined && hi !== undefined && lo > 0 && hi >= lo) return [lo, hi]
  } catch {
    // Not Linux, or no /proc: the kernel default.
  }
  return [32768, 60999]
}

/** Ports this process handed out: never the same one twice. */
const handedOut = new Set<number>()

/** Try to listen on 127.0.0.1:`port`; true if it was free (the listener is closed again). */
async function portFree(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => {
      resolve(false)
    })
    s.listen(port, '127.0.0.1', () => {
      s.close(() => {
        resolve(true)
      })
    })
  })
}

/** A port from listen(0): free right now, but from the ephemeral range. */
async function anyFreePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a !== null ? a.port : 0
      s.close(() => {
        resolve(port)
      })
    })
  })
}

/**
 * A port free right now on 127.0.0.1, chosen outside the kernel's ephemeral range: a port from
 * `listen(0)` is free again once closed, so another socket's bind or connect may take it before
 * the test listens there (a "peer that is not there yet" then answered). Outside that range only
 * an explicit bind takes a port, and this process hands each one out once.
 */
export async function freePort(): Promise<number> {
  const [lo, hi] = ephemeralRange()
  // Below the range if there is room (10000 up), else above it.
  const [from, to] = lo - 10_000 >= 1000 ? [10_000, lo - 1] : [hi + 1, 65_535]
  if (from > to) return await anyFreePort()
  for (let tries = 0; tries < 1000; tries++) {
    const port = from + Math.floor(Math.random() * (to - from + 1))
    if (handedOut.has(port)) continue
    handedOut.add(port)
    if (await portFree(port)) return port
  }
  throw new Error(`no free port in ${from}-${to} on 127.0.0.1`)
}

/** The pre-shared key of the test pairs (any 32 bytes; both ends must agree). */
export const TEST_PSK = '5a'.repeat(32)

/** A spawned proxy with its collected log. */
export interface ProxyProcess {
  readonly child: ChildProcess
  /** Everything it wrote to stderr so far. */
  log(): string
  /** Resident set size now, in bytes. */
  rssBytes(): number
  /** Resolves when a log line matches `re` (count times). */
  waitFor(re: RegExp, count?: number, timeoutMs?: number): Promise<void>
  /** SIGTERM, then SIGKILL after 3 s. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL')
})

/** Spawn `dist/src/<role>/main.js` with `args` (and `env` added to the environment). */
export function spawnProxy(
  role: 'tx-proxy' | 'rx-proxy',
  args: readonly string[],
  env: Readonly<Record<string, string>> = {}
): ProxyProcess {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'src', role, 'main.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
    env: { ...process.env, ...env }
  })
  live.add(child)
  let text = ''
  const waiters: { re: RegExp; count: number; resolve: () => void }[] = []
  const check = (): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!
      const matches = text.split('\n').filter((l) => w.re.test(l)).length
      if (matches >= w.count) {
        waiters.splice(i, 1)
        w.resolve()
      }
    }
  }
  child.stderr?.on('data', (d: Buffer) => {
    text += d.toString()
    if (process.env.TANDEM_TEST_VERBOSE) process.stderr.write(`[${role}] ${d.toString()}`)
    check()
  })
  child.stdout?.on('data', (d: Buffer) => {
    text += d.toString()
  })
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      live.delete(child)
      resolve()
    })
  })
  return {
    child,
    log: () => text,
    rssBytes: () => {
      const status = readFileSync(`/proc/${child.pid ?? 0}/status`, 'utf8')
      const m = /VmRSS:\s+(\d+) kB/.exec(status)
      return m ? Number(m[1]) * 1024 : 0
    },
    waitFor: (re, count = 1, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          reject(
            new Error(`${role}: no ${count}× ${String(re)} within ${timeoutMs} ms; log:\n${text}`)
          )
        }, timeoutMs)
        waiters.push({
          re,
          count,
          resolve: () => {
            clearTimeout(t)
            resolve()
          }
        })
        check()
      }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(t)
    }
  }
}

/** Logs of the last pair that failed to come up (tests of refused handshakes read them). */
export let lastFailedPair: { tx: string; rx: string } | undefined

/** A tx/rx pair on loopback. */
export interface ProxyPair {
  readonly tx: ProxyProcess
  readonly rx: ProxyProcess
  /** Port clients connect to (tx_proxy's listener). */
  readonly txPort: number
  readonly rxPort: number
  /** Control socket paths, for `status`. */
  readonly txControl: string
  readonly rxControl: string
  /** Spawn rx_proxy again with the same arguments (after the test killed it). */
  restartRx(): ProxyProcess
  stop(): Promise<void>
}

/** Start rx_proxy, then tx_proxy in static mode towards `destinationPort`, and wait for the trunk. */
export async function startPair(opts: {
  readonly destinationPort: number
  readonly subflows?: number
  /** network.conf both proxies read (default: none). */
  readonly config?: string
  readonly extra?: readonly string[]
  readonly rxExtra?: readonly string[]
  readonly txExtra?: readonly string[]
  /** How long to wait for the subflows, in ms. */
  readonly waitMs?: number
  /** tx_proxy's static destination (default `127.0.0.1:destinationPort`). */
  readonly destination?: string
  /** rx_proxy.allow_loopback (default true: the destinations are on loopback). */
  readonly allowLoopback?: boolean
  /** Where tx_proxy listens for clients (default 127.0.0.1). */
  readonly txLocalIp?: string
}): Promise<ProxyPair> {
  const rxPort = await freePort()
  const txPort = await freePort()
  const subflows = opts.subflows ?? 4
  const dir = mkdtempSync(join(tmpdir(), 'tandem-test-'))
  const rxControl = join(dir, 'rx.sock')
  const txControl = join(dir, 'tx.sock')
  const common = [
    '-c',
    opts.config ?? '/dev/null',
    '--set',
    `security.psk=${TEST_PSK}`,
    // The loopback tests' destinations are on 127.0.0.1, which rx_proxy refuses unless told.
    ...(opts.allowLoopback === false ? [] : ['--set', 'rx_proxy.allow_loopback=true']),
    '--set',
    `rx_proxy.control_socket=${rxControl}`,
    '--set',
    `tx_proxy.control_socket=${txControl}`,
    ...(opts.extra ?? [])
  ]
  const rxArgs = [
    ...common,
    '--recv-ip',
    '127.0.0.1',
    '--recv-port',
    String(rxPort),
    ...(opts.rxExtra ?? [])
  ]
  let rx = spawnProxy('rx-proxy', rxArgs)
  try {
    await rx.waitFor(/listening on/)
  } catch (err) {
    await rx.stop()
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const tx = spawnProxy('tx-proxy', [
    ...common,
    '--local-ip',
    opts.txLocalIp ?? '127.0.0.1',
    '--local-port',
    String(txPort),
    '--rx-proxy-ip',
    '127.0.0.1',
    '--rx-proxy-port',
    String(rxPort),
    '--destination',
    opts.destination ?? `127.0.0.1:${opts.destinationPort}`,
    '--subflows',
    String(subflows),
    ...(opts.txExtra ?? [])
  ])
  try {
    await tx.waitFor(/subflow up/, subflows, opts.waitMs ?? 10_000)
  } catch (err) {
    await tx.stop()
    await rx.stop()
    rmSync(dir, { recursive: true, force: true })
    lastFailedPair = { tx: tx.log(), rx: rx.log() }
    throw err
  }
  return {
    tx,
    get rx() {
      return rx
    },
    restartRx: () => {
      rx = spawnProxy('rx-proxy', rxArgs)
      return rx
    },
    txPort,
    rxPort,
    txControl,
    rxControl,
    stop: async () => {
      await tx.stop()
      await rx.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
