import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createActor, fromPromise, SimulatedClock } from 'xstate'
import { evaluate, type NodeOffer, type PlacementRequest } from '../../src/machines/placement.js'
import {
  schedulerMachine,
  type AwardMessage,
  type SchedulerInput,
  type TenderMessage, type TenderReach
} from '../../src/machines/scheduler-machine.js'

const Gi = 1024 * 1024 * 1024
const WINDOW = 500
const CONFIRM = 5000

function input (over: Partial<SchedulerInput> = {}): SchedulerInput {
  return {
    tenderId: 't-1',
    workloadId: 'default/orders',
    resources: { cpuMillis: 100, memoryBytes: Gi },
    nodeSelector: {},
    replicas: 1,
    exclude: [],
    epoch: 7,
    windowMs: WINDOW,
    confirmTimeoutMs: CONFIRM,
    maxAttempts: 3,
    seed: 'seed',
    ...over
  }
}

interface Harness {
  actor: ReturnType<typeof createActor<typeof schedulerMachine>>
  clock: SimulatedClock
  tenders: TenderMessage[]
  awards: AwardMessage[]
}

function start (over: Partial<SchedulerInput> = {}, publishTender?: (m: TenderMessage) => Promise<void>): Harness {
  const tenders: TenderMessage[] = []
  const awards: AwardMessage[] = []
  const clock = new SimulatedClock()
  const machine = schedulerMachine.provide({
    actors: {
      // Resolving with nothing: the tender reached every live node (`expectedResponders`), as a broadcast would.
      publishTender: fromPromise<TenderReach | undefined, TenderMessage>(async ({ input }) => {
        tenders.push(input)
        if (publishTender != null) await publishTender(input)
        return undefined
      }),
      publishAward: fromPromise<void, AwardMessage>(async ({ input }) => { awards.push(input) })
    }
  })
  const actor = createActor(machine, { input: input(over), clock }).start()
  return { actor, clock, tenders, awards }
}

/** Lets the fake publish promises settle. */
async function flush (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 0))
}

function state (h: Harness): unknown {
  return h.actor.getSnapshot().value
}

async function closeWindow (h: Harness): Promise<void> {
  h.clock.increment(WINDOW)
  await flush()
}

test('happy path: 2 replicas from 3 bids → the 2 best are awarded in ordinal order, then placed', async () => {
  const h = start({ replicas: 2, ordinals: [1, 4] })
  await flush()
  assert.is(state(h), 'collecting')
  assert.equal(h.tenders, [{
    type: 'tender',
    tenderId: 't-1',
    workloadId: 'default/orders',
    epoch: 7,
    attempt: 1,
    resources: { cpuMillis: 100, memoryBytes: Gi },
    nodeSelector: {},
    replicas: 2,
    exclude: [],
    windowMs: WINDOW
  }])
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 40 })
  h.actor.send({ type: 'bid.received', peerId: 'b', score: 90 })
  h.actor.send({ type: 'bid.received', peerId: 'c', score: 70 })
  h.clock.increment(WINDOW - 1)
  await flush()
  assert.is(state(h), 'collecting', 'the window is still open')
  assert.is(h.awards.length, 0)
  h.clock.increment(1)
  await flush()
  assert.is(state(h), 'confirming')
  assert.equal(h.awards, [{
    type: 'award',
    tenderId: 't-1',
    workloadId: 'default/orders',
    epoch: 7,
    attempt: 1,
    awards: [{ peerId: 'b', replica: 1 }, { peerId: 'c', replica: 4 }]
  }])
  h.actor.send({ type: 'replica.started', peerId: 'a' })
  h.actor.send({ type: 'replica.started', peerId: 'c' })
  assert.is(state(h), 'confirming', 'a non-awardee does not count, one awardee still pending')
  h.actor.send({ type: 'replica.started', peerId: 'b' })
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.equal(s.output, { status: 'placed', placed: [{ peerId: 'b', replica: 1 }, { peerId: 'c', replica: 4 }], attempts: 1 })
})

