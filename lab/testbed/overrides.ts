/** `--set KEY=VALUE` options of the lab's tools, as configuration overrides for `bed.config`. */
export function configOverrides(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const kv of list) {
    const i = kv.indexOf('=')
    if (i <= 0) throw new Error(`--set ${kv}: expected KEY=VALUE, e.g. trunk.congestion=bbr`)
    out[kv.slice(0, i)] = kv.slice(i + 1)
  }
  return out
}
