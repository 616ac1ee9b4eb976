/**
 * beemesh/testing: a recorded trace replays against its machine, `after`
 * timers fire on the simulated clock, invoked actors are not run, a changed
 * machine is reported at the right step with recorded and replayed state,
 * a pruned trace starts from its first entry, and malformed traces name
 * their line. Traces are written by hand in `beemesh trace export` format.
 */
import { AssertionError } from 'node:assert'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { assign, fromPromise, raise, setup } from 'xstate'
import { assertReplays, describeDivergence, InvalidTraceError, loadTrace, parseTrace, replayTrace, type Divergence, type ReplayResult, type TraceEntry, type TraceEvent } from '../../src/testing/index.js'
import { oneLineError } from '../helpers/expect.js'

const T0 = 1_764_000_000_000
const ALICE = '12D3KooWAlice'
const BOB = '12D3KooWBob'
const WORKLOAD = 'default/turnstile'

interface Turnstile { coins: number, passes: number }

/** examples/turnstile/turnstile.ts, with the parts a test changes as parameters. */
function turnstileMachine (change: { coinAdds?: number, coinTarget?: 'locked' | 'unlocked', delay?: number, pushHandled?: boolean, output?: (c: Turnstile) => unknown } = {}) {
  const delay = change.delay ?? 10_000
  return setup({
    types: {} as {
      context: Turnstile
      events: { type: 'coin' } | { type: 'push' } | { type: 'retire' }
    }
  }).createMachine({
    id: 'turnstile',
    initial: 'locked',
    context: { coins: 0, passes: 0 },
    states: {
      locked: {
        on: {
          coin: { target: change.coinTarget ?? 'unlocked', actions: assign({ coins: ({ context }) => context.coins + (change.coinAdds ?? 1) }) },
          retire: 'retired'
        }
      },
      unlocked: {
        on: change.pushHandled === false ? {} : { push: { target: 'locked', actions: assign({ passes: ({ context }) => context.passes + 1 }) } },
        after: { [delay]: 'locked' }
      },
      retired: { type: 'final' }
    },
    output: ({ context }) => (change.output ?? ((c: Turnstile) => ({ coins: c.coins, passes: c.passes })))(context)
  })
}

let sends = 0

/** A trace entry `at` ms after T0; `sent` adds sender and id, as on an event someone sent. */
function entry (seq: number, at: number, event: TraceEvent, value: TraceEntry['value'], context: unknown, more: Partial<TraceEntry> & { sent?: boolean } = {}): TraceEntry {
  const { sent = false, ...rest } = more
  return {
    workloadId: WORKLOAD,
    seq,
    epoch: 1,
    ts: T0 + at,
    owner: ALICE,
    event,
    ...(sent ? { sender: BOB, id: `send-${++sends}` } : {}),
    value,
    context,
    status: 'active',
    ...rest
  }
}

const AFTER = 'xstate.after.10000.turnstile.unlocked'

/** init, coin, push, coin, 10 s without a push, retire on another owner after a failover. */
const TRACE: TraceEntry[] = [
  entry(0, 0, { type: 'xstate.init' }, 'locked', { coins: 0, passes: 0 }),
  entry(1, 500, { type: 'coin' }, 'unlocked', { coins: 1, passes: 0 }, { sent: true }),
  entry(2, 2000, { type: 'push' }, 'locked', { coins: 1, passes: 1 }, { sent: true }),
  entry(3, 3000, { type: 'coin' }, 'unlocked', { coins: 2, passes: 1 }, { sent: true }),
  entry(4, 13_000, { type: AFTER }, 'locked', { coins: 2, passes: 1 }),
  entry(5, 20_000, { type: 'retire' }, 'retired', { coins: 2, passes: 1 }, { sent: true, epoch: 2, owner: BOB, status: 'done', output: { coins: 2, passes: 1 } })
]

const toJsonl = (entries: readonly unknown[]): string => entries.map((e) => JSON.stringify(e)).join('\n') + '\n'

function divergence (result: ReplayResult): Divergence {
  if (result.ok) assert.unreachable(`expected a divergence, the trace replayed (${result.steps} steps)`)
  return (result as { ok: false, divergence: Divergence }).divergence
}

