/** ./tx_proxy entry point. */
import { runMain } from '../edge/run-main.js'
import { createDestinationResolver } from './destination.js'
import { TxProxy } from './tx-proxy.js'

const code = await runMain('tx_proxy', process.argv.slice(2), async (config, log) => {
  const proxy = new TxProxy(config, log, await createDestinationResolver(config))
  await proxy.start()
  return proxy
})
process.exit(code)
