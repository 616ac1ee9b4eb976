import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bundleWorkload } from '../../src/bundle/bundler.js'
import { ArtifactLoadError, InvalidMachineEventError, MachineNotActiveError, MachineRestoreError, SandboxStoppedError, TransitionFailedError } from '../../src/sandbox/errors.js'
import { MachineSandbox, type MachineSandboxInit, type Transition } from '../../src/sandbox/machine-sandbox.js'
import type { SandboxLogLine } from '../../src/sandbox/sandbox.js'
import type { WorkloadIdentity } from '../../src/workloads/types.js'

const identity: WorkloadIdentity = { id: 'default/machine', name: 'machine', namespace: 'default', replica: 0, nodeId: 'node-a', epoch: 2 }
const FIXTURES = ['counter', 'traffic-light', 'fetcher', 'looper', 'ledger'] as const
type Fixture = typeof FIXTURES[number]

let dir = ''
const artifacts = {} as Record<Fixture | 'stateless' | 'echo', string>
const sandboxes: MachineSandbox[] = []

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'beemesh-machine-sandbox-'))
  await Promise.all(FIXTURES.map(async name => {
    const r = await bundleWorkload(fileURLToPath(new URL(`../fixtures/workloads/machines/${name}.ts`, import.meta.url)))
    artifacts[name] = join(dir, `${name}.mjs`)
    await writeFile(artifacts[name], r.code)
  }))
  artifacts.stateless = join(dir, 'stateless.mjs')
  await writeFile(artifacts.stateless, "export default { name: 'plain', kind: 'stateless', topics: ['t'], handler () {} }\n")
  // `ping` sends `pong` to the machine itself: a step of its own (through the mailbox), caused by ping's processing
  // bundled like any artifact: a confined sandbox sees the artifact alone, not node_modules
  const echoSource = join(dir, 'echo-source.mjs')
  await writeFile(echoSource, [
    `import { assign, sendTo, setup } from ${JSON.stringify(fileURLToPath(import.meta.resolve('xstate')))}`,
    'const machine = setup({}).createMachine({',
    "  id: 'echo', initial: 'on', context: { pings: 0, pongs: 0, n: 0 },",
    '  states: { on: { on: {',
    "    ping: { actions: [assign({ pings: ({ context }) => context.pings + 1 }), sendTo(({ self }) => self, { type: 'pong' })] },",
    '    pong: { actions: assign({ pongs: ({ context }) => context.pongs + 1 }) },',
    '    inc: { actions: assign({ n: ({ context }) => context.n + 1 }) }',
    '  } } }',
    '})',
    "export default { name: 'echo', kind: 'stateful', machine }",
    ''
  ].join('\n'))
  artifacts.echo = join(dir, 'echo.mjs')
  await writeFile(artifacts.echo, (await bundleWorkload(echoSource)).code)
})

test.after(async () => {
  await Promise.all(sandboxes.map(async s => { await s.stop() }))
  await rm(dir, { recursive: true, force: true })
})

interface Seen { event: { type: string } & Record<string, unknown>, t: Transition, at: number }

interface Harness {
  sandbox: MachineSandbox
  seen: Seen[]
  logs: SandboxLogLine[]
  /** The first spontaneous transition whose event type is `type`, waiting up to `timeoutMs` for it. */
  spontaneous: (type: string, timeoutMs?: number) => Promise<Seen>
  /** Resolves once `check` holds, checked at each spontaneous transition and log line; rejects after `timeoutMs`. */
  until: (check: () => boolean, what: string, timeoutMs?: number) => Promise<void>
}

