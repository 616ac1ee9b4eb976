import { readFileSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bundleWorkload } from '../../src/bundle/bundler.js'
import { createServer } from 'node:net'
import { hostConfinement, SANDBOX_ARTIFACT, spawnConfined } from '../../src/sandbox/confine.js'
import { ArtifactLoadError, SandboxStoppedError, UnconfinedHostError } from '../../src/sandbox/errors.js'
import { inspectArtifact, ReplicaSandbox, type ReplicaSandboxInit, type SandboxLogLine } from '../../src/sandbox/sandbox.js'
import { InvalidDefinitionError } from '../../src/workloads/errors.js'
import type { TopicEvent, WorkloadIdentity } from '../../src/workloads/types.js'

const identity: WorkloadIdentity = { id: 'default/probe', name: 'probe', namespace: 'default', replica: 1, nodeId: 'node-a', epoch: 3 }

/** One artifact serving every test: `event.data.mode` picks the behaviour. */
const PROBE = `
export default {
  name: 'probe',
  kind: 'stateless',
  topics: ['probe'],
  async handler (event, ctx) {
    const { mode, n } = event.data
    switch (mode) {
      case 'ok': return
      case 'publish': await ctx.publish('out', { n, workload: ctx.workload }); return
      case 'publish-fails':
        try { await ctx.publish('refused', { n }) } catch (err) { ctx.log('caught', { error: err.message }) }
        return
      case 'publish-bad': await ctx.publish('out', { big: 1n }); return
      case 'log': ctx.log('hello', { n }); console.log('from console', n); console.error('to stderr'); process.stdout.write('raw line\\n'); return
      case 'throw': throw new TypeError('bad order ' + n)
      case 'throw-string': throw 'plain'
      case 'spin': for (;;) {}
      case 'hog': { const keep = []; for (let i = 0; ; i++) keep.push({ i, s: 'x'.repeat(64) + i }) }
      case 'exit': process.exit(1)
      case 'exit-later': setTimeout(() => process.exit(2), 20); return
      case 'slow': ctx.log('start ' + n); await new Promise(resolve => setTimeout(resolve, 50)); ctx.log('end ' + n); return
      default: throw new Error('unknown mode ' + mode)
    }
  }
}
`

let dir = ''
let probe = ''
const sandboxes: ReplicaSandbox[] = []

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'beemesh-sandbox-'))
  probe = join(dir, 'probe.mjs')
  await writeFile(probe, PROBE)
})

test.after(async () => {
  await Promise.all(sandboxes.map(async s => { await s.stop() }))
})

interface Harness {
  sandbox: ReplicaSandbox
  published: Array<{ topic: string, data: unknown }>
  logs: SandboxLogLine[]
}

function harness (overrides: Partial<ReplicaSandboxInit> = {}): Harness {
  const published: Harness['published'] = []
  const logs: SandboxLogLine[] = []
  const sandbox = new ReplicaSandbox({
    artifactPath: probe,
    identity,
    timeoutMs: 2000,
    memoryLimitMb: 64,
    onPublish: async (topic, data) => {
      if (topic === 'refused') throw new Error('no route to the mesh')
      published.push({ topic, data })
    },
    onLog: line => { logs.push(line) },
    ...overrides
  })
  sandboxes.push(sandbox)
  return { sandbox, published, logs }
}

let seq = 0
function event (mode: string, n = ++seq): TopicEvent {
  return { topic: 'probe', data: { mode, n }, from: 'peer-x', id: `m-${n}`, attempt: 1 }
}

