/** Re-export: lives in src/tools/testbed (the demo and the benchmark use it too). */
export * from '../../lab/testbed/ns-process.js'
