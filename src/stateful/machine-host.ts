import type { NodeIsolation } from '../sandbox/confine.js'
import type { StateValue } from 'xstate'
import { describeError } from '../errors.js'
import { SPONTANEOUS_SENDER, type JournalEntry, type TraceEntry } from '../store/journal.js'
import type { Logger } from '../transport/logger.js'
import { MeshNode } from '../transport/mesh-node.js'
import { artifactOf, type WorkloadSpec } from '../workloads/types.js'
import { InvalidMachineEventError, SandboxStoppedError } from '../sandbox/errors.js'
import { MachineSandbox, type MachineSandboxInit, type MachineState, type Transition } from '../sandbox/machine-sandbox.js'
import type { Inspection } from '../actors/inspection.js'
import { canApply, initialOwnerPipeline, next as nextPipeline, type OwnerEffect, type OwnerPipelineEvent } from '../machines/owner-pipeline.js'
import { rpcPeers, traceStatus, type ArtifactSource, type Batch, type LocalHolder, type MachineRunner, type Owned, type PendingSend, type StatefulComponents, type StatefulJournal, type StatefulMesh, type StatePeers, type StoredSnapshot } from './owner.js'
import { Replication } from './replication.js'
import { Locations, Recovery } from './recovery.js'
import { Routing, type Locate } from './routing.js'
import {
  type Ack, type LocationRecord, locationKey, snapshotRecordKey, traceTopic,
  type MachineStateReport, type Refusal, type SendReply, type SendRequest, type StateRequest, type TransitionRecord
} from '../protocol/state.js'
import { encodeMessage } from '../protocol/messages.js'

export { FencedError, REPLICATION_FACTOR } from './owner.js'
export { mergeTraces } from './routing.js'

/** Most sends applied in one journal batch (one LevelDB write and one replication round). */
const MAX_BATCH = 256
/** Ids of acknowledged events remembered for de-duplication of retried sends. */
const DEDUP_WINDOW = 4096
/** Transitions kept in memory for `state` and `trace`. */
const RECENT = 100

/**
 * What a MachineHost is built from. A node gives it its MeshNode,
 * ArtifactService, WorkloadJournal and StateHolder; the narrower interfaces
 * let a test give it in-memory ones (with `peers` and `sandboxes`).
 */
export interface MachineHostInit {
  /** The node's mesh; without `peers`, a MeshNode (requests to other nodes go over its streams). */
  mesh: StatefulMesh
  artifacts: ArtifactSource
  journal: StatefulJournal
  holder: LocalHolder
  log: Logger
  /** Live peers other than this node. */
  livePeers: () => string[]
  /** Where a workload's owner is believed to be, and whether the workload ended. */
  locate: Locate
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
  /** How requests reach other nodes' stateful planes; default: the mesh's request/response streams. */
  peers?: StatePeers
  /** Makes the sandbox of an owned machine; default: a MachineSandbox (a worker thread or a confined process). */
  sandboxes?: (init: MachineSandboxInit) => MachineRunner
}

/** The requests to other nodes over the mesh's streams, which only a MeshNode has. */
function defaultPeers (mesh: StatefulMesh): StatePeers {
  if (mesh instanceof MeshNode) return rpcPeers(mesh)
  throw new TypeError('MachineHost: without `peers`, `mesh` must be a MeshNode')
}

/**
 * The stateful plane of one node: owns the machines it was awarded (each in a
 * MachineSandbox), makes every transition durable before acknowledging it
 * (own journal + REPLICATION_FACTOR holders for `replicated`, replication.ts),
 * resumes a workload from the newest copy it can find when it is awarded one
 * (recovery.ts), and routes sends from this node to whichever node owns a
 * workload (routing.ts). The owner pipeline's states and transitions are in
 * src/machines/owner-pipeline.ts; this class runs the effects it asks for.
 */
export class MachineHost {
  private readonly owned = new Map<string, Owned>()
  private readonly locations = new Locations()
  private readonly log: Logger
  private readonly components: StatefulComponents
  private readonly replication: Replication
  private readonly recovery: Recovery
  private readonly routing: Routing

