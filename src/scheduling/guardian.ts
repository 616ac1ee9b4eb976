/**
 * The guardian: for each workload whose id ranks this node among its first
 * three live guardians (rendezvous hashing, src/machines/placement.ts), it
 * compares the replicas wanted with the live ones (`reconcile`, the pure
 * diff) and re-tenders the missing. The first guardian heals at once; the
 * next ones step in one after the other if it has not. A Pending record
 * belongs to its tenderer while that node is live.
 */
import { guardians, reconcile } from '../machines/placement.js'
import type { SchedulerOutput } from '../machines/scheduler-machine.js'
import type { Logger } from '../transport/logger.js'
import type { WorkloadSpec } from '../workloads/types.js'
import type { WorkloadRecord } from '../workloads/records.js'
import { adopted, endedReplicas, healed, healFailed, isUnplaced, lost, type Placement, type Stamp } from './record-lifecycle.js'
import type { LocalCopy, RemoteCopy } from './status.js'
import type { CatalogWriter } from './tenderer.js'

/** How long a guardian waits before re-tendering again after a failed heal. */
export const DEGRADED_RETRY_MS = 5_000
/** The same for workloads that never could be placed (Unschedulable / Failed). */
export const UNPLACED_RETRY_MS = 30_000
/**
 * How long the second guardian (then the third, twice as long) waits for the
 * first to heal a workload. The first acts within milliseconds when it saw the
 * connection drop; it may not have (no direct connection to the lost node, or
 * it has just restarted and does not know the workload yet).
 */
export const BACKUP_GUARDIAN_MS = 300
/** The same when the loss was noticed by heartbeat timeout (no connection dropped here). */
export const BACKUP_GUARDIAN_SLOW_MS = 1_500

/** What the guardian reads of the mesh view (src/membership/mesh-view.ts). */
export interface GuardianView {
  livePeerIds: () => string[]
  isLive: (peerId: string) => boolean
  remoteReplicas: (workloadId: string) => RemoteCopy[]
  /** The node a replica was last heard on. */
  lastHost: (workloadId: string, replica: number) => { peerId: string, epoch: number } | undefined
  /** This node saw its connection to the peer drop. */
  hasDisconnected: (peerId: string) => boolean
  /** Why a peer is counted lost, for the event. */
  lossReason: (peerId: string) => string
}

/** What the guardian uses of the tenderer. */
export interface GuardianTenderer {
  isTendering: (id: string) => boolean
  run: (spec: WorkloadSpec, epoch: number, ordinals: number[], exclude: string[]) => Promise<SchedulerOutput>
}

export interface GuardianComponents {
  selfId: string
  log: Logger
  catalog: CatalogWriter
  view: GuardianView
  /** This node's copies of a workload. */
  copies: (workloadId: string) => LocalCopy[]
  tenderer: GuardianTenderer
  heartbeatTimeoutMs: number
  now?: () => number
  /** Runs `fn` after `ms` (a backup guardian looks again when its turn comes). */
  later?: (fn: () => void, ms: number) => void
}

type Running = Array<{ peerId: string, replica: number, epoch: number }>

export class Guardian {
  private readonly retryAfter = new Map<string, number>()
  /** When this node first saw each workload miss a replica (for backup guardians). */
  private readonly missingSince = new Map<string, number>()
  private readonly now: () => number
  private readonly later: (fn: () => void, ms: number) => void
  private stopped = false

  constructor (private readonly c: GuardianComponents) {
    this.now = c.now ?? Date.now
    this.later = c.later ?? ((fn, ms) => { setTimeout(fn, ms).unref() })
  }

  private stamp (): Stamp {
    return { now: this.now(), by: this.c.selfId }
  }

  stop (): void {
    this.stopped = true
  }

  /** The newest live copy of each ordinal of a workload: this node's (not failed; a machine counts) and its peers'. */
  liveReplicas (id: string): Running {
    const out = new Map<number, { peerId: string, replica: number, epoch: number }>()
    const add = (peerId: string, replica: number, epoch: number): void => {
      const cur = out.get(replica)
      if (cur == null || epoch > cur.epoch) out.set(replica, { peerId, replica, epoch })
    }
    const local = this.c.copies(id)
    for (const kind of ['replica', 'container', 'machine'] as const) {
      for (const r of local) if (r.kind === kind && (kind === 'machine' || r.status !== 'failed')) add(this.c.selfId, r.replica, r.epoch)
    }
    for (const r of this.c.view.remoteReplicas(id)) if (r.status !== 'failed') add(r.peerId, r.replica, r.epoch)
    return [...out.values()]
  }

