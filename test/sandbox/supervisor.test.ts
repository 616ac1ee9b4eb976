/**
 * The skeleton every sandbox shares (src/sandbox/supervisor.ts), with fake
 * workers: no thread or process is started.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Mailbox, restartDelay, Supervisor, type Supervised, type Thread, type ThreadExit } from '../../src/sandbox/supervisor.js'

class Stopped extends Error {}

interface FakeLive extends Supervised { n: number, terminated: boolean }

function fakeThread (onTerminate: () => void): Thread {
  let exit!: (e: ThreadExit) => void
  const exited = new Promise<ThreadExit>(resolve => { exit = resolve })
  return { post: () => {}, terminate: async () => { onTerminate(); exit({ code: 0 }) }, exited, isolation: 'thread' }
}

/** A supervisor whose respawns make fake workers (or fail, while `failing`), after the supervisor's backoff. */
function harness (): { sup: Supervisor<FakeLive>, spawned: FakeLive[], delays: number[], failures: unknown[], restarts: () => number, failing: { on: boolean }, spawn: (delayMs: number) => Promise<FakeLive> } {
  const spawned: FakeLive[] = []
  const delays: number[] = []
  const failures: unknown[] = []
  const failing = { on: false }
  let restarts = 0
  let sup: Supervisor<FakeLive>
  const spawn = async (delayMs: number): Promise<FakeLive> => {
    delays.push(delayMs)
    await sup.backoff(delayMs)
    if (failing.on) throw new Error('the module did not load')
    const live: FakeLive = { n: spawned.length, retired: false, terminated: false, thread: fakeThread(() => { live.terminated = true }) }
    spawned.push(live)
    sup.track(live)
    return live
  }
  sup = new Supervisor<FakeLive>({ respawn: spawn, stoppedError: () => new Stopped('stopped'), onRestartFailed: err => { failures.push(err) }, onRestart: () => { restarts++ } })
  return { sup, spawned, delays, failures, restarts: () => restarts, failing, spawn }
}

async function started (h: ReturnType<typeof harness>): Promise<FakeLive> {
  const first = h.spawn(0)
  h.sup.starting(first)
  const live = await first
  h.sup.started()
  assert.is(h.sup.status, 'running')
  return live
}

test('restart delays: none for the first failure, then 100 ms doubling up to 30 s', () => {
  assert.equal([1, 2, 3, 4, 5].map(restartDelay), [0, 100, 200, 400, 800])
  assert.is(restartDelay(40), 30_000)
})

test('a first worker that does not load puts the sandbox back to new', async () => {
  const h = harness()
  h.failing.on = true
  const first = h.spawn(0)
  h.sup.starting(first)
  assert.is(h.sup.status, 'starting')
  await first.catch(() => {})
  assert.is(h.sup.startFailed(first), true)
  assert.is(h.sup.status, 'new')
  assert.is(h.sup.current, undefined)
})

test('a replaced worker is terminated and its successor serves; restarts are counted', async () => {
  const h = harness()
  const first = await started(h)
  h.sup.replace(first)
  assert.ok(first.retired && first.terminated)
  const next = await h.sup.acquire()
  assert.is(next.n, 1)
  assert.is(h.restarts(), 1)
  h.sup.replace(first)
  assert.is(h.restarts(), 1, 'a worker retired already is not replaced twice')
})

test('workers that keep failing are restarted with growing delays; a success resets them', async () => {
  const h = harness()
  let live = await started(h)
  h.sup.replace(live)
  live = await h.sup.acquire()
  h.sup.replace(live)
  live = await h.sup.acquire()
  assert.equal(h.delays, [0, 0, 100])
  h.sup.succeeded()
  h.sup.replace(live)
  await h.sup.acquire()
  assert.equal(h.delays, [0, 0, 100, 0])
})

test('a successor that fails to start is reported, and the next job tries again', async () => {
  const h = harness()
  const first = await started(h)
  h.failing.on = true
  h.sup.replace(first)
  try {
    await h.sup.acquire()
    assert.unreachable('a failed successor served')
  } catch (err) {
    assert.match((err as Error).message, /did not load/)
  }
  assert.is(h.failures.length, 1)
  assert.is(h.sup.current, undefined)
  h.failing.on = false
  // The second attempt waits its backoff (100 ms), then serves.
  const next = await h.sup.acquire()
  assert.is(next.n, 1)
})

test('stop cuts a restart delay short, ends queued work once, and terminates every worker', async () => {
  const h = harness()
  let live = await started(h)
  h.sup.replace(live)
  live = await h.sup.acquire()
  h.sup.replace(live)
  live = await h.sup.acquire()
  h.sup.replace(live)
  const waiting = h.sup.acquire() // the fourth start in a row waits 200 ms
  assert.is(h.delays.at(-1), 200)
  let stops = 0
  await h.sup.stop(() => { stops++ })
  await h.sup.stop(() => { stops++ })
  assert.is(stops, 1)
  try {
    await waiting
    assert.unreachable('a worker started after stop')
  } catch (err) {
    assert.instance(err, Stopped)
  }
  assert.ok(h.spawned.every(l => l.terminated), 'every worker was terminated')
  try {
    await h.sup.acquire()
    assert.unreachable('a stopped sandbox served')
  } catch (err) {
    assert.instance(err, Stopped)
  }
})

test('a mailbox runs its jobs one at a time, in order, those queued meanwhile too', async () => {
  const order: string[] = []
  let release!: () => void
  const held = new Promise<void>(resolve => { release = resolve })
  const box = new Mailbox<string>(job => {
    if (job === 'slow') return (async () => { order.push('slow:start'); await held; order.push('slow:end') })()
    order.push(job)
    return undefined
  })
  box.push('a')
  box.push('slow')
  const draining = box.drain()
  box.push('b')
  void box.drain() // a second drain while one runs does nothing
  assert.equal(order, ['a', 'slow:start'])
  release()
  await draining
  assert.equal(order, ['a', 'slow:start', 'slow:end', 'b'])
  box.push('c')
  assert.equal(box.takeAll(), ['c'])
})

test.run()
