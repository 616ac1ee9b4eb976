// longer than 700 lines: a stateful workload's whole owner pipeline (batch, journal, replicate, recover, route) in one class, to be split with the stateful plane (issue 18)
import { randomUUID } from 'node:crypto'
import type { NodeIsolation } from '../sandbox/confine.js'
import type { StateValue } from 'xstate'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeError } from '../errors.js'
import { guardians } from '../machines/placement.js'
import { SPONTANEOUS_SENDER, type JournalEntry, type SnapshotRecord, type TraceEntry, type WorkloadJournal } from '../store/journal.js'
import type { ArtifactService } from '../transport/artifacts.js'
import type { Logger } from '../transport/logger.js'
import type { MeshNode } from '../transport/mesh-node.js'
import { callRpc } from '../transport/rpc.js'
import { TrustError } from '../policy/errors.js'
import { artifactOf, type WorkloadSpec } from '../workloads/types.js'
import { EventNotHandledError, InvalidEventError, MachineFailedError, OwnerUnavailableError, WorkloadCompletedError } from '../actors/errors.js'
import { WorkloadNotFoundError } from '../actors/errors.js'
import { InvalidMachineEventError, SandboxStoppedError } from '../sandbox/errors.js'
import { MachineSandbox, type MachineState, type Transition } from '../sandbox/machine-sandbox.js'
import type { Inspection } from '../actors/inspection.js'
import type { StateHolder, HolderReply } from './state-holder.js'
import {
  Ack, LocationRecord, MachineEvent, SEND_PROTOCOL, SendReply, STATE_PROTOCOL, snapshotRecordKey, locationKey, traceTopic,
  type HolderHead, type MachineStateReport, type Refusal, type SendRequest, type StateRequest, type TransitionRecord
} from '../protocol/state.js'
import { encodeMessage } from '../protocol/messages.js'

/** How many other peers hold a copy of a `replicated` workload before an event is acknowledged. */
export const REPLICATION_FACTOR = 2
/** Most sends applied in one journal batch (one LevelDB write and one replication round). */
const MAX_BATCH = 256
/** Ids of acknowledged events remembered for de-duplication of retried sends. */
const DEDUP_WINDOW = 4096
/** Transitions kept in memory for `state` and `trace`. */
const RECENT = 100
/** Batches applied to the machine but not yet durable, at most (the pipeline's depth). */
const MAX_INFLIGHT_BATCHES = 4
/** Most peers asked for their copy when an owner resumes a workload. */
const MAX_CLAIMS = 16

/** What a snapshot record of a machine holds: the machine and the ids of the last acknowledged events. */
interface StoredSnapshot {
  machine: MachineState
  /** [event id, seq, state value] of recent acknowledged events, for de-duplication after a failover. */
  recent: Array<[string, number, unknown]>
}

interface Batch {
  entries: JournalEntry[]
  waiting: Array<{ p: PendingSend, entry: JournalEntry, t: Transition }>
  /** The machine after the batch's last transition. */
  last: Transition
  /** The batch takes the machine to its final state. */
  completes: boolean
  /** The batch's journal write, when issued ahead of the acknowledgement order. */
  durable?: Promise<void>
}

interface PendingSend {
  id: string
  event: MachineEvent
  sender?: string
  settle: (reply: SendReply) => void
}

/** A stateful workload this node owns. */
interface Owned {
  spec: WorkloadSpec
  epoch: number
  status: 'starting' | 'running' | 'stopped'
  startedAt: number
  sandbox?: MachineSandbox
  seq: number
  holders: string[]
  /** Raised at every change of `holders` within the epoch (ReplicaSet in src/protocol/state.ts). */
  setVersion: number
  last?: Transition
  queue: PendingSend[]
  /** Spontaneous transitions (timers, invoked actors) waiting for the next batch. */
  spontaneous: JournalEntry[]
  draining: boolean
  /** Seq of the last transition applied to the machine (durable or not); `seq` is the last durable one. */
  applied: number
  /** Batches being made durable, in order. */
  persisting: Promise<void>
  inflight: number
  /** Ids of sends applied but not yet durable, with later sends of the same id waiting on them. */
  pendingIds: Map<string, PendingSend[]>
  dedup: Map<string, Ack>
  recent: TransitionRecord[]
  lastSnapshotSeq: number
  completed: boolean
  ready: Promise<void>
  /** The trace's seq 0 (the machine's initial state), written with the workload's first batch. */
  start?: TraceEntry
}

export interface MachineHostInit {
  mesh: MeshNode
  artifacts: ArtifactService
  journal: WorkloadJournal
  holder: StateHolder
  log: Logger
  /** Live peers other than this node. */
  livePeers: () => string[]
  /** Where a workload's owner is believed to be, and whether the workload ended. */
  locate: (workloadId: string) => { owner?: string, epoch?: number, status?: string, output?: unknown, kind?: string } | undefined
  /** The workload's machine reached a final state (its state is erased here and on its holders right after). */
  onCompleted: (spec: WorkloadSpec, epoch: number, output: unknown) => void
  /** The machine failed (an action or guard threw); its last state stays readable. */
  onFailed?: (spec: WorkloadSpec, epoch: number, error: string) => void
  /** Called for each durable transition (local `trace` listeners). */
  onTransition?: (workloadId: string, t: TransitionRecord) => void
  /** A new location record (owner, epoch, holders) to tell the mesh about. */
  onLocation?: (loc: LocationRecord) => void
  /** Counts persisted transitions. */
  onPersisted?: (workloadId: string, count: number) => void
  /** The policy's word on a send: a reason when `sender` may not send to the workload. */
  forbidSend?: (spec: WorkloadSpec, sender: string | undefined) => string | undefined
  /** The node's inspector (`--inspect`): every machine's inspection events go to it. */
  inspection?: Inspection
  /** How sandboxes run workload code (confine.ts); default: confined where the host can confine. */
  isolation?: NodeIsolation
  /** Whether the workload is known (from its record or heartbeats) to have been placed at an epoch before `epoch`. */
  placedBefore?: (workloadId: string, epoch: number) => boolean
}

