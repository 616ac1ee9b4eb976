/**
 * The scheduler issue's acceptance on a 4-node mesh of real processes:
 * placement on distinct nodes, exactly-once queue delivery, fan-out,
 * self-healing after SIGKILL, and contained handler failures.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { LogLine } from '../src/protocol/messages.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { cli, startCli, startMesh, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/workloads'
let nodes: NodeProcess[] = []

test.before(async () => {
  nodes = await startMesh(4)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

function live (): NodeProcess[] {
  return nodes.filter(n => n.child.exitCode == null && n.child.signalCode == null)
}

async function workloads (node: NodeProcess): Promise<WorkloadStatus[]> {
  const r = await cli(['get', 'workloads', '-o', 'json', '--api', node.apiUrl])
  assert.is(r.code, 0, r.stderr)
  return JSON.parse(r.stdout) as WorkloadStatus[]
}

async function logLines (node: NodeProcess, name: string): Promise<LogLine[]> {
  return await node.api.request<LogLine[]>(`/v1/workloads/default/${name}/logs`, { timeoutMs: 10_000 })
}

/** Publishes `count` events through the node's HTTP API, `concurrency` at a time. */
async function publishMany (node: NodeProcess, topic: string, from: number, count: number, make: (n: number) => unknown = n => ({ n })): Promise<void> {
  let next = from
  const end = from + count
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < end) {
      const n = next++
      await node.api.request(`/v1/topics/${topic}/messages`, { method: 'POST', body: { data: make(n) }, timeoutMs: 10_000 })
    }
  }))
}

function countsOf (lines: LogLine[], pattern: RegExp): Map<number, number> {
  const counts = new Map<number, number>()
  for (const l of lines) {
    const m = pattern.exec(l.message)
    if (m != null) counts.set(Number(m[1]), (counts.get(Number(m[1])) ?? 0) + 1)
  }
  return counts
}

