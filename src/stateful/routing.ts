import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeError } from '../errors.js'
import { EventNotHandledError, InvalidEventError, MachineFailedError, OwnerUnavailableError, WorkloadCompletedError, WorkloadNotFoundError } from '../actors/errors.js'
import { TrustError } from '../policy/errors.js'
import type { TraceEntry } from '../store/journal.js'
import { MachineEvent, SendReply, type Ack, type LocationRecord, type MachineStateReport, type SendRequest } from '../protocol/state.js'
import type { StatefulComponents } from './owner.js'
import type { Locations } from './recovery.js'

/** Where a workload's owner is believed to be, and whether the workload ended (MachineHostInit.locate). */
export type Locate = (workloadId: string) => { owner?: string, epoch?: number, status?: string, output?: unknown, kind?: string } | undefined

export interface RoutingInit {
  locations: Locations
  locate: Locate
  /** Whether this node owns the workload now. */
  owns: (workloadId: string) => boolean
  /** Handles a request addressed to this node's own machines. */
  handleLocally: (req: SendRequest) => Promise<SendReply>
  /** The location record from the DHT (for a node that missed the failover's gossip). */
  locationFromDht: (workloadId: string, timeoutMs: number) => Promise<LocationRecord | undefined>
}

/**
 * The sender side of the stateful plane: finds a workload's owner wherever
 * it is and hands it a send (or asks it for the machine's state), following
 * redirects and waiting out a failover; and gathers a workload's trace from
 * every node that journaled part of it.
 */
export class Routing {
  constructor (private readonly components: StatefulComponents, private readonly init: RoutingInit) {}

  private get selfId (): string {
    return this.components.mesh.peerId
  }

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

  /**
   * A workload's whole trace, gathered from this node and every live peer
   * (the owner and holders of each epoch each keep what they journaled), so
   * it continues across failovers: see mergeTraces.
   */
  async trace (workloadId: string, { timeoutMs = 5_000 } = {}): Promise<{ records: TraceEntry[], sources: number }> {
    const lists: TraceEntry[][] = [await this.components.journal.trace(workloadId)]
    const peers = this.components.livePeers().slice(0, 64)
    const replies = await Promise.all(peers.map(async peer => {
      try {
        const reply = await this.components.peers.state(peer, { op: 'trace', workloadId }, { timeoutMs })
        return reply.ok ? reply.trace ?? [] : []
      } catch (err) {
        this.components.log.debug({ workload: workloadId, peer, err: describeError(err) }, 'a peer did not return its trace records')
        return []
      }
    }))
    lists.push(...replies)
    return { records: mergeTraces(lists.flat()), sources: lists.filter(l => l.length > 0).length }
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
      let owner = hint ?? (this.init.owns(workloadId) ? this.selfId : where.owner ?? this.init.locations.get(workloadId)?.owner)
      hint = undefined
      if (owner != null && unreachable.has(owner)) {
        // This node may not have heard of the failover yet (no direct connection to the
        // lost owner, or it has just joined): the new owner's location record tells.
        const fresh = await this.init.locationFromDht(workloadId, 1_000)
        if (fresh != null) owner = fresh.owner
        unreachable.delete(owner)
      }
      let reply: SendReply | undefined
      if (owner === this.selfId) {
        reply = await this.init.handleLocally(req)
      } else if (owner != null) {
        try {
          const result = await this.components.peers.send(owner, req, { timeoutMs: Math.max(1_000, Math.min(10_000, deadline - Date.now())) })
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
