import type { NodeStatus } from '../../workloads/views.js'
import type { MeshPeer, PutResult } from '../../transport/mesh-node.js'
import type { PublishOutcome } from '../../workloads/views.js'
import { BeeMeshError, InvalidArgumentError } from '../../errors.js'
import { ApiClient, sseEvents } from '../api-client.js'
import { formatAge, printObject, printRows, type OutputFormat } from '../output.js'

export interface ClientOptions {
  api: string
  output: OutputFormat
}

export async function status (opts: ClientOptions): Promise<void> {
  const s = await new ApiClient(opts.api).request<NodeStatus>('/v1/status', { timeoutMs: 5_000 })
  if (opts.output !== 'table') { printObject(s as unknown as Record<string, unknown>, opts.output); return }
  printObject({ peerId: s.peerId, state: s.state, uptime: formatAge(s.uptimeMs), peers: s.peerCount, ...(s.dht != null ? { dhtRoutingTable: s.dht.routingTable } : {}), ...(s.heartbeatMs != null ? { heartbeatEvery: `${s.heartbeatMs} ms` } : {}), addresses: s.addresses, ...(s.sandbox != null ? { sandbox: s.sandbox.isolation === 'confined' ? 'confined' : `${s.sandbox.isolation} (host cannot confine: ${s.sandbox.reason ?? 'unknown'})` } : {}), dataDir: s.dataDir, version: s.version }, 'table')
}

export async function peers (opts: ClientOptions): Promise<void> {
  const list = await new ApiClient(opts.api).request<MeshPeer[]>('/v1/peers', { timeoutMs: 5_000 })
  const now = Date.now()
  printRows(list, [
    { header: 'PEER ID', value: p => p.peerId },
    { header: 'DIRECTION', value: p => p.direction },
    { header: 'ADDRESS', value: p => p.addrs.join(', ') },
    { header: 'AGE', value: p => formatAge(now - p.openedAt) }
  ], opts.output)
}

export async function recordPut (key: string, value: string, opts: ClientOptions): Promise<void> {
  const result = await new ApiClient(opts.api).request<PutResult>('/v1/records', { method: 'PUT', body: { key, value }, timeoutMs: 15_000 })
  printObject(result as unknown as Record<string, unknown>, opts.output)
}

export async function recordGet (key: string, opts: ClientOptions): Promise<void> {
  const result = await new ApiClient(opts.api).request<Record<string, unknown>>(`/v1/records?key=${encodeURIComponent(key)}`, { timeoutMs: 15_000 })
  const { valueBase64: _b64, ...shown } = result
  printObject(opts.output === 'table' ? { ...shown, ts: new Date(Number(result.ts)).toISOString() } : result, opts.output)
}

export async function publish (topic: string, json: string, opts: ClientOptions): Promise<void> {
  let data: unknown
  try {
    data = JSON.parse(json)
  } catch (err) {
    throw new InvalidArgumentError(`message is not valid JSON: ${(err as Error).message}`)
  }
  const result = await new ApiClient(opts.api).request<PublishOutcome>(`/v1/topics/${encodeURIComponent(topic)}/messages`, { method: 'POST', body: { data }, timeoutMs: 10_000 })
  if (opts.output === 'table') process.stdout.write(`published ${result.id} to ${topic}: ${result.recipients.length} peer(s)${result.localReplicas > 0 ? `, ${result.localReplicas} local replica(s)` : ''}\n`)
  else printObject(result as unknown as Record<string, unknown>, opts.output)
}

/** Streams a topic's messages as JSON lines until `count` arrived (or forever). */
export async function subscribe (topic: string, opts: ClientOptions & { count?: string }): Promise<void> {
  const limit = opts.count != null ? Number(opts.count) : Infinity
  if (!(limit > 0)) throw new InvalidArgumentError(`--count must be a positive number, got "${opts.count}"`)
  const controller = new AbortController()
  const res = await new ApiClient(opts.api).fetch(`/v1/topics/${encodeURIComponent(topic)}/messages`, { signal: controller.signal })
  if (!res.ok || res.body == null) throw new BeeMeshError(`cannot subscribe to "${topic}": HTTP ${res.status}`)
  let seen = 0
  try {
    for await (const { event, data } of sseEvents(res.body)) {
      if (event === 'subscribed') process.stderr.write(`subscribed to ${topic}\n`)
      if (event === 'message' && data != null) {
        process.stdout.write(data + '\n')
        if (++seen >= limit) { controller.abort(); return }
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return
    throw err
  }
}
