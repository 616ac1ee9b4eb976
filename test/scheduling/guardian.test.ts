/**
 * The guardian (src/scheduling/guardian.ts) with a fake mesh view, a fake
 * tenderer and a clock the test moves: the first-ranked guardian re-tenders a
 * missing replica at once, a backup only after its delay, a Pending record is
 * left to a live tenderer, and a record whose replicas all run is adopted.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { guardians } from '../../src/machines/placement.js'
import type { SchedulerOutput } from '../../src/machines/scheduler-machine.js'
import { BACKUP_GUARDIAN_MS, BACKUP_GUARDIAN_SLOW_MS, DEGRADED_RETRY_MS, Guardian } from '../../src/scheduling/guardian.js'
import type { LocalCopy } from '../../src/scheduling/status.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { WorkloadSpec } from '../../src/workloads/types.js'
import { A, B, C, Clock, FakeView, SELF, catalog, record, remote, spec, until } from './fakes.js'

const TIMEOUT = 3_500

/** A workload name whose guardians, among `live`, rank this node at `rank`. */
function nameRanked (rank: number, live: string[]): string {
  for (let i = 0; i < 10_000; i++) {
    if (guardians(`default/w${i}`, live, 3).indexOf(SELF) === rank) return `w${i}`
  }
  throw new Error(`no name ranks ${SELF} at ${rank}`)
}

interface Run { id: string, epoch: number, ordinals: number[], exclude: string[] }

function harness (live: string[], output: (run: Run) => SchedulerOutput = run => ({ status: 'placed', placed: run.ordinals.map(replica => ({ peerId: C, replica })), attempts: 1 })) {
  const clock = new Clock()
  const { catalog: c, mesh } = catalog(clock)
  const view = new FakeView()
  view.live = new Set([SELF, ...live])
  const local: LocalCopy[] = []
  const runs: Run[] = []
  const later: Array<{ at: number, fn: () => void }> = []
  const guardian = new Guardian({
    selfId: SELF,
    log: silentLogger,
    catalog: c,
    view,
    copies: id => local.filter(l => l.spec.id === id),
    tenderer: {
      isTendering: () => false,
      run: async (s: WorkloadSpec, epoch, ordinals, exclude) => { const run = { id: s.id, epoch, ordinals, exclude }; runs.push(run); return output(run) }
    },
    heartbeatTimeoutMs: TIMEOUT,
    now: clock.now,
    later: (fn, ms) => { later.push({ at: clock.t + ms, fn }) }
  })
  /** Moves the clock and runs the rechecks that fell due. */
  const advance = (ms: number): void => {
    clock.advance(ms)
    for (const l of later.splice(0).filter(x => { if (x.at > clock.t) { later.push(x); return false } return true })) l.fn()
  }
  return { guardian, catalog: c, mesh, view, local, runs, clock, advance, later }
}

/** A Running record of two replicas, on A (alive, heartbeating it) and B (gone), heard long enough ago. */
function lostOnB (h: ReturnType<typeof harness>, name: string): WorkloadSpec {
  const s = spec({ name })
  h.catalog.merge(record(s, { placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }], updatedBy: A }))
  h.view.remote.set(s.id, [remote(A, 0), remote(B, 1)])
  h.view.live.delete(B)
  h.clock.advance(TIMEOUT + 1)
  return s
}

test('the first-ranked guardian re-tenders a missing replica at the next epoch, excluding the hosts of the others', async () => {
  const h = harness([A])
  const s = lostOnB(h, nameRanked(0, [SELF, A]))
  h.guardian.guard()
  await until(() => h.runs.length === 1, 'a tender')
  assert.equal(h.runs[0], { id: s.id, epoch: 2, ordinals: [1], exclude: [A] })
  await until(() => h.catalog.get(s.id)?.status === 'Running' && h.catalog.get(s.id)?.epoch === 2, 'the healed record')
  assert.equal(h.catalog.get(s.id)!.placement.map(p => `${p.replica}@${p.peerId}`), [`0@${A}`, `1@${C}`])
  assert.equal(h.catalog.get(s.id)!.events.map(e => e.reason), ['ReplicaLost', 'Rescheduled'])
  // The Degraded record of the tender in flight was gossiped, not put.
  assert.equal(h.mesh.gossiped.map(m => m.type === 'record' ? m.record.status : m.type), ['Degraded', 'Running'])
})

test('a backup guardian waits its turn (slow step after a heartbeat timeout, fast after a dropped connection)', async () => {
  const slow = harness([A, C])
  lostOnB(slow, nameRanked(1, [SELF, A, C]))
  slow.guardian.guard()
  assert.is(slow.runs.length, 0)
  assert.is(slow.later.length, 1)
  slow.advance(BACKUP_GUARDIAN_SLOW_MS - 100)
  assert.is(slow.runs.length, 0)
  slow.advance(200)
  await until(() => slow.runs.length === 1, 'the backup\'s tender')

  const fast = harness([A, C])
  lostOnB(fast, nameRanked(1, [SELF, A, C]))
  fast.view.disconnected.add(B)
  fast.guardian.guard()
  assert.is(fast.runs.length, 0)
  fast.advance(BACKUP_GUARDIAN_MS + 20)
  await until(() => fast.runs.length === 1, 'the backup\'s tender')
})

