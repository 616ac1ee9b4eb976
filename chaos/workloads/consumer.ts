/**
 * The chaos queue group: 3 replicas share topic `chaos.events` (delivery
 * 'queue': one replica per event). Every handling is appended, synchronously
 * and before the handler returns, as one JSON line to
 * `$CHAOS_HANDLED_DIR/handled-<pid>.jsonl` (the node process's pid; the
 * worker thread inherits the node's environment), so the record survives a
 * SIGKILL of the node right after. chaos/run.ts reads every file at the end
 * to count events handled more than once. It also logs, for `beemesh logs`.
 */
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { defineWorkload } from 'beemesh'

export default defineWorkload<{ n: number }>({
  name: 'chaos-consumer',
  kind: 'stateless',
  topics: ['chaos.events'],
  replicas: 3,
  delivery: 'queue',
  resources: { cpu: '100m', memory: '64Mi' },
  handler: (event, ctx) => {
    const dir = process.env.CHAOS_HANDLED_DIR
    const line = { id: event.id, n: event.data.n, replica: ctx.workload.replica, node: ctx.workload.nodeId, epoch: ctx.workload.epoch, attempt: event.attempt, ts: Date.now() }
    if (dir != null && dir !== '') appendFileSync(join(dir, `handled-${process.pid}.jsonl`), JSON.stringify(line) + '\n')
    ctx.log(`handled ${event.data.n}`, { id: event.id })
  }
})
