/**
 * The local control socket: a running proxy answers `status` with a JSON snapshot, which
 * `./tx_proxy status` and `./rx_proxy status` print (human table, --json, --watch). A Unix
 * socket, so only local users with access to its path can ask.
 */
import { mkdirSync, rmSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { dirname } from 'node:path'
import type { FlowTotals, TrunkStatus } from '../trunk/status.js'

export type { FlowStatus, SubflowStatus, TrunkStatus } from '../trunk/status.js'

/** What `status` answers. */
export interface ProxyStatus {
  readonly role: 'tx_proxy' | 'rx_proxy'
  readonly pid: number
  readonly uptimeMs: number
  readonly bufferedBytes: number
  readonly maxBufferedBytes: number
  readonly trunks: readonly TrunkStatus[]
  /** Sums over every flow, closed and live. */
  readonly totals: FlowTotals
  readonly counters: Readonly<Record<string, number>>
  readonly interception?: unknown
}

/** Serve `status` on `path`. Returns the server (close it on stop). */
export async function serveControl(path: string, status: () => ProxyStatus): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true })
  rmSync(path, { force: true })
  const server = createServer((socket) => {
    socket.setEncoding('utf8')
    let request = ''
    socket.on('data', (d: string) => {
      request += d
      if (!request.includes('\n')) {
        if (request.length > 64) socket.destroy()
        return
      }
      const verb = request.trim()
      if (verb === 'status') socket.end(`${JSON.stringify(status())}\n`)
      else socket.end(`${JSON.stringify({ error: `unknown request ${verb.slice(0, 32)}` })}\n`)
    })
    socket.on('error', () => undefined)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

/** Ask the proxy at `path` for its status. Rejects with a one-line Error. */
export async function queryStatus(path: string, timeoutMs = 3000): Promise<ProxyStatus> {
  return await new Promise((resolve, reject) => {
    const socket = connect(path)
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.setEncoding('utf8')
    socket.on('connect', () => socket.write('status\n'))
    socket.on('data', (d: string) => (text += d))
    socket.on('end', () => {
      clearTimeout(timer)
      try {
        resolve(JSON.parse(text) as ProxyStatus)
      } catch {
        reject(new Error(`bad answer from ${path}`))
      }
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(
        new Error(`cannot reach the proxy at ${path}: ${err.code ?? err.message} (is it running?)`)
      )
    })
  })
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

/** The human status screen. */
export function formatStatus(s: ProxyStatus): string {
  const lines: string[] = []
  lines.push(
    `${s.role} pid ${s.pid}, up ${(s.uptimeMs / 1000).toFixed(0)} s, buffered ${human(s.bufferedBytes)} of ${human(s.maxBufferedBytes)}`
  )
  lines.push(
    `carried: ${human(s.totals.bytesFromApp)} from applications, ${human(s.totals.bytesToApp)} to applications, ${human(s.totals.resentBytes)} re-sent`
  )
  for (const t of s.trunks) {
    lines.push(`trunk ${t.id.slice(0, 16)}: ${t.subflows.length} subflow(s), ${t.flows} flow(s)`)
    lines.push('  subflow  path  rtt ms    queued       sent   received')
    for (const f of t.subflows) {
      lines.push(
        `  ${String(f.index).padStart(7)}  ${String(f.pathId).padStart(4)}  ${f.srttMs.toFixed(1).padStart(6)}  ${human(f.queuedBytes).padStart(8)}  ${human(f.bytesSent).padStart(9)}  ${human(f.bytesReceived).padStart(9)}`
      )
    }
    if (t.topFlows.length > 0) {
      lines.push('  flow         state          from app     to app    resent    age s')
      for (const f of t.topFlows) {
        lines.push(
          `  ${String(f.id).padEnd(11)}  ${f.state.padEnd(11)}  ${human(f.bytesFromApp).padStart(9)}  ${human(f.bytesToApp).padStart(9)}  ${human(f.resentBytes).padStart(8)}  ${(f.ageMs / 1000).toFixed(1).padStart(7)}`
        )
      }
    }
  }
  const interesting = Object.entries(s.counters).filter(([, v]) => v !== 0)
  if (interesting.length > 0) {
    lines.push('counters:')
    for (const [k, v] of interesting) lines.push(`  ${k} ${v}`)
  }
  return lines.join('\n')
}

/** Totals over closed flows (counters) plus live ones. */
export function combineTotals(
  counters: Readonly<Record<string, number>>,
  live: readonly ProxyStatus['totals'][]
): ProxyStatus['totals'] {
  const sum = (k: keyof ProxyStatus['totals']): number => live.reduce((n, t) => n + t[k], 0)
  return {
    bytesFromApp: (counters.bytes_from_app ?? 0) + sum('bytesFromApp'),
    bytesToApp: (counters.bytes_to_app ?? 0) + sum('bytesToApp'),
    reorderBytes: sum('reorderBytes'),
    sendBufferedBytes: sum('sendBufferedBytes'),
    duplicateBytes: (counters.duplicate_bytes ?? 0) + sum('duplicateBytes'),
    resentBytes: (counters.flow_bytes_resent ?? 0) + sum('resentBytes'),
    creditStalls: (counters.credit_stalls ?? 0) + sum('creditStalls')
  }
}
