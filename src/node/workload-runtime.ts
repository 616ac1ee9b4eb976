/**
 * The workload plane of one node, as a facade. Every node runs the same
 * code: it bids on tenders, hosts the replicas it is awarded, heartbeats
 * them, serves their logs, and, as a guardian of the workloads whose ids rank
 * it first, re-tenders replicas whose host stopped heartbeating. A node that
 * receives an `apply` becomes that workload's tenderer; there is no scheduler
 * process.
 *
 * The decisions live in the planes, each a folder with its own tests:
 * src/scheduling/ (the record catalog and its events, the tenderer, bidder,
 * guardian, admission, the record lifecycle and status view),
 * src/membership/ (who is alive), src/stateless/ (replicas and topic
 * dispatch), src/stateful/, src/containers/, src/services/. This class wires
 * them from one components object (WorkloadRuntimeInit), routes gossip to
 * them, serves their stream protocols and answers the API (WorkloadApi).
 */
import { compareCodeUnits } from '../compare.js'
import { randomUUID } from 'node:crypto'
import { describeError } from '../errors.js'
import { InvalidWorkloadError, WorkloadNotFoundError } from '../actors/errors.js'
import type { PodOutcome } from '../containers/container-host.js'
import { Membership, type HeartbeatContent } from '../membership/membership.js'
import type { MeshView } from '../membership/mesh-view.js'
import { MAX_ENVELOPE_BYTES } from '../policy/envelope.js'
import { BID_PROTOCOL, BID_STREAMS, PlacementRequest, placementSenderError, decodeMessage, encodeMessage, type Heartbeat, HEARTBEAT_TOPIC, LOGS_PROTOCOL, REPLICA_PROTOCOL, SCHEDULER_TOPIC, SchedulerMessage, VIEW_PROTOCOL, type LogLine } from '../protocol/messages.js'
import { SEND_PROTOCOL, STATE_PROTOCOL, type Ack, type MachineStateReport, type TransitionRecord } from '../protocol/state.js'
import { Admission } from '../scheduling/admission.js'
import { Bidder } from '../scheduling/bidder.js'
import { RecordCatalog } from '../scheduling/catalog.js'
import { Guardian } from '../scheduling/guardian.js'
import * as lifecycle from '../scheduling/record-lifecycle.js'
import { statusOf } from '../scheduling/status.js'
import { Tenderer } from '../scheduling/tenderer.js'
import type { ContainerHost } from '../containers/container-host.js'
import type { ServicePlane } from '../services/plane.js'
import type { ServiceTunnel } from '../services/tunnel.js'
import type { MachineHost } from '../stateful/machine-host.js'
import type { StateHolder } from '../stateful/state-holder.js'
import { StatefulApi } from '../stateful/workload-api.js'
import type { ReplicaHost, LocalReplica } from '../stateless/replica-host.js'
import { TopicDispatch } from '../stateless/topics.js'
import type { TraceEntry } from '../store/journal.js'
import type { ArtifactService } from '../transport/artifacts.js'
import type { Logger } from '../transport/logger.js'
import type { MeshMessage, MeshNode } from '../transport/mesh-node.js'
import { callRpc, MAX_RPC_FRAME, serveRpc } from '../transport/rpc.js'
import type { WorkloadRecord } from '../workloads/records.js'
import type { WorkloadSpec, Resources } from '../workloads/types.js'
import type { NodeSummary, PublishOutcome, WorkloadDescription, WorkloadStatus } from '../workloads/views.js'
import { adoptContainers } from './container-adoption.js'
import { hostPlanes } from './host-planes.js'
import { LocalCopies } from './local-copies.js'
import { ReplicaAccess } from './replica-access.js'
import type { WorkloadApi } from './workload-api.js'
import type { WorkloadRuntimeInit } from './workload-components.js'

export type { WorkloadRuntimeInit } from './workload-components.js'
export { workloadPrincipal, workloadResource } from '../scheduling/admission.js'

/** Events and journal batches travel as one sealed envelope (a body of at most MAX_ENVELOPE_BYTES, which JSON escaping may double); every other request is small (rpc.ts's default). */
const MAX_SEALED_BATCH = 2 * MAX_ENVELOPE_BYTES + 64 * 1024

