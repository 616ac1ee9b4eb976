/**
 * Topic dispatch for stateless replicas: publishing a JSON event (to the mesh,
 * and to this node's own replicas, since gossip never loops back), taking the
 * events that arrive on the topics this node's replicas subscribe to, and
 * offering each to the right replica. A `fanout` workload's replicas each get
 * every event; a `queue` workload is one queue group mesh-wide, and the event
 * id, hashed over the live replicas (rendezvous), picks the one that takes it.
 */
import { rendezvousOwner } from '../machines/placement.js'
import { decodeEnvelope, encodeMessage } from '../protocol/messages.js'
import type { Principal } from '../policy/engine.js'
import type { Decision } from '../policy/engine.js'
import type { Sender, WorkloadIdentity } from '../policy/trust.js'
import type { MeshMessage } from '../transport/mesh-node.js'
import { NoSubscribersError } from '../actors/errors.js'
import type { TopicEvent } from '../workloads/types.js'
import type { PublishOutcome } from '../workloads/views.js'
import type { LocalReplica } from './replica-host.js'

/** What topic dispatch uses of the mesh transport (MeshNode has it all). */
export interface TopicMesh {
  publish: (topic: string, data: Uint8Array, options: { as?: WorkloadIdentity }) => Promise<{ recipients: string[] }>
  topicPeers: (topic: string) => string[]
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
}

/** What it uses of the policy (src/policy/trust.ts's Trust). */
export interface TopicTrust {
  authorize: (principal: Principal, action: 'publish', resource: { kind: 'topic', name: string }) => void
  decide: (principal: Principal, action: 'publish', resource: { kind: 'topic', name: string }) => Decision
  noteRefusal: (what: string, reason: string, message: string) => void
  workloadIdentity: (workloadId: string, replica: number, labels?: Record<string, string>) => Promise<WorkloadIdentity>
}

/** The replicas this node runs (src/stateless/replica-host.ts's ReplicaHost). */
export interface TopicReplicas {
  list: () => LocalReplica[]
  of: (workloadId: string) => LocalReplica[]
  deliver: (local: LocalReplica, event: TopicEvent) => void
}

export interface TopicDispatchComponents {
  selfId: string
  mesh: TopicMesh
  trust: TopicTrust
  replicas: TopicReplicas
  /** Peers' replicas of a workload, from their heartbeats: the rest of a queue group. */
  remoteReplicas: (workloadId: string) => Array<{ peerId: string, replica: number, epoch: number, status: string }>
  now?: () => number
  /** Event ids: unique per node and run (default: this node's id, its start time and a counter). */
  newEventId?: () => string
}

export class TopicDispatch {
  private subscribed = new Set<string>()
  private readonly identities = new Map<string, Promise<WorkloadIdentity>>()
  private readonly now: () => number
  private readonly newEventId: () => string
  private stopped = false

  constructor (private readonly c: TopicDispatchComponents) {
    this.now = c.now ?? Date.now
    if (c.newEventId != null) this.newEventId = c.newEventId
    else {
      const prefix = `${c.selfId.slice(-10)}-${this.now().toString(36)}-`
      let counter = 0
      this.newEventId = () => `${prefix}${(counter++).toString(36)}`
    }
  }

  stop (): void {
    this.stopped = true
  }

  /**
   * Publishes a JSON value to a topic: to the mesh, and to this node's own
   * replicas. Refuses a topic nobody listens on (unless `requireListeners` is false).
   */
  async publish (topic: string, data: unknown, { requireListeners = true, from }: { requireListeners?: boolean, from?: LocalReplica } = {}): Promise<PublishOutcome> {
    let identity: WorkloadIdentity | undefined
    if (from != null) {
      // A replica publishes as its own workload identity, and only where the policy lets it.
      const spec = from.spec
      this.c.trust.authorize({ kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }, 'publish', { kind: 'topic', name: topic })
      identity = await this.identityOf(from)
    }
    const localReplicas = this.c.replicas.list().filter(r => r.spec.topics.includes(topic) && r.status !== 'failed')
    if (requireListeners && localReplicas.length === 0 && this.c.mesh.topicPeers(topic).length === 0) throw new NoSubscribersError(topic)
    const id = this.newEventId()
    const envelope = { id, data, ts: this.now() }
    const { recipients } = await this.c.mesh.publish(topic, encodeMessage(envelope), identity != null ? { as: identity } : {})
    if (localReplicas.length > 0) this.dispatch(topic, { topic, data, from: this.c.selfId, id, attempt: 1 })
    return { id, topic, recipients, localReplicas: localReplicas.length }
  }

