/**
 * The pod lifecycle machine, driven by in-memory stand-ins for the container
 * engine given with `.provide`: they record each call and let the test decide
 * when and how a container exits. The real engine (dockerode) is covered by
 * test/containers/container-engine.test.ts and the multi-process container tests.
 * Back-off delays run on a SimulatedClock; run durations on the `now` input.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createActor, fromPromise, SimulatedClock } from 'xstate'
import {
  isFinal,
  podMachine,
  podPhase,
  podStateName,
  type ContainerExit,
  type ContainerRef,
  type CreateContainerInput,
  type EnsureImageInput,
  type EnsureImageOutput,
  type PodAdoption,
  type PodEvent,
  type StopContainerInput
} from '../../src/machines/pod-machine.js'
import type { ContainerSpec } from '../../src/workloads/types.js'

const Mi = 1024 * 1024

function spec (over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    image: 'nginx:1.27',
    env: [],
    ports: [{ containerPort: 80, hostPort: 8080, protocol: 'TCP' }],
    restartPolicy: 'Never',
    imagePullPolicy: 'IfNotPresent',
    limits: { memoryBytes: 64 * Mi },
    backoff: { initialMs: 100, maxMs: 400, resetAfterMs: 10_000 },
    terminationGracePeriodSeconds: 30,
    ...over
  }
}

/** An error as the engine actors reject with: a message and a machine-readable reason. */
function engineError (message: string, reason?: string): Error {
  return Object.assign(new Error(message), reason != null ? { reason } : {})
}

interface Engine {
  ensureImage: (input: EnsureImageInput) => Promise<EnsureImageOutput>
  createContainer: (input: CreateContainerInput) => Promise<ContainerRef>
  /** `n` counts start calls from 1. */
  startContainer: (input: ContainerRef, n: number) => Promise<void>
  stopContainer: (input: StopContainerInput) => Promise<void>
  removeContainer: (input: ContainerRef) => Promise<void>
}

interface Options {
  adopt?: PodAdoption
  engine?: Partial<Engine>
  now?: () => number
}

interface Wait {
  containerId: string
  exit: (exit: ContainerExit) => void
  fail: (err: unknown) => void
}

function harness (over: Partial<ContainerSpec> = {}, opts: Options = {}) {
  const calls: string[] = []
  const events: PodEvent[] = []
  const waits: Wait[] = []
  const clock = new SimulatedClock()
  let starts = 0
  const engine: Engine = {
    ensureImage: async () => ({ pulled: true }),
    createContainer: async () => ({ containerId: 'c-1' }),
    startContainer: async () => {},
    stopContainer: async () => {},
    removeContainer: async () => {},
    ...opts.engine
  }
  const machine = podMachine.provide({
    actors: {
      ensureImage: fromPromise<EnsureImageOutput, EnsureImageInput>(async ({ input }) => {
        calls.push(`ensureImage ${input.image} ${input.pullPolicy}`)
        return await engine.ensureImage(input)
      }),
      createContainer: fromPromise<ContainerRef, CreateContainerInput>(async ({ input }) => {
        calls.push(`create ${input.name} ${input.spec.image}`)
        return await engine.createContainer(input)
      }),
      startContainer: fromPromise<void, ContainerRef>(async ({ input }) => {
        calls.push(`start ${input.containerId}`)
        await engine.startContainer(input, ++starts)
      }),
      waitContainer: fromPromise<ContainerExit, ContainerRef>(async ({ input }) => {
        calls.push(`wait ${input.containerId}`)
        return await new Promise<ContainerExit>((resolve, reject) => {
          waits.push({ containerId: input.containerId, exit: resolve, fail: reject })
        })
      }),
      stopContainer: fromPromise<void, StopContainerInput>(async ({ input }) => {
        calls.push(`stop ${input.containerId} grace=${input.graceSeconds}`)
        await engine.stopContainer(input)
      }),
      removeContainer: fromPromise<void, ContainerRef>(async ({ input }) => {
        calls.push(`remove ${input.containerId}`)
        await engine.removeContainer(input)
      })
    }
  })
  const actor = createActor(machine, {
    clock,
    input: {
      spec: spec(over),
      name: 'web-0',
      ...(opts.adopt != null ? { adopt: opts.adopt } : {}),
      ...(opts.now != null ? { now: opts.now } : {})
    }
  })
  actor.on('pod.event', e => { events.push(e) })
  actor.start()
  return {
    actor,
    clock,
    calls,
    events,
    /** The top-level state. */
    state: () => podStateName(actor.getSnapshot().value),
    context: () => actor.getSnapshot().context,
    /** Ends the container's current run. */
    exit: async (exitCode: number, oomKilled = false) => {
      const wait = waits.at(-1)
      assert.ok(wait != null, 'a container is being waited on')
      wait.exit({ exitCode, oomKilled })
      await flush()
    },
    failWait: async (err: unknown) => {
      waits.at(-1)?.fail(err)
      await flush()
    },
    /** Lets time pass on the machine's clock. */
    advance: async (ms: number) => {
      clock.increment(ms)
      await flush()
    },
    messages: (reason?: string) => events.filter(e => reason == null || e.reason === reason).map(e => e.message),
    reasons: () => events.map(e => e.reason)
  }
}