export class WorkloadRuntime implements WorkloadApi {
  readonly host: ReplicaHost
  readonly machines: MachineHost
  readonly containers: ContainerHost
  readonly holder: StateHolder
  /** Services by name, calls, health probes and egress (src/services/). */
  readonly services: ServicePlane
  /** The service proxy: container services' stable addresses, tunnelled over libp2p (src/services/tunnel.ts). */
  readonly tunnel: ServiceTunnel
  private readonly mesh: MeshNode
  private readonly log: Logger
  private readonly now: () => number
  private readonly membership: Membership
  private readonly view: MeshView
  private readonly catalog: RecordCatalog
  private readonly local: LocalCopies
  private readonly admission: Admission
  private readonly tenderer: Tenderer
  private readonly bidder: Bidder
  private readonly guardian: Guardian
  private readonly topics: TopicDispatch
  private readonly stateful: StatefulApi
  private readonly access: ReplicaAccess
  private readonly transitionListeners = new Set<(workloadId: string, t: TransitionRecord) => void>()
  private readonly timers: NodeJS.Timeout[] = []
  private readonly startedAt: number
  private readonly cfg: { tenderWindowMs: number, confirmTimeoutMs: number, heartbeatMs: number, heartbeatTimeoutMs: number }
  private stopped = false

  constructor (private readonly init: WorkloadRuntimeInit) {
    const mesh = this.mesh = init.mesh
    const log = this.log = init.log.child({ component: 'workloads' })
    const now = this.now = init.now ?? Date.now
    this.startedAt = now()
    const cfg = this.cfg = { tenderWindowMs: init.tenderWindowMs ?? 250, confirmTimeoutMs: init.confirmTimeoutMs ?? 20_000, heartbeatMs: init.heartbeatMs ?? 1_000, heartbeatTimeoutMs: init.heartbeatTimeoutMs ?? 3_500 }
    const selfId = mesh.peerId
    const gossip = async (m: SchedulerMessage, { signal }: { signal?: AbortSignal } = {}): Promise<void> => { await this.gossip(m, signal) }
    const catalog = this.catalog = new RecordCatalog({ log, now, mesh: { gossip, putRecord: async (key, value, o) => await mesh.putRecord(key, value, o), getRecord: async (key, o) => await mesh.getRecord(key, o) } })
    this.membership = new Membership({
      mesh,
      log,
      heartbeatMs: cfg.heartbeatMs,
      heartbeatTimeoutMs: cfg.heartbeatTimeoutMs,
      content: () => this.heartbeatContent(),
      onHeartbeat: hb => { this.onHeartbeat(hb) },
      onPeerLost: () => { if (catalog.size > 0) this.guardian.guard() },
      askView: async peer => (await callRpc(mesh, peer, VIEW_PROTOCOL, {}, { timeoutMs: 5_000 })).result
    })
    const view = this.view = this.membership.view
    const stamp = (): lifecycle.Stamp => ({ now: now(), by: selfId })
    const planes = hostPlanes(init, {
      log,
      view,
      catalog,
      topics: () => this.topics,
      stateful: () => this.stateful,
      gossip,
      onPodEnded: (id, replica, epoch, outcome) => { this.onPodEnded(id, replica, epoch, outcome) },
      onMachineCompleted: (spec, epoch, output) => { catalog.amend(spec.id, r => lifecycle.completed(r, epoch, output, stamp())) },
      onMachineFailed: (spec, error) => { catalog.amend(spec.id, r => lifecycle.machineFailed(r, error, stamp())) },
      onTransition: (id, t) => { for (const l of this.transitionListeners) l(id, t) },
      onReadinessChanged: () => { setImmediate(() => { try { this.membership.tick() } catch {} }) }
    })
    ;({ host: this.host, containers: this.containers, holder: this.holder, machines: this.machines, services: this.services, tunnel: this.tunnel } = planes)
    const local = this.local = new LocalCopies({ selfId, ...planes, view, log, artifacts: init.artifacts, ...(init.isolation != null ? { isolation: init.isolation } : {}) })
    catalog.on(e => { local.onCatalogEvent(e) })
    this.access = new ReplicaAccess({ mesh, trust: init.trust, view, ...planes, local, log, known: async id => await catalog.known(id) })
    const liveOwner = (id: string): { peerId: string, epoch: number } | undefined => this.guardian.liveReplicas(id).filter(r => r.replica === 0).sort((a, b) => b.epoch - a.epoch)[0]
    this.stateful = new StatefulApi({ selfId, ...planes, log, known: async id => await catalog.known(id), record: id => catalog.get(id), liveOwner, isLive: peer => view.isLive(peer) })
    const admission = this.admission = new Admission(init.trust, selfId)
    const announce = view.announce.bind(view)
    const tenderer = this.tenderer = new Tenderer({
      selfId,
      log,
      catalog,
      sendTender: async (peerId, tender, { signal }) => { await callRpc(mesh, peerId, BID_PROTOCOL, tender, { signal, timeoutMs: 5_000 }) },
      sendAward: async (peerId, award, { signal }) => { await callRpc(mesh, peerId, BID_PROTOCOL, award, { signal, timeoutMs: 5_000 }) },
      offers: () => [this.bidder.offer(), ...view.liveOffers()],
      unknownPeers: () => mesh.peers().map(p => p.peerId).filter(id => view.lastSeen(id) == null),
      bidOn: tender => { void this.bidder.bidOn(tender) },
      onAward: award => { void this.bidder.onAward(award) },
      announce,
      tenderWindowMs: cfg.tenderWindowMs,
      confirmTimeoutMs: cfg.confirmTimeoutMs,
      now,
      newId: init.newId ?? randomUUID,
      ...(init.metrics != null ? { metrics: init.metrics } : {}),
      ...(init.inspection != null ? { inspection: init.inspection } : {})
    })
    this.bidder = new Bidder({
      selfId,
      log,
      labels: init.labels,
      capacity: init.capacity,
      catalog,
      node: local,
      admissible: async spec => await admission.admissible(spec),
      answer: async (tendererId, reply) => {
        if (tendererId === selfId) tenderer.routeBid(reply)
        else await callRpc(mesh, tendererId, BID_PROTOCOL, reply, { timeoutMs: 5_000 })
      },
      confirm: async (tendererId, m) => { if (tendererId === selfId) tenderer.onConfirmation(m); else await callRpc(mesh, tendererId, BID_PROTOCOL, m, { timeoutMs: 5_000 }) },
      announce,
      tenderWindowMs: cfg.tenderWindowMs,
      now,
      startedAt: this.startedAt
    })
    this.guardian = new Guardian({ selfId, log, catalog, view, copies: id => local.copies(id), tenderer, heartbeatTimeoutMs: cfg.heartbeatTimeoutMs, now })
    this.topics = new TopicDispatch({ selfId, mesh, trust: init.trust, replicas: this.host, remoteReplicas: id => view.remoteReplicas(id), now })
  }

