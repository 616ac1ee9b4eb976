// longer than 700 lines: every plane still lives in this one class; issue 18 splits it into plane folders behind a facade of at most 450 lines
import { randomUUID } from 'node:crypto'
import type { NodeIsolation } from '../sandbox/confine.js'
import { createActor, fromPromise, type ActorRefFrom } from 'xstate'
import { describeError } from '../errors.js'
import { supersedes } from '../machines/fencing.js'
import { evaluate, guardians, reconcile, rendezvousOwner, type NodeOffer } from '../machines/placement.js'
import { schedulerMachine, type AwardMessage, type SchedulerOutput, type TenderMessage } from '../machines/scheduler-machine.js'
import type { ArtifactService } from '../transport/artifacts.js'
import type { Logger } from '../transport/logger.js'
import type { MeshMessage, MeshNode } from '../transport/mesh-node.js'
import { callRpc, serveRpc } from '../transport/rpc.js'
import type { Resources, TopicEvent, WorkloadSpec } from '../workloads/types.js'
import { InvalidWorkloadError, NoSubscribersError, NoTraceError, OwnerUnavailableError, UnschedulableError, WorkloadCompletedError, WorkloadNotFoundError } from '../actors/errors.js'
import { Membership, type HeartbeatContent } from '../membership/membership.js'
import type { NodeSummary, PodEventRecord, PublishOutcome, ReplicaPlacement, WorkloadDescription, WorkloadStatus } from '../workloads/views.js'
import type { MeshView } from '../membership/mesh-view.js'
import { BID_PROTOCOL, BidRequest, REPLICA_PROTOCOL, ReplicaStopRequest, VIEW_PROTOCOL, decodeEnvelope, decodeMessage, encodeMessage, type Heartbeat, HeartbeatTopicMessage, HEARTBEAT_TOPIC, LOGS_PROTOCOL, LogsRequest, SCHEDULER_TOPIC, SchedulerMessage, workloadKey, type LogLine } from '../protocol/messages.js'
import { WorkloadRecordSchema, WorkloadSpecSchema, type PodReport, type SchedulingEvent, type WorkloadRecord, type WorkloadStatusName } from '../workloads/records.js'
import { ReplicaHost, type LocalReplica } from '../stateless/replica-host.js'
import { ContainerHost, type PodOutcome } from '../containers/container-host.js'
import type { ContainerEngine } from '../containers/container-engine.js'
import type { NodeMetrics } from '../actors/metrics.js'
import { MachineHost } from '../stateful/machine-host.js'
import { StateHolder } from '../stateful/state-holder.js'
import { SEND_PROTOCOL, SendRequest, STATE_PROTOCOL, StateRequest, type TransitionRecord } from '../protocol/state.js'
import { WorkloadJournal, type TraceEntry } from '../store/journal.js'
import type { NodeStore } from '../store/node-store.js'
import { MAX_ENVELOPE_BYTES } from '../policy/envelope.js'
import { checkApplyWindow } from '../policy/credentials.js'
import { TrustError } from '../policy/errors.js'
import { principalOfSender, senderOf, type Trust, type WorkloadIdentity } from '../policy/trust.js'
import { currentPrincipal } from '../policy/request-context.js'
import { relayedPrincipal, relayOfCurrentRequest, type Relay } from '../policy/relay.js'
import type { Principal, Resource } from '../policy/engine.js'
import type { PolicySync } from '../actors/policy-sync.js'
import type { Inspection } from '../actors/inspection.js'
import { ServicePlane } from '../services/plane.js'
import { ServiceTunnel } from '../services/tunnel.js'
import { CallError } from '../services/errors.js'
import type { Endpoint, ServiceCidr } from '../services/directory.js'
import type { CallRequest } from '../workloads/types.js'

/** A workload as a policy resource. */
/** The principal a replica acts as: its workload. */
export function workloadPrincipal (spec: Pick<WorkloadSpec, 'namespace' | 'name' | 'labels'>): Principal {
  return { kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }
}

export function workloadResource (spec: Pick<WorkloadSpec, 'namespace' | 'name' | 'labels'>): Resource {
  return { kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }
}

export interface WorkloadRuntimeInit {
  mesh: MeshNode
  artifacts: ArtifactService
  /** The node database: stateful workloads' journals and fences live in it. */
  store: NodeStore
  log: Logger
  capacity: Resources
  labels: Record<string, string>
  /** Longest bid window; the tender closes early once every live peer answered. */
  tenderWindowMs?: number
  /** How long awardees have to fetch, start and confirm. */
  confirmTimeoutMs?: number
  heartbeatMs?: number
  heartbeatTimeoutMs?: number
  metrics?: NodeMetrics
  /** The container engine (Docker Engine API) this node runs container workloads on, if any. */
  engine?: ContainerEngine
  /** Whom this node trusts and what the policy allows (src/policy/trust.ts). */
  trust: Trust
  /** Spreads policies: heartbeats say which version each node enforces. */
  policySync?: PolicySync
  /** The node's inspector (`node start --inspect`): schedulers, pods and stateful workloads' machines show there. */
  inspection?: Inspection
  /** Where this node's service proxy puts service addresses (`--service-cidr`, default 198.18.0.0/16). */
  serviceCidr?: ServiceCidr
  /** How workload code runs here (src/sandbox/confine.ts); default: confined where the host can confine. */
  isolation?: NodeIsolation
}

interface Reservation { resources: Resources, expires: number }

const MAX_EVENTS = 30
/** How long a guardian waits before re-tendering again after a failed heal. */
const DEGRADED_RETRY_MS = 5_000
/** The same for workloads that never could be placed (Unschedulable / Failed). */
const UNPLACED_RETRY_MS = 30_000
/**
 * How long the second guardian (then the third, twice as long) waits for the
 * first to heal a workload. The first acts within milliseconds when it saw the
 * connection drop; it may not have (no direct connection to the lost node, or
 * it has just restarted and does not know the workload yet).
 */
const BACKUP_GUARDIAN_MS = 300
/** The same when the loss was noticed by heartbeat timeout (no connection dropped here). */
const BACKUP_GUARDIAN_SLOW_MS = 1_500
/** How long before a workload id heard of in heartbeats is looked up in the DHT again. */
const RECORD_LOOKUP_BACKOFF_MS = 10_000
/** The first retry of a failed lookup comes sooner (a node that just joined has a thin routing table). */
const RECORD_LOOKUP_FIRST_RETRY_MS = 1_000
/** Events and journal batches travel as one sealed envelope (a body of at most MAX_ENVELOPE_BYTES, which JSON escaping may double); every other request is small (rpc.ts's default). */
const MAX_SEALED_BATCH = 2 * MAX_ENVELOPE_BYTES + 64 * 1024

/**
 * The workload plane of one node. Every node runs the same code: it bids on
 * tenders, hosts the replicas it is awarded, heartbeats them, serves their logs,
 * and, as a guardian of the workloads whose ids rank it first, re-tenders
 * replicas whose host stopped heartbeating. A node that receives an `apply`
 * becomes that workload's tenderer; there is no scheduler process.
 */