test('a recorded trace replays: every entry matches, the start included', async () => {
  assert.equal(await replayTrace(turnstileMachine(), TRACE), { ok: true, steps: 6 })
})

test('an `after` timer fires on the simulated clock: a 10 s wait replays without waiting', async () => {
  const trace = [
    entry(0, 0, { type: 'xstate.init' }, 'locked', { coins: 0, passes: 0 }),
    entry(1, 100, { type: 'coin' }, 'unlocked', { coins: 1, passes: 0 }, { sent: true }),
    entry(2, 10_100, { type: AFTER }, 'locked', { coins: 1, passes: 0 })
  ]
  assert.equal(await replayTrace(turnstileMachine(), trace), { ok: true, steps: 3 })
})

test('a parsed JSONL trace replays the same', async () => {
  const parsed = parseTrace(toJsonl(TRACE), 'turnstile.jsonl')
  assert.equal(parsed, TRACE)
  await assertReplays(turnstileMachine(), parsed)
})

test('a different assign: the step, recorded and replayed context', async () => {
  const d = divergence(await replayTrace(turnstileMachine({ coinAdds: 2 }), TRACE))
  assert.is(d.step, 1)
  assert.is(d.index, 1)
  assert.equal(d.event, { type: 'coin' })
  assert.equal(d.expected, { value: 'unlocked', context: { coins: 1, passes: 0 }, status: 'active' })
  assert.equal(d.actual, { value: 'unlocked', context: { coins: 2, passes: 0 }, status: 'active' })
  assert.match(d.reason, 'coins: recorded 1, replayed 2')
})

test('a different target: the step, recorded and replayed state value', async () => {
  const d = divergence(await replayTrace(turnstileMachine({ coinTarget: 'locked' }), TRACE))
  assert.is(d.step, 1)
  assert.equal(d.expected.value, 'unlocked')
  assert.equal(d.actual, { value: 'locked', context: { coins: 1, passes: 0 }, status: 'active' })
  assert.match(d.reason, 'state value "locked", recorded "unlocked"')
})

test('a longer delay: the recorded timer entry did not fire, the machine stays unlocked', async () => {
  const d = divergence(await replayTrace(turnstileMachine({ delay: 20_000 }), TRACE))
  assert.is(d.step, 4)
  assert.equal(d.event, { type: AFTER })
  assert.equal(d.expected.value, 'locked')
  assert.equal(d.actual, { value: 'unlocked', context: { coins: 2, passes: 1 }, status: 'active' })
  assert.is(d.reason, `expected the delayed event ${AFTER} to fire by t+13000 ms, but it did not (the machine has pending: xstate.after.20000.turnstile.unlocked due at t+23000 ms)`)
})

test('a shorter delay: the timer fires before an entry the trace has first', async () => {
  const trace = [
    entry(0, 0, { type: 'xstate.init' }, 'locked', { coins: 0, passes: 0 }),
    entry(1, 500, { type: 'coin' }, 'unlocked', { coins: 1, passes: 0 }, { sent: true }),
    entry(2, 7000, { type: 'push' }, 'locked', { coins: 1, passes: 1 }, { sent: true })
  ]
  await assertReplays(turnstileMachine(), trace)
  const d = divergence(await replayTrace(turnstileMachine({ delay: 5000 }), trace))
  assert.is(d.step, 2)
  assert.equal(d.expected.context, { coins: 1, passes: 1 })
  assert.equal(d.actual, { value: 'locked', context: { coins: 1, passes: 0 }, status: 'active' })
  assert.match(d.reason, 'the delayed event xstate.after.5000.turnstile.unlocked was due at t+5500 ms, before this entry at t+7000 ms')
})

test('an event the machine no longer handles is a divergence saying so', async () => {
  const d = divergence(await replayTrace(turnstileMachine({ pushHandled: false }), TRACE))
  assert.is(d.step, 2)
  assert.equal(d.event, { type: 'push' })
  assert.equal(d.actual, { value: 'unlocked', context: { coins: 1, passes: 0 }, status: 'active' })
  assert.is(d.reason, 'the machine does not handle push in state "unlocked"')
})