export class FencedError extends Error {
  constructor (workloadId: string, reason: string) {
    super(`${workloadId}: deposed: ${reason}`)
    this.name = 'FencedError'
  }
}

/**
 * The stateful plane of one node: owns the machines it was awarded (each in a
 * MachineSandbox), makes every transition durable before acknowledging it
 * (own journal + REPLICATION_FACTOR holders for `replicated`), resumes a
 * workload from the newest copy it can find when it is awarded one, and
 * routes sends from this node to whichever node owns a workload.
 */
export class MachineHost {
  private readonly owned = new Map<string, Owned>()
  private readonly locations = new Map<string, LocationRecord>()
  private readonly log: Logger
  private stopped = false

  constructor (private readonly init: MachineHostInit) {
    this.log = init.log.child({ component: 'machines' })
  }

  get selfId (): string {
    return this.init.mesh.peerId
  }

  // ---------------------------------------------------------------- ownership

  reports (): Array<{ workloadId: string, replica: number, epoch: number, status: 'starting' | 'running', handled: number, failures: number }> {
    return [...this.owned.values()].filter(o => o.status !== 'stopped').map(o => ({ workloadId: o.spec.id, replica: 0, epoch: o.epoch, status: o.status === 'running' ? 'running' : 'starting', handled: o.seq, failures: 0 }))
  }

  get (workloadId: string): { spec: WorkloadSpec, epoch: number, status: Owned['status'] } | undefined {
    const o = this.owned.get(workloadId)
    return o == null || o.status === 'stopped' ? undefined : { spec: o.spec, epoch: o.epoch, status: o.status }
  }

  list (): Array<{ spec: WorkloadSpec, epoch: number, status: Owned['status'] }> {
    return [...this.owned.values()].filter(o => o.status !== 'stopped').map(o => ({ spec: o.spec, epoch: o.epoch, status: o.status }))
  }

  noteLocation (loc: LocationRecord): void {
    const cur = this.locations.get(loc.workloadId)
    if (cur == null || loc.epoch > cur.epoch || (loc.epoch === cur.epoch && loc.ts >= cur.ts)) this.locations.set(loc.workloadId, loc)
  }

  location (workloadId: string): LocationRecord | undefined {
    return this.locations.get(workloadId)
  }

  /**
   * Takes ownership of a stateful workload at `epoch`: claims the epoch on the
   * peers (fencing the previous owner off its holders), restores the newest
   * copy it finds, picks holders and brings them up to date, then runs the
   * machine. Rejects if another owner holds a newer epoch, or if the copies
   * that could hold acknowledged events cannot be reached.
   */
  async start (spec: WorkloadSpec, epoch: number, hints: string[]): Promise<void> {
    const existing = this.owned.get(spec.id)
    if (existing != null && existing.status !== 'stopped' && existing.epoch >= epoch) { await existing.ready; return }
    if (existing != null) await this.stop(spec.id, { erase: false })
    let markReady!: () => void
    let markFailed!: (err: unknown) => void
    const ready = new Promise<void>((resolve, reject) => { markReady = resolve; markFailed = reject })
    ready.catch(() => {})
    const o: Owned = { spec, epoch, status: 'starting', startedAt: Date.now(), seq: 0, holders: [], setVersion: 0, queue: [], spontaneous: [], draining: false, applied: 0, persisting: Promise.resolve(), inflight: 0, pendingIds: new Map(), dedup: new Map(), recent: [], lastSnapshotSeq: 0, completed: false, ready }
    this.owned.set(spec.id, o)
    const t0 = Date.now()
    const phases: Record<string, number> = {}
    const mark = (name: string): void => { phases[name] = Date.now() - t0 }
    try {
      const artifactPath = await this.init.artifacts.ensure(artifactOf(spec).sha256, hints, { signal: AbortSignal.timeout(20_000) })
      mark('artifact')
      const { snapshot, entries, heads } = await this.recover(spec, epoch)
      mark('recovered')
      const stored = snapshot?.snapshot as StoredSnapshot | undefined
      // the node's inspector, if any: the machine shows as <workload id>@<node>
      const inspection = this.init.inspection
      const sandbox = new MachineSandbox({
        artifactPath,
        identity: { id: spec.id, name: spec.name, namespace: spec.namespace, replica: 0, nodeId: this.selfId, epoch },
        memoryLimitMb: spec.memoryLimitMb,
        timeoutMs: spec.timeoutMs,
        onSpontaneous: (event, t) => { this.onSpontaneous(o, event, t) },
        onLog: line => { this.log.info({ workload: spec.id, stream: line.stream }, line.message) },
        ...(inspection != null ? { onInspect: inspection.forward(spec.id) } : {}),
        ...(this.init.isolation != null ? { isolation: this.init.isolation } : {})
      })
      const lastTimers = entries.at(-1)?.timers as MachineState['timers'] | undefined
      const restore = stored != null || entries.length > 0
        ? { ...(stored != null ? { state: { persisted: stored.machine.persisted, timers: lastTimers ?? stored.machine.timers } } : {}), replay: entries.map(e => ({ event: e.event, ...(e.error != null ? { error: e.error } : {}) })), ...(lastTimers != null ? { timers: lastTimers } : {}) }
        : undefined
      o.last = await sandbox.start(restore)
      mark('sandbox')
      o.sandbox = sandbox
      o.seq = entries.at(-1)?.seq ?? snapshot?.seq ?? 0
      o.applied = o.seq
      o.lastSnapshotSeq = snapshot?.seq ?? 0
      if (o.seq === 0) {
        // seq 0 of the trace: here now, on the holders with the first batch
        o.start = { workloadId: spec.id, seq: 0, epoch, ts: Date.now(), owner: this.selfId, event: { type: 'xstate.init' }, value: o.last.value as StateValue, context: o.last.context, status: traceStatus(o.last) }
        await this.init.journal.append(spec.id, [], undefined, o.start)
      }
      for (const [id, seq, value] of stored?.recent ?? []) this.remember(o, { workloadId: spec.id, id, seq, epoch: snapshot?.epoch ?? epoch, owner: this.selfId, value, status: 'active' })
      for (const e of entries) {
        if (e.id != null) this.remember(o, { workloadId: spec.id, id: e.id, seq: e.seq, epoch: e.epoch, owner: this.selfId, value: e.state, status: 'active' })
        this.pushRecent(o, { seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, value: e.state, ...(e.sender != null ? { sender: e.sender } : {}), ...(e.id != null ? { id: e.id } : {}) })
      }
      if (spec.durability !== 'local') await this.chooseHolders(o, heads)
      mark('holders')
      if (this.owned.get(spec.id) !== o || o.status === 'stopped') throw new Error('stopped while starting')
      o.status = 'running'
      markReady()
      this.publishLocation(o)
      this.log.info({ workload: spec.id, epoch, seq: o.seq, holders: o.holders, ms: phases }, 'machine owned')
      if (o.last.status === 'done') void this.complete(o)
      void this.drain(o)
    } catch (err) {
      o.status = 'stopped'
      if (this.owned.get(spec.id) === o) this.owned.delete(spec.id)
      await o.sandbox?.stop().catch(() => {})
      this.refuseAll(o, { code: 'unavailable', message: `the owner could not start: ${describeError(err)}` })
      markFailed(err)
      throw err
    }
  }

