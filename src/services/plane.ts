/**
 * The service plane of one node (docs/services.md): what it knows of
 * services, the health probes of its own replicas, its service records in
 * the DHT, calls in and out, and egress for its actors.
 */
import { describeError } from '../errors.js'
import type { MeshNode } from '../transport/mesh-node.js'
import type { Logger } from '../transport/logger.js'
import type { Principal } from '../policy/engine.js'
import { senderOf, type Trust } from '../policy/trust.js'
import type { CallOptions, CallRequest, FetchInit, FetchReply, WorkloadSpec } from '../workloads/types.js'
import { CallRouter, type Caller, type CallMetrics } from './calls.js'
import { ServiceDirectory, SERVICE_RECORD_REFRESH_MS, type Endpoint, type KnownReplica, type PublishedRecord, type ServiceCidr, type ServiceSpec } from './directory.js'
import { EgressError } from './errors.js'
import { ServiceCatalog } from './catalog.js'

/** How often a node probes its replicas that offer services. */
export const PROBE_INTERVAL_MS = 1_000
const PROBE_TIMEOUT_MS = 1_000
/** Largest reply body `ctx.fetch` hands back. */
const MAX_FETCH_BYTES = 8 * 1024 * 1024
const DEFAULT_FETCH_TIMEOUT_MS = 10_000

export interface LocalReplicaState {
  workloadId: string
  replica: number
  epoch: number
  status: KnownReplica['status']
}

export interface ServicePlaneInit {
  mesh: MeshNode
  trust: Trust
  log: Logger
  metrics?: CallMetrics & { egress: (host: string, outcome: string) => void }
  /** The workloads the node knows of (not deleted). */
  workloads: () => WorkloadSpec[]
  /** This node's own replicas. */
  localReplicas: () => LocalReplicaState[]
  /** Live peers' replicas of a workload, from their heartbeats. */
  remoteReplicas: (workloadId: string) => KnownReplica[]
  /** Peers the workload's record places replicas on. */
  placedOn: (workloadId: string) => string[]
  /** The health probe of one local replica: resolves true when it answers. */
  probe: (spec: WorkloadSpec, replica: LocalReplicaState, timeoutMs: number) => Promise<boolean>
  /** Runs a call on a local replica. */
  serveLocal: (endpoint: Endpoint, request: CallRequest, deadline: number) => Promise<unknown>
  /** The readiness of local replicas changed: heartbeat soon. */
  onReadinessChanged?: () => void
  /** Live peers (to pull the Kubernetes Services catalog from). */
  livePeers: () => string[]
  /** The block service addresses are taken from (default 198.18.0.0/16). */
  serviceCidr?: ServiceCidr
}

export class ServicePlane {
  readonly directory: ServiceDirectory
  readonly router: CallRouter
  private readonly ready = new Map<string, boolean>()
  /** Kubernetes Services, mesh-wide. */
  readonly catalog: ServiceCatalog
  private readonly timers: NodeJS.Timeout[] = []
  private probing = false
  private stopped = false

  constructor (private readonly init: ServicePlaneInit) {
    this.catalog = new ServiceCatalog(init.mesh, init.trust, init.log, init.livePeers)
    this.directory = new ServiceDirectory({
      selfId: init.mesh.peerId,
      workloads: init.workloads,
      kubeServices: () => this.catalog.list(),
      replicas: id => this.replicasOf(id),
      placedOn: init.placedOn
    }, {
      put: async (key, value) => { await init.mesh.putRecord(key, value, { signal: AbortSignal.timeout(10_000) }) },
      get: async key => await init.mesh.getRecord(key, { signal: AbortSignal.timeout(5_000) })
    }, init.log, init.serviceCidr)
    this.router = new CallRouter({ mesh: init.mesh, trust: init.trust, directory: this.directory, log: init.log, ...(init.metrics != null ? { metrics: init.metrics } : {}), serveLocal: init.serveLocal })
  }

  async start (): Promise<void> {
    await this.catalog.start()
    await this.router.start()
    this.every(PROBE_INTERVAL_MS, () => { void this.probeAll() })
    this.every(SERVICE_RECORD_REFRESH_MS, () => { void this.directory.publish() })
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.catalog.stop()
    await this.directory.withdraw().catch(() => {})
  }

  private every (ms: number, fn: () => void): void {
    const t = setInterval(fn, ms)
    t.unref()
    this.timers.push(t)
  }

  /** Whether a local replica answered its last probe; undefined for replicas of workloads that offer no service. */
  readiness (workloadId: string, replica: number, epoch: number): boolean | undefined {
    return this.ready.get(`${workloadId}#${replica}@${epoch}`)
  }

