/** Re-export: the namespace helper lives in lab/testbed (the demo and the benchmark use it too). */
export * from '../../lab/testbed/netns.js'