  get selfId (): string { return this.mesh.peerId }

  /** The node's bundles: uploads are stored here (POST /v1/artifacts), the Kubernetes API reads them by sha256. */
  get artifacts (): ArtifactService { return this.init.artifacts }

  /** A node's IP address as this node reaches it (its own: its first IPv4 listen address), for Endpoints objects. */
  hostAddress (peerId: string): string {
    const addrs = peerId === this.selfId ? this.mesh.addresses() : (this.mesh.peers().find(p => p.peerId === peerId)?.addrs ?? [])
    for (const a of addrs) {
      const m = /^\/ip4\/([\d.]+)\//.exec(a)
      if (m != null && m[1] !== '0.0.0.0') return m[1]!
    }
    return '0.0.0.0'
  }

  /** Calls `listener` for every durable transition of a machine this node owns (returns the unsubscriber). */
  onTransition (listener: (workloadId: string, t: TransitionRecord) => void): () => void {
    this.transitionListeners.add(listener)
    return () => { this.transitionListeners.delete(listener) }
  }

  async sendEvent (id: string, event: unknown, opts: { id?: string, timeoutMs?: number, sender?: string } = {}): Promise<Ack> { return await this.stateful.sendEvent(id, event, opts) }
  async exportTrace (id: string): Promise<{ records: TraceEntry[], sources: number }> { return await this.stateful.exportTrace(id) }
  async machineDefinition (id: string): Promise<{ workloadId: string, definition: unknown }> { return await this.stateful.machineDefinition(id) }
  async machineState (id: string): Promise<MachineStateReport> { return await this.stateful.machineState(id) }

