import type { NodeOffer } from '../machines/placement.js'
import type { Heartbeat, ReplicaReport } from '../protocol/messages.js'
import type { PodReport, WorkloadRecord } from '../workloads/records.js'

export interface PeerView {
  heartbeat: Heartbeat
  /** The heartbeat as its author sealed it (with a guard): what a newcomer is handed to check for itself. */
  sealed?: Uint8Array
  /** Local receive time of the newest heartbeat (never the sender's clock). */
  seenAt: number
  /** Set when the connection to the peer dropped after its last heartbeat, or a peer reported it down. */
  disconnectedAt?: number
  /** Who reported it down (absent: this node saw the connection drop). */
  reportedBy?: string
  /** When some peer last reported it down (whether or not this node took the report). */
  reportedAt?: number
}

/** How many of a peer's heartbeat intervals may pass before it counts as gone. */
export const MISSED_HEARTBEATS = 3.5

export interface ReplicaLocation {
  peerId: string
  replica: number
  epoch: number
  status: ReplicaReport['status']
  handled: number
  failures: number
  /** Container replicas: the pod's phase, from the host's heartbeat. */
  pod?: PodReport
  /** Replicas of a workload offering services: whether the replica answers its health probe. */
  ready?: boolean
}

const POD_STARTING = new Set(['Pending', 'ContainerCreating'])

const STATUS_ORDER: Record<ReplicaReport['status'], number> = { starting: 0, running: 1, exited: 2, failed: 3 }

/**
 * What this node knows of the rest of the mesh, from heartbeats and scheduler
 * gossip: which peers are alive, their capacity and labels, and which replicas
 * they run. A peer is live while its newest heartbeat is younger than its
 * timeout and no disconnect (here, or reported by a peer) was seen since. A
 * peer's timeout is the larger of this node's and 3.5 of the intervals the
 * peer says it heartbeats at (that interval grows with the mesh).
 */
export class MeshView {
  private readonly peers = new Map<string, PeerView>()
  /**
   * Replicas by workload id, then `<peer>|<replica>`: from each peer's newest
   * heartbeat, so queue-group routing (once per event) reads only the
   * workload's own replicas instead of every peer's heartbeat.
   */
  private readonly reported = new Map<string, Map<string, ReplicaLocation>>()
  /** Replicas announced (award/started gossip) ahead of a heartbeat, by workload id, then `<peer>|<replica>`. */
  private readonly announced = new Map<string, Map<string, ReplicaLocation & { at: number }>>()

  constructor (private readonly selfId: string, readonly heartbeatTimeoutMs: number, private readonly now: () => number = Date.now) {}

  /**
   * Takes a peer's heartbeat, heard at `seenAt` (local time; earlier for one
   * relayed by a peer). An older one than the view has is ignored.
   */
  onHeartbeat (hb: Heartbeat, { sealed, seenAt = this.now() }: { sealed?: Uint8Array, seenAt?: number } = {}): void {
    if (hb.peerId === this.selfId) return
    const previous = this.peers.get(hb.peerId)
    if (previous != null && (previous.seenAt > seenAt || previous.heartbeat.ts > hb.ts)) return
    for (const r of previous?.heartbeat.replicas ?? []) this.reported.get(r.workloadId)?.delete(`${hb.peerId}|${r.replica}`)
    for (const r of hb.replicas) {
      let forWorkload = this.reported.get(r.workloadId)
      if (forWorkload == null) { forWorkload = new Map(); this.reported.set(r.workloadId, forWorkload) }
      forWorkload.set(`${hb.peerId}|${r.replica}`, { peerId: hb.peerId, replica: r.replica, epoch: r.epoch, status: r.status, handled: r.handled, failures: r.failures, ...(r.pod != null ? { pod: r.pod } : {}), ...(r.ready != null ? { ready: r.ready } : {}) })
    }
    for (const r of previous?.heartbeat.replicas ?? []) if (this.reported.get(r.workloadId)?.size === 0) this.reported.delete(r.workloadId)
    this.peers.set(hb.peerId, { heartbeat: hb, seenAt, ...(sealed != null ? { sealed } : {}) })
    // Announcements older than their host's heartbeat timeout are covered by its heartbeats by now.
    const now = this.now()
    for (const [workloadId, locs] of this.announced) {
      for (const [key, loc] of locs) if (loc.at < now - this.timeoutOf(loc.peerId)) locs.delete(key)
      if (locs.size === 0) this.announced.delete(workloadId)
    }
  }

