import { describeError } from '../errors.js'
import { CorruptJournalError } from '../store/errors.js'
import type { JournalEntry, SnapshotRecord, TraceEntry, WorkloadJournal } from '../store/journal.js'
import type { NodeStore } from '../store/node-store.js'
import type { Logger } from '../transport/logger.js'
import type { HolderHead, StateRequest } from '../protocol/state.js'

/** The epoch a workload's copies on this node are fenced at, and by whom. */
interface Fence { epoch: number, owner: string, holders?: string[], version?: number }

export type HolderReply =
  | { ok: true, head: HolderHead, snapshot?: SnapshotRecord, entries?: JournalEntry[], trace?: TraceEntry[] }
  | { ok: false, code: 'fenced' | 'gap' | 'corrupt' | 'invalid', message: string, head?: HolderHead }

const FENCE_SUBLEVEL = 'fence'

/**
 * The holder side of replication: every node keeps copies of the stateful
 * workloads it is a holder of in its own journal (LevelDB), and a persisted
 * fence per workload. A holder accepts writes only from the owner of the
 * highest epoch it has been told of, so an owner deposed by a failover or a
 * partition can no longer get an event acknowledged: acknowledgement of a
 * replicated event needs two holders, and they refuse it.
 */
export class StateHolder {
  private readonly fences: ReturnType<NodeStore['sublevel']>

  /**
   * `onFence` is told (synchronously, before anything is written) whenever a
   * workload's fence rises: a machine this node still owns at an older epoch
   * must stop before the new owner's copy lands in the same journal.
   */
  constructor (private readonly journal: WorkloadJournal, store: NodeStore, private readonly log: Logger, private readonly onFence?: (workloadId: string, epoch: number, owner: string) => void) {
    this.fences = store.sublevel(FENCE_SUBLEVEL)
  }

  async fence (workloadId: string): Promise<Fence | undefined> {
    const raw = await this.fences.get(workloadId)
    if (raw == null) return undefined
    try {
      const f = JSON.parse(raw) as Fence
      return typeof f.epoch === 'number' && typeof f.owner === 'string' ? f : undefined
    } catch {
      return undefined
    }
  }

  private async setFence (workloadId: string, f: Fence): Promise<void> {
    await this.fences.put(workloadId, JSON.stringify(f))
  }

  /** What this node holds of a workload; `corrupt` when its copy cannot be read. */
  async head (workloadId: string): Promise<HolderHead> {
    const fence = (await this.fence(workloadId))?.epoch ?? 0
    try {
      const restored = await this.journal.restore(workloadId)
      if (restored == null) return { seq: 0, epoch: 0, fence }
      const last = restored.entries.at(-1)
      return { seq: last?.seq ?? restored.snapshot?.seq ?? 0, epoch: last?.epoch ?? restored.snapshot?.epoch ?? 0, fence }
    } catch (err) {
      this.log.warn({ workload: workloadId, err: describeError(err) }, 'journal copy is corrupt: it will not be resumed from')
      return { seq: 0, epoch: 0, fence, corrupt: describeError(err) }
    }
  }

  /**
   * Checks `epoch`/`owner` against the fence and raises the fence to a newer
   * epoch. Refuses an older epoch, and another owner at the same epoch.
   */
  private async admit (workloadId: string, epoch: number, owner: string, set?: { holders?: string[], setVersion?: number }): Promise<string | undefined> {
    const f = await this.fence(workloadId)
    if (f != null && epoch < f.epoch) return `epoch ${epoch} is older than epoch ${f.epoch} of owner ${f.owner}`
    // Two guardians that re-tendered at once can award the same epoch to two nodes: the
    // lower peer id wins, everywhere alike (heartbeat fencing breaks the tie the same way).
    if (f != null && epoch === f.epoch && owner !== f.owner && owner > f.owner) return `epoch ${epoch} belongs to owner ${f.owner}`
    if (f == null || epoch > f.epoch || owner !== f.owner) {
      this.onFence?.(workloadId, epoch, owner)
      await this.setFence(workloadId, { epoch, owner, ...(set?.holders != null ? { holders: set.holders, version: set.setVersion ?? 0 } : {}) })
    } else if (set?.holders != null && (set.setVersion ?? 0) > (f.version ?? -1)) {
      await this.setFence(workloadId, { ...f, holders: set.holders, version: set.setVersion ?? 0 })
    }
    return undefined
  }