  constructor (private readonly init: MachineHostInit) {
    this.log = init.log.child({ component: 'machines' })
    this.components = { mesh: init.mesh, peers: init.peers ?? defaultPeers(init.mesh), journal: init.journal, holder: init.holder, log: this.log, livePeers: init.livePeers }
    this.replication = new Replication(this.components, { publishLocation: o => { this.publishLocation(o) } })
    this.recovery = new Recovery(this.components, { locations: this.locations, ...(init.placedBefore != null ? { placedBefore: init.placedBefore } : {}) })
    this.routing = new Routing(this.components, {
      locations: this.locations,
      locate: init.locate,
      owns: id => this.owned.has(id),
      handleLocally: async req => await this.handleSend(req),
      locationFromDht: async (id, timeoutMs) => await this.recovery.locationFromDht(id, timeoutMs)
    })
  }

  get selfId (): string {
    return this.init.mesh.peerId
  }

  // ---------------------------------------------------------------- ownership

  reports (): Array<{ workloadId: string, replica: number, epoch: number, status: 'starting' | 'running', handled: number, failures: number }> {
    return this.live().map(o => ({ workloadId: o.spec.id, replica: 0, epoch: o.epoch, status: o.pipeline.phase === 'running' ? 'running' : 'starting', handled: o.pipeline.durable, failures: 0 }))
  }

  get (workloadId: string): { spec: WorkloadSpec, epoch: number, status: 'starting' | 'running' | 'stopped' } | undefined {
    const o = this.owned.get(workloadId)
    return o == null || o.pipeline.phase === 'stopped' ? undefined : { spec: o.spec, epoch: o.epoch, status: o.pipeline.phase }
  }

  list (): Array<{ spec: WorkloadSpec, epoch: number, status: 'starting' | 'running' | 'stopped' }> {
    return this.live().map(o => ({ spec: o.spec, epoch: o.epoch, status: o.pipeline.phase }))
  }

  private live (): Owned[] {
    return [...this.owned.values()].filter(o => o.pipeline.phase !== 'stopped')
  }

