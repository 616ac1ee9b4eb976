import { readdir } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import type { LogLine } from '../../protocol/messages.js'
import type { WorkloadStatus } from '../../workloads/views.js'
import { loadApplyFile } from '../../bundle/bundler.js'
import { describeError } from '../../errors.js'
import { ApiClient } from '../api-client.js'

export interface ReadyNode { name: string, url: string, peerId: string, token?: string }

/**
 * What `npm start` shows after the mesh is ready: applies every workload module
 * in `dir` (spread over the nodes as tenderers), then publishes an order every
 * second and prints the replicas' log lines as the events flow through.
 */
export async function runExample (dir: string, nodes: ReadyNode[], { intervalMs = 1_000 } = {}): Promise<void> {
  const names = new Map(nodes.map(n => [n.peerId, n.name]))
  const modules = (await readdir(dir)).filter(f => /\.(ts|js|mjs)$/.test(f)).sort().map(f => join(dir, f))
  if (modules.length === 0) throw new Error(`no workload modules (.ts/.js) in ${dir}`)
  const workloads: string[] = []
  for (const [i, file] of modules.entries()) {
    const bundle = await loadApplyFile(file)
    const node = nodes[i % nodes.length]!
    const started = Date.now()
    const status = await new ApiClient(node.url, node.token).request<WorkloadStatus>('/v1/workloads', {
      method: 'POST',
      body: { spec: { ...bundle.spec, createdAt: Date.now() }, artifact: Buffer.from(bundle.code).toString('base64') },
      timeoutMs: 60_000
    })
    workloads.push(status.id)
    const where = status.placement.map(p => `replica ${p.replica} → ${names.get(p.peerId) ?? p.peerId}`).join(', ')
    process.stdout.write(`applied ${relative(process.cwd(), resolve(file))} as ${status.id} via ${node.name} in ${Date.now() - started} ms: ${where}\n`)
  }
  process.stdout.write('publishing an order every second on topic "orders"; log lines follow (Ctrl-C stops)\n')

  const api = new ApiClient(nodes[0]!.url, nodes[0]!.token)
  const since = new Map(workloads.map(w => [w, Date.now() - 1]))
  let id = 1
  const publisher = setInterval(() => {
    const order = { id: id++, items: [{ sku: 'honey-jar', qty: 1 + (id % 3), unitPrice: 7.5 }, { sku: 'beeswax', qty: 2, unitPrice: 3.25 }] }
    api.request('/v1/topics/orders/messages', { method: 'POST', body: { data: order }, timeoutMs: 5_000 }).catch(err => {
      process.stderr.write(`publish failed: ${describeError(err)}\n`)
    })
  }, intervalMs)
  publisher.unref()
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, intervalMs))
    for (const w of workloads) {
      let lines: LogLine[]
      try {
        lines = await api.request<LogLine[]>(`/v1/workloads/${w}/logs?since=${since.get(w)!}`, { timeoutMs: 5_000 })
      } catch {
        continue
      }
      for (const l of lines) {
        process.stdout.write(`  ${w.split('/')[1]!.padEnd(8)} replica ${l.replica} on ${(names.get(l.nodeId) ?? l.nodeId).padEnd(6)}  ${l.message}\n`)
        since.set(w, Math.max(since.get(w)!, l.ts))
      }
    }
  }
}
