/**
 * Traces, end to end on a 4-node mesh of real processes: a stateful
 * workload's trace (events in, sender, seq, epoch, state value and context)
 * is recorded by its owner and holders, runs on across a SIGKILL of the owner
 * (the new owner continues the same trace), is exported with the real
 * `beemesh trace export`, and `replayTrace` from `beemesh/testing`
 * reproduces every state of it; machines changed on purpose are reported at
 * the step where they diverge.
 *
 * The machine is the traffic-light fixture: `after` timers and a delayed
 * `raise` (steps the machine takes by itself), and an event-sized delay.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { assign, raise, setup } from 'xstate'
import trafficLight from './fixtures/workloads/machines/traffic-light.js'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import type { TraceEntry } from '../src/store/journal.js'
import { ApiRequestError } from '../src/api/errors.js'
import { assertReplays, parseTrace, replayTrace } from '../src/testing/index.js'
import { cli, startMesh, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURE = 'test/fixtures/workloads/machines/traffic-light.ts'
const NAME = 'traffic-light'
let nodes: NodeProcess[] = []
let exported = ''

test.before(async () => {
  nodes = await startMesh(4)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

function alive (n: NodeProcess): boolean {
  return n.child.exitCode == null && n.child.signalCode == null
}

async function stateVia (node: NodeProcess): Promise<MachineStateReport> {
  return await node.api.request<MachineStateReport>(`/v1/workloads/default/${NAME}/state`, { timeoutMs: 20_000 })
}

/** Sends an event through the live nodes, retrying with the same id while the owner fails over. */
async function send (event: Record<string, unknown>, id: string): Promise<Ack> {
  return await waitUntil(async () => {
    for (const node of nodes.filter(alive)) {
      try {
        return await node.api.request<Ack>(`/v1/workloads/default/${NAME}/events`, { method: 'POST', body: { event, id }, timeoutMs: 20_000 })
      } catch (err) {
        if (err instanceof ApiRequestError && err.status < 500) throw err
      }
    }
    return undefined
  }, { timeoutMs: 60_000, intervalMs: 200, what: `${event.type as string} to be acknowledged` })
}

async function until (check: (s: MachineStateReport) => boolean, what: string): Promise<MachineStateReport> {
  return await waitUntil(async () => {
    const via = nodes.find(alive)!
    const s = await stateVia(via).catch(() => undefined)
    return s != null && s.stale !== true && check(s) ? s : undefined
  }, { timeoutMs: 30_000, intervalMs: 100, what })
}

const eventTypes = (trace: TraceEntry[]): string[] => trace.map(r => (r.event as { type: string }).type)