  /** How long the peer may stay silent before it counts as gone. */
  timeoutOf (peerId: string): number {
    const interval = this.peers.get(peerId)?.heartbeat.intervalMs ?? 0
    return Math.max(this.heartbeatTimeoutMs, MISSED_HEARTBEATS * interval)
  }

  /** The connection to the peer dropped here, or (`reporter`) a peer reported it down. */
  onDisconnect (peerId: string, reporter?: string): void {
    const view = this.peers.get(peerId)
    if (view == null) return
    view.disconnectedAt = this.now()
    if (reporter != null) { view.reportedBy = reporter; view.reportedAt = this.now() } else delete view.reportedBy
    // What was announced of it died with it: a restarted node (same peer id) runs only what its heartbeats say,
    // and an announcement outliving the restart would count as a live replica and keep its guardians from healing.
    this.forgetAnnounced(peerId)
  }

  private forgetAnnounced (peerId: string): void {
    for (const [workloadId, locs] of this.announced) {
      for (const [key, loc] of locs) if (loc.peerId === peerId) locs.delete(key)
      if (locs.size === 0) this.announced.delete(workloadId)
    }
  }

  /** A peer reported it down (this node had its own evidence either way). */
  noteReport (peerId: string): void {
    const view = this.peers.get(peerId)
    if (view != null) view.reportedAt = this.now()
  }

  /** Some peer reported it down since its last heartbeat. */
  reportedDown (peerId: string): boolean {
    const view = this.peers.get(peerId)
    return view?.reportedAt != null && view.reportedAt >= view.seenAt
  }

  /** Connected to it again: alive, whatever the drop or a report said. */
  onReconnect (peerId: string): void {
    const view = this.peers.get(peerId)
    if (view == null) return
    delete view.disconnectedAt
    delete view.reportedBy
    delete view.reportedAt
  }

  /** Why the peer counts as gone, in words. */
  lossReason (peerId: string): string {
    const view = this.peers.get(peerId)
    if (view?.disconnectedAt != null && view.disconnectedAt >= view.seenAt) {
      return view.reportedBy != null ? `reported down by ${view.reportedBy}` : 'its connection dropped'
    }
    return `no heartbeat for ${this.timeoutOf(peerId)} ms`
  }

  /** Records that a replica was awarded or started on a peer, ahead of its next heartbeat. */
  announce ({ workloadId, ...loc }: ReplicaLocation & { workloadId: string }): void {
    let locs = this.announced.get(workloadId)
    if (locs == null) { locs = new Map(); this.announced.set(workloadId, locs) }
    locs.set(`${loc.peerId}|${loc.replica}`, { ...loc, at: this.now() })
  }

  /**
   * A record heard by gossip that placed replicas at its epoch: each is
   * announced running on its host, ahead of that host's heartbeat (the award
   * and the confirmations went only to the nodes of the tender).
   */
  announcePlaced (record: WorkloadRecord): void {
    if (record.status !== 'Running' && record.status !== 'Degraded') return
    for (const p of record.placement) {
      if (p.epoch === record.epoch && p.peerId !== this.selfId) this.announce({ workloadId: record.spec.id, peerId: p.peerId, replica: p.replica, epoch: p.epoch, status: 'running', handled: 0, failures: 0 })
    }
  }

  forgetWorkload (workloadId: string): void {
    this.announced.delete(workloadId)
  }

  /** The peer's connection dropped after its last heartbeat (a killed process resets its connections at once). */
  hasDisconnected (peerId: string): boolean {
    const view = this.peers.get(peerId)
    return view?.disconnectedAt != null && view.disconnectedAt >= view.seenAt
  }