test('no bids, only declines → unschedulable, naming the reasons', async () => {
  const h = start({ workloadId: 'default/big', resources: { cpuMillis: 100, memoryBytes: 8 * Gi }, nodeSelector: { zone: 'eu' } })
  await flush()
  const req: PlacementRequest = { workloadId: 'default/big', resources: { cpuMillis: 100, memoryBytes: 8 * Gi }, nodeSelector: { zone: 'eu' }, exclude: [] }
  const offers: NodeOffer[] = [
    { peerId: '12D3KooWSmallNodeOne111111', labels: { zone: 'eu' }, capacity: { cpuMillis: 2000, memoryBytes: 2 * Gi }, allocated: { cpuMillis: 0, memoryBytes: Gi }, uptimeMs: 0, hosts: [] },
    { peerId: '12D3KooWFarAwayNode222222', labels: { zone: 'us' }, capacity: { cpuMillis: 2000, memoryBytes: 64 * Gi }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 0, hosts: [] }
  ]
  for (const o of offers) {
    const e = evaluate(o, req)
    assert.is(e.ok, false)
    if (!e.ok) h.actor.send({ type: 'bid.declined', peerId: o.peerId, rejections: e.rejections })
  }
  await closeWindow(h)
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.is(s.output?.status, 'unschedulable')
  assert.is(s.output?.reason, '0/2 nodes can host default/big: 1 × insufficient memory (node 12D3…111111: needs 8Gi, 1Gi free of 2Gi), 1 × label zone=eu not matched')
  assert.equal(s.output?.placed, [])
  assert.is(h.awards.length, 0)
})

test('an awardee fails → re-tender excluding it, then placed', async () => {
  const h = start()
  await flush()
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 50 })
  h.actor.send({ type: 'bid.received', peerId: 'b', score: 80 })
  await closeWindow(h)
  assert.equal(h.awards[0]?.awards, [{ peerId: 'b', replica: 0 }])
  h.actor.send({ type: 'replica.failed', peerId: 'b', reason: 'bundle sha256 mismatch' })
  await flush()
  assert.is(state(h), 'collecting')
  assert.is(h.tenders.length, 2)
  assert.is(h.tenders[1]?.attempt, 2)
  assert.is(h.tenders[1]?.replicas, 1)
  assert.equal(h.tenders[1]?.exclude, ['b'])
  h.actor.send({ type: 'bid.received', peerId: 'b', score: 99 })
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 50, attempt: 1 })
  assert.equal(h.actor.getSnapshot().context.bids, [], 'an excluded peer and a stale attempt do not bid')
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 50, attempt: 2 })
  await closeWindow(h)
  assert.equal(h.awards[1]?.awards, [{ peerId: 'a', replica: 0 }])
  h.actor.send({ type: 'replica.started', peerId: 'a' })
  const s = h.actor.getSnapshot()
  assert.equal(s.output, { status: 'placed', placed: [{ peerId: 'a', replica: 0 }], attempts: 2 })
  assert.equal(s.context.failed, [{ peerId: 'b', reason: 'bundle sha256 mismatch' }])
})

test('silence after the award → re-tender for the missing replica after confirmTimeout', async () => {
  const h = start({ replicas: 2 })
  await flush()
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 90 })
  h.actor.send({ type: 'bid.received', peerId: 'b', score: 80 })
  await closeWindow(h)
  assert.equal(h.awards[0]?.awards, [{ peerId: 'a', replica: 0 }, { peerId: 'b', replica: 1 }])
  h.actor.send({ type: 'replica.started', peerId: 'a' })
  h.clock.increment(CONFIRM - 1)
  await flush()
  assert.is(state(h), 'confirming')
  h.clock.increment(1)
  await flush()
  assert.is(state(h), 'collecting')
  assert.is(h.tenders[1]?.replicas, 1)
  assert.equal(h.tenders[1]?.exclude, ['a', 'b'], 'the silent peer and the one now hosting are excluded')
  assert.equal(h.actor.getSnapshot().context.failed, [{ peerId: 'b', reason: `no confirmation within ${CONFIRM}ms` }])
  h.actor.send({ type: 'replica.started', peerId: 'b' })
  assert.equal(h.actor.getSnapshot().context.confirmed, [{ peerId: 'a', replica: 0 }], 'a late confirmation no longer counts')
  h.actor.send({ type: 'bid.received', peerId: 'c', score: 10 })
  await closeWindow(h)
  assert.equal(h.awards[1]?.awards, [{ peerId: 'c', replica: 1 }])
  h.actor.send({ type: 'replica.started', peerId: 'c' })
  assert.equal(h.actor.getSnapshot().output, { status: 'placed', placed: [{ peerId: 'a', replica: 0 }, { peerId: 'c', replica: 1 }], attempts: 2 })
})

