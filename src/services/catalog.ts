/**
 * Kubernetes Services, mesh-wide (docs/services.md). A Service is created on
 * any node (kubectl apply); that node gossips it on SERVICES_TOPIC and puts it
 * in the DHT. Every node keeps the whole catalog: for each service id the
 * newest version wins (`updatedAt`, then the writer's id), a deletion is a
 * tombstone kept for a day so a late copy does not bring the service back,
 * and every 15 s a node pulls a peer's catalog (SERVICES_PROTOCOL) and merges
 * it, so a node that missed gossip (new, restarted, partitioned) catches up.
 */
import { z } from 'zod'
import { describeError } from '../errors.js'
import type { MeshMessage, MeshNode } from '../transport/mesh-node.js'
import type { Logger } from '../transport/logger.js'
import { callRpc, serveRpc } from '../transport/rpc.js'
import type { ServiceSpec } from './directory.js'

export const SERVICES_TOPIC = 'beemesh.services.v1'
export const SERVICES_PROTOCOL = '/beemesh/services/1.0.0'
const SYNC_EVERY_MS = 15_000
const TOMBSTONE_MS = 24 * 60 * 60 * 1000
const MAX_SERVICES = 10_000

const name = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/)
export const ServiceSpecSchema = z.object({
  id: z.string().max(127),
  namespace: name,
  name,
  workload: z.string().max(127).optional(),
  selector: z.record(z.string().max(317), z.string().max(63)).optional(),
  ports: z.array(z.object({ name: z.string().max(63).optional(), port: z.number().int().min(1).max(65535), targetPort: z.number().int().min(1).max(65535), targetName: z.string().max(63).optional() })).max(64),
  origin: z.enum(['workload', 'kube']),
  createdAt: z.number(),
  labels: z.record(z.string().max(317), z.string().max(63)).optional(),
  manifest: z.string().max(256 * 1024).optional()
}).refine(s => s.id === `${s.namespace}/${s.name}`, { message: 'id must be <namespace>/<name>' })

const Entry = z.object({
  id: z.string().max(127),
  updatedAt: z.number(),
  by: z.string().max(128),
  /** Absent: deleted. */
  spec: ServiceSpecSchema.optional()
})
type Entry = z.infer<typeof Entry>
const Catalog = z.object({ entries: z.array(Entry).max(MAX_SERVICES) })

function newer (a: Entry, b: Entry | undefined): boolean {
  if (b == null) return true
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt
  return a.by > b.by
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export class ServiceCatalog {
  private readonly entries = new Map<string, Entry>()
  private timer?: NodeJS.Timeout
  private readonly listeners = new Set<() => void>()

  constructor (private readonly mesh: MeshNode, private readonly log: Logger, private readonly livePeers: () => string[]) {}

  async start (): Promise<void> {
    this.mesh.subscribe(SERVICES_TOPIC)
    this.mesh.addEventListener('message', this.onMessage)
    await serveRpc(this.mesh, SERVICES_PROTOCOL, async () => ({ result: { entries: [...this.entries.values()] } }), this.log)
    this.timer = setInterval(() => { void this.sync() }, SYNC_EVERY_MS)
    this.timer.unref()
    setTimeout(() => { void this.sync() }, 1_000).unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.mesh.removeEventListener('message', this.onMessage)
  }

  onChange (listener: () => void): void {
    this.listeners.add(listener)
  }

  list (): ServiceSpec[] {
    return [...this.entries.values()].flatMap(e => e.spec != null ? [e.spec as ServiceSpec] : [])
  }

  get (id: string): ServiceSpec | undefined {
    return this.entries.get(id)?.spec as ServiceSpec | undefined
  }

  /** Creates or replaces a service, here and on the mesh. */
  async put (spec: ServiceSpec): Promise<void> {
    await this.write({ id: spec.id, updatedAt: Date.now(), by: this.mesh.peerId, spec: ServiceSpecSchema.parse(spec) as Entry['spec'] })
  }

  /** Deletes a service, here and on the mesh; false when it was not there. */
  async delete (id: string): Promise<boolean> {
    if (this.entries.get(id)?.spec == null) return false
    await this.write({ id, updatedAt: Date.now(), by: this.mesh.peerId })
    return true
  }

  private async write (entry: Entry): Promise<void> {
    this.merge([entry])
    const bytes = enc.encode(JSON.stringify(entry))
    await this.mesh.publish(SERVICES_TOPIC, bytes).catch(err => { this.log.debug({ err: describeError(err) }, 'service gossip failed') })
    await this.mesh.putRecord(`/beemesh/service/${entry.id}`, bytes, { signal: AbortSignal.timeout(10_000) }).catch(err => { this.log.debug({ err: describeError(err) }, 'service record put failed') })
  }

  private merge (entries: Entry[]): void {
    let changed = false
    const now = Date.now()
    for (const e of entries) {
      if (e.spec != null && e.spec.id !== e.id) continue
      if (e.spec == null && e.updatedAt < now - TOMBSTONE_MS) continue
      if (!newer(e, this.entries.get(e.id))) continue
      if (this.entries.size >= MAX_SERVICES && !this.entries.has(e.id)) continue
      this.entries.set(e.id, e)
      changed = true
    }
    for (const [id, e] of this.entries) if (e.spec == null && e.updatedAt < now - TOMBSTONE_MS) this.entries.delete(id)
    if (changed) for (const l of this.listeners) l()
  }

  private readonly onMessage = (evt: CustomEvent<MeshMessage>): void => {
    if (evt.detail.topic !== SERVICES_TOPIC) return
    try {
      const entry = Entry.parse(JSON.parse(dec.decode(evt.detail.data)))
      if (entry.by !== evt.detail.from) return
      this.merge([entry])
    } catch (err) {
      this.log.debug({ from: evt.detail.from, err: describeError(err) }, 'dropped a malformed service message')
    }
  }

  /** Pulls one live peer's catalog and merges it. */
  async sync (): Promise<void> {
    const peers = this.livePeers().filter(p => p !== this.mesh.peerId)
    const peer = peers[Math.floor(Math.random() * peers.length)]
    if (peer == null) return
    try {
      const { result } = await callRpc(this.mesh, peer, SERVICES_PROTOCOL, {}, { timeoutMs: 5_000 })
      this.merge(Catalog.parse(result).entries)
    } catch (err) {
      this.log.debug({ peer, err: describeError(err) }, 'service catalog sync failed')
    }
  }
}
