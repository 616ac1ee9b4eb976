/**
 * The life of a workload record, as pure functions: every status a record
 * moves to (Pending, Running, Degraded, Unschedulable, Failed, Completed,
 * Succeeded, Deleted) is written here once, with the event it adds. The
 * planes (tenderer, guardian, the facade's delete) decide which transition
 * applies and hand the result to the catalog; none writes a status literal
 * of its own. Time and the acting node come in as a `Stamp`, so a test can
 * check a transition without a clock.
 */
import type { WorkloadSpec } from '../workloads/types.js'
import type { ReplicaOutcome, SchedulingEvent, WorkloadRecord } from '../workloads/records.js'

/** A record keeps this many events (oldest dropped first). */
export const MAX_EVENTS = 30

export type Placement = WorkloadRecord['placement'][number]

/** When a transition happened and which node made it. */
export interface Stamp {
  now: number
  by: string
}

export function event (type: SchedulingEvent['type'], reason: string, message: string, ts: number): SchedulingEvent {
  return { ts, type, reason, message: message.slice(0, 3900) }
}

export function pushEvent (events: SchedulingEvent[], e: SchedulingEvent): SchedulingEvent[] {
  return [...events, e].slice(-MAX_EVENTS)
}

/** A tender or award at `epoch` is stale once the workload was deleted at or after it, or moved to a newer epoch. */
export function isStale (known: WorkloadRecord, epoch: number): boolean {
  return known.epoch > epoch || (known.status === 'Deleted' && known.epoch >= epoch)
}

/** Replica ordinals of a container workload that ended by their restart policy (recorded, never re-run). */
export function endedReplicas (record: WorkloadRecord): Set<number> {
  return new Set(record.placement.filter(p => p.outcome != null).map(p => p.replica))
}

/** Succeeded once every replica succeeded; Failed once every replica ended and one failed; else none. */
export function endedStatus (record: WorkloadRecord): 'Succeeded' | 'Failed' | undefined {
  if (record.spec.kind !== 'container' || record.status === 'Deleted') return undefined
  const outcomes = record.placement.filter(p => p.outcome != null)
  if (new Set(outcomes.map(p => p.replica)).size < record.spec.replicas) return undefined
  return outcomes.every(p => p.outcome?.phase === 'Succeeded') ? 'Succeeded' : 'Failed'
}