  /** A container replica here ended by its restart policy: the record keeps the outcome so it is never run again. */
  private onPodEnded (id: string, replica: number, epoch: number, outcome: PodOutcome, attempt = 1): void {
    const record = this.catalog.get(id)
    if (record == null || record.epoch < epoch) {
      // The award can arrive before the record's gossip: try again shortly.
      if (attempt < 20) setTimeout(() => { this.onPodEnded(id, replica, epoch, outcome, attempt + 1) }, 250).unref()
      return
    }
    if (record.status !== 'Deleted') this.catalog.update(lifecycle.podEnded(record, replica, epoch, outcome, { now: this.now(), by: this.selfId }))
  }

  async start (): Promise<void> {
    this.mesh.addEventListener('message', this.onMessage)
    this.mesh.addEventListener('peer:disconnect', this.onDisconnect)
    this.mesh.subscribe(SCHEDULER_TOPIC)
    this.mesh.subscribe(HEARTBEAT_TOPIC)
    const log = this.log
    await serveRpc(this.mesh, BID_PROTOCOL, async (request, from) => {
      const m = PlacementRequest.safeParse(request)
      if (!m.success) throw new Error('malformed placement request')
      const refused = placementSenderError(m.data, from)
      if (refused != null) throw new Error(refused)
      if (m.data.type === 'tender') void this.bidder.bidOn(m.data)
      else if (m.data.type === 'award') void this.bidder.onAward(m.data)
      else if (m.data.type === 'started' || m.data.type === 'start-failed') this.tenderer.onConfirmation(m.data)
      else this.tenderer.routeBid(m.data)
      return {}
    }, log, { maxInboundStreams: BID_STREAMS, maxRequestBytes: MAX_RPC_FRAME })
    await serveRpc(this.mesh, SEND_PROTOCOL, async request => await this.stateful.serveSend(request), log, { maxRequestBytes: MAX_SEALED_BATCH })
    await serveRpc(this.mesh, STATE_PROTOCOL, async (request, from) => await this.stateful.serveState(request, from), log, { maxRequestBytes: MAX_SEALED_BATCH })
    await serveRpc(this.mesh, LOGS_PROTOCOL, async (request, from) => await this.access.serveLogs(request, from), log)
    await serveRpc(this.mesh, VIEW_PROTOCOL, async () => ({ result: this.membership.viewReply() }), log)
    await serveRpc(this.mesh, REPLICA_PROTOCOL, async (request, from) => await this.access.serveStop(request, from), log)
    await this.services.start()
    await this.tunnel.start()
    await this.containers.open()
    // Containers from before a restart: adopted or removed once the mesh says where they belong.
    void adoptContainers({ selfId: this.selfId, mesh: this.mesh, view: this.view, containers: this.containers, log, known: async id => await this.catalog.known(id), stopped: () => this.stopped })
    // Copies of machine state held from before a restart: drop those of workloads
    // that completed or were deleted meanwhile (the erasure happened without us).
    const sweep = setTimeout(() => { void this.stateful.sweepHeldState(() => this.stopped) }, 5_000)
    sweep.unref()
    this.timers.push(sweep)
    this.every(Math.min(250, this.cfg.heartbeatMs), () => { this.membership.tick() })
    this.every(this.cfg.heartbeatMs, () => { this.guardian.guard(); this.membership.hangUpSilent() })
    this.membership.heartbeat()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.membership.stop()
    this.guardian.stop()
    this.topics.stop()
    for (const t of this.timers) clearInterval(t)
    this.tenderer.stop()
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

  /** Places a workload on the mesh; resolves once every replica confirmed it runs. */
  async apply (specInput: unknown, artifact?: Uint8Array): Promise<WorkloadStatus> {
    return await (await this.submit(specInput, artifact)).placed
  }

  /**
   * Validates a workload, stores its artifact and records it as Pending;
   * `placed` settles when the tender does. Rejects (before anything is
   * recorded) for an invalid spec or an artifact whose hash does not match.
   */
  async submit (specInput: unknown, artifact?: Uint8Array): Promise<{ placed: Promise<WorkloadStatus> }> {
    const spec = await this.admission.check(specInput)
    // Announced as a DHT provider after placement: awardees fetch from the tenderer
    // first, and the provider query would compete with the tender for every node's time.
    if (spec.artifact != null) {
      if (artifact == null) throw new InvalidWorkloadError(`artifact: missing; a ${spec.kind} workload needs its bundle`)
      await this.init.artifacts.publish(artifact, spec.artifact.sha256, { announce: false })
    }
    const existing = this.catalog.get(spec.id)
    if (existing != null && existing.status === 'Running' && lifecycle.sameSpec(existing.spec, spec)) {
      // Only the replica count (or the manifest it came from) changed: a new record, not a new generation.
      if (existing.spec.replicas !== spec.replicas || existing.spec.manifest !== spec.manifest) return { placed: this.rescale(existing, spec) }
      return { placed: Promise.resolve(this.statusOf(existing)) }
    }
    const placed = this.tenderer.apply(spec, existing).placed.then(r => this.statusOf(r))
    const sha256 = spec.artifact?.sha256
    if (sha256 != null) void placed.catch(() => {}).finally(() => { this.init.artifacts.announce(sha256) })
    return { placed }
  }

  /** Changes a workload's replica count (see Tenderer.rescale). */
  async scale (id: string, replicas: number): Promise<WorkloadStatus> {
    const record = await this.existing(id)
    if (record.spec.kind === 'stateful') throw new InvalidWorkloadError(`replicas: ${id} is stateful; it has exactly 1 replica`)
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 100) throw new InvalidWorkloadError(`replicas: expected an integer from 1 to 100, got ${replicas}`)
    return await this.rescale(record, { ...record.spec, replicas })
  }