/** Lets the stand-in promises settle. */
async function flush (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 0))
}

test('Never, exit 0: pull, create, start, wait → Succeeded, with the events in kubectl order', async () => {
  const h = harness()
  await flush()
  assert.is(h.state(), 'Running')
  assert.equal(h.calls, ['ensureImage nginx:1.27 IfNotPresent', 'create web-0 nginx:1.27', 'start c-1', 'wait c-1'])
  await h.exit(0)
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.is(h.state(), 'Succeeded')
  assert.equal(h.events, [
    { type: 'pod.event', kind: 'Normal', reason: 'Pulling', message: 'Pulling image "nginx:1.27"' },
    { type: 'pod.event', kind: 'Normal', reason: 'Pulled', message: 'Successfully pulled image "nginx:1.27"' },
    { type: 'pod.event', kind: 'Normal', reason: 'Created', message: 'Created container web-0' },
    { type: 'pod.event', kind: 'Normal', reason: 'Started', message: 'Started container web-0' },
    { type: 'pod.event', kind: 'Normal', reason: 'Completed', message: 'Container web-0 completed (exit code 0)' }
  ])
  assert.is(s.context.containerId, 'c-1', 'kept so the runtime can remove the container')
  assert.is(s.context.exitCode, 0)
  assert.is(s.context.reason, 'Completed')
  assert.is(s.context.restarts, 0)
  assert.equal(podPhase(s), { phase: 'Succeeded', reason: 'Completed', display: 'Succeeded' })
  assert.ok(isFinal(s))
})

test('an image already there is Present, not Pulled; Always announces the pull up front', async () => {
  const present = harness({}, { engine: { ensureImage: async () => ({ pulled: false }) } })
  await flush()
  assert.equal(present.reasons(), ['Pulled', 'Created', 'Started'])
  assert.equal(present.messages('Pulled'), ['Container image "nginx:1.27" already present on machine'])

  let release = (): void => {}
  const always = harness({ imagePullPolicy: 'Always' }, {
    engine: { ensureImage: async () => { await new Promise<void>(resolve => { release = resolve }); return { pulled: true } } }
  })
  await flush()
  assert.is(always.state(), 'Pending')
  assert.equal(always.reasons(), ['Pulling'], 'told while the pull is in flight')
  release()
  await flush()
  assert.equal(always.reasons(), ['Pulling', 'Pulled', 'Created', 'Started'])
})

