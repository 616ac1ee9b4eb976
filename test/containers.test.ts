/**
 * The containers issue's acceptance, against the real engine (Podman's
 * Docker-compatible service; see scripts/container-engine.sh) and 3 node
 * processes: a busybox pod that prints and exits → Succeeded with its logs;
 * OnFailure restarts with a growing back-off shown in the events; Always
 * restarts after exit 0; a 2-replica Deployment spread over 2 nodes; SIGKILL
 * of a hosting node → replaced elsewhere, and the stale container removed when
 * the node comes back; a missing image → Failed with ErrImagePull.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ContainerEngine } from '../src/containers/container-engine.js'
import type { LogLine } from '../src/protocol/messages.js'
import type { WorkloadDescription, WorkloadStatus } from '../src/workloads/views.js'
import { containersOf, removeContainersOf, requireEngine } from './helpers/engine.js'
import { cli, startMesh, startNode, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/containers'
let nodes: NodeProcess[] = []
let engine: ContainerEngine
const everyPeer = new Set<string>()

test.before(async () => {
  engine = (await requireEngine()).engine
  nodes = await startMesh(3)
  for (const n of nodes) everyPeer.add(n.peerId)
  // Every node advertises the container capability once its engine answered.
  await waitUntil(async () => {
    const status = await Promise.all(nodes.map(async n => await n.status()))
    return status.every(s => (s as { containers?: { available: boolean } }).containers?.available === true) || undefined
  }, { what: 'every node to reach its container engine', timeoutMs: 15_000 })
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await removeContainersOf(engine, [...everyPeer])
})

function alive (n: NodeProcess): boolean {
  return n.child.exitCode == null && n.child.signalCode == null
}

async function describe (name: string, via = nodes.find(alive)!): Promise<WorkloadDescription> {
  return await via.api.request<WorkloadDescription>(`/v1/workloads/default/${name}`, { timeoutMs: 10_000 })
}

async function apply (file: string, via = nodes[0]!): Promise<WorkloadStatus> {
  const r = await cli(['apply', `${FIXTURES}/${file}`, '-o', 'json', '--api', via.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, `apply ${file}: ${r.stderr}`)
  return JSON.parse(r.stdout) as WorkloadStatus
}

async function remove (name: string): Promise<void> {
  const r = await cli(['delete', 'workload', name, '--api', nodes.find(alive)!.apiUrl])
  assert.is(r.code, 0, r.stderr)
}

test('a busybox pod that prints and exits is Succeeded, with its stdout and stderr in the logs', async () => {
  await apply('hello.yaml')
  const done = await waitUntil(async () => { const d = await describe('hello'); return d.status === 'Succeeded' ? d : undefined }, { what: 'hello to succeed', timeoutMs: 30_000 })
  assert.is(done.placement[0]?.pod?.phase, 'Succeeded')
  assert.is(done.placement[0]?.pod?.exitCode, 0)
  // Logs through a node that does not host it: gathered from the host's engine.
  const other = nodes.find(n => n.peerId !== done.placement[0]!.peerId)!
  const lines = await waitUntil(async () => {
    const l = await other.api.request<LogLine[]>('/v1/workloads/default/hello/logs', { timeoutMs: 10_000 })
    return l.length >= 3 ? l : undefined
  }, { what: 'the logs of hello', timeoutMs: 10_000 })
  // Per stream: the engine keeps each stream's order, not the interleaving of the two (Podman stores back-to-back writes stdout first).
  assert.equal(lines.filter(l => l.stream === 'stdout').map(l => l.message), ['hello from a container', 'GREETING=bonjour'])
  assert.equal(lines.filter(l => l.stream === 'stderr').map(l => l.message), ['to stderr'])
  assert.is(lines.length, 3)
  const r = await cli(['logs', 'hello', '--api', other.apiUrl])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /\] hello from a container\n/)
  assert.match(r.stdout, /\] stderr to stderr\n/)
  const d = await cli(['describe', 'workload', 'hello', '--api', other.apiUrl])
  assert.is(d.code, 0, d.stderr)
  for (const reason of ['Scheduled', 'Created', 'Started', 'Completed']) assert.match(d.stdout, new RegExp(`\\b${reason}\\b`), `describe shows ${reason}:\n${d.stdout}`)
  const before = done.placement[0]!
  await remove('hello')
  await waitUntil(async () => (await containersOf(engine, before.peerId)).every(c => c.labels['beemesh.workload'] !== 'default/hello') || undefined, { what: 'hello\'s container to be removed on delete' })
})

test('OnFailure restarts a failing container with a growing back-off, shown in the events', async () => {
  await apply('onfailure.yaml')
  const d = await waitUntil(async () => {
    const x = await describe('flaky')
    return (x.podEvents ?? []).filter(e => e.reason === 'BackOff').length >= 3 ? x : undefined
  }, { what: '3 back-offs of flaky', timeoutMs: 30_000 })
  const delays = (d.podEvents ?? []).filter(e => e.reason === 'BackOff').map(e => {
    const m = /(\d+(?:\.\d+)?)\s*(ms|s)\b/.exec(e.message)
    assert.ok(m != null, `a BackOff event names its delay: ${e.message}`)
    return Number(m[1]) * (m[2] === 's' ? 1000 : 1)
  })
  assert.equal(delays.slice(0, 3), [200, 400, 800], `back-off doubles from 200 ms: ${delays.join(', ')}`)
  const pod = d.placement[0]!.pod!
  assert.ok(pod.restarts >= 2, `restarts counted: ${pod.restarts}`)
  assert.is(pod.exitCode, 3)
  // Between its short runs the pod waits out its back-off: `get` says so (as kubectl does), through any node.
  await waitUntil(async () => /flaky\s+container\s+0\/1\s+CrashLoopBackOff\s+[1-9]/.test((await cli(['get', 'workloads', '--api', nodes[1]!.apiUrl])).stdout) || undefined, { what: 'get to show flaky in CrashLoopBackOff', timeoutMs: 10_000 })
  await remove('flaky')
})

test('Always restarts a container that exits 0', async () => {
  await apply('always.yaml')
  const d = await waitUntil(async () => { const x = await describe('again'); return (x.placement[0]?.pod?.restarts ?? 0) >= 2 ? x : undefined }, { what: 'again to be restarted twice', timeoutMs: 30_000 })
  assert.not.equal(d.status, 'Succeeded')
  assert.is(d.placement[0]?.pod?.exitCode, 0)
  const logs = await nodes[2]!.api.request<LogLine[]>('/v1/workloads/default/again/logs', { timeoutMs: 10_000 })
  assert.ok(logs.filter(l => l.message === 'run').length >= 2, `one "run" line per start: ${logs.length}`)
  await remove('again')
})

test('a missing image fails the pod with ErrImagePull', async () => {
  // The apply itself fails: the container never ran.
  const r = await cli(['apply', `${FIXTURES}/missing-image.yaml`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 1, r.stderr)
  assert.match(r.stderr, /default\/no-image could not start: replica 0: ErrImagePull/)
  const d = await waitUntil(async () => { const x = await describe('no-image'); return x.status === 'Failed' ? x : undefined }, { what: 'no-image to fail', timeoutMs: 60_000 })
  assert.is(d.placement[0]?.pod?.reason, 'ErrImagePull')
  assert.ok(d.events.some(e => e.reason === 'ErrImagePull' && /beemesh-test\/does-not-exist/.test(e.message)), JSON.stringify(d.events))
  const get = await cli(['get', 'workloads', '--api', nodes[0]!.apiUrl])
  assert.match(get.stdout, /no-image\s+container\s+0\/1\s+Failed \(ErrImagePull\)/, get.stdout)
  await remove('no-image')
})

test('a 2-replica Deployment spreads over 2 of 3 nodes; SIGKILL of a host moves its replica, and the stale container goes when the node returns', async () => {
  const status = await apply('sleeper.yaml')
  const hosts = new Set(status.placement.map(p => p.peerId))
  assert.is(hosts.size, 2, `2 distinct nodes: ${[...hosts].join(', ')}`)
  await waitUntil(async () => (await describe('sleeper')).ready === 2 || undefined, { what: '2 running replicas', timeoutMs: 30_000 })
  for (const peerId of hosts) {
    const mine = (await containersOf(engine, peerId)).filter(c => c.labels['beemesh.workload'] === 'default/sleeper')
    assert.is(mine.length, 1, `one container on ${peerId}`)
    assert.ok(mine[0]!.running)
  }
  // Kill a host that is not the node we talk to.
  const victim = nodes.find(n => hosts.has(n.peerId) && n !== nodes[0]) ?? nodes.find(n => hosts.has(n.peerId))!
  const via = nodes.find(n => n !== victim)!
  const staleEpoch = (await containersOf(engine, victim.peerId)).find(c => c.labels['beemesh.workload'] === 'default/sleeper')!.labels['beemesh.epoch']
  victim.child.kill('SIGKILL')
  await victim.exited
  const moved = await waitUntil(async () => {
    const d = await describe('sleeper', via)
    const live = d.placement.filter(p => p.status === 'running' && p.peerId !== victim.peerId)
    return live.length === 2 && new Set(live.map(p => p.peerId)).size === 2 ? d : undefined
  }, { what: 'both replicas running on the two live nodes', timeoutMs: 30_000 })
  assert.ok(moved.epoch > status.epoch, `re-tendered at a higher epoch (${status.epoch} → ${moved.epoch})`)
  // The dead node's container still runs: nobody was there to stop it.
  assert.ok((await containersOf(engine, victim.peerId)).some(c => c.labels['beemesh.workload'] === 'default/sleeper' && c.labels['beemesh.epoch'] === staleEpoch))
  const back = await startNode({ dataDir: victim.dataDir, bootstrap: [via.address] })
  nodes[nodes.indexOf(victim)] = back
  assert.is(back.peerId, victim.peerId)
  await waitUntil(async () => (await containersOf(engine, back.peerId)).every(c => c.labels['beemesh.workload'] !== 'default/sleeper') || undefined, { what: 'the restarted node to remove its stale container', timeoutMs: 40_000 })
  // Removed when the node sorted out its containers at start (or, had a stale DHT copy of the
  // record let it adopt the container, by fencing at the next heartbeat of the new host).
  await back.waitForOutput(/removed a stale container|superseded by a newer epoch elsewhere/, { stream: 'stderr', timeoutMs: 5_000 })
  // And the workload still runs exactly 2 replicas, as the restarted node sees it once heartbeats arrive.
  const after = await waitUntil(async () => { const d = await describe('sleeper', back); return d.ready === 2 ? d : undefined }, { what: 'the restarted node to see 2 running replicas' })
  assert.is(after.placement.filter(p => p.status === 'running').length, 2)
  assert.ok(after.placement.every(p => p.peerId !== back.peerId), 'nothing of sleeper runs on the restarted node')
  await remove('sleeper')
  await waitUntil(async () => {
    for (const n of nodes) if ((await containersOf(engine, n.peerId)).some(c => c.labels['beemesh.workload'] === 'default/sleeper')) return undefined
    return true
  }, { what: 'every sleeper container removed on delete', timeoutMs: 20_000 })
})

test.run()