  private async rescale (record: WorkloadRecord, spec: WorkloadSpec): Promise<WorkloadStatus> {
    this.tenderer.checkIdle(spec.id)
    const signed = await this.admission.resign(spec, record.spec.createdAt, record.spec.provenance?.deployer)
    return this.statusOf(this.tenderer.rescale(record, signed))
  }

  /** The record of a workload not deleted, from this node or the DHT; throws WorkloadNotFoundError. */
  private async existing (id: string): Promise<WorkloadRecord> {
    const record = await this.catalog.known(id)
    if (record == null || record.status === 'Deleted') throw new WorkloadNotFoundError(id)
    return record
  }

  /**
   * Stops one replica wherever it runs (`kubectl delete pod web-1`): its host
   * stops it, and the workload's guardian tenders it again, as a ReplicaSet
   * replaces a deleted pod.
   */
  async stopReplica (id: string, replica: number): Promise<{ peerId: string }> {
    const record = await this.existing(id)
    const placed = this.statusOf(record).placement.find(p => p.replica === replica && p.status !== 'lost')
    if (placed == null) throw new WorkloadNotFoundError(`${id} replica ${replica}`)
    await this.access.stopOn(placed.peerId, id, replica)
    return { peerId: placed.peerId }
  }

  /** This node and the peers it hears heartbeats from (dead ones shown not ready until forgotten). */
  nodes (): NodeSummary[] {
    const now = this.now()
    const self: NodeSummary = { peerId: this.selfId, self: true, ready: true, labels: this.init.labels, capacity: this.init.capacity, allocated: this.host.allocated(), replicas: this.host.list().length, uptimeMs: now - this.startedAt, lastSeenMs: 0, links: this.membership.links(), capabilities: this.local.capabilities() }
    const others = this.view.knownPeers().map(({ heartbeat: hb, seenAt }) => ({
      peerId: hb.peerId, self: false, ready: this.view.isLive(hb.peerId), labels: hb.labels, capacity: hb.capacity, allocated: hb.allocated, replicas: hb.replicas.length, uptimeMs: hb.uptimeMs + (now - seenAt), lastSeenMs: now - seenAt, links: hb.links ?? [], capabilities: hb.capabilities ?? []
    }))
    return [self, ...others].sort((a, b) => compareCodeUnits(a.peerId, b.peerId))
  }

  list (): WorkloadStatus[] {
    return [...this.catalog.values()].filter(r => r.status !== 'Deleted').map(r => this.statusOf(r)).sort((a, b) => compareCodeUnits(a.id, b.id))
  }

