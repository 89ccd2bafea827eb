/** Re-export: the topology lives in lab/testbed (the demo and the benchmark use it too). */
export * from '../../lab/testbed/topology.js'