  async handle (req: StateRequest, from: string): Promise<HolderReply> {
    switch (req.op) {
      case 'claim': {
        if (req.owner !== from) return { ok: false, code: 'invalid', message: 'a claim must come from the claiming owner itself' }
        const before = await this.fence(req.workloadId)
        const refused = await this.admit(req.workloadId, req.epoch, req.owner)
        if (refused != null) return { ok: false, code: 'fenced', message: refused, head: await this.head(req.workloadId) }
        const set = before?.holders != null ? { set: { epoch: before.epoch, owner: before.owner, holders: before.holders, version: before.version ?? 0 } } : {}
        return { ok: true, head: { ...await this.head(req.workloadId), ...set } }
      }
      case 'append': {
        if (req.owner !== from) return { ok: false, code: 'invalid', message: 'entries must come from the owner itself' }
        const refused = await this.admit(req.workloadId, req.epoch, req.owner, req)
        if (refused != null) return { ok: false, code: 'fenced', message: refused }
        const head = await this.journal.head(req.workloadId)
        const have = head?.seq ?? 0
        const entries = req.entries.filter(e => e.seq > have)
        if (entries.length === 0 && (req.snapshot == null || req.snapshot.seq <= have)) return { ok: true, head: { seq: have, epoch: head?.epoch ?? 0, fence: req.epoch } }
        if (entries[0] != null && entries[0].seq !== have + 1) {
          return { ok: false, code: 'gap', message: `holding up to seq ${have}; got seq ${entries[0].seq}`, head: { seq: have, epoch: head?.epoch ?? 0, fence: req.epoch } }
        }
        const snapshot = req.snapshot != null && req.snapshot.seq > have ? req.snapshot as SnapshotRecord : undefined
        await this.journal.append(req.workloadId, entries as JournalEntry[], snapshot, have === 0 ? req.start as TraceEntry | undefined : undefined)
        const last = entries.at(-1)
        return { ok: true, head: { seq: last?.seq ?? have, epoch: last?.epoch ?? head?.epoch ?? 0, fence: req.epoch } }
      }
      case 'install': {
        if (req.owner !== from) return { ok: false, code: 'invalid', message: 'a copy must come from the owner itself' }
        const refused = await this.admit(req.workloadId, req.epoch, req.owner, req)
        if (refused != null) return { ok: false, code: 'fenced', message: refused }
        await this.journal.erase(req.workloadId, { keepTrace: true })
        if (req.snapshot != null) await this.journal.putSnapshot(req.workloadId, req.snapshot as SnapshotRecord)
        if (req.entries.length > 0) await this.journal.append(req.workloadId, req.entries as JournalEntry[])
        return { ok: true, head: await this.head(req.workloadId) }
      }
      case 'fetch': {
        const fence = (await this.fence(req.workloadId))?.epoch ?? 0
        try {
          const restored = await this.journal.restore(req.workloadId)
          if (restored == null) return { ok: true, head: { seq: 0, epoch: 0, fence }, entries: [] }
          const last = restored.entries.at(-1)
          const head = { seq: last?.seq ?? restored.snapshot?.seq ?? 0, epoch: last?.epoch ?? restored.snapshot?.epoch ?? 0, fence }
          return { ok: true, head, ...(restored.snapshot != null ? { snapshot: restored.snapshot } : {}), entries: restored.entries }
        } catch (err) {
          if (!(err instanceof CorruptJournalError)) throw err
          this.log.warn({ workload: req.workloadId, err: describeError(err) }, 'refusing to serve a corrupt journal copy')
          return { ok: false, code: 'corrupt', message: describeError(err) }
        }
      }
      case 'erase': {
        await this.erase(req.workloadId)
        return { ok: true, head: { seq: 0, epoch: 0, fence: 0 } }
      }
      case 'trace': {
        try {
          return { ok: true, head: { seq: 0, epoch: 0, fence: 0 }, trace: await this.journal.trace(req.workloadId, req.afterSeq ?? -1) }
        } catch (err) {
          if (!(err instanceof CorruptJournalError)) throw err
          return { ok: false, code: 'corrupt', message: describeError(err) }
        }
      }
    }
  }

  /** Removes this node's copy, fence and (unless `keepTrace`) trace of a workload. */
  async erase (workloadId: string, { keepTrace = false } = {}): Promise<void> {
    await this.journal.erase(workloadId, { keepTrace })
    await this.fences.del(workloadId)
  }

  /** Workload ids this node holds anything of (journal or fence). */
  async list (): Promise<string[]> {
    const ids = new Set(await this.journal.list())
    for await (const key of this.fences.keys()) ids.add(key)
    return [...ids]
  }
}
