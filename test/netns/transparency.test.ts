/**
 * Source transparency on the rx box (issue 3 item 6), in the five-namespace testbed with the rx
 * rules installed by the real `iptables/apply.sh --role rx` (interception.transparent = true):
 * a socket in the rx box connects to dst from src's address and port (connectTransparent), dst
 * sees src, bytes cross intact both ways, and a direct src → dst flow keeps being bridged
 * meanwhile. Then refusals (RST, ICMP) reach the socket, and without the rules nothing does.
 *
 * The rx box's side runs in a child process inside the namespace: this same file, started
 * with `--child '<json>'` (see `runChild`), prints one JSON line.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import type { Endpoint } from '../../src/common/wire/frame.js'
import { connectTransparent, errnoCode } from '../../src/rx-proxy/transparent.js'
import type { Netns } from '../helpers/netns.js'
import { netnsUnavailableReason } from '../helpers/netns.js'
import { dist, runIn, startIn, type NsProcess } from '../helpers/ns-process.js'
import {
  APPLY_RULES,
  createTopology,
  TOPOLOGY_ADDRESSES as A,
  type Topology
} from '../helpers/topology.js'

/** What the child in the rx namespace is asked to do. */
interface ChildRequest {
  readonly src: Endpoint
  readonly dst: Endpoint
  /** Bytes to send before half-closing. */
  readonly bytes: number
  readonly timeoutMs: number
  /** Listen on src.port (any address) first, so the client's port is taken here. */
  readonly occupySrcPort: boolean
}

/** What the child prints: the transfer, or the errno name the connect failed with. */
type ChildResult =
  | {
      readonly ok: true
      readonly localAddress: string
      readonly localPort: number
      readonly sentSha256: string
      readonly receivedBytes: number
      readonly receivedSha256: string
    }
  | { readonly ok: false; readonly code: string | undefined; readonly message: string }

/** One JSON line of ./receive. */
interface Received {
  readonly peerAddress: string
  readonly peerPort: number
  readonly receivedBytes: number
  readonly receivedSha256: string
  readonly replyBytes: number
  readonly replySha256: string
}

/** ./stream --json. */
interface Streamed {
  readonly ok: boolean
  readonly localPort: number
  readonly sentSha256: string
  readonly replySha256: string
}

const MiB = 1024 * 1024
const THIS_FILE = fileURLToPath(import.meta.url)
/** ./receive in dst: replies this much after each client's EOF. */
const RECEIVE_PORT = 7100
const REPLY_BYTES = 3 * MiB
/** Nothing listens here in dst: connects are refused with a RST. */
const CLOSED_PORT = 7102
/** dst REJECTs SYNs to this port with an ICMP port unreachable. */
const REJECT_PORT = 7103
/** The mark of test/fixtures/topology.conf (interception.mark). */
const MARK_HEX = '0x20'

// --- child: runs inside the rx namespace ------------------------------------------------

function listenOn(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(port, host, () => {
      resolve(server)
    })
  })
}

/** Sends `data`, half-closes, reads to EOF; resolves once the socket is closed. */
function exchange(socket: Socket, data: Buffer): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      bytes += chunk.length
    })
    socket.once('error', reject)
    socket.once('close', () => {
      resolve({ bytes, sha256: hash.digest('hex') })
    })
    socket.end(data)
  })
}

async function runChildRequest(req: ChildRequest): Promise<ChildResult> {
  const blocker = req.occupySrcPort
    ? await listenOn(req.src.port, req.src.family === 4 ? '0.0.0.0' : '::')
    : undefined
  try {
    let socket: Socket
    try {
      socket = await connectTransparent({ src: req.src, dst: req.dst, timeoutMs: req.timeoutMs })
    } catch (err) {
      return { ok: false, code: errnoCode(err), message: String(err) }
    }
    const localAddress = socket.localAddress ?? ''
    const localPort = socket.localPort ?? 0
    const data = randomBytes(req.bytes)
    const received = await exchange(socket, data)
    return {
      ok: true,
      localAddress,
      localPort,
      sentSha256: createHash('sha256').update(data).digest('hex'),
      receivedBytes: received.bytes,
      receivedSha256: received.sha256
    }
  } finally {
    blocker?.close()
  }
}

// --- parent ---------------------------------------------------------------------------------

/** Runs `req` in the rx namespace (this file as a child process) and parses its line. */
async function runChild(rx: Netns, req: ChildRequest): Promise<ChildResult> {
  const { stdout } = await rx.exec([process.execPath, THIS_FILE, '--child', JSON.stringify(req)])
  return JSON.parse(stdout) as ChildResult
}

