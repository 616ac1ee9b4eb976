/**
 * What the API asks of stateful workloads, answered from the workload's
 * record and its owner: send an event, read its state (a held copy, marked
 * stale, when the owner is cut off), its machine definition, its whole trace.
 * A workload that completed answers from its record: its state was erased.
 */
import { InvalidWorkloadError, NoTraceError, OwnerUnavailableError, WorkloadCompletedError } from '../actors/errors.js'
import { currentPrincipal } from '../policy/request-context.js'
import { senderOf } from '../policy/trust.js'
import { SendRequest, StateRequest, type Ack, type MachineStateReport } from '../protocol/state.js'
import type { TraceEntry } from '../store/journal.js'
import type { Logger } from '../transport/logger.js'
import type { WorkloadRecord } from '../workloads/records.js'
import type { MachineHost } from './machine-host.js'
import type { StateHolder } from './state-holder.js'

export interface StatefulApiInit {
  selfId: string
  machines: MachineHost
  holder: StateHolder
  log: Logger
  /** The workload's record: this node's copy, else the mesh's (DHT). */
  known: (id: string) => Promise<WorkloadRecord | undefined>
  /** This node's copy of the workload's record. */
  record: (id: string) => WorkloadRecord | undefined
  /** The newest live copy of replica 0 (the machine) that this node knows of. */
  liveOwner: (id: string) => { peerId: string, epoch: number } | undefined
  isLive: (peerId: string) => boolean
}

/** Where a workload's owner is, as this node knows it (for routing sends). */
export interface OwnerLocation { owner?: string, epoch?: number, status?: string, output?: unknown, kind?: string }

export class StatefulApi {
  constructor (private readonly i: StatefulApiInit) {}

  /** What this node knows of where a workload's owner is: the live copy, else the location gossiped, else the record's placement. */
  locate (id: string): OwnerLocation | undefined {
    const record = this.i.record(id)
    if (record == null || record.status === 'Deleted') return undefined
    const live = this.i.liveOwner(id)
    const loc = this.i.machines.location(id)
    const owner = live?.peerId ?? (loc != null && this.i.isLive(loc.owner) ? loc.owner : undefined) ?? record.placement.find(p => p.replica === 0 && this.i.isLive(p.peerId))?.peerId
    return { ...(owner != null ? { owner } : {}), epoch: live?.epoch ?? record.epoch, status: record.status, output: record.output, kind: record.spec.kind }
  }

  /** SEND_PROTOCOL, served: an event for a machine this node owns. */
  async serveSend (request: unknown): Promise<{ result: unknown }> {
    const req = SendRequest.safeParse(request)
    if (!req.success) return { result: { ok: false, refusal: { code: 'bad-event', message: `malformed send: ${req.error.issues[0]?.message ?? 'invalid'}` } } }
    return { result: await this.i.machines.handleSend(req.data) }
  }

  /** STATE_PROTOCOL, served: the journal copies this node holds for other owners. */
  async serveState (request: unknown, from: string): Promise<{ result: unknown }> {
    const req = StateRequest.safeParse(request)
    if (!req.success) return { result: { ok: false, code: 'invalid', message: `malformed request: ${req.error.issues[0]?.message ?? 'invalid'}` } }
    return { result: await this.i.holder.handle(req.data, from) }
  }

  /** Sends an event to a stateful workload (routed to its owner); resolves with the acknowledgement. */
  async sendEvent (id: string, event: unknown, opts: { id?: string, timeoutMs?: number, sender?: string } = {}): Promise<Ack> {
    const record = await this.i.known(id)
    if (record?.status === 'Completed') throw new WorkloadCompletedError(id, record.output)
    const caller = currentPrincipal()
    return await this.i.machines.send(id, event, { ...opts, ...(opts.sender == null && caller != null ? { sender: senderOf(caller) } : {}) })
  }

  /**
   * A stateful workload's whole trace (`beemesh trace export`), gathered from
   * every node that recorded part of it, so it runs on across failovers.
   */
  async exportTrace (id: string): Promise<{ records: TraceEntry[], sources: number }> {
    const record = await this.i.known(id)
    if (record != null && record.spec.kind !== 'stateful') throw new NoTraceError(id, `it is a ${record.spec.kind} workload; only stateful (machine) workloads record traces`)
    if (record?.status === 'Completed') throw new NoTraceError(id, 'it completed, and its state and trace were erased everywhere with it (export before the final event, or follow it with `beemesh trace -f`)')
    const trace = await this.i.machines.trace(id)
    if (trace.records.length === 0) throw new NoTraceError(id, 'no node has recorded any of it yet')
    return trace
  }

  /** A stateful workload's machine definition (statechart JSON), from its owner: what the web view draws. */
  async machineDefinition (id: string): Promise<{ workloadId: string, definition: unknown }> {
    const record = await this.i.known(id)
    if (record != null && record.spec.kind !== 'stateful') throw new InvalidWorkloadError(`${id} is a ${record.spec.kind} workload; only stateful workloads have a machine`)
    if (record?.status === 'Completed') throw new WorkloadCompletedError(id, record.output)
    return await this.i.machines.definition(id, { timeoutMs: 5_000 })
  }

  /** A stateful workload's state, from its owner. */
  async machineState (id: string): Promise<MachineStateReport> {
    const record = await this.i.known(id)
    if (record?.status === 'Completed') {
      return { workloadId: id, owner: record.updatedBy, epoch: record.epoch, seq: 0, value: null, context: null, status: 'done', output: record.output, durability: record.spec.durability ?? 'replicated', holders: [], recent: [], startedAt: record.spec.createdAt }
    }
    try {
      return await this.i.machines.state(id, { timeoutMs: 5_000 })
    } catch (err) {
      // Cut off from the owner (a partition): serve the newest copy this node holds, marked stale.
      if (!(err instanceof OwnerUnavailableError)) throw err
      const held = await this.i.holder.handle({ op: 'fetch', workloadId: id }, this.i.selfId)
      if (!held.ok || held.head.seq === 0) throw err
      const last = held.entries?.at(-1)
      const snap = held.snapshot?.snapshot as { machine?: { persisted?: { context?: unknown, value?: unknown } } } | undefined
      return {
        workloadId: id,
        owner: this.i.machines.location(id)?.owner ?? record?.placement[0]?.peerId ?? this.i.selfId,
        epoch: held.head.epoch,
        seq: held.head.seq,
        value: last != null ? last.state : snap?.machine?.persisted?.value ?? null,
        context: last == null ? snap?.machine?.persisted?.context ?? null : null,
        status: 'active',
        durability: record?.spec.durability ?? 'replicated',
        holders: [],
        recent: (held.entries ?? []).slice(-20).map(e => ({ seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, value: e.state })),
        startedAt: record?.spec.createdAt ?? 0,
        stale: true
      }
    }
  }

  /**
   * Copies of machine state held from before a restart: those of workloads
   * that completed or were deleted meanwhile are dropped (the erasure happened
   * without this node). `stopped` ends the sweep early.
   */
  async sweepHeldState (stopped: () => boolean): Promise<void> {
    for (const id of await this.i.holder.list().catch(() => [])) {
      if (stopped() || this.i.machines.get(id) != null) continue
      const record = await this.i.known(id)
      if (record?.status === 'Completed' || record?.status === 'Deleted') {
        this.i.log.info({ workload: id, status: record.status }, 'erasing the state held of an ended workload')
        await this.i.machines.eraseLocal(id)
      }
    }
  }
}
