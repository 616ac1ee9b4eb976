import { setTimeout as sleep } from 'node:timers/promises'
import { describeError } from '../errors.js'
import { guardians } from '../machines/placement.js'
import { OwnerUnavailableError } from '../actors/errors.js'
import type { JournalEntry, SnapshotRecord, TraceEntry } from '../store/journal.js'
import type { Transition } from '../sandbox/machine-sandbox.js'
import { snapshotRecordKey, type HolderHead, type StateRequest } from '../protocol/state.js'
import { encodeMessage } from '../protocol/messages.js'
import { FencedError, MAX_CLAIMS, REPLICATION_FACTOR, type Owned, type StatefulComponents, type StatefulJournal, type StoredSnapshot } from './owner.js'

export interface ReplicationInit {
  /** The holder set of `o` changed: tell the mesh (location record). */
  publishLocation: (o: Owned) => void
}

/**
 * Stage 2 of the owner pipeline: makes a batch durable in this node's
 * journal and, for `replicated` workloads, on REPLICATION_FACTOR holders
 * (replacing a holder that is gone), and keeps the holder set the owner
 * chose at start. A holder that refuses the owner's epoch (fenced) makes
 * every call here throw FencedError: a newer owner exists.
 */
export class Replication {
  private dhtPut?: Promise<void>

  constructor (private readonly components: StatefulComponents, private readonly init: ReplicationInit) {}

  private get selfId (): string {
    return this.components.mesh.peerId
  }

  /** The snapshot record put still in flight, if any (it must land before a workload's records are dropped). */
  get snapshotPut (): Promise<void> | undefined {
    return this.dhtPut
  }

  /** Journals `entries` here and on the holders; resolves once durable as the workload's durability requires. */
  async persist (o: Owned, entries: JournalEntry[], last: Transition): Promise<void> {
    const first = entries[0]!.seq
    const lastSeq = entries.at(-1)!.seq
    const every = o.spec.snapshotEvery ?? 100
    const snapshotDue = Math.floor(lastSeq / every) > Math.floor((first - 1) / every) || last.status === 'done'
    const snapshot: SnapshotRecord | undefined = snapshotDue
      ? { seq: lastSeq, epoch: o.epoch, ts: Date.now(), snapshot: { machine: last.state, recent: [...[...o.dedup.values()].slice(-256).map((a): [string, number, unknown] => [a.id, a.seq, a.value]), ...entries.filter(e => e.id != null).map((e): [string, number, unknown] => [e.id!, e.seq, e.state])] } satisfies StoredSnapshot }
      : undefined
    const start = first === 1 ? o.start : undefined
    const local = this.components.journal.append(o.spec.id, entries, snapshot, start)
    // a final state's snapshot stays out of the DHT: every node is about to drop the workload's records
    const toDht = snapshot != null && last.status !== 'done'
    if (o.spec.durability === 'local') { await local; if (toDht) this.putDhtSnapshot(o, snapshot); return }
    const remote = this.replicate(o, entries, snapshot, start)
    await Promise.all([local, remote])
    o.start = undefined
    if (snapshot != null) { o.lastSnapshotSeq = snapshot.seq; if (toDht) this.putDhtSnapshot(o, snapshot) }
  }

  private async replicate (o: Owned, entries: JournalEntry[], snapshot: SnapshotRecord | undefined, start: TraceEntry | undefined): Promise<void> {
    const req: StateRequest = { op: 'append', workloadId: o.spec.id, epoch: o.epoch, owner: this.selfId, entries, ...(snapshot != null ? { snapshot } : {}), ...(start != null ? { start } : {}), holders: o.holders, setVersion: o.setVersion }
    const results = await Promise.all(o.holders.map(async peer => await this.appendTo(o, peer, req)))
    let ok = results.filter(Boolean).length
    if (ok >= REPLICATION_FACTOR) return
    // A holder is gone: replace it with the next live peer, which gets a whole copy.
    const lost = o.holders.filter((_, i) => !results[i])
    const kept = o.holders.filter((_, i) => results[i])
    const keep = [...kept]
    // Only with one of the holders still taking batches: with none, this node may be the cut-off
    // side of a partition, where the others can take over with those holders (see recovery.ts).
    if (keep.length === 0) throw new OwnerUnavailableError(o.spec.id, `no holder of ${o.spec.id} (${o.holders.join(', ')}) took the batch: this owner may be cut off from them, so it cannot choose new ones`)
    await this.components.journal.head(o.spec.id) // the local append of this batch runs in parallel; install reads after it
    const candidates = guardians(o.spec.id, this.components.livePeers(), MAX_CLAIMS).filter(p => p !== this.selfId && !o.holders.includes(p))
    for (const peer of candidates) {
      if (ok >= REPLICATION_FACTOR) break
      // the local journal must contain this batch before a copy is installed
      await sleepUntilLocal(this.components.journal, o.spec.id, entries.at(-1)!.seq)
      if (await this.install(o, peer)) { keep.push(peer); ok++ }
    }
    o.holders = keep
    o.setVersion++
    this.components.log.warn({ workload: o.spec.id, lost, holders: keep, setVersion: o.setVersion }, 'holder set changed')
    // The holders kept must know the new set before anything is acknowledged under it: a claimer
    // that fences them with an older idea of the set then learns of the newer one from them (and
    // needs a majority of it), or fenced them first, and this owner stops here (FencedError).
    const told = { ...req, holders: o.holders, setVersion: o.setVersion }
    const keptTold = await Promise.all(kept.map(async peer => await this.appendTo(o, peer, told)))
    if (keptTold.some(t => !t)) throw new OwnerUnavailableError(o.spec.id, `a holder of ${o.spec.id} did not take the new holder set`)
    this.init.publishLocation(o)
    if (ok < REPLICATION_FACTOR) throw new OwnerUnavailableError(o.spec.id, `only ${ok} of ${REPLICATION_FACTOR} holders took the transition`)
  }