test('apply: a 2-replica stateless workload lands on 2 distinct nodes, and every node agrees', async () => {
  const r = await cli(['apply', `${FIXTURES}/counter.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /workload default\/counter running/)
  assert.match(r.stderr, /bundled default\/counter: artifact sha256:[0-9a-f]{12}/)
  const views = await Promise.all(nodes.map(async n => await waitUntil(async () => {
    const w = (await workloads(n)).find(x => x.name === 'counter')
    return w?.ready === 2 ? w : undefined
  }, { what: `node ${n.peerId} to see counter ready 2/2` })))
  const hosts = views[0]!.placement.map(p => p.peerId)
  assert.is(new Set(hosts).size, 2, 'replicas on distinct nodes')
  for (const v of views) {
    assert.is(v.kind, 'stateless')
    assert.is(v.status, 'Running')
    assert.equal(v.placement.map(p => p.peerId), hosts, 'same placement seen from every node')
  }
})

test('1,000 events on a queue-group workload are each handled exactly once across the replicas', async () => {
  await publishMany(nodes[3]!, 'count', 0, 1000)
  const counts = await waitUntil(async () => {
    const c = countsOf(await logLines(nodes[0]!, 'counter'), /^handled (\d+)$/)
    return c.size === 1000 ? c : undefined
  }, { timeoutMs: 30_000, intervalMs: 250, what: '1000 distinct handled events' })
  const twice = [...counts.entries()].filter(([, c]) => c !== 1)
  assert.equal(twice, [], 'no event handled more than once')
  const d = await nodes[1]!.api.request<{ placement: Array<{ handled: number }> }>('/v1/workloads/default/counter')
  const perReplica = d.placement.map(p => p.handled)
  assert.ok(perReplica.every(h => h > 0), `both replicas share the work: ${perReplica.join(', ')}`)
  // The nodes' Prometheus counters agree: 1,000 handled in all, none failed.
  let handled = 0
  for (const n of nodes) {
    const text = await (await n.api.fetch('/metrics')).text()
    handled += Number(/^beemesh_events_handled_total\{workload="default\/counter"\} (\d+)$/m.exec(text)?.[1] ?? 0)
    assert.not.match(text, /^beemesh_event_attempts_failed_total\{workload="default\/counter"/m)
  }
  assert.is(handled, 1000)
})

test('fan-out: each replica sees all 1,000 events', async () => {
  const r = await cli(['apply', `${FIXTURES}/fanout.ts`, '--api', nodes[1]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  await publishMany(nodes[2]!, 'broadcast', 0, 1000)
  const lines = await waitUntil(async () => {
    const l = await logLines(nodes[0]!, 'fanout')
    return l.filter(x => x.message.startsWith('seen ')).length >= 2000 ? l : undefined
  }, { timeoutMs: 30_000, intervalMs: 250, what: '2000 fan-out deliveries' })
  const byReplica = new Map<number, Set<number>>()
  for (const l of lines) {
    const m = /^seen (\d+)$/.exec(l.message)
    if (m == null) continue
    const seen = byReplica.get(l.replica) ?? new Set()
    seen.add(Number(m[1]))
    byReplica.set(l.replica, seen)
  }
  assert.equal([...byReplica.keys()].sort(), [0, 1])
  for (const seen of byReplica.values()) assert.is(seen.size, 1000)
})

test('re-applying with more replicas (a manifest over the module) replaces the set: 3 on distinct nodes, events reach all', async () => {
  const before = (await workloads(nodes[0]!)).find(w => w.name === 'fanout')!
  const r = await cli(['apply', `${FIXTURES}/fanout-3.yaml`, '-o', 'json', '--api', nodes[3]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const status = JSON.parse(r.stdout) as WorkloadStatus
  assert.is(status.replicas, 3)
  assert.ok(status.epoch > before.epoch)
  const scaled = await waitUntil(async () => {
    const w = (await workloads(nodes[1]!)).find(x => x.name === 'fanout')
    return w?.ready === 3 && w.placement.length === 3 ? w : undefined
  }, { what: 'fanout at 3 ready replicas with the old generation gone' })
  assert.is(new Set(scaled.placement.map(p => p.peerId)).size, 3)
  await publishMany(nodes[0]!, 'broadcast', 50_000, 1)
  await waitUntil(async () => new Set((await logLines(nodes[0]!, 'fanout')).filter(l => l.message === 'seen 50000').map(l => l.replica)).size === 3, { what: 'all 3 replicas to see the event' })
})

test('a handler that throws or loops forever is contained; other workloads keep running', async () => {
  const r = await cli(['apply', `${FIXTURES}/unruly.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const status = (await workloads(nodes[0]!)).find(w => w.name === 'unruly')!
  const host = nodes.find(n => n.peerId === status.placement[0]!.peerId)!
  const watcher = nodes.find(n => n !== host)!
  const deadLetters = startCli(['subscribe', 'beemesh.dead-letter.default.unruly', '--count', '2', '--api', watcher.apiUrl])
  await deadLetters.waitForOutput(/subscribed/, { stream: 'stderr' })
  await waitUntil(async () => (await host.api.request<string[]>('/v1/topics/beemesh.dead-letter.default.unruly/peers')).includes(watcher.peerId), { what: 'dead-letter subscription to propagate' })

  await publishMany(nodes[1]!, 'unruly', 1, 1, () => ({ mode: 'loop', n: 1 }))
  await publishMany(nodes[1]!, 'unruly', 2, 1, () => ({ mode: 'throw', n: 2 }))
  await publishMany(nodes[1]!, 'unruly', 3, 1, () => ({ mode: 'ok', n: 3 }))
  await waitUntil(async () => (await logLines(host, 'unruly')).some(l => l.message === 'ok 3'), { timeoutMs: 20_000, what: 'the good event after the bad ones' })

  const dead = await deadLetters.waitForOutput(/^(\{.*\}\n){2}/m, { timeoutMs: 20_000 })
  const letters = dead[0].trim().split('\n').map(l => JSON.parse(l).data)
  const errors = letters.map((l: { error: string }) => l.error).join(' | ')
  assert.match(errors, /timeout/)
  assert.match(errors, /refusing event 2/)

  const health = await host.api.request<{ status: string }>('/healthz')
  assert.is(health.status, 'ok')
  await publishMany(nodes[0]!, 'count', 5000, 10)
  await waitUntil(async () => countsOf(await logLines(nodes[0]!, 'counter'), /^handled (\d+)$/).has(5009), { what: 'counter still handles events' })
})

test('apply --no-wait returns at once; logs -f follows new lines from every replica', async () => {
  const r = await cli(['apply', `${FIXTURES}/fanout.ts`, '--no-wait', '--api', nodes[2]!.apiUrl], { timeoutMs: 30_000 })
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /workload default\/fanout accepted/)
  const follow = startCli(['logs', 'fanout', '-f', '--tail', '1', '--api', nodes[3]!.apiUrl])
  await follow.waitForOutput(/\n/)
  await publishMany(nodes[0]!, 'broadcast', 777_000, 1)
  const seen = await follow.waitForOutput(/\[(\d)@…\S+\] seen 777000\n[\s\S]*\[(?!\1)(\d)@…\S+\] seen 777000\n/, { timeoutMs: 15_000 })
  assert.ok(seen != null, 'both replicas\' lines arrive while following')
  follow.child.kill('SIGTERM')
  await follow.exited
})

test('SIGKILL of a replica\'s node: the replica count is restored on another node and later events are handled', async () => {
  const before = (await workloads(nodes[0]!)).find(w => w.name === 'counter')!
  const victimId = before.placement.find(p => p.peerId !== nodes[0]!.peerId)!.peerId
  const victim = nodes.find(n => n.peerId === victimId)!
  await victim.kill('SIGKILL')
  const observer = live().find(n => n !== victim)!
  const healed = await waitUntil(async () => {
    const w = (await workloads(observer)).find(x => x.name === 'counter')
    return w != null && w.ready === 2 && !w.placement.some(p => p.peerId === victimId) ? w : undefined
  }, { timeoutMs: 20_000, intervalMs: 250, what: 'counter back to 2 ready replicas without the killed node' })
  assert.is(new Set(healed.placement.map(p => p.peerId)).size, 2)
  assert.ok(healed.epoch > before.epoch, 'the re-tender took a higher epoch')

  await publishMany(observer, 'count', 10_000, 100)
  const counts = await waitUntil(async () => {
    const c = countsOf(await logLines(observer, 'counter'), /^handled (\d+)$/)
    let n = 0
    for (let i = 10_000; i < 10_100; i++) if (c.has(i)) n++
    return n === 100 ? c : undefined
  }, { timeoutMs: 20_000, intervalMs: 250, what: 'the 100 later events to be handled' })
  for (let i = 10_000; i < 10_100; i++) assert.is(counts.get(i), 1, `event ${i} handled once`)
})

test.run()