  noteLocation (loc: LocationRecord): void {
    this.locations.note(loc)
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
    if (existing != null && existing.pipeline.phase !== 'stopped' && existing.epoch >= epoch) { await existing.ready; return }
    if (existing != null) await this.stop(spec.id, { erase: false })
    let markReady!: () => void
    let markFailed!: (err: unknown) => void
    const ready = new Promise<void>((resolve, reject) => { markReady = resolve; markFailed = reject })
    ready.catch(() => {})
    const o: Owned = { spec, epoch, pipeline: initialOwnerPipeline, startedAt: Date.now(), holders: [], setVersion: 0, queue: [], spontaneous: [], persisting: Promise.resolve(), pendingIds: new Map(), dedup: new Map(), recent: [], lastSnapshotSeq: 0, ready }
    this.owned.set(spec.id, o)
    const t0 = Date.now()
    const phases: Record<string, number> = {}
    const mark = (name: string): void => { phases[name] = Date.now() - t0 }
    try {
      const artifactPath = await this.init.artifacts.ensure(artifactOf(spec).sha256, hints, { signal: AbortSignal.timeout(20_000) })
      mark('artifact')
      const { snapshot, entries, heads } = await this.recovery.recover(spec, epoch)
      mark('recovered')
      // The snapshot record's payload is what Replication.persist stored: a StoredSnapshot.
      const stored = snapshot?.snapshot as StoredSnapshot | undefined
      // the node's inspector, if any: the machine shows as <workload id>@<node>
      const inspection = this.init.inspection
      const sandboxInit: MachineSandboxInit = {
        artifactPath,
        identity: { id: spec.id, name: spec.name, namespace: spec.namespace, replica: 0, nodeId: this.selfId, epoch },
        memoryLimitMb: spec.memoryLimitMb,
        timeoutMs: spec.timeoutMs,
        onSpontaneous: (event, t) => { this.onSpontaneous(o, event, t) },
        onLog: line => { this.log.info({ workload: spec.id, stream: line.stream }, line.message) },
        ...(inspection != null ? { onInspect: inspection.forward(spec.id) } : {}),
        ...(this.init.isolation != null ? { isolation: this.init.isolation } : {})
      }
      const sandbox = this.init.sandboxes?.(sandboxInit) ?? new MachineSandbox(sandboxInit)
      const lastTimers = entries.at(-1)?.timers as MachineState['timers'] | undefined
      const restore = stored != null || entries.length > 0
        ? { ...(stored != null ? { state: { persisted: stored.machine.persisted, timers: lastTimers ?? stored.machine.timers } } : {}), replay: entries.map(e => ({ event: e.event, ...(e.error != null ? { error: e.error } : {}) })), ...(lastTimers != null ? { timers: lastTimers } : {}) }
        : undefined
      o.last = await sandbox.start(restore)
      mark('sandbox')
      o.sandbox = sandbox
      const seq = entries.at(-1)?.seq ?? snapshot?.seq ?? 0
      this.dispatch(o, { type: 'owner.restored', seq })
      o.lastSnapshotSeq = snapshot?.seq ?? 0
      if (seq === 0) {
        // seq 0 of the trace: here now, on the holders with the first batch
        o.start = { workloadId: spec.id, seq: 0, epoch, ts: Date.now(), owner: this.selfId, event: { type: 'xstate.init' }, value: o.last.value as StateValue, context: o.last.context, status: traceStatus(o.last) }
        await this.init.journal.append(spec.id, [], undefined, o.start)
      }
      for (const [id, seq, value] of stored?.recent ?? []) this.remember(o, { workloadId: spec.id, id, seq, epoch: snapshot?.epoch ?? epoch, owner: this.selfId, value, status: 'active' })
      for (const e of entries) {
        if (e.id != null) this.remember(o, { workloadId: spec.id, id: e.id, seq: e.seq, epoch: e.epoch, owner: this.selfId, value: e.state, status: 'active' })
        this.pushRecent(o, { seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, value: e.state, ...(e.sender != null ? { sender: e.sender } : {}), ...(e.id != null ? { id: e.id } : {}) })
      }
      if (spec.durability !== 'local') await this.replication.chooseHolders(o, heads, seq)
      mark('holders')
      if (this.owned.get(spec.id) !== o || o.pipeline.phase === 'stopped') throw new Error('stopped while starting')
      const effects = this.dispatch(o, { type: 'owner.started', final: o.last.status === 'done' })
      markReady()
      this.log.info({ workload: spec.id, epoch, seq, holders: o.holders, ms: phases }, 'machine owned')
      this.run(o, effects)
    } catch (err) {
      this.dispatch(o, { type: 'owner.stopped' })
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
      this.dispatch(o, { type: 'owner.stopped' })
      this.owned.delete(workloadId)
      this.refuseAll(o, { code: 'not-owner', message: `${this.selfId} no longer owns ${workloadId}` })
      await o.sandbox?.stop().catch(() => {})
    }
    if (erase) await this.eraseLocal(workloadId)
  }

  async stopAll (): Promise<void> {
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

  private publishLocation (o: Owned): void {
    const loc: LocationRecord = { workloadId: o.spec.id, owner: this.selfId, epoch: o.epoch, holders: o.holders, setVersion: o.setVersion, seq: o.pipeline.durable, ts: Date.now() }
    this.noteLocation(loc)
    this.init.onLocation?.(loc)
    this.init.mesh.putRecord(locationKey(o.spec.id), encodeMessage(loc), { signal: AbortSignal.timeout(10_000) }).catch(err => {
      this.log.debug({ workload: o.spec.id, err: describeError(err) }, 'location record put failed')
    })
  }

  // ---------------------------------------------------------------- the owner pipeline

  /** Moves `o`'s pipeline by `event` (src/machines/owner-pipeline.ts) and returns the effects it asks for. */
  private dispatch (o: Owned, event: OwnerPipelineEvent): OwnerEffect[] {
    const { state, effects } = nextPipeline(o.pipeline, event)
    o.pipeline = state
    return effects
  }

  /**
   * Runs the effects that need nothing but the workload (a batch's
   * `acknowledge`, `refuse` and `stepDown` are run by `commit`, which has the batch).
   */
  private run (o: Owned, effects: OwnerEffect[]): void {
    for (const effect of effects) {
      switch (effect.type) {
        case 'publishLocation': this.publishLocation(o); break
        case 'drain': void this.drain(o); break
        case 'complete': void this.complete(o); break
        case 'reportFailure': this.init.onFailed?.(o.spec, o.epoch, o.last?.error ?? 'the machine failed'); break
        case 'acknowledge': case 'refuse': case 'stepDown': break
      }
    }
  }

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
    if (o.pipeline.phase === 'stopped' || o.pipeline.completed) return
    o.last = t
    o.spontaneous.push({ seq: 0, epoch: o.epoch, ts: Date.now(), event, sender: SPONTANEOUS_SENDER, state: t.value, timers: t.state.timers, ...(t.status === 'error' ? { error: t.error ?? 'the machine failed' } : {}), ...this.traceFields(t) })
    void this.drain(o)
  }

