/**
 * Kubernetes Services, mesh-wide (docs/services.md). A Service is created on
 * any node (kubectl apply); that node gossips it on SERVICES_TOPIC and puts it
 * in the DHT. Every node keeps the whole catalog: for each service id the
 * newest version wins (`updatedAt`, then the writer's id), a deletion is a
 * tombstone kept for a day so a late copy does not bring the service back,
 * and every 15 s a node pulls a peer's catalog (SERVICES_PROTOCOL) and merges
 * it, so a node that missed gossip (new, restarted, partitioned) catches up.
 *
 * Each entry is sealed by the node that wrote it (its signature and
 * root-signed credential travel with the entry, through gossip and sync
 * alike): an entry not signed by a member, or naming another writer than its
 * signer, is refused; so is one dated more than MAX_AHEAD_MS ahead of the
 * clock (a far-future entry would win every merge and make its tombstone
 * immortal). Tombstones are dropped after TOMBSTONE_MS, so the map stays bounded.
 */
import * as z from 'zod'
import { describeError } from '../errors.js'
import type { MeshMessage, MeshNode } from '../transport/mesh-node.js'
import type { Logger } from '../transport/logger.js'
import { callRpc, serveRpc } from '../transport/rpc.js'
import type { ServiceSpec } from './directory.js'
import type { Trust } from '../policy/trust.js'

export const SERVICES_TOPIC = 'beemesh.services.v1'
export const SERVICES_PROTOCOL = '/beemesh/services/1.0.0'
const SYNC_EVERY_MS = 15_000
export const TOMBSTONE_MS = 24 * 60 * 60 * 1000
/** An entry dated further ahead of this node's clock is refused. */
export const MAX_AHEAD_MS = 60_000
const MAX_SERVICES = 10_000
const SERVICE_DOMAIN = 'beemesh-service/v1'

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
const Catalog = z.object({ entries: z.array(z.unknown()).max(MAX_SERVICES) })
/** An entry as it travels: sealed by its writer (`{e, c}`, see Trust.sealValue). */
export type SealedEntry = Awaited<ReturnType<Trust['sealValue']>>

/** A catalog entry refused, with the reason. */
export class RefusedEntry extends Error {
  constructor (readonly reason: 'unsigned' | 'wrong-writer' | 'future' | 'malformed', message: string) {
    super(message)
    this.name = 'RefusedEntry'
  }
}

/**
 * Opens one sealed catalog entry: signed by a member node (any age: the
 * entry's own date decides which version wins), written by that node, and
 * not dated more than MAX_AHEAD_MS ahead. Throws RefusedEntry.
 */
export async function openEntry (trust: Trust, sealed: unknown, now = Date.now()): Promise<Entry> {
  let opened
  try {
    opened = await trust.open(SERVICE_DOMAIN, sealed, { replay: false, maxAgeMs: Number.POSITIVE_INFINITY })
  } catch (err) {
    throw new RefusedEntry('unsigned', `service entry is not sealed by a member: ${describeError(err)}`)
  }
  if (opened.sender.principal.kind !== 'node') throw new RefusedEntry('unsigned', `service entry is signed by ${opened.sender.signer}, not a member node`)
  let entry: Entry
  try {
    entry = Entry.parse(JSON.parse(opened.body))
  } catch (err) {
    throw new RefusedEntry('malformed', `service entry from ${opened.sender.signer} is malformed: ${describeError(err)}`)
  }
  if (entry.by !== opened.sender.signer) throw new RefusedEntry('wrong-writer', `service entry for ${entry.id} names writer ${entry.by} but is signed by ${opened.sender.signer}`)
  if (entry.updatedAt > now + MAX_AHEAD_MS) throw new RefusedEntry('future', `service entry for ${entry.id} from ${entry.by} is dated ${entry.updatedAt - now} ms ahead (limit ${MAX_AHEAD_MS} ms)`)
  return entry
}

interface Held { entry: Entry, sealed: SealedEntry }

/**
 * Merges opened entries into `entries` (newest wins; tombstones older than
 * `tombstoneMs` dropped, and not taken in); true when something changed.
 */
