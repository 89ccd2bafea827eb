/**
 * Runs test/fixtures/netns-child.ts (compiled) inside a namespace and returns its result.
 */
import { fileURLToPath } from 'node:url'

import type { ChildRequest, ChildResult } from '../fixtures/netns-child.js'
import type { Netns } from './netns.js'

/** The compiled fixture, next to this file's compiled output (dist/test/fixtures/). */
const CHILD_SCRIPT = fileURLToPath(new URL('../fixtures/netns-child.js', import.meta.url))

/** Longest a fixture run may take, milliseconds. */
const CHILD_TIMEOUT_MS = 20_000

/** Runs the fixture in `ns` with `request`; rejects with its stderr if it fails. */
export async function runChild(ns: Netns, request: ChildRequest): Promise<ChildResult> {
  const { stdout } = await ns.exec(
    [process.execPath, CHILD_SCRIPT, JSON.stringify(request)],
    CHILD_TIMEOUT_MS
  )
  return JSON.parse(stdout) as ChildResult
}

/**
 * Packet counter of the iptables rule tagged `-m comment --comment <comment>` in `table`
 * (`ip6tables` when `family` is 6).
 */
export async function ruleCounter(
  ns: Netns,
  table: string,
  chain: string,
  comment: string,
  family: 4 | 6 = 4
): Promise<number> {
  const tool = family === 4 ? 'iptables' : 'ip6tables'
  const { stdout } = await ns.exec([tool, '-t', table, '-L', chain, '-v', '-x', '-n'])
  const line = stdout.split('\n').find((l) => l.includes(`/* ${comment} */`))
  if (line === undefined) {
    throw new Error(`no rule with comment ${comment} in ${table}/${chain}:\n${stdout}`)
  }
  return Number(line.trim().split(/\s+/)[0])
}