async function waitFor (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

async function rejects (p: Promise<unknown>, type: new (...args: any[]) => Error, pattern: RegExp): Promise<void> {
  try {
    await p
  } catch (err) {
    assert.instance(err, type)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected ${type.name} matching ${String(pattern)}`)
}

test('a handler that returns is ok; publish reaches onPublish with the identity', async () => {
  const { sandbox, published } = harness()
  await sandbox.start()
  const r = await sandbox.invoke(event('ok'))
  assert.is(r.ok, true)
  const p = await sandbox.invoke(event('publish', 7))
  assert.is(p.ok, true)
  assert.equal(published, [{ topic: 'out', data: { n: 7, workload: identity } }])
  assert.equal(sandbox.stats, { invocations: 2, failures: 0, restarts: 0 })
})

test('a failing publish rejects inside the handler; unserialisable data fails the call', async () => {
  const { sandbox, logs } = harness()
  await sandbox.start()
  const r = await sandbox.invoke(event('publish-fails'))
  assert.is(r.ok, true)
  const caught = logs.find(l => l.message === 'caught')
  assert.ok(caught != null)
  assert.match(String(caught.fields?.error), /publish failed: no route to the mesh/)
  const bad = await sandbox.invoke(event('publish-bad'))
  assert.equal({ ok: bad.ok, cause: bad.ok ? undefined : bad.cause }, { ok: false, cause: 'threw' })
  assert.match(bad.ok ? '' : bad.error, /ctx\.publish: the data for topic "out" is not JSON-serialisable/)
})

test('ctx.log, console and raw stdout/stderr reach onLog', async () => {
  const { sandbox, logs } = harness()
  await sandbox.start()
  const r = await sandbox.invoke(event('log', 42))
  assert.is(r.ok, true)
  const hello = logs.find(l => l.message === 'hello')
  assert.equal(hello?.fields, { n: 42 })
  assert.is(hello?.stream, 'log')
  assert.is(hello?.replica, 1)
  assert.ok(typeof hello?.ts === 'number' && hello.ts > 0)
  assert.ok(logs.some(l => l.message === 'from console 42' && l.stream === 'log'))
  assert.ok(logs.some(l => l.message === 'to stderr' && l.stream === 'error'))
  await waitFor(() => logs.some(l => l.message === 'raw line' && l.stream === 'log'), 'the raw stdout line')
})

test('a throwing handler fails with threw and the worker is kept', async () => {
  const { sandbox } = harness()
  await sandbox.start()
  const r = await sandbox.invoke(event('throw', 5))
  assert.equal(r.ok ? r : { ok: r.ok, cause: r.cause, error: r.error }, { ok: false, cause: 'threw', error: 'TypeError: bad order 5' })
  const s = await sandbox.invoke(event('throw-string'))
  assert.is(s.ok ? '' : s.error, 'plain')
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
  assert.equal(sandbox.stats, { invocations: 3, failures: 2, restarts: 0 })
})

test('a handler past its timeout is stopped, its worker replaced, and the next call works', async () => {
  const { sandbox } = harness({ timeoutMs: 300 })
  await sandbox.start()
  const r = await sandbox.invoke(event('spin'))
  assert.is(r.ok, false)
  assert.is(r.ok ? '' : r.cause, 'timeout')
  assert.match(r.ok ? '' : r.error, /did not finish within 300 ms/)
  assert.ok(r.ms >= 300, `took ${r.ms} ms`)
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
  assert.equal(sandbox.stats, { invocations: 2, failures: 1, restarts: 1 })
})

test('a handler that exhausts its heap fails with out-of-memory and the next call works', async () => {
  const { sandbox } = harness({ memoryLimitMb: 32, timeoutMs: 30_000 })
  await sandbox.start()
  const r = await sandbox.invoke(event('hog'))
  assert.is(r.ok, false)
  assert.ok(!r.ok && (r.cause === 'out-of-memory' || r.cause === 'crashed'), JSON.stringify(r))
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
  assert.is(sandbox.stats.restarts, 1)
})

test('process.exit in a handler is a crash; the worker is replaced', async () => {
  const { sandbox } = harness()
  await sandbox.start()
  const r = await sandbox.invoke(event('exit'))
  assert.equal(r.ok ? r : { ok: r.ok, cause: r.cause }, { ok: false, cause: 'crashed' })
  assert.match(r.ok ? '' : r.error, /exit code 1/)
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
  assert.equal(sandbox.stats, { invocations: 2, failures: 1, restarts: 1 })
})

test('a worker that dies between calls is replaced and logged', async () => {
  const { sandbox, logs } = harness()
  await sandbox.start()
  assert.is((await sandbox.invoke(event('exit-later'))).ok, true)
  await waitFor(() => sandbox.stats.restarts === 1, 'the idle worker to be replaced')
  assert.ok(logs.some(l => l.stream === 'error' && /stopped outside a handler call \(exit code 2\); restarting it/.test(l.message)))
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
})

test('calls run one at a time, in order', async () => {
  const { sandbox, logs } = harness()
  await sandbox.start()
  const results = await Promise.all([sandbox.invoke(event('slow', 1001)), sandbox.invoke(event('slow', 1002))])
  assert.ok(results.every(r => r.ok))
  assert.equal(logs.map(l => l.message), ['start 1001', 'end 1001', 'start 1002', 'end 1002'])
})

test('stop ends queued and running calls with stopped; later calls too', async () => {
  const { sandbox } = harness({ timeoutMs: 10_000 })
  await sandbox.start()
  const running = sandbox.invoke(event('spin'))
  const queued = sandbox.invoke(event('ok'))
  await sandbox.stop()
  const [a, b] = await Promise.all([running, queued])
  assert.equal([a.ok ? 'ok' : a.cause, b.ok ? 'ok' : b.cause], ['stopped', 'stopped'])
  const after = await sandbox.invoke(event('ok'))
  assert.is(after.ok ? 'ok' : after.cause, 'stopped')
  await rejects(sandbox.start(), SandboxStoppedError, /default\/probe replica 1 is stopped/)
  assert.equal(sandbox.stats, { invocations: 0, failures: 0, restarts: 0 })
})

test('start rejects a module that throws, is not stateless, or has no handler', async () => {
  const cases: Array<[string, string, RegExp]> = [
    ['throws.mjs', "throw new Error('no config')\n", /cannot load workload default\/probe replica 1 from .*throws\.mjs: no config$/],
    ['nodefault.mjs', 'export const x = 1\n', /the module has no default export/],
    ['stateful.mjs', "export default { name: 'x', kind: 'stateful', topics: ['t'], handler () {} }\n", /kind "stateful"; only "stateless" workloads run in a sandbox/],
    ['nohandler.mjs', "export default { name: 'x', kind: 'stateless', topics: ['t'] }\n", /no handler or onCall function/]
  ]
  for (const [file, text, pattern] of cases) {
    await writeFile(join(dir, file), text)
    const { sandbox } = harness({ artifactPath: join(dir, file) })
    await rejects(sandbox.start(), ArtifactLoadError, pattern)
    const r = await sandbox.invoke(event('ok'))
    assert.is(r.ok ? 'ok' : r.cause, 'stopped', 'a sandbox that did not start runs nothing')
  }
})

test('start gives up on a module that never finishes loading', async () => {
  await writeFile(join(dir, 'hangs.mjs'), 'await new Promise(() => setInterval(() => {}, 1000))\nexport default {}\n')
  const { sandbox } = harness({ artifactPath: join(dir, 'hangs.mjs'), loadTimeoutMs: 500 })
  await rejects(sandbox.start(), ArtifactLoadError, /did not finish loading within 500 ms/)
})

test('an artifact built by bundleWorkload runs, helper imports included', async () => {
  await writeFile(join(dir, 'math.ts'), 'export const double = (n: number): number => n * 2\n')
  await writeFile(join(dir, 'doubler.ts'), `import { defineWorkload } from 'beemesh'
import { double } from './math.js'
export default defineWorkload<{ n: number }>({
  name: 'doubler',
  kind: 'stateless',
  topics: ['numbers'],
  handler: async (event, ctx) => { await ctx.publish('doubled', { n: double(event.data.n), by: ctx.workload.id }) }
})
`)
  const bundle = await bundleWorkload(join(dir, 'doubler.ts'))
  const artifactPath = join(dir, `${bundle.sha256}.mjs`)
  await writeFile(artifactPath, bundle.code)
  const { sandbox, published } = harness({ artifactPath, timeoutMs: bundle.spec.timeoutMs, memoryLimitMb: bundle.spec.memoryLimitMb })
  await sandbox.start()
  const r = await sandbox.invoke({ topic: 'numbers', data: { n: 21 }, from: 'p', id: 'x', attempt: 1 })
  assert.is(r.ok, true)
  assert.equal(published, [{ topic: 'doubled', data: { n: 42, by: 'default/probe' } }])
})

test('inspectArtifact returns the data of the default export and whether it has a handler', async () => {
  const info = await inspectArtifact(probe, { timeoutMs: 10_000 })
  assert.equal(info, { name: 'probe', kind: 'stateless', topics: ['probe'], hasHandler: true, hasOnCall: false })
  await writeFile(join(dir, 'cyclic.mjs'), "const d = { name: 'c', kind: 'stateless', topics: ['t'], nested: { f () {} } }\nd.self = d\nexport default d\n")
  assert.equal(await inspectArtifact(join(dir, 'cyclic.mjs')), { name: 'c', kind: 'stateless', topics: ['t'], nested: {}, hasHandler: false, hasOnCall: false })
})

test('inspectArtifact: load errors, missing exports and hangs are clear errors', async () => {
  await writeFile(join(dir, 'bad.mjs'), "throw new RangeError('port out of range')\n")
  await rejects(inspectArtifact(join(dir, 'bad.mjs'), { source: 'src/bad.ts' }), ArtifactLoadError, /^cannot load src\/bad\.ts: RangeError: port out of range$/)
  await writeFile(join(dir, 'none.mjs'), 'export const a = 1\n')
  await rejects(inspectArtifact(join(dir, 'none.mjs'), { source: 'none.ts' }), InvalidDefinitionError, /^none\.ts: the module has no default export/)
  await writeFile(join(dir, 'num.mjs'), 'export default 42\n')
  await rejects(inspectArtifact(join(dir, 'num.mjs'), { source: 'num.ts' }), InvalidDefinitionError, /^num\.ts: the default export is a number/)
  await writeFile(join(dir, 'exits.mjs'), 'process.exit(4)\n')
  await rejects(inspectArtifact(join(dir, 'exits.mjs'), { source: 'exits.ts' }), ArtifactLoadError, /exits\.ts: the worker exited \(exit code 4\) while loading the module/)
  await writeFile(join(dir, 'forever.mjs'), 'await new Promise(() => setInterval(() => {}, 1000))\n')
  await rejects(inspectArtifact(join(dir, 'forever.mjs'), { timeoutMs: 300 }), ArtifactLoadError, /did not finish loading within 300 ms/)
})

test('this host confines (tests run as root with bubblewrap installed)', () => {
  assert.is(hostConfinement().mode, 'confined', hostConfinement().reason)
})

test('inspectArtifact runs module top-level code confined: uid 65534, an empty environment (but PWD), none of the caller\'s files', async () => {
  const secret = join(dir, 'secret.txt')
  await writeFile(secret, 'the caller\'s file')
  const file = join(dir, 'toplevel.mjs')
  await writeFile(file, `import { existsSync } from 'node:fs'
const probe = { uid: process.getuid(), env: Object.keys(process.env), sees: existsSync(${JSON.stringify(secret)}) }
export default { name: 'top', kind: 'stateless', topics: ['t'], probe }
`)
  const info = await inspectArtifact(file, { timeoutMs: 10_000 })
  // bwrap sets PWD (the scratch dir) and nothing else
  assert.equal(info.probe, { uid: 65534, env: ['PWD'], sees: false })
})

test('the OS layer holds without Node\'s permission model: no host files, read-only root, no shell, no signals to the host, no network', async () => {
  const secret = join(dir, 'host-secret.txt')
  await writeFile(secret, 'host')
  const server = createServer(socket => { socket.destroy() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const file = join(dir, 'os-layer.mjs')
  await writeFile(file, `import { readFileSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { connect } from 'node:net'
const code = f => { try { f(); return 'ok' } catch (e) { return e.code } }
const probe = {
  uid: process.getuid(),
  readHost: code(() => readFileSync(${JSON.stringify(secret)})),
  writeRoot: code(() => writeFileSync('/planted', 'x')),
  writeScratch: code(() => writeFileSync('/tmp/scratch', 'x')),
  shell: code(() => { const r = spawnSync('/bin/sh', ['-c', 'id']); if (r.error) throw r.error }),
  signalHost: code(() => process.kill(${process.pid}, 0)),
  tcp: await new Promise(resolve => { const s = connect(${port}, '127.0.0.1'); s.on('connect', () => { s.destroy(); resolve('ok') }); s.on('error', e => resolve(e.code)) })
}
export default { name: 'os', kind: 'stateless', topics: ['t'], probe }
`)
  const { child } = spawnConfined('worker', 64, { nodePermissions: false })
  try {
    const inspected = await new Promise<{ value: { probe: unknown } }>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('the confined worker did not report within 10 s')) }, 10_000)
      child.on('message', (msg: { type: string, value: { probe: unknown } }) => { if (msg.type === 'inspected') { clearTimeout(timer); resolve(msg) } })
      child.send({ mode: 'inspect', artifactPath: SANDBOX_ARTIFACT, artifactCode: readFileSync(file) })
    })
    assert.equal(inspected.value.probe, { uid: 65534, readHost: 'ENOENT', writeRoot: 'EROFS', writeScratch: 'ok', shell: 'ENOENT', signalHost: 'ESRCH', tcp: 'ECONNREFUSED' })
  } finally {
    child.kill('SIGKILL')
    server.close()
  }
})

test('isolation: thread still runs handlers (the --allow-unconfined fallback); refused fails start with the reason', async () => {
  const { sandbox } = harness({ isolation: 'thread' })
  await sandbox.start()
  assert.is((await sandbox.invoke(event('ok'))).ok, true)
  const refused = harness({ isolation: 'refused' })
  try {
    await refused.sandbox.start()
    assert.unreachable('a refused sandbox must not start')
  } catch (err) {
    assert.match((err as Error).message, /refuses to run workload code unconfined/)
    assert.instance((err as Error).cause ?? err, UnconfinedHostError)
  }
})

test.run()
