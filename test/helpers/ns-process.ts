/** Re-export: lives in src/tools/testbed (the demo and the benchmark use it too). */
export * from '../../src/tools/testbed/ns-process.js'
