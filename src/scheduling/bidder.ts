/**
 * The bidder: a node answers each tender it is sent, with a bid (a score from
 * the placement pipeline, src/machines/placement.ts) or a decline carrying its
 * reasons, and starts the replicas it is awarded. A bid reserves its resources
 * for the tender's window, so one node does not win more than it can hold.
 */
import { describeError } from '../errors.js'
import { evaluate, type NodeOffer } from '../machines/placement.js'
import type { BidRequest } from '../protocol/messages.js'
import { TrustError } from '../policy/errors.js'
import type { Logger } from '../transport/logger.js'
import type { Resources, WorkloadSpec } from '../workloads/types.js'
import type { CatalogReader } from './catalog.js'
import { isStale, sameSpec } from './record-lifecycle.js'
import type { LocalCopy } from './status.js'
import type { AnnouncedReplica, Award, Confirmation, Tender } from './tenderer.js'

/** What the bidder knows of this node and does on it. */
export interface BidderNode {
  /** This node's copies of a workload. */
  copies: (workloadId: string) => LocalCopy[]
  /** Workloads with a copy (not failed) here: a replica or container, not a machine. */
  hosted: () => string[]
  /** Resources the copies here use. */
  allocated: () => Resources
  /** `container`, `code`, `confined`: what this node can run. */
  capabilities: () => string[]
  /** Containers of the workload from before a restart are being adopted or removed here. */
  isSorting: (workloadId: string) => boolean
  /** Starts an awarded replica (`hints`: peers that have the artifact). */
  start: (spec: WorkloadSpec, replica: number, epoch: number, hints: string[]) => Promise<void>
  /** Fetches an artifact ahead of an award (best effort). */
  prefetch: (spec: WorkloadSpec, from: string[]) => void
}

export interface BidderComponents {
  selfId: string
  log: Logger
  labels: Record<string, string>
  capacity: Resources
  catalog: CatalogReader
  node: BidderNode
  /** Undefined when this node may run the workload, else the reason (src/scheduling/admission.ts). */
  admissible: (spec: WorkloadSpec) => Promise<string | undefined>
  /** Sends a bid or decline to the tenderer; rejects when it could not be delivered. */
  answer: (tenderer: string, reply: BidRequest) => Promise<void>
  /** Reports a replica started or failed to start, to the tenderer that awarded it. */
  confirm: (tenderer: string, confirmation: Confirmation) => Promise<void>
  /** Notes where a peer's replica is heard to be (the mesh view). */
  announce: (replica: AnnouncedReplica) => void
  tenderWindowMs: number
  now?: () => number
  /** When this node started, for its offer's uptime. */
  startedAt?: number
}

interface Reservation { resources: Resources, expires: number }

export class Bidder {
  private readonly reservations = new Map<string, Reservation>()
  private readonly now: () => number
  private readonly startedAt: number

  constructor (private readonly c: BidderComponents) {
    this.now = c.now ?? Date.now
    this.startedAt = c.startedAt ?? this.now()
  }

  /** What this node offers a tender now: its free resources (reservations counted), labels, what it hosts and can run. */
  offer (): NodeOffer {
    const now = this.now()
    for (const [id, r] of this.reservations) if (r.expires < now) this.reservations.delete(id)
    const allocated = { ...this.c.node.allocated() }
    for (const r of this.reservations.values()) {
      allocated.cpuMillis += r.resources.cpuMillis
      allocated.memoryBytes += r.resources.memoryBytes
    }
    return { peerId: this.c.selfId, labels: this.c.labels, capacity: this.c.capacity, allocated, uptimeMs: now - this.startedAt, hosts: this.c.node.hosted(), capabilities: this.c.node.capabilities() }
  }

