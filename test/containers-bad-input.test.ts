/**
 * Container workloads given bad input or a failing engine, against the real
 * engine and 3 node processes: a container that exits non-zero, one that is
 * OOM-killed, a host port already bound, invalid resource quantities, a node
 * whose engine socket is absent, and an engine that dies under a running pod.
 * Each shows Failed (or is refused) with the engine's reason, `describe` shows
 * the events, and the nodes keep running.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createServer, type Server } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ContainerEngine } from '../src/containers/container-engine.js'
import type { WorkloadDescription } from '../src/workloads/views.js'
import { removeContainersOf, requireEngine, startPrivateEngine } from './helpers/engine.js'
import { cli, startNode, tempDir, waitUntil, type NodeProcess, testTrust, trustFlags } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/containers'
let engine: ContainerEngine
let shared: string
let nodes: NodeProcess[] = []
let privateEngine: Awaited<ReturnType<typeof startPrivateEngine>>

interface Status { containers?: { socket: string, available: boolean } }

test.before(async () => {
  ({ engine, socket: shared } = await requireEngine())
  privateEngine = await startPrivateEngine()
  // node 0: the shared engine; node 1: an engine the test kills; node 2: a socket that does not exist.
  const first = await startNode({ extra: ['--container-socket', shared] })
  nodes = [first, ...await Promise.all([
    startNode({ bootstrap: [first.address], extra: ['--container-socket', privateEngine.socket, '--label', 'engine=private'] }),
    startNode({ bootstrap: [first.address], extra: ['--container-socket', '/nonexistent/engine.sock'] })
  ])]
  await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === 2 || undefined, { what: `${n.peerId} to see 2 peers` })))
  await waitUntil(async () => ((await nodes[0]!.status()) as Status).containers?.available === true && ((await nodes[1]!.status()) as Status).containers?.available === true ? true : undefined, { what: 'nodes 0 and 1 to reach their engines' })
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await removeContainersOf(engine, nodes.map(n => n.peerId))
  await privateEngine.close()
})

async function describe (name: string): Promise<WorkloadDescription> {
  return await nodes[0]!.api.request<WorkloadDescription>(`/v1/workloads/default/${name}`, { timeoutMs: 10_000 })
}

async function apply (file: string): Promise<void> {
  const r = await cli(['apply', file, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, `apply ${file}: ${r.stderr}`)
}

async function failed (name: string): Promise<WorkloadDescription> {
  return await waitUntil(async () => { const d = await describe(name); return d.status === 'Failed' ? d : undefined }, { what: `${name} to fail`, timeoutMs: 30_000 })
}

async function healthy (): Promise<void> {
  for (const n of nodes) assert.match((await n.status()).state, /^running/, `${n.peerId} keeps running`)
}

test('a node whose engine socket is absent says so, and takes no container workloads', async () => {
  const status = (await nodes[2]!.status()) as Status
  assert.equal(status.containers, { socket: '/nonexistent/engine.sock', available: false })
  assert.match(nodes[2]!.stderr(), /container engine does not answer/)
  assert.match(nodes[2]!.stderr(), /\/nonexistent\/engine\.sock/)
  const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--container-socket', 'tcp://10.0.0.1:2375', '--data-dir', await tempDir(), '--api-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0'])
  assert.is(r.code, 2, 'a usage error')
  assert.match(r.stderr, /--container-socket: .*only unix sockets are supported/)
})

test('a container that exits 1 under restartPolicy Never is Failed with reason Error and its exit code', async () => {
  await apply(`${FIXTURES}/exit-1.yaml`)
  const d = await failed('exits')
  assert.ok(d.placement[0]!.peerId !== nodes[2]!.peerId, 'never placed on the node without an engine')
  assert.is(d.placement[0]?.pod?.reason, 'Error')
  assert.is(d.placement[0]?.pod?.exitCode, 1)
  const text = await cli(['describe', 'workload', 'exits', '--api', nodes[2]!.apiUrl])
  assert.match(text.stdout, /Warning\s+Error\s+.*exit code 1/)
  await healthy()
})

test('a container over its memory limit is OOM-killed: Failed with reason OOMKilled', async () => {
  await apply(`${FIXTURES}/oom.yaml`)
  const d = await failed('hog')
  assert.is(d.placement[0]?.pod?.reason, 'OOMKilled')
  assert.ok((d.podEvents ?? []).some(e => e.reason === 'OOMKilled'), JSON.stringify(d.podEvents))
  await healthy()
})

test('a host port already bound fails the pod with PortInUse, naming the port', async () => {
  const server: Server = createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '0.0.0.0', () => { resolve() }) })
  const port = (server.address() as { port: number }).port
  try {
    const dir = await tempDir()
    const file = join(dir, 'port.yaml')
    await writeFile(file, `apiVersion: v1
kind: Pod
metadata:
  name: port-taken
spec:
  restartPolicy: Never
  containers:
    - name: web
      image: busybox
      command: ["httpd", "-f", "-p", "8080"]
      ports:
        - containerPort: 8080
          hostPort: ${port}
`)
    const r = await cli(['apply', file, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
    assert.is(r.code, 1, r.stderr)
    assert.match(r.stderr, /default\/port-taken could not start: replica 0: PortInUse/)
    const d = await failed('port-taken')
    assert.is(d.placement[0]?.pod?.reason, 'PortInUse')
    assert.ok(d.events.some(e => e.reason === 'PortInUse' && e.message.includes(String(port))), JSON.stringify(d.events))
    await healthy()
  } finally {
    server.close()
  }
})

test('invalid resource quantities are refused before anything is placed', async () => {
  const r = await cli(['apply', `${FIXTURES}/bad-quantity.yaml`, '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(r.stderr, /bad-quantity\.yaml: spec\.containers\[0\]\.resources\.limits\.memory: .*1GB/)
  const missing = await nodes[0]!.api.request(`/v1/workloads/default/bad`, { timeoutMs: 5_000 }).then(() => 'found', (err: Error) => err.message)
  assert.match(missing, /not found/)
})

test('an engine that dies under a running pod: Failed with EngineUnavailable, the node keeps running, and the pod comes back with the engine', async () => {
  await apply(`${FIXTURES}/pinned.yaml`)
  const running = await waitUntil(async () => { const d = await describe('pinned'); return d.ready === 1 ? d : undefined }, { what: 'pinned to run', timeoutMs: 30_000 })
  assert.is(running.placement[0]?.peerId, nodes[1]!.peerId)
  await privateEngine.stop()
  const lost = await waitUntil(async () => {
    const d = await describe('pinned')
    return (d.podEvents ?? []).some(e => /EngineUnavailable|unreachable/.test(`${e.reason} ${e.message}`)) && d.ready === 0 ? d : undefined
  }, { what: 'the pod to fail with the engine', timeoutMs: 30_000 })
  assert.ok(lost.placement.every(p => p.status !== 'running'), JSON.stringify(lost.placement))
  await waitUntil(async () => ((await nodes[1]!.status()) as Status).containers?.available === false || undefined, { what: 'node 1 to stop advertising containers' })
  await healthy()
  // The only node it may run on has no engine now: it waits, Degraded, with the reason.
  await waitUntil(async () => (await describe('pinned')).events.some(e => e.reason === 'FailedScheduling' && /no container engine answers/.test(e.message)) || undefined, { what: 'a FailedScheduling event naming the engine', timeoutMs: 30_000 })
  await privateEngine.restart()
  const back = await waitUntil(async () => { const d = await describe('pinned'); return d.ready === 1 ? d : undefined }, { what: 'pinned to run again once the engine is back', timeoutMs: 60_000 })
  assert.ok(back.epoch > running.epoch, `re-placed at a higher epoch (${running.epoch} → ${back.epoch})`)
  // Exactly one container of it remains (the one from before the engine died was removed).
  const left = (await engine.list({ 'beemesh.workload': 'default/pinned' }))
  assert.is(left.length, 1, JSON.stringify(left.map(c => c.name)))
})

test('a node SIGKILLed and restarted adopts the container it still runs (nowhere else could take it)', async () => {
  // pinned (from the test above) runs on node 1, the only node labelled engine=private.
  const before = (await engine.list({ 'beemesh.workload': 'default/pinned' })).filter(c => c.running)
  assert.is(before.length, 1)
  const victim = nodes[1]!
  victim.child.kill('SIGKILL')
  await victim.exited
  await waitUntil(async () => (await describe('pinned')).events.some(e => e.reason === 'ReplicaLost' && e.message.includes(victim.peerId)) || undefined, { what: 'the guardians to notice the loss', timeoutMs: 20_000 })
  const back = await startNode({ dataDir: victim.dataDir, bootstrap: [nodes[0]!.address], extra: ['--container-socket', privateEngine.socket, '--label', 'engine=private'] })
  nodes[1] = back
  const d = await waitUntil(async () => { const x = await describe('pinned'); return x.ready === 1 && x.status === 'Running' && (x.podEvents ?? []).some(e => e.reason === 'Adopted') ? x : undefined }, { what: 'pinned to be Running again, adopted', timeoutMs: 30_000 })
  assert.is(d.placement[0]?.peerId, back.peerId)
  // The same container, never restarted: adopted, not replaced.
  const after = await engine.list({ 'beemesh.workload': 'default/pinned' })
  assert.equal(after.map(c => c.id), before.map(c => c.id))
  assert.ok(after[0]!.running)
  const text = await cli(['describe', 'workload', 'pinned', '--api', nodes[0]!.apiUrl])
  assert.match(text.stdout, /Adopted/)
})

test.run()