  private async appendTo (o: Owned, peer: string, req: Extract<StateRequest, { op: 'append' }>): Promise<boolean> {
    try {
      const reply = await this.components.peers.state(peer, req, { timeoutMs: 5_000 })
      if (reply.ok) return true
      if (reply.code === 'fenced') throw new FencedError(o.spec.id, `${peer}: ${reply.message}`)
      if (reply.code === 'gap') {
        await sleepUntilLocal(this.components.journal, o.spec.id, req.entries.at(-1)!.seq)
        return await this.install(o, peer)
      }
      return false
    } catch (err) {
      if (err instanceof FencedError) throw err
      this.components.log.debug({ workload: o.spec.id, peer, err: describeError(err) }, 'holder did not take a batch')
      return false
    }
  }

  /**
   * Picks REPLICATION_FACTOR holders among live peers (those already up to
   * date at `seq` first) and installs the copy on those behind.
   */
  async chooseHolders (o: Owned, heads: Map<string, HolderHead>, seq: number): Promise<void> {
    const exclude = new Set<string>([this.selfId])
    const chosen: string[] = []
    const ranked = guardians(o.spec.id, this.components.livePeers(), MAX_CLAIMS).filter(p => p !== this.selfId)
    const upToDate = ranked.filter(p => heads.get(p)?.seq === seq && heads.get(p)?.corrupt == null)
    for (const peer of [...upToDate, ...ranked]) {
      if (chosen.length >= REPLICATION_FACTOR) break
      if (exclude.has(peer)) continue
      exclude.add(peer)
      if (upToDate.includes(peer) || await this.install(o, peer)) chosen.push(peer)
    }
    if (chosen.length < REPLICATION_FACTOR) {
      throw new OwnerUnavailableError(o.spec.id, `replicated durability needs ${REPLICATION_FACTOR} other live peers to hold copies; ${chosen.length} could`)
    }
    o.holders = chosen
    o.setVersion++
  }

  /** Sends this node's whole copy to `peer`; false if it could not take it. */
  private async install (o: Owned, peer: string): Promise<boolean> {
    try {
      const restored = await this.components.journal.restore(o.spec.id)
      const req: StateRequest = { op: 'install', workloadId: o.spec.id, epoch: o.epoch, owner: this.selfId, ...(restored?.snapshot != null ? { snapshot: restored.snapshot } : {}), entries: restored?.entries ?? [] }
      const reply = await this.components.peers.state(peer, req, { timeoutMs: 10_000 })
      if (!reply.ok && reply.code === 'fenced') throw new FencedError(o.spec.id, reply.message)
      return reply.ok
    } catch (err) {
      if (err instanceof FencedError) throw err
      this.components.log.debug({ workload: o.spec.id, peer, err: describeError(err) }, 'could not install a copy')
      return false
    }
  }

  /** Puts the snapshot record in the DHT, one put at a time (a put in flight makes this one wait for the next snapshot). */
  private putDhtSnapshot (o: Owned, snapshot: SnapshotRecord): void {
    if (this.dhtPut != null) return
    const value = { workloadId: o.spec.id, owner: this.selfId, epoch: snapshot.epoch, seq: snapshot.seq, ts: snapshot.ts, snapshot: snapshot.snapshot }
    this.dhtPut = this.components.mesh.putRecord(snapshotRecordKey(o.spec.id), encodeMessage(value), { signal: AbortSignal.timeout(10_000) })
      .then(() => {}, err => { this.components.log.debug({ workload: o.spec.id, err: describeError(err) }, 'snapshot record put failed') })
      .finally(() => { this.dhtPut = undefined })
  }
}

/** Waits (briefly) until the local journal has reached `seq`: an install must carry the batch being persisted. */
async function sleepUntilLocal (journal: StatefulJournal, id: string, seq: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const head = await journal.head(id)
    if ((head?.seq ?? 0) >= seq) return
    await sleep(5)
  }
}