export class WorkloadRuntime {
  private readonly mesh: MeshNode
  private readonly log: Logger
  private readonly membership: Membership
  private readonly view: MeshView
  readonly host: ReplicaHost
  readonly machines: MachineHost
  readonly containers: ContainerHost
  readonly holder: StateHolder
  /** Services by name, calls, health probes and egress (src/services/). */
  readonly services: ServicePlane
  /** The service proxy: container services' stable addresses, tunnelled over libp2p (src/services/tunnel.ts). */
  readonly tunnel: ServiceTunnel
  private readonly transitionListeners = new Set<(workloadId: string, t: TransitionRecord) => void>()
  private readonly catalog = new Map<string, WorkloadRecord>()
  private readonly tenders = new Map<string, ActorRefFrom<typeof schedulerMachine>>()
  /** Workload ids with a tender in flight from this node. */
  private readonly tendering = new Set<string>()
  private readonly reservations = new Map<string, Reservation>()
  private readonly retryAfter = new Map<string, number>()
  /** Workload ids looked up in the DHT, with the time before which not to try again. */
  private readonly recordLookups = new Map<string, number>()
  /** Failed lookups in a row per workload id, for the backoff. */
  private readonly recordLookupFailures = new Map<string, number>()
  /** Local time each workload's record was last updated here. */
  private readonly recordSeenAt = new Map<string, number>()
  /** When this node first saw each workload miss a replica (for backup guardians). */
  private readonly missingSince = new Map<string, number>()
  private readonly timers: NodeJS.Timeout[] = []
  private readonly startedAt = Date.now()
  private readonly cfg: Required<Pick<WorkloadRuntimeInit, 'tenderWindowMs' | 'confirmTimeoutMs' | 'heartbeatMs' | 'heartbeatTimeoutMs'>>
  private subscribedTopics = new Set<string>()
  private eventCounter = 0
  private stopped = false
  constructor (private readonly init: WorkloadRuntimeInit) {
    this.mesh = init.mesh
    this.log = init.log.child({ component: 'workloads' })
    this.cfg = {
      tenderWindowMs: init.tenderWindowMs ?? 250,
      confirmTimeoutMs: init.confirmTimeoutMs ?? 20_000,
      heartbeatMs: init.heartbeatMs ?? 1_000,
      heartbeatTimeoutMs: init.heartbeatTimeoutMs ?? 3_500
    }
    this.membership = new Membership({
      mesh: this.mesh,
      log: this.log,
      heartbeatMs: this.cfg.heartbeatMs,
      heartbeatTimeoutMs: this.cfg.heartbeatTimeoutMs,
      content: () => this.heartbeatContent(),
      onHeartbeat: hb => { this.onHeartbeat(hb) },
      onPeerLost: () => { if (this.catalog.size > 0) this.guard() },
      askView: async peer => (await callRpc(this.mesh, peer, VIEW_PROTOCOL, {}, { timeoutMs: 5_000 })).result
    })
    this.view = this.membership.view
    this.host = new ReplicaHost({
      selfId: this.mesh.peerId,
      artifacts: init.artifacts,
      log: this.log,
      publish: async (topic, data, from) => { await this.publish(topic, data, { requireListeners: false, ...(from != null ? { from } : {}) }) },
      call: async (from, service, request, options) => await this.services.call(service, request, options, { principal: workloadPrincipal(from.spec), identity: await this.identityOf(from), namespace: from.spec.namespace }),
      fetch: async (from, url, init) => await this.services.fetch(workloadPrincipal(from.spec), url, init),
      onTopicsChanged: topics => { this.syncSubscriptions(topics) },
      metrics: init.metrics,
      ...(init.isolation != null ? { isolation: init.isolation } : {})
    })
    this.containers = new ContainerHost({
      selfId: this.mesh.peerId,
      ...(init.engine != null ? { engine: init.engine } : {}),
      log: this.log,
      onEnded: (id, replica, epoch, outcome) => { this.onPodEnded(id, replica, epoch, outcome) },
      ...(init.inspection != null ? { inspection: init.inspection } : {}),
      extraHosts: namespace => this.tunnel.extraHosts(namespace)
    })
    const journal = WorkloadJournal.fromStore(init.store)
    this.holder = new StateHolder(journal, init.store, this.log, (id, epoch, owner) => {
      const owned = this.machines.get(id)
      if (owned != null && owner !== this.selfId && supersedes({ epoch, peerId: owner }, { epoch: owned.epoch, peerId: this.selfId })) {
        this.log.warn({ workload: id, epoch: owned.epoch, newer: epoch, by: owner }, 'a newer owner claimed this machine: stopping it')
        void this.machines.stop(id)
      }
    })
    this.machines = new MachineHost({
      mesh: this.mesh,
      artifacts: init.artifacts,
      journal,
      holder: this.holder,
      log: this.log,
      livePeers: () => this.view.livePeerIds().filter(p => p !== this.selfId),
      locate: id => this.locate(id),
      onCompleted: (spec, epoch, output) => { this.onMachineCompleted(spec.id, epoch, output) },
      onFailed: (spec, _epoch, error) => {
        const record = this.catalog.get(spec.id)
        if (record != null && record.status !== 'Deleted') this.updateRecord({ ...record, status: 'Failed', events: pushEvent(record.events, event('Warning', 'MachineFailed', error)), updatedAt: Date.now(), updatedBy: this.selfId })
      },
      onLocation: loc => { void this.gossip({ type: 'location', location: loc }) },
      onTransition: (id, t) => { for (const l of this.transitionListeners) l(id, t) },
      onPersisted: (id, n) => { this.init.metrics?.eventsHandled.inc({ workload: id }, n) },
      forbidSend: (spec, sender) => {
        const d = this.init.trust.decide(principalOfSender(sender ?? ''), 'send', workloadResource(spec))
        return d.allowed ? undefined : `forbidden: ${d.reason}`
      },
      ...(init.inspection != null ? { inspection: init.inspection } : {}),
      ...(init.isolation != null ? { isolation: init.isolation } : {}),
      placedBefore: (id, epoch) => (this.catalog.get(id)?.placement.some(p => p.replica === 0 && p.epoch < epoch) ?? false) || this.view.remoteReplicas(id).some(r => r.replica === 0 && r.epoch < epoch)
    })
    this.services = new ServicePlane({
      mesh: this.mesh,
      trust: init.trust,
      log: this.log.child({ component: 'services' }),
      ...(init.metrics != null ? { metrics: init.metrics.services } : {}),
      workloads: () => [...this.catalog.values()].filter(r => r.status !== 'Deleted' && r.status !== 'Completed').map(r => r.spec),
      localReplicas: () => [
        ...this.host.list().map(r => ({ workloadId: r.workloadId, replica: r.replica, epoch: r.epoch, status: r.status })),
        ...this.machines.reports(),
        ...this.containers.reports()
      ],
      remoteReplicas: id => this.view.remoteReplicas(id),
      placedOn: id => [...new Set(this.catalog.get(id)?.placement.map(p => p.peerId) ?? [])],
      probe: async (spec, r, timeoutMs) => {
        if (spec.kind === 'stateless') return await (this.host.get(spec.id, r.replica)?.sandbox?.ping(timeoutMs) ?? false)
        if (spec.kind === 'stateful') return this.machines.get(spec.id)?.status === 'running'
        return await this.containers.probe(spec.id, r.replica, timeoutMs)
      },
      serveLocal: async (endpoint, request, deadline) => await this.serveCall(endpoint, request, deadline),
      onReadinessChanged: () => { setImmediate(() => { try { this.membership.tick() } catch {} }) },
      livePeers: () => this.view.livePeerIds(),
      ...(init.serviceCidr != null ? { serviceCidr: init.serviceCidr } : {})
    })
    this.tunnel = new ServiceTunnel({
      mesh: this.mesh,
      trust: init.trust,
      log: this.log.child({ component: 'tunnel' }),
      ...(init.metrics != null ? { metrics: init.metrics.services } : {}),
      directory: this.services.directory,
      containers: {
        target: (id, replica, port) => this.containers.target(id, replica, port),
        principalOf: async ip => {
          const id = await this.containers.workloadAt(ip)
          if (id == null) return undefined
          const spec = this.catalog.get(id)?.spec
          return spec != null ? workloadPrincipal(spec) : principalOfSender(`workload:${id}`)
        }
      }
    })
  }

  /** A node's IP address as this node reaches it (its own: its first IPv4 listen address), for Endpoints objects. */
  hostAddress (peerId: string): string {
    const addrs = peerId === this.selfId ? this.mesh.addresses() : (this.mesh.peers().find(p => p.peerId === peerId)?.addrs ?? [])
    for (const a of addrs) {
      const m = /^\/ip4\/([\d.]+)\//.exec(a)
      if (m != null && m[1] !== '0.0.0.0') return m[1]!
    }
    return '0.0.0.0'
  }