  /** Answers a tender: a bid (and a reservation, and an artifact prefetch) or a decline with its reasons. */
  async bidOn (tender: Tender): Promise<void> {
    const known = this.c.catalog.get(tender.spec.id)
    if (known != null && isStale(known, tender.epoch)) return // a deposed tenderer gets no bids
    const copies = this.c.node.copies(tender.spec.id)
    const live = copies.filter(r => r.kind === 'container' || (r.kind === 'replica' && r.status !== 'failed'))
    const owned = copies.find(r => r.kind === 'machine')
    const offer = this.offer()
    if (owned != null && owned.epoch >= tender.epoch) offer.hosts.push(tender.spec.id)
    // A replica of an older generation (another spec, being replaced) does not count as already hosting it.
    offer.hosts = offer.hosts.filter(id => id !== tender.spec.id || live.some(r => sameSpec(r.spec, tender.spec)))
    const refusal = await this.c.admissible(tender.spec)
    const evaluated: ReturnType<typeof evaluate> = refusal != null
      ? { ok: false, rejections: [{ peerId: this.c.selfId, filter: 'policy', reason: refusal.slice(0, 500) }] }
      : evaluate(offer, { workloadId: tender.spec.id, resources: tender.spec.resources, nodeSelector: tender.spec.nodeSelector, exclude: tender.exclude, requires: [tender.spec.kind === 'container' ? 'container' : 'code'] })
    // Containers of it from before a restart are being adopted or removed here: a new one would race them.
    const result: typeof evaluated = this.c.node.isSorting(tender.spec.id)
      ? { ok: false, rejections: [{ peerId: this.c.selfId, filter: 'already-hosting', reason: 'sorting out its containers from before a restart (adopt or remove)' }] }
      : evaluated
    const reply: BidRequest = result.ok
      ? { type: 'bid', tenderId: tender.tenderId, attempt: tender.attempt, peerId: this.c.selfId, score: result.score }
      : { type: 'decline', tenderId: tender.tenderId, attempt: tender.attempt, peerId: this.c.selfId, rejections: result.rejections }
    if (result.ok) {
      this.reservations.set(tender.tenderId, { resources: tender.spec.resources, expires: this.now() + this.c.tenderWindowMs + 2_000 })
      // A bidder is likely to be awarded: fetch the artifact now so the start does not wait for it.
      if (tender.spec.artifact != null) this.c.node.prefetch(tender.spec, [tender.tenderer])
    }
    try {
      await this.c.answer(tender.tenderer, reply)
    } catch (err) {
      this.reservations.delete(tender.tenderId)
      this.c.log.debug({ tenderer: tender.tenderer, err: describeError(err) }, 'could not deliver bid')
    }
  }

  /** An award (to a candidate the tender asked): the mesh view hears where the others go; this node starts its own and confirms each. */
  async onAward (award: Award): Promise<void> {
    this.reservations.delete(award.tenderId)
    const known = this.c.catalog.get(award.workloadId)
    if (known != null && isStale(known, award.epoch)) return // deleted meanwhile, or from a tenderer superseded by a newer epoch
    for (const a of award.awards) {
      if (a.peerId !== this.c.selfId) this.c.announce({ workloadId: award.workloadId, peerId: a.peerId, replica: a.replica, epoch: award.epoch, status: 'starting', handled: 0, failures: 0 })
    }
    const mine = award.awards.filter(a => a.peerId === this.c.selfId)
    const refusal = mine.length > 0 ? await this.c.admissible(award.spec) : undefined
    await Promise.all(mine.map(async a => {
      const t0 = this.now()
      try {
        if (refusal != null) throw new TrustError('denied', refusal)
        await this.c.node.start(award.spec, a.replica, award.epoch, [award.tenderer])
        this.c.log.debug({ workload: award.workloadId, replica: a.replica, ms: this.now() - t0 }, 'replica started')
        await this.c.confirm(award.tenderer, { type: 'started', tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: this.c.selfId, replica: a.replica })
      } catch (err) {
        const reason = describeError(err).slice(0, 1900)
        this.c.log.warn({ workload: award.workloadId, replica: a.replica, err: reason }, 'replica failed to start')
        await this.c.confirm(award.tenderer, { type: 'start-failed', tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: this.c.selfId, replica: a.replica, reason })
      }
    }))
  }
}
