import { describeError } from '../errors.js'
import { guardians } from '../machines/placement.js'
import { OwnerUnavailableError } from '../actors/errors.js'
import type { JournalEntry, SnapshotRecord } from '../store/journal.js'
import type { WorkloadSpec } from '../workloads/types.js'
import { LocationRecord, locationKey, snapshotRecordKey, type HolderHead, type ReplicaSet } from '../protocol/state.js'
import { FencedError, MAX_CLAIMS, type StatefulComponents } from './owner.js'

/** What a claim of an epoch found: this node's own head and the heads of the peers that answered. */
export interface Claimed {
  own: HolderHead
  heads: Map<string, HolderHead>
}

/** What recovery hands the new owner: the newest copy found (now in this node's journal) and every head seen. */
export interface Recovered {
  snapshot?: SnapshotRecord
  entries: JournalEntry[]
  heads: Map<string, HolderHead>
}

/** Where each workload's owner was last heard to be (location records from gossip, the DHT, or this node). */
export class Locations {
  private readonly records = new Map<string, LocationRecord>()

  /** Keeps `loc` if it is newer than the one known (higher epoch, or same epoch and not older). */
  note (loc: LocationRecord): void {
    const cur = this.records.get(loc.workloadId)
    if (cur == null || loc.epoch > cur.epoch || (loc.epoch === cur.epoch && loc.ts >= cur.ts)) this.records.set(loc.workloadId, loc)
  }

  get (workloadId: string): LocationRecord | undefined {
    return this.records.get(workloadId)
  }

  delete (workloadId: string): void {
    this.records.delete(workloadId)
  }
}

/**
 * The newest replica set known before `epoch`: the location record's, or a
 * newer one a fenced holder was told of (the record may not have reached
 * this node: gossip lost, or a change just made).
 */
export function lastReplicaSet (previous: LocationRecord | undefined, heads: HolderHead[], epoch: number): ReplicaSet | undefined {
  let last: ReplicaSet | undefined = previous != null ? { epoch: previous.epoch, owner: previous.owner, holders: previous.holders, version: previous.setVersion ?? 0 } : undefined
  for (const h of heads) {
    const s = h.set
    if (s == null || s.epoch >= epoch) continue
    if (last == null || s.epoch > last.epoch || (s.epoch === last.epoch && s.version > last.version)) last = s
  }
  return last
}

export interface TakeoverInput {
  workloadId: string
  epoch: number
  durability: WorkloadSpec['durability']
  selfId: string
  /** The location record known before the claim, if any. */
  previous: LocationRecord | undefined
  claimed: Claimed
  /** Whether the workload is known to have been placed at an epoch before `epoch`. */
  placedBefore: boolean
}

/**
 * Why taking a workload over at `epoch` is not safe yet, or undefined when
 * it is. Pure: it decides on the heads a claim gathered.
 */
export function takeoverRefusal ({ workloadId: id, epoch, durability, selfId, previous, claimed: { own, heads }, placedBefore }: TakeoverInput): string | undefined {
  if (durability === 'local') return undefined
  if (previous == null && epoch > 1 && (own.seq > 0 || [...heads.values()].some(h => h.seq > 0) || placedBefore)) {
    // Taking over a workload that has run (copies exist, or it was placed before) with no word of who
    // held it last (neither gossip nor the DHT answered, e.g. just restarted, or cut off): the copies at
    // hand may be stale or none, and acknowledged events would be lost.
    return `no location record of ${id} before epoch ${epoch}: its last replica set is unknown here, so it cannot be taken over safely yet`
  }
  const last = lastReplicaSet(previous, [own, ...heads.values()], epoch)
  if (last == null || last.holders.length === 0 || last.epoch >= epoch) return undefined
  // A majority of the last replica set (its owner and holders) must take this epoch's fence.
  // The old owner changes its holders only with one of them still answering, and tells the
  // ones it keeps before going on (see replication.ts), so any majority of the newest set includes
  // a node that knows every acknowledged event, and is fenced now: across a partition, the
  // side without such a majority cannot take over while the old owner may still acknowledge.
  const group = [...new Set([last.owner, ...last.holders])]
  const fenced = group.filter(p => p === selfId || heads.has(p))
  const needed = Math.floor(group.length / 2) + 1
  if (fenced.length < needed) return `reached ${fenced.length} of the ${group.length} nodes of epoch ${last.epoch}'s replica set (${group.join(', ')}), ${needed} needed: taking over without a majority of it could run the workload twice`
  // Every acknowledged event is on every holder of the last holder set: one sound copy
  // among them is needed (a holder that answers with a corrupt copy does not count).
  const sound = last.holders.filter(p => p === selfId ? own.corrupt == null : heads.has(p) && heads.get(p)!.corrupt == null)
  if (sound.length === 0) return `no sound copy from the holders of epoch ${last.epoch} (${last.holders.join(', ')}); resuming without one could lose acknowledged events`
  return undefined
}

/** The sound, non-empty copies, newest first: the highest epoch of their last entry, then the highest seq, this node's own first on a tie. */
export function copiesNewestFirst (selfId: string, { own, heads }: Claimed): Array<{ peer: string, head: HolderHead }> {
  const candidates: Array<{ peer: string, head: HolderHead }> = []
  if (own.corrupt == null && own.seq > 0) candidates.push({ peer: selfId, head: own })
  for (const [peer, head] of heads) if (head.corrupt == null && head.seq > 0) candidates.push({ peer, head })
  return candidates.sort((a, b) => b.head.epoch - a.head.epoch || b.head.seq - a.head.seq || (a.peer === selfId ? -1 : b.peer === selfId ? 1 : 0))
}