/** A new placement, sorted, keeping the record's entries of replicas that ended (their outcome is history). */
export function keepEnded (record: WorkloadRecord, placement: Placement[]): Placement[] {
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
export function mergeOutcomes (newer: WorkloadRecord, other: WorkloadRecord): WorkloadRecord {
  const extra = other.placement.filter(p => p.outcome != null && !newer.placement.some(q => q.replica === p.replica && q.outcome != null))
  if (extra.length === 0) return newer
  const placement = keepEnded({ ...newer, placement: [...newer.placement.filter(p => !extra.some(e => e.replica === p.replica)), ...extra] }, newer.placement.filter(p => !extra.some(e => e.replica === p.replica)))
  const merged = { ...newer, placement }
  const status = endedStatus(merged)
  return status != null ? { ...merged, status } : merged
}

/** Same generation: what a replica runs is alike (the replica count and the manifest text do not matter). */
export function sameSpec (a: WorkloadSpec, b: WorkloadSpec): boolean {
  const { createdAt: _a, source: _sa, replicas: _ra, manifest: _ma, provenance: _pa, ...x } = a
  const { createdAt: _b, source: _sb, replicas: _rb, manifest: _mb, provenance: _pb, ...y } = b
  return JSON.stringify(x) === JSON.stringify(y)
}

/** A record no tender placed (yet): a guardian retries it less often and does not call it Degraded. */
export function isUnplaced (record: WorkloadRecord): boolean {
  return record.status === 'Unschedulable' || record.status === 'Failed' || record.status === 'Pending'
}

/** A record the mesh no longer runs anything for. */
export function isGone (record: WorkloadRecord): boolean {
  return record.status === 'Deleted' || record.status === 'Completed'
}

function stamped (stamp: Stamp): { updatedAt: number, updatedBy: string } {
  return { updatedAt: stamp.now, updatedBy: stamp.by }
}

function describePlacement (placement: Placement[]): string {
  return placement.map(p => `replica ${p.replica} → ${p.peerId}`).join(', ')
}

// ---------------------------------------------------------------- transitions

/** An apply: a new generation at the next epoch, Pending while its tender runs (a deleted workload's history is dropped). */
export function tendering (spec: WorkloadSpec, existing: WorkloadRecord | undefined, stamp: Stamp): WorkloadRecord {
  const epoch = (existing?.epoch ?? 0) + 1
  const history = existing?.status === 'Deleted' ? [] : existing?.events ?? []
  return {
    spec,
    epoch,
    status: 'Pending',
    placement: [],
    events: [...history, event('Normal', 'Tendering', `tendering ${spec.replicas} replica(s) at epoch ${epoch}`, stamp.now)],
    updatedAt: stamp.now,
    updatedBy: stamp.by
  }
}

/** The apply's tender placed every replica: Running. */
export function placed (record: WorkloadRecord, placement: Placement[], stamp: Stamp): WorkloadRecord {
  return { ...record, status: 'Running', placement, events: pushEvent(record.events, event('Normal', 'Scheduled', describePlacement(placement), stamp.now)), ...stamped(stamp) }
}

/** The apply's tender placed nothing: Unschedulable (no node fits) or Failed (the replicas did not start). */
export function unplaced (record: WorkloadRecord, outcome: 'unschedulable' | 'failed', reason: string, stamp: Stamp): WorkloadRecord {
  return { ...record, status: outcome === 'unschedulable' ? 'Unschedulable' : 'Failed', events: pushEvent(record.events, event('Warning', 'FailedScheduling', reason, stamp.now)), ...stamped(stamp) }
}

/** A guardian found replicas missing: the next epoch, Degraded while it re-tenders (an unplaced record keeps its status). */
export function lost (record: WorkloadRecord, why: string, stamp: Stamp): WorkloadRecord {
  const epoch = record.epoch + 1
  return { ...record, epoch, status: isUnplaced(record) ? record.status : 'Degraded', events: pushEvent(record.events, event('Warning', 'ReplicaLost', `${why}; re-tendering at epoch ${epoch}`, stamp.now)), ...stamped(stamp) }
}

/** The guardian's tender placed the missing replicas beside the running ones: Running. */
export function healed (record: WorkloadRecord, running: Placement[], placedNow: Placement[], stamp: Stamp): WorkloadRecord {
  const placement = keepEnded(record, [...running, ...placedNow])
  return { ...record, status: 'Running', placement, events: pushEvent(record.events, event('Normal', 'Rescheduled', describePlacement(placedNow), stamp.now)), ...stamped(stamp) }
}

/** The guardian's tender failed: Degraded, or the unplaced status the record had (`wasUnplaced`, decided before the heal). */
export function healFailed (record: WorkloadRecord, wasUnplaced: boolean, reason: string, stamp: Stamp): WorkloadRecord {
  return { ...record, status: wasUnplaced ? record.status : 'Degraded', events: pushEvent(record.events, event('Warning', 'FailedScheduling', reason, stamp.now)), ...stamped(stamp) }
}

/**
 * Every replica runs but the record does not say Running (a heal that ended
 * elsewhere, or a tenderer that died after its replicas started): Running,
 * with an Adopted event when the record was still Pending.
 */
export function adopted (record: WorkloadRecord, running: Placement[], stamp: Stamp): WorkloadRecord {
  const note = record.status === 'Pending' ? [event('Normal', 'Adopted', `tenderer ${record.updatedBy} stopped answering; every replica already runs, adopted by guardian ${stamp.by}`, stamp.now)] : []
  return { ...record, status: 'Running', placement: keepEnded(record, running), events: [...record.events, ...note].slice(-MAX_EVENTS), ...stamped(stamp) }
}

/** A new replica count (or manifest text) for the same generation: the next epoch, the ordinals above the count dropped. */
export function rescaled (record: WorkloadRecord, spec: WorkloadSpec, stamp: Stamp): WorkloadRecord {
  const from = record.spec.replicas
  return {
    ...record,
    spec,
    epoch: record.epoch + 1,
    placement: record.placement.filter(p => p.replica < spec.replicas),
    events: from !== spec.replicas ? pushEvent(record.events, event('Normal', 'Scaled', `replicas ${from} → ${spec.replicas}`, stamp.now)) : record.events,
    ...stamped(stamp)
  }
}

/** Deleted by an API call here: the next epoch, nothing placed. */
export function deleted (record: WorkloadRecord, stamp: Stamp): WorkloadRecord {
  return { ...record, epoch: record.epoch + 1, status: 'Deleted', placement: [], events: pushEvent(record.events, event('Normal', 'Deleted', `deleted by ${stamp.by}`, stamp.now)), ...stamped(stamp) }
}

/** Deleted elsewhere, heard as a `deleted` notice at `epoch` (no event: the deleting node's record carries it). */
export function deletedElsewhere (record: WorkloadRecord, epoch: number, stamp: Stamp): WorkloadRecord {
  return { ...record, epoch, status: 'Deleted', placement: [], ...stamped(stamp) }
}

/** A stateful workload's machine failed: Failed (it keeps running, its last state stays readable). */
export function machineFailed (record: WorkloadRecord, error: string, stamp: Stamp): WorkloadRecord {
  return { ...record, status: 'Failed', events: pushEvent(record.events, event('Warning', 'MachineFailed', error, stamp.now)), ...stamped(stamp) }
}

/** A stateful workload's machine reached a final state: Completed, with its output; its state is erased everywhere. */
export function completed (record: WorkloadRecord, epoch: number, output: unknown, stamp: Stamp): WorkloadRecord {
  return { ...record, status: 'Completed', output, placement: [], events: pushEvent(record.events, event('Normal', 'Completed', `the machine reached a final state at epoch ${epoch}; its state was erased`, stamp.now)), ...stamped(stamp) }
}

/** How a container replica ended, as its host reports it. */
export type PodEnd = Omit<ReplicaOutcome, 'at'>

/**
 * A container replica on `stamp.by` ended by its restart policy: the outcome
 * is kept in the placement (never run again), and once every replica ended
 * the record is Succeeded or Failed.
 */
export function podEnded (record: WorkloadRecord, replica: number, epoch: number, outcome: PodEnd, stamp: Stamp): WorkloadRecord {
  const entry: Placement = { peerId: stamp.by, replica, epoch, outcome: { ...outcome, message: outcome.message?.slice(0, 1900), at: stamp.now } }
  const placement = keepEnded(record, [...record.placement.filter(p => p.replica !== replica), entry])
  const succeeded = outcome.phase === 'Succeeded'
  const what = `replica ${replica} on ${stamp.by} ${succeeded ? 'succeeded' : 'failed'}: ${outcome.reason}${outcome.exitCode != null ? `, exit code ${outcome.exitCode}` : ''}${outcome.message != null && !succeeded ? ` (${outcome.message})` : ''}`
  const next: WorkloadRecord = { ...record, placement, events: pushEvent(record.events, event(succeeded ? 'Normal' : 'Warning', succeeded ? 'Completed' : outcome.reason, what, stamp.now)), ...stamped(stamp) }
  const status = endedStatus(next)
  return status != null ? { ...next, status } : next
}