test('Never, exit 1 → Failed/Error, no restart', async () => {
  const h = harness()
  await flush()
  await h.exit(1)
  const s = h.actor.getSnapshot()
  assert.is(h.state(), 'Failed')
  assert.is(s.context.reason, 'Error')
  assert.is(s.context.exitCode, 1)
  assert.is(s.context.nodeFault, false)
  assert.equal(h.events.at(-1), { type: 'pod.event', kind: 'Warning', reason: 'Failed', message: 'Container web-0 exited with code 1' })
  assert.equal(podPhase(s), { phase: 'Failed', reason: 'Error', display: 'Failed/Error' })
  assert.is(h.calls.filter(c => c.startsWith('start')).length, 1)
})

test('OnFailure: back-off 100, 200, 400, capped at 400, restarting the same container; then exit 0 → Succeeded', async () => {
  const h = harness({ restartPolicy: 'OnFailure' })
  await flush()
  const delays = [100, 200, 400, 400]
  for (const [i, delay] of delays.entries()) {
    await h.exit(1)
    assert.is(h.state(), 'CrashLoopBackOff')
    assert.is(h.context().backoffMs, delay)
    assert.equal(podPhase(h.actor.getSnapshot()), { phase: 'CrashLoopBackOff', reason: 'Error', display: 'CrashLoopBackOff' })
    await h.advance(delay - 1)
    assert.is(h.state(), 'CrashLoopBackOff', `restart ${i + 1} waits the whole ${delay}ms`)
    await h.advance(1)
    assert.is(h.state(), 'Running')
    assert.is(h.context().restarts, i + 1)
  }
  assert.equal(h.messages('BackOff'), [
    'Back-off 100ms restarting failed container (restart 1, exit code 1)',
    'Back-off 200ms restarting failed container (restart 2, exit code 1)',
    'Back-off 400ms restarting failed container (restart 3, exit code 1)',
    'Back-off 400ms restarting failed container (restart 4, exit code 1)'
  ])
  assert.equal(h.events.filter(e => e.reason === 'BackOff').map(e => e.kind), ['Warning', 'Warning', 'Warning', 'Warning'])
  assert.equal(h.calls.filter(c => c.startsWith('create')), ['create web-0 nginx:1.27'], 'created once')
  assert.equal(h.calls.filter(c => c.startsWith('start')), ['start c-1', 'start c-1', 'start c-1', 'start c-1', 'start c-1'])
  await h.exit(0)
  assert.is(h.state(), 'Succeeded')
  assert.is(h.context().restarts, 4)
  assert.is(h.context().exitCode, 0)
})

test('Always restarts after exit 0 too', async () => {
  const h = harness({ restartPolicy: 'Always' })
  await flush()
  await h.exit(0)
  assert.is(h.state(), 'CrashLoopBackOff')
  assert.equal(h.messages('BackOff'), ['Back-off 100ms restarting container (restart 1, exit code 0)'])
  assert.equal(h.reasons().slice(-2), ['Completed', 'BackOff'])
  await h.advance(100)
  assert.is(h.state(), 'Running')
  assert.is(h.context().restarts, 1)
  assert.equal(h.calls.slice(-2), ['start c-1', 'wait c-1'])
})

test('a run of at least resetAfterMs resets the back-off to initialMs', async () => {
  let t = 1_000_000
  const h = harness({ restartPolicy: 'Always' }, { now: () => t })
  await flush()
  t += 50
  await h.exit(1)
  await h.advance(100)
  t += 50
  await h.exit(1)
  assert.is(h.context().backoffMs, 200, 'short runs keep doubling')
  await h.advance(200)
  assert.is(h.context().lastStartedAt, t)
  t += 9_999
  await h.exit(1)
  assert.is(h.context().backoffMs, 400, '9999ms is not long enough')
  await h.advance(400)
  t += 10_000
  await h.exit(1)
  assert.is(h.context().lastRunMs, 10_000)
  assert.is(h.context().backoffMs, 100, 'reset after a 10s run')
  await h.advance(100)
  t += 10
  await h.exit(1)
  assert.is(h.context().backoffMs, 200, 'and doubles again from there')
  assert.equal(h.messages('BackOff').map(m => m.split(' ')[1]), ['100ms', '200ms', '400ms', '100ms', '200ms'])
})

