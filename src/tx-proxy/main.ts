/** ./tx_proxy entry point. */
import { runMain } from '../app/run-main.js'
import { createDestinationResolver } from './destination.js'
import { NfqueueReader } from '../../native/nfqueue.js'
import { TxProxy } from './tx-proxy.js'

const code = await runMain('tx_proxy', process.argv.slice(2), async (config, log) => {
  const i = config.interception
  const openSynSource = i.enabled ? () => new NfqueueReader(i.queueNum) : undefined
  const proxy = new TxProxy(config, log, await createDestinationResolver(config), openSynSource)
  await proxy.start()
  return proxy
})
process.exit(code)