  async describe (id: string): Promise<WorkloadDescription> {
    const record = await this.existing(id)
    const described: WorkloadDescription = { ...this.statusOf(record), spec: record.spec, events: record.events }
    if (record.spec.kind === 'container') {
      described.podEvents = await this.access.podEvents(record)
    }
    return described
  }

  async delete (id: string): Promise<void> {
    const deleted = lifecycle.deleted(await this.existing(id), { now: this.now(), by: this.selfId })
    this.catalog.update(deleted)
    await this.gossip({ type: 'deleted', workloadId: id, epoch: deleted.epoch, by: this.selfId })
  }

  /** Log lines of every replica of a workload, gathered from the nodes that host them. */
  async logs (id: string, opts: { tail?: number, since?: number } = {}): Promise<LogLine[]> {
    return await this.access.logs(await this.existing(id), opts)
  }

  /** Publishes a JSON value to a topic (src/stateless/topics.ts). */
  async publish (topic: string, data: unknown, options: { requireListeners?: boolean, from?: LocalReplica } = {}): Promise<PublishOutcome> {
    return await this.topics.publish(topic, data, options)
  }

  /** Resources of the replicas, machines and containers this node runs. */
  allocated (): Resources { return this.local.allocated() }

  /** This node's heartbeat interval now (it grows with the mesh), and how many other nodes it hears. */
  membershipStatus (): { heartbeatMs: number, members: number } { return { heartbeatMs: this.membership.heartbeatInterval(), members: this.view.livePeers().length } }

  // ---------------------------------------------------------------- gossip in and out

  private async gossip (message: SchedulerMessage, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (!this.mesh.started) return
    await this.mesh.publish(SCHEDULER_TOPIC, encodeMessage(message))
  }

  private readonly onDisconnect = (evt: CustomEvent<string>): void => { this.membership.onDisconnect(evt.detail) }

  private readonly onMessage = (evt: CustomEvent<MeshMessage>): void => {
    const msg = evt.detail
    if (msg.topic === HEARTBEAT_TOPIC) { this.membership.receive(msg); return }
    if (msg.topic !== SCHEDULER_TOPIC) { this.topics.onMessage(msg); return }
    const m = decodeMessage(SchedulerMessage, msg.data)
    if (m == null) this.log.debug({ from: msg.from }, 'dropped a malformed scheduler message')
    else this.onSchedulerMessage(m, msg.from)
  }

  /** What this node's heartbeat reports of it. */
  private heartbeatContent (): HeartbeatContent {
    const replicas: Heartbeat['replicas'] = this.local.reports().map(r => {
      const ready = this.services.readiness(r.workloadId, r.replica, r.epoch)
      return ready != null ? { ...r, ready } : r
    })
    return { replicas, allocated: this.local.allocated(), capabilities: this.local.capabilities(), labels: this.init.labels, capacity: this.init.capacity, policy: this.init.trust.policy.version }
  }

  /** Another node's heartbeat, taken into the view: its policy version, and its replicas (records to look up, copies to fence). */
  private onHeartbeat (hb: Heartbeat): void {
    this.init.policySync?.noteVersion(hb.peerId, hb.policy)
    for (const r of hb.replicas) {
      if (!this.catalog.has(r.workloadId)) this.catalog.lookUp(r.workloadId)
      this.local.fence(r.workloadId, r.replica, r.epoch, hb.peerId)
    }
  }

  private onSchedulerMessage (m: SchedulerMessage, from: string): void {
    switch (m.type) {
      case 'record':
        // Awards and confirmations go only to the nodes of the tender: the others hear of new replicas here.
        if (this.catalog.merge(m.record)) this.view.announcePlaced(m.record)
        return
      case 'location':
        if (m.location.owner === from) this.machines.noteLocation(m.location)
        return
      case 'deleted': {
        const cur = this.catalog.get(m.workloadId)
        if (cur != null && cur.epoch < m.epoch) this.catalog.merge(lifecycle.deletedElsewhere(cur, m.epoch, { now: this.now(), by: m.by }))
        else if (cur == null) this.local.stopAllOf(m.workloadId)
      }
    }
  }

  private statusOf (record: WorkloadRecord): WorkloadStatus {
    const id = record.spec.id
    return statusOf(record, { selfId: this.selfId, local: this.local.copies(id), remote: this.view.remoteReplicas(id), isLive: peer => this.view.isLive(peer) })
  }
}
