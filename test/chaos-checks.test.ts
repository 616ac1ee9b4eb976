/**
 * The chaos run's checks (chaos/checks.ts) over fabricated records: each
 * passes on a good run and fails on the bad record it exists to catch (a
 * lost acknowledgement, one seq acknowledged by two owners, a deposed owner
 * still acknowledging, a missing replica, a queue event handled twice, a
 * fault that never recovered). No processes.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { checkLostAcks, checkQueueDuplicates, checkRecovery, checkReplicas, checkTwoOwners, type AckRecord, type FinalMachine, type FinalView, type HandledRecord, type OwnershipSample } from '../chaos/checks.js'
import { makeSchedule } from '../chaos/schedule.js'

const A = 'peer-aaaaaaaaaaaaaaaa'
const B = 'peer-bbbbbbbbbbbbbbbb'
const C = 'peer-cccccccccccccccc'
const W = 'chaos-counter-a'

/** Acks for ids e0..e(n-1) at seqs 1..n, owner A at epoch 1 until `failAt`, then B at epoch 2. */
function goodAcks (n = 10, failAt = 5): AckRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const t = 1000 + i * 100
    return { workload: W, id: `e${i}`, seq: i + 1, epoch: i < failAt ? 1 : 2, owner: i < failAt ? A : B, duplicate: false, attemptAt: t, ackAt: t + 20 }
  })
}

function finalOf (acks: AckRecord[], count = new Set(acks.map(a => a.id)).size): FinalMachine {
  const fresh = acks.filter(a => !a.duplicate)
  return { workload: W, count, reports: [`${B}@2#${count}`, `${B}@2#${count}`], trace: [{ seq: 0 }, ...fresh.map(a => ({ seq: a.seq, id: a.id }))] }
}

const oneOwnerViews = (owner = B, epoch = 2): FinalView[] => [A, B, C].map(observer => ({ workload: W, observer, desired: 1, running: [{ replica: 0, peerId: owner, epoch }] }))

test('lost acks: passes when the count equals the distinct acknowledged ids and each is in the history', () => {
  const acks = goodAcks()
  // A retried send answered as a duplicate does not count twice.
  acks.push({ ...acks[3]!, duplicate: true, attemptAt: 5000, ackAt: 5010 })
  const r = checkLostAcks(acks, [finalOf(acks)])
  assert.ok(r.pass, r.summary)
  assert.is(r.details.lost, 0)
})

test('lost acks: fails when an acknowledged event is missing from the final state', () => {
  const acks = goodAcks()
  // The history lost e7: the final count is one short and the trace lacks it.
  const final = finalOf(acks.filter(a => a.id !== 'e7'))
  const r = checkLostAcks(acks, [final])
  assert.not.ok(r.pass)
  assert.is(r.details.lost, 1)
  assert.equal((r.details.workloads as Record<string, { missing: string[] }>)[W]!.missing, ['e7'])
  assert.match(r.summary, /1 lost/)
})

test('lost acks: fails when the nodes disagree on the final state, or a send stayed unresolved', () => {
  const acks = goodAcks()
  const split = { ...finalOf(acks), reports: [`${B}@2#10`, `${A}@1#6`] }
  assert.not.ok(checkLostAcks(acks, [split]).pass)
  assert.not.ok(checkLostAcks(acks, [finalOf(acks)], { unresolved: [{ workload: W, id: 'e99' }] }).pass)
  assert.not.ok(checkLostAcks(acks, []).pass, 'no final state at all')
})

test('two owners: passes on a clean failover (epoch 1 then epoch 2, one owner at the end)', () => {
  const acks = goodAcks()
  const samples: OwnershipSample[] = [
    { round: 0, at: 1000, workload: W, replica: 0, peerId: A, epoch: 1, status: 'running' },
    // A deposed owner still showing running at a lower epoch in the same round is not two owners.
    { round: 1, at: 1600, workload: W, replica: 0, peerId: A, epoch: 1, status: 'running' },
    { round: 1, at: 1600, workload: W, replica: 0, peerId: B, epoch: 2, status: 'running' },
    { round: 2, at: 1800, workload: W, replica: 0, peerId: B, epoch: 2, status: 'running' }
  ]
  const r = checkTwoOwners(acks, samples, oneOwnerViews(), [W])
  assert.ok(r.pass, JSON.stringify(r.details))
  assert.is(r.details.overlappingRounds, 1)
})

test('two owners: fails when one seq is acknowledged for two ids by two owners', () => {
  const acks = goodAcks()
  acks.push({ workload: W, id: 'x1', seq: 7, epoch: 1, owner: A, duplicate: false, attemptAt: 1650, ackAt: 1660 })
  const r = checkTwoOwners(acks, [], oneOwnerViews(), [W])
  assert.not.ok(r.pass)
  assert.match(String((r.details.violations as string[])[0]), /seq 7 acknowledged/)
})

test('two owners: fails when one id is applied at two seqs', () => {
  const acks = goodAcks()
  acks.push({ ...acks[2]!, seq: 11, epoch: 2, owner: B, attemptAt: 2100, ackAt: 2110 })
  assert.not.ok(checkTwoOwners(acks, [], oneOwnerViews(), [W]).pass)
})