test('a trace runs on across an owner failover and is exported whole as JSONL', async () => {
  const applied = await cli(['apply', FIXTURE, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  // green → (tick after 300 ms) → yellow after 1 s → red after 400 ms, all by itself
  await until(s => s.value === 'red', 'the light to reach red by its timers')
  const reminded = await send({ type: 'remind', ms: 200 }, 'remind-1')
  assert.is(reminded.epoch, 1)
  const before = await until(s => (s.context as { pings: number }).pings === 1, 'the first ping')

  const owner = nodes.find(n => n.peerId === before.owner)!
  owner.child.kill('SIGKILL')
  await owner.exited
  const go = await send({ type: 'go' }, 'go-1')
  assert.ok(go.epoch > 1, `go was acknowledged at epoch ${go.epoch}, after the failover`)
  assert.is.not(go.owner, owner.peerId)
  await until(s => s.value === 'red' && (s.context as { ticks: number }).ticks === 2, 'the second cycle to reach red')
  await send({ type: 'remind', ms: 150 }, 'remind-2')
  const last = await until(s => (s.context as { pings: number }).pings === 2, 'the second ping')
  assert.equal(last.context, { ticks: 2, pings: 2, cycles: 1 })

  const via = nodes.filter(alive).find(n => n.peerId !== go.owner)!
  const result = await cli(['trace', 'export', NAME, '--api', via.apiUrl], { timeoutMs: 30_000 })
  assert.is(result.code, 0, result.stderr)
  exported = result.stdout
  const trace = parseTrace(exported, 'trace.jsonl') as TraceEntry[]
  process.stdout.write(`\n  ${result.stderr.trim()}\n`)
  assert.match(result.stderr, new RegExp(`exported ${trace.length} steps of default/${NAME}: seq 0\\.\\.${trace.length - 1}, epoch 1\\.\\.${go.epoch}, gathered from [23] nodes`))

  assert.equal(trace.map(r => r.seq), Array.from({ length: 12 }, (_, i) => i))
  assert.equal(eventTypes(trace), [
    'xstate.init', 'tick', 'xstate.after.1000.light.green', 'xstate.after.400.light.yellow', 'remind', 'ping',
    'go', 'tick', 'xstate.after.1000.light.green', 'xstate.after.400.light.yellow', 'remind', 'ping'
  ])
  assert.equal(trace.map(r => r.value), ['green', 'green', 'yellow', 'red', 'red', 'red', 'green', 'green', 'yellow', 'red', 'red', 'red'])
  assert.equal(trace.at(-1)!.context, last.context)
  // The same trace on both sides of the failover: the old owner's steps, then the new owner's.
  const goStep = trace[6]!
  assert.ok(trace.slice(0, 6).every(r => r.epoch === 1 && r.owner === owner.peerId), 'steps before the failover are the old owner\'s, at epoch 1')
  assert.ok(trace.slice(6).every(r => r.epoch === go.epoch && r.owner === go.owner), 'steps after it are the new owner\'s')
  assert.is(goStep.seq, go.seq)
  assert.is(goStep.id, 'go-1')
  // Sent events carry their sender and id; steps the machine took by itself carry neither.
  assert.ok(typeof trace[4]!.sender === 'string' && trace[4]!.id === 'remind-1')
  for (const i of [1, 2, 3, 5, 7, 8, 9, 11]) assert.ok(trace[i]!.sender == null && trace[i]!.id == null, `step ${i} has no sender`)
  // The ping's delay came from the event: due 200 ms after the remind (give or take the owner's bookkeeping).
  assert.ok(trace[5]!.ts - trace[4]!.ts >= 150, `the ping came ${trace[5]!.ts - trace[4]!.ts} ms after the remind`)
})

test('replayTrace reproduces every state of the exported trace', async () => {
  assert.ok(exported !== '', 'the first test exported a trace')
  const trace = parseTrace(exported)
  const result = await replayTrace(trafficLight.machine, trace)
  assert.equal(result, { ok: true, steps: trace.length })
  await assertReplays(trafficLight.machine, trace)
})

/** The fixture's machine with one change. */
function changedLight ({ greenMs = 1000, cyclesBy = 1 }: { greenMs?: number, cyclesBy?: number }): typeof trafficLight.machine {
  return setup({
    types: {} as {
      context: { ticks: number, pings: number, cycles: number }
      events: { type: 'stop' } | { type: 'go' } | { type: 'tick' } | { type: 'ping' } | { type: 'remind', ms: number }
    }
  }).createMachine({
    id: 'light',
    initial: 'green',
    context: { ticks: 0, pings: 0, cycles: 0 },
    states: {
      green: {
        entry: raise({ type: 'tick' }, { delay: 300, id: 'tick' }),
        after: { [greenMs]: 'yellow' },
        on: { tick: { actions: assign({ ticks: ({ context }) => context.ticks + 1 }) }, stop: 'red' }
      },
      yellow: { after: { 400: 'red' }, on: { stop: 'red' } },
      red: {
        on: {
          go: { target: 'green', actions: assign({ cycles: ({ context }) => context.cycles + cyclesBy }) },
          remind: { actions: raise({ type: 'ping' }, { delay: ({ event }) => event.ms, id: 'reminder' }) },
          ping: { actions: assign({ pings: ({ context }) => context.pings + 1 }) }
        }
      }
    }
  }) as unknown as typeof trafficLight.machine
}

test('a deliberately changed machine is reported at the step where it diverges', async () => {
  const trace = parseTrace(exported)
  // The same machine, rebuilt by hand, replays: the changes below are all that differ.
  assert.equal(await replayTrace(changedLight({}), trace), { ok: true, steps: trace.length })

  const counting = await replayTrace(changedLight({ cyclesBy: 2 }), trace)
  if (counting.ok) assert.unreachable('a machine that counts cycles by 2 must diverge')
  else {
    assert.is(counting.divergence.step, 6)
    assert.equal(counting.divergence.event, { type: 'go' })
    assert.equal(counting.divergence.expected.context, { ticks: 1, pings: 1, cycles: 1 })
    assert.equal(counting.divergence.actual.context, { ticks: 1, pings: 1, cycles: 2 })
  }

  const slower = await replayTrace(changedLight({ greenMs: 3000 }), trace)
  if (slower.ok) assert.unreachable('a machine whose green lasts 3 s must diverge')
  else {
    assert.is(slower.divergence.step, 2)
    assert.is(slower.divergence.expected.value, 'yellow')
    assert.is(slower.divergence.actual.value, 'green')
  }

  try {
    await assertReplays(changedLight({ cyclesBy: 2 }), trace)
    assert.unreachable('assertReplays must throw')
  } catch (err) {
    assert.instance(err, Error)
    assert.match((err as Error).message, /diverged at seq 6/)
  }
})

test('bad input: export of an unknown workload fails with a clear message and exit 1', async () => {
  const via = nodes.find(alive)!
  const unknown = await cli(['trace', 'export', 'no-such-light', '--api', via.apiUrl])
  assert.is(unknown.code, 1)
  assert.match(unknown.stderr, /no-such-light/)
  assert.is(unknown.stdout, '')
})

test.run()