  /** Stops owning a workload (fenced, deleted or shutting down). With `erase`, its journal here goes too. */
  async stop (workloadId: string, { erase = false }: { erase?: boolean } = {}): Promise<void> {
    const o = this.owned.get(workloadId)
    if (o != null) {
      o.status = 'stopped'
      this.owned.delete(workloadId)
      this.refuseAll(o, { code: 'not-owner', message: `${this.selfId} no longer owns ${workloadId}` })
      await o.sandbox?.stop().catch(() => {})
    }
    if (erase) await this.eraseLocal(workloadId)
  }

  async stopAll (): Promise<void> {
    this.stopped = true
    await Promise.all([...this.owned.keys()].map(async id => { await this.stop(id) }))
  }

  /** Removes this node's every trace of a workload's state: journal, fence, DHT copies. */
  async eraseLocal (workloadId: string): Promise<void> {
    await this.init.holder.erase(workloadId).catch(err => { this.log.warn({ workload: workloadId, err: describeError(err) }, 'could not erase the journal') })
    for (const key of [locationKey(workloadId), snapshotRecordKey(workloadId)]) {
      await this.init.mesh.deleteLocalRecord(key).catch(() => {})
    }
    this.locations.delete(workloadId)
  }

  private async recover (spec: WorkloadSpec, epoch: number): Promise<{ snapshot?: SnapshotRecord, entries: JournalEntry[], heads: Map<string, HolderHead> }> {
    const id = spec.id
    const previous = this.locations.get(id) ?? (epoch > 1 ? await this.locationFromDht(id) : undefined)
    const live = this.init.livePeers()
    const ranked = guardians(id, live, MAX_CLAIMS)
    const asked = [...new Set([...(previous?.holders ?? []).filter(p => p !== this.selfId), ...ranked])].filter(p => p !== this.selfId)
    // Fence our own copy first: from now on this node refuses older epochs too.
    const own = await this.init.holder.handle({ op: 'claim', workloadId: id, epoch, owner: this.selfId }, this.selfId)
    if (!own.ok) throw new FencedError(id, own.message)
    const heads = new Map<string, HolderHead>()
    const replies = await Promise.all(asked.map(async peer => {
      try {
        const { result } = await callRpc(this.init.mesh, peer, STATE_PROTOCOL, { op: 'claim', workloadId: id, epoch, owner: this.selfId } satisfies StateRequest, { timeoutMs: 3_000 })
        return { peer, reply: result as HolderReply }
      } catch (err) {
        this.log.debug({ workload: id, peer, err: describeError(err) }, 'claim not answered')
        return { peer, reply: undefined }
      }
    }))
    for (const { peer, reply } of replies) {
      if (reply == null) continue
      if (!reply.ok && reply.code === 'fenced') throw new FencedError(id, `${peer} refused epoch ${epoch}: ${reply.message}`)
      if (reply.ok) heads.set(peer, reply.head)
    }
    if (spec.durability !== 'local' && previous == null && epoch > 1 && (own.head.seq > 0 || [...heads.values()].some(h => h.seq > 0) || this.init.placedBefore?.(id, epoch) === true)) {
      // Taking over a workload that has run (copies exist, or it was placed before) with no word of who
      // held it last (neither gossip nor the DHT answered, e.g. just restarted, or cut off): the copies at
      // hand may be stale or none, and acknowledged events would be lost.
      throw new OwnerUnavailableError(id, `no location record of ${id} before epoch ${epoch}: its last replica set is unknown here, so it cannot be taken over safely yet`)
    }
    // The newest replica set known: the location record's, or a newer one a fenced holder was told of
    // (the record may not have reached this node: gossip lost, or a change just made).
    let last: { epoch: number, owner: string, holders: string[], version: number } | undefined = previous != null ? { epoch: previous.epoch, owner: previous.owner, holders: previous.holders, version: previous.setVersion ?? 0 } : undefined
    for (const h of [own.head, ...heads.values()]) {
      const s = h.set
      if (s == null || s.epoch >= epoch) continue
      if (last == null || s.epoch > last.epoch || (s.epoch === last.epoch && s.version > last.version)) last = s
    }
    if (spec.durability !== 'local' && last != null && last.holders.length > 0 && last.epoch < epoch) {
      // A majority of the last replica set (its owner and holders) must take this epoch's fence.
      // The old owner changes its holders only with one of them still answering, and tells the
      // ones it keeps before going on (see replicate), so any majority of the newest set includes
      // a node that knows every acknowledged event, and is fenced now: across a partition, the
      // side without such a majority cannot take over while the old owner may still acknowledge.
      const previous = last
      const group = [...new Set([previous.owner, ...previous.holders])]
      const fenced = group.filter(p => p === this.selfId || heads.has(p))
      const needed = Math.floor(group.length / 2) + 1
      if (fenced.length < needed) throw new OwnerUnavailableError(id, `reached ${fenced.length} of the ${group.length} nodes of epoch ${previous.epoch}'s replica set (${group.join(', ')}), ${needed} needed: taking over without a majority of it could run the workload twice`)
      // Every acknowledged event is on every holder of the last holder set: one sound copy
      // among them is needed (a holder that answers with a corrupt copy does not count).
      const sound = previous.holders.filter(p => p === this.selfId ? own.head.corrupt == null : heads.has(p) && heads.get(p)!.corrupt == null)
      if (sound.length === 0) throw new OwnerUnavailableError(id, `no sound copy from the holders of epoch ${previous.epoch} (${previous.holders.join(', ')}); resuming without one could lose acknowledged events`)
    }
    // Newest copy first: the highest epoch of its last entry, then the highest seq.
    const candidates: Array<{ peer: string, head: HolderHead }> = []
    if (own.head.corrupt == null && own.head.seq > 0) candidates.push({ peer: this.selfId, head: own.head })
    if (own.head.corrupt != null) this.log.warn({ workload: id, err: own.head.corrupt }, 'local journal copy is corrupt: recovering from a replicated copy instead')
    for (const [peer, head] of heads) if (head.corrupt == null && head.seq > 0) candidates.push({ peer, head })
    candidates.sort((a, b) => b.head.epoch - a.head.epoch || b.head.seq - a.head.seq || (a.peer === this.selfId ? -1 : b.peer === this.selfId ? 1 : 0))
    for (const c of candidates) {
      try {
        if (c.peer === this.selfId) {
          const restored = await this.init.journal.restore(id)
          if (restored != null) return { ...restored, heads }
          continue
        }
        const { result } = await callRpc(this.init.mesh, c.peer, STATE_PROTOCOL, { op: 'fetch', workloadId: id } satisfies StateRequest, { timeoutMs: 10_000 })
        const reply = result as HolderReply
        if (!reply.ok) { this.log.warn({ workload: id, peer: c.peer, err: reply.message }, 'copy refused'); continue }
        await this.adopt(id, reply.snapshot, reply.entries ?? [])
        return { ...(reply.snapshot != null ? { snapshot: reply.snapshot } : {}), entries: reply.entries ?? [], heads }
      } catch (err) {
        this.log.warn({ workload: id, peer: c.peer, err: describeError(err) }, 'could not read a copy; trying the next')
      }
    }
    if (own.head.corrupt != null) await this.init.holder.erase(id, { keepTrace: true })
    const fromDht = await this.snapshotFromDht(id, epoch)
    if (fromDht != null) {
      await this.adopt(id, fromDht, [])
      return { snapshot: fromDht, entries: [], heads }
    }
    return { entries: [], heads }
  }

