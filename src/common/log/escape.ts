/**
 * Text a peer chose (a RESET's reason message), made safe for a log line: it may not break the
 * line, forge another one, drive the terminal or run on for pages.
 */

/** Longest peer text kept in a log line, in characters (the rest becomes "…"). */
export const MAX_PEER_TEXT = 120

/**
 * Control characters (C0, DEL, C1), line and paragraph separators and bidirectional overrides
 * become `\xNN` / `\uNNNN`; a backslash is doubled so that an escape cannot be faked; the text is
 * cut at `max` characters.
 */
export function escapePeerText(text: string, max = MAX_PEER_TEXT): string {
  let out = ''
  let n = 0
  for (const ch of text) {
    if (n === max) return `${out}…`
    const c = ch.codePointAt(0)!
    if (ch === '\\') out += '\\\\'
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += `\\x${c.toString(16).padStart(2, '0')}`
    else if (
      c === 0x2028 ||
      c === 0x2029 ||
      (c >= 0x202a && c <= 0x202e) ||
      (c >= 0x2066 && c <= 0x2069)
    )
      out += `\\u${c.toString(16).padStart(4, '0')}`
    else out += ch
    n++
  }
  return out
}