test('two owners: fails when the deposed owner acknowledges after the new owner did', () => {
  const acks = goodAcks()
  // Sent at 1900, after B's first epoch-2 ack (1520), yet acknowledged by A at epoch 1 (on a seq of its own).
  acks.push({ workload: W, id: 'late', seq: 20, epoch: 1, owner: A, duplicate: false, attemptAt: 1900, ackAt: 1910 })
  const r = checkTwoOwners(acks, [], oneOwnerViews(), [W])
  assert.not.ok(r.pass)
  assert.match(String((r.details.violations as string[]).join('\n')), /after …bbbbbbbb had acknowledged/)
})

test('two owners: fails when two nodes report running at the same epoch, or the end shows two owners', () => {
  const acks = goodAcks()
  const same: OwnershipSample[] = [
    { round: 4, at: 2000, workload: W, replica: 0, peerId: B, epoch: 2, status: 'running' },
    { round: 4, at: 2000, workload: W, replica: 0, peerId: C, epoch: 2, status: 'running' }
  ]
  assert.not.ok(checkTwoOwners(acks, same, oneOwnerViews(), [W]).pass)
  const split = [...oneOwnerViews().slice(0, 2), { workload: W, observer: C, desired: 1, running: [{ replica: 0, peerId: A, epoch: 1 }] }]
  assert.not.ok(checkTwoOwners(acks, [], split, [W]).pass)
})

test('replicas: passes when every node shows every ordinal on live distinct nodes; fails on a missing replica', () => {
  const q = 'chaos-consumer'
  const full = (observer: string): FinalView => ({ workload: q, observer, desired: 3, running: [{ replica: 0, peerId: A, epoch: 1 }, { replica: 1, peerId: B, epoch: 3 }, { replica: 2, peerId: C, epoch: 1 }] })
  const good = checkReplicas([full(A), full(B), full(C)], [A, B, C], [{ workload: q, desired: 3 }])
  assert.ok(good.pass, good.summary)
  // Replica 2 is missing on one node's view.
  const missing = { ...full(C), running: full(C).running.slice(0, 2) }
  const bad = checkReplicas([full(A), full(B), missing], [A, B, C], [{ workload: q, desired: 3 }])
  assert.not.ok(bad.pass)
  assert.match(bad.summary, /chaos-consumer NO/)
  // A replica on a dead node does not count.
  assert.not.ok(checkReplicas([full(A), full(B)], [A, B], [{ workload: q, desired: 3 }]).pass)
  // Two replicas on one node do not count as two.
  const doubled = (observer: string): FinalView => ({ ...full(observer), running: [{ replica: 0, peerId: A, epoch: 1 }, { replica: 1, peerId: A, epoch: 2 }, { replica: 2, peerId: C, epoch: 1 }] })
  assert.not.ok(checkReplicas([doubled(A), doubled(C)], [A, C], [{ workload: q, desired: 3 }]).pass)
})

test('queue duplicates: none on a clean run; an event handled by two replicas fails unless allowed; retries after failure are not duplicates', () => {
  const h = (id: string, n: number, replica: number, node: string, attempt = 1): HandledRecord => ({ id, n, replica, node, epoch: 1, attempt, ts: 1 })
  const published = [0, 1, 2].map(n => ({ n, id: `m${n}`, at: n }))
  const clean = [h('m0', 0, 0, A), h('m1', 1, 1, B), h('m2', 2, 2, C), h('m2', 2, 2, C, 2)]
  const ok = checkQueueDuplicates(clean, published)
  assert.ok(ok.pass, ok.summary)
  assert.is(ok.details.duplicateCount, 0)
  const twice = [...clean, h('m1', 1, 0, A)]
  const bad = checkQueueDuplicates(twice, published)
  assert.not.ok(bad.pass)
  assert.is(bad.details.duplicateCount, 1)
  assert.ok(checkQueueDuplicates(twice, published, { allowDuplicates: true }).pass)
  // Never handled: reported, not failing.
  const lost = checkQueueDuplicates(clean.slice(0, 2), published)
  assert.ok(lost.pass)
  assert.is(lost.details.unhandledCount, 1)
  // Nothing handled at all is no pass: the handlers' records went missing.
  assert.not.ok(checkQueueDuplicates([], published).pass)
})

test('recovery: fails when a fault did not recover within its bound', () => {
  const f = { index: 1, kind: 'kill-owner', target: 'node 3', at: 0, measure: 'kill → first ack', boundMs: 30_000 }
  assert.ok(checkRecovery([{ ...f, recoveredMs: 1200 }]).pass)
  assert.not.ok(checkRecovery([{ ...f, recoveredMs: null }]).pass)
  assert.not.ok(checkRecovery([{ ...f, recoveredMs: 45_000 }]).pass)
  assert.not.ok(checkRecovery([]).pass, 'a run without faults proves nothing')
})

test('schedule: the same seed gives the same schedule; it has ≥5 kills (≥2 of owners), a partition and its heal', () => {
  const a = makeSchedule(42, ['x', 'y', 'z'], 'q')
  assert.equal(a, makeSchedule(42, ['x', 'y', 'z'], 'q'))
  assert.is.not(JSON.stringify(a), JSON.stringify(makeSchedule(43, ['x', 'y', 'z'], 'q')))
  assert.ok(a.steps.filter(s => s.kind.startsWith('kill')).length >= 5)
  assert.ok(a.steps.filter(s => s.kind === 'kill-owner').length >= 2)
  assert.ok(a.steps.some(s => s.kind === 'partition') && a.steps.some(s => s.kind === 'heal'))
})

test.run()