  /** The location record from the DHT, for an owner-to-be that missed its gossip (it just joined). */
  private async locationFromDht (id: string, timeoutMs = 2_000): Promise<LocationRecord | undefined> {
    try {
      const rec = await this.init.mesh.getRecord(locationKey(id), { signal: AbortSignal.timeout(timeoutMs) })
      const loc = LocationRecord.safeParse(JSON.parse(new TextDecoder().decode(rec.value)))
      if (!loc.success || loc.data.owner !== rec.publisher || loc.data.workloadId !== id) return undefined
      this.noteLocation(loc.data)
      return loc.data
    } catch {
      return undefined
    }
  }

  /** Replaces this node's copy with `snapshot` + `entries` (fetched from a holder). */
  private async adopt (id: string, snapshot: SnapshotRecord | undefined, entries: JournalEntry[]): Promise<void> {
    await this.init.journal.erase(id, { keepTrace: true })
    if (snapshot != null) await this.init.journal.putSnapshot(id, snapshot)
    if (entries.length > 0) await this.init.journal.append(id, entries)
  }

  private async snapshotFromDht (id: string, epoch: number): Promise<SnapshotRecord | undefined> {
    try {
      const rec = await this.init.mesh.getRecord(snapshotRecordKey(id), { signal: AbortSignal.timeout(2_000) })
      const value = JSON.parse(new TextDecoder().decode(rec.value)) as { workloadId?: string, owner?: string, epoch?: number, seq?: number, ts?: number, snapshot?: unknown }
      if (value.workloadId !== id || value.owner !== rec.publisher || typeof value.epoch !== 'number' || typeof value.seq !== 'number' || value.epoch > epoch) {
        this.log.warn({ workload: id, publisher: rec.publisher }, 'refused a DHT snapshot record that is not its owner\'s')
        return undefined
      }
      return { seq: value.seq, epoch: value.epoch, ts: value.ts ?? 0, snapshot: value.snapshot }
    } catch {
      return undefined
    }
  }

