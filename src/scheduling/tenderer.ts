/**
 * The tenderer: a node that receives an `apply` (or a guardian healing a
 * workload) places replicas by tender. Each tender is one scheduler machine
 * (src/machines/scheduler-machine.ts) whose effects, sending the tender to a
 * few sampled candidates and sending the award to the candidates asked, are
 * provided here; bids and confirmations come back directly and are routed to
 * it as events. Nothing of a placement is sent to the whole mesh but the
 * record. The tenderer also owns the apply's record transitions: Pending
 * while the tender runs, then Running, Unschedulable or Failed.
 */
import { createActor, fromPromise, type ActorRefFrom } from 'xstate'
import type { MachineClock } from '../clock.js'
import { describeError } from '../errors.js'
import type { NodeMetrics } from '../actors/metrics.js'
import type { Inspection } from '../actors/inspection.js'
import { InvalidWorkloadError, UnschedulableError, WorkloadNotFoundError } from '../actors/errors.js'
import { PROBES_PER_REPLICA, sampleCandidates, type NodeOffer } from '../machines/placement.js'
import { schedulerMachine, type AwardMessage, type SchedulerOutput, type TenderMessage, type TenderReach } from '../machines/scheduler-machine.js'
import type { BidRequest, SchedulerMessage } from '../protocol/messages.js'
import type { Logger } from '../transport/logger.js'
import type { WorkloadSpec } from '../workloads/types.js'
import type { WorkloadRecord } from '../workloads/records.js'
import type { ReplicaLocation } from '../membership/mesh-view.js'
import type { CatalogReader } from './catalog.js'
import { placed, rescaled, tendering, unplaced, type Stamp } from './record-lifecycle.js'

export type Tender = Extract<SchedulerMessage, { type: 'tender' }>
export type Award = Extract<SchedulerMessage, { type: 'award' }>
export type Confirmation = Extract<SchedulerMessage, { type: 'started' | 'start-failed' }>

/** Where a peer's replica is heard to be (src/membership/mesh-view.ts's announce). */
export type AnnouncedReplica = ReplicaLocation & { workloadId: string }

/** The catalog as a plane that writes records uses it. */
export interface CatalogWriter extends CatalogReader {
  update: (record: WorkloadRecord, options?: { persist?: boolean }) => void
}

export interface TendererComponents {
  selfId: string
  log: Logger
  catalog: CatalogWriter
  /** Sends a tender to one candidate; rejects when it could not be delivered. */
  sendTender: (peerId: string, tender: Tender, options: { signal: AbortSignal }) => Promise<void>
  /** Sends the award to one candidate asked (an awardee, or a bidder whose reservation it releases); rejects when it could not be delivered. */
  sendAward: (peerId: string, award: Award, options: { signal: AbortSignal }) => Promise<void>
  /** What this node knows of the nodes that could host a replica: its own offer and its view's (the node: each live peer's last heartbeat). */
  offers: () => NodeOffer[]
  /** Peers connected but not heard from yet (just joined): asked as if feasible. */
  unknownPeers: () => string[]
  /** This node's own bidder: the tenderer hands it its tenders and awards directly. */
  bidOn: (tender: Tender) => void
  onAward: (award: Award) => void
  /** Notes where a peer's replica is heard to be (the mesh view). */
  announce: (replica: AnnouncedReplica) => void
  tenderWindowMs: number
  confirmTimeoutMs: number
  metrics?: NodeMetrics
  inspection?: Inspection
  now?: () => number
  /** Runs the scheduler machines' windows and timeouts (a simulation's virtual clock); the real timers by default. */
  clock?: MachineClock
  /** Tender ids (also the seed of the tie-break between equal bids). */
  newId: () => string
}

export class Tenderer {
  private readonly tenders = new Map<string, ActorRefFrom<typeof schedulerMachine>>()
  /** Workload ids with a tender in flight from this node. */
  private readonly inFlight = new Set<string>()
  private readonly now: () => number

  constructor (private readonly c: TendererComponents) {
    this.now = c.now ?? Date.now
  }

  private stamp (): Stamp {
    return { now: this.now(), by: this.c.selfId }
  }

  /** Whether this node tenders the workload right now. */
  isTendering (id: string): boolean {
    return this.inFlight.has(id)
  }

  /** Throws when a tender of the workload is in flight here. */
  checkIdle (id: string): void {
    if (this.inFlight.has(id)) throw new InvalidWorkloadError(`${id} is being placed right now; try again when that finishes`)
  }

