import { and, assign, fromPromise, setup } from 'xstate'
import type { Resources } from '../workloads/types.js'
import { describeUnschedulable, MAX_TENDER_ATTEMPTS, selectBids, shortPeerId, type Rejection } from './placement.js'

/**
 * The tenderer's side of one placement, as pure data. There is no central
 * scheduler: the node that wants replicas placed sends a tender to a few
 * candidates (`publishTender` says how many it asked), each answers with a
 * bid (a score) or a decline (its rejections), the tenderer awards the best
 * bidders once every candidate answered (or the window closed) and waits for
 * them to confirm. A failed or silent awardee is excluded and the missing
 * replicas are tendered again, up to `maxAttempts` awards; a tender that drew
 * no bid while untried candidates are left widens to them (the decliners
 * excluded, each round asking twice as many), up to MAX_TENDER_ATTEMPTS.
 *
 *   validating → tendering → collecting → awarding → confirming → placed
 *                    ↑            │ no bid    ↘ unschedulable       │
 *                    ├─ widen ────┘                                 │
 *                    └──────── retry ───────────────────────────────┤
 *                                                                   ↘ failed
 *   any state → cancelled on `tender.cancelled`
 *
 * Effects (`publishTender`, `publishAward`) are placeholders provided by the
 * runtime; time is the `window` and `confirmTimeout` delays, so a
 * SimulatedClock drives the tests.
 */

export interface SchedulerInput {
  tenderId: string
  workloadId: string
  resources: Resources
  nodeSelector: Record<string, string>
  /** How many replicas to place now. */
  replicas: number
  /** The replica ordinals that are missing (length = `replicas`); default `0..replicas-1`. */
  ordinals?: number[]
  /** Peers that must not get a replica: already hosting, failed before. */
  exclude: string[]
  epoch: number
  /** How long bids are collected. */
  windowMs: number
  /** How long awardees have to report their replica started. */
  confirmTimeoutMs: number
  /** Tenders in all, the first included. */
  maxAttempts: number
  /** Seeds the tie-break between equal bids. */
  seed: string
  /** When set, bidding closes as soon as this many nodes have answered. */
  expectedResponders?: number
}

export interface Bid {
  peerId: string
  score: number
}

export interface Award {
  peerId: string
  replica: number
}

/** Published on the scheduling topic to open an attempt. */
export interface TenderMessage {
  type: 'tender'
  tenderId: string
  workloadId: string
  epoch: number
  attempt: number
  resources: Resources
  nodeSelector: Record<string, string>
  /** Replicas still needed in this attempt. */
  replicas: number
  exclude: string[]
  /** Bids arriving later than this after the tender are ignored. */
  windowMs: number
}

/**
 * What publishing a tender reached: how many candidates were asked (the
 * window closes once they all answered), whether feasible nodes are left
 * unasked (a tender with no bid then widens instead of failing), and why the
 * nodes that were not asked could not host the replicas, as their offers say.
 * A `publishTender` that resolves with nothing asked every live node
 * (`expectedResponders`).
 */
export interface TenderReach {
  asked: number
  more: boolean
  rejections: Rejection[]
}

/** Published on the scheduling topic to tell the winners which replica each starts. */
export interface AwardMessage {
  type: 'award'
  tenderId: string
  workloadId: string
  epoch: number
  attempt: number
  awards: Award[]
}

export type SchedulerStatus = 'placed' | 'unschedulable' | 'failed' | 'cancelled'

export interface SchedulerOutput {
  status: SchedulerStatus
  /** Replicas confirmed started, in every attempt. */
  placed: Award[]
  reason?: string
  attempts: number
}

