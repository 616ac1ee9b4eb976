/**
 * The owner pipeline of a stateful workload as a pure state type: what each
 * event does, the effects it asks for, and its invariants under random
 * event sequences (seeded, so a failure replays).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { can, canApply, initialOwnerPipeline, MAX_INFLIGHT_BATCHES, next, type OwnerEffect, type OwnerPipeline, type OwnerPipelineEvent } from '../../src/machines/owner-pipeline.js'
import { seededRandom } from '../../src/random.js'

/** Runs events in order; returns the last state and the effects of each event. */
function run (events: OwnerPipelineEvent[], from: OwnerPipeline = initialOwnerPipeline): { state: OwnerPipeline, effects: OwnerEffect[][] } {
  let state = from
  const effects: OwnerEffect[][] = []
  for (const e of events) {
    const r = next(state, e)
    state = r.state
    effects.push(r.effects)
  }
  return { state, effects }
}

const types = (effects: OwnerEffect[] | undefined): string[] => (effects ?? []).map(e => e.type)

const running = (seq = 0): OwnerPipeline => run([{ type: 'owner.restored', seq }, { type: 'owner.started', final: false }]).state

test('an owner resumes at the recovered seq, and takes sends once its holders are chosen', () => {
  const { state, effects } = run([{ type: 'owner.restored', seq: 7 }, { type: 'owner.started', final: false }])
  assert.equal(state, { phase: 'running', applied: 7, durable: 7, inflight: 0, draining: false, completed: false })
  assert.equal(types(effects[1]), ['publishLocation', 'drain'])
})

test('nothing is applied while starting or once stopped', () => {
  assert.is(canApply(initialOwnerPipeline), false)
  assert.is(canApply(running()), true)
  const stopped = next(running(), { type: 'owner.stopped' }).state
  assert.is(stopped.phase, 'stopped')
  assert.is(canApply(stopped), false)
  assert.is(can(stopped, { type: 'drain.started' }), false, 'no drain loop starts on a stopped owner')
})

test('a machine restored in its final state completes at once', () => {
  const { effects } = run([{ type: 'owner.restored', seq: 3 }, { type: 'owner.started', final: true }])
  assert.equal(types(effects[1]), ['publishLocation', 'complete', 'drain'])
})

test('one drain loop at a time', () => {
  const s = next(running(), { type: 'drain.started' }).state
  assert.is(s.draining, true)
  const again = next(s, { type: 'drain.started' })
  assert.is(again.state, s, 'a second loop is not started')
  assert.equal(again.effects, [])
  assert.is(next(s, { type: 'drain.ended' }).state.draining, false)
})

test('at most MAX_INFLIGHT_BATCHES batches wait to be durable; a durable one makes room', () => {
  let s = running()
  for (let i = 1; i <= MAX_INFLIGHT_BATCHES; i++) {
    assert.ok(canApply(s))
    s = next(s, { type: 'batch.applied', lastSeq: i * 10 }).state
  }
  assert.is(s.inflight, MAX_INFLIGHT_BATCHES)
  assert.is(canApply(s), false)
  assert.is(can(s, { type: 'batch.applied', lastSeq: 1000 }), false, 'a fifth batch is not taken')
  s = next(s, { type: 'batch.durable', lastSeq: 10, completes: false, failed: false }).state
  assert.is(canApply(s), true)
  assert.equal({ applied: s.applied, durable: s.durable, inflight: s.inflight }, { applied: 40, durable: 10, inflight: MAX_INFLIGHT_BATCHES - 1 })
})

test('a batch is acknowledged only once durable, in order, and never beyond what was applied', () => {
  let s = running(5)
  s = next(s, { type: 'batch.applied', lastSeq: 8 }).state
  s = next(s, { type: 'batch.applied', lastSeq: 9 }).state
  assert.is(can(s, { type: 'batch.durable', lastSeq: 10, completes: false, failed: false }), false, 'seq 10 was never applied')
  assert.is(can(s, { type: 'batch.durable', lastSeq: 5, completes: false, failed: false }), false, 'seq 5 is durable already')
  const durable = next(s, { type: 'batch.durable', lastSeq: 8, completes: false, failed: false })
  assert.equal(types(durable.effects), ['acknowledge', 'drain'])
  assert.is(durable.state.durable, 8)
  assert.is(can(durable.state, { type: 'batch.durable', lastSeq: 8, completes: false, failed: false }), false, 'the same batch is not durable twice')
})