test('a different output: the done step diverges', async () => {
  const d = divergence(await replayTrace(turnstileMachine({ output: (c) => ({ coins: c.coins }) }), TRACE))
  assert.is(d.step, 5)
  assert.equal(d.expected.output, { coins: 2, passes: 1 })
  assert.equal(d.actual.output, { coins: 2 })
  assert.match(d.reason, 'passes: recorded 1, replayed absent')
})

test('a changed initial context diverges at seq 0', async () => {
  const machine = turnstileMachine().provide({})
  const changed = setup({ types: {} as { context: Turnstile } }).createMachine({ id: 'turnstile', initial: 'locked', context: { coins: 5, passes: 0 }, states: { locked: {} } })
  assert.ok((await replayTrace(machine, TRACE)).ok)
  const d = divergence(await replayTrace(changed, TRACE))
  assert.is(d.step, 0)
  assert.equal(d.actual.context, { coins: 5, passes: 0 })
})

test('a pruned trace starts from its first entry; an `after` timer armed before it still fires', async () => {
  assert.equal(await replayTrace(turnstileMachine(), TRACE.slice(3)), { ok: true, steps: 2 })
  assert.equal(await replayTrace(turnstileMachine(), TRACE.slice(2)), { ok: true, steps: 3 })
  const d = divergence(await replayTrace(turnstileMachine({ coinAdds: 3 }), TRACE.slice(2)))
  assert.is(d.step, 3)
  assert.is(d.index, 1)
})

test('a pruned trace whose starting state the machine no longer has diverges at its first entry', async () => {
  const trace = [entry(7, 0, { type: 'push' }, 'jammed', { coins: 1, passes: 1 }, { sent: true }), entry(8, 10, { type: 'coin' }, 'unlocked', { coins: 2, passes: 1 }, { sent: true })]
  const d = divergence(await replayTrace(turnstileMachine(), trace))
  assert.is(d.step, 7)
  assert.match(d.reason, 'cannot be restored to the starting point "jammed"')
})

test('assertReplays throws an AssertionError naming the step, the event, recorded and replayed state', async () => {
  await assertReplays(turnstileMachine(), TRACE)
  try {
    await assertReplays(turnstileMachine({ coinAdds: 2 }), TRACE, 'turnstile v2')
  } catch (err) {
    assert.instance(err, AssertionError)
    const message = (err as Error).message
    assert.match(message, /^turnstile v2: diverged at seq 1 \(trace entry 1\): after coin/)
    assert.match(message, '\n  event     {"type":"coin"}')
    assert.match(message, '\n  expected  value "unlocked", status active\n            context {"coins":1,"passes":0}')
    assert.match(message, '\n  actual    value "unlocked", status active\n            context {"coins":2,"passes":0}')
    assert.is(message, `turnstile v2: ${describeDivergence(divergence(await replayTrace(turnstileMachine({ coinAdds: 2 }), TRACE)))}`)
    return
  }
  assert.unreachable('assertReplays did not throw')
})

test('an invoked promise is not run: its recorded done and error events are applied as recorded', async () => {
  const ran: string[] = []
  const machine = setup({
    types: {} as { context: { count: number, problem?: string }, events: { type: 'load' } },
    actors: {
      fetchCount: fromPromise(async () => {
        ran.push('fetchCount')
        throw new Error('the promise ran during replay')
      })
    },
    actions: { notify: () => { ran.push('notify') } }
  }).createMachine({
    id: 'counter',
    initial: 'idle',
    context: { count: 0 },
    states: {
      idle: { on: { load: 'loading' } },
      loading: {
        entry: 'notify',
        invoke: {
          id: 'fetch',
          src: 'fetchCount',
          onDone: { target: 'loaded', actions: assign({ count: ({ event }) => event.output as number }) },
          onError: { target: 'idle', actions: assign({ problem: ({ event }) => String((event.error as { message?: string }).message) }) }
        }
      },
      loaded: { type: 'final' }
    },
    output: ({ context }) => context.count
  })
  const start = [
    entry(0, 0, { type: 'xstate.init' }, 'idle', { count: 0 }),
    entry(1, 10, { type: 'load' }, 'loading', { count: 0 }, { sent: true })
  ]
  const failed = entry(2, 40, { type: 'xstate.error.actor.fetch', error: { name: 'Error', message: 'timeout' }, actorId: 'fetch' }, 'idle', { count: 0, problem: 'timeout' })
  const done = entry(4, 90, { type: 'xstate.done.actor.fetch', output: 42, actorId: 'fetch' }, 'loaded', { count: 42, problem: 'timeout' }, { status: 'done', output: 42 })
  const trace = [...start, failed, entry(3, 50, { type: 'load' }, 'loading', { count: 0, problem: 'timeout' }, { sent: true }), done]
  assert.equal(await replayTrace(machine, trace), { ok: true, steps: 5 })
  assert.equal(ran, [])
  // the recorded output is what the machine gets
  const d = divergence(await replayTrace(machine, [...trace.slice(0, 4), { ...done, event: { ...done.event, output: 41 } }]))
  assert.is(d.step, 4)
  assert.equal(d.actual.context, { count: 41, problem: 'timeout' })
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(ran, [])
})

