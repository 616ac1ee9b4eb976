/**
 * ContainerHost with an in-memory engine (no Podman): every effect of the
 * pod machine hands its AbortSignal to the engine, so a STOP while a call is
 * under way aborts that call instead of leaving it to finish unheeded.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ContainerHost } from '../../src/containers/container-host.js'
import type { ContainerDetails, ContainerExitStatus, ContainerSummary, CreateContainerOptions, EngineCallOptions, EngineInfo, PodEngine, PullOptions } from '../../src/containers/container-engine.js'
import { toWorkloadSpec } from '../../src/workloads/spec.js'
import { silentLogger } from '../../src/transport/logger.js'

/** An engine call that is under way: it settles only when its signal aborts (or the test lets it go). */
interface Pending {
  what: string
  signal?: AbortSignal
  /** Set when the call rejected because its signal aborted. */
  aborted: boolean
  release: () => void
}

/** Answers every call at once, except those named in `hang`, which wait on their signal. */
class FakeEngine implements PodEngine {
  readonly calls: string[] = []
  readonly pending = new Map<string, Pending>()
  private readonly waiters = new Map<string, () => void>()

  constructor (private readonly hang: Set<string>, private readonly imagePresent = true) {}

  /** Resolves once a call named `what` is under way. */
  async under (what: string, timeoutMs = 5_000): Promise<Pending> {
    const have = this.pending.get(what)
    if (have != null) return have
    return await new Promise<Pending>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`no ${what} call within ${timeoutMs} ms (calls: ${this.calls.join(', ')})`)) }, timeoutMs)
      this.waiters.set(what, () => { clearTimeout(timer); resolve(this.pending.get(what)!) })
    })
  }

  private async step<T> (what: string, signal: AbortSignal | undefined, value: T): Promise<T> {
    this.calls.push(what)
    if (!this.hang.has(what)) return value
    return await new Promise<T>((resolve, reject) => {
      const p: Pending = { what, aborted: false, release: () => { resolve(value) }, ...(signal != null ? { signal } : {}) }
      this.pending.set(what, p)
      signal?.addEventListener('abort', () => { p.aborted = true; reject(signal.reason) }, { once: true })
      this.waiters.get(what)?.()
    })
  }

  async ping (_timeoutMs?: number, o: EngineCallOptions = {}): Promise<EngineInfo> { return await this.step('ping', o.signal, { engine: 'Fake Engine', version: '1', apiVersion: '1' }) }
  async alive (_timeoutMs?: number, o: EngineCallOptions = {}): Promise<void> { await this.step('alive', o.signal, undefined) }
  async hasImage (_image: string, o: EngineCallOptions = {}): Promise<boolean> { return await this.step('hasImage', o.signal, this.imagePresent) }
  async pull (_image: string, o: PullOptions = {}): Promise<void> { await this.step('pull', o.signal, undefined) }
  async create (_opts: CreateContainerOptions, o: EngineCallOptions = {}): Promise<string> { return await this.step('create', o.signal, 'c1') }
  async start (_id: string, o: EngineCallOptions = {}): Promise<void> { await this.step('start', o.signal, undefined) }
  async wait (_id: string, o: EngineCallOptions = {}): Promise<ContainerExitStatus> { return await this.step('wait', o.signal, { exitCode: 0, oomKilled: false }) }
  async stop (_id: string, _grace: number, o: EngineCallOptions = {}): Promise<void> { await this.step('stop', o.signal, undefined) }
  async remove (_id: string, o: EngineCallOptions = {}): Promise<void> { await this.step('remove', o.signal, undefined) }
  async inspect (_id: string, o: EngineCallOptions = {}): Promise<ContainerDetails | undefined> { return await this.step('inspect', o.signal, undefined) }
  async list (_labels: Record<string, string> | string[], o: EngineCallOptions = {}): Promise<ContainerSummary[]> { return await this.step('list', o.signal, []) }
  async logs (): Promise<void> {}
}

const spec = (imagePullPolicy: 'IfNotPresent' | 'Always' = 'IfNotPresent'): ReturnType<typeof toWorkloadSpec> =>
  toWorkloadSpec({ kind: 'container', name: 'web', image: 'nginx:1.27', imagePullPolicy, terminationGracePeriodSeconds: 1 }, { source: 'test', now: 0 })

async function hostWith (engine: FakeEngine): Promise<ContainerHost> {
  const host = new ContainerHost({ selfId: 'node-a', engine, log: silentLogger, onEnded: () => {}, pingEveryMs: 60_000 })
  await host.open()
  assert.ok(host.available, 'the fake engine answered the ping')
  return host
}

test('a STOP while the image is being looked up aborts the lookup', async () => {
  const engine = new FakeEngine(new Set(['hasImage']))
  const host = await hostWith(engine)
  const s = spec()
  const starting = host.start(s, 0, 1).catch((err: unknown) => err)
  const lookup = await engine.under('hasImage')
  assert.ok(lookup.signal != null, 'ensureImage passed its signal to hasImage')
  assert.is(lookup.aborted, false)
  await host.stop(s.id, 0)
  assert.is(lookup.aborted, true, 'the lookup was aborted by the STOP')
  await starting
  assert.not.ok(engine.calls.includes('pull'), 'nothing was pulled after the STOP')
  assert.not.ok(engine.calls.includes('create'), 'no container was created after the STOP')
  await host.stopAll()
})

test('a STOP during a pull aborts the pull', async () => {
  const engine = new FakeEngine(new Set(['pull']))
  const host = await hostWith(engine)
  const s = spec('Always')
  const starting = host.start(s, 0, 1).catch((err: unknown) => err)
  const pull = await engine.under('pull')
  assert.ok(pull.signal != null, 'ensureImage passed its signal to pull')
  await host.stop(s.id, 0)
  assert.is(pull.aborted, true)
  await starting
  await host.stopAll()
})

test('a STOP while the container is starting aborts the start, then stops and removes the container', async () => {
  const engine = new FakeEngine(new Set(['start']))
  const host = await hostWith(engine)
  const s = spec()
  const starting = host.start(s, 0, 1).catch((err: unknown) => err)
  const start = await engine.under('start')
  assert.ok(start.signal != null, 'startContainer passed its signal to start')
  await host.stop(s.id, 0)
  assert.is(start.aborted, true)
  await starting
  const after = engine.calls.slice(engine.calls.indexOf('start') + 1)
  assert.ok(after.includes('stop') && after.includes('remove'), `the container is stopped and removed after the aborted start (calls after it: ${after.join(', ')})`)
  await host.stopAll()
})

test('stopping a running pod aborts its wait', async () => {
  const engine = new FakeEngine(new Set(['wait']))
  const host = await hostWith(engine)
  const s = spec()
  await host.start(s, 0, 1)
  const wait = await engine.under('wait')
  await host.stop(s.id, 0)
  assert.is(wait.aborted, true)
  await host.stopAll()
})

test.run()
