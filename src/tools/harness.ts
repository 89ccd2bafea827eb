/**
 * Test harness library: the logic behind `./stream` and `./receive`, usable in-process by tests
 * and the benchmark without spawning anything.
 *
 * Modern take on the original C project's `stream`/`receive`: those timed CPU, these measure
 * wall-clock goodput with `performance.now()`. Everything here is per call: no module-level
 * state, so any number of senders and receivers can share one process. One module per job in
 * harness/: argument parsing, the deterministic data, byte sources, outcomes and expectations,
 * socket plumbing, sending, receiving, formatting and the progress bar, the CLI runner.
 */
export * from './harness/args.js'
export * from './harness/cli.js'
export * from './harness/data.js'
export * from './harness/duplex.js'
export * from './harness/outcome.js'
export * from './harness/progress.js'
export * from './harness/receive.js'
export * from './harness/send.js'
export * from './harness/sources.js'
export { goodput, type Goodput } from './harness/socket.js'