  isLive (peerId: string): boolean {
    if (peerId === this.selfId) return true
    const view = this.peers.get(peerId)
    if (view == null) return false
    if (view.disconnectedAt != null && view.disconnectedAt >= view.seenAt) return false
    return this.now() - view.seenAt <= this.timeoutOf(peerId)
  }

  /** Every peer heard from (live or not), other than this node. */
  knownPeers (): PeerView[] {
    return [...this.peers.values()]
  }

  /** Live peers other than this node. */
  livePeers (): PeerView[] {
    return [...this.peers.entries()].filter(([id]) => this.isLive(id)).map(([, v]) => v)
  }

  /** What each live peer offers a tender, as its last heartbeat says (src/machines/placement.ts's NodeOffer). */
  liveOffers (): NodeOffer[] {
    return this.livePeers().map(({ heartbeat: hb }) => ({
      peerId: hb.peerId,
      labels: hb.labels,
      capacity: hb.capacity,
      allocated: hb.allocated,
      uptimeMs: hb.uptimeMs,
      // Whether a peer already hosts the workload's generation is the peer's call (offerPipeline leaves it out).
      hosts: [],
      capabilities: hb.capabilities
    }))
  }

  livePeerIds (): string[] {
    return [this.selfId, ...this.livePeers().map(v => v.heartbeat.peerId)]
  }

  lastSeen (peerId: string): number | undefined {
    return this.peers.get(peerId)?.seenAt
  }

  /**
   * Remote replicas of a workload on live peers, from heartbeats and recent
   * announcements. Heartbeats and scheduler gossip travel on different topics
   * and may arrive out of order, so for each replica the newer knowledge wins:
   * the higher epoch, then the later status (starting → running → failed).
   */
  remoteReplicas (workloadId: string): ReplicaLocation[] {
    const out = new Map<string, ReplicaLocation>()
    const offer = (loc: ReplicaLocation): void => {
      const key = `${loc.peerId}|${loc.replica}`
      const cur = out.get(key)
      if (cur == null || loc.epoch > cur.epoch || (loc.epoch === cur.epoch && STATUS_ORDER[loc.status] > STATUS_ORDER[cur.status])) {
        out.set(key, cur != null && loc.epoch === cur.epoch ? { ...loc, handled: Math.max(loc.handled, cur.handled), failures: Math.max(loc.failures, cur.failures) } : loc)
      }
    }
    for (const loc of this.reported.get(workloadId)?.values() ?? []) {
      if (this.isLive(loc.peerId)) offer(loc)
    }
    for (const loc of this.announced.get(workloadId)?.values() ?? []) {
      if (loc.peerId === this.selfId || !this.isLive(loc.peerId)) continue
      // A pod cycles between running and backing off: once its host's heartbeat shows it
      // past its first start, that is newer than the start announcement.
      const heard = out.get(`${loc.peerId}|${loc.replica}`)
      if (heard?.pod != null && heard.epoch === loc.epoch && !POD_STARTING.has(heard.pod.phase)) continue
      offer({ peerId: loc.peerId, replica: loc.replica, epoch: loc.epoch, status: loc.status, handled: loc.handled, failures: loc.failures })
    }
    return [...out.values()]
  }

  /** Where a replica was last heard to run (heartbeat or announcement), live or not: the highest epoch's host. */
  lastHost (workloadId: string, replica: number): { peerId: string, epoch: number } | undefined {
    let best: { peerId: string, epoch: number } | undefined
    for (const locs of [this.reported.get(workloadId), this.announced.get(workloadId)]) {
      for (const loc of locs?.values() ?? []) {
        if (loc.replica === replica && (best == null || loc.epoch > best.epoch)) best = { peerId: loc.peerId, epoch: loc.epoch }
      }
    }
    return best
  }

  /** Workload ids any live peer reports a replica of. */
  reportedWorkloads (): Set<string> {
    const ids = new Set<string>()
    for (const view of this.livePeers()) for (const r of view.heartbeat.replicas) ids.add(r.workloadId)
    return ids
  }
}