export function mergeEntries (entries: Map<string, Held>, incoming: Held[], now = Date.now(), tombstoneMs = TOMBSTONE_MS): boolean {
  let changed = false
  for (const h of incoming) {
    const e = h.entry
    if (e.spec != null && e.spec.id !== e.id) continue
    if (e.updatedAt > now + MAX_AHEAD_MS) continue
    if (e.spec == null && e.updatedAt < now - tombstoneMs) continue
    if (!newer(e, entries.get(e.id)?.entry)) continue
    if (entries.size >= MAX_SERVICES && !entries.has(e.id)) continue
    entries.set(e.id, h)
    changed = true
  }
  for (const [id, h] of entries) if (h.entry.spec == null && h.entry.updatedAt < now - tombstoneMs) { entries.delete(id); changed = true }
  return changed
}

function newer (a: Entry, b: Entry | undefined): boolean {
  if (b == null) return true
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt
  return a.by > b.by
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export class ServiceCatalog {
  private readonly entries = new Map<string, Held>()
  private timer?: NodeJS.Timeout
  private readonly listeners = new Set<() => void>()

  constructor (private readonly mesh: MeshNode, private readonly trust: Trust, private readonly log: Logger, private readonly livePeers: () => string[]) {}

  async start (): Promise<void> {
    this.mesh.subscribe(SERVICES_TOPIC)
    this.mesh.addEventListener('message', this.onMessage)
    await serveRpc(this.mesh, SERVICES_PROTOCOL, async () => ({ result: { entries: [...this.entries.values()].map(h => h.sealed) } }), this.log)
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
    return [...this.entries.values()].flatMap(({ entry: e }) => e.spec != null ? [e.spec as ServiceSpec] : [])
  }

  get (id: string): ServiceSpec | undefined {
    return this.entries.get(id)?.entry.spec as ServiceSpec | undefined
  }

  /** Creates or replaces a service, here and on the mesh. */
  async put (spec: ServiceSpec): Promise<void> {
    await this.write({ id: spec.id, updatedAt: Date.now(), by: this.mesh.peerId, spec: ServiceSpecSchema.parse(spec) as Entry['spec'] })
  }

  /** Deletes a service, here and on the mesh; false when it was not there. */
  async delete (id: string): Promise<boolean> {
    if (this.entries.get(id)?.entry.spec == null) return false
    await this.write({ id, updatedAt: Date.now(), by: this.mesh.peerId })
    return true
  }

  private async write (entry: Entry): Promise<void> {
    const sealed = await this.trust.sealValue(SERVICE_DOMAIN, JSON.stringify(entry))
    this.merge([{ entry, sealed }])
    const bytes = enc.encode(JSON.stringify(sealed))
    await this.mesh.publish(SERVICES_TOPIC, bytes).catch(err => { this.log.debug({ err: describeError(err) }, 'service gossip failed') })
    await this.mesh.putRecord(`/beemesh/service/${entry.id}`, bytes, { signal: AbortSignal.timeout(10_000) }).catch(err => { this.log.debug({ err: describeError(err) }, 'service record put failed') })
  }

  private merge (held: Held[]): void {
    if (mergeEntries(this.entries, held)) for (const l of this.listeners) l()
  }

  /** Opens sealed entries, dropping (and logging) those refused. */
  private async openAll (values: unknown[], from: string): Promise<Held[]> {
    const held: Held[] = []
    for (const value of values) {
      try {
        held.push({ entry: await openEntry(this.trust, value), sealed: value as SealedEntry })
      } catch (err) {
        this.log.debug({ from, err: describeError(err) }, 'refused a service catalog entry')
      }
    }
    return held
  }

  private readonly onMessage = (evt: CustomEvent<MeshMessage>): void => {
    if (evt.detail.topic !== SERVICES_TOPIC) return
    let value: unknown
    try {
      value = JSON.parse(dec.decode(evt.detail.data))
    } catch (err) {
      this.log.debug({ from: evt.detail.from, err: describeError(err) }, 'dropped a malformed service message')
      return
    }
    void this.openAll([value], evt.detail.from).then(held => { this.merge(held) })
  }

  /** Pulls one live peer's catalog and merges it. */
  async sync (): Promise<void> {
    const peers = this.livePeers().filter(p => p !== this.mesh.peerId)
    const peer = peers[Math.floor(Math.random() * peers.length)]
    if (peer == null) return
    try {
      const { result } = await callRpc(this.mesh, peer, SERVICES_PROTOCOL, {}, { timeoutMs: 5_000 })
      this.merge(await this.openAll(Catalog.parse(result).entries, peer))
    } catch (err) {
      this.log.debug({ peer, err: describeError(err) }, 'service catalog sync failed')
    }
  }
}