test('attempts exhausted → failed with the last failures', async () => {
  const h = start({ maxAttempts: 2 })
  await flush()
  h.actor.send({ type: 'bid.received', peerId: '12D3KooWFirstPeer000001', score: 50 })
  await closeWindow(h)
  h.actor.send({ type: 'replica.failed', peerId: '12D3KooWFirstPeer000001', reason: 'out of memory' })
  await flush()
  h.actor.send({ type: 'bid.received', peerId: '12D3KooWSecondPeer000002', score: 50 })
  await closeWindow(h)
  h.clock.increment(CONFIRM)
  await flush()
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.equal(s.output, {
    status: 'failed',
    placed: [],
    reason: `placed 0 of 1 replicas of default/orders in 2 attempts: 12D3…000002: no confirmation within ${CONFIRM}ms`,
    attempts: 2
  })
  assert.is(h.tenders.length, 2)
})

test('fewer bids than replicas → award what bid, re-tender for the rest, fail when nobody else can', async () => {
  const h = start({ replicas: 3, maxAttempts: 1 })
  await flush()
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 50 })
  await closeWindow(h)
  assert.equal(h.awards[0]?.awards, [{ peerId: 'a', replica: 0 }])
  h.actor.send({ type: 'replica.started', peerId: 'a' })
  const s = h.actor.getSnapshot()
  assert.equal(s.output, {
    status: 'failed',
    placed: [{ peerId: 'a', replica: 0 }],
    reason: 'placed 1 of 3 replicas of default/orders in 1 attempt: 1 bid for 3 missing replicas',
    attempts: 1
  })
})

test('cancel → cancelled, and no timer fires afterwards', async () => {
  const h = start()
  await flush()
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 50 })
  h.actor.send({ type: 'tender.cancelled', reason: 'workload deleted' })
  await closeWindow(h)
  const s = h.actor.getSnapshot()
  assert.equal(s.output, { status: 'cancelled', placed: [], reason: 'workload deleted', attempts: 1 })
  assert.is(h.awards.length, 0)
})

test('expectedResponders closes bidding once everyone answered; answers before the publish settles count', async () => {
  const h = start({ expectedResponders: 3 })
  h.actor.send({ type: 'bid.received', peerId: 'a', score: 30 })
  assert.is(state(h), 'tendering')
  await flush()
  h.actor.send({ type: 'bid.declined', peerId: 'b', rejections: [{ peerId: 'b', filter: 'cpu', reason: 'insufficient cpu: needs 100m, 0m free of 1000m' }] })
  h.actor.send({ type: 'bid.received', peerId: 'b', score: 20 })
  assert.is(state(h), 'collecting', 'a peer that changes its answer counts once')
  h.actor.send({ type: 'bid.received', peerId: 'c', score: 60 })
  await flush()
  assert.is(state(h), 'confirming', 'no need to wait for the window')
  assert.equal(h.awards[0]?.awards, [{ peerId: 'c', replica: 0 }])
})

test('a tender that cannot be published → failed with the cause', async () => {
  const h = start({}, async () => { throw new Error('no peers subscribed') })
  await flush()
  assert.equal(h.actor.getSnapshot().output, { status: 'failed', placed: [], reason: 'could not publish: no peers subscribed', attempts: 1 })
})

test('invalid input → failed without tendering', async () => {
  const h = start({ replicas: 2, ordinals: [0, 0] })
  await flush()
  assert.equal(h.actor.getSnapshot().output, { status: 'failed', placed: [], reason: 'invalid tender: ordinals must be distinct', attempts: 0 })
  assert.is(h.tenders.length, 0)
})

test('equal bids: the seed decides, and the same seed decides the same way', async () => {
  async function winner (seed: string): Promise<string | undefined> {
    const h = start({ seed })
    await flush()
    for (const p of ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']) h.actor.send({ type: 'bid.received', peerId: p, score: 50 })
    await closeWindow(h)
    return h.awards[0]?.awards[0]?.peerId
  }
  const seen = new Set<string | undefined>()
  for (let i = 0; i < 12; i++) {
    const w = await winner(`seed-${i}`)
    assert.is(await winner(`seed-${i}`), w)
    seen.add(w)
  }
  assert.ok(seen.size > 1, 'different seeds pick different winners')
})

test.run()