test('delayed raises fire on the simulated clock and must be due by their entry', async () => {
  const machine = setup({ types: {} as { context: { ticks: number }, events: { type: 'tick' } | { type: 'start' } } }).createMachine({
    id: 'metronome',
    initial: 'idle',
    context: { ticks: 0 },
    states: {
      idle: { on: { start: 'running' } },
      running: {
        entry: raise({ type: 'tick' }, { delay: 3000 }),
        on: { tick: { target: 'running', reenter: true, actions: assign({ ticks: ({ context }) => context.ticks + 1 }) } }
      }
    }
  })
  const trace = [
    entry(0, 0, { type: 'xstate.init' }, 'idle', { ticks: 0 }),
    entry(1, 1000, { type: 'start' }, 'running', { ticks: 0 }, { sent: true }),
    entry(2, 4000, { type: 'tick' }, 'running', { ticks: 1 }),
    entry(3, 7001, { type: 'tick' }, 'running', { ticks: 2 })
  ]
  assert.equal(await replayTrace(machine, trace), { ok: true, steps: 4 })
  const early = [...trace.slice(0, 3), entry(3, 5000, { type: 'tick' }, 'running', { ticks: 2 })]
  const d = divergence(await replayTrace(machine, early, { timerToleranceMs: 100 }))
  assert.is(d.step, 3)
  assert.is(d.reason, 'expected the delayed event tick to fire by t+5000 ms, but it did not: the machine has it due at t+7000 ms')
})

test('a trace ending in error replays when the replay fails there too', async () => {
  const machine = setup({
    types: {} as { context: { n: number }, events: { type: 'bump' } | { type: 'explode' } | { type: 'fizzle' } },
    actions: { boom: () => { throw new Error('boom') } }
  }).createMachine({
    id: 'fragile',
    initial: 'ok',
    context: { n: 0 },
    states: {
      ok: {
        on: {
          bump: { actions: assign({ n: ({ context }) => { if (context.n >= 1) throw new Error('too many bumps'); return context.n + 1 } }) },
          explode: { target: 'exploded', actions: 'boom' },
          fizzle: 'exploded'
        }
      },
      exploded: {}
    }
  })
  const start = [entry(0, 0, { type: 'xstate.init' }, 'ok', { n: 0 }), entry(1, 10, { type: 'bump' }, 'ok', { n: 1 }, { sent: true })]
  // an assign that threw: replay fails in the same place
  assert.equal(await replayTrace(machine, [...start, entry(2, 20, { type: 'bump' }, 'ok', { n: 1 }, { sent: true, status: 'error', error: 'too many bumps' })]), { ok: true, steps: 3 })
  const d1 = divergence(await replayTrace(machine, [...start, entry(2, 20, { type: 'bump' }, 'ok', { n: 1 }, { sent: true })]))
  assert.is(d1.actual.status, 'error')
  assert.is(d1.reason, 'replaying bump failed the machine: too many bumps')
  // an action of the machine's own that threw live: taken from the trace, as replay does not run it
  assert.equal(await replayTrace(machine, [...start, entry(2, 20, { type: 'explode' }, 'exploded', { n: 1 }, { sent: true, status: 'error', error: 'boom' })]), { ok: true, steps: 3 })
  // ... but a step with no such action cannot have failed
  const d2 = divergence(await replayTrace(machine, [...start, entry(2, 20, { type: 'fizzle' }, 'exploded', { n: 1 }, { sent: true, status: 'error', error: 'boom' })]))
  assert.is(d2.step, 2)
  assert.match(d2.reason, 'its replay did not fail')
})