function harness (fixture: Fixture | 'stateless' | 'echo', overrides: Partial<MachineSandboxInit> = {}): Harness {
  const seen: Seen[] = []
  const logs: SandboxLogLine[] = []
  const waiters = new Set<() => void>()
  const clock = overrides.clock ?? Date.now
  const sandbox = new MachineSandbox({
    artifactPath: artifacts[fixture],
    identity,
    memoryLimitMb: 64,
    timeoutMs: 2000,
    onSpontaneous: (event, t) => {
      seen.push({ event: event as Seen['event'], t, at: clock() })
      for (const w of waiters) w()
    },
    onLog: line => {
      logs.push(line)
      for (const w of waiters) w()
    },
    ...overrides
  })
  sandboxes.push(sandbox)
  async function until (check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        if (!check()) return
        clearTimeout(timer)
        waiters.delete(waiter)
        resolve()
      }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (spontaneous events: ${JSON.stringify(seen.map(s => s.event.type))})`))
      }, timeoutMs)
      waiters.add(waiter)
      waiter()
    })
  }
  async function spontaneous (type: string, timeoutMs = 5000): Promise<Seen> {
    await until(() => seen.some(s => s.event.type === type), `a spontaneous ${type}`, timeoutMs)
    return seen.find(s => s.event.type === type) as Seen
  }
  return { sandbox, seen, logs, spontaneous, until }
}

async function rejects (p: Promise<unknown>, type: new (...args: any[]) => Error, pattern: RegExp): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.instance(err, type)
    assert.match((err as Error).message, pattern)
    return err as Error
  }
  assert.unreachable(`expected ${type.name} matching ${String(pattern)}`)
  throw new Error('unreachable')
}

function near (actual: number, expected: number, below: number, above: number, what: string): void {
  assert.ok(actual >= expected - below && actual <= expected + above, `${what}: ${actual - expected} ms off (allowed -${below}…+${above})`)
}

function between (actual: number, low: number, high: number, what: string): void {
  assert.ok(actual >= low && actual <= high, `${what}: ${actual} is not within [${low}, ${high}] (${actual - low} ms after the start of the range)`)
}

test('counts events, ends in its final state with output, and then takes no more events', async () => {
  const { sandbox } = harness('counter')
  const starting = sandbox.start()
  // a send made while the sandbox starts waits for it
  const early = sandbox.send({ type: 'inc' })
  const started = await starting
  assert.equal({ handled: started.handled, value: started.value, context: started.context, status: started.status, timers: started.state.timers }, { handled: true, value: 'counting', context: { count: 0, applied: [] }, status: 'active', timers: [] })
  assert.equal((await early).context, { count: 1, applied: [] })
  assert.equal((await sandbox.current()).context, { count: 1, applied: [] })
  // sends queue in call order
  const [a, b] = await Promise.all([sandbox.send({ type: 'inc', by: 5, tag: 'a' }), sandbox.send({ type: 'inc', tag: 'b' })])
  assert.equal(a.context, { count: 6, applied: ['a'] })
  assert.equal(b.context, { count: 7, applied: ['a', 'b'] })
  assert.is(b.handled, true)
  assert.is((b.state.persisted as { context: unknown }).context !== undefined, true)

  const done = await sandbox.send({ type: 'finish' })
  assert.equal({ value: done.value, status: done.status, output: done.output }, { value: 'done', status: 'done', output: { total: 7 } })
  await rejects(sandbox.send({ type: 'inc' }), MachineNotActiveError, /final state/)
  const now = await sandbox.current()
  assert.equal({ status: now.status, output: now.output, handled: now.handled }, { status: 'done', output: { total: 7 }, handled: true })
  await sandbox.stop()
  await rejects(sandbox.send({ type: 'inc' }), SandboxStoppedError, /stopped/)
})

test('an event the state does not take is not applied: handled false, state unchanged', async () => {
  const counter = harness('counter')
  await counter.sandbox.start()
  const before = await counter.sandbox.send({ type: 'inc' })
  const nope = await counter.sandbox.send({ type: 'nope' })
  assert.is(nope.handled, false)
  assert.equal({ value: nope.value, context: nope.context, state: nope.state }, { value: before.value, context: before.context, state: before.state })

  const ledger = harness('ledger')
  await ledger.sandbox.start()
  await ledger.sandbox.send({ type: 'deposit', amount: 3 })
  // guarded: can() evaluates the guard
  const overdraw = await ledger.sandbox.send({ type: 'withdraw', amount: 5 })
  assert.is(overdraw.handled, false)
  assert.equal(overdraw.context, { balance: 3, history: [3], ignored: 0 })
  const covered = await ledger.sandbox.send({ type: 'withdraw', amount: 2 })
  assert.is(covered.handled, true)
  assert.equal(covered.context, { balance: 1, history: [3, -2], ignored: 0 })
  // no `on` transition, but an eventless one whose guard reads the event: can() says no, the dry run says yes
  const frozen = await ledger.sandbox.send({ type: 'freeze' })
  assert.equal({ handled: frozen.handled, value: frozen.value }, { handled: true, value: 'frozen' })
  // the `*` wildcard takes anything
  const other = await ledger.sandbox.send({ type: 'other' })
  assert.equal({ handled: other.handled, value: other.value, ignored: (other.context as { ignored: number }).ignored }, { handled: true, value: 'frozen', ignored: 1 })
  const unfrozen = await ledger.sandbox.send({ type: 'unfreeze' })
  assert.is(unfrozen.value, 'open')
  assert.is((await ledger.sandbox.send({ type: 'other' })).handled, false)
})

test('malformed events reject with the reason and leave the machine as it was', async () => {
  const { sandbox } = harness('counter')
  await sandbox.start()
  await rejects(sandbox.send(null), InvalidMachineEventError, /JSON object with a string "type", got null/)
  await rejects(sandbox.send('inc'), InvalidMachineEventError, /got string/)
  await rejects(sandbox.send(['inc']), InvalidMachineEventError, /got an array/)
  await rejects(sandbox.send({}), InvalidMachineEventError, /"type" must be a string, got none/)
  await rejects(sandbox.send({ type: 5 }), InvalidMachineEventError, /"type" must be a string, got number/)
  await rejects(sandbox.send({ type: '' }), InvalidMachineEventError, /must not be empty/)
  await rejects(sandbox.send({ type: 'xstate.init' }), InvalidMachineEventError, /reserved/)
  await rejects(sandbox.send({ type: 'inc', by: 1n }), InvalidMachineEventError, /"inc" is not JSON-serialisable/)
  const t = await sandbox.send({ type: 'inc' })
  assert.equal(t.context, { count: 1, applied: [] })
})

test('restore + replay reaches the live run\'s state without running actions; console output reaches onLog', async () => {
  const live = harness('ledger')
  await live.sandbox.start()
  const first = await live.sandbox.send({ type: 'deposit', amount: 10 })
  const rest = [{ type: 'deposit', amount: 5 }, { type: 'withdraw', amount: 3 }, { type: 'deposit', amount: 7 }]
  let last = first
  for (const e of rest) last = await live.sandbox.send(e)
  assert.equal(last.context, { balance: 19, history: [10, 5, -3, 7], ignored: 0 })
  assert.equal(live.logs.map(l => [l.message, l.stream, l.replica]), [['deposit 10', 'log', 0], ['deposit 5', 'log', 0], ['deposit 7', 'log', 0]])

  const restored = harness('ledger')
  const r = await restored.sandbox.start({ state: first.state, replay: rest.map(event => ({ event })) })
  assert.equal({ value: r.value, context: r.context, status: r.status }, { value: last.value, context: last.context, status: 'active' })
  assert.equal(r.state.persisted, last.state.persisted)
  assert.equal(restored.logs, [], 'replay must not run the deposit action')
  // live again after the replay
  const more = await restored.sandbox.send({ type: 'deposit', amount: 1 })
  assert.is((more.context as { balance: number }).balance, 20)
  assert.equal(restored.logs.map(l => l.message), ['deposit 1'])

  // replay from the initial state
  const fromScratch = harness('ledger')
  const s = await fromScratch.sandbox.start({ replay: [{ type: 'deposit', amount: 10 }, ...rest].map(event => ({ event })) })
  assert.equal(s.context, last.context)
  assert.equal(fromScratch.logs, [])

  // an entry whose live transition failed ends the replay in that failure
  const failed = harness('ledger')
  const f = await failed.sandbox.start({ state: first.state, replay: [{ event: rest[0] }, { event: { type: 'deposit', amount: 1 }, error: 'the bank is closed' }] })
  assert.equal({ status: f.status, error: f.error, balance: (f.context as { balance: number }).balance }, { status: 'error', error: 'the bank is closed', balance: 16 })
  await rejects(failed.sandbox.send({ type: 'deposit', amount: 1 }), MachineNotActiveError, /the bank is closed/)
})

test('a delayed transition restored in a new sandbox fires at its original due time', async () => {
  // a clock of its own: dueAt is on it, whatever Date.now() says
  const clock = (): number => Date.now() + 7_000_000
  const first = harness('traffic-light', { clock })
  const t0 = clock()
  const started = await first.sandbox.start()
  assert.equal(started.state.timers.map(t => t.id), ['tick', 'xstate.after.1000.light.green'])
  const due = started.state.timers[1]!.dueAt
  between(due, t0 + 1000, clock() + 1000, 'the after timer of a fresh start')
  near(started.state.timers[0]!.dueAt, due - 700, 5, 5, 'the tick timer')

  // persist at ~300 ms (~700 ms before the due time): the state after the delayed tick
  const tick = await first.spontaneous('tick')
  assert.equal(tick.t.context, { ticks: 1, pings: 0, cycles: 0 })
  assert.equal(tick.t.state.timers.map(t => ({ id: t.id, event: t.event })), [{ id: 'xstate.after.1000.light.green', event: { type: 'xstate.after.1000.light.green' } }])
  // dueAt is mapped from the worker's wall time onto the clock, reading both: a millisecond may tick between the two reads.
  near(tick.t.state.timers[0]!.dueAt, due, 1, 1, 'the after timer, persisted after the tick')
  await first.sandbox.stop()

  const second = harness('traffic-light', { clock })
  const restoredAt = clock()
  const r = await second.sandbox.start({ state: tick.t.state })
  const running = clock()
  assert.equal({ value: r.value, timers: r.state.timers.map(t => t.id) }, { value: 'green', timers: ['xstate.after.1000.light.green'] })
  // (on a machine so slow that the restore took past the due time, the timer is due at once)
  between(r.state.timers[0]!.dueAt, due, Math.max(due, running) + 25, 'the re-armed timer keeps its due time')
  const yellow = await second.spontaneous('xstate.after.1000.light.green')
  assert.is(yellow.t.value, 'yellow')
  // its full delay again would be at least 300 ms later than this allows
  between(yellow.at, due - 5, Math.max(due, running) + 250, `the restored timer fires at its original due time (restored ${due - restoredAt} ms before it)`)
  assert.equal(yellow.t.state.timers.map(t => t.id), ['xstate.after.400.light.yellow'])
  assert.equal(second.logs.map(l => l.message), ['yellow now'])
})

test('leaving a state cancels its restored timer; delayed raises with an id are timers too', async () => {
  const first = harness('traffic-light')
  await first.sandbox.start()
  const tick = await first.spontaneous('tick')
  await first.sandbox.stop()
  // the stored timer, moved well into the future: even a slow restore is in time to leave the state before it is due
  const due = Date.now() + 1500
  const state = { ...tick.t.state, timers: tick.t.state.timers.map(t => ({ ...t, dueAt: due })) }

  const second = harness('traffic-light')
  const restored = await second.sandbox.start({ state })
  assert.equal(restored.state.timers.map(t => t.id), ['xstate.after.1000.light.green'])
  // (re-armed a moment after the start call: a busy thread may take a few ms to get there)
  near(restored.state.timers[0]!.dueAt, due, 0, 25, 'the re-armed timer')
  const red = await second.sandbox.send({ type: 'stop' })
  assert.equal({ value: red.value, timers: red.state.timers }, { value: 'red', timers: [] })
  // a ping of its own, due well after the cancelled timer would have fired
  const sentAt = Date.now()
  const ms = Math.max(0, due + 200 - sentAt)
  const reminded = await second.sandbox.send({ type: 'remind', ms })
  assert.equal(reminded.state.timers.map(t => [t.id, t.event]), [['reminder', { type: 'ping' }]])
  between(reminded.state.timers[0]!.dueAt, sentAt + ms, Date.now() + ms, 'the reminder')
  const ping = await second.spontaneous('ping')
  assert.ok(ping.at >= due + 150)
  assert.equal(ping.t.context, { ticks: 1, pings: 1, cycles: 0 })
  assert.equal(second.seen.map(s => s.event.type), ['ping'], 'the cancelled after timer must not fire')

  // replay without timers: they are derived from the replayed events' delayed sends, counted from now
  const third = harness('traffic-light')
  const now = Date.now()
  const green = await third.sandbox.start({ state: red.state, replay: [{ event: { type: 'go' } }] })
  assert.equal({ value: green.value, cycles: (green.context as { cycles: number }).cycles }, { value: 'green', cycles: 1 })
  assert.equal(green.state.timers.map(t => t.id), ['tick', 'xstate.after.1000.light.green'])
  between(green.state.timers[1]!.dueAt, now + 1000, Date.now() + 1000, 'a derived timer')
  assert.is((await third.spontaneous('tick')).t.value, 'green')

  // …or given explicitly, as of the last replayed event
  const fourth = harness('traffic-light')
  const none = await fourth.sandbox.start({ state: red.state, replay: [{ event: { type: 'go' } }], timers: [] })
  assert.equal(none.state.timers, [])

  // `now` says what time it is on the sandbox's clock: the remaining delay is dueAt - now
  const fifth = harness('traffic-light')
  const calledAt = Date.now()
  const later = await fifth.sandbox.start({ state, now: due - 60_000 })
  between(later.state.timers[0]!.dueAt, calledAt + 60_000, Date.now() + 60_000 + 25, 'a timer restored 60 s early')
})

test('an invoked promise completes through onSpontaneous; a restore starts an in-flight one again', async () => {
  const first = harness('fetcher')
  await first.sandbox.start()
  const loading = await first.sandbox.send({ type: 'fetch', ms: 20, value: 'abc' })
  assert.equal({ value: loading.value, loads: (loading.context as { loads: number }).loads }, { value: 'loading', loads: 1 })
  const done = await first.spontaneous('xstate.done.actor.load')
  assert.equal(done.event, { type: 'xstate.done.actor.load', output: 'ABC', actorId: 'load' })
  assert.equal({ value: done.t.value, result: (done.t.context as { result: string }).result, handled: done.t.handled }, { value: 'loaded', result: 'ABC', handled: true })

  const failing = await first.sandbox.send({ type: 'fetch', ms: 5, value: 'bad', fail: true })
  assert.is(failing.value, 'loading')
  const failed = await first.spontaneous('xstate.error.actor.load')
  assert.equal(failed.event.error, { name: 'Error', message: 'could not load bad' })
  assert.equal({ value: failed.t.value, error: (failed.t.context as { error: string }).error }, { value: 'failed', error: 'could not load bad' })

  // persisted while the promise is in flight: the child is in the snapshot, by src
  const inFlight = await first.sandbox.send({ type: 'fetch', ms: 150, value: 'xyz' })
  assert.equal((inFlight.state.persisted as { children: Record<string, { src: unknown }> }).children.load?.src, 'load')
  await first.sandbox.stop()
  assert.equal(first.logs.map(l => l.message), ['load started abc', 'load started bad', 'load started xyz'])

  const second = harness('fetcher')
  assert.is((await second.sandbox.start({ state: inFlight.state })).value, 'loading')
  const resumed = await second.spontaneous('xstate.done.actor.load')
  assert.equal((resumed.t.context as { result: string }).result, 'XYZ')
  assert.equal(second.logs.map(l => l.message), ['load started xyz'], 'restoring starts the promise again')

  // the journaled completion replays without starting the promise
  const third = harness('fetcher')
  const replayed = await third.sandbox.start({ state: inFlight.state, replay: [{ event: resumed.event }] })
  assert.equal({ value: replayed.value, result: (replayed.context as { result: string }).result }, { value: 'loaded', result: 'XYZ' })
  assert.equal((replayed.state.persisted as { children: object }).children, {})
  assert.equal(third.logs, [])
})

test('an action that throws puts the machine in status error; it stays readable and stoppable', async () => {
  const { sandbox, seen } = harness('looper')
  await sandbox.start()
  await sandbox.send({ type: 'inc' })
  const boom = await sandbox.send({ type: 'boom' })
  assert.equal({ handled: boom.handled, status: boom.status, error: boom.error, context: boom.context }, { handled: true, status: 'error', error: 'kaboom: the action failed', context: { count: 1 } })
  const now = await sandbox.current()
  assert.equal({ status: now.status, error: now.error }, { status: 'error', error: 'kaboom: the action failed' })
  await rejects(sandbox.send({ type: 'inc' }), MachineNotActiveError, /failed \(kaboom: the action failed\)/)
  assert.equal(seen, [])
  await sandbox.stop()
})

test('a transition that hangs or ends its thread fails alone; the machine resumes from its last good state', async () => {
  const { sandbox, logs } = harness('looper', { timeoutMs: 800 })
  await sandbox.start()
  assert.equal((await sandbox.send({ type: 'inc' })).context, { count: 1 })
  const spun = await rejects(sandbox.send({ type: 'spin' }), TransitionFailedError, /"spin" did not finish within 800 ms; the event was not applied/)
  assert.is((spun as TransitionFailedError).reason, 'timeout')
  assert.equal((await sandbox.send({ type: 'inc' })).context, { count: 2 })
  const exited = await rejects(sandbox.send({ type: 'exit' }), TransitionFailedError, /the worker crashed during the transition for event "exit" \(exit code 3\)/)
  assert.is((exited as TransitionFailedError).reason, 'crashed')
  assert.equal((await sandbox.send({ type: 'inc' })).context, { count: 3 })
  assert.equal((await sandbox.current()).context, { count: 3 })
  assert.equal(logs.filter(l => l.stream === 'error'), [])
})

test('a transition nobody sent that hangs or ends its thread fails the machine; a stray exit only restarts it', async () => {
  const hung = harness('looper', { timeoutMs: 800 })
  await hung.sandbox.start()
  await hung.sandbox.send({ type: 'inc' })
  await hung.sandbox.send({ type: 'later', what: 'spin' })
  const spin = await hung.spontaneous('spin')
  assert.equal({ status: spin.t.status, error: spin.t.error, context: spin.t.context, timers: spin.t.state.timers }, { status: 'error', error: 'the transition for event "spin" did not finish within 800 ms', context: { count: 1 }, timers: [] })
  await rejects(hung.sandbox.send({ type: 'inc' }), MachineNotActiveError, /failed \(the transition for event "spin" did not finish/)
  assert.is((await hung.sandbox.current()).status, 'error')
  // its state restores as failed: the timer does not fire again elsewhere
  const elsewhere = harness('looper', { timeoutMs: 800 })
  const restored = await elsewhere.sandbox.start({ state: spin.t.state })
  assert.equal({ status: restored.status, error: restored.error }, { status: 'error', error: 'the transition for event "spin" did not finish within 800 ms' })

  const crashed = harness('looper')
  await crashed.sandbox.start()
  await crashed.sandbox.send({ type: 'later', what: 'exit' })
  const exit = await crashed.spontaneous('exit')
  assert.equal({ status: exit.t.status, error: exit.t.error }, { status: 'error', error: 'the transition for event "exit" crashed the worker (exit code 3)' })
  await rejects(crashed.sandbox.send({ type: 'inc' }), MachineNotActiveError, /crashed the worker/)

  const stray = harness('looper')
  await stray.sandbox.start()
  await stray.sandbox.send({ type: 'inc' })
  await stray.sandbox.send({ type: 'stray' })
  await stray.until(() => stray.logs.some(l => /stopped outside a transition \(exit code 4\); resuming it/.test(l.message)), 'the stray exit to be noticed')
  assert.equal((await stray.sandbox.send({ type: 'inc' })).context, { count: 2 })
  assert.equal(stray.seen, [])
})

test('a transition that exhausts its heap fails with out-of-memory', async () => {
  const { sandbox } = harness('looper', { timeoutMs: 20_000, memoryLimitMb: 32 })
  await sandbox.start()
  await sandbox.send({ type: 'inc' })
  const err = await rejects(sandbox.send({ type: 'hog' }), TransitionFailedError, /ran out of memory \(heap limit 32 MB\)/)
  assert.is((err as TransitionFailedError).reason, 'out-of-memory')
  assert.equal((await sandbox.send({ type: 'inc' })).context, { count: 2 })
})

test('start rejects a module that is not a stateful machine, and a state that cannot be restored', async () => {
  await rejects(harness('stateless').sandbox.start(), ArtifactLoadError, /kind "stateless"; a machine sandbox runs "stateful" workloads/)
  const good = harness('counter')
  const t = await good.sandbox.start()
  await good.sandbox.stop()
  const persisted = t.state.persisted as Record<string, unknown>
  await rejects(harness('counter').sandbox.start({ state: { persisted: { ...persisted, value: 'nowhere' }, timers: [] } }), MachineRestoreError, /State 'nowhere' does not exist on 'counter'/)
  await rejects(harness('counter').sandbox.start({ state: { persisted: null, timers: [] } }), MachineRestoreError, /persisted snapshot is null/)
  await rejects(harness('counter').sandbox.start({ state: t.state, replay: [{ event: 'inc' }] }), MachineRestoreError, /replayed event 1 of 1 is not an object/)
  await rejects(harness('counter').sandbox.start({ state: { persisted, timers: [{ id: 'x', event: 7, dueAt: 0 }] } }), MachineRestoreError, /timer "x"/)
})

function contextOf (r: Transition | Error | undefined): unknown {
  assert.ok(r != null && !(r instanceof Error), `expected a Transition, got ${r instanceof Error ? `${r.name}: ${r.message}` : String(r)}`)
  return (r as Transition).context
}

test('sendMany applies a batch as the same sends one after another would', async () => {
  const one = harness('counter')
  await one.sandbox.start()
  let bySend: Transition | undefined
  for (let i = 0; i < 1000; i++) bySend = await one.sandbox.send({ type: 'inc', by: i % 3 })
  const many = harness('counter')
  await many.sandbox.start()
  const results = await many.sandbox.sendMany(Array.from({ length: 1000 }, (_, i) => ({ type: 'inc', by: i % 3 })))
  assert.is(results.length, 1000)
  let count = 0
  for (const [i, r] of results.entries()) {
    count += i % 3
    assert.equal(contextOf(r), { count, applied: [] }, `event ${i}`)
  }
  const last = results[999] as Transition
  assert.equal({ value: last.value, context: last.context, status: last.status, handled: last.handled, state: last.state }, { value: bySend!.value, context: bySend!.context, status: bySend!.status, handled: true, state: bySend!.state })
  assert.equal((await many.sandbox.current()).context, bySend!.context)
  // and sends after a batch, and an empty batch, carry on from it
  assert.equal(await many.sandbox.sendMany([]), [])
  assert.equal((await many.sandbox.send({ type: 'inc' })).context, { count: count + 1, applied: [] })
})

test('sendMany gives each event its own result: unhandled, malformed and refused ones do not stop the others', async () => {
  const { sandbox } = harness('counter')
  await sandbox.start()
  const order: number[] = []
  const results = await sandbox.sendMany([{ type: 'inc', tag: 'a' }, { type: 'nope' }, null, { type: 'xstate.init' }, { type: 'inc', by: 1n }, { type: 'inc', tag: 'b' }], i => { order.push(i) })
  assert.equal(order, [0, 1, 2, 3, 4, 5], 'onResult is called for each element, in order')
  assert.equal(contextOf(results[0]), { count: 1, applied: ['a'] })
  assert.is((results[1] as Transition).handled, false)
  assert.equal(contextOf(results[1]), { count: 1, applied: ['a'] })
  for (const [i, pattern] of [[2, /got null/], [3, /reserved/], [4, /"inc" is not JSON-serialisable/]] as const) {
    assert.instance(results[i], InvalidMachineEventError)
    assert.match((results[i] as Error).message, pattern)
  }
  assert.equal(contextOf(results[5]), { count: 2, applied: ['a', 'b'] })

  // an event that ends the machine: those after it are refused as single sends would be
  const ended = await sandbox.sendMany([{ type: 'inc' }, { type: 'finish' }, { type: 'inc' }, {}])
  assert.equal(contextOf(ended[0]), { count: 3, applied: ['a', 'b'] })
  assert.equal({ status: (ended[1] as Transition).status, output: (ended[1] as Transition).output }, { status: 'done', output: { total: 3 } })
  assert.instance(ended[2], MachineNotActiveError)
  assert.match((ended[2] as Error).message, /final state/)
  assert.instance(ended[3], InvalidMachineEventError)
  // a finished machine refuses every event of a batch; send is sendMany of one
  const after = await sandbox.sendMany([{ type: 'inc' }, { type: 'inc' }])
  assert.ok(after.every(r => r instanceof MachineNotActiveError))
  await rejects(sandbox.send({ type: 'inc' }), MachineNotActiveError, /final state/)
  await sandbox.stop()
  const stopped = await sandbox.sendMany([{ type: 'inc' }, 'inc'])
  assert.instance(stopped[0], SandboxStoppedError)
  assert.instance(stopped[1], InvalidMachineEventError)
  // a batch queued while the sandbox starts waits for it
  const early = harness('counter')
  const starting = early.sandbox.start()
  const queued = early.sandbox.sendMany([{ type: 'inc' }, { type: 'inc' }])
  await starting
  assert.equal((await queued).map(contextOf), [{ count: 1, applied: [] }, { count: 2, applied: [] }])
})

test('sendMany: steps an event\'s processing causes are reported between its result and the next one\'s; no timer fires within a batch', async () => {
  const log: string[] = []
  let pongs = 0
  let secondPong!: () => void
  const ponged = new Promise<void>(resolve => { secondPong = resolve })
  const { sandbox, seen } = harness('echo', {
    onSpontaneous: (event, t) => {
      log.push(`spontaneous ${(event as { type: string }).type} ${JSON.stringify(t.context)}`)
      if (++pongs === 2) secondPong()
    }
  })
  await sandbox.start()
  const results = await sandbox.sendMany([{ type: 'ping' }, { type: 'inc' }, { type: 'ping' }], (i, r) => { log.push(`result ${i} ${JSON.stringify(contextOf(r))}`) })
  // the step the last event caused is reported right after its result, as for send: possibly once the batch has resolved
  await ponged
  assert.equal(log, [
    'result 0 {"pings":1,"pongs":0,"n":0}',
    'spontaneous pong {"pings":1,"pongs":1,"n":0}',
    'result 1 {"pings":1,"pongs":1,"n":1}',
    'result 2 {"pings":2,"pongs":1,"n":1}',
    'spontaneous pong {"pings":2,"pongs":2,"n":1}'
  ])
  assert.equal(contextOf(results[1]), { pings: 1, pongs: 1, n: 1 })
  assert.equal((await sandbox.current()).context, { pings: 2, pongs: 2, n: 1 })
  assert.equal(seen, [])

  // an invoked promise due at once completes after the batch, not between its events
  const fetcher = harness('fetcher')
  await fetcher.sandbox.start()
  const [loading, cancelled] = await fetcher.sandbox.sendMany([{ type: 'fetch', ms: 0, value: 'x' }, { type: 'cancel' }])
  assert.is((loading as Transition).value, 'loading')
  assert.equal({ handled: (cancelled as Transition).handled, value: (cancelled as Transition).value }, { handled: true, value: 'idle' })
})

test('sendMany: an event that hangs or ends the thread fails alone; the events after it run on the replacement thread', async () => {
  const { sandbox, logs } = harness('looper', { timeoutMs: 800 })
  await sandbox.start()
  const order: number[] = []
  const began = Date.now()
  const results = await sandbox.sendMany([{ type: 'inc' }, { type: 'inc' }, { type: 'spin' }, { type: 'inc' }, { type: 'exit' }, { type: 'inc' }, { type: 'nope' }], i => { order.push(i) })
  const took = Date.now() - began
  assert.equal(order, [0, 1, 2, 3, 4, 5, 6])
  assert.equal(contextOf(results[0]), { count: 1 })
  assert.equal(contextOf(results[1]), { count: 2 })
  assert.instance(results[2], TransitionFailedError)
  assert.is((results[2] as TransitionFailedError).reason, 'timeout')
  assert.match((results[2] as Error).message, /"spin" did not finish within 800 ms; the event was not applied, and the machine's worker was replaced and resumed from the last good state/)
  assert.equal(contextOf(results[3]), { count: 3 }, 'resumed from the state after the last good event')
  assert.instance(results[4], TransitionFailedError)
  assert.is((results[4] as TransitionFailedError).reason, 'crashed')
  assert.match((results[4] as Error).message, /the worker crashed during the transition for event "exit" \(exit code 3\)/)
  assert.equal(contextOf(results[5]), { count: 4 })
  assert.is((results[6] as Transition).handled, false)
  // the timeout is per event: one spin costs one timeoutMs, not timeoutMs × the batch length
  assert.ok(took >= 800 && took < 800 * 3, `the batch took ${took} ms`)
  assert.equal((await sandbox.current()).context, { count: 4 })
  assert.equal((await sandbox.send({ type: 'inc' })).context, { count: 5 })
  assert.equal(logs.filter(l => l.stream === 'error'), [])

  // a step nobody sent that hangs before the batch is reached fails the machine: the batch is refused
  const hung = harness('looper', { timeoutMs: 500 })
  await hung.sandbox.start()
  await hung.sandbox.send({ type: 'later', what: 'spin' })
  await new Promise(resolve => setTimeout(resolve, 100))
  const refused = await hung.sandbox.sendMany([{ type: 'inc' }, { type: 'inc' }])
  assert.ok(refused.every(r => r instanceof MachineNotActiveError && /"spin" did not finish within 500 ms/.test(r.message)), String(refused))
  assert.is((await hung.spontaneous('spin')).t.status, 'error')
})

test('sendMany throughput (printed, not asserted)', async () => {
  const { sandbox } = harness('counter')
  await sandbox.start()
  const N = 4096
  const rate = (ms: number): string => `${Math.round(N / (ms / 1000)).toLocaleString('en-US')} events/s`
  // warm up
  for (let i = 0; i < 200; i++) await sandbox.send({ type: 'inc' })
  await sandbox.sendMany(Array.from({ length: 256 }, () => ({ type: 'inc' })))
  let t0 = performance.now()
  for (let i = 0; i < N; i++) await sandbox.send({ type: 'inc' })
  const single = performance.now() - t0
  const lines = [`send: ${rate(single)}`]
  for (const size of [32, 256]) {
    t0 = performance.now()
    for (let i = 0; i < N; i += size) {
      const results = await sandbox.sendMany(Array.from({ length: size }, () => ({ type: 'inc' })))
      assert.ok(!results.some(r => r instanceof Error))
    }
    const ms = performance.now() - t0
    lines.push(`sendMany (${size}): ${rate(ms)} (×${(single / ms).toFixed(1)})`)
  }
  console.log(`  machine sandbox, ${N} counter events each: ${lines.join(', ')}`)
})

test.run()
