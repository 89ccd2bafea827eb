// Regenerate the README's table of network.conf keys from the schema (npm run docs:keys).
// A unit test fails when the table misses a key, so the two cannot drift apart.
import { readFileSync, writeFileSync } from 'node:fs'
import { KEYS } from '../dist/src/common/config/schema.js'

const rows = ['| key | default | meaning |', '|---|---|---|']
for (const k of KEYS) {
  const dflt = k.default === '' ? '(empty)' : `\`${k.default}\``
  rows.push(`| \`${k.section}.${k.key}\` | ${dflt} | ${k.doc.replace(/\|/g, '\\|')} |`)
}
const path = new URL('../README.md', import.meta.url)
const text = readFileSync(path, 'utf8')
const start = text.indexOf('| key | default | meaning |')
const end = text.indexOf('\n\nPaths: without')
if (start < 0 || end < 0) throw new Error('README: key table markers not found')
writeFileSync(path, text.slice(0, start) + rows.join('\n') + text.slice(end))
