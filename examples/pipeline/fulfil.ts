// Stage 2 of the example pipeline: fulfils priced orders from `orders.priced`.
import { defineWorkload } from 'beemesh'

interface PricedOrder { id: number, total: number }

export default defineWorkload<PricedOrder>({
  name: 'fulfil',
  kind: 'stateless',
  topics: ['orders.priced'],
  replicas: 2,
  resources: { cpu: '100m', memory: '64Mi' },
  handler: async (event, ctx) => {
    ctx.log(`fulfilled order ${event.data.id} (total ${event.data.total.toFixed(2)}) on replica ${ctx.workload.replica}`)
  }
})
