/**
 * Services by name (docs/services.md). A service is offered by a workload
 * (`services: [{ name, port? }]` in its definition) or is a Kubernetes Service
 * selecting workloads by label. Its endpoints are the running replicas of
 * those workloads that answer their health probe, as their hosts' heartbeats
 * say; and each host publishes a signed, expiring record per service in the
 * DHT (`/beemesh/svc/<namespace>/<name>/<peer>`), refreshed while it has a
 * ready replica and overwritten by an empty one when it has none.
 */
import * as z from 'zod'
import { describeError } from '../errors.js'
import type { Logger } from '../transport/logger.js'
import type { Resource } from '../policy/engine.js'
import type { WorkloadSpec } from '../workloads/types.js'
import { CallError } from './errors.js'

export const CALL_PROTOCOL = '/beemesh/call/1.0.0'
export const TUNNEL_PROTOCOL = '/beemesh/tunnel/1.0.0'

/** How long a published service record is good for, and how often a host refreshes it. */
export const SERVICE_RECORD_TTL_MS = 15_000
export const SERVICE_RECORD_REFRESH_MS = 5_000

/** A /16 service addresses are taken from. */
export interface ServiceCidr { base: readonly [number, number], bits: 16 }

/** The default block of service addresses (RFC 2544's benchmarking range: no real host uses it). */
export const SERVICE_CIDR: ServiceCidr = { base: [198, 18], bits: 16 }

/** `a.b.0.0/16` (`node start --service-cidr`); undefined when it is not one. */
export function parseServiceCidr (text: string): ServiceCidr | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.0\.0\/16$/.exec(text.trim())
  if (m == null) return undefined
  const a = Number(m[1])
  const b = Number(m[2])
  if (a > 255 || b > 255 || a === 0 || a === 127 || a >= 224) return undefined
  return { base: [a, b], bits: 16 }
}

export function cidrText (cidr: ServiceCidr): string {
  return `${cidr.base[0]}.${cidr.base[1]}.0.0/${cidr.bits}`
}

export interface ServicePort {
  name?: string
  /** The port callers connect to (the service's address on every node). */
  port: number
  /** The container port it reaches. */
  targetPort: number
  /** A Kubernetes Service's targetPort given by the container port's name (resolved into targetPort). */
  targetName?: string
}

/** A service as every node resolves it. */
export interface ServiceSpec {
  /** `<namespace>/<name>` */
  id: string
  namespace: string
  name: string
  /** A workload's own service: that workload's id. */
  workload?: string
  /** A Kubernetes Service: the pod labels it selects. */
  selector?: Record<string, string>
  ports: ServicePort[]
  origin: 'workload' | 'kube'
  createdAt: number
  /** Kubernetes Services: their labels and the object as posted (for GET). */
  labels?: Record<string, string>
  manifest?: string
}

/** A replica a call or a tunnel may go to. */
export interface Endpoint {
  service: string
  workloadId: string
  kind: WorkloadSpec['kind']
  replica: number
  epoch: number
  peerId: string
  /** Container services: the container port to reach (per service port). */
  ports?: ServicePort[]
}

/** A replica as the node knows it: its own, or a peer's from its heartbeat. */
export interface KnownReplica {
  peerId: string
  replica: number
  epoch: number
  status: 'starting' | 'running' | 'failed' | 'exited'
  ready?: boolean
}

export interface DirectorySource {
  selfId: string
  /** The workloads the node knows of (not deleted). */
  workloads: () => WorkloadSpec[]
  /** Kubernetes Services the node knows of. */
  kubeServices: () => ServiceSpec[]
  /** Live replicas of a workload: the node's own and its live peers'. */
  replicas: (workloadId: string) => KnownReplica[]
  /** Peers that hosted a replica of the workload, live or not (from its record): whose service records to look up. */
  placedOn: (workloadId: string) => string[]
}

