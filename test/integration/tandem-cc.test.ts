/**
 * scripts/tandem-cc.sh register replaces a `tandem` of another build (what an upgrade leaves
 * registered until reboot) and leaves this build's alone. Which build is registered is recorded
 * in /run/tandem/tandem-cc.registered as "<struct_ops map id> <sha256 of the object>"; the test
 * makes the record name another build (or removes it) and reads the kernel's map id before and
 * after. It ends with this checkout's build registered, as scripts/setup.sh leaves it.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

import { ROOT } from '../helpers/proxies.js'

const SCRIPT = join(ROOT, 'scripts/tandem-cc.sh')
const OBJECT = join(ROOT, 'native/build/bpf/tandem_cc.bpf.o')
const RECORD = '/run/tandem/tandem-cc.registered'
const AVAILABLE = '/proc/sys/net/ipv4/tcp_available_congestion_control'

function hasBpftool(): boolean {
  return spawnSync('sh', ['-c', 'command -v bpftool'], { encoding: 'utf8' }).status === 0
}

const why =
  process.getuid?.() !== 0
    ? 'needs root (bpftool struct_ops)'
    : !hasBpftool()
      ? 'bpftool is missing (scripts/setup.sh installs it)'
      : !existsSync(OBJECT)
        ? `no ${OBJECT} (the kernel has no BTF or clang is missing: scripts/tandem-cc.sh build)`
        : undefined

function register(...extra: string[]): { status: number | null; out: string } {
  const r = spawnSync('sh', [SCRIPT, 'register', ...extra], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

/** The id of the registered struct_ops map named tandem, or undefined. */
function mapId(): string | undefined {
  const out = execFileSync('bpftool', ['-j', 'struct_ops', 'show'], { encoding: 'utf8' })
  const maps = JSON.parse(out === '' ? '[]' : out) as { id: number; name: string }[]
  const found = maps.find((m) => m.name === 'tandem')
  return found === undefined ? undefined : String(found.id)
}

const sum = (): string => createHash('sha256').update(readFileSync(OBJECT)).digest('hex')

describe('tandem-cc.sh register: one build at a time', { skip: why ?? false }, () => {
  it('registers this build, replaces another, keeps its own', () => {
    const first = register()
    assert.equal(first.status, 0, first.out)
    const id = mapId()
    assert.ok(id !== undefined, `tandem not registered: ${first.out}`)
    assert.match(readFileSync(AVAILABLE, 'utf8'), /\btandem\b/)
    assert.equal(readFileSync(RECORD, 'utf8').trim(), `${id} ${sum()}`)

    // This build registered: nothing to do, the same map stays.
    const again = register()
    assert.equal(again.status, 0, again.out)
    assert.match(again.out, /offers tandem already \(this build, [0-9a-f]{12}\)/)
    assert.equal(mapId(), id)
    // --quiet (what tune-box.sh runs at every boot): nothing to do, nothing said.
    const quiet = register('--quiet')
    assert.deepEqual(quiet, { status: 0, out: '' })
    assert.equal(mapId(), id)

    // The record names another build: replaced, a new map, the record follows.
    writeFileSync(RECORD, `${id} ${'0'.repeat(64)}\n`)
    const replaced = register()
    assert.equal(replaced.status, 0, replaced.out)
    assert.match(replaced.out, /is another build; replacing it/)
    const newId = mapId()
    assert.ok(newId !== undefined && newId !== id, `map ${String(newId)} after ${id}`)
    assert.equal(readFileSync(RECORD, 'utf8').trim(), `${newId} ${sum()}`)

    // No record (registered by hand, or by a version before the record): another build too.
    rmSync(RECORD)
    const unrecorded = register()
    assert.equal(unrecorded.status, 0, unrecorded.out)
    assert.match(unrecorded.out, /is another build; replacing it/)
    const lastId = mapId()
    assert.ok(lastId !== undefined && lastId !== newId)

    const status = spawnSync('sh', [SCRIPT, 'status'], { encoding: 'utf8' })
    assert.equal(
      status.stdout.trim(),
      `tandem-cc.sh: the kernel offers tandem, build ${sum().slice(0, 12)}`
    )
  })
})