  /** Picks REPLICATION_FACTOR holders among live peers (those already up to date first) and installs the copy on those behind. */
  private async chooseHolders (o: Owned, heads: Map<string, HolderHead>): Promise<void> {
    const exclude = new Set<string>([this.selfId])
    const chosen: string[] = []
    const ranked = guardians(o.spec.id, this.init.livePeers(), MAX_CLAIMS).filter(p => p !== this.selfId)
    const upToDate = ranked.filter(p => heads.get(p)?.seq === o.seq && heads.get(p)?.corrupt == null)
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
      const restored = await this.init.journal.restore(o.spec.id)
      const req: StateRequest = { op: 'install', workloadId: o.spec.id, epoch: o.epoch, owner: this.selfId, ...(restored?.snapshot != null ? { snapshot: restored.snapshot } : {}), entries: restored?.entries ?? [] }
      const { result } = await callRpc(this.init.mesh, peer, STATE_PROTOCOL, req, { timeoutMs: 10_000 })
      const reply = result as HolderReply
      if (!reply.ok && reply.code === 'fenced') throw new FencedError(o.spec.id, reply.message)
      return reply.ok
    } catch (err) {
      if (err instanceof FencedError) throw err
      this.log.debug({ workload: o.spec.id, peer, err: describeError(err) }, 'could not install a copy')
      return false
    }
  }

  private publishLocation (o: Owned): void {
    const loc: LocationRecord = { workloadId: o.spec.id, owner: this.selfId, epoch: o.epoch, holders: o.holders, setVersion: o.setVersion, seq: o.seq, ts: Date.now() }
    this.noteLocation(loc)
    this.init.onLocation?.(loc)
    this.init.mesh.putRecord(locationKey(o.spec.id), encodeMessage(loc), { signal: AbortSignal.timeout(10_000) }).catch(err => {
      this.log.debug({ workload: o.spec.id, err: describeError(err) }, 'location record put failed')
    })
  }

  // ---------------------------------------------------------------- events

  private remember (o: Owned, ack: Ack): void {
    o.dedup.set(ack.id, ack)
    if (o.dedup.size > DEDUP_WINDOW) o.dedup.delete(o.dedup.keys().next().value as string)
  }

  /** What a journal entry carries for the trace (the entry itself does not keep it). */
  private traceFields (t: Transition): Pick<JournalEntry, 'owner' | 'context' | 'status' | 'output'> {
    return { owner: this.selfId, context: t.context, status: traceStatus(t), ...(t.output !== undefined ? { output: t.output } : {}) }
  }

  private pushRecent (o: Owned, t: TransitionRecord): void {
    o.recent.push(t)
    if (o.recent.length > RECENT) o.recent.splice(0, o.recent.length - RECENT)
  }

  private refuseAll (o: Owned, refusal: Refusal): void {
    for (const p of o.queue.splice(0)) p.settle({ ok: false, refusal })
  }

  private onSpontaneous (o: Owned, event: unknown, t: Transition): void {
    if (o.status === 'stopped' || o.completed) return
    o.last = t
    o.spontaneous.push({ seq: 0, epoch: o.epoch, ts: Date.now(), event, sender: SPONTANEOUS_SENDER, state: t.value, timers: t.state.timers, ...(t.status === 'error' ? { error: t.error ?? 'the machine failed' } : {}), ...this.traceFields(t) })
    void this.drain(o)
  }

  /** Handles a send addressed to this node: applies it if this node owns the workload, else says who does. */
  async handleSend (req: SendRequest): Promise<SendReply> {
    const o = this.owned.get(req.workloadId)
    if (o == null || o.status === 'stopped') return { ok: false, refusal: this.notOwner(req.workloadId) }
    if (req.op === 'state' || req.op === 'machine') {
      await o.ready.catch(() => {})
      if (o.status !== 'running' || o.last == null) return { ok: false, refusal: { code: 'unavailable', message: `${req.workloadId} is starting on ${this.selfId}` } }
      if (req.op === 'machine') return { ok: true, machine: { workloadId: req.workloadId, definition: o.sandbox?.definition ?? null } }
      return { ok: true, state: this.report(o) }
    }
    const forbidden = this.init.forbidSend?.(o.spec, req.sender)
    if (forbidden != null) return { ok: false, refusal: { code: 'forbidden', message: forbidden } }
    const dup = o.dedup.get(req.id)
    if (dup != null) return { ok: true, ack: { ...dup, duplicate: true } }
    if (o.completed) return { ok: false, refusal: { code: 'completed', message: `${req.workloadId} has completed`, output: o.last?.output } }
    return await new Promise<SendReply>(resolve => {
      o.queue.push({ id: req.id, event: req.event, ...(req.sender != null ? { sender: req.sender } : {}), settle: resolve })
      void this.drain(o)
    })
  }

  private notOwner (workloadId: string): Refusal {
    const where = this.init.locate(workloadId)
    const loc = this.locations.get(workloadId)
    const owner = where?.owner ?? loc?.owner
    const epoch = where?.epoch ?? loc?.epoch
    return { code: 'not-owner', message: `${this.selfId} does not own ${workloadId}`, ...(owner != null && owner !== this.selfId ? { owner } : {}), ...(epoch != null ? { epoch } : {}) }
  }

  private report (o: Owned): MachineStateReport {
    const t = o.last!
    return {
      workloadId: o.spec.id,
      owner: this.selfId,
      epoch: o.epoch,
      seq: o.seq,
      value: t.value,
      context: t.context,
      status: t.status,
      ...(t.output !== undefined ? { output: t.output } : {}),
      ...(t.error != null ? { error: t.error } : {}),
      durability: o.spec.durability ?? 'replicated',
      holders: o.holders,
      recent: o.recent.slice(-20),
      startedAt: o.startedAt
    }
  }

  /**
   * The owner's loop, a two-stage pipeline: it applies queued sends to the
   * machine (stage 1) while the batch before is being made durable in its own
   * journal and on the holders (stage 2, one batch at a time, in order).
   * Senders are answered only when their batch is durable. Sends that arrive
   * meanwhile form the next batch (group commit). If a batch cannot be made
   * durable the owner steps down: nothing after it is acknowledged.
   */
  private async drain (o: Owned): Promise<void> {
    if (o.draining || o.status !== 'running') return
    o.draining = true
    try {
      while (o.status === 'running' && (o.queue.length > 0 || o.spontaneous.length > 0)) {
        if (o.inflight >= MAX_INFLIGHT_BATCHES) { await o.persisting; continue }
        const batch = await this.apply(o, o.queue.splice(0, MAX_BATCH))
        if (batch == null) continue
        o.inflight++
        // A local journal write is issued at once: the journal orders writes and lets
        // LevelDB sync several in one go. Replication goes batch after batch (holders
        // take entries in order). Either way, acknowledgements go out in order.
        if (o.spec.durability === 'local') {
          batch.durable = this.persist(o, batch.entries, batch.last)
          batch.durable.catch(() => {})
        }
        o.persisting = o.persisting.then(async () => { await this.commit(o, batch) })
        if (batch.completes) return
      }
    } finally {
      o.draining = false
    }
  }

  /**
   * Stage 1: applies sends to the machine in one round trip to its worker;
   * returns the journal entries (spontaneous steps in the order the machine
   * took them) and who waits on them.
   */
  private async apply (o: Owned, sends: PendingSend[]): Promise<Batch | undefined> {
    const entries: JournalEntry[] = []
    const waiting: Batch['waiting'] = []
    const takeSpontaneous = (): void => {
      for (const e of o.spontaneous.splice(0)) { e.seq = o.applied + entries.length + 1; entries.push(e) }
    }
    const toApply: PendingSend[] = []
    for (const p of sends) {
      if (o.completed) { p.settle({ ok: false, refusal: { code: 'completed', message: `${o.spec.id} has completed`, output: o.last?.output } }); continue }
      const dup = o.dedup.get(p.id)
      if (dup != null) { p.settle({ ok: true, ack: { ...dup, duplicate: true } }); continue }
      const inflight = o.pendingIds.get(p.id)
      if (inflight != null) { inflight.push(p); continue }
      o.pendingIds.set(p.id, [])
      toApply.push(p)
    }
    const refuse = (p: PendingSend, refusal: Refusal): void => {
      p.settle({ ok: false, refusal })
      for (const extra of o.pendingIds.get(p.id) ?? []) extra.settle({ ok: false, refusal })
      o.pendingIds.delete(p.id)
    }
    takeSpontaneous()
    if (toApply.length > 0) {
      await o.sandbox!.sendMany(toApply.map(p => p.event), (i, t) => {
        takeSpontaneous()
        const p = toApply[i]!
        if (t instanceof SandboxStoppedError) {
          // Stopped under the send (deposed by a newer epoch, or stopping): nothing was
          // applied here, so the sender re-routes to the owner and retries with the same id.
          refuse(p, this.notOwner(o.spec.id))
          return
        }
        if (t instanceof Error) {
          const code = t instanceof InvalidMachineEventError ? 'bad-event' : o.completed || o.last?.status === 'done' ? 'completed' : 'machine-error'
          refuse(p, { code, message: describeError(t), ...(code === 'completed' ? { output: o.last?.output } : {}) })
          return
        }
        if (!t.handled) {
          refuse(p, { code: 'not-handled', message: `${o.spec.id} in state ${JSON.stringify(t.value)} does not handle ${JSON.stringify(p.event.type)}`, value: t.value })
          return
        }
        o.last = t
        const entry: JournalEntry = { seq: o.applied + entries.length + 1, epoch: o.epoch, ts: Date.now(), event: p.event, id: p.id, state: t.value, timers: t.state.timers, ...(p.sender != null ? { sender: p.sender } : {}), ...(t.status === 'error' ? { error: t.error ?? 'the machine failed' } : {}), ...this.traceFields(t) }
        entries.push(entry)
        waiting.push({ p, entry, t })
        if (t.status === 'done') o.completed = true
      })
    }
    takeSpontaneous()
    if (entries.length === 0) return undefined
    o.applied = entries.at(-1)!.seq
    return { entries, waiting, last: o.last!, completes: o.completed }
  }

  /** Stage 2: makes a batch durable, then acknowledges it. */
  private async commit (o: Owned, batch: Batch): Promise<void> {
    try {
      if (o.status !== 'running') throw new Error(`${this.selfId} no longer owns ${o.spec.id}`)
      await (batch.durable ?? this.persist(o, batch.entries, batch.last))
    } catch (err) {
      const refusal: Refusal = { code: 'unavailable', message: `not acknowledged: ${describeError(err)}` }
      for (const w of batch.waiting) {
        w.p.settle({ ok: false, refusal })
        for (const extra of o.pendingIds.get(w.p.id) ?? []) extra.settle({ ok: false, refusal })
        o.pendingIds.delete(w.p.id)
      }
      if (o.status === 'running') {
        this.log.warn({ workload: o.spec.id, err: describeError(err) }, 'a batch could not be made durable: stepping down')
        await this.stop(o.spec.id)
      }
      return
    } finally {
      o.inflight--
    }
    o.seq = batch.entries.at(-1)!.seq
    for (const e of batch.entries) {
      const rec: TransitionRecord = { seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, value: e.state, ...(e.sender != null ? { sender: e.sender } : {}), ...(e.id != null ? { id: e.id } : {}) }
      this.pushRecent(o, rec)
      this.emitTrace(o, rec)
    }
    this.init.onPersisted?.(o.spec.id, batch.entries.length)
    for (const w of batch.waiting) {
      const ack: Ack = { workloadId: o.spec.id, id: w.p.id, seq: w.entry.seq, epoch: o.epoch, owner: this.selfId, value: w.t.value, status: w.t.status, ...(w.t.output !== undefined ? { output: w.t.output } : {}) }
      this.remember(o, ack)
      w.p.settle({ ok: true, ack })
      for (const extra of o.pendingIds.get(w.p.id) ?? []) extra.settle({ ok: true, ack: { ...ack, duplicate: true } })
      o.pendingIds.delete(w.p.id)
    }
    if (batch.completes) { await this.complete(o); return }
    if (batch.last.status === 'error') this.init.onFailed?.(o.spec, o.epoch, batch.last.error ?? 'the machine failed')
    void this.drain(o)
  }

  /** Journals `entries` here and on the holders; resolves once durable as the workload's durability requires. */
  private async persist (o: Owned, entries: JournalEntry[], last: Transition): Promise<void> {
    const first = entries[0]!.seq
    const lastSeq = entries.at(-1)!.seq
    const every = o.spec.snapshotEvery ?? 100
    const snapshotDue = Math.floor(lastSeq / every) > Math.floor((first - 1) / every) || last.status === 'done'
    const snapshot: SnapshotRecord | undefined = snapshotDue
      ? { seq: lastSeq, epoch: o.epoch, ts: Date.now(), snapshot: { machine: last.state, recent: [...[...o.dedup.values()].slice(-256).map((a): [string, number, unknown] => [a.id, a.seq, a.value]), ...entries.filter(e => e.id != null).map((e): [string, number, unknown] => [e.id!, e.seq, e.state])] } satisfies StoredSnapshot }
      : undefined
    const start = first === 1 ? o.start : undefined
    const local = this.init.journal.append(o.spec.id, entries, snapshot, start)
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
    // side of a partition, where the others can take over with those holders (see recover).
    if (keep.length === 0) throw new OwnerUnavailableError(o.spec.id, `no holder of ${o.spec.id} (${o.holders.join(', ')}) took the batch: this owner may be cut off from them, so it cannot choose new ones`)
    await this.init.journal.head(o.spec.id) // the local append of this batch runs in parallel; install reads after it
    const candidates = guardians(o.spec.id, this.init.livePeers(), MAX_CLAIMS).filter(p => p !== this.selfId && !o.holders.includes(p))
    for (const peer of candidates) {
      if (ok >= REPLICATION_FACTOR) break
      // the local journal must contain this batch before a copy is installed
      await sleepUntilLocal(this.init.journal, o.spec.id, entries.at(-1)!.seq)
      if (await this.install(o, peer)) { keep.push(peer); ok++ }
    }
    o.holders = keep
    o.setVersion++
    this.log.warn({ workload: o.spec.id, lost, holders: keep, setVersion: o.setVersion }, 'holder set changed')
    // The holders kept must know the new set before anything is acknowledged under it: a claimer
    // that fences them with an older idea of the set then learns of the newer one from them (and
    // needs a majority of it), or fenced them first, and this owner stops here (FencedError).
    const told = { ...req, holders: o.holders, setVersion: o.setVersion }
    const keptTold = await Promise.all(kept.map(async peer => await this.appendTo(o, peer, told)))
    if (keptTold.some(t => !t)) throw new OwnerUnavailableError(o.spec.id, `a holder of ${o.spec.id} did not take the new holder set`)
    this.publishLocation(o)
    if (ok < REPLICATION_FACTOR) throw new OwnerUnavailableError(o.spec.id, `only ${ok} of ${REPLICATION_FACTOR} holders took the transition`)
  }

  private async appendTo (o: Owned, peer: string, req: StateRequest): Promise<boolean> {
    try {
      const { result } = await callRpc(this.init.mesh, peer, STATE_PROTOCOL, req, { timeoutMs: 5_000 })
      const reply = result as HolderReply
      if (reply.ok) return true
      if (reply.code === 'fenced') throw new FencedError(o.spec.id, `${peer}: ${reply.message}`)
      if (reply.code === 'gap') {
        await sleepUntilLocal(this.init.journal, o.spec.id, (req as { entries: JournalEntry[] }).entries.at(-1)!.seq)
        return await this.install(o, peer)
      }
      return false
    } catch (err) {
      if (err instanceof FencedError) throw err
      this.log.debug({ workload: o.spec.id, peer, err: describeError(err) }, 'holder did not take a batch')
      return false
    }
  }

  private dhtPut?: Promise<void>
  private putDhtSnapshot (o: Owned, snapshot: SnapshotRecord): void {
    if (this.dhtPut != null) return
    const value = { workloadId: o.spec.id, owner: this.selfId, epoch: snapshot.epoch, seq: snapshot.seq, ts: snapshot.ts, snapshot: snapshot.snapshot }
    this.dhtPut = this.init.mesh.putRecord(snapshotRecordKey(o.spec.id), encodeMessage(value), { signal: AbortSignal.timeout(10_000) })
      .then(() => {}, err => { this.log.debug({ workload: o.spec.id, err: describeError(err) }, 'snapshot record put failed') })
      .finally(() => { this.dhtPut = undefined })
  }

  private emitTrace (o: Owned, t: TransitionRecord): void {
    this.init.onTransition?.(o.spec.id, t)
    const topic = traceTopic(o.spec.id)
    if (this.init.mesh.topicPeers(topic).length === 0) return
    this.init.mesh.publish(topic, encodeMessage({ id: `${o.spec.id}#${t.seq}`, data: { workloadId: o.spec.id, owner: this.selfId, ...t }, ts: Date.now() })).catch(() => {})
  }

  /** Final state: report the output, then erase the state here, on the holders and in the DHT. */
  private async complete (o: Owned): Promise<void> {
    const output = o.last?.output
    this.log.info({ workload: o.spec.id, seq: o.seq }, 'machine reached a final state')
    const holders = o.holders
    await this.dhtPut // a snapshot put still in flight would land after the records are dropped
    // The record says Completed before this node's heartbeats stop reporting the machine: else a
    // guardian could take the missing replica for a failure and start the machine afresh elsewhere.
    this.init.onCompleted(o.spec, o.epoch, output)
    await this.stop(o.spec.id, { erase: true })
    await Promise.all(holders.map(async peer => {
      await callRpc(this.init.mesh, peer, STATE_PROTOCOL, { op: 'erase', workloadId: o.spec.id, epoch: o.epoch } satisfies StateRequest, { timeoutMs: 5_000 }).catch(() => {})
    }))
  }

  // ---------------------------------------------------------------- routing (sender side)

  /**
   * Sends an event to a stateful workload wherever its owner is, and resolves
   * with the acknowledgement. Follows `not-owner` redirects, and while the
   * owner is unreachable (failing over) retries until `timeoutMs`. The same
   * `id` is used on every retry, so the event is applied at most once.
   */
  async send (workloadId: string, event: unknown, { id = randomUUID(), sender = this.selfId, timeoutMs = 15_000 }: { id?: string, sender?: string, timeoutMs?: number } = {}): Promise<Ack> {
    const parsed = MachineEvent.safeParse(event)
    if (!parsed.success) throw new InvalidEventError(typeof event === 'object' && event !== null ? 'an event needs a string "type"' : `an event is a JSON object with a string "type", got ${JSON.stringify(event)}`)
    const reply = await this.route(workloadId, { op: 'send', workloadId, id, event: parsed.data, sender }, timeoutMs)
    if ('ack' in reply) return reply.ack
    throw new Error('unexpected reply')
  }

  /**
   * A workload's whole trace, gathered from this node and every live peer
   * (the owner and holders of each epoch each keep what they journaled), so
   * it continues across failovers: see mergeTraces.
   */
  async trace (workloadId: string, { timeoutMs = 5_000 } = {}): Promise<{ records: TraceEntry[], sources: number }> {
    const lists: TraceEntry[][] = [await this.init.journal.trace(workloadId)]
    const peers = this.init.livePeers().slice(0, 64)
    const replies = await Promise.all(peers.map(async peer => {
      try {
        const { result } = await callRpc(this.init.mesh, peer, STATE_PROTOCOL, { op: 'trace', workloadId } satisfies StateRequest, { timeoutMs })
        const reply = result as HolderReply
        return reply.ok ? reply.trace ?? [] : []
      } catch (err) {
        this.log.debug({ workload: workloadId, peer, err: describeError(err) }, 'a peer did not return its trace records')
        return []
      }
    }))
    lists.push(...replies)
    return { records: mergeTraces(lists.flat()), sources: lists.filter(l => l.length > 0).length }
  }

  async state (workloadId: string, { timeoutMs = 10_000 } = {}): Promise<MachineStateReport> {
    const reply = await this.route(workloadId, { op: 'state', workloadId }, timeoutMs)
    if ('state' in reply) return reply.state
    throw new Error('unexpected reply')
  }

  /** The machine's definition (statechart JSON, `machine.toJSON()`), from its owner; null if it has none to show. */
  async definition (workloadId: string, { timeoutMs = 10_000 } = {}): Promise<{ workloadId: string, definition: unknown }> {
    const reply = await this.route(workloadId, { op: 'machine', workloadId }, timeoutMs)
    if ('machine' in reply) return reply.machine
    throw new Error('unexpected reply')
  }

  private async route (workloadId: string, req: SendRequest, timeoutMs: number): Promise<Extract<SendReply, { ok: true }>> {
    const deadline = Date.now() + timeoutMs
    let hint: string | undefined
    let lastProblem = 'no owner known yet'
    /** Owners that did not answer during this send. */
    const unreachable = new Set<string>()
    let delay = 50
    while (true) {
      const where = this.init.locate(workloadId)
      if (where == null) throw new WorkloadNotFoundError(workloadId)
      if (where.kind != null && where.kind !== 'stateful') throw new InvalidEventError(`${workloadId} is a ${where.kind} workload; events go to stateful workloads (publish to its topics instead)`)
      if (where.status === 'Completed') throw new WorkloadCompletedError(workloadId, where.output)
      let owner = hint ?? (this.owned.has(workloadId) ? this.selfId : where.owner ?? this.locations.get(workloadId)?.owner)
      hint = undefined
      if (owner != null && unreachable.has(owner)) {
        // This node may not have heard of the failover yet (no direct connection to the
        // lost owner, or it has just joined): the new owner's location record tells.
        const fresh = await this.locationFromDht(workloadId, 1_000)
        if (fresh != null) owner = fresh.owner
        unreachable.delete(owner)
      }
      let reply: SendReply | undefined
      if (owner === this.selfId) {
        reply = await this.handleSend(req)
      } else if (owner != null) {
        try {
          const { result } = await callRpc(this.init.mesh, owner, SEND_PROTOCOL, req, { timeoutMs: Math.max(1_000, Math.min(10_000, deadline - Date.now())) })
          const parsed = SendReply.safeParse(result)
          if (!parsed.success) throw new Error('malformed reply')
          reply = parsed.data
        } catch (err) {
          lastProblem = `owner ${owner}: ${describeError(err)}`
          unreachable.add(owner)
        }
      }
      if (reply?.ok === true) return reply
      if (reply != null && !reply.ok) {
        const r = reply.refusal
        switch (r.code) {
          case 'not-owner':
            lastProblem = r.message
            if (r.owner != null && r.owner !== owner) { hint = r.owner; continue }
            break
          case 'unavailable':
            lastProblem = r.message
            break
          case 'not-handled': throw new EventNotHandledError(workloadId, r.message, r.value)
          case 'completed': throw new WorkloadCompletedError(workloadId, r.output)
          case 'unknown-workload': throw new WorkloadNotFoundError(workloadId)
          case 'bad-event': throw new InvalidEventError(r.message)
          case 'machine-error': throw new MachineFailedError(workloadId, r.message)
          case 'forbidden': throw new TrustError('denied', r.message)
        }
      }
      if (Date.now() + delay > deadline) throw new OwnerUnavailableError(workloadId, `no owner answered within ${timeoutMs} ms (${lastProblem})`)
      await sleep(delay)
      delay = Math.min(200, delay * 2)
    }
  }
}

