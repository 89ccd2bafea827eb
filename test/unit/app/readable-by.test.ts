/**
 * readableBy: the permission walk `check --user` relies on. First on a made-up file system
 * (owner, group and other classes, the first matching class wins, search bits on every
 * directory, symbolic links, missing files, root); then, as root only, on real files with
 * various modes and owners, compared with what the kernel lets uid 65534 read.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { readableBy, type Account, type StatFn } from '../../../src/app/readable-by.js'

interface Node {
  readonly uid: number
  readonly gid: number
  readonly mode: number
}

/** A made-up file system: path → owner and mode, and symbolic links resolved by `links`. */
function fakeFs(
  nodes: Readonly<Record<string, Node>>,
  links: Readonly<Record<string, string>> = {}
): { stat: StatFn; realpath: (p: string) => string } {
  const stat: StatFn = (p) => {
    const n = nodes[links[p] ?? p]
    if (n === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' })
    return n
  }
  const realpath = (p: string): string => {
    const target = links[p] ?? p
    stat(target)
    return target
  }
  return { stat, realpath }
}

const ROOT_DIRS: Readonly<Record<string, Node>> = {
  '/': { uid: 0, gid: 0, mode: 0o755 },
  '/etc': { uid: 0, gid: 0, mode: 0o755 }
}

const TANDEM: Account = { name: 'tandem', uid: 990, gids: [990] }

function check(nodes: Record<string, Node>, path: string, account = TANDEM) {
  const fs = fakeFs({ ...ROOT_DIRS, ...nodes })
  return readableBy(path, account, fs.stat, fs.realpath)
}

describe('readableBy on a made-up file system', () => {
  test('the key owned by the user with mode 0600, in a 0755 directory, is readable', () => {
    const r = check(
      {
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 },
        '/etc/tandem/psk': { uid: 990, gid: 990, mode: 0o600 }
      },
      '/etc/tandem/psk'
    )
    assert.deepEqual(r, { ok: true })
  })

  test("a root-owned 0600 key is not: the file, the 'other' class, owner and mode are named", () => {
    const r = check(
      {
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 },
        '/etc/tandem/psk': { uid: 0, gid: 0, mode: 0o600 }
      },
      '/etc/tandem/psk'
    )
    assert.deepEqual(r, {
      ok: false,
      kind: 'file',
      path: '/etc/tandem/psk',
      applied: 'other',
      ownerUid: 0,
      ownerGid: 0,
      mode: 0o600
    })
  })

  test('the group bits apply to a member of the group, whatever the other bits say', () => {
    const dir = { uid: 0, gid: 0, mode: 0o755 }
    const member: Account = { name: 'tandem', uid: 990, gids: [990, 4] }
    const ok = check(
      { '/etc/tandem': dir, '/etc/tandem/network.conf': { uid: 0, gid: 4, mode: 0o640 } },
      '/etc/tandem/network.conf',
      member
    )
    assert.equal(ok.ok, true)
    // Group lacks r but other has it: a member is still refused (the first class matches).
    const r = check(
      { '/etc/tandem': dir, '/etc/tandem/network.conf': { uid: 0, gid: 4, mode: 0o604 } },
      '/etc/tandem/network.conf',
      member
    )
    assert.equal(r.ok, false)
    assert.equal(!r.ok && r.kind === 'file' && r.applied, 'group')
  })

  test('the owner bits apply to the owner: an owner without r is refused even if others have it', () => {
    const r = check(
      {
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 },
        '/etc/tandem/psk': { uid: 990, gid: 990, mode: 0o044 }
      },
      '/etc/tandem/psk'
    )
    assert.equal(!r.ok && r.kind === 'file' && r.applied, 'owner')
  })

  test('a directory on the way without x for the user blocks it, and is the one named', () => {
    const file = { uid: 990, gid: 990, mode: 0o600 }
    for (const mode of [0o700, 0o750, 0o754]) {
      const r = check(
        { '/etc/tandem': { uid: 0, gid: 0, mode }, '/etc/tandem/psk': file },
        '/etc/tandem/psk'
      )
      assert.equal(r.ok, false, mode.toString(8))
      assert.equal(!r.ok && r.kind, 'directory')
      assert.equal(!r.ok && r.path, '/etc/tandem')
    }
    // x alone is enough to pass through a directory; r is not needed.
    const r = check(
      { '/etc/tandem': { uid: 0, gid: 0, mode: 0o711 }, '/etc/tandem/psk': file },
      '/etc/tandem/psk'
    )
    assert.equal(r.ok, true)
    // A directory high up counts as much as the file's own.
    const high = check(
      {
        '/etc': { uid: 0, gid: 0, mode: 0o750 },
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 },
        '/etc/tandem/psk': file
      },
      '/etc/tandem/psk'
    )
    assert.equal(!high.ok && high.kind === 'directory' && high.path, '/etc')
  })

  test("through a symbolic link, the target's directories count too", () => {
    const fs = fakeFs(
      {
        ...ROOT_DIRS,
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 },
        '/srv': { uid: 0, gid: 0, mode: 0o755 },
        '/srv/keys': { uid: 0, gid: 0, mode: 0o700 },
        '/srv/keys/psk': { uid: 990, gid: 990, mode: 0o600 }
      },
      { '/etc/tandem/psk': '/srv/keys/psk' }
    )
    const r = readableBy('/etc/tandem/psk', TANDEM, fs.stat, fs.realpath)
    assert.equal(!r.ok && r.kind === 'directory' && r.path, '/srv/keys')
  })

  test('a missing file is reported as missing with its errno, not as unreadable', () => {
    const r = check({ '/etc/tandem': { uid: 0, gid: 0, mode: 0o755 } }, '/etc/tandem/psk')
    assert.deepEqual(r, { ok: false, kind: 'missing', path: '/etc/tandem/psk', code: 'ENOENT' })
  })

  test('root reads everything', () => {
    const r = check(
      {
        '/etc/tandem': { uid: 0, gid: 0, mode: 0o700 },
        '/etc/tandem/psk': { uid: 990, gid: 990, mode: 0o000 }
      },
      '/etc/tandem/psk',
      { name: 'root', uid: 0, gids: [0] }
    )
    assert.equal(r.ok, true)
  })
})

