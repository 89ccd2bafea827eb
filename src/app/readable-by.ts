/**
 * Can a given user read a file? `check --user NAME` asks it for the configuration and the key:
 * the units run `check` as root ("+" in ExecStartPre), but the proxy itself runs as the unit's
 * User=, so what root can read proves nothing. The answer follows the kernel's permission
 * check: search (x) on every directory from / down to the file, then read (r) on the file, each
 * taken from the owner, group or other bits, whichever class the user falls in first.
 *
 * Not modelled: POSIX ACLs (getfacl), capabilities other than root's, and read-only or hidden
 * mounts. A user with uid 0 reads everything.
 */
import { realpathSync, statSync, type Stats } from 'node:fs'
import { dirname, resolve } from 'node:path'

/** A user as the kernel's permission check sees it. */
export interface Account {
  /** The login name, for messages. */
  readonly name: string
  readonly uid: number
  /** Its primary group and every supplementary group. */
  readonly gids: readonly number[]
}

/** Which permission bits applied to the user. */
export type PermissionClass = 'owner' | 'group' | 'other'

/** The answer of `readableBy`. */
export type Readability =
  | { readonly ok: true }
  | {
      readonly ok: false
      /** The file itself lacks r, or a directory above it lacks x, for this user. */
      readonly kind: 'file' | 'directory'
      /** The file or directory that stops the user (absolute; the file's real path). */
      readonly path: string
      /** The class whose bits were checked, so a fix can name it (chmod o+x). */
      readonly applied: PermissionClass
      readonly ownerUid: number
      readonly ownerGid: number
      /** The permission bits (mode & 0o7777). */
      readonly mode: number
    }
  | {
      readonly ok: false
      readonly kind: 'missing'
      readonly path: string
      /** The errno code of stat or realpath (ENOENT, ENOTDIR, ELOOP...). */
      readonly code: string
    }

/** The stat the check uses; tests may stand in for it. */
export type StatFn = (path: string) => Pick<Stats, 'uid' | 'gid' | 'mode'>

/** The class `account` falls in for a file owned by `uid:gid` (the first that matches). */
function classOf(account: Account, uid: number, gid: number): PermissionClass {
  if (account.uid === uid) return 'owner'
  if (account.gids.includes(gid)) return 'group'
  return 'other'
}

/** The rwx bits of `mode` for `cls`, as 0-7. */
function bitsOf(mode: number, cls: PermissionClass): number {
  switch (cls) {
    case 'owner':
      return (mode >> 6) & 7
    case 'group':
      return (mode >> 3) & 7
    case 'other':
      return mode & 7
  }
}

/** `/a/b/c` → `/`, `/a`, `/a/b`. */
function ancestors(path: string): string[] {
  const dirs: string[] = []
  for (let d = dirname(path); ; d = dirname(d)) {
    dirs.unshift(d)
    if (dirname(d) === d) return dirs
  }
}

/**
 * Whether `account` can read `path`. The directories checked are those of the path as written
 * and, when a symbolic link is on the way, those of its target too (both are walked to open it).
 */
export function readableBy(
  path: string,
  account: Account,
  stat: StatFn = statSync,
  realpath: (path: string) => string = realpathSync
): Readability {
  const given = resolve(path)
  let real: string
  try {
    real = realpath(given)
  } catch (err) {
    return { ok: false, kind: 'missing', path: given, code: errnoOf(err) }
  }
  if (account.uid === 0) return { ok: true }
  const dirs = [...new Set([...ancestors(given), ...ancestors(real)])]
  const steps: readonly (readonly [string, 'file' | 'directory', number])[] = [
    ...dirs.map((d) => [d, 'directory', 1] as const),
    [real, 'file', 4]
  ]
  for (const [p, kind, want] of steps) {
    let st: Pick<Stats, 'uid' | 'gid' | 'mode'>
    try {
      st = stat(p)
    } catch (err) {
      return { ok: false, kind: 'missing', path: p, code: errnoOf(err) }
    }
    const applied = classOf(account, st.uid, st.gid)
    if ((bitsOf(st.mode, applied) & want) === 0) {
      return {
        ok: false,
        kind,
        path: p,
        applied,
        ownerUid: st.uid,
        ownerGid: st.gid,
        mode: st.mode & 0o7777
      }
    }
  }
  return { ok: true }
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error'
}
