/**
 * The record lifecycle (src/scheduling/record-lifecycle.ts) and the status
 * view (src/scheduling/status.ts): pure functions, checked on plain records.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as lifecycle from '../../src/scheduling/record-lifecycle.js'
import { statusOf } from '../../src/scheduling/status.js'
import { A, B, C, SELF, copy, record, remote, spec } from './fakes.js'

const at = { now: 5_000, by: SELF }

test('an apply records the next epoch as Pending; a deleted workload starts a fresh history', () => {
  const s = spec()
  const first = lifecycle.tendering(s, undefined, at)
  assert.is(first.status, 'Pending')
  assert.is(first.epoch, 1)
  assert.is(first.updatedBy, SELF)
  assert.equal(first.events.map(e => e.reason), ['Tendering'])
  const old = record(s, { epoch: 4, status: 'Deleted', events: [lifecycle.event('Normal', 'Deleted', 'gone', 1)] })
  const again = lifecycle.tendering(s, old, at)
  assert.is(again.epoch, 5)
  assert.equal(again.events.map(e => e.reason), ['Tendering'])
  const running = record(s, { epoch: 2, events: [lifecycle.event('Normal', 'Scheduled', 'x', 1)] })
  assert.equal(lifecycle.tendering(s, running, at).events.map(e => e.reason), ['Scheduled', 'Tendering'])
})

test('placed is Running with the placement; unplaced is Unschedulable or Failed', () => {
  const pending = lifecycle.tendering(spec(), undefined, at)
  const placed = lifecycle.placed(pending, [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }], at)
  assert.is(placed.status, 'Running')
  assert.is(placed.placement.length, 2)
  assert.match(placed.events.at(-1)!.message, `replica 0 → ${A}`)
  assert.is(lifecycle.unplaced(pending, 'unschedulable', 'no node fits', at).status, 'Unschedulable')
  const failed = lifecycle.unplaced(pending, 'failed', 'did not start', at)
  assert.is(failed.status, 'Failed')
  assert.is(failed.events.at(-1)!.reason, 'FailedScheduling')
})

test('a lost replica moves a Running record to Degraded at the next epoch; an unplaced one keeps its status', () => {
  const running = record(spec(), { epoch: 3 })
  const lost = lifecycle.lost(running, `replica 1 on ${B} lost`, at)
  assert.is(lost.status, 'Degraded')
  assert.is(lost.epoch, 4)
  assert.is(lost.events.at(-1)!.reason, 'ReplicaLost')
  assert.is(lifecycle.lost(record(spec(), { status: 'Unschedulable' }), 'x', at).status, 'Unschedulable')
  assert.is(lifecycle.lost(record(spec(), { status: 'Pending' }), 'x', at).status, 'Pending')
  assert.is(lifecycle.healFailed(lost, false, 'no node', at).status, 'Degraded')
  assert.is(lifecycle.healFailed(record(spec(), { status: 'Failed' }), true, 'no node', at).status, 'Failed')
  const healed = lifecycle.healed(lost, [{ peerId: A, replica: 0, epoch: 3 }], [{ peerId: C, replica: 1, epoch: 4 }], at)
  assert.is(healed.status, 'Running')
  assert.equal(healed.placement.map(p => `${p.replica}@${p.peerId}`), [`0@${A}`, `1@${C}`])
  assert.is(healed.events.at(-1)!.reason, 'Rescheduled')
})

test('a guardian adopts a Pending record whose replicas all run, and says so', () => {
  const pending = record(spec(), { status: 'Pending', updatedBy: B })
  const adopted = lifecycle.adopted(pending, [{ peerId: A, replica: 0, epoch: 1 }, { peerId: C, replica: 1, epoch: 1 }], at)
  assert.is(adopted.status, 'Running')
  assert.is(adopted.events.at(-1)!.reason, 'Adopted')
  assert.is(lifecycle.adopted(record(spec(), { status: 'Degraded' }), [], at).events.length, 0)
})

test('rescaled, deleted, completed and machine failures', () => {
  const r = record(spec({ replicas: 3 }), { epoch: 2, placement: [0, 1, 2].map(i => ({ peerId: A, replica: i, epoch: 2 })) })
  const down = lifecycle.rescaled(r, spec({ replicas: 1 }), at)
  assert.is(down.epoch, 3)
  assert.equal(down.placement.map(p => p.replica), [0])
  assert.is(down.events.at(-1)!.message, 'replicas 3 → 1')
  assert.is(lifecycle.rescaled(r, spec({ replicas: 3, manifest: 'x' }), at).events.length, 0)
  const deleted = lifecycle.deleted(r, at)
  assert.is(deleted.status, 'Deleted')
  assert.is(deleted.epoch, 3)
  assert.equal(deleted.placement, [])
  assert.is(lifecycle.deletedElsewhere(r, 7, { now: 1, by: B }).updatedBy, B)
  const done = lifecycle.completed(record(spec({ kind: 'stateful', replicas: 1 })), 1, { total: 3 }, at)
  assert.is(done.status, 'Completed')
  assert.equal(done.output, { total: 3 })
  assert.is(lifecycle.machineFailed(r, 'boom', at).status, 'Failed')
})

test('container outcomes: kept per replica, Succeeded once all succeed, Failed once all ended and one failed', () => {
  const s = spec({ kind: 'container', topics: [], replicas: 2 })
  const r = record(s, { placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }] })
  const one = lifecycle.podEnded(r, 0, 1, { phase: 'Succeeded', reason: 'Completed', exitCode: 0 }, { now: 9, by: A })
  assert.is(one.status, 'Running')
  assert.equal([...lifecycle.endedReplicas(one)], [0])
  const both = lifecycle.podEnded(one, 1, 1, { phase: 'Succeeded', reason: 'Completed', exitCode: 0 }, { now: 10, by: B })
  assert.is(both.status, 'Succeeded')
  const failed = lifecycle.podEnded(one, 1, 1, { phase: 'Failed', reason: 'Error', exitCode: 2, message: 'oops' }, { now: 10, by: B })
  assert.is(failed.status, 'Failed')
  assert.match(failed.events.at(-1)!.message, 'exit code 2 (oops)')
})

test('same-epoch copies merge their outcomes; staleness and generations', () => {
  const s = spec({ kind: 'container', topics: [], replicas: 2 })
  const base = record(s, { placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }] })
  const fromA = lifecycle.podEnded(base, 0, 1, { phase: 'Succeeded', reason: 'Completed' }, { now: 10, by: A })
  const fromB = lifecycle.podEnded(base, 1, 1, { phase: 'Succeeded', reason: 'Completed' }, { now: 11, by: B })
  const merged = lifecycle.mergeOutcomes(fromB, fromA)
  assert.is(merged.status, 'Succeeded')
  assert.is(lifecycle.mergeOutcomes(fromA, base), fromA)
  assert.ok(lifecycle.isStale(record(s, { epoch: 3 }), 2))
  assert.ok(lifecycle.isStale(record(s, { epoch: 3, status: 'Deleted' }), 3))
  assert.not.ok(lifecycle.isStale(record(s, { epoch: 3 }), 3))
  assert.ok(lifecycle.sameSpec(spec({ replicas: 1, createdAt: 5 }), spec({ replicas: 4, createdAt: 9 })))
  assert.not.ok(lifecycle.sameSpec(spec(), spec({ artifact: { sha256: 'b'.repeat(64), size: 10 } })))
  const events = Array.from({ length: 40 }, (_, i) => lifecycle.event('Normal', 'E', String(i), i))
  assert.is(events.reduce((acc, e) => lifecycle.pushEvent(acc, e), [] as typeof events).length, lifecycle.MAX_EVENTS)
})

test('the status view: local copies first, then peers, then the plan; ready counts running copies', () => {
  const s = spec({ replicas: 3 })
  const r = record(s, { placement: [{ peerId: SELF, replica: 0, epoch: 1 }, { peerId: A, replica: 1, epoch: 1 }, { peerId: C, replica: 2, epoch: 1 }] })
  const view = statusOf(r, { selfId: SELF, local: [copy(s, 0)], remote: [remote(A, 1)], isLive: p => p !== C })
  assert.equal(view.placement.map(p => `${p.replica}:${p.peerId}:${p.status}`), [`0:${SELF}:running`, `1:${A}:running`, `2:${C}:lost`])
  assert.is(view.ready, 2)
  assert.is(view.status, 'Degraded')
  const all = statusOf(r, { selfId: SELF, local: [copy(s, 0)], remote: [remote(A, 1), remote(B, 2, 2)], isLive: () => true })
  assert.is(all.status, 'Running')
  assert.is(all.placement[2]!.peerId, B)
  // Scaled down: ordinals at or above the count are not shown.
  assert.is(statusOf({ ...r, spec: { ...s, replicas: 1 } }, { selfId: SELF, local: [copy(s, 0)], remote: [remote(A, 1)], isLive: () => true }).placement.length, 1)
  // A machine's copy wins over a stale stateless copy of the same ordinal, a container's over both.
  const mixed = statusOf(r, { selfId: SELF, local: [copy(s, 0, 1, { kind: 'container', status: 'starting' }), copy(s, 0, 1)], remote: [], isLive: () => true })
  assert.is(mixed.placement[0]!.status, 'starting')
})

test.run()