export interface RecoveryInit {
  locations: Locations
  /** Whether the workload is known (from its record or heartbeats) to have been placed at an epoch before `epoch`. */
  placedBefore?: (workloadId: string, epoch: number) => boolean
}

/**
 * Recovery after a failover: the new owner claims the epoch on the peers
 * (fencing the previous owner off its holders), checks that taking over is
 * safe (takeoverRefusal), and brings the newest copy it can find into its
 * own journal.
 */
export class Recovery {
  constructor (private readonly components: StatefulComponents, private readonly init: RecoveryInit) {}

  private get selfId (): string {
    return this.components.mesh.peerId
  }

  async recover (spec: WorkloadSpec, epoch: number): Promise<Recovered> {
    const id = spec.id
    const { log, holder, journal, peers } = this.components
    const previous = this.init.locations.get(id) ?? (epoch > 1 ? await this.locationFromDht(id) : undefined)
    const ranked = guardians(id, this.components.livePeers(), MAX_CLAIMS)
    const asked = [...new Set([...(previous?.holders ?? []).filter(p => p !== this.selfId), ...ranked])].filter(p => p !== this.selfId)
    // Fence our own copy first: from now on this node refuses older epochs too.
    const own = await holder.handle({ op: 'claim', workloadId: id, epoch, owner: this.selfId }, this.selfId)
    if (!own.ok) throw new FencedError(id, own.message)
    const heads = new Map<string, HolderHead>()
    const replies = await Promise.all(asked.map(async peer => {
      try {
        return { peer, reply: await peers.state(peer, { op: 'claim', workloadId: id, epoch, owner: this.selfId }, { timeoutMs: 3_000 }) }
      } catch (err) {
        log.debug({ workload: id, peer, err: describeError(err) }, 'claim not answered')
        return { peer, reply: undefined }
      }
    }))
    for (const { peer, reply } of replies) {
      if (reply == null) continue
      if (!reply.ok && reply.code === 'fenced') throw new FencedError(id, `${peer} refused epoch ${epoch}: ${reply.message}`)
      if (reply.ok) heads.set(peer, reply.head)
    }
    const claimed: Claimed = { own: own.head, heads }
    const refused = takeoverRefusal({ workloadId: id, epoch, durability: spec.durability, selfId: this.selfId, previous, claimed, placedBefore: this.init.placedBefore?.(id, epoch) === true })
    if (refused != null) throw new OwnerUnavailableError(id, refused)
    if (own.head.corrupt != null) log.warn({ workload: id, err: own.head.corrupt }, 'local journal copy is corrupt: recovering from a replicated copy instead')
    for (const c of copiesNewestFirst(this.selfId, claimed)) {
      try {
        if (c.peer === this.selfId) {
          const restored = await journal.restore(id)
          if (restored != null) return { ...restored, heads }
          continue
        }
        const reply = await peers.state(c.peer, { op: 'fetch', workloadId: id }, { timeoutMs: 10_000 })
        if (!reply.ok) { log.warn({ workload: id, peer: c.peer, err: reply.message }, 'copy refused'); continue }
        await this.adopt(id, reply.snapshot, reply.entries ?? [])
        return { ...(reply.snapshot != null ? { snapshot: reply.snapshot } : {}), entries: reply.entries ?? [], heads }
      } catch (err) {
        log.warn({ workload: id, peer: c.peer, err: describeError(err) }, 'could not read a copy; trying the next')
      }
    }
    if (own.head.corrupt != null) await holder.erase(id, { keepTrace: true })
    const fromDht = await this.snapshotFromDht(id, epoch)
    if (fromDht != null) {
      await this.adopt(id, fromDht, [])
      return { snapshot: fromDht, entries: [], heads }
    }
    return { entries: [], heads }
  }

  /** The location record from the DHT, for an owner-to-be (or a sender) that missed its gossip (it just joined). */
  async locationFromDht (id: string, timeoutMs = 2_000): Promise<LocationRecord | undefined> {
    try {
      const rec = await this.components.mesh.getRecord(locationKey(id), { signal: AbortSignal.timeout(timeoutMs) })
      const loc = LocationRecord.safeParse(JSON.parse(new TextDecoder().decode(rec.value)))
      if (!loc.success || loc.data.owner !== rec.publisher || loc.data.workloadId !== id) return undefined
      this.init.locations.note(loc.data)
      return loc.data
    } catch {
      return undefined
    }
  }

  /** Replaces this node's copy with `snapshot` + `entries` (fetched from a holder). */
  private async adopt (id: string, snapshot: SnapshotRecord | undefined, entries: JournalEntry[]): Promise<void> {
    const { journal } = this.components
    await journal.erase(id, { keepTrace: true })
    if (snapshot != null) await journal.putSnapshot(id, snapshot)
    if (entries.length > 0) await journal.append(id, entries)
  }

  private async snapshotFromDht (id: string, epoch: number): Promise<SnapshotRecord | undefined> {
    try {
      const rec = await this.components.mesh.getRecord(snapshotRecordKey(id), { signal: AbortSignal.timeout(2_000) })
      const value = JSON.parse(new TextDecoder().decode(rec.value)) as { workloadId?: string, owner?: string, epoch?: number, seq?: number, ts?: number, snapshot?: unknown }
      if (value.workloadId !== id || value.owner !== rec.publisher || typeof value.epoch !== 'number' || typeof value.seq !== 'number' || value.epoch > epoch) {
        this.components.log.warn({ workload: id, publisher: rec.publisher }, 'refused a DHT snapshot record that is not its owner\'s')
        return undefined
      }
      return { seq: value.seq, epoch: value.epoch, ts: value.ts ?? 0, snapshot: value.snapshot }
    } catch {
      return undefined
    }
  }
}