test('parseTrace ignores blank lines and names source:line for bad JSON, a missing field, a gap, a falling epoch, another workload', () => {
  const lines = TRACE.map((e) => JSON.stringify(e))
  assert.is(parseTrace(`\n${lines.join('\n\n')}\n\n`).length, 6)
  const text = (replace: Record<number, string>): string => lines.map((l, i) => replace[i] ?? l).join('\n')
  oneLineError(() => parseTrace(text({ 2: lines[2]!.slice(0, -1) }), 'trace.jsonl'), InvalidTraceError, /^trace\.jsonl:3: not valid JSON \(.+\)$/)
  const { context: _context, ...noContext } = TRACE[1]!
  oneLineError(() => parseTrace(text({ 1: JSON.stringify(noContext) }), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:2: missing field context')
  oneLineError(() => parseTrace(text({ 1: JSON.stringify({ ...TRACE[1], seq: '1' }) }), 'trace.jsonl'), InvalidTraceError, /^trace\.jsonl:2: field seq: /)
  oneLineError(() => parseTrace(text({ 3: JSON.stringify({ ...TRACE[3], status: 'paused' }) }), 'trace.jsonl'), InvalidTraceError, /^trace\.jsonl:4: field status: /)
  oneLineError(() => parseTrace(text({ 2: '' }), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:4: seq 3 follows seq 1 of line 2: entry 2 is missing')
  oneLineError(() => parseTrace(text({ 5: JSON.stringify({ ...TRACE[5], seq: 7 }) }), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:6: seq 7 follows seq 4 of line 5: entries 5…6 are missing')
  oneLineError(() => parseTrace([...lines.slice(0, 5), JSON.stringify({ ...TRACE[5], epoch: 3 }), JSON.stringify({ ...TRACE[5], seq: 6, epoch: 2, status: 'active' })].join('\n'), 'trace.jsonl'), InvalidTraceError, /^trace\.jsonl:7: epoch 2 is lower than epoch 3 of line 6/)
  oneLineError(() => parseTrace(text({ 4: JSON.stringify({ ...TRACE[4], workloadId: 'default/other' }) }), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:5: workloadId "default/other" differs from "default/turnstile" of line 4: a trace holds one workload')
  oneLineError(() => parseTrace(text({ 0: JSON.stringify({ ...TRACE[0], event: { type: 'coin' } }) }), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:1: seq 0 must be the start (event xstate.init), got event "coin"')
  oneLineError(() => parseTrace(toJsonl([...TRACE, { ...TRACE[5], seq: 6 }]), 'trace.jsonl'), InvalidTraceError, 'trace.jsonl:7: seq 6 follows seq 5 of line 6, where the machine is done: it takes no more events')
  oneLineError(() => parseTrace('\n\n', 'empty.jsonl'), InvalidTraceError, 'empty.jsonl: no entries')
  oneLineError(() => parseTrace('[1, 2]'), InvalidTraceError, '<trace>:1: expected a JSON object (one trace entry)')
})

test('loadTrace reads a file; its errors name the path and line', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-trace-'))
  try {
    const good = join(dir, 'turnstile.jsonl')
    await writeFile(good, toJsonl(TRACE))
    assert.equal(await loadTrace(good), TRACE)
    const bad = join(dir, 'bad.jsonl')
    await writeFile(bad, toJsonl(TRACE.slice(0, 2)) + '{"seq": 2\n')
    try {
      await loadTrace(bad)
    } catch (err) {
      assert.instance(err, InvalidTraceError)
      assert.match((err as Error).message, `${bad}:3: not valid JSON`)
      return
    }
    assert.unreachable('loadTrace accepted bad JSON')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('replayTrace refuses an array that is not a trace', async () => {
  try {
    await replayTrace(turnstileMachine(), [TRACE[0]!, TRACE[2]!])
  } catch (err) {
    assert.instance(err, InvalidTraceError)
    assert.is((err as Error).message, 'trace:1: seq 2 follows seq 0 of entry 0: entry 1 is missing')
    return
  }
  assert.unreachable('replayTrace accepted a trace with a gap')
})

test.run()