/** ./receive's report of the connection from `port`, waiting for it to appear. */
async function receivedFrom(receiver: NsProcess, port: number): Promise<Received> {
  const match = await receiver.waitFor(new RegExp(`^\\{.*"peerPort":${port},.*$`, 'm'), 10_000)
  return JSON.parse(match[0]) as Received
}

/** The IPv4 address without Node's IPv4-mapped prefix (./receive listens on ::). */
function unmapped(address: string): string {
  return address.replace(/^::ffff:/i, '')
}

function parentSuite(): void {
  describe('source transparency on the rx box', { skip: netnsUnavailableReason() }, () => {
    let topo: Topology
    let receiver: NsProcess

    before(async () => {
      topo = await createTopology({
        prefix: 'ttp',
        overrides: { 'interception.transparent': 'true' }
      })
      receiver = startIn(
        topo.ns.dst,
        [
          dist('tools/receive.js'),
          '--port',
          `${RECEIVE_PORT}`,
          '--host',
          '::',
          '--keep-listening',
          '--reply-bytes',
          `${REPLY_BYTES}`,
          '--json',
          '--quiet'
        ],
        'receive'
      )
      await receiver.waitFor(/listening on/)
      for (const [tool, reject] of [
        ['iptables', 'icmp-port-unreachable'],
        ['ip6tables', 'icmp6-port-unreachable']
      ] as const) {
        await topo.ns.dst.exec([
          tool,
          '-A',
          'INPUT',
          '-p',
          'tcp',
          '--dport',
          `${REJECT_PORT}`,
          '-j',
          'REJECT',
          '--reject-with',
          reject
        ])
      }
    })

    after(async () => {
      await receiver.stop()
      topo.destroy()
    })

    const saved = async (tool: 'iptables' | 'ip6tables'): Promise<string> =>
      (await topo.ns.rx.exec([`${tool}-save`, '-t', 'mangle'])).stdout
    const ipRules = async (family: '-4' | '-6'): Promise<string> =>
      (await topo.ns.rx.exec(['ip', family, 'rule', 'show'])).stdout
    const nftTables = async (): Promise<string> =>
      (await topo.ns.rx.exec(['nft', 'list', 'tables'])).stdout

    test('apply.sh --role rx installed the rules, once, even when applied twice', async () => {
      const apply = [APPLY_RULES, '-c', topo.configPath, '--role', 'rx']
      await topo.ns.rx.exec(apply)
      const lan = topo.interfaces.rx.lan
      for (const tool of ['iptables', 'ip6tables'] as const) {
        const marks = (await saved(tool))
          .split('\n')
          .filter((l) => l.includes('-m socket --transparent -j MARK'))
        assert.equal(marks.length, 2, `${tool}: tcp and icmp, once each`)
        assert.ok(
          marks.every((l) => l.includes(`--physdev-in ${lan}`)),
          marks.join('\n')
        )
      }
      for (const family of ['-4', '-6'] as const) {
        const rules = (await ipRules(family))
          .split('\n')
          .filter((l) => l.includes('lookup 7462'))
          .map((l) => l.trim())
        assert.deepEqual(rules, [`1000:\tfrom all fwmark ${MARK_HEX} iif br0 lookup 7462`])
        const routes = await topo.ns.rx.exec(['ip', family, 'route', 'show', 'table', '7462'])
        assert.match(routes.stdout, /^local default dev lo/m)
      }
      const nft = await topo.ns.rx.exec(['nft', 'list', 'table', 'bridge', 'tandem'])
      assert.match(nft.stdout, /meta mark 0x00000020 .*ether daddr set .* meta pkttype set host/)

      const dry = await topo.ns.rx.exec([...apply, '--dry-run'])
      assert.ok(dry.stdout.includes('-m socket --transparent -j MARK --set-mark 0x20'), dry.stdout)
    })

    for (const family of [4, 6] as const) {
      const v = family === 4 ? 'v4' : 'v6'
      test(`IPv${family}: dst sees the client's address; a direct flow runs meanwhile`, async () => {
        const src: Endpoint = { family, address: A.src[v], port: 41000 + family }
        const dst: Endpoint = { family, address: A.dst[v], port: RECEIVE_PORT }
        const [proxied, direct] = await Promise.all([
          runChild(topo.ns.rx, { src, dst, bytes: 4 * MiB, timeoutMs: 5000, occupySrcPort: false }),
          runIn(topo.ns.src, [
            dist('tools/stream.js'),
            A.dst[v],
            `${RECEIVE_PORT}`,
            '--bytes',
            '4MiB',
            '--json',
            '--quiet',
            '--timeout',
            '20'
          ])
        ])
        assert.ok(proxied.ok, JSON.stringify(proxied))
        assert.equal(proxied.localPort, src.port)
        const seen = await receivedFrom(receiver, src.port)
        assert.equal(unmapped(seen.peerAddress), src.address, 'dst sees the client, not the rx box')
        assert.equal(seen.receivedBytes, 4 * MiB)
        assert.equal(seen.receivedSha256, proxied.sentSha256, 'rx box → dst intact')
        assert.equal(proxied.receivedBytes, REPLY_BYTES)
        assert.equal(proxied.receivedSha256, seen.replySha256, 'dst → rx box intact')

        assert.equal(direct.code, 0, direct.output)
        const streamed = JSON.parse(direct.output.trim().split('\n').at(-1) ?? '') as Streamed
        assert.ok(streamed.ok)
        const directSeen = await receivedFrom(receiver, streamed.localPort)
        assert.equal(unmapped(directSeen.peerAddress), A.src[v])
        assert.equal(directSeen.receivedSha256, streamed.sentSha256, 'direct flow intact')
        assert.equal(directSeen.replySha256, streamed.replySha256)
      })
    }

    test("the client's port taken on the rx box: another port, same address", async () => {
      const src: Endpoint = { family: 4, address: A.src.v4, port: 41010 }
      const dst: Endpoint = { family: 4, address: A.dst.v4, port: RECEIVE_PORT }
      const result = await runChild(topo.ns.rx, {
        src,
        dst,
        bytes: MiB,
        timeoutMs: 5000,
        occupySrcPort: true
      })
      assert.ok(result.ok, JSON.stringify(result))
      assert.notEqual(result.localPort, src.port)
      const seen = await receivedFrom(receiver, result.localPort)
      assert.equal(unmapped(seen.peerAddress), src.address)
      assert.equal(seen.receivedSha256, result.sentSha256)
    })

    test('refusals reach the socket: RST and ICMP port unreachable give ECONNREFUSED', async () => {
      for (const family of [4, 6] as const) {
        const v = family === 4 ? 'v4' : 'v6'
        for (const [i, port] of [CLOSED_PORT, REJECT_PORT].entries()) {
          const result = await runChild(topo.ns.rx, {
            src: { family, address: A.src[v], port: 41020 + family * 2 + i },
            dst: { family, address: A.dst[v], port },
            bytes: 0,
            // Without the rules the refusal never arrives and this would end in ETIMEDOUT.
            timeoutMs: 3000,
            occupySrcPort: false
          })
          assert.ok(!result.ok && result.code === 'ECONNREFUSED', JSON.stringify(result))
        }
      }
    })

    test('apply with transparent = false, and apply.sh --remove, delete the rules', async () => {
      const off = `${topo.configPath}.off`
      topo.writeConfig(off, { 'interception.transparent': 'false' })
      for (const argv of [
        [APPLY_RULES, '-c', off, '--role', 'rx'],
        [APPLY_RULES, '--remove']
      ]) {
        await topo.ns.rx.exec([APPLY_RULES, '-c', topo.configPath, '--role', 'rx'])
        assert.match(await saved('iptables'), /--transparent/)
        await topo.ns.rx.exec(argv)
        for (const tool of ['iptables', 'ip6tables'] as const) {
          assert.doesNotMatch(await saved(tool), /TANDEM|--transparent/, argv.join(' '))
        }
        for (const family of ['-4', '-6'] as const) {
          assert.doesNotMatch(await ipRules(family), /7462/)
          const routes = await topo.ns.rx.exec(['ip', family, 'route', 'show', 'table', '7462'])
          assert.equal(routes.stdout, '')
        }
        assert.doesNotMatch(await nftTables(), /tandem/)
      }
      // Without the rules the replies are bridged on to src: the connect never completes.
      const result = await runChild(topo.ns.rx, {
        src: { family: 4, address: A.src.v4, port: 41030 },
        dst: { family: 4, address: A.dst.v4, port: RECEIVE_PORT },
        bytes: 0,
        timeoutMs: 1000,
        occupySrcPort: false
      })
      assert.ok(!result.ok && result.code === 'ETIMEDOUT', JSON.stringify(result))
    })
  })
}

const childAt = process.argv.indexOf('--child')
if (childAt >= 0) {
  const result = await runChildRequest(JSON.parse(process.argv[childAt + 1] ?? '') as ChildRequest)
  process.stdout.write(`${JSON.stringify(result)}\n`)
} else {
  parentSuite()
}