const NOBODY: Account = { name: 'nobody', uid: 65534, gids: [65534] }
const isRoot = process.getuid?.() === 0
const canSwitch = isRoot && spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0

/** Whether the kernel lets uid/gid 65534 (no other group) read `path`. */
function kernelLetsNobodyRead(path: string): boolean {
  const r = spawnSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', '--', 'cat', path],
    { stdio: 'ignore' }
  )
  return r.status === 0
}

describe(
  'readableBy on real files, against the kernel',
  { skip: canSwitch ? false : 'needs root and setpriv (chown, and reading as uid 65534)' },
  () => {
    const base = canSwitch ? mkdtempSync(join(tmpdir(), 'tandem-readable-')) : ''
    after(() => {
      if (base !== '') rmSync(base, { recursive: true, force: true })
    })

    test('owners × file modes × directory modes: readableBy agrees with the kernel', () => {
      // mkdtemp made base 0700: let everyone through it, so that only `dir` below decides.
      chmodSync(base, 0o755)
      const owners = [
        [0, 0],
        [65534, 65534],
        [0, 65534]
      ] as const
      const fileModes = [0o600, 0o640, 0o604, 0o044, 0o400]
      const dirs = [
        [0o755, 0],
        [0o750, 0],
        [0o750, 65534],
        [0o700, 0],
        [0o711, 0]
      ] as const
      let n = 0
      let readable = 0
      for (const [dirMode, dirGid] of dirs) {
        const dir = join(base, `d${n}`)
        mkdirSync(dir)
        chownSync(dir, 0, dirGid)
        chmodSync(dir, dirMode)
        for (const [uid, gid] of owners) {
          for (const mode of fileModes) {
            const file = join(dir, `f${n++}`)
            writeFileSync(file, 'x')
            chownSync(file, uid, gid)
            chmodSync(file, mode)
            const kernel = kernelLetsNobodyRead(file)
            const r = readableBy(file, NOBODY)
            const what = `dir ${dirMode.toString(8)} gid ${dirGid}, file ${uid}:${gid} ${mode.toString(8)}`
            assert.equal(r.ok, kernel, what)
            if (kernel) readable++
          }
        }
      }
      // The matrix has both answers in it, so neither a constant true nor false passes.
      assert.ok(readable > 0 && readable < n, `${readable} of ${n} readable`)
    })
  }
)