test('a backup leaves a heal in flight (a Degraded record just written) to its writer, but not a Running record its writer finished', async () => {
  const setup = (status: 'Running' | 'Degraded'): ReturnType<typeof harness> => {
    const h = harness([A, C])
    const s = spec({ name: nameRanked(1, [SELF, A, C]) })
    // A wrote the record a moment ago (its last heal, or the heal it is running now); then B's connection dropped.
    h.catalog.merge(record(s, { status, placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }], updatedBy: A }))
    h.view.remote.set(s.id, [remote(A, 0), remote(B, 1)])
    h.view.live.delete(B)
    h.view.disconnected.add(B)
    h.guardian.guard()
    h.advance(BACKUP_GUARDIAN_MS + 20)
    return h
  }
  const done = setup('Running')
  await until(() => done.runs.length === 1, 'the backup\'s tender')
  const inFlight = setup('Degraded')
  await new Promise(resolve => setImmediate(resolve))
  assert.is(inFlight.runs.length, 0)
})

test('a node that ranks fourth or lower does nothing', async () => {
  const live = [A, C, '12D3KooWDdddDdddDdddDddd', '12D3KooWEeeeEeeeEeeeEeee']
  const h = harness(live)
  lostOnB(h, nameRanked(-1, [SELF, ...live]))
  h.guardian.guard()
  h.advance(10_000)
  assert.is(h.runs.length, 0)
})

test('a Pending record is left to its live tenderer; taken over once that tenderer is gone', async () => {
  const h = harness([A])
  const s = spec({ name: nameRanked(0, [SELF, A]) })
  h.catalog.merge(record(s, { status: 'Pending', updatedBy: A }))
  h.clock.advance(TIMEOUT + 1)
  h.guardian.guard()
  assert.is(h.runs.length, 0)
  h.view.live.delete(A)
  h.guardian.guard()
  await until(() => h.runs.length === 1, 'the guardian\'s tender')
  assert.equal(h.runs[0]!.ordinals, [0, 1])
  assert.match(h.catalog.get(s.id)!.events[0]!.message, 'stopped answering during the tender')
})

test('a new placement is given a heartbeat timeout to show up before it counts as missing', () => {
  const h = harness([A, B])
  const s = spec({ name: nameRanked(0, [SELF, A, B]) })
  h.catalog.merge(record(s, { placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }] }))
  h.guardian.guard()
  assert.is(h.runs.length, 0)
})

test('a failed heal leaves the record Degraded and is retried only after DEGRADED_RETRY_MS', async () => {
  const h = harness([A], () => ({ status: 'unschedulable', placed: [], reason: 'no node fits', attempts: 1 }))
  const s = lostOnB(h, nameRanked(0, [SELF, A]))
  h.guardian.guard()
  await until(() => h.catalog.get(s.id)?.events.at(-1)?.reason === 'FailedScheduling', 'the failed heal')
  assert.is(h.catalog.get(s.id)!.status, 'Degraded')
  h.clock.advance(TIMEOUT + 1)
  h.guardian.guard()
  assert.is(h.runs.length, 1)
  h.clock.advance(DEGRADED_RETRY_MS)
  h.guardian.guard()
  await until(() => h.runs.length === 2, 'the retry')
})

test('every replica running: a Degraded record is adopted as Running, with no tender', () => {
  const h = harness([A, B])
  const s = spec({ name: nameRanked(0, [SELF, A, B]) })
  h.catalog.merge(record(s, { status: 'Degraded', placement: [{ peerId: A, replica: 0, epoch: 1 }] }))
  h.view.remote.set(s.id, [remote(A, 0), remote(B, 1)])
  h.clock.advance(TIMEOUT + 1)
  h.guardian.guard()
  assert.is(h.runs.length, 0)
  assert.is(h.catalog.get(s.id)!.status, 'Running')
  assert.equal(h.catalog.get(s.id)!.placement.map(p => p.peerId), [A, B])
})

test('liveReplicas: the newest copy of each ordinal, this node\'s first; failed copies do not count', () => {
  const h = harness([A])
  const s = spec()
  h.local.push({ kind: 'replica', spec: s, replica: 0, epoch: 2, status: 'running', handled: 0, failures: 0 })
  h.local.push({ kind: 'replica', spec: s, replica: 1, epoch: 2, status: 'failed', handled: 0, failures: 0 })
  h.view.remote.set(s.id, [remote(A, 0, 1), remote(A, 1, 1), remote(B, 1, 3, 'failed')])
  assert.equal(h.guardian.liveReplicas(s.id), [{ peerId: SELF, replica: 0, epoch: 2 }, { peerId: A, replica: 1, epoch: 1 }])
})

test.run()
