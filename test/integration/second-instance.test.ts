/**
 * A second instance never breaks the first: it leaves a live control socket alone and stops
 * with exit status 2 and one line; a port that is taken is reported with the network.conf key
 * that holds it (recv_port, local_port, metrics_listen). A leftover socket file is replaced.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { queryStatus } from '../../src/app/control.js'
import { freePort, ROOT, spawnProxy, TEST_PSK, type ProxyProcess } from '../helpers/proxies.js'

const RX = 'dist/src/rx-proxy/main.js'
const TX = 'dist/src/tx-proxy/main.js'

/** Run a proxy that should refuse to start; kill it after 8 s if it did start. */
async function refusedStart(
  program: string,
  args: readonly string[]
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, program), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t))
  const timer = setTimeout(() => child.kill('SIGKILL'), 8000)
  const [code] = (await once(child, 'close')) as [number | null]
  clearTimeout(timer)
  return { code, stderr }
}

/** Exit status 2 and exactly one line on stderr, matching `re`. */
function assertOneLine(r: { code: number | null; stderr: string }, re: RegExp): void {
  assert.equal(r.code, 2, `exit status; stderr:\n${r.stderr}`)
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`)
  assert.match(lines[0]!, re)
}

async function holdPort(): Promise<{ server: Server; port: number }> {
  const port = await freePort()
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return { server, port }
}

describe('a second instance', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-second-'))
  const control = join(dir, 'run', 'rx.sock')
  let first: ProxyProcess
  let rxPort = 0
  const base = (): string[] => ['-c', '/dev/null', '--set', `security.psk=${TEST_PSK}`]

  before(async () => {
    rxPort = await freePort()
    first = spawnProxy('rx-proxy', [
      ...base(),
      ...['--set', `rx_proxy.control_socket=${control}`],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(rxPort)]
    ])
    await first.waitFor(/listening on/)
  })
  after(async () => {
    await first.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('with the same control socket: exit 2, one line; the first still answers status', async () => {
    const r = await refusedStart(RX, [
      ...base(),
      ...['--set', `rx_proxy.control_socket=${control}`],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(await freePort())]
    ])
    assertOneLine(r, /rx_proxy\.control_socket: rx_proxy \(pid \d+\) is running and answers at/)
    assert.equal((await queryStatus(control)).pid, first.child.pid)
  })

  it('with the same port: exit 2, one line naming rx_proxy.recv_port; the first still answers', async () => {
    const r = await refusedStart(RX, [
      ...base(),
      ...['--set', `rx_proxy.control_socket=${control}`],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(rxPort)]
    ])
    assertOneLine(r, /rx_proxy\.recv_port: 127\.0\.0\.1:\d+ is already in use/)
    assert.equal((await queryStatus(control)).pid, first.child.pid)
    assert.ok(statSync(control).isSocket())
  })

  it('a busy metrics_listen or local_port names its key (tx_proxy and rx_proxy)', async () => {
    const held = await holdPort()
    try {
      const rxMetrics = await refusedStart(RX, [
        ...base(),
        ...['--set', 'rx_proxy.control_socket=', '--recv-ip', '127.0.0.1'],
        ...['--recv-port', String(await freePort())],
        ...['--set', `rx_proxy.metrics_listen=127.0.0.1:${held.port}`]
      ])
      assertOneLine(rxMetrics, /rx_proxy\.metrics_listen: 127\.0\.0\.1:\d+ is already in use/)
      const txMetrics = await refusedStart(TX, [
        ...base(),
        ...['--set', 'tx_proxy.control_socket=', '--local-ip', '127.0.0.1', '--log-level', 'error'],
        ...['--local-port', String(await freePort()), '--rx-proxy-port', String(rxPort)],
        ...['--set', `tx_proxy.metrics_listen=127.0.0.1:${held.port}`]
      ])
      assertOneLine(txMetrics, /tx_proxy\.metrics_listen: 127\.0\.0\.1:\d+ is already in use/)
      const txPort = await refusedStart(TX, [
        ...base(),
        ...['--set', 'tx_proxy.control_socket=', '--local-ip', '127.0.0.1', '--log-level', 'error'],
        ...['--local-port', String(held.port), '--rx-proxy-port', String(rxPort)]
      ])
      assertOneLine(txPort, /tx_proxy\.local_port: 127\.0\.0\.1:\d+ is already in use/)
    } finally {
      held.server.close()
    }
  })

  it('a socket file left by a killed proxy is replaced', async () => {
    const path = join(dir, 'killed.sock')
    const victim = spawnProxy('rx-proxy', [
      ...base(),
      ...['--set', `rx_proxy.control_socket=${path}`],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(await freePort())]
    ])
    await victim.waitFor(/listening on/)
    victim.child.kill('SIGKILL')
    await once(victim.child, 'exit')
    assert.ok(statSync(path).isSocket(), 'the dead proxy left its socket file')
    const next = spawnProxy('rx-proxy', [
      ...base(),
      ...['--set', `rx_proxy.control_socket=${path}`],
      ...['--recv-ip', '127.0.0.1', '--recv-port', String(await freePort())]
    ])
    try {
      await next.waitFor(/listening on/)
      assert.equal((await queryStatus(path)).pid, next.child.pid)
    } finally {
      await next.stop()
    }
  })
})
