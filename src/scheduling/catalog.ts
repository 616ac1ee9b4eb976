/**
 * This node's copy of the mesh-wide catalog of workload records. A record
 * comes in by gossip, from the DHT, or from a plane of this node; the catalog
 * keeps the newest (a higher epoch wins; at one epoch, the replica outcomes
 * each host wrote are merged, so none is lost) and tells the planes what
 * changed through typed events: the planes that host replicas stop what a
 * record no longer wants. Updates made here are gossiped and (unless
 * transient) put in the DHT.
 */
import { describeError } from '../errors.js'
import { decodeMessage, encodeMessage, workloadKey, type SchedulerMessage } from '../protocol/messages.js'
import type { Logger } from '../transport/logger.js'
import { WorkloadRecordSchema, type WorkloadRecord } from '../workloads/records.js'
import { isGone, mergeOutcomes } from './record-lifecycle.js'

/** How long before a workload id heard of in heartbeats is looked up in the DHT again. */
const RECORD_LOOKUP_BACKOFF_MS = 10_000
/** The first retry of a failed lookup comes sooner (a node that just joined has a thin routing table). */
const RECORD_LOOKUP_FIRST_RETRY_MS = 1_000

/**
 * What a newly adopted record means for the copies a node runs, in the order
 * they are emitted: `record.adopted` always; then `record.ended` (Deleted or
 * Completed: every local copy stops), or `record.scaled-down` (ordinals at or
 * above the count stop) followed, for a Running record, by
 * `record.generation-replaced` (copies of another spec stop).
 */
export type CatalogEvent =
  | { type: 'record.adopted', record: WorkloadRecord }
  | { type: 'record.ended', record: WorkloadRecord }
  | { type: 'record.scaled-down', record: WorkloadRecord }
  | { type: 'record.generation-replaced', record: WorkloadRecord }

export type CatalogListener = (event: CatalogEvent) => void

/** What the catalog uses of the mesh: gossip, and the DHT's signed records. */
export interface CatalogMesh {
  gossip: (message: SchedulerMessage) => Promise<void>
  putRecord: (key: string, value: Uint8Array, options: { signal: AbortSignal }) => Promise<unknown>
  getRecord: (key: string, options: { signal: AbortSignal }) => Promise<{ value: Uint8Array }>
}

export interface CatalogComponents {
  mesh: CatalogMesh
  log: Logger
  now?: () => number
}

/** Reading the catalog: what the planes that do not write records need. */
export interface CatalogReader {
  get: (id: string) => WorkloadRecord | undefined
  has: (id: string) => boolean
  values: () => Iterable<WorkloadRecord>
  /** Local time the record of `id` was last adopted here (0 if never). */
  seenAt: (id: string) => number
}

export class RecordCatalog implements CatalogReader {
  private readonly records = new Map<string, WorkloadRecord>()
  private readonly seen = new Map<string, number>()
  private readonly listeners = new Set<CatalogListener>()
  /** Workload ids looked up in the DHT, with the time before which not to try again. */
  private readonly lookups = new Map<string, number>()
  /** Failed lookups in a row per workload id, for the backoff. */
  private readonly lookupFailures = new Map<string, number>()
  private readonly now: () => number

  constructor (private readonly c: CatalogComponents) {
    this.now = c.now ?? Date.now
  }

  get size (): number { return this.records.size }
  get (id: string): WorkloadRecord | undefined { return this.records.get(id) }
  has (id: string): boolean { return this.records.has(id) }
  values (): IterableIterator<WorkloadRecord> { return this.records.values() }
  seenAt (id: string): number { return this.seen.get(id) ?? 0 }

  /** Calls `listener` with every event; returns the unsubscriber. */
  on (listener: CatalogListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Records not deleted nor completed: the workloads the mesh runs. */
  active (): WorkloadRecord[] {
    return [...this.records.values()].filter(r => !isGone(r))
  }

  /**
   * Adopts `incoming` if it is news: a newer epoch, or at the same epoch the
   * newer copy with the outcomes only the other knows. Returns whether it was adopted.
   */
  merge (incoming: WorkloadRecord): boolean {
    let record = incoming
    const cur = this.records.get(record.spec.id)
    if (cur != null && record.epoch === cur.epoch && record.status !== 'Deleted' && cur.status !== 'Deleted') {
      // Hosts note how their replicas ended, each in its own copy: at one epoch, no outcome is lost.
      const newer = record.updatedAt < cur.updatedAt ? cur : record
      const merged = mergeOutcomes(newer, newer === cur ? record : cur)
      if (merged === cur) return false
      record = merged
    } else if (cur != null && record.epoch < cur.epoch) return false
    this.records.set(record.spec.id, record)
    this.seen.set(record.spec.id, this.now())
    this.emit({ type: 'record.adopted', record })
    if (isGone(record)) {
      this.emit({ type: 'record.ended', record })
      return true
    }
    this.emit({ type: 'record.scaled-down', record })
    if (record.status === 'Running') this.emit({ type: 'record.generation-replaced', record })
    return true
  }

  /**
   * Adopts a record made here, gossips it, and (with `persist`, the default)
   * puts it in the DHT. Transient states (a tender in flight) are gossiped only.
   */
  update (record: WorkloadRecord, { persist = true } = {}): void {
    this.merge(record)
    void this.c.mesh.gossip({ type: 'record', record })
    if (!persist) return
    this.c.mesh.putRecord(workloadKey(record.spec.id), encodeMessage(record), { signal: AbortSignal.timeout(10_000) }).catch(err => {
      this.c.log.debug({ workload: record.spec.id, err: describeError(err) }, 'workload record put failed')
    })
  }

  /** Updates the record of `id` by `change`, unless there is none or it was deleted. */
  amend (id: string, change: (record: WorkloadRecord) => WorkloadRecord): void {
    const record = this.records.get(id)
    if (record != null && record.status !== 'Deleted') this.update(change(record))
  }

  /** Reads a workload's record from the DHT (for ids not heard of through gossip) and merges it. */
  async fetch (id: string): Promise<WorkloadRecord | undefined> {
    try {
      const r = await this.c.mesh.getRecord(workloadKey(id), { signal: AbortSignal.timeout(5_000) })
      const record = decodeMessage(WorkloadRecordSchema, r.value)
      if (record != null) this.merge(record)
      return record
    } catch {
      return undefined
    }
  }

  /** The workload's record: this node's copy, else the mesh's (DHT), else undefined. */
  async known (id: string): Promise<WorkloadRecord | undefined> {
    return this.records.get(id) ?? await this.fetch(id)
  }

  /**
   * Background lookup of a workload heard of only through a heartbeat: one at
   * a time per id; after a failed lookup, not again for 1 s, 2 s, 4 s … up to
   * RECORD_LOOKUP_BACKOFF_MS (every peer's heartbeat names it every second).
   */
  lookUp (id: string): void {
    const now = this.now()
    if ((this.lookups.get(id) ?? 0) > now) return
    const failures = this.lookupFailures.get(id) ?? 0
    this.lookups.set(id, now + Math.min(RECORD_LOOKUP_BACKOFF_MS, RECORD_LOOKUP_FIRST_RETRY_MS * 2 ** failures))
    void this.fetch(id).then(record => {
      if (record != null) { this.lookups.delete(id); this.lookupFailures.delete(id) } else this.lookupFailures.set(id, failures + 1)
    })
  }

  private emit (event: CatalogEvent): void {
    for (const l of this.listeners) {
      try {
        l(event)
      } catch (err) {
        this.c.log.error({ workload: event.record.spec.id, event: event.type, err: describeError(err) }, 'catalog listener failed')
      }
    }
  }
}
