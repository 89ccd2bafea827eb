/**
 * Helpers of the observability tests: an HTTP GET on loopback, `promtool check metrics` on a
 * scrape, and a Unix datagram receiver (python3) standing in for systemd's notify socket.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { request } from 'node:http'

/** GET `path` from 127.0.0.1:`port`: status code and body. */
export async function httpGet(
  port: number,
  path: string
): Promise<{ status: number; body: string }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** `promtool check metrics` on `text`: its exit status and what it printed. */
export function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  if (r.error) throw new Error(`promtool: ${r.error.message} (scripts/setup.sh installs it)`)
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() }
}

/** The sample lines of a scrape by metric name (with labels), e.g. `tandem_ready` → ['1']. */
export function samples(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (.+)$/.exec(line)
    if (!m) continue
    const list = out.get(m[1]!) ?? []
    list.push(`${m[2] ?? ''} ${m[3]!}`.trim())
    out.set(m[1]!, list)
  }
  return out
}

/** `# TYPE name kind` lines of a scrape. */
export function types(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2]!)
  return out
}

/** A datagram receiver bound to `address` ('/path' or '@abstract'), as systemd's notify socket. */
export interface DatagramReceiver {
  readonly child: ChildProcess
  /** Every datagram so far. */
  messages(): string[]
  /** Resolves when a datagram matches `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>
  close(): void
}

const RECEIVER = `
import json, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print('bound', flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps(data.decode()), flush=True)
`

/** Start a receiver and wait until it is bound. */
export async function datagramReceiver(address: string): Promise<DatagramReceiver> {
  const child = spawn('python3', ['-u', '-c', RECEIVER, address], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const messages: string[] = []
  const waiters: { re: RegExp; resolve: (m: string) => void }[] = []
  let bound: () => void = () => undefined
  const isBound = new Promise<void>((resolve) => (bound = resolve))
  let buffer = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d: string) => {
    buffer += d
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line === 'bound') {
        bound()
        continue
      }
      const m = JSON.parse(line) as string
      messages.push(m)
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.re.test(m)) waiters.splice(i, 1)[0]!.resolve(m)
      }
    }
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  await Promise.race([
    isBound,
    new Promise((_, reject) =>
      setTimeout(() => {
        reject(new Error(`datagram receiver did not bind ${address}: ${stderr}`))
      }, 5000)
    )
  ])
  return {
    child,
    messages: () => [...messages],
    waitFor: (re, timeoutMs = 15_000) => {
      const seen = messages.find((m) => re.test(m))
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          reject(
            new Error(
              `no datagram ${String(re)} within ${timeoutMs} ms; got ${JSON.stringify(messages)}`
            )
          )
        }, timeoutMs)
        waiters.push({
          re,
          resolve: (m) => {
            clearTimeout(t)
            resolve(m)
          }
        })
      })
    },
    close: () => {
      child.kill('SIGKILL')
    }
  }
}