test('OOM-killed → reason OOMKilled, told with the memory limit', async () => {
  const h = harness()
  await flush()
  await h.exit(137, true)
  assert.is(h.state(), 'Failed')
  assert.is(h.context().reason, 'OOMKilled')
  assert.is(h.context().exitCode, 137)
  assert.equal(h.events.at(-1), {
    type: 'pod.event',
    kind: 'Warning',
    reason: 'OOMKilled',
    message: 'Container web-0 was killed: out of memory (limit 64Mi), exit code 137'
  })
  assert.is(podPhase(h.actor.getSnapshot()).display, 'Failed/OOMKilled')
})

test('OnFailure: an OOM kill with exit code 0 still counts as a failure', async () => {
  const h = harness({ restartPolicy: 'OnFailure' })
  await flush()
  await h.exit(0, true)
  assert.is(h.state(), 'CrashLoopBackOff')
  assert.is(h.context().reason, 'OOMKilled')
})

test('ensureImage fails → Failed/ErrImagePull (or the error\'s own reason), nothing created', async () => {
  const h = harness({}, { engine: { ensureImage: async () => { throw engineError('manifest for nginx:1.27 not found') } } })
  await flush()
  assert.is(h.state(), 'Failed')
  assert.is(h.context().reason, 'ErrImagePull')
  assert.is(h.context().message, 'manifest for nginx:1.27 not found')
  assert.is(h.context().containerId, undefined)
  assert.is(h.context().nodeFault, false)
  assert.equal(h.calls, ['ensureImage nginx:1.27 IfNotPresent'])
  assert.equal(h.events, [{ type: 'pod.event', kind: 'Warning', reason: 'Failed', message: 'Failed to pull image "nginx:1.27": manifest for nginx:1.27 not found' }])
  assert.equal(podPhase(h.actor.getSnapshot()), { phase: 'Failed', reason: 'ErrImagePull', display: 'Failed/ErrImagePull' })

  const own = harness({ imagePullPolicy: 'Never' }, { engine: { ensureImage: async () => { throw engineError('image not present', 'ErrImageNeverPull') } } })
  await flush()
  assert.is(own.context().reason, 'ErrImageNeverPull')
})

test('createContainer fails → Failed/CreateContainerError', async () => {
  const h = harness({ restartPolicy: 'Always' }, { engine: { createContainer: async () => { throw engineError('invalid mount') } } })
  await flush()
  assert.is(h.state(), 'Failed')
  assert.is(h.context().reason, 'CreateContainerError')
  assert.equal(h.messages('Failed'), ['Error: failed to create container "web-0": invalid mount'])
})

test('start fails with PortInUse under Never → Failed/PortInUse, never waited on', async () => {
  const h = harness({}, {
    engine: { startContainer: async () => { throw engineError('Bind for 0.0.0.0:8080 failed: port is already allocated', 'PortInUse') } }
  })
  await flush()
  assert.is(h.state(), 'Failed')
  assert.is(h.context().reason, 'PortInUse')
  assert.is(h.context().exitCode, undefined)
  assert.is(h.context().containerId, 'c-1')
  assert.not.ok(h.calls.some(c => c.startsWith('wait')))
  assert.equal(h.events.at(-1), {
    type: 'pod.event',
    kind: 'Warning',
    reason: 'Failed',
    message: 'Error: failed to start container "web-0": Bind for 0.0.0.0:8080 failed: port is already allocated'
  })
})

