/**
 * A workload as `get`/`describe` show it, as a pure function of what a node
 * knows: the record, the copies it runs itself, the copies peers report in
 * their heartbeats, and which peers are live.
 */
import type { ReplicaPlacement, WorkloadStatus, WorkloadStatusName } from '../workloads/views.js'
import type { PodReport, WorkloadRecord } from '../workloads/records.js'
import type { WorkloadSpec } from '../workloads/types.js'
import type { ReplicaLocation } from '../membership/mesh-view.js'
import { endedStatus } from './record-lifecycle.js'

/** A copy of a replica this node runs: a stateless replica, a container, or a stateful workload's machine (replica 0). */
export interface LocalCopy {
  kind: 'replica' | 'container' | 'machine'
  spec: WorkloadSpec
  replica: number
  epoch: number
  status: ReplicaPlacement['status']
  handled: number
  failures: number
  pod?: PodReport
}

/** A copy a peer reports running, as the mesh view keeps it. */
export type RemoteCopy = ReplicaLocation

export interface StatusInputs {
  selfId: string
  /** This node's copies of the workload. */
  local: LocalCopy[]
  /** Peers' copies of the workload, from their heartbeats. */
  remote: RemoteCopy[]
  isLive: (peerId: string) => boolean
}

/** What this node runs of one workload, one entry per ordinal: a machine wins over a stateless copy, a container over both. */
function localByOrdinal (local: LocalCopy[]): Map<number, LocalCopy> {
  const rank = { replica: 0, machine: 1, container: 2 }
  const out = new Map<number, LocalCopy>()
  for (const c of [...local].sort((a, b) => rank[a.kind] - rank[b.kind])) out.set(c.replica, c)
  return out
}

export function statusOf (record: WorkloadRecord, { selfId, local: copies, remote, isLive }: StatusInputs): WorkloadStatus {
  const placement: ReplicaPlacement[] = []
  const local = localByOrdinal(copies)
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
    if (mine != null) { placement.push({ replica, peerId: selfId, epoch: mine.epoch, status: mine.status, handled: mine.handled, failures: mine.failures, ...(mine.pod != null ? { pod: mine.pod } : {}) }); continue }
    const seen = remote.filter(r => r.replica === replica).sort((a, b) => b.epoch - a.epoch)[0]
    if (seen != null) { placement.push({ replica, peerId: seen.peerId, epoch: seen.epoch, status: seen.status, handled: seen.handled, failures: seen.failures, ...(seen.pod != null ? { pod: seen.pod } : {}) }); continue }
    const planned = record.placement.find(p => p.replica === replica)
    if (planned != null) placement.push({ replica, peerId: planned.peerId, epoch: planned.epoch, status: isLive(planned.peerId) ? 'starting' : 'lost', handled: 0, failures: 0 })
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