export const ServiceRecordValue = z.object({
  v: z.literal(1),
  service: z.string().max(200),
  node: z.string().max(128),
  protocol: z.string().max(100),
  endpoints: z.array(z.object({ workload: z.string().max(200), replica: z.number().int().min(0), epoch: z.number().int().min(0), kind: z.enum(['stateless', 'stateful', 'container']), ports: z.array(z.object({ port: z.number().int(), targetPort: z.number().int(), name: z.string().max(63).optional() })).max(16).optional() })).max(1000),
  expiresAt: z.number()
})
export type ServiceRecordValue = z.infer<typeof ServiceRecordValue>

/** A service record as read from the DHT, checked. */
export interface PublishedRecord extends ServiceRecordValue {
  publisher: string
  ts: number
}

export interface RecordStore {
  put: (key: string, value: Uint8Array) => Promise<void>
  get: (key: string) => Promise<{ publisher: string, ts: number, value: Uint8Array } | undefined>
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function serviceRecordKey (serviceId: string, peerId: string): string {
  return `/beemesh/svc/${serviceId}/${peerId}`
}

/** `orders` (the caller's namespace) or `<namespace>/orders`, also `orders.<namespace>` and `orders.<namespace>.svc[.cluster.local]`. */
export function parseServiceRef (ref: string, namespace: string): string {
  const name = ref.trim().replace(/\.svc(\.cluster\.local)?$/, '')
  if (name.includes('/')) return name
  const dot = name.indexOf('.')
  return dot < 0 ? `${namespace}/${name}` : `${name.slice(dot + 1)}/${name.slice(0, dot)}`
}

/** 32-bit FNV-1a: the service address is a function of the service id alone, the same on every node. */
function fnv1a (text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

/**
 * Each service's address in SERVICE_CIDR: from a hash of its id, the next
 * free one on a collision (services in id order, so nodes that know the same
 * services agree). `.0.0`-`.0.255` are left out.
 */
export function serviceAddresses (ids: readonly string[], cidr: ServiceCidr = SERVICE_CIDR): Map<string, string> {
  const out = new Map<string, string>()
  const taken = new Set<number>()
  const size = 2 ** (32 - 16)
  for (const id of [...ids].sort()) {
    let n = fnv1a(id) % size
    while (n < 256 || taken.has(n)) n = (n + 1) % size
    taken.add(n)
    out.set(id, `${cidr.base[0]}.${cidr.base[1]}.${n >> 8}.${n & 255}`)
  }
  return out
}

/** Who a replica is, for in-flight counts, ejection and tried sets. */
export function endpointKey (e: Endpoint): string {
  return `${e.peerId}/${e.workloadId}#${e.replica}`
}

/** The policy's resource for a service (calls and tunnels decide `call` on it). */
export function serviceResource (service: ServiceSpec): Resource {
  return { kind: 'service', namespace: service.namespace, name: service.name, ...(service.labels != null ? { labels: service.labels } : {}) }
}

/** The power of two choices: two endpoints at random, the one with the lower `load`. */
export function pickOfTwo (pool: readonly Endpoint[], load: (key: string) => number): Endpoint | undefined {
  if (pool.length <= 1) return pool[0]
  const a = pool[Math.floor(Math.random() * pool.length)]!
  let b = pool[Math.floor(Math.random() * (pool.length - 1))]!
  if (b === a) b = pool[pool.length - 1]!
  return load(endpointKey(a)) <= load(endpointKey(b)) ? a : b
}

function labelsMatch (selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  const entries = Object.entries(selector)
  return entries.length > 0 && entries.every(([k, v]) => labels?.[k] === v)
}

/** The ports a workload's own service maps: a container's declared port to itself. */
function declaredPorts (spec: WorkloadSpec, port: number | undefined): ServicePort[] {
  if (spec.kind !== 'container' || port == null) return []
  const named = spec.container?.ports.find(p => p.containerPort === port)?.name
  return [{ ...(named != null ? { name: named } : {}), port, targetPort: port }]
}

export class ServiceDirectory {
  private readonly recordCache = new Map<string, { at: number, record?: PublishedRecord }>()
  /** Keys this node published with endpoints, so it can empty them once it has none. */
  private readonly published = new Map<string, string>()

  constructor (private readonly source: DirectorySource, private readonly records: RecordStore, private readonly log: Logger, readonly cidr: ServiceCidr = SERVICE_CIDR) {}

  /** Every service the node knows of: Kubernetes Services first, then workloads' own, oldest first on a name clash. */
  services (): ServiceSpec[] {
    const out = new Map<string, ServiceSpec>()
    for (const s of this.source.kubeServices()) out.set(s.id, s)
    const specs = this.source.workloads().slice().sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
    for (const spec of specs) {
      for (const d of spec.services ?? []) {
        const id = `${spec.namespace}/${d.name}`
        if (out.has(id)) continue
        out.set(id, { id, namespace: spec.namespace, name: d.name, workload: spec.id, ports: declaredPorts(spec, d.port), origin: 'workload', createdAt: spec.createdAt })
      }
    }
    return [...out.values()]
  }

  /** The service a reference names, or CallError UNKNOWN_SERVICE. */
  resolve (ref: string, namespace: string): ServiceSpec {
    const id = parseServiceRef(ref, namespace)
    const found = this.services().find(s => s.id === id)
    if (found == null) throw new CallError('UNKNOWN_SERVICE', id, `no workload offers service "${id}" (beemesh services lists them)`)
    return found
  }

  /** The stable address of each known service on every node. */
  addresses (): Map<string, string> {
    return serviceAddresses(this.services().map(s => s.id), this.cidr)
  }

  /** The workloads a service reaches. */
  workloadsOf (service: ServiceSpec): WorkloadSpec[] {
    if (service.workload != null) return this.source.workloads().filter(w => w.id === service.workload)
    return service.selector != null ? this.selecting(service.namespace, service.selector) : []
  }

  /** The workloads of a namespace whose labels a selector matches. */
  selecting (namespace: string, selector: Record<string, string>): WorkloadSpec[] {
    return this.source.workloads().filter(w => w.namespace === namespace && labelsMatch(selector, w.labels))
  }

  /**
   * Every replica of the service, with its state: `ready` ones are endpoints
   * (running and answering their probe), the others are listed not ready.
   */
  replicas (service: ServiceSpec): Array<Endpoint & { ready: boolean, status: KnownReplica['status'] }> {
    const out: Array<Endpoint & { ready: boolean, status: KnownReplica['status'] }> = []
    for (const spec of this.workloadsOf(service)) {
      const ports = spec.kind === 'container' ? service.ports : undefined
      for (const r of this.source.replicas(spec.id)) {
        if (r.status === 'failed' || r.status === 'exited') continue
        out.push({ service: service.id, workloadId: spec.id, kind: spec.kind, replica: r.replica, epoch: r.epoch, peerId: r.peerId, ...(ports != null ? { ports } : {}), ready: r.status === 'running' && r.ready === true, status: r.status })
      }
    }
    return out
  }

  /** The replicas calls may go to now; CallError NO_HEALTHY_REPLICA when there are none. */
  endpoints (service: ServiceSpec): Endpoint[] {
    const all = this.replicas(service)
    const ready = all.filter(r => r.ready).map(({ ready: _r, status: _s, ...e }) => e)
    if (ready.length > 0) return ready
    const workloads = this.workloadsOf(service)
    const why = workloads.length === 0
      ? `it selects no workload${service.selector != null ? ` (selector ${Object.entries(service.selector).map(([k, v]) => `${k}=${v}`).join(',')})` : ''}`
      : all.length === 0
        ? `no replica of ${workloads.map(w => w.id).join(', ')} is running`
        : `none of its ${all.length} replica(s) is ready (running and answering its health probe)`
    throw new CallError('NO_HEALTHY_REPLICA', service.id, `no healthy replica: ${why}`)
  }

  // ---------------------------------------------------------------- DHT records

  /**
   * Publishes this node's record of each service it has ready replicas of,
   * and an empty record for each it published before and has none of now.
   */
  async publish (): Promise<void> {
    const mine = new Map<string, ServiceRecordValue>()
    const expiresAt = Date.now() + SERVICE_RECORD_TTL_MS
    for (const service of this.services()) {
      const local = this.replicas(service).filter(r => r.peerId === this.source.selfId && r.ready)
      if (local.length === 0) continue
      const protocol = local.some(r => r.kind === 'container') ? TUNNEL_PROTOCOL : CALL_PROTOCOL
      mine.set(service.id, {
        v: 1,
        service: service.id,
        node: this.source.selfId,
        protocol,
        endpoints: local.map(r => ({ workload: r.workloadId, replica: r.replica, epoch: r.epoch, kind: r.kind, ...(r.ports != null ? { ports: r.ports } : {}) })),
        expiresAt
      })
    }
    const puts: Array<Promise<void>> = []
    for (const [id, value] of mine) {
      const key = serviceRecordKey(id, this.source.selfId)
      this.published.set(key, id)
      puts.push(this.put(key, value))
    }
    for (const [key, id] of this.published) {
      if (mine.has(id)) continue
      this.published.delete(key)
      puts.push(this.put(key, { v: 1, service: id, node: this.source.selfId, protocol: CALL_PROTOCOL, endpoints: [], expiresAt: Date.now() }))
    }
    await Promise.all(puts)
  }

  /** Empties every record this node published (it is stopping). */
  async withdraw (): Promise<void> {
    const now = Date.now()
    await Promise.all([...this.published].map(async ([key, id]) => {
      this.published.delete(key)
      await this.put(key, { v: 1, service: id, node: this.source.selfId, protocol: CALL_PROTOCOL, endpoints: [], expiresAt: now })
    }))
  }

  private async put (key: string, value: ServiceRecordValue): Promise<void> {
    try {
      await this.records.put(key, enc.encode(JSON.stringify(value)))
      this.recordCache.delete(key)
    } catch (err) {
      this.log.debug({ key, err: describeError(err) }, 'service record put failed')
    }
  }

  /**
   * The service's records in the DHT that have not expired, one per host:
   * read from every node that hosts or hosted a replica of it. An empty or
   * expired record (its host stopped the replica, or died) is left out.
   */
  async publishedRecords (service: ServiceSpec, { maxAgeMs = 1_000 } = {}): Promise<PublishedRecord[]> {
    const peers = new Set<string>()
    for (const spec of this.workloadsOf(service)) {
      for (const p of this.source.placedOn(spec.id)) peers.add(p)
      for (const r of this.source.replicas(spec.id)) peers.add(r.peerId)
    }
    const now = Date.now()
    const found = await Promise.all([...peers].map(async peer => await this.readRecord(serviceRecordKey(service.id, peer), peer, maxAgeMs)))
    return found.filter((r): r is PublishedRecord => r != null && r.expiresAt > now && r.endpoints.length > 0)
  }

  private async readRecord (key: string, peer: string, maxAgeMs: number): Promise<PublishedRecord | undefined> {
    const cached = this.recordCache.get(key)
    if (cached != null && Date.now() - cached.at < maxAgeMs) return cached.record
    let record: PublishedRecord | undefined
    try {
      const got = await this.records.get(key)
      if (got != null) {
        const value = ServiceRecordValue.parse(JSON.parse(dec.decode(got.value)))
        // Only the host itself may speak for its replicas.
        if (got.publisher === peer && value.node === peer) record = { ...value, publisher: got.publisher, ts: got.ts }
      }
    } catch (err) {
      this.log.debug({ key, err: describeError(err) }, 'service record not readable')
    }
    this.recordCache.set(key, { at: Date.now(), ...(record != null ? { record } : {}) })
    return record
  }
}