test('start fails under OnFailure → back-off and start the same container again', async () => {
  const h = harness({ restartPolicy: 'OnFailure' }, {
    engine: { startContainer: async (_input, n) => { if (n === 1) throw engineError('no such network') } }
  })
  await flush()
  assert.is(h.state(), 'CrashLoopBackOff')
  assert.is(h.context().reason, 'RunContainerError', 'the default when the error has no reason')
  assert.equal(h.messages('BackOff'), ['Back-off 100ms restarting failed container (restart 1, RunContainerError)'])
  await h.advance(100)
  assert.is(h.state(), 'Running')
  assert.equal(h.calls.filter(c => c.startsWith('start') || c.startsWith('create')), ['create web-0 nginx:1.27', 'start c-1', 'start c-1'])
})

test('the engine goes away during wait → Failed/EngineUnavailable with nodeFault, whatever the policy', async () => {
  const h = harness({ restartPolicy: 'Always' })
  await flush()
  await h.failWait(engineError('connect ENOENT /run/podman/podman.sock', 'EngineUnavailable'))
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.is(h.state(), 'Failed')
  assert.is(s.context.nodeFault, true)
  assert.is(s.context.reason, 'EngineUnavailable')
  assert.is(s.context.restarts, 0)
  assert.equal(h.messages('Failed'), ['Container engine unavailable: connect ENOENT /run/podman/podman.sock'])
  assert.is(podPhase(s).display, 'Failed/EngineUnavailable')
})

test('the engine goes away at start → nodeFault too, no back-off', async () => {
  const h = harness({ restartPolicy: 'OnFailure' }, {
    engine: { startContainer: async () => { throw engineError('socket hang up', 'EngineUnavailable') } }
  })
  await flush()
  assert.is(h.state(), 'Failed')
  assert.is(h.context().nodeFault, true)
  assert.equal(h.messages('BackOff'), [])
})

test('a wait that fails for another reason goes through the policy', async () => {
  const h = harness({ restartPolicy: 'OnFailure' })
  await flush()
  await h.failWait(engineError('no such container'))
  assert.is(h.state(), 'CrashLoopBackOff')
  assert.is(h.context().reason, 'ContainerStatusUnknown')
  assert.equal(h.messages('Failed'), ['Error: lost track of container "web-0": no such container'])
})

test('STOP from Running → Killing, stop with the grace period, then remove → Terminated', async () => {
  const h = harness({ restartPolicy: 'Always' })
  await flush()
  h.actor.send({ type: 'STOP' })
  assert.is(h.state(), 'Terminating')
  assert.equal(podPhase(h.actor.getSnapshot()), { phase: 'Terminating', display: 'Terminating' })
  await flush()
  const s = h.actor.getSnapshot()
  assert.is(s.status, 'done')
  assert.is(h.state(), 'Terminated')
  assert.equal(h.calls.slice(-2), ['stop c-1 grace=30', 'remove c-1'])
  assert.equal(h.events.at(-1), { type: 'pod.event', kind: 'Normal', reason: 'Killing', message: 'Stopping container web-0' })
  assert.is(s.context.message, undefined, 'a clean stop records nothing')
  assert.ok(isFinal(s))
})

test('STOP may override the grace period', async () => {
  const h = harness()
  await flush()
  h.actor.send({ type: 'STOP', graceSeconds: 2 })
  await flush()
  assert.ok(h.calls.includes('stop c-1 grace=2'))
})

test('stop and remove errors still end in Terminated, with the messages recorded', async () => {
  const h = harness({}, {
    engine: {
      stopContainer: async () => { throw engineError('container already stopped') },
      removeContainer: async () => { throw engineError('removal already in progress') }
    }
  })
  await flush()
  h.actor.send({ type: 'STOP' })
  await flush()
  assert.is(h.state(), 'Terminated')
  assert.equal(h.calls.slice(-2), ['stop c-1 grace=30', 'remove c-1'], 'remove is tried after a failed stop')
  assert.is(h.context().message, 'stop failed: container already stopped; remove failed: removal already in progress')
  assert.equal(h.messages('FailedKillPod'), [
    'error killing container web-0: container already stopped',
    'error removing container web-0: removal already in progress'
  ])
})

