/**
 * The control socket (src/app/control.ts): 0600 in a 0700 directory whatever the umask, 0660
 * and 0710 with a group; a live proxy's socket is never removed by a second one, a leftover
 * socket file is replaced, and anything else at the path is left alone.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import type { Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'

import { ConfigError } from '../../../src/common/errors.js'
import {
  queryStatus,
  serveControl,
  type ControlOptions,
  type ProxyStatus
} from '../../../src/app/control.js'

function fakeStatus(pid: number): () => ProxyStatus {
  return () => ({
    role: 'rx_proxy',
    pid,
    uptimeMs: 1,
    bufferedBytes: 0,
    maxBufferedBytes: 1,
    trunks: [],
    totals: {
      bytesFromApp: 0,
      bytesToApp: 0,
      reorderBytes: 0,
      sendBufferedBytes: 0,
      duplicateBytes: 0,
      resentBytes: 0,
      creditStalls: 0
    },
    counters: {}
  })
}

const OWNER_ONLY: ControlOptions = { section: 'rx_proxy', group: '' }

async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve()
    })
  )
}

/** A group other than ours from /etc/group, for the group option (we run as root). */
function someGroup(): { name: string; gid: number } {
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const [name, , gid] = line.split(':')
    if (name !== undefined && gid !== undefined && /^\d+$/.test(gid) && Number(gid) !== 0) {
      return { name, gid: Number(gid) }
    }
  }
  return { name: '1', gid: 1 }
}

describe('control socket', () => {
  let dir = ''
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-control-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  for (const umask of [0o022, 0o000]) {
    it(`is 0600 in a 0700 directory with umask ${umask.toString(8).padStart(3, '0')}`, async () => {
      const parent = join(dir, `umask-${umask.toString(8)}`)
      const path = join(parent, 'run', 'tandem', 'rx.sock')
      const old = process.umask(umask)
      let server: Server
      try {
        server = await serveControl(path, fakeStatus(1), OWNER_ONLY)
      } finally {
        process.umask(old)
      }
      try {
        assert.equal(statSync(path).mode & 0o777, 0o600, 'socket mode')
        assert.ok(statSync(path).isSocket())
        assert.equal(statSync(join(parent, 'run', 'tandem')).mode & 0o777, 0o700, 'its directory')
        assert.equal(statSync(join(parent, 'run')).mode & 0o777, 0o700, 'directories made for it')
        assert.equal((await queryStatus(path)).pid, 1)
      } finally {
        await closeServer(server)
      }
    })
  }

  it('is 0660 and owned by control_socket_group in a 0710 directory, by name or number', async () => {
    const group = someGroup()
    for (const spelling of [group.name, String(group.gid)]) {
      const path = join(dir, `group-${spelling}`, 'tx.sock')
      const old = process.umask(0o000)
      let server: Server
      try {
        server = await serveControl(path, fakeStatus(2), { section: 'tx_proxy', group: spelling })
      } finally {
        process.umask(old)
      }
      try {
        const st = statSync(path)
        assert.equal(st.mode & 0o777, 0o660)
        assert.equal(st.gid, group.gid)
        assert.equal(statSync(join(dir, `group-${spelling}`)).mode & 0o777, 0o710)
        assert.equal(statSync(join(dir, `group-${spelling}`)).gid, group.gid)
      } finally {
        await closeServer(server)
      }
    }
  })

  it('an unknown group is a config error naming control_socket_group', async () => {
    await assert.rejects(
      serveControl(join(dir, 'nogroup', 'x.sock'), fakeStatus(3), {
        section: 'tx_proxy',
        group: 'no-such-group-here'
      }),
      (err: unknown) => err instanceof ConfigError && err.key === 'tx_proxy.control_socket_group'
    )
  })

  it('a second instance never removes a live socket: it stops with one line naming the key', async () => {
    const path = join(dir, 'live', 'rx.sock')
    const first = await serveControl(path, fakeStatus(4242), OWNER_ONLY)
    try {
      await assert.rejects(
        serveControl(path, fakeStatus(7), OWNER_ONLY),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.key === 'rx_proxy.control_socket' &&
          /rx_proxy \(pid 4242\) is running and answers at/.test(err.message) &&
          !err.message.includes('\n')
      )
      assert.equal((await queryStatus(path)).pid, 4242, 'the first one still answers')
    } finally {
      await closeServer(first)
    }
  })

  it('a socket file nobody answers on (its proxy was killed) is replaced', async () => {
    const path = join(dir, 'stale', 'rx.sock')
    mkdirSync(join(dir, 'stale'))
    // A process that binds the path and dies without removing it.
    const child = spawn(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`
    ])
    await once(child, 'exit')
    assert.ok(statSync(path).isSocket(), 'the leftover socket file is there')
    const server = await serveControl(path, fakeStatus(5), OWNER_ONLY)
    try {
      assert.equal((await queryStatus(path)).pid, 5)
    } finally {
      await closeServer(server)
    }
  })

  it('a file that is not a socket is left alone', async () => {
    const path = join(dir, 'not-a-socket')
    writeFileSync(path, 'precious\n')
    await assert.rejects(
      serveControl(path, fakeStatus(6), OWNER_ONLY),
      (err: unknown) => err instanceof ConfigError && /is not a socket/.test(err.message)
    )
    assert.ok(existsSync(path))
    assert.equal(readFileSync(path, 'utf8'), 'precious\n')
  })
})
