import type { SubflowId } from '../send-buffer.js'
import type { SubflowView } from './scheduler.js'

/** The writable subflow that `better` prefers over every other (first one on a tie). */
export function bestWritable(
  subflows: readonly SubflowView[],
  better: (a: SubflowView, b: SubflowView) => boolean
): SubflowId | undefined {
  let best: SubflowView | undefined
  for (const s of subflows) {
    if (s.writable && (best === undefined || better(s, best))) best = s
  }
  return best?.id
}
