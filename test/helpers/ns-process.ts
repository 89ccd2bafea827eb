/** Re-export: lives in lab/testbed (the demo and the benchmark use it too). */
export * from '../../lab/testbed/ns-process.js'
