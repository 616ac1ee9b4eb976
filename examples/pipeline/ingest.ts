// Stage 1 of the example pipeline: checks each order from the `orders` topic,
// prices it and passes it on to `orders.priced`. Bad orders are rejected with
// an error, so after its retries they land on the dead-letter topic.
import { defineWorkload } from 'beemesh'

interface Order {
  id: number
  items: Array<{ sku: string, qty: number, unitPrice: number }>
}

export default defineWorkload<Order>({
  name: 'ingest',
  kind: 'stateless',
  topics: ['orders'],
  replicas: 2,
  resources: { cpu: '100m', memory: '64Mi' },
  retries: 1,
  handler: async (event, ctx) => {
    const order = event.data
    if (!Array.isArray(order?.items) || order.items.length === 0) throw new Error(`order ${String(order?.id)} has no items`)
    const total = order.items.reduce((sum, i) => sum + i.qty * i.unitPrice, 0)
    ctx.log(`priced order ${order.id}`, { items: order.items.length, total })
    await ctx.publish('orders.priced', { id: order.id, total, pricedBy: ctx.workload.nodeId })
  }
})