  /**
   * Places a new generation of a workload: records it Pending (gossiped only),
   * then tenders every ordinal. `placed` resolves with the record once the
   * tender placed it, and rejects when nothing could be placed.
   */
  apply (spec: WorkloadSpec, existing: WorkloadRecord | undefined): { placed: Promise<WorkloadRecord> } {
    this.checkIdle(spec.id)
    this.inFlight.add(spec.id)
    const record = tendering(spec, existing, this.stamp())
    this.c.catalog.update(record, { persist: false })
    return { placed: this.place(spec, record.epoch, record) }
  }

  private async place (spec: WorkloadSpec, epoch: number, record: WorkloadRecord): Promise<WorkloadRecord> {
    const ordinals = Array.from({ length: spec.replicas }, (_, i) => i)
    const result = await this.run(spec, epoch, ordinals, [])
    const latest = this.c.catalog.get(spec.id) ?? record
    if (latest.status === 'Deleted') throw new WorkloadNotFoundError(spec.id)
    // A newer epoch: the workload was tendered again while this tender ran (a guardian saw no replica start
    // in time, on a busy node): that placement answers the apply, which is not "not found".
    if (latest.epoch > epoch) return latest
    if (latest.epoch !== epoch) throw new WorkloadNotFoundError(spec.id)
    if (result.status !== 'placed') {
      const reason = result.reason ?? result.status
      this.c.catalog.update(unplaced(latest, result.status === 'unschedulable' ? 'unschedulable' : 'failed', reason, this.stamp()))
      throw new UnschedulableError(spec.id, reason)
    }
    const next = placed(latest, result.placed.map(p => ({ peerId: p.peerId, replica: p.replica, epoch })), this.stamp())
    this.c.catalog.update(next)
    return next
  }

  /**
   * A new replica count (or manifest text) for a running generation, `spec`
   * signed already: a new record at the next epoch. The running replicas keep
   * running; hosts stop the ordinals at or above the new count (the catalog's
   * `record.scaled-down`), and a guardian tenders the missing ones once the record has spread.
   */
  rescale (record: WorkloadRecord, spec: WorkloadSpec): WorkloadRecord {
    const next = rescaled(record, spec, this.stamp())
    this.c.catalog.update(next)
    return next
  }