test('a batch that cannot be made durable while running makes the owner step down; once stopped, it is only refused', () => {
  const s = next(running(), { type: 'batch.applied', lastSeq: 1 }).state
  assert.equal(types(next(s, { type: 'batch.refused' }).effects), ['refuse', 'stepDown'])
  const stopped = next(s, { type: 'owner.stopped' }).state
  const r = next(stopped, { type: 'batch.refused' })
  assert.equal(types(r.effects), ['refuse'])
  assert.is(r.state.inflight, 0)
})

test('a batch begun while running is still counted if the owner stopped meanwhile, and a durable one is still acknowledged', () => {
  const stopped = next(running(), { type: 'owner.stopped' }).state
  const applied = next(stopped, { type: 'batch.applied', lastSeq: 1 }).state
  assert.is(applied.inflight, 1)
  assert.equal(types(next(applied, { type: 'batch.durable', lastSeq: 1, completes: false, failed: false }).effects), ['acknowledge', 'drain'])
})

test('the batch that takes the machine to its final state completes the workload once durable', () => {
  let s = running()
  s = next(s, { type: 'machine.done' }).state
  assert.is(s.completed, true)
  s = next(s, { type: 'batch.applied', lastSeq: 1 }).state
  assert.equal(types(next(s, { type: 'batch.durable', lastSeq: 1, completes: true, failed: false }).effects), ['acknowledge', 'complete'])
})

test('a batch ending in the machine\'s error state is acknowledged, then reported', () => {
  const s = next(running(), { type: 'batch.applied', lastSeq: 1 }).state
  assert.equal(types(next(s, { type: 'batch.durable', lastSeq: 1, completes: false, failed: true }).effects), ['acknowledge', 'reportFailure', 'drain'])
})


test('invariants hold under random event sequences', () => {
  for (let seed = 1; seed <= 200; seed++) {
    const rnd = seededRandom(seed)
    let s = initialOwnerPipeline
    /** Last seqs of the batches applied and not yet durable, oldest first (what the runtime would commit in order). */
    const batches: number[] = []
    for (let step = 0; step < 200; step++) {
      const pick = Math.floor(rnd() * 9)
      const event: OwnerPipelineEvent =
        pick === 0 ? { type: 'owner.restored', seq: Math.floor(rnd() * 5) }
          : pick === 1 ? { type: 'owner.started', final: rnd() < 0.1 }
            : pick === 2 ? (rnd() < 0.05 ? { type: 'owner.stopped' } : { type: 'drain.started' })
              : pick === 3 ? { type: 'drain.ended' }
                : pick === 4 ? { type: 'machine.done' }
                  : pick === 5 || pick === 6 ? { type: 'batch.applied', lastSeq: s.applied + 1 + Math.floor(rnd() * 3) }
                    : pick === 7 ? { type: 'batch.durable', lastSeq: batches[0] ?? s.durable + 1, completes: false, failed: false }
                      : { type: 'batch.refused' }
      const before = s
      const taken = can(s, event)
      s = next(s, event).state
      if (!taken) { assert.is(s, before, `seed ${seed}: an event not taken leaves the state as it is`); continue }
      if (event.type === 'batch.applied') batches.push(event.lastSeq)
      if (event.type === 'batch.durable' || event.type === 'batch.refused') batches.shift()
      const where = `seed ${seed} step ${step} ${JSON.stringify(event)} → ${JSON.stringify(s)}`
      assert.ok(s.durable <= s.applied, `durable <= applied: ${where}`)
      assert.ok(s.applied >= before.applied && s.durable >= before.durable, `seqs only go up: ${where}`)
      assert.ok(s.inflight >= 0 && s.inflight <= MAX_INFLIGHT_BATCHES, `inflight within bounds: ${where}`)
      assert.is(s.inflight, batches.length, `inflight counts the batches not yet settled: ${where}`)
      if (before.phase === 'stopped') assert.is(s.phase, 'stopped', `a stopped owner stays stopped: ${where}`)
      if (before.phase !== 'running' && event.type === 'drain.started') assert.unreachable(`a drain started outside running: ${where}`)
    }
  }
})

test.run()
