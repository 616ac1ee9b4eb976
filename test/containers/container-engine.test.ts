/**
 * ContainerEngine against the real engine: Podman's Docker-compatible service
 * started by `scripts/container-engine.sh start` (DOCKER_HOST). No engine is a
 * loud failure, never a skip. Every container made here carries the label
 * beemesh.test=1 and is removed at the end.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ContainerEngine, portInUse, resolveEngineSocket, type CreateContainerOptions, type LogStream } from '../../src/containers/container-engine.js'
import { ContainerNameConflictError, EngineUnavailableError, ImagePullError, PortInUseError } from '../../src/containers/container-errors.js'
import { InvalidArgumentError } from '../../src/errors.js'
import { startPrivateEngine } from '../helpers/engine.js'

const TEST_LABEL = { 'beemesh.test': '1' }
const RUN = `${process.pid}-${Date.now().toString(36)}`
const START_HINT = 'Run: eval "$(scripts/container-engine.sh start)"'

const timings: Record<string, number> = {}
const cleanups: Array<() => Promise<void>> = []

// Checked before any test is defined, so a missing engine fails the file loudly
// however it is run (uvu swallows a before hook's error when run directly).
const engine = await (async () => {
  const socket = resolveEngineSocket(undefined)
  if (socket == null) throw new Error(`DOCKER_HOST is not set: these tests need a real container engine. ${START_HINT}`)
  const e = new ContainerEngine({ socketPath: socket })
  try {
    await e.ping(5_000)
  } catch (err) {
    throw new Error(`no container engine answers at ${socket} (${err instanceof Error ? err.message : String(err)}). ${START_HINT}`)
  }
  return e
})()

test.after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {})
  for (const c of await engine.list(TEST_LABEL).catch(() => [])) await engine.remove(c.id, { force: true }).catch(() => {})
  process.stdout.write(`\n  timings: ${Object.entries(timings).map(([k, v]) => `${k} ${v} ms`).join(', ')}\n`)
})

function spec (name: string, over: Partial<CreateContainerOptions> = {}): CreateContainerOptions {
  return { name: `beemesh-test-${RUN}-${name}`, image: 'busybox', env: [], ports: [], limits: {}, labels: { ...TEST_LABEL }, ...over }
}

async function timed<T> (label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now()
  try {
    return await fn()
  } finally {
    timings[label] = Math.round(performance.now() - t0)
  }
}

async function rejection (p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.instance(err, Error)
    assert.not.match((err as Error).message, /\n/, 'one-line message')
    return err as Error
  }
  assert.unreachable('expected a rejection')
  throw new Error('unreachable')
}

/** Resolves with `p`, or rejects after `ms` naming `what` (so a hang fails instead of stalling the file). */
async function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} did not settle within ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