  /** Runs one tender for `ordinals` at `epoch`; resolves with the scheduler's output (never rejects). */
  async run (spec: WorkloadSpec, epoch: number, ordinals: number[], exclude: string[]): Promise<SchedulerOutput> {
    this.inFlight.add(spec.id)
    const tenderId = this.c.newId()
    const t0 = this.now()
    // Tenders still on their way when the run ends (placed, failed, cancelled) are called off.
    const sends = new AbortController()
    // Every candidate asked in this run: the award goes to them (the losers' bids hold reservations), not to the mesh.
    const asked = new Set<string>()
    try {
      const logic = schedulerMachine.provide({
        actors: {
          publishTender: fromPromise<TenderReach | undefined, TenderMessage>(async ({ input, signal }) => {
            // Bidders need not know which ordinals are missing: the award assigns them.
            const wire: Tender = { type: 'tender', tenderId, tenderer: this.c.selfId, epoch, attempt: input.attempt, spec, ordinals: ordinals.slice(0, input.replicas), exclude: input.exclude }
            const request = { workloadId: spec.id, resources: spec.resources, nodeSelector: spec.nodeSelector, exclude: input.exclude, requires: [spec.kind === 'container' ? 'container' : 'code'] }
            // A widened tender asks twice as many as the one before: a mesh of n is covered in log2(n) rounds.
            const count = input.replicas * PROBES_PER_REPLICA * 2 ** Math.min(20, input.attempt - 1)
            const sample = sampleCandidates(this.c.offers(), request, count, `${tenderId}/${input.attempt}`, { unknown: this.c.unknownPeers() })
            this.c.log.debug({ workload: spec.id, tenderId, attempt: input.attempt, asked: sample.candidates.length, feasible: sample.feasible, ms: this.now() - t0 }, 'tender sent')
            signal.throwIfAborted()
            for (const peerId of sample.candidates) {
              if (peerId === this.c.selfId) { this.c.bidOn(wire); continue }
              asked.add(peerId)
              // A candidate the tender cannot reach answers for itself: it is declined, so the window need not run out.
              this.c.sendTender(peerId, wire, { signal: sends.signal }).catch((err: unknown) => {
                if (!sends.signal.aborted) this.routeBid({ type: 'decline', tenderId, attempt: input.attempt, peerId, rejections: [{ peerId, filter: 'unreachable', reason: `the tender did not reach it: ${describeError(err)}`.slice(0, 500) }] })
              })
            }
            return { asked: sample.candidates.length, more: sample.feasible > sample.candidates.length, rejections: sample.rejections }
          }),
          publishAward: fromPromise<void, AwardMessage>(async ({ input, signal }) => {
            const wire: Award = { type: 'award', tenderId, tenderer: this.c.selfId, workloadId: spec.id, epoch, spec, awards: input.awards }
            this.c.log.debug({ workload: spec.id, tenderId, awards: input.awards, ms: this.now() - t0 }, 'award published')
            signal.throwIfAborted()
            const to = new Set([...asked, ...input.awards.map(a => a.peerId)])
            to.delete(this.c.selfId)
            for (const peerId of to) {
              this.c.sendAward(peerId, wire, { signal: sends.signal }).catch((err: unknown) => {
                if (sends.signal.aborted) return
                // An awardee the award did not reach cannot start: its replicas fail now, not at the confirmation timeout.
                for (const a of input.awards) {
                  if (a.peerId === peerId) this.onConfirmation({ type: 'start-failed', tenderId, workloadId: spec.id, epoch, peerId, replica: a.replica, reason: `the award did not reach it: ${describeError(err)}`.slice(0, 1900) })
                }
              })
            }
            this.c.onAward(wire)
          })
        }
      })
      const actor = createActor(logic, {
        id: `scheduler:${spec.id}:${epoch}`,
        ...(this.c.clock != null ? { clock: this.c.clock } : {}),
        ...(this.c.inspection != null ? { inspect: this.c.inspection.observer(`scheduler:${spec.id}`) } : {}),
        input: {
          tenderId,
          workloadId: spec.id,
          resources: spec.resources,
          nodeSelector: spec.nodeSelector,
          replicas: ordinals.length,
          ordinals,
          exclude,
          epoch,
          windowMs: this.c.tenderWindowMs,
          confirmTimeoutMs: this.c.confirmTimeoutMs,
          maxAttempts: 3,
          seed: tenderId
        }
      })
      this.tenders.set(tenderId, actor)
      const done = new Promise<SchedulerOutput>((resolve) => {
        actor.subscribe({
          complete: () => { resolve(actor.getSnapshot().output as SchedulerOutput) },
          error: err => { resolve({ status: 'failed', placed: [], reason: describeError(err), attempts: 0 }) }
        })
      })
      actor.start()
      const output = await done
      this.c.log.debug({ workload: spec.id, tenderId, status: output.status, ms: this.now() - t0 }, 'tender finished')
      this.c.metrics?.tenders.inc({ outcome: output.status })
      this.c.metrics?.tenderSeconds.observe({ outcome: output.status }, (this.now() - t0) / 1000)
      return output
    } finally {
      sends.abort()
      this.tenders.delete(tenderId)
      this.inFlight.delete(spec.id)
    }
  }

  /** A bid or decline for one of this node's tenders (by BID_PROTOCOL, from its own bidder, or for a candidate the tender did not reach). */
  routeBid (bid: BidRequest): void {
    const actor = this.tenders.get(bid.tenderId)
    if (actor == null) return
    if (bid.type === 'bid') actor.send({ type: 'bid.received', peerId: bid.peerId, score: bid.score, attempt: bid.attempt })
    else actor.send({ type: 'bid.declined', peerId: bid.peerId, attempt: bid.attempt, rejections: bid.rejections })
  }

  /** An awardee reports its replica started (or not): the mesh view hears of it, and the tender if it is this node's. */
  onConfirmation (m: Confirmation): void {
    if (m.peerId !== this.c.selfId) {
      this.c.announce({ workloadId: m.workloadId, peerId: m.peerId, replica: m.replica, epoch: m.epoch, status: m.type === 'started' ? 'running' : 'failed', handled: 0, failures: 0 })
    }
    const actor = this.tenders.get(m.tenderId)
    if (actor == null) return
    if (m.type === 'started') actor.send({ type: 'replica.started', peerId: m.peerId })
    else actor.send({ type: 'replica.failed', peerId: m.peerId, reason: m.reason })
  }

  /** Cancels every tender in flight (the node stops). */
  stop (): void {
    for (const actor of this.tenders.values()) actor.send({ type: 'tender.cancelled' })
  }
}