  /** One round of guardian duty over every record in the catalog. */
  guard (): void {
    if (this.stopped) return
    const now = this.now()
    const view = this.c.view
    const live = view.livePeerIds()
    const liveHosts = new Set([...live, this.c.selfId])
    for (const record of this.c.catalog.values()) {
      if (record.status === 'Deleted' || record.status === 'Completed' || record.status === 'Succeeded') continue
      const id = record.spec.id
      // Containers that ended by their restart policy are done; only the others are watched.
      const ended = endedReplicas(record)
      if (ended.size >= record.spec.replicas) continue
      // A tender in flight belongs to its tenderer, unless that node died: then its guardian takes over.
      if (record.status === 'Pending' && view.isLive(record.updatedBy)) continue
      // Workloads nothing could host are retried too, but less often (see heal).
      if (this.c.tenderer.isTendering(id)) continue
      if ((this.retryAfter.get(id) ?? 0) > now) continue
      const rank = guardians(id, live, 3).indexOf(this.c.selfId)
      if (rank < 0) continue
      const running = this.liveReplicas(id)
      // The diff is reconcile's: every copy here is on a live host (this node, or a peer the view counts live),
      // so liveness has been decided already and each copy counts as heard now.
      const plan = reconcile(
        { workloadId: id, replicas: record.spec.replicas },
        running.map(r => ({ peerId: r.peerId, replica: r.replica, status: 'running' as const, lastHeartbeat: now })),
        liveHosts, now, this.c.heartbeatTimeoutMs)
      const missing = plan.missing.filter(i => !ended.has(i))
      if (missing.length === 0) this.missingSince.delete(id)
      else if (!this.missingSince.has(id)) this.missingSince.set(id, now)
      // The first guardian heals; the next ones step in, one after the other, if it has
      // not within BACKUP_GUARDIAN_MS each (it may have just restarted and not know the workload).
      if (rank > 0) {
        if (missing.length === 0) continue
        // Seen through a dropped connection, the loss is news to every connected guardian
        // at once; seen through a heartbeat timeout, guardians notice up to a heartbeat apart.
        const droppedHere = missing.every(i => { const h = view.lastHost(id, i) ?? record.placement.find(p => p.replica === i); return h != null && view.hasDisconnected(h.peerId) })
        const step = droppedHere ? BACKUP_GUARDIAN_MS : BACKUP_GUARDIAN_SLOW_MS
        const wait = rank * step - (now - (this.missingSince.get(id) ?? now))
        if (wait > 0) {
          // Look again when this guardian's turn comes, rather than at the next round.
          this.later(() => { try { this.guard() } catch {} }, wait + 10)
          continue
        }
        // Another live node is healing it (it marked the record Degraded just now): leave it to that node.
        // A Running record that node wrote a moment ago (its last heal, done) is no heal in flight.
        if (record.status !== 'Running' && record.updatedBy !== this.c.selfId && view.isLive(record.updatedBy) && now - this.c.catalog.seenAt(id) < this.c.heartbeatTimeoutMs) continue
      }
      // Give new placements time to show up in heartbeats (local clock: no trust in remote ones),
      // unless the node each missing replica was last known on is gone (connection dropped or silent).
      if (now - this.c.catalog.seenAt(id) < this.c.heartbeatTimeoutMs) {
        const gone = missing.length > 0 && missing.every(i => {
          const heard = view.lastHost(id, i)
          const placedAt = record.placement.find(p => p.replica === i)
          const host = heard != null && (placedAt == null || heard.epoch >= placedAt.epoch) ? heard.peerId : placedAt?.peerId
          return host != null && host !== this.c.selfId && !view.isLive(host)
        })
        if (!gone) continue
      }
      if (missing.length === 0) {
        // A failed machine keeps running (its last state stays readable) but stays Failed.
        if (record.status !== 'Running' && !(record.spec.kind === 'stateful' && record.status === 'Failed')) {
          this.c.catalog.update(adopted(record, running.map(r => ({ peerId: r.peerId, replica: r.replica, epoch: r.epoch })), { now, by: this.c.selfId }))
        }
        continue
      }
      void this.heal(record, running, missing)
    }
  }

  /** Re-tenders the missing ordinals at the next epoch, excluding the nodes that run the others. */
  async heal (record: WorkloadRecord, running: Running, missing: number[]): Promise<void> {
    const gone = record.placement.filter(p => missing.includes(p.replica))
    const why = record.status === 'Pending'
      ? `tenderer ${record.updatedBy} stopped answering during the tender; replicas ${missing.join(', ')} not running`
      : gone.length > 0
        ? gone.map(p => `replica ${p.replica} on ${p.peerId} lost (${this.c.view.lossReason(p.peerId)})`).join('; ')
        : `replicas ${missing.join(', ')} not running`
    const wasUnplaced = isUnplaced(record)
    const pending = lost(record, why, this.stamp())
    const epoch = pending.epoch
    this.c.log.warn({ workload: record.spec.id, missing, epoch }, `re-tendering: ${why}`)
    this.c.catalog.update(pending, { persist: false })
    const result = await this.c.tenderer.run(record.spec, epoch, missing, running.map(r => r.peerId))
    const latest = this.c.catalog.get(record.spec.id)
    if (latest == null || latest.status === 'Deleted' || latest.epoch !== epoch) return
    if (result.status === 'placed') {
      const placedNow: Placement[] = result.placed.map(p => ({ peerId: p.peerId, replica: p.replica, epoch }))
      this.c.catalog.update(healed(latest, running, placedNow, this.stamp()))
    } else {
      this.retryAfter.set(record.spec.id, this.now() + (wasUnplaced ? UNPLACED_RETRY_MS : DEGRADED_RETRY_MS))
      this.c.catalog.update(healFailed(latest, wasUnplaced, result.reason ?? result.status, this.stamp()))
    }
  }
}