  /** Runs a call on one of this node's replicas (the callee's side, after the policy let it through). */
  private async serveCall (endpoint: Endpoint, request: CallRequest, deadline: number): Promise<unknown> {
    const remaining = deadline - Date.now()
    if (endpoint.kind === 'container') throw new CallError('BAD_REQUEST', endpoint.service, `${endpoint.service} is a container service: connect to it over TCP (its address on every node: beemesh services), not with ctx.call`, { ran: false })
    if (endpoint.kind === 'stateful') {
      const ack = await this.sendEvent(endpoint.workloadId, request.data, { id: `call:${request.id}`, sender: request.caller, timeoutMs: Math.max(1, remaining) })
      return { state: ack.value, status: ack.status, seq: ack.seq, ...(ack.output !== undefined ? { output: ack.output } : {}) }
    }
    const local = this.host.get(endpoint.workloadId, endpoint.replica)
    if (local?.sandbox == null || local.status !== 'running') throw new CallError('UNAVAILABLE', endpoint.service, `replica ${endpoint.replica} of ${endpoint.workloadId} is not running here`, { ran: false })
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new CallError('TIMEOUT', endpoint.service, `timed out: replica ${endpoint.replica} of ${endpoint.workloadId} did not reply within the call's time`)) }, Math.max(1, remaining))
    })
    try {
      const result = await Promise.race([local.sandbox.invokeCall(request), expired])
      if (result.ok) return result.value
      if (result.cause === 'stopped') throw new CallError('UNAVAILABLE', endpoint.service, `replica ${endpoint.replica} of ${endpoint.workloadId} stopped before it ran the call`, { ran: false })
      throw new CallError(result.cause === 'timeout' ? 'TIMEOUT' : 'FAILED', endpoint.service, result.error)
    } finally {
      clearTimeout(timer)
    }
  }

  private async sweepHeldState (): Promise<void> {
    for (const id of await this.holder.list().catch(() => [])) {
      if (this.stopped || this.machines.get(id) != null) continue
      const record = this.catalog.get(id) ?? await this.fetchRecord(id)
      if (record?.status === 'Completed' || record?.status === 'Deleted') {
        this.log.info({ workload: id, status: record.status }, 'erasing the state held of an ended workload')
        await this.machines.eraseLocal(id)
      }
    }
  }

  /** Calls `listener` for every durable transition of a machine this node owns (returns the unsubscriber). */
  onTransition (listener: (workloadId: string, t: TransitionRecord) => void): () => void {
    this.transitionListeners.add(listener)
    return () => { this.transitionListeners.delete(listener) }
  }

  /** What this node knows of where a workload's owner is (for routing sends). */
  private locate (id: string): { owner?: string, epoch?: number, status?: string, output?: unknown, kind?: string } | undefined {
    const record = this.catalog.get(id)
    if (record == null || record.status === 'Deleted') return undefined
    const live = this.liveReplicas(id).filter(r => r.replica === 0).sort((a, b) => b.epoch - a.epoch)[0]
    const loc = this.machines.location(id)
    const owner = live?.peerId ?? (loc != null && this.view.isLive(loc.owner) ? loc.owner : undefined) ?? record.placement.find(p => p.replica === 0 && this.view.isLive(p.peerId))?.peerId
    return { ...(owner != null ? { owner } : {}), epoch: live?.epoch ?? record.epoch, status: record.status, output: record.output, kind: record.spec.kind }
  }

  /** The workload's record: this node's copy, else the mesh's (DHT), else undefined. */
  private async knownRecord (id: string): Promise<WorkloadRecord | undefined> {
    if (!this.catalog.has(id)) await this.fetchRecord(id)
    return this.catalog.get(id)
  }

  /** Sends an event to a stateful workload (routed to its owner); resolves with the acknowledgement. */
  async sendEvent (id: string, event: unknown, opts: { id?: string, timeoutMs?: number, sender?: string } = {}): Promise<import('../protocol/state.js').Ack> {
    const record = await this.knownRecord(id)
    if (record?.status === 'Completed') throw new WorkloadCompletedError(id, record.output)
    const caller = currentPrincipal()
    return await this.machines.send(id, event, { ...opts, ...(opts.sender == null && caller != null ? { sender: senderOf(caller) } : {}) })
  }

  /**
   * A stateful workload's whole trace (`beemesh trace export`), gathered from
   * every node that recorded part of it, so it runs on across failovers.
   */
  async exportTrace (id: string): Promise<{ records: TraceEntry[], sources: number }> {
    const record = await this.knownRecord(id)
    if (record != null && record.spec.kind !== 'stateful') throw new NoTraceError(id, `it is a ${record.spec.kind} workload; only stateful (machine) workloads record traces`)
    if (record?.status === 'Completed') throw new NoTraceError(id, 'it completed, and its state and trace were erased everywhere with it (export before the final event, or follow it with `beemesh trace -f`)')
    const trace = await this.machines.trace(id)
    if (trace.records.length === 0) throw new NoTraceError(id, 'no node has recorded any of it yet')
    return trace
  }

  /** A stateful workload's machine definition (statechart JSON), from its owner: what the web view draws. */
  async machineDefinition (id: string): Promise<{ workloadId: string, definition: unknown }> {
    const record = await this.knownRecord(id)
    if (record != null && record.spec.kind !== 'stateful') throw new InvalidWorkloadError(`${id} is a ${record.spec.kind} workload; only stateful workloads have a machine`)
    if (record?.status === 'Completed') throw new WorkloadCompletedError(id, record.output)
    return await this.machines.definition(id, { timeoutMs: 5_000 })
  }

  /** A stateful workload's state, from its owner. */
  async machineState (id: string): Promise<import('../protocol/state.js').MachineStateReport> {
    const record = await this.knownRecord(id)
    if (record?.status === 'Completed') {
      return { workloadId: id, owner: record.updatedBy, epoch: record.epoch, seq: 0, value: null, context: null, status: 'done', output: record.output, durability: record.spec.durability ?? 'replicated', holders: [], recent: [], startedAt: record.spec.createdAt }
    }
    try {
      return await this.machines.state(id, { timeoutMs: 5_000 })
    } catch (err) {
      // Cut off from the owner (a partition): serve the newest copy this node holds, marked stale.
      if (!(err instanceof OwnerUnavailableError)) throw err
      const held = await this.holder.handle({ op: 'fetch', workloadId: id }, this.selfId)
      if (!held.ok || held.head.seq === 0) throw err
      const last = held.entries?.at(-1)
      const snap = held.snapshot?.snapshot as { machine?: { persisted?: { context?: unknown, value?: unknown } } } | undefined
      return {
        workloadId: id,
        owner: this.machines.location(id)?.owner ?? record?.placement[0]?.peerId ?? this.selfId,
        epoch: held.head.epoch,
        seq: held.head.seq,
        value: last != null ? last.state : snap?.machine?.persisted?.value ?? null,
        context: last == null ? snap?.machine?.persisted?.context ?? null : null,
        status: 'active',
        durability: record?.spec.durability ?? 'replicated',
        holders: [],
        recent: (held.entries ?? []).slice(-20).map(e => ({ seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, value: e.state })),
        startedAt: record?.spec.createdAt ?? 0,
        stale: true
      }
    }
  }

  /** A container replica here ended by its restart policy: the record keeps the outcome so it is never run again. */
  private onPodEnded (id: string, replica: number, epoch: number, outcome: PodOutcome, attempt = 1): void {
    const record = this.catalog.get(id)
    if (record == null || record.epoch < epoch) {
      // The award can arrive before the record's gossip: try again shortly.
      if (attempt < 20) setTimeout(() => { this.onPodEnded(id, replica, epoch, outcome, attempt + 1) }, 250).unref()
      return
    }
    if (record.status === 'Deleted') return
    const entry = { peerId: this.selfId, replica, epoch, outcome: { ...outcome, message: outcome.message?.slice(0, 1900), at: Date.now() } }
    const placement = keepEnded(record, [...record.placement.filter(p => p.replica !== replica), entry])
    const next: WorkloadRecord = { ...record, placement, updatedAt: Date.now(), updatedBy: this.selfId }
    const what = `replica ${replica} on ${this.selfId} ${outcome.phase === 'Succeeded' ? 'succeeded' : 'failed'}: ${outcome.reason}${outcome.exitCode != null ? `, exit code ${outcome.exitCode}` : ''}${outcome.message != null && outcome.phase === 'Failed' ? ` (${outcome.message})` : ''}`
    next.events = pushEvent(record.events, event(outcome.phase === 'Succeeded' ? 'Normal' : 'Warning', outcome.phase === 'Succeeded' ? 'Completed' : outcome.reason, what))
    const status = endedStatus(next)
    this.updateRecord(status != null ? { ...next, status } : next)
  }

  /**
   * After a restart, this node's containers from before: adopted when the
   * workload's record still places that replica here at that epoch, removed
   * when it moved on or is gone. The record comes from the DHT (a node does
   * not keep the catalog across restarts); with no answer for 30 s, the
   * container is removed.
   */
  private async adoptContainers (): Promise<void> {
    const deadline = Date.now() + 30_000
    // Heartbeats tell where replicas run now, fresher than a DHT copy of the record:
    // give the peers this node connects to a heartbeat round to be heard (at most 5 s).
    const heard = async (): Promise<void> => {
      const until = Date.now() + 5_000
      while (!this.stopped && Date.now() < until && (this.mesh.peers().length === 0 || this.view.livePeers().length < this.mesh.peers().length)) {
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
    const { adopted, removed } = await this.containers.adoptOrRemove(async (id, replica, epoch) => {
      for (;;) {
        const newer = this.view.remoteReplicas(id).find(r => r.replica === replica && r.epoch > epoch)
        if (newer != null) return { remove: `replica ${replica} of ${id} runs on ${newer.peerId} at epoch ${newer.epoch} now` }
        const record = this.catalog.get(id) ?? await this.fetchRecord(id)
        if (record != null) {
          if (record.status === 'Deleted') return { remove: `${id} was deleted` }
          const placed = record.placement.find(p => p.replica === replica)
          if (placed != null && placed.peerId === this.selfId && placed.epoch === epoch && record.epoch >= epoch) return { adopt: record.spec }
          if (record.epoch > epoch || (placed != null && (placed.peerId !== this.selfId || placed.epoch !== epoch))) return { remove: `replica ${replica} of ${id} is at epoch ${placed?.epoch ?? record.epoch} on ${placed?.peerId ?? 'no node'} now` }
        }
        if (this.stopped || Date.now() > deadline) return { remove: `no record of ${id} found within 30 s` }
        await new Promise(resolve => setTimeout(resolve, 1_000))
      }
    }, { before: heard }).catch(err => { this.log.warn({ err: describeError(err) }, 'could not list containers from before the restart'); return { adopted: 0, removed: 0 } })
    if (adopted + removed > 0) this.log.info({ adopted, removed }, 'containers from before the restart sorted out')
  }

  private onMachineCompleted (id: string, epoch: number, output: unknown): void {
    const record = this.catalog.get(id)
    if (record == null || record.status === 'Deleted') return
    this.updateRecord({ ...record, status: 'Completed', output, placement: [], events: pushEvent(record.events, event('Normal', 'Completed', `the machine reached a final state at epoch ${epoch}; its state was erased`)), updatedAt: Date.now(), updatedBy: this.selfId })
  }

  get selfId (): string {
    return this.mesh.peerId
  }

  async start (): Promise<void> {
    this.mesh.addEventListener('message', this.onMessage)
    this.mesh.addEventListener('peer:disconnect', this.onDisconnect)
    this.mesh.subscribe(SCHEDULER_TOPIC)
    this.mesh.subscribe(HEARTBEAT_TOPIC)
    await serveRpc(this.mesh, BID_PROTOCOL, async (request, from) => {
      const bid = BidRequest.safeParse(request)
      if (!bid.success) throw new Error('malformed bid')
      if (bid.data.peerId !== from) throw new Error('a bid must come from the bidder itself')
      this.routeBid(bid.data)
      return {}
    }, this.log)
    await serveRpc(this.mesh, SEND_PROTOCOL, async request => {
      const req = SendRequest.safeParse(request)
      if (!req.success) return { result: { ok: false, refusal: { code: 'bad-event', message: `malformed send: ${req.error.issues[0]?.message ?? 'invalid'}` } } }
      return { result: await this.machines.handleSend(req.data) }
    }, this.log, { maxRequestBytes: MAX_SEALED_BATCH })
    await serveRpc(this.mesh, STATE_PROTOCOL, async (request, from) => {
      const req = StateRequest.safeParse(request)
      if (!req.success) return { result: { ok: false, code: 'invalid', message: `malformed request: ${req.error.issues[0]?.message ?? 'invalid'}` } }
      return { result: await this.holder.handle(req.data, from) }
    }, this.log, { maxRequestBytes: MAX_SEALED_BATCH })
    await serveRpc(this.mesh, LOGS_PROTOCOL, async (request, from) => {
      const req = LogsRequest.safeParse(request)
      if (!req.success) throw new Error('malformed logs request')
      await this.authorizeRelayed(from, req.data, 'read')
      if (req.data.events === true) return { result: this.containers.events(req.data.workloadId) }
      return { result: [...this.host.logLines(req.data.workloadId, req.data), ...await this.containers.logLines(req.data.workloadId, req.data)] }
    }, this.log)
    await serveRpc(this.mesh, VIEW_PROTOCOL, async () => ({ result: this.membership.viewReply() }), this.log)
    await serveRpc(this.mesh, REPLICA_PROTOCOL, async (request, from) => {
      const req = ReplicaStopRequest.safeParse(request)
      if (!req.success) throw new Error('malformed replica stop request')
      await this.authorizeRelayed(from, req.data, 'delete')
      return { result: { stopped: await this.stopLocalReplica(req.data.workloadId, req.data.replica) } }
    }, this.log)
    await this.services.start()
    await this.tunnel.start()
    await this.containers.open()
    // Containers from before a restart: adopted or removed once the mesh says where they belong.
    void this.adoptContainers()
    // Copies of machine state held from before a restart: drop those of workloads
    // that completed or were deleted meanwhile (the erasure happened without us).
    const sweep = setTimeout(() => { void this.sweepHeldState() }, 5_000)
    sweep.unref()
    this.timers.push(sweep)
    this.every(Math.min(250, this.cfg.heartbeatMs), () => { this.membership.tick() })
    this.every(this.cfg.heartbeatMs, () => { this.guard(); this.membership.hangUpSilent() })
    this.membership.heartbeat()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.membership.stop()
    for (const t of this.timers) clearInterval(t)
    for (const actor of this.tenders.values()) actor.send({ type: 'tender.cancelled' })
    this.mesh.removeEventListener('message', this.onMessage)
    this.mesh.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.tunnel.stop()
    await this.services.stop()
    await this.host.stopAll()
    await this.machines.stopAll()
    await this.containers.stopAll()
  }

  private every (ms: number, fn: () => void): void {
    const t = setInterval(() => {
      try {
        fn()
      } catch (err) {
        this.log.error({ err: describeError(err) }, 'periodic task failed')
      }
    }, ms)
    t.unref()
    this.timers.push(t)
  }

  // ---------------------------------------------------------------- apply / read / delete

  /** The node's bundles: uploads are stored here (POST /v1/artifacts), the Kubernetes API reads them by sha256. */
  get artifacts (): ArtifactService { return this.init.artifacts }

  /** Places a workload on the mesh; resolves once every replica confirmed it runs. */
  async apply (specInput: unknown, artifact?: Uint8Array): Promise<WorkloadStatus> {
    return await (await this.submit(specInput, artifact)).placed
  }

  /**
   * Validates a workload, stores and announces its artifact and records it as
   * Pending; `placed` settles when the tender does. Rejects (before anything is
   * recorded) for an invalid spec or an artifact whose hash does not match.
   */
  async submit (specInput: unknown, artifact?: Uint8Array): Promise<{ placed: Promise<WorkloadStatus> }> {
    const parsed = WorkloadSpecSchema.safeParse(specInput)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new InvalidWorkloadError(`${issue?.path.join('.') || 'spec'}: ${issue?.message ?? 'invalid'}`)
    }
    const spec = await this.attest(parsed.data)
    const provenance = await this.init.trust.checkManifest(spec as never)
    // The signature binds this apply, not the workload's life: an old manifest is not applied again.
    checkApplyWindow(spec.id, provenance)
    for (const topic of spec.topics) this.init.trust.authorize({ kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }, 'subscribe', { kind: 'topic', name: topic })
    // Announced as a DHT provider after placement: awardees fetch from the tenderer
    // first, and the provider query would compete with the tender for every node's time.
    if (spec.artifact != null) {
      if (artifact == null) throw new InvalidWorkloadError(`artifact: missing; a ${spec.kind} workload needs its bundle`)
      await this.init.artifacts.publish(artifact, spec.artifact.sha256, { announce: false })
    }
    const existing = this.catalog.get(spec.id)
    if (existing != null && existing.status !== 'Deleted' && sameSpec(existing.spec, spec) && existing.status === 'Running') {
      // Only the replica count (or the manifest it came from) changed: a new record, not a new generation.
      if (existing.spec.replicas !== spec.replicas || existing.spec.manifest !== spec.manifest) return { placed: this.rescale(existing, spec) }
      return { placed: Promise.resolve(this.statusOf(existing)) }
    }
    if (this.tendering.has(spec.id)) throw new InvalidWorkloadError(`${spec.id} is being placed right now; try again when that finishes`)
    this.tendering.add(spec.id)
    const epoch = (existing?.epoch ?? 0) + 1
    const record: WorkloadRecord = {
      spec,
      epoch,
      status: 'Pending',
      placement: [],
      events: [...(existing?.status === 'Deleted' ? [] : existing?.events ?? []), event('Normal', 'Tendering', `tendering ${spec.replicas} replica(s) at epoch ${epoch}`)],
      updatedAt: Date.now(),
      updatedBy: this.selfId
    }
    this.updateRecord(record, { persist: false })
    const placed = this.place(spec, epoch, record)
    const sha256 = spec.artifact?.sha256
    if (sha256 != null) void placed.catch(() => {}).finally(() => { this.init.artifacts.announce(sha256) })
    return { placed }
  }

  private async place (spec: WorkloadSpec, epoch: number, record: WorkloadRecord): Promise<WorkloadStatus> {
    const ordinals = Array.from({ length: spec.replicas }, (_, i) => i)
    const result = await this.runTender(spec, epoch, ordinals, [])
    const latest = this.catalog.get(spec.id) ?? record
    if (latest.status === 'Deleted') throw new WorkloadNotFoundError(spec.id)
    // A newer epoch: the workload was tendered again while this tender ran (a guardian saw no replica start
    // in time, on a busy node): that placement answers the apply, which is not "not found".
    if (latest.epoch > epoch) return this.statusOf(latest)
    if (latest.epoch !== epoch) throw new WorkloadNotFoundError(spec.id)
    if (result.status !== 'placed') {
      const reason = result.reason ?? result.status
      this.updateRecord({ ...latest, status: result.status === 'unschedulable' ? 'Unschedulable' : 'Failed', events: pushEvent(latest.events, event('Warning', 'FailedScheduling', reason)), updatedAt: Date.now(), updatedBy: this.selfId })
      throw new UnschedulableError(spec.id, reason)
    }
    const placement = result.placed.map(p => ({ peerId: p.peerId, replica: p.replica, epoch }))
    const placed = {
      ...latest,
      status: 'Running' as const,
      placement,
      events: pushEvent(latest.events, event('Normal', 'Scheduled', placement.map(p => `replica ${p.replica} → ${p.peerId}`).join(', '))),
      updatedAt: Date.now(),
      updatedBy: this.selfId
    }
    this.updateRecord(placed)
    return this.statusOf(placed)
  }

  /**
   * Changes a workload's replica count: a new record (epoch + 1) with the new
   * `spec.replicas`, gossiped and put like any update. The running replicas
   * keep running (sameSpec ignores the count); hosts stop the ordinals at or
   * above the new count (mergeRecord), and the guardian tenders the missing ones.
   */
  async scale (id: string, replicas: number): Promise<WorkloadStatus> {
    const record = this.catalog.get(id) ?? await this.fetchRecord(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    if (record.spec.kind === 'stateful') throw new InvalidWorkloadError(`replicas: ${id} is stateful; it has exactly 1 replica`)
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 100) throw new InvalidWorkloadError(`replicas: expected an integer from 1 to 100, got ${replicas}`)
    return await this.rescale(record, { ...record.spec, replicas })
  }

  private async rescale (record: WorkloadRecord, spec: WorkloadSpec): Promise<WorkloadStatus> {
    if (this.tendering.has(spec.id)) throw new InvalidWorkloadError(`${spec.id} is being placed right now; try again when that finishes`)
    const from = record.spec.replicas
    const signed = await this.attest({ ...spec, createdAt: record.spec.createdAt, provenance: undefined }, spec.provenance?.deployer ?? record.spec.provenance?.deployer)
    await this.init.trust.checkManifest(signed as never)
    const updated: WorkloadRecord = {
      ...record,
      spec: signed,
      epoch: record.epoch + 1,
      placement: record.placement.filter(p => p.replica < spec.replicas),
      events: from !== spec.replicas ? pushEvent(record.events, event('Normal', 'Scaled', `replicas ${from} → ${spec.replicas}`)) : record.events,
      updatedAt: Date.now(),
      updatedBy: this.selfId
    }
    this.updateRecord(updated)
    // A guardian tenders the new ordinals once the record has spread (see guard).
    return this.statusOf(updated)
  }

  /**
   * Stops one replica wherever it runs (`kubectl delete pod web-1`): its host
   * stops it, and the workload's guardian tenders it again, as a ReplicaSet
   * replaces a deleted pod.
   */
  async stopReplica (id: string, replica: number): Promise<{ peerId: string }> {
    const record = this.catalog.get(id) ?? await this.fetchRecord(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    const placed = this.statusOf(record).placement.find(p => p.replica === replica && p.status !== 'lost')
    if (placed == null) throw new WorkloadNotFoundError(`${id} replica ${replica}`)
    if (placed.peerId === this.selfId) await this.stopLocalReplica(id, replica)
    else await callRpc(this.mesh, placed.peerId, REPLICA_PROTOCOL, { workloadId: id, replica, ...relayOfCurrentRequest() }, { timeoutMs: 15_000 })
    return { peerId: placed.peerId }
  }

  /**
   * Whether another node may have this node stop (`delete`) or read the logs
   * and pod events of (`read`) a workload's replicas here: the principal it
   * acts for (a deployer, proven by the deployer's token; or the node itself)
   * must be allowed by the policy on the workload. Throws TrustError naming the problem.
   */
  private async authorizeRelayed (from: string, req: { workloadId: string } & Relay, action: 'read' | 'delete'): Promise<void> {
    const trust = this.init.trust
    const principal = await relayedPrincipal(trust, trust.nodePrincipal(from), req).catch(err => {
      trust.noteRefusal(action === 'read' ? LOGS_PROTOCOL : REPLICA_PROTOCOL, err instanceof TrustError ? err.reason : 'malformed', `refused ${from}: ${describeError(err)}`)
      throw err
    })
    const spec = (this.catalog.get(req.workloadId) ?? await this.fetchRecord(req.workloadId))?.spec
    const [namespace = '', name = ''] = req.workloadId.split('/')
    const resource = workloadResource(spec ?? { namespace, name })
    const d = trust.decide(principal, action, resource)
    if (!d.allowed) {
      const message = `forbidden by ${this.selfId}: ${senderOf(principal)} may not ${action} ${req.workloadId} (${d.reason}${d.rule == null ? ', default deny' : ''})`
      trust.noteRefusal(action === 'read' ? LOGS_PROTOCOL : REPLICA_PROTOCOL, 'denied', message)
      throw new TrustError('denied', message)
    }
  }

  private async stopLocalReplica (id: string, replica: number): Promise<number> {
    const n = this.containers.of(id).filter(p => p.replica === replica).length + this.host.of(id).filter(r => r.replica === replica).length
    this.log.info({ workload: id, replica }, 'replica stopped on request; the guardian replaces it')
    await Promise.all([this.containers.stop(id, replica), this.host.stop(id, replica)])
    return n
  }

  /** This node and the peers it hears heartbeats from (dead ones shown not ready until forgotten). */
  nodes (): NodeSummary[] {
    const now = Date.now()
    const self: NodeSummary = { peerId: this.selfId, self: true, ready: true, labels: this.init.labels, capacity: this.init.capacity, allocated: this.host.allocated(), replicas: this.host.list().length, uptimeMs: now - this.startedAt, lastSeenMs: 0, links: this.membership.links(), capabilities: this.capabilities() }
    const others = this.view.knownPeers().map(({ heartbeat: hb, seenAt }) => ({
      peerId: hb.peerId,
      self: false,
      ready: this.view.isLive(hb.peerId),
      labels: hb.labels,
      capacity: hb.capacity,
      allocated: hb.allocated,
      replicas: hb.replicas.length,
      uptimeMs: hb.uptimeMs + (now - seenAt),
      lastSeenMs: now - seenAt,
      links: hb.links ?? [],
      capabilities: hb.capabilities ?? []
    }))
    return [self, ...others].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  list (): WorkloadStatus[] {
    return [...this.catalog.values()].filter(r => r.status !== 'Deleted').map(r => this.statusOf(r)).sort((a, b) => a.id.localeCompare(b.id))
  }

  async describe (id: string): Promise<WorkloadDescription> {
    const record = this.catalog.get(id) ?? await this.fetchRecord(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    const described: WorkloadDescription = { ...this.statusOf(record), spec: record.spec, events: record.events }
    if (record.spec.kind === 'container') described.podEvents = await this.podEvents(record)
    return described
  }

  /** Pod events of a container workload, gathered from the nodes that run (or ran) its replicas. */
  private async podEvents (record: WorkloadRecord): Promise<PodEventRecord[]> {
    const id = record.spec.id
    const hosts = new Set([this.selfId, ...record.placement.map(p => p.peerId), ...this.view.remoteReplicas(id).map(r => r.peerId)])
    const all = await Promise.all([...hosts].map(async peer => {
      if (peer === this.selfId) return this.containers.events(id)
      if (!this.view.isLive(peer)) return []
      try {
        const { result } = await callRpc(this.mesh, peer, LOGS_PROTOCOL, { workloadId: id, events: true, ...relayOfCurrentRequest() }, { timeoutMs: 5_000 })
        return Array.isArray(result) ? result as PodEventRecord[] : []
      } catch (err) {
        this.log.debug({ peer, err: describeError(err) }, 'could not fetch pod events')
        return []
      }
    }))
    return all.flat().sort((a, b) => a.ts - b.ts)
  }

  /** Reads a workload's record from the DHT, for ids this node has not heard of through gossip. */
  async fetchRecord (id: string): Promise<WorkloadRecord | undefined> {
    try {
      const r = await this.mesh.getRecord(workloadKey(id), { signal: AbortSignal.timeout(5_000) })
      const record = decodeMessage(WorkloadRecordSchema, r.value)
      if (record != null) this.mergeRecord(record)
      return record
    } catch {
      return undefined
    }
  }

  /**
   * Background lookup of a workload heard of only through a heartbeat: one at
   * a time per id; after a failed lookup, not again for 1 s, 2 s, 4 s … up to
   * RECORD_LOOKUP_BACKOFF_MS (every peer's heartbeat names it every second).
   */
  private lookUpRecord (id: string): void {
    const now = Date.now()
    if ((this.recordLookups.get(id) ?? 0) > now) return
    const failures = this.recordLookupFailures.get(id) ?? 0
    this.recordLookups.set(id, now + Math.min(RECORD_LOOKUP_BACKOFF_MS, RECORD_LOOKUP_FIRST_RETRY_MS * 2 ** failures))
    void this.fetchRecord(id).then(record => {
      if (record != null) { this.recordLookups.delete(id); this.recordLookupFailures.delete(id) } else this.recordLookupFailures.set(id, failures + 1)
    })
  }

  async delete (id: string): Promise<void> {
    const record = this.catalog.get(id) ?? await this.fetchRecord(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    const deleted: WorkloadRecord = { ...record, epoch: record.epoch + 1, status: 'Deleted', placement: [], events: pushEvent(record.events, event('Normal', 'Deleted', `deleted by ${this.selfId}`)), updatedAt: Date.now(), updatedBy: this.selfId }
    this.updateRecord(deleted)
    await this.gossip({ type: 'deleted', workloadId: id, epoch: deleted.epoch, by: this.selfId })
  }

  /** Log lines of every replica of a workload, gathered from the nodes that host them. */
  async logs (id: string, opts: { tail?: number, since?: number } = {}): Promise<LogLine[]> {
    const record = this.catalog.get(id) ?? await this.fetchRecord(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    const hosts = new Set([this.selfId, ...record.placement.map(p => p.peerId), ...this.view.remoteReplicas(id).map(r => r.peerId)])
    const all = await Promise.all([...hosts].map(async peer => {
      if (peer === this.selfId) return [...this.host.logLines(id, opts), ...await this.containers.logLines(id, opts)]
      if (!this.view.isLive(peer)) return []
      try {
        const { result } = await callRpc(this.mesh, peer, LOGS_PROTOCOL, { workloadId: id, ...opts, ...relayOfCurrentRequest() }, { timeoutMs: 5_000 })
        return Array.isArray(result) ? result as LogLine[] : []
      } catch (err) {
        this.log.debug({ peer, err: describeError(err) }, 'could not fetch logs')
        return []
      }
    }))
    const lines = all.flat().sort((a, b) => a.ts - b.ts)
    return opts.tail != null ? lines.slice(-opts.tail) : lines
  }

  // ---------------------------------------------------------------- topics

  /**
   * Publishes a JSON value to a topic: to the mesh, and to this node's own
   * replicas (gossip never loops back). Refuses a topic nobody listens on.
   */
  async publish (topic: string, data: unknown, { requireListeners = true, from }: { requireListeners?: boolean, from?: LocalReplica } = {}): Promise<PublishOutcome> {
    let identity: WorkloadIdentity | undefined
    if (from != null) {
      // A replica publishes as its own workload identity, and only where the policy lets it.
      const spec = from.spec
      this.init.trust.authorize({ kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }, 'publish', { kind: 'topic', name: topic })
      identity = await this.identityOf(from)
    }
    const localReplicas = this.host.list().filter(r => r.spec.topics.includes(topic) && r.status !== 'failed')
    if (requireListeners && localReplicas.length === 0 && this.mesh.topicPeers(topic).length === 0) throw new NoSubscribersError(topic)
    const id = `${this.selfId.slice(-10)}-${this.startedAt.toString(36)}-${(this.eventCounter++).toString(36)}`
    const envelope = { id, data, ts: Date.now() }
    const { recipients } = await this.mesh.publish(topic, encodeMessage(envelope), identity != null ? { as: identity } : {})
    if (localReplicas.length > 0) this.dispatch(topic, { topic, data, from: this.selfId, id, attempt: 1 })
    return { id, topic, recipients, localReplicas: localReplicas.length }
  }

  private readonly identities = new Map<string, Promise<WorkloadIdentity>>()

  /** Each workload instance (replica at an epoch) gets its own key, with a credential from this node. */
  private async identityOf (local: LocalReplica): Promise<WorkloadIdentity> {
    const key = `${local.workloadId}#${local.replica}@${local.epoch}`
    let id = this.identities.get(key)
    if (id == null) {
      for (const k of this.identities.keys()) if (k.startsWith(`${local.workloadId}#${local.replica}@`)) this.identities.delete(k)
      id = this.init.trust.workloadIdentity(local.workloadId, local.replica, local.spec.labels ?? {})
      this.identities.set(key, id)
    }
    return await id
  }

  /** Offers an event to each local replica subscribed to its topic; queue groups pick one replica mesh-wide. */
  private dispatch (topic: string, evt: TopicEvent): void {
    for (const local of this.host.list()) {
      if (!local.spec.topics.includes(topic) || local.status === 'failed') continue
      if (local.spec.delivery === 'fanout' || this.ownsEvent(local, evt.id)) this.host.deliver(local, evt)
    }
  }

  /** Queue-group delivery: rendezvous hashing of the event id over the workload's live replicas. */
  private ownsEvent (local: LocalReplica, eventId: string): boolean {
    const members = new Map<number, { key: string, epoch: number }>()
    const consider = (peerId: string, replica: number, epoch: number): void => {
      const cur = members.get(replica)
      if (cur == null || epoch > cur.epoch || (epoch === cur.epoch && `${peerId}/${replica}` < cur.key)) members.set(replica, { key: `${peerId}/${replica}`, epoch })
    }
    for (const r of this.host.of(local.workloadId)) if (r.status !== 'failed') consider(this.selfId, r.replica, r.epoch)
    for (const r of this.view.remoteReplicas(local.workloadId)) if (r.status !== 'failed') consider(r.peerId, r.replica, r.epoch)
    return rendezvousOwner(eventId, [...members.values()].map(m => m.key)) === `${this.selfId}/${local.replica}`
  }

  private syncSubscriptions (topics: Set<string>): void {
    if (this.stopped) return
    for (const t of topics) if (!this.subscribedTopics.has(t)) this.mesh.subscribe(t)
    for (const t of this.subscribedTopics) if (!topics.has(t)) this.mesh.unsubscribe(t)
    this.subscribedTopics = new Set(topics)
  }

  // ---------------------------------------------------------------- gossip in

  private readonly onDisconnect = (evt: CustomEvent<string>): void => { this.membership.onDisconnect(evt.detail) }

  private readonly onMessage = (evt: CustomEvent<MeshMessage>): void => {
    const msg = evt.detail
    if (msg.topic === HEARTBEAT_TOPIC) {
      const m = decodeMessage(HeartbeatTopicMessage, msg.data)
      if (m?.type === 'peer-down') { this.membership.onPeerDown(m, msg.from); return }
      if (m == null || m.peerId !== msg.from) { this.log.debug({ from: msg.from }, 'dropped a malformed heartbeat'); return }
      this.membership.take(m, msg.sealed)
      return
    }
    if (msg.topic === SCHEDULER_TOPIC) {
      const m = decodeMessage(SchedulerMessage, msg.data)
      if (m == null) { this.log.debug({ from: msg.from }, 'dropped a malformed scheduler message'); return }
      this.onSchedulerMessage(m, msg.from)
      return
    }
    if (!this.subscribedTopics.has(msg.topic)) return
    const sender = msg.sender as import('../policy/trust.js').Sender | undefined
    if (sender?.principal.kind === 'workload') {
      // The publishing node checked the grant; every receiver checks it again.
      const d = this.init.trust.decide(sender.principal, 'publish', { kind: 'topic', name: msg.topic })
      if (!d.allowed) { this.init.trust.noteRefusal(msg.topic, 'denied', `dropped a message on ${msg.topic}: ${d.reason}`); return }
    }
    const envelope = decodeEnvelope(msg)
    this.dispatch(msg.topic, { topic: msg.topic, data: envelope.data, from: msg.from, id: envelope.id, attempt: 1 })
  }

  /** Another node's heartbeat, taken into the view: its policy version, and its replicas (records to look up, copies to fence). */
  private onHeartbeat (hb: Heartbeat): void {
    this.init.policySync?.noteVersion(hb.peerId, hb.policy)
    for (const r of hb.replicas) {
      if (!this.catalog.has(r.workloadId)) this.lookUpRecord(r.workloadId)
      this.fenceAgainst(r.workloadId, r.replica, r.epoch, hb.peerId)
    }
  }

  private onSchedulerMessage (m: SchedulerMessage, from: string): void {
    switch (m.type) {
      case 'tender':
        if (m.tenderer !== from) return
        void this.bidOn(m)
        return
      case 'award':
        if (m.tenderer !== from) return
        void this.onAward(m)
        return
      case 'started':
      case 'start-failed':
        if (m.peerId !== from) return
        this.onConfirmation(m)
        return
      case 'record':
        this.mergeRecord(m.record)
        return
      case 'location':
        if (m.location.owner === from) this.machines.noteLocation(m.location)
        return
      case 'deleted': {
        const cur = this.catalog.get(m.workloadId)
        if (cur == null || cur.epoch < m.epoch) {
          if (cur != null) this.mergeRecord({ ...cur, epoch: m.epoch, status: 'Deleted', placement: [], updatedAt: Date.now(), updatedBy: m.by })
          else { void this.host.stop(m.workloadId); void this.containers.stop(m.workloadId) }
        }
      }
    }
  }

  /**
   * Fencing: if another node runs the same replica ordinal at a higher epoch
   * (it was re-tendered while this node was cut off), this node's copy stops.
   */
  private fenceAgainst (workloadId: string, replica: number, epoch: number, peerId: string): void {
    const owned = this.machines.get(workloadId)
    if (owned != null && replica === 0 && supersedes({ epoch, peerId }, { epoch: owned.epoch, peerId: this.selfId })) {
      this.log.warn({ workload: workloadId, epoch: owned.epoch, newer: epoch, by: peerId }, 'machine owned at a newer epoch elsewhere: stopping and dropping this copy')
      void this.machines.stop(workloadId, { erase: true })
    }
    const pod = this.containers.get(workloadId, replica)
    if (pod != null && supersedes({ epoch, peerId }, { epoch: pod.epoch, peerId: this.selfId })) {
      this.log.warn({ workload: workloadId, replica, epoch: pod.epoch, newer: epoch, by: peerId }, 'container replica superseded by a newer epoch elsewhere: stopping and removing it')
      void this.containers.stop(workloadId, replica)
    }
    const mine = this.host.get(workloadId, replica)
    if (mine == null || mine.status === 'failed') return
    if (supersedes({ epoch, peerId }, { epoch: mine.epoch, peerId: this.selfId })) {
      this.log.warn({ workload: workloadId, replica, epoch: mine.epoch, newer: epoch, by: peerId }, 'replica superseded by a newer epoch elsewhere: stopping it')
      void this.host.stop(workloadId, replica)
    }
  }

  // ---------------------------------------------------------------- bidding and hosting

  private selfOffer (minEpochFor?: { workloadId: string, epoch: number }): NodeOffer {
    this.pruneReservations()
    const allocated = this.allocated()
    for (const r of this.reservations.values()) {
      allocated.cpuMillis += r.resources.cpuMillis
      allocated.memoryBytes += r.resources.memoryBytes
    }
    const hosts = [...new Set([
      ...this.host.list().filter(r => r.status !== 'failed' && (minEpochFor == null || r.workloadId !== minEpochFor.workloadId || r.epoch >= minEpochFor.epoch - 0)).map(r => r.workloadId),
      ...this.containers.reports().filter(r => r.status !== 'failed').map(r => r.workloadId)
    ])]
    return { peerId: this.selfId, labels: this.init.labels, capacity: this.init.capacity, allocated, uptimeMs: Date.now() - this.startedAt, hosts, capabilities: this.capabilities() }
  }

  /**
   * What this node can run: `container` with an engine that answers, `code`
   * (actors, machines) unless it cannot confine it, and `confined` when it
   * runs that code confined by the OS rather than in worker threads.
   */
  private capabilities (): string[] {
    return [
      ...(this.containers.available ? ['container'] : []),
      ...(this.init.isolation !== 'refused' ? ['code'] : []),
      ...(this.init.isolation === 'confined' ? ['confined'] : [])
    ]
  }

  /** Resources of the replicas, machines and containers this node runs. */
  allocated (): Resources {
    const a = this.host.allocated()
    const c = this.containers.allocated()
    a.cpuMillis += c.cpuMillis
    a.memoryBytes += c.memoryBytes
    for (const m of this.machines.list()) {
      a.cpuMillis += m.spec.resources.cpuMillis
      a.memoryBytes += m.spec.resources.memoryBytes
    }
    return a
  }

  private pruneReservations (): void {
    const now = Date.now()
    for (const [id, r] of this.reservations) if (r.expires < now) this.reservations.delete(id)
  }

  private async bidOn (tender: Extract<SchedulerMessage, { type: 'tender' }>): Promise<void> {
    const known = this.catalog.get(tender.spec.id)
    if (known != null && isStale(known, tender.epoch)) return // a deposed tenderer gets no bids
    const live = [...this.host.of(tender.spec.id).filter(r => r.status !== 'failed'), ...this.containers.of(tender.spec.id)]
    const owned = this.machines.get(tender.spec.id)
    const offer = this.selfOffer()
    if (owned != null && owned.epoch >= tender.epoch) offer.hosts.push(tender.spec.id)
    // A replica of an older generation (another spec, being replaced) does not count as already hosting it.
    offer.hosts = offer.hosts.filter(id => id !== tender.spec.id || live.some(r => sameSpec(r.spec, tender.spec)))
    const refusal = await this.admissible(tender.spec)
    const evaluated: ReturnType<typeof evaluate> = refusal != null
      ? { ok: false, rejections: [{ peerId: this.selfId, filter: 'policy', reason: refusal.slice(0, 500) }] }
      : evaluate(offer, { workloadId: tender.spec.id, resources: tender.spec.resources, nodeSelector: tender.spec.nodeSelector, exclude: tender.exclude, requires: [tender.spec.kind === 'container' ? 'container' : 'code'] })
    // Containers of it from before a restart are being adopted or removed here: a new one would race them.
    const result: typeof evaluated = this.containers.isSorting(tender.spec.id)
      ? { ok: false, rejections: [{ peerId: this.selfId, filter: 'already-hosting', reason: 'sorting out its containers from before a restart (adopt or remove)' }] }
      : evaluated
    const reply: BidRequest = result.ok
      ? { type: 'bid', tenderId: tender.tenderId, attempt: tender.attempt, peerId: this.selfId, score: result.score }
      : { type: 'decline', tenderId: tender.tenderId, attempt: tender.attempt, peerId: this.selfId, rejections: result.rejections }
    if (result.ok) {
      this.reservations.set(tender.tenderId, { resources: tender.spec.resources, expires: Date.now() + this.cfg.tenderWindowMs + 2_000 })
      // A bidder is likely to be awarded: fetch the artifact now so the start does not wait for it.
      if (tender.spec.artifact != null) {
        this.init.artifacts.ensure(tender.spec.artifact.sha256, [tender.tenderer], { signal: AbortSignal.timeout(20_000) }).catch(err => {
          this.log.debug({ workload: tender.spec.id, err: describeError(err) }, 'artifact prefetch failed')
        })
      }
    }
    if (tender.tenderer === this.selfId) { this.routeBid(reply); return }
    try {
      await callRpc(this.mesh, tender.tenderer, BID_PROTOCOL, reply, { timeoutMs: 5_000 })
    } catch (err) {
      this.reservations.delete(tender.tenderId)
      this.log.debug({ tenderer: tender.tenderer, err: describeError(err) }, 'could not deliver bid')
    }
  }

  /**
   * A spec as the API caller deploys it: signed already by the deployer's own
   * key (which must be the caller's), or signed here by this node vouching
   * for the deployer it authenticated.
   */
  private async attest (spec: WorkloadSpec, fallbackDeployer?: string): Promise<WorkloadSpec> {
    const caller = currentPrincipal()
    const deployer = caller?.kind === 'deployer' ? caller.key : fallbackDeployer
    if (spec.provenance != null) {
      if (caller?.kind === 'deployer' && spec.provenance.deployer !== caller.key) throw new TrustError('wrong-subject', `manifest of ${spec.id} is signed for deployer ${spec.provenance.deployer}, but the request is authenticated as ${caller.key}`)
      return spec
    }
    if (deployer == null) throw new TrustError('unsigned', `manifest of ${spec.id} is not signed and no deployer is authenticated for it`)
    const { provenance: _drop, ...unsigned } = spec
    const body = WorkloadSpecSchema.parse(unsigned)
    return { ...body, provenance: await this.init.trust.attest(body as never, deployer) }
  }

  private readonly admitted = new Map<string, string | null>()

  /**
   * Whether this node may run a workload: the manifest's signature and
   * deployer check out under the policy in force, the policy lets this node
   * host it, and (stateless) the workload subscribe to its topics. Undefined
   * when admissible, else the reason, logged and counted once per spec and policy version.
   */
  async admissible (spec: WorkloadSpec): Promise<string | undefined> {
    const key = `${this.init.trust.policy.version}|${spec.id}|${spec.provenance?.sig ?? 'unsigned'}`
    const known = this.admitted.get(key)
    if (known !== undefined) return known ?? undefined
    let reason: string | undefined
    let kind = 'denied'
    try {
      await this.init.trust.checkManifest(spec as never)
      const resource = workloadResource(spec)
      const host = this.init.trust.decide(this.init.trust.nodePrincipal(this.selfId), 'host', resource)
      if (!host.allowed) reason = `this node may not host ${spec.id}: ${host.reason}`
      for (const topic of spec.topics) {
        if (reason != null) break
        const sub = this.init.trust.decide({ kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }, 'subscribe', { kind: 'topic', name: topic })
        if (!sub.allowed) reason = `${spec.id} may not subscribe to ${topic}: ${sub.reason}`
      }
    } catch (err) {
      reason = describeError(err)
      if (err instanceof TrustError) kind = err.reason
    }
    if (this.admitted.size > 2_000) this.admitted.clear()
    this.admitted.set(key, reason ?? null)
    if (reason != null) this.init.trust.noteRefusal('manifest', kind, `refused to run ${spec.id}: ${reason}`)
    return reason
  }

  private routeBid (bid: BidRequest): void {
    const actor = this.tenders.get(bid.tenderId)
    if (actor == null) return
    if (bid.type === 'bid') actor.send({ type: 'bid.received', peerId: bid.peerId, score: bid.score, attempt: bid.attempt })
    else actor.send({ type: 'bid.declined', peerId: bid.peerId, attempt: bid.attempt, rejections: bid.rejections.map(r => ({ ...r, filter: r.filter as never })) })
  }

  private async onAward (award: Extract<SchedulerMessage, { type: 'award' }>): Promise<void> {
    this.reservations.delete(award.tenderId)
    const known = this.catalog.get(award.workloadId)
    if (known != null && isStale(known, award.epoch)) return // deleted meanwhile, or from a tenderer superseded by a newer epoch
    for (const a of award.awards) {
      if (a.peerId !== this.selfId) this.view.announce({ workloadId: award.workloadId, peerId: a.peerId, replica: a.replica, epoch: award.epoch, status: 'starting', handled: 0, failures: 0 })
    }
    const mine = award.awards.filter(a => a.peerId === this.selfId)
    const refusal = mine.length > 0 ? await this.admissible(award.spec) : undefined
    await Promise.all(mine.map(async a => {
      const t0 = Date.now()
      try {
        if (refusal != null) throw new TrustError('denied', refusal)
        if (award.spec.kind === 'stateful') await this.machines.start(award.spec, award.epoch, [award.tenderer])
        else if (award.spec.kind === 'container') await this.containers.start(award.spec, a.replica, award.epoch)
        else await this.host.start(award.spec, a.replica, award.epoch, [award.tenderer])
        this.log.debug({ workload: award.workloadId, replica: a.replica, ms: Date.now() - t0 }, 'replica started')
        const started = { type: 'started' as const, tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: this.selfId, replica: a.replica }
        this.onConfirmation(started)
        await this.gossip(started)
      } catch (err) {
        const failed = { type: 'start-failed' as const, tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: this.selfId, replica: a.replica, reason: describeError(err).slice(0, 1900) }
        this.log.warn({ workload: award.workloadId, replica: a.replica, err: failed.reason }, 'replica failed to start')
        this.onConfirmation(failed)
        await this.gossip(failed)
      }
    }))
  }

  private onConfirmation (m: Extract<SchedulerMessage, { type: 'started' | 'start-failed' }>): void {
    if (m.peerId !== this.selfId) {
      this.view.announce({ workloadId: m.workloadId, peerId: m.peerId, replica: m.replica, epoch: m.epoch, status: m.type === 'started' ? 'running' : 'failed', handled: 0, failures: 0 })
    }
    const actor = this.tenders.get(m.tenderId)
    if (actor == null) return
    if (m.type === 'started') actor.send({ type: 'replica.started', peerId: m.peerId })
    else actor.send({ type: 'replica.failed', peerId: m.peerId, reason: m.reason })
  }

  // ---------------------------------------------------------------- tendering

  private async runTender (spec: WorkloadSpec, epoch: number, ordinals: number[], exclude: string[]): Promise<SchedulerOutput> {
    this.tendering.add(spec.id)
    const tenderId = randomUUID()
    const t0 = Date.now()
    try {
      const logic = schedulerMachine.provide({
        actors: {
          publishTender: fromPromise<void, TenderMessage>(async ({ input }) => {
            // Bidders need not know which ordinals are missing: the award assigns them.
            const wire = { type: 'tender' as const, tenderId, tenderer: this.selfId, epoch, attempt: input.attempt, spec, ordinals: ordinals.slice(0, input.replicas), exclude: input.exclude }
            this.log.debug({ workload: spec.id, tenderId, attempt: input.attempt, ms: Date.now() - t0 }, 'tender published')
            await this.gossip(wire)
            void this.bidOn(wire)
          }),
          publishAward: fromPromise<void, AwardMessage>(async ({ input }) => {
            const wire = { type: 'award' as const, tenderId, tenderer: this.selfId, workloadId: spec.id, epoch, spec, awards: input.awards }
            this.log.debug({ workload: spec.id, tenderId, awards: input.awards, ms: Date.now() - t0 }, 'award published')
            await this.gossip(wire)
            void this.onAward(wire)
          })
        }
      })
      const actor = createActor(logic, {
        id: `scheduler:${spec.id}:${epoch}`,
        ...(this.init.inspection != null ? { inspect: this.init.inspection.observer(`scheduler:${spec.id}`) } : {}),
        input: {
          tenderId,
          workloadId: spec.id,
          resources: spec.resources,
          nodeSelector: spec.nodeSelector,
          replicas: ordinals.length,
          ordinals,
          exclude,
          epoch,
          windowMs: this.cfg.tenderWindowMs,
          confirmTimeoutMs: this.cfg.confirmTimeoutMs,
          maxAttempts: 3,
          seed: tenderId,
          // Every node that heartbeats answers (bid or decline), so the window can close
          // early. Only right after joining, before any heartbeat, direct peers stand in.
          expectedResponders: this.view.livePeers().length > 0 ? this.view.livePeerIds().length : this.mesh.peers().length + 1
        }
      })
      this.tenders.set(tenderId, actor)
      const done = new Promise<SchedulerOutput>((resolve) => {
        actor.subscribe({
          complete: () => { resolve(actor.getSnapshot().output as SchedulerOutput) },
          error: err => { resolve({ status: 'failed', placed: [], reason: describeError(err), attempts: 0 }) }
        })
      })
      actor.start()
      const output = await done
      this.log.debug({ workload: spec.id, tenderId, status: output.status, ms: Date.now() - t0 }, 'tender finished')
      this.init.metrics?.tenders.inc({ outcome: output.status })
      this.init.metrics?.tenderSeconds.observe({ outcome: output.status }, (Date.now() - t0) / 1000)
      return output
    } finally {
      this.tenders.delete(tenderId)
      this.tendering.delete(spec.id)
    }
  }

  // ---------------------------------------------------------------- heartbeats and guardians

  /** This node's heartbeat interval now (it grows with the mesh). */
  heartbeatInterval (): number {
    return this.membership.heartbeatInterval()
  }

  /** What this node's heartbeat reports of it. */
  private heartbeatContent (): HeartbeatContent {
    const replicas: Heartbeat['replicas'] = [...this.host.reports(), ...this.machines.reports(), ...this.containers.reports()].map(r => {
      const ready = this.services.readiness(r.workloadId, r.replica, r.epoch)
      return ready != null ? { ...r, ready } : r
    })
    return { replicas, allocated: this.allocated(), capabilities: this.capabilities(), labels: this.init.labels, capacity: this.init.capacity, policy: this.init.trust.policy.version }
  }

  /**
   * Guardian duty: for each workload whose id ranks this node first among live
   * peers, compare desired replicas with live ones and re-tender the missing.
   */
  private guard (): void {
    if (this.stopped) return
    const now = Date.now()
    const live = this.view.livePeerIds()
    const liveHosts = new Set([...live, this.selfId])
    for (const record of this.catalog.values()) {
      if (record.status === 'Deleted' || record.status === 'Completed' || record.status === 'Succeeded') continue
      // Containers that ended by their restart policy are done; only the others are watched.
      const ended = endedReplicas(record)
      if (ended.size >= record.spec.replicas) continue
      // A tender in flight belongs to its tenderer, unless that node died: then its guardian takes over.
      if (record.status === 'Pending' && this.view.isLive(record.updatedBy)) continue
      // Workloads nothing could host are retried too, but less often (see heal).
      if (this.tendering.has(record.spec.id)) continue
      if ((this.retryAfter.get(record.spec.id) ?? 0) > now) continue
      const rank = guardians(record.spec.id, live, 3).indexOf(this.selfId)
      if (rank < 0) continue
      const running = this.liveReplicas(record.spec.id)
      // The diff is reconcile's: every copy here is on a live host (this node, or a peer the view counts live),
      // so liveness has been decided already and each copy counts as heard now.
      const plan = reconcile(
        { workloadId: record.spec.id, replicas: record.spec.replicas },
        running.map(r => ({ peerId: r.peerId, replica: r.replica, status: 'running' as const, lastHeartbeat: now })),
        liveHosts, now, this.cfg.heartbeatTimeoutMs)
      const missing = plan.missing.filter(i => !ended.has(i))
      if (missing.length === 0) this.missingSince.delete(record.spec.id)
      else if (!this.missingSince.has(record.spec.id)) this.missingSince.set(record.spec.id, now)
      // The first guardian heals; the next ones step in, one after the other, if it has
      // not within BACKUP_GUARDIAN_MS each (it may have just restarted and not know the workload).
      if (rank > 0) {
        if (missing.length === 0) continue
        // Seen through a dropped connection, the loss is news to every connected guardian
        // at once; seen through a heartbeat timeout, guardians notice up to a heartbeat apart.
        const droppedHere = missing.every(i => { const h = this.view.lastHost(record.spec.id, i); return h != null && this.view.hasDisconnected(h.peerId) })
        const step = droppedHere ? BACKUP_GUARDIAN_MS : BACKUP_GUARDIAN_SLOW_MS
        const wait = rank * step - (now - (this.missingSince.get(record.spec.id) ?? now))
        if (wait > 0) {
          // Look again when this guardian's turn comes, rather than at the next round.
          const recheck = setTimeout(() => { try { this.guard() } catch {} }, wait + 10)
          recheck.unref()
          continue
        }
        // Another live node just acted on the record (a heal in flight): leave it to that node.
        if (record.updatedBy !== this.selfId && this.view.isLive(record.updatedBy) && now - (this.recordSeenAt.get(record.spec.id) ?? 0) < this.cfg.heartbeatTimeoutMs) continue
      }
      // Give new placements time to show up in heartbeats (local clock: no trust in remote ones),
      // unless the node each missing replica was last known on is gone (connection dropped or silent).
      if (now - (this.recordSeenAt.get(record.spec.id) ?? 0) < this.cfg.heartbeatTimeoutMs) {
        const gone = missing.length > 0 && missing.every(i => {
          const heard = this.view.lastHost(record.spec.id, i)
          const placed = record.placement.find(p => p.replica === i)
          const host = heard != null && (placed == null || heard.epoch >= placed.epoch) ? heard.peerId : placed?.peerId
          return host != null && host !== this.selfId && !this.view.isLive(host)
        })
        if (!gone) continue
      }
      if (missing.length === 0) {
        // A failed machine keeps running (its last state stays readable) but stays Failed.
        if (record.status !== 'Running' && !(record.spec.kind === 'stateful' && record.status === 'Failed')) {
          const adopted = record.status === 'Pending' ? [event('Normal', 'Adopted', `tenderer ${record.updatedBy} stopped answering; every replica already runs, adopted by guardian ${this.selfId}`)] : []
          this.updateRecord({ ...record, status: 'Running', placement: keepEnded(record, running.map(r => ({ peerId: r.peerId, replica: r.replica, epoch: r.epoch }))), events: [...record.events, ...adopted].slice(-MAX_EVENTS), updatedAt: now, updatedBy: this.selfId })
        }
        continue
      }
      void this.heal(record, running, missing)
    }
  }

  private liveReplicas (id: string): Array<{ peerId: string, replica: number, epoch: number }> {
    const out = new Map<number, { peerId: string, replica: number, epoch: number }>()
    const add = (peerId: string, replica: number, epoch: number): void => {
      const cur = out.get(replica)
      if (cur == null || epoch > cur.epoch) out.set(replica, { peerId, replica, epoch })
    }
    for (const r of this.host.of(id)) if (r.status !== 'failed') add(this.selfId, r.replica, r.epoch)
    for (const r of this.containers.reports(id)) if (r.status !== 'failed') add(this.selfId, r.replica, r.epoch)
    const owned = this.machines.get(id)
    if (owned != null) add(this.selfId, 0, owned.epoch)
    for (const r of this.view.remoteReplicas(id)) if (r.status !== 'failed') add(r.peerId, r.replica, r.epoch)
    return [...out.values()]
  }

  private async heal (record: WorkloadRecord, running: Array<{ peerId: string, replica: number, epoch: number }>, missing: number[]): Promise<void> {
    const lost = record.placement.filter(p => missing.includes(p.replica))
    const epoch = record.epoch + 1
    const why = record.status === 'Pending'
      ? `tenderer ${record.updatedBy} stopped answering during the tender; replicas ${missing.join(', ')} not running`
      : lost.length > 0
        ? lost.map(p => `replica ${p.replica} on ${p.peerId} lost (${this.view.lossReason(p.peerId)})`).join('; ')
        : `replicas ${missing.join(', ')} not running`
    this.log.warn({ workload: record.spec.id, missing, epoch }, `re-tendering: ${why}`)
    const unplaced = record.status === 'Unschedulable' || record.status === 'Failed' || record.status === 'Pending'
    const pending: WorkloadRecord = { ...record, epoch, status: unplaced ? record.status : 'Degraded', events: pushEvent(record.events, event('Warning', 'ReplicaLost', `${why}; re-tendering at epoch ${epoch}`)), updatedAt: Date.now(), updatedBy: this.selfId }
    this.updateRecord(pending, { persist: false })
    const result = await this.runTender(record.spec, epoch, missing, running.map(r => r.peerId))
    const latest = this.catalog.get(record.spec.id)
    if (latest == null || latest.status === 'Deleted' || latest.epoch !== epoch) return
    if (result.status === 'placed') {
      const placement = keepEnded(latest, [...running, ...result.placed.map(p => ({ peerId: p.peerId, replica: p.replica, epoch }))])
      this.updateRecord({ ...latest, status: 'Running', placement, events: pushEvent(latest.events, event('Normal', 'Rescheduled', result.placed.map(p => `replica ${p.replica} → ${p.peerId}`).join(', '))), updatedAt: Date.now(), updatedBy: this.selfId })
    } else {
      this.retryAfter.set(record.spec.id, Date.now() + (unplaced ? UNPLACED_RETRY_MS : DEGRADED_RETRY_MS))
      this.updateRecord({ ...latest, status: unplaced ? latest.status : 'Degraded', events: pushEvent(latest.events, event('Warning', 'FailedScheduling', result.reason ?? result.status)), updatedAt: Date.now(), updatedBy: this.selfId })
    }
  }

  // ---------------------------------------------------------------- records

  /** Adopts a newer record (gossip or DHT) and fences local replicas it supersedes. */
  private mergeRecord (incoming: WorkloadRecord): void {
    let record = incoming
    const cur = this.catalog.get(record.spec.id)
    if (cur != null && record.epoch === cur.epoch && record.status !== 'Deleted' && cur.status !== 'Deleted') {
      // Hosts note how their replicas ended, each in its own copy: at one epoch, no outcome is lost.
      const newer = record.updatedAt < cur.updatedAt ? cur : record
      const merged = mergeOutcomes(newer, newer === cur ? record : cur)
      if (merged === cur) return
      record = merged
    } else if (cur != null && record.epoch < cur.epoch) return
    this.catalog.set(record.spec.id, record)
    this.recordSeenAt.set(record.spec.id, Date.now())
    if (record.status === 'Deleted' || record.status === 'Completed') {
      this.view.forgetWorkload(record.spec.id)
      void this.host.stop(record.spec.id)
      void this.containers.stop(record.spec.id)
      // The workload's state is transient: every node drops what it holds of it.
      if (record.spec.kind === 'stateful') void this.machines.stop(record.spec.id, { erase: true })
      return
    }
    // Scaled down: the ordinals at or above the count stop.
    for (const local of this.host.of(record.spec.id)) if (local.replica >= record.spec.replicas) void this.host.stop(local.workloadId, local.replica)
    for (const pod of this.containers.of(record.spec.id)) if (pod.replica >= record.spec.replicas) void this.containers.stop(pod.workloadId, pod.replica)
    // A replica from an older generation (different artifact or spec) is stopped once a newer one is placed.
    for (const local of this.host.of(record.spec.id)) {
      if (!sameSpec(local.spec, record.spec) && record.status === 'Running') void this.host.stop(local.workloadId, local.replica)
    }
    for (const pod of this.containers.of(record.spec.id)) {
      if (!sameSpec(pod.spec, record.spec) && record.status === 'Running') void this.containers.stop(pod.workloadId, pod.replica)
    }
  }

  /**
   * Adopts a record here, gossips it, and (with `persist`, the default) puts it
   * in the DHT. Transient states (a tender in flight) are gossiped only.
   */
  private updateRecord (record: WorkloadRecord, { persist = true } = {}): void {
    this.mergeRecord(record)
    void this.gossip({ type: 'record', record })
    if (!persist) return
    this.mesh.putRecord(workloadKey(record.spec.id), encodeMessage(record), { signal: AbortSignal.timeout(10_000) }).catch(err => {
      this.log.debug({ workload: record.spec.id, err: describeError(err) }, 'workload record put failed')
    })
  }

  private async gossip (message: SchedulerMessage): Promise<void> {
    if (!this.mesh.started) return
    await this.mesh.publish(SCHEDULER_TOPIC, encodeMessage(message))
  }

  private statusOf (record: WorkloadRecord): WorkloadStatus {
    const placement: ReplicaPlacement[] = []
    const local = new Map<number, { epoch: number, status: ReplicaPlacement['status'], handled: number, failures: number, pod?: PodReport }>(this.host.of(record.spec.id).map(r => [r.replica, r]))
    const owned = this.machines.get(record.spec.id)
    if (owned != null) local.set(0, { epoch: owned.epoch, status: owned.status === 'running' ? 'running' : 'starting', handled: 0, failures: 0 })
    for (const r of this.containers.reports(record.spec.id)) local.set(r.replica, r)
    const remote = this.view.remoteReplicas(record.spec.id)
    // Ordinals at or above the count are being stopped (scaled down): not shown.
    const ordinals = new Set([...record.placement.map(p => p.replica), ...local.keys(), ...remote.map(r => r.replica)].filter(r => r < record.spec.replicas))
    for (const replica of [...ordinals].sort((a, b) => a - b)) {
      // How a container replica ended is final: it wins over heartbeats that may lag behind it.
      const ended = record.placement.find(p => p.replica === replica && p.outcome != null)
      if (ended?.outcome != null) {
        const report = local.get(replica) ?? remote.find(r => r.replica === replica && r.peerId === ended.peerId && r.epoch === ended.epoch)
        placement.push({ replica, peerId: ended.peerId, epoch: ended.epoch, status: 'exited', handled: 0, failures: 0, pod: { phase: ended.outcome.phase, reason: ended.outcome.reason, restarts: report?.pod?.restarts ?? 0, ...(ended.outcome.exitCode != null ? { exitCode: ended.outcome.exitCode } : {}) } })
        continue
      }
      const mine = local.get(replica)
      if (mine != null) { placement.push({ replica, peerId: this.selfId, epoch: mine.epoch, status: mine.status, handled: mine.handled, failures: mine.failures, ...(mine.pod != null ? { pod: mine.pod } : {}) }); continue }
      const seen = remote.filter(r => r.replica === replica).sort((a, b) => b.epoch - a.epoch)[0]
      if (seen != null) { placement.push({ replica, peerId: seen.peerId, epoch: seen.epoch, status: seen.status, handled: seen.handled, failures: seen.failures, ...(seen.pod != null ? { pod: seen.pod } : {}) }); continue }
      const planned = record.placement.find(p => p.replica === replica)
      if (planned != null) placement.push({ replica, peerId: planned.peerId, epoch: planned.epoch, status: this.view.isLive(planned.peerId) ? 'starting' : 'lost', handled: 0, failures: 0 })
    }
    const ready = placement.filter(p => p.status === 'running').length
    let status: WorkloadStatusName = record.status
    const ended = endedStatus(record)
    if (ended != null) status = ended
    else if (record.status === 'Running' || record.status === 'Degraded') status = ready >= record.spec.replicas ? 'Running' : 'Degraded'
    return {
      id: record.spec.id,
      name: record.spec.name,
      namespace: record.spec.namespace,
      kind: record.spec.kind,
      status,
      replicas: record.spec.replicas,
      ready,
      epoch: record.epoch,
      placement,
      topics: record.spec.topics,
      delivery: record.spec.delivery,
      artifact: record.spec.artifact,
      createdAt: record.spec.createdAt,
      updatedAt: record.updatedAt,
      ...(record.output !== undefined ? { output: record.output } : {}),
      ...(record.spec.durability != null ? { durability: record.spec.durability } : {}),
      ...(record.spec.labels != null ? { labels: record.spec.labels } : {}),
      ...(record.spec.kubeKind != null ? { kubeKind: record.spec.kubeKind } : {}),
      ...(record.spec.manifest != null ? { manifest: record.spec.manifest } : {})
    }
  }
}

function event (type: SchedulingEvent['type'], reason: string, message: string): SchedulingEvent {
  return { ts: Date.now(), type, reason, message: message.slice(0, 3900) }
}

function pushEvent (events: SchedulingEvent[], e: SchedulingEvent): SchedulingEvent[] {
  return [...events, e].slice(-MAX_EVENTS)
}

/** A tender or award at `epoch` is stale once the workload was deleted at or after it, or moved to a newer epoch. */
function isStale (known: WorkloadRecord, epoch: number): boolean {
  return known.epoch > epoch || (known.status === 'Deleted' && known.epoch >= epoch)
}

/** Replica ordinals of a container workload that ended by their restart policy (recorded, never re-run). */
function endedReplicas (record: WorkloadRecord): Set<number> {
  return new Set(record.placement.filter(p => p.outcome != null).map(p => p.replica))
}

/** Succeeded once every replica succeeded; Failed once every replica ended and one failed; else none. */
function endedStatus (record: WorkloadRecord): 'Succeeded' | 'Failed' | undefined {
  if (record.spec.kind !== 'container' || record.status === 'Deleted') return undefined
  const outcomes = record.placement.filter(p => p.outcome != null)
  if (new Set(outcomes.map(p => p.replica)).size < record.spec.replicas) return undefined
  return outcomes.every(p => p.outcome?.phase === 'Succeeded') ? 'Succeeded' : 'Failed'
}

type Placement = WorkloadRecord['placement'][number]

/** A new placement, sorted, keeping the record's entries of replicas that ended (their outcome is history). */
function keepEnded (record: WorkloadRecord, placement: Placement[]): Placement[] {
  const out = placement.map(p => {
    const known = record.placement.find(q => q.replica === p.replica && q.peerId === p.peerId && q.epoch === p.epoch && q.outcome != null)
    return known != null ? known : p
  })
  for (const p of record.placement) if (p.outcome != null && !out.some(q => q.replica === p.replica)) out.push(p)
  return out.sort((a, b) => a.replica - b.replica)
}

/**
 * `newer` with the replica outcomes only `other` knows (same epoch: each host
 * writes its own replica's end). Returns `newer` itself when nothing is added.
 */
function mergeOutcomes (newer: WorkloadRecord, other: WorkloadRecord): WorkloadRecord {
  const extra = other.placement.filter(p => p.outcome != null && !newer.placement.some(q => q.replica === p.replica && q.outcome != null))
  if (extra.length === 0) return newer
  const placement = keepEnded({ ...newer, placement: [...newer.placement.filter(p => !extra.some(e => e.replica === p.replica)), ...extra] }, newer.placement.filter(p => !extra.some(e => e.replica === p.replica)))
  const merged = { ...newer, placement }
  const status = endedStatus(merged)
  return status != null ? { ...merged, status } : merged
}

/** Same generation: what a replica runs is alike (the replica count and the manifest text do not matter). */
function sameSpec (a: WorkloadSpec, b: WorkloadSpec): boolean {
  const { createdAt: _a, source: _sa, replicas: _ra, manifest: _ma, provenance: _pa, ...x } = a
  const { createdAt: _b, source: _sb, replicas: _rb, manifest: _mb, provenance: _pb, ...y } = b
  return JSON.stringify(x) === JSON.stringify(y)
}