export interface SchedulerContext {
  tenderId: string
  workloadId: string
  resources: Resources
  nodeSelector: Record<string, string>
  epoch: number
  windowMs: number
  confirmTimeoutMs: number
  maxAttempts: number
  seed: string
  expectedResponders?: number
  /** Every ordinal this placement is for. */
  ordinals: number[]
  /** 1 for the first tender; 0 before it. */
  attempt: number
  /** Attempts that got as far as an award (what `maxAttempts` counts). */
  awardRounds: number
  /** This attempt's bids, one per peer (its latest answer). */
  bids: Bid[]
  /** This attempt's declines, as the decliners' rejections. */
  rejections: Rejection[]
  /** Declines of earlier attempts (a widened tender keeps why the first candidates could not host). */
  declined: Rejection[]
  /** Why the nodes this attempt did not ask could not host the replicas, as their offers say. */
  unasked: Rejection[]
  /** Feasible nodes are left that no attempt has asked yet. */
  moreCandidates: boolean
  /** This attempt's awards. */
  awarded: Award[]
  /** Replicas confirmed started, in every attempt. */
  confirmed: Award[]
  /** Awardees that failed or stayed silent, in every attempt. */
  failed: Array<{ peerId: string, reason: string }>
  exclude: string[]
  status?: SchedulerStatus
  error?: string
}

/**
 * Events in from the runtime. `attempt`, when given, ties an answer to one
 * tender: answers to an older attempt are ignored.
 */
export type SchedulerEvent =
  | { type: 'bid.received', peerId: string, score: number, attempt?: number }
  | { type: 'bid.declined', peerId: string, rejections: Rejection[], attempt?: number }
  | { type: 'replica.started', peerId: string }
  | { type: 'replica.failed', peerId: string, reason: string }
  | { type: 'tender.cancelled', reason?: string }

/** Why an input cannot be tendered, or undefined when it can. */
export function validateSchedulerInput (input: SchedulerInput): string | undefined {
  if (!Number.isInteger(input.replicas) || input.replicas < 1) return `replicas must be a positive integer, got ${input.replicas}`
  if (input.ordinals != null) {
    if (input.ordinals.length !== input.replicas) return `ordinals (${input.ordinals.length}) must list one ordinal per replica (${input.replicas})`
    if (input.ordinals.some(o => !Number.isInteger(o) || o < 0)) return 'ordinals must be non-negative integers'
    if (new Set(input.ordinals).size !== input.ordinals.length) return 'ordinals must be distinct'
  }
  if (!Number.isInteger(input.maxAttempts) || input.maxAttempts < 1) return `maxAttempts must be a positive integer, got ${input.maxAttempts}`
  if (!(input.windowMs >= 0) || !Number.isFinite(input.windowMs)) return `windowMs must be a non-negative number, got ${input.windowMs}`
  if (!(input.confirmTimeoutMs >= 0) || !Number.isFinite(input.confirmTimeoutMs)) return `confirmTimeoutMs must be a non-negative number, got ${input.confirmTimeoutMs}`
  return undefined
}

/** Ordinals not yet confirmed started. */
export function missingOrdinals (context: Pick<SchedulerContext, 'ordinals' | 'confirmed'>): number[] {
  return context.ordinals.filter(o => !context.confirmed.some(c => c.replica === o))
}

export function tenderMessage (context: SchedulerContext): TenderMessage {
  return {
    type: 'tender',
    tenderId: context.tenderId,
    workloadId: context.workloadId,
    epoch: context.epoch,
    attempt: context.attempt,
    resources: context.resources,
    nodeSelector: context.nodeSelector,
    replicas: missingOrdinals(context).length,
    exclude: context.exclude,
    windowMs: context.windowMs
  }
}