  /** Each workload instance (replica at an epoch) gets its own key, with a credential from this node. */
  async identityOf (local: LocalReplica): Promise<WorkloadIdentity> {
    const key = `${local.workloadId}#${local.replica}@${local.epoch}`
    let id = this.identities.get(key)
    if (id == null) {
      for (const k of this.identities.keys()) if (k.startsWith(`${local.workloadId}#${local.replica}@`)) this.identities.delete(k)
      id = this.c.trust.workloadIdentity(local.workloadId, local.replica, local.spec.labels ?? {})
      this.identities.set(key, id)
    }
    return await id
  }

  /** Offers an event to each local replica subscribed to its topic; queue groups pick one replica mesh-wide. */
  dispatch (topic: string, evt: TopicEvent): void {
    for (const local of this.c.replicas.list()) {
      if (!local.spec.topics.includes(topic) || local.status === 'failed') continue
      if (local.spec.delivery === 'fanout' || this.ownsEvent(local, evt.id)) this.c.replicas.deliver(local, evt)
    }
  }

  /** Queue-group delivery: rendezvous hashing of the event id over the workload's live replicas. */
  ownsEvent (local: LocalReplica, eventId: string): boolean {
    const members = new Map<number, { key: string, epoch: number }>()
    const consider = (peerId: string, replica: number, epoch: number): void => {
      const cur = members.get(replica)
      if (cur == null || epoch > cur.epoch || (epoch === cur.epoch && `${peerId}/${replica}` < cur.key)) members.set(replica, { key: `${peerId}/${replica}`, epoch })
    }
    for (const r of this.c.replicas.of(local.workloadId)) if (r.status !== 'failed') consider(this.c.selfId, r.replica, r.epoch)
    for (const r of this.c.remoteReplicas(local.workloadId)) if (r.status !== 'failed') consider(r.peerId, r.replica, r.epoch)
    return rendezvousOwner(eventId, [...members.values()].map(m => m.key)) === `${this.c.selfId}/${local.replica}`
  }

  /** Subscribes to exactly the topics this node's replicas listen on. */
  syncSubscriptions (topics: Set<string>): void {
    if (this.stopped) return
    for (const t of topics) if (!this.subscribed.has(t)) this.c.mesh.subscribe(t)
    for (const t of this.subscribed) if (!topics.has(t)) this.c.mesh.unsubscribe(t)
    this.subscribed = new Set(topics)
  }

  /**
   * A gossip message on some topic: dispatched when a replica here listens
   * on it, and when a workload sent it, only if the policy lets that workload
   * publish there (the publishing node checked; every receiver checks again).
   * Returns whether the message was on a topic of this plane.
   */
  onMessage (msg: MeshMessage): boolean {
    if (!this.subscribed.has(msg.topic)) return false
    const sender = msg.sender as Sender | undefined
    if (sender?.principal.kind === 'workload') {
      const d = this.c.trust.decide(sender.principal, 'publish', { kind: 'topic', name: msg.topic })
      if (!d.allowed) { this.c.trust.noteRefusal(msg.topic, 'denied', `dropped a message on ${msg.topic}: ${d.reason}`); return true }
    }
    const envelope = decodeEnvelope(msg)
    this.dispatch(msg.topic, { topic: msg.topic, data: envelope.data, from: msg.from, id: envelope.id, attempt: 1 })
    return true
  }
}
