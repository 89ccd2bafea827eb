/** ./rx_proxy entry point. */
import { runMain } from '../app/run-main.js'
import { RxProxy } from './rx-proxy.js'

const code = await runMain('rx_proxy', process.argv.slice(2), async (config, log) => {
  const proxy = new RxProxy(config, log)
  await proxy.start()
  return proxy
})
process.exit(code)