/** Waits (briefly) until the local journal has reached `seq`: an install must carry the batch being persisted. */
async function sleepUntilLocal (journal: WorkloadJournal, id: string, seq: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const head = await journal.head(id)
    if ((head?.seq ?? 0) >= seq) return
    await sleep(5)
  }
}

function traceStatus (t: Transition): TraceEntry['status'] {
  return t.status === 'done' || t.status === 'error' ? t.status : 'active'
}

/**
 * One trace from the records several nodes hold. For each seq the record of
 * the highest epoch wins (an owner deposed mid-batch may have journaled a
 * step its successor redid), and the trace ends where epochs would go down
 * or a seq is missing after the newest epoch's first record (steps only a
 * deposed owner wrote after its successor took over were never acknowledged).
 * A gap before that point cuts the trace to what follows it: a trace starts
 * wherever its records are contiguous up to the newest one.
 */
export function mergeTraces (records: TraceEntry[]): TraceEntry[] {
  const best = new Map<number, TraceEntry>()
  for (const r of records) {
    const have = best.get(r.seq)
    if (have == null || r.epoch > have.epoch) best.set(r.seq, r)
  }
  const sorted = [...best.values()].sort((a, b) => a.seq - b.seq)
  const out: TraceEntry[] = []
  for (const r of sorted) {
    const prev = out.at(-1)
    if (prev != null && r.epoch < prev.epoch) break
    if (prev != null && r.seq !== prev.seq + 1) out.length = 0
    out.push(r)
  }
  return out
}