export function awardMessage (context: SchedulerContext): AwardMessage {
  return {
    type: 'award',
    tenderId: context.tenderId,
    workloadId: context.workloadId,
    epoch: context.epoch,
    attempt: context.attempt,
    awards: context.awarded
  }
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function answered (context: SchedulerContext, peerId: string): boolean {
  return context.confirmed.some(c => c.peerId === peerId) || context.failed.some(f => f.peerId === peerId)
}

function isPendingAwardee (context: SchedulerContext, peerId: string): boolean {
  return context.awarded.some(a => a.peerId === peerId) && !answered(context, peerId)
}

function matchesAttempt (context: SchedulerContext, attempt: number | undefined): boolean {
  return attempt == null || attempt === context.attempt
}

function placedSuffix (context: SchedulerContext): string {
  return context.confirmed.length > 0 ? `; ${context.confirmed.length} of ${context.ordinals.length} replicas placed` : ''
}

export const schedulerMachine = setup({
  types: {
    input: {} as SchedulerInput,
    context: {} as SchedulerContext,
    events: {} as SchedulerEvent,
    output: {} as SchedulerOutput
  },
  actors: {
    publishTender: fromPromise<TenderReach | undefined, TenderMessage>(async () => {
      throw new Error('publishTender must be provided')
    }),
    publishAward: fromPromise<void, AwardMessage>(async () => {
      throw new Error('publishAward must be provided')
    })
  },
  delays: {
    window: ({ context }) => context.windowMs,
    confirmTimeout: ({ context }) => context.confirmTimeoutMs
  },
  guards: {
    inputInvalid: ({ context }) => context.error != null,
    bidAcceptable: ({ context, event }) =>
      event.type === 'bid.received' &&
      matchesAttempt(context, event.attempt) &&
      Number.isFinite(event.score) &&
      !context.exclude.includes(event.peerId),
    declineAcceptable: ({ context, event }) =>
      event.type === 'bid.declined' && matchesAttempt(context, event.attempt) && Array.isArray(event.rejections),
    fromPendingAwardee: ({ context, event }) =>
      (event.type === 'replica.started' || event.type === 'replica.failed') && isPendingAwardee(context, event.peerId),
    noBids: ({ context }) => context.bids.length === 0,
    allAnswered: ({ context }) => {
      if (context.expectedResponders == null) return false
      const peers = new Set([...context.bids.map(b => b.peerId), ...context.rejections.map(r => r.peerId)])
      return peers.size >= context.expectedResponders
    },
    allAwardeesAnswered: ({ context }) => context.awarded.every(a => answered(context, a.peerId)),
    nothingMissing: ({ context }) => missingOrdinals(context).length === 0,
    attemptsLeft: ({ context }) => context.awardRounds < context.maxAttempts,
    canWiden: ({ context }) => context.moreCandidates && context.attempt < MAX_TENDER_ATTEMPTS
  },
  actions: {
    openAttempt: assign({
      attempt: ({ context }) => context.attempt + 1,
      bids: [],
      rejections: [],
      unasked: [],
      awarded: []
    }),
    recordReach: assign(({ context, event }) => {
      const reach = (event as { output?: TenderReach }).output
      if (reach == null) return {}
      return { expectedResponders: reach.asked, moreCandidates: reach.more, unasked: reach.rejections }
    }),
    excludeDecliners: assign({
      exclude: ({ context }) => [...new Set([...context.exclude, ...context.rejections.map(r => r.peerId)])],
      declined: ({ context }) => [...context.declined, ...context.rejections]
    }),
    recordBid: assign(({ context, event }) => {
      if (event.type !== 'bid.received') return {}
      return {
        bids: [...context.bids.filter(b => b.peerId !== event.peerId), { peerId: event.peerId, score: event.score }],
        rejections: context.rejections.filter(r => r.peerId !== event.peerId)
      }
    }),
    recordDecline: assign(({ context, event }) => {
      if (event.type !== 'bid.declined') return {}
      const own: Rejection[] = event.rejections.length > 0
        ? event.rejections.map(r => ({ peerId: event.peerId, filter: r.filter, reason: r.reason }))
        : [{ peerId: event.peerId, filter: 'excluded', reason: 'declined without a reason' }]
      return {
        bids: context.bids.filter(b => b.peerId !== event.peerId),
        rejections: [...context.rejections.filter(r => r.peerId !== event.peerId), ...own]
      }
    }),
    selectAwardees: assign({
      awardRounds: ({ context }) => context.awardRounds + 1,
      awarded: ({ context }) => {
        const missing = missingOrdinals(context)
        const winners = selectBids(context.bids, missing.length, `${context.seed}/${context.attempt}`)
        return winners.map((peerId, i) => ({ peerId, replica: missing[i] as number }))
      }
    }),
    recordStarted: assign({
      confirmed: ({ context, event }) => {
        if (event.type !== 'replica.started') return context.confirmed
        const award = context.awarded.find(a => a.peerId === event.peerId)
        return award == null ? context.confirmed : [...context.confirmed, award]
      }
    }),
    recordFailed: assign({
      failed: ({ context, event }) => event.type === 'replica.failed'
        ? [...context.failed, { peerId: event.peerId, reason: event.reason }]
        : context.failed
    }),
    markSilentAwardeesFailed: assign({
      failed: ({ context }) => [
        ...context.failed,
        ...context.awarded
          .filter(a => !answered(context, a.peerId))
          .map(a => ({ peerId: a.peerId, reason: `no confirmation within ${context.confirmTimeoutMs}ms` }))
      ]
    }),
    excludeAwardees: assign({
      exclude: ({ context }) => [...new Set([...context.exclude, ...context.awarded.map(a => a.peerId)])]
    }),
    recordUnschedulable: assign({
      error: ({ context }) => {
        // What each node said for itself wins over what its offer said for it.
        const asked = [...context.declined, ...context.rejections]
        const spoke = new Set(asked.map(r => r.peerId))
        const all = [...asked, ...context.unasked.filter(r => !spoke.has(r.peerId))]
        const nodes = new Set(all.map(r => r.peerId)).size
        return describeUnschedulable(all, Math.max(nodes, context.expectedResponders ?? 0), context.workloadId) + placedSuffix(context)
      }
    }),
    recordPlacementFailure: assign({
      error: ({ context }) => {
        const missing = missingOrdinals(context)
        const causes = context.failed
          .filter(f => context.awarded.some(a => a.peerId === f.peerId))
          .map(f => `${shortPeerId(f.peerId)}: ${f.reason}`)
        const unawarded = missing.filter(o => !context.awarded.some(a => a.replica === o)).length
        if (unawarded > 0) causes.push(`${context.bids.length} bid${context.bids.length === 1 ? '' : 's'} for ${context.bids.length + unawarded} missing replicas`)
        const tries = `${context.attempt} attempt${context.attempt === 1 ? '' : 's'}`
        return `placed ${context.confirmed.length} of ${context.ordinals.length} replicas of ${context.workloadId} in ${tries}: ${causes.join('; ')}`
      }
    }),
    recordPublishError: assign({
      error: ({ event }) => `could not publish: ${errorMessage((event as { error?: unknown }).error)}`
    }),
    recordCancelled: assign({
      error: ({ event }) => event.type === 'tender.cancelled' && event.reason != null ? event.reason : 'cancelled'
    }),
    setStatusPlaced: assign({ status: 'placed' as const, error: undefined }),
    setStatusUnschedulable: assign({ status: 'unschedulable' as const }),
    setStatusFailed: assign({ status: 'failed' as const }),
    setStatusCancelled: assign({ status: 'cancelled' as const })
  }
}).createMachine({
  id: 'scheduler',
  context: ({ input }) => {
    const error = validateSchedulerInput(input)
    const count = Number.isInteger(input.replicas) && input.replicas > 0 ? input.replicas : 0
    return {
      tenderId: input.tenderId,
      workloadId: input.workloadId,
      resources: input.resources,
      nodeSelector: input.nodeSelector,
      epoch: input.epoch,
      windowMs: input.windowMs,
      confirmTimeoutMs: input.confirmTimeoutMs,
      maxAttempts: input.maxAttempts,
      seed: input.seed,
      ...(input.expectedResponders != null ? { expectedResponders: input.expectedResponders } : {}),
      ordinals: input.ordinals != null ? [...input.ordinals] : Array.from({ length: count }, (_, i) => i),
      attempt: 0,
      awardRounds: 0,
      bids: [],
      rejections: [],
      declined: [],
      unasked: [],
      moreCandidates: false,
      awarded: [],
      confirmed: [],
      failed: [],
      exclude: [...new Set(input.exclude)],
      ...(error != null ? { error: `invalid tender: ${error}` } : {})
    }
  },
  initial: 'validating',
  on: {
    'tender.cancelled': { target: '.cancelled', actions: 'recordCancelled' }
  },
  states: {
    validating: {
      always: [
        { guard: 'inputInvalid', target: 'failed' },
        { target: 'tendering' }
      ]
    },
    tendering: {
      entry: 'openAttempt',
      invoke: {
        src: 'publishTender',
        input: ({ context }) => tenderMessage(context),
        onDone: { target: 'collecting', actions: 'recordReach' },
        onError: { target: 'failed', actions: 'recordPublishError' }
      },
      on: {
        'bid.received': { guard: 'bidAcceptable', actions: 'recordBid' },
        'bid.declined': { guard: 'declineAcceptable', actions: 'recordDecline' }
      }
    },
    collecting: {
      always: [
        { guard: and(['allAnswered', 'noBids', 'canWiden']), target: 'tendering', actions: 'excludeDecliners' },
        { guard: and(['allAnswered', 'noBids']), target: 'unschedulable', actions: 'recordUnschedulable' },
        { guard: 'allAnswered', target: 'awarding', actions: 'selectAwardees' }
      ],
      after: {
        window: [
          { guard: and(['noBids', 'canWiden']), target: 'tendering', actions: 'excludeDecliners' },
          { guard: 'noBids', target: 'unschedulable', actions: 'recordUnschedulable' },
          { target: 'awarding', actions: 'selectAwardees' }
        ]
      },
      on: {
        'bid.received': { guard: 'bidAcceptable', actions: 'recordBid' },
        'bid.declined': { guard: 'declineAcceptable', actions: 'recordDecline' }
      }
    },
    awarding: {
      invoke: {
        src: 'publishAward',
        input: ({ context }) => awardMessage(context),
        onDone: 'confirming',
        onError: { target: 'failed', actions: 'recordPublishError' }
      },
      on: {
        'replica.started': { guard: 'fromPendingAwardee', actions: 'recordStarted' },
        'replica.failed': { guard: 'fromPendingAwardee', actions: 'recordFailed' }
      }
    },
    confirming: {
      always: [
        { guard: and(['allAwardeesAnswered', 'nothingMissing']), target: 'placed' },
        { guard: and(['allAwardeesAnswered', 'attemptsLeft']), target: 'tendering', actions: 'excludeAwardees' },
        { guard: 'allAwardeesAnswered', target: 'failed', actions: 'recordPlacementFailure' }
      ],
      after: {
        confirmTimeout: [
          { guard: 'attemptsLeft', target: 'tendering', actions: ['markSilentAwardeesFailed', 'excludeAwardees'] },
          { target: 'failed', actions: ['markSilentAwardeesFailed', 'recordPlacementFailure'] }
        ]
      },
      on: {
        'replica.started': { guard: 'fromPendingAwardee', actions: 'recordStarted' },
        'replica.failed': { guard: 'fromPendingAwardee', actions: 'recordFailed' }
      }
    },
    placed: { type: 'final', entry: 'setStatusPlaced' },
    unschedulable: { type: 'final', entry: 'setStatusUnschedulable' },
    failed: { type: 'final', entry: 'setStatusFailed' },
    cancelled: { type: 'final', entry: 'setStatusCancelled' }
  },
  output: ({ context }) => ({
    status: context.status ?? 'failed',
    placed: [...context.confirmed].sort((a, b) => a.replica - b.replica),
    ...(context.error != null ? { reason: context.error } : {}),
    attempts: context.attempt
  })
})