test('resolveEngineSocket: the flag wins, then a unix DOCKER_HOST; tcp:// is refused', () => {
  assert.is(resolveEngineSocket('/run/x.sock', {}), '/run/x.sock')
  assert.is(resolveEngineSocket('unix:///run/x.sock', { DOCKER_HOST: 'unix:///run/y.sock' }), '/run/x.sock')
  assert.is(resolveEngineSocket(undefined, { DOCKER_HOST: 'unix:///run/y.sock' }), '/run/y.sock')
  assert.is(resolveEngineSocket(undefined, {}), undefined)
  assert.is(resolveEngineSocket('', { DOCKER_HOST: '' }), undefined)
  assert.throws(() => resolveEngineSocket(undefined, { DOCKER_HOST: 'tcp://10.0.0.1:2375' }), (err: Error) => err instanceof InvalidArgumentError && /only unix sockets.*tcp:\/\//.test(err.message))
})

test('portInUse reads the port from Podman and Docker answers', () => {
  assert.equal(portInUse('cannot listen on the TCP port: listen tcp4 :18089: bind: address already in use'), { port: 18089, protocol: 'TCP' })
  assert.equal(portInUse('cannot listen on the UDP port: listen udp4 0.0.0.0:53: bind: address already in use'), { port: 53, protocol: 'UDP' })
  assert.equal(portInUse('driver failed programming external connectivity on endpoint x: Bind for 0.0.0.0:8080 failed: port is already allocated'), { port: 8080, protocol: 'TCP' })
  assert.is(portInUse('no such container'), undefined)
})

test('ping names the engine and its version', async () => {
  const info = await timed('ping', async () => await engine.ping(5_000))
  assert.match(info.engine, /Engine$/)
  assert.match(info.version, /^\d+\.\d+/)
})

test('hasImage: the imported busybox by its short name; false for an unknown image', async () => {
  assert.is(await engine.hasImage('busybox'), true)
  assert.is(await engine.hasImage('busybox:latest'), true)
  assert.is(await engine.hasImage(`localhost/beemesh-no-such-image-${RUN}:v0`), false)
})

test('create, start, wait: exit code 3, stdout and stderr demultiplexed into lines', async () => {
  const id = await timed('create', async () => await engine.create(spec('exit3', {
    command: ['sh', '-c'],
    // (The pauses make the order across the two streams unambiguous for the engine's log.)
    args: ['echo "hello $WHO"; sleep 0.1; echo oops >&2; sleep 0.1; printf "no newline at first"; sleep 0.2; echo " ...then one"; printf tail; exit 3'],
    env: [{ name: 'WHO', value: 'bees' }]
  })))
  assert.match(id, /^[0-9a-f]{64}$/)
  await timed('start', async () => { await engine.start(id) })
  const exit = await within(15_000, 'wait', engine.wait(id))
  assert.is(exit.exitCode, 3)
  assert.is(exit.oomKilled, false)
  assert.ok(exit.finishedAt != null)

  const lines: Array<{ stream: LogStream, line: string, ts: number }> = []
  await within(10_000, 'logs', engine.logs(id, { follow: false, onLine: (stream, line, ts) => { lines.push({ stream, line, ts }) } }))
  const of = (s: LogStream): string[] => lines.filter(l => l.stream === s).map(l => l.line)
  assert.equal(of('stdout'), ['hello bees', 'no newline at first ...then one', 'tail'])
  assert.equal(of('stderr'), ['oops'])
  for (const l of lines) assert.ok(Math.abs(l.ts - Date.now()) < 60_000, `timestamp parsed from the engine: ${l.ts}`)
  // Sorting by time keeps the order the lines were written in, across both streams.
  assert.equal([...lines].sort((a, b) => a.ts - b.ts).map(l => l.line), ['hello bees', 'oops', 'no newline at first ...then one', 'tail'])

  const details = await engine.inspect(id)
  assert.ok(details != null)
  assert.is(details.running, false)
  assert.is(details.exitCode, 3)
  assert.is(details.labels['beemesh.test'], '1')
  assert.match(details.name, /exit3$/)


  const conflict = await rejection(engine.create(spec('exit3')))
  assert.instance(conflict, ContainerNameConflictError)
  assert.is((conflict as ContainerNameConflictError).code, 'CONTAINER_NAME_CONFLICT')
})

test('follow logs streams lines as they come and ends when the container stops', async () => {
  const id = await engine.create(spec('follow', { command: ['sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.1; done'] }))
  await engine.start(id)
  const got: string[] = []
  await within(10_000, 'followed logs', engine.logs(id, { follow: true, onLine: (_s, line) => { got.push(line) } }))
  assert.equal(got, ['line 1', 'line 2', 'line 3'])
  // (Podman 4.3 merges partial lines wrongly under `tail`, so tail is shown on whole lines.)
  const tail: string[] = []
  await engine.logs(id, { follow: false, tail: 2, onLine: (_s, line) => { tail.push(line) } })
  assert.equal(tail, ['line 2', 'line 3'])

  const long = await engine.create(spec('follow-abort', { command: ['sh', '-c', 'echo first; sleep 1000'] }))
  await engine.start(long)
  const ac = new AbortController()
  const seen: string[] = []
  const reading = engine.logs(long, { follow: true, signal: ac.signal, onLine: (_s, line) => { seen.push(line); ac.abort() } })
  await within(10_000, 'followed logs after abort', reading)
  assert.equal(seen, ['first'])
  await engine.remove(long, { force: true })
})

test('pulling a missing image is an ImagePullError ErrImagePull naming it, in bounded time', async () => {
  // A short name (resolved by the engine to docker.io: no network here) and an unreachable registry.
  for (const [label, image] of [['pull-fail-short-name', `beemesh-no-such-image-${RUN}`], ['pull-fail-refused-registry', `localhost:1/beemesh/missing-${RUN}:v1`]] as const) {
    const progress: unknown[] = []
    const err = await timed(label, async () => await rejection(engine.pull(image, { timeoutMs: 30_000, onProgress: e => { progress.push(e) } })))
    assert.instance(err, ImagePullError)
    assert.is((err as ImagePullError).reason, 'ErrImagePull')
    assert.ok(err.message.includes(image), err.message)
    assert.ok((timings[label] ?? Infinity) < 30_000)
  }
})

test('creating from an image the engine lacks is an ImagePullError ImageNotFound', async () => {
  const err = await rejection(engine.create(spec('no-image', { image: `localhost/beemesh-no-such-image-${RUN}:v0` })))
  assert.instance(err, ImagePullError)
  assert.is((err as ImagePullError).reason, 'ImageNotFound')
})

test('a memory limit the process exceeds: OOM-killed, exit 137', async () => {
  const id = await engine.create(spec('oom', {
    // dd's 64 MiB block buffer is touched as /dev/zero fills it: well past 8 MiB.
    command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'],
    limits: { memoryBytes: 8 * 1024 * 1024, cpuMillis: 500 }
  }))
  await engine.start(id)
  const exit = await within(20_000, 'wait', engine.wait(id))
  assert.is(exit.oomKilled, true, `oomKilled (exit ${exit.exitCode}); needs the conmon shim of scripts/container-engine.sh on Podman 4.3`)
  assert.is(exit.exitCode, 137)
})

test('a host port already bound on the node is a PortInUseError naming the port', async () => {
  const server: Server = createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '0.0.0.0', resolve) })
  cleanups.push(async () => { await new Promise<void>(resolve => server.close(() => { resolve() })) })
  const port = (server.address() as { port: number }).port
  const id = await engine.create(spec('port', { command: ['sleep', '1000'], ports: [{ containerPort: 8080, hostPort: port, protocol: 'TCP' }] }))
  const err = await rejection(engine.start(id))
  assert.instance(err, PortInUseError)
  assert.is((err as PortInUseError).port, port)
  assert.is((err as PortInUseError).reason, 'PortInUse')
  assert.ok(err.message.includes(String(port)), err.message)
})