  private replicasOf (workloadId: string): KnownReplica[] {
    const self = this.init.mesh.peerId
    const out: KnownReplica[] = []
    for (const r of this.init.localReplicas()) {
      if (r.workloadId !== workloadId) continue
      out.push({ peerId: self, replica: r.replica, epoch: r.epoch, status: r.status, ready: this.readiness(r.workloadId, r.replica, r.epoch) === true })
    }
    for (const r of this.init.remoteReplicas(workloadId)) {
      if (r.peerId === self) continue
      out.push(r)
    }
    return out
  }

  /** Probes every local replica of a workload that offers a service (one round at a time). */
  private async probeAll (): Promise<void> {
    if (this.probing || this.stopped) return
    this.probing = true
    try {
      const offering = new Map<string, WorkloadSpec>()
      const services = this.directory.services()
      for (const s of services) for (const w of this.directory.workloadsOf(s)) offering.set(w.id, w)
      const seen = new Set<string>()
      let changed = false
      await Promise.all(this.init.localReplicas().map(async r => {
        const spec = offering.get(r.workloadId)
        if (spec == null) return
        const key = `${r.workloadId}#${r.replica}@${r.epoch}`
        seen.add(key)
        let ok = false
        if (r.status === 'running') {
          try {
            ok = await this.init.probe(spec, r, PROBE_TIMEOUT_MS)
          } catch (err) {
            this.init.log.debug({ workload: r.workloadId, replica: r.replica, err: describeError(err) }, 'health probe failed')
          }
        }
        if (this.ready.get(key) !== ok) changed = true
        this.ready.set(key, ok)
      }))
      for (const key of this.ready.keys()) if (!seen.has(key)) { this.ready.delete(key); changed = true }
      if (changed) {
        this.init.onReadinessChanged?.()
        void this.directory.publish()
      }
    } finally {
      this.probing = false
    }
  }

  /** A call from a local replica (its workload identity) or from the API (the current principal). */
  async call (ref: string, data: unknown, options: CallOptions, caller: Caller): Promise<unknown> {
    return await this.router.call(ref, data, options, caller)
  }

  /** The services the node knows, each with its replicas and the records their hosts published. */
  async describe (service: ServiceSpec, { records = true } = {}): Promise<{ service: ServiceSpec, address: string | undefined, replicas: ReturnType<ServiceDirectory['replicas']>, records: PublishedRecord[] }> {
    return {
      service,
      address: this.directory.addresses().get(service.id),
      replicas: this.directory.replicas(service),
      records: records ? await this.directory.publishedRecords(service) : []
    }
  }

  /**
   * `ctx.fetch` of an actor: the URL's host must be granted to the workload
   * (`egress` on `{ kind: host, name }`), then the node fetches it. Every
   * decision is counted; a refusal is logged.
   */
  async fetch (principal: Principal, url: string, init: FetchInit): Promise<FetchReply> {
    let target: URL
    try {
      target = new URL(url)
    } catch {
      throw new EgressError(url, 'not an absolute URL')
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new EgressError(url, `only http and https are allowed, not ${target.protocol}`)
    const host = target.hostname.replace(/^\[(.*)\]$/, '$1')
    const decision = this.init.trust.decide(principal, 'egress', { kind: 'host', name: host })
    if (!decision.allowed) {
      this.init.metrics?.egress(host, 'denied')
      this.init.log.warn({ host, caller: senderOf(principal), rule: decision.rule ?? 'default-deny' }, 'egress denied')
      throw new EgressError(url, `forbidden: ${senderOf(principal)} may not reach ${host} (policy ${this.init.trust.policy.name} v${this.init.trust.policy.version}: ${decision.reason})`)
    }
    const timeout = init.timeout ?? DEFAULT_FETCH_TIMEOUT_MS
    try {
      const res = await fetch(target, { method: init.method ?? 'GET', ...(init.headers != null ? { headers: init.headers } : {}), ...(init.body != null ? { body: init.body } : {}), signal: AbortSignal.timeout(timeout), redirect: 'manual' })
      const length = Number(res.headers.get('content-length') ?? '0')
      if (length > MAX_FETCH_BYTES) throw new EgressError(url, `the reply of ${length} bytes exceeds ${MAX_FETCH_BYTES}`)
      const body = new Uint8Array(await res.arrayBuffer())
      if (body.byteLength > MAX_FETCH_BYTES) throw new EgressError(url, `the reply of ${body.byteLength} bytes exceeds ${MAX_FETCH_BYTES}`)
      this.init.metrics?.egress(host, 'allowed')
      return { status: res.status, statusText: res.statusText, headers: [...res.headers.entries()], body }
    } catch (err) {
      this.init.metrics?.egress(host, 'failed')
      if (err instanceof EgressError) throw err
      throw new EgressError(url, describeError(err))
    }
  }
}