test('STOP during CrashLoopBackOff cancels the restart', async () => {
  const h = harness({ restartPolicy: 'Always' })
  await flush()
  await h.exit(1)
  assert.is(h.state(), 'CrashLoopBackOff')
  h.actor.send({ type: 'STOP' })
  await flush()
  assert.is(h.state(), 'Terminated')
  await h.advance(10_000)
  assert.equal(h.calls.filter(c => c.startsWith('start')), ['start c-1'], 'no restart after the back-off')
  assert.equal(h.calls.slice(-2), ['stop c-1 grace=30', 'remove c-1'])
  assert.is(h.context().restarts, 0)
})

test('STOP while pulling → Terminated with no engine calls on a container', async () => {
  const h = harness({}, { engine: { ensureImage: async () => await new Promise<EnsureImageOutput>(() => {}) } })
  await flush()
  assert.is(h.state(), 'Pending')
  h.actor.send({ type: 'STOP' })
  assert.is(h.state(), 'Terminated')
  assert.equal(h.calls, ['ensureImage nginx:1.27 IfNotPresent'])
})

test('STOP while the container is being created waits for its id, then stops and removes it', async () => {
  let created = (_ref: ContainerRef): void => {}
  const h = harness({}, { engine: { createContainer: async () => await new Promise<ContainerRef>(resolve => { created = resolve }) } })
  await flush()
  assert.is(h.state(), 'ContainerCreating')
  h.actor.send({ type: 'STOP' })
  assert.is(h.state(), 'ContainerCreating', 'still waiting for createContainer')
  created({ containerId: 'c-9' })
  await flush()
  assert.is(h.state(), 'Terminated')
  assert.equal(h.calls.slice(-2), ['stop c-9 grace=30', 'remove c-9'])
  assert.not.ok(h.calls.includes('start c-9'))
})

test('adopting a running container: straight to Running on its id, no pull or create', async () => {
  const h = harness({ restartPolicy: 'OnFailure' }, { adopt: { containerId: 'old-7', running: true, restarts: 3 } })
  assert.is(h.state(), 'Running')
  await flush()
  assert.equal(h.calls, ['wait old-7'])
  assert.equal(h.events, [])
  await h.exit(2)
  assert.is(h.state(), 'CrashLoopBackOff')
  assert.equal(h.messages('BackOff'), ['Back-off 100ms restarting failed container (restart 4, exit code 2)'])
  await h.advance(100)
  assert.is(h.context().restarts, 4)
  assert.equal(h.calls.slice(-2), ['start old-7', 'wait old-7'])
})

test('adopting an exited container: an unknown exit restarts under OnFailure and Always, fails under Never', async () => {
  for (const policy of ['OnFailure', 'Always'] as const) {
    const h = harness({ restartPolicy: policy }, { adopt: { containerId: 'old-7', running: false } })
    assert.is(h.state(), 'CrashLoopBackOff', policy)
    assert.is(h.context().reason, 'ContainerStatusUnknown')
    assert.equal(h.messages('BackOff'), ['Back-off 100ms restarting failed container (restart 1, ContainerStatusUnknown)'])
    await h.advance(100)
    assert.is(h.state(), 'Running')
    assert.equal(h.calls, ['start old-7', 'wait old-7'])
  }
  const never = harness({ restartPolicy: 'Never' }, { adopt: { containerId: 'old-7', running: false } })
  assert.is(never.state(), 'Failed')
  assert.is(never.context().containerId, 'old-7')
  assert.equal(never.messages(), ['Container web-0 exited while unsupervised; exit code unknown'])
  await flush()
  assert.equal(never.calls, [])
})

test('adopting an exited container whose exit code is known decides by it', async () => {
  const h = harness({ restartPolicy: 'OnFailure' }, { adopt: { containerId: 'old-7', running: false, exitCode: 0 } })
  assert.is(h.state(), 'Succeeded')
  assert.is(h.context().exitCode, 0)
  assert.is(h.context().reason, 'Completed')
})

test.run()