  /** Handles a send addressed to this node: applies it if this node owns the workload, else says who does. */
  async handleSend (req: SendRequest): Promise<SendReply> {
    const o = this.owned.get(req.workloadId)
    if (o == null || o.pipeline.phase === 'stopped') return { ok: false, refusal: this.notOwner(req.workloadId) }
    if (req.op === 'state' || req.op === 'machine') {
      await o.ready.catch(() => {})
      if (o.pipeline.phase !== 'running' || o.last == null) return { ok: false, refusal: { code: 'unavailable', message: `${req.workloadId} is starting on ${this.selfId}` } }
      if (req.op === 'machine') return { ok: true, machine: { workloadId: req.workloadId, definition: o.sandbox?.definition ?? null } }
      return { ok: true, state: this.report(o) }
    }
    const forbidden = this.init.forbidSend?.(o.spec, req.sender)
    if (forbidden != null) return { ok: false, refusal: { code: 'forbidden', message: forbidden } }
    const dup = o.dedup.get(req.id)
    if (dup != null) return { ok: true, ack: { ...dup, duplicate: true } }
    if (o.pipeline.completed) return { ok: false, refusal: { code: 'completed', message: `${req.workloadId} has completed`, output: o.last?.output } }
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
      seq: o.pipeline.durable,
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
    const before = o.pipeline
    this.dispatch(o, { type: 'drain.started' })
    if (o.pipeline === before) return // a loop is running already, or the owner is not running
    try {
      while (o.pipeline.phase === 'running' && (o.queue.length > 0 || o.spontaneous.length > 0)) {
        if (!canApply(o.pipeline)) { await o.persisting; continue }
        const batch = await this.apply(o, o.queue.splice(0, MAX_BATCH))
        if (batch == null) continue
        this.dispatch(o, { type: 'batch.applied', lastSeq: batch.entries.at(-1)!.seq })
        // A local journal write is issued at once: the journal orders writes and lets
        // LevelDB sync several in one go. Replication goes batch after batch (holders
        // take entries in order). Either way, acknowledgements go out in order.
        if (o.spec.durability === 'local') {
          batch.durable = this.replication.persist(o, batch.entries, batch.last)
          batch.durable.catch(() => {})
        }
        o.persisting = o.persisting.then(async () => { await this.commit(o, batch) })
        if (batch.completes) return
      }
    } finally {
      this.dispatch(o, { type: 'drain.ended' })
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
    const applied = o.pipeline.applied
    const takeSpontaneous = (): void => {
      for (const e of o.spontaneous.splice(0)) { e.seq = applied + entries.length + 1; entries.push(e) }
    }
    const toApply: PendingSend[] = []
    for (const p of sends) {
      if (o.pipeline.completed) { p.settle({ ok: false, refusal: { code: 'completed', message: `${o.spec.id} has completed`, output: o.last?.output } }); continue }
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
          const code = t instanceof InvalidMachineEventError ? 'bad-event' : o.pipeline.completed || o.last?.status === 'done' ? 'completed' : 'machine-error'
          refuse(p, { code, message: describeError(t), ...(code === 'completed' ? { output: o.last?.output } : {}) })
          return
        }
        if (!t.handled) {
          refuse(p, { code: 'not-handled', message: `${o.spec.id} in state ${JSON.stringify(t.value)} does not handle ${JSON.stringify(p.event.type)}`, value: t.value })
          return
        }
        o.last = t
        const entry: JournalEntry = { seq: applied + entries.length + 1, epoch: o.epoch, ts: Date.now(), event: p.event, id: p.id, state: t.value, timers: t.state.timers, ...(p.sender != null ? { sender: p.sender } : {}), ...(t.status === 'error' ? { error: t.error ?? 'the machine failed' } : {}), ...this.traceFields(t) }
        entries.push(entry)
        waiting.push({ p, entry, t })
        if (t.status === 'done') this.dispatch(o, { type: 'machine.done' })
      })
    }
    takeSpontaneous()
    if (entries.length === 0) return undefined
    return { entries, waiting, last: o.last!, completes: o.pipeline.completed }
  }

  /** Stage 2: makes a batch durable, then acknowledges it (or refuses it and steps down). */
  private async commit (o: Owned, batch: Batch): Promise<void> {
    const lastSeq = batch.entries.at(-1)!.seq
    try {
      if (o.pipeline.phase !== 'running') throw new Error(`${this.selfId} no longer owns ${o.spec.id}`)
      await (batch.durable ?? this.replication.persist(o, batch.entries, batch.last))
    } catch (err) {
      const effects = this.dispatch(o, { type: 'batch.refused' })
      const refusal: Refusal = { code: 'unavailable', message: `not acknowledged: ${describeError(err)}` }
      for (const w of batch.waiting) {
        w.p.settle({ ok: false, refusal })
        for (const extra of o.pendingIds.get(w.p.id) ?? []) extra.settle({ ok: false, refusal })
        o.pendingIds.delete(w.p.id)
      }
      if (effects.some(e => e.type === 'stepDown')) {
        this.log.warn({ workload: o.spec.id, err: describeError(err) }, 'a batch could not be made durable: stepping down')
        await this.stop(o.spec.id)
      }
      return
    }
    const effects = this.dispatch(o, { type: 'batch.durable', lastSeq, completes: batch.completes, failed: batch.last.status === 'error' })
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
    if (effects.some(e => e.type === 'complete')) { await this.complete(o); return }
    if (effects.some(e => e.type === 'reportFailure')) this.init.onFailed?.(o.spec, o.epoch, batch.last.error ?? 'the machine failed')
    if (effects.some(e => e.type === 'drain')) void this.drain(o)
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
    this.log.info({ workload: o.spec.id, seq: o.pipeline.durable }, 'machine reached a final state')
    const holders = o.holders
    await this.replication.snapshotPut // a snapshot put still in flight would land after the records are dropped
    // The record says Completed before this node's heartbeats stop reporting the machine: else a
    // guardian could take the missing replica for a failure and start the machine afresh elsewhere.
    this.init.onCompleted(o.spec, o.epoch, output)
    await this.stop(o.spec.id, { erase: true })
    await Promise.all(holders.map(async peer => {
      await this.components.peers.state(peer, { op: 'erase', workloadId: o.spec.id, epoch: o.epoch } satisfies StateRequest, { timeoutMs: 5_000 }).catch(() => {})
    }))
  }

  // ---------------------------------------------------------------- routing (sender side, routing.ts)

  /**
   * Sends an event to a stateful workload wherever its owner is, and resolves
   * with the acknowledgement. Follows `not-owner` redirects, and while the
   * owner is unreachable (failing over) retries until `timeoutMs`. The same
   * `id` is used on every retry, so the event is applied at most once.
   */
  async send (workloadId: string, event: unknown, options: { id?: string, sender?: string, timeoutMs?: number } = {}): Promise<Ack> {
    return await this.routing.send(workloadId, event, options)
  }

  /** A workload's whole trace, gathered from this node and every live peer (see mergeTraces). */
  async trace (workloadId: string, options: { timeoutMs?: number } = {}): Promise<{ records: TraceEntry[], sources: number }> {
    return await this.routing.trace(workloadId, options)
  }

  async state (workloadId: string, options: { timeoutMs?: number } = {}): Promise<MachineStateReport> {
    return await this.routing.state(workloadId, options)
  }

  /** The machine's definition (statechart JSON, `machine.toJSON()`), from its owner; null if it has none to show. */
  async definition (workloadId: string, options: { timeoutMs?: number } = {}): Promise<{ workloadId: string, definition: unknown }> {
    return await this.routing.definition(workloadId, options)
  }
}
