/**
 * Re-export: fault injection (ways to kill one subflow or a whole path from outside the
 * proxies, each undone by `restore()`) and the polling helpers live in
 * lab/testbed/two-path.ts, because the path benchmark (lab/bench/paths.ts) uses
 * them too.
 */
export {
  blackHole,
  FaultLedger,
  injectReset,
  KILL_METHODS,
  linkDown,
  pollUntil,
  silentDrop,
  sleepUntil,
  ssKill,
  subflowSockets,
  wallMs,
  type ActiveFault,
  type KillMethod,
  type SubflowSocket
} from '../../lab/testbed/two-path.js'