test('a published port serves from the container', async () => {
  const probe: Server = createServer()
  await new Promise<void>(resolve => probe.listen(0, '0.0.0.0', resolve))
  const port = (probe.address() as { port: number }).port
  await new Promise<void>(resolve => probe.close(() => { resolve() }))
  const id = await engine.create(spec('httpd', {
    command: ['httpd', '-f', '-p', '8080', '-h', '/etc'],
    ports: [{ containerPort: 8080, hostPort: port, protocol: 'TCP' }, { containerPort: 9090, protocol: 'TCP' }]
  }))
  await engine.start(id)
  const body = await within(10_000, 'httpd', (async () => {
    for (;;) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/passwd`, { signal: AbortSignal.timeout(1_000) })
        return await res.text()
      } catch {
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    }
  })())
  assert.match(body, /^root:/)
  await engine.remove(id, { force: true })
})

test('stopping `sleep 1000` is quick: the init process forwards SIGTERM', async () => {
  const id = await engine.create(spec('sleep', { command: ['sleep', '1000'] }))
  await engine.start(id)
  assert.is((await engine.inspect(id))?.running, true)
  const waiting = engine.wait(id)
  await timed('stop-with-init', async () => { await engine.stop(id, 10) })
  assert.ok((timings['stop-with-init'] ?? Infinity) < 5_000, `stop took ${timings['stop-with-init']} ms (grace 10 s)`)
  const exit = await within(5_000, 'wait after stop', waiting)
  assert.is(exit.exitCode, 143)
  // Stopping or removing again is fine.
  await engine.stop(id, 1)
  await timed('remove', async () => { await engine.remove(id, { force: true }) })
  await engine.remove(id, { force: true })
  await engine.stop(id, 1)
  assert.is(await engine.inspect(id), undefined)
})

test('list by label returns running, exited and created containers', async () => {
  const labels = { ...TEST_LABEL, 'beemesh.test.run': `list-${RUN}` }
  const exited = await engine.create(spec('list-exited', { command: ['true'], labels }))
  await engine.start(exited)
  await within(10_000, 'wait', engine.wait(exited))
  const running = await engine.create(spec('list-running', { command: ['sleep', '1000'], labels }))
  await engine.start(running)
  const created = await engine.create(spec('list-created', { command: ['true'], labels }))
  const found = await engine.list({ 'beemesh.test.run': `list-${RUN}` })
  assert.equal(found.map(c => c.id).sort(), [exited, running, created].sort())
  const byId = new Map(found.map(c => [c.id, c]))
  assert.is(byId.get(running)?.running, true)
  assert.is(byId.get(exited)?.running, false)
  assert.is(byId.get(exited)?.state, 'exited')
  assert.is(byId.get(created)?.state, 'created')
  assert.match(byId.get(running)?.name ?? '', /list-running$/)
  assert.is(byId.get(running)?.labels['beemesh.test.run'], `list-${RUN}`)
  assert.is((await engine.list([`beemesh.test.run=list-${RUN}`])).length, 3)
  assert.is((await engine.list({ 'beemesh.test.run': `none-${RUN}` })).length, 0)
})

test('an unreachable socket is an EngineUnavailableError naming it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-engine-'))
  cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
  const missing = join(dir, 'missing.sock')
  const err = await rejection(new ContainerEngine({ socketPath: missing }).ping(2_000))
  assert.instance(err, EngineUnavailableError)
  assert.is((err as EngineUnavailableError).reason, 'EngineUnavailable')
  assert.ok(err.message.startsWith(`container engine at ${missing} is unreachable:`), err.message)
  assert.match(err.message, /ENOENT/)

  const notASocket = join(dir, 'file.sock')
  await writeFile(notASocket, '')
  const refused = await rejection(new ContainerEngine({ socketPath: notASocket }).hasImage('busybox'))
  assert.instance(refused, EngineUnavailableError)
  assert.match(refused.message, /ECONNREFUSED/)
})

test('the engine going away mid-wait rejects the wait at once with EngineUnavailableError', async () => {
  // A second service on a private socket (same storage), so the shared one stays up.
  const service = await startPrivateEngine()
  cleanups.push(async () => { await service.close() })
  const socket = service.socket
  const privateEngine = new ContainerEngine({ socketPath: socket })

  const id = await privateEngine.create(spec('engine-dies', { command: ['sleep', '1000'] }))
  await privateEngine.start(id)
  let settled = false
  const waiting = privateEngine.wait(id).finally(() => { settled = true })
  // A later request answered means the wait's request, sent first, reached the engine.
  await privateEngine.inspect(id)
  assert.is(settled, false, 'the wait is still pending while the container runs')
  const t0 = performance.now()
  const exited = service.stop()
  const err = await within(10_000, 'the wait after the engine died', rejection(waiting))
  timings['wait-rejects-after-engine-death'] = Math.round(performance.now() - t0)
  assert.instance(err, EngineUnavailableError)
  assert.ok(err.message.includes(socket), err.message)
  await within(10_000, 'the private service to exit', exited)
  // The container outlives its engine process; the shared service still sees it.
  assert.is((await engine.inspect(id))?.running, true)
  await engine.remove(id, { force: true })

  const after = await rejection(privateEngine.ping(2_000))
  assert.instance(after, EngineUnavailableError)
})

test('a caller abort ends a pending wait (or any call) with the abort reason', async () => {
  const id = await engine.create(spec('abort-wait', { command: ['sleep', '1000'] }))
  await engine.start(id)
  const ac = new AbortController()
  const waiting = engine.wait(id, { signal: ac.signal })
  setTimeout(() => { ac.abort(new Error('stopped by the test')) }, 100)
  const err = await within(5_000, 'aborted wait', rejection(waiting))
  assert.is(err.message, 'stopped by the test')
  await engine.remove(id, { force: true })
  // An aborted call is the abort, not an engine failure.
  const aborted = await rejection(engine.create(spec('abort-create'), { signal: AbortSignal.abort(new Error('not wanted')) }))
  assert.is(aborted.message, 'not wanted')
})

test.run()
