/**
 * Topic dispatch (src/stateless/topics.ts) with a fake mesh, fake replicas
 * and a fake policy: publishing reaches the mesh and this node's replicas,
 * a queue group delivers each event to exactly one replica mesh-wide, fanout
 * to every one, subscriptions follow the replicas' topics, and a workload's
 * message the policy does not allow is dropped.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { NoSubscribersError } from '../../src/actors/errors.js'
import type { Decision, Principal } from '../../src/policy/engine.js'
import type { WorkloadIdentity } from '../../src/policy/trust.js'
import { generateKey } from '../../src/policy/credentials.js'
import type { LocalReplica } from '../../src/stateless/replica-host.js'
import { TopicDispatch, type TopicMesh, type TopicReplicas, type TopicTrust } from '../../src/stateless/topics.js'
import type { MeshMessage } from '../../src/transport/mesh-node.js'
import type { TopicEvent, WorkloadSpec } from '../../src/workloads/types.js'
import { A, SELF, spec } from '../scheduling/fakes.js'

class FakeMesh implements TopicMesh {
  readonly published: Array<{ topic: string, data: unknown, as?: WorkloadIdentity }> = []
  readonly subscribed = new Map<string, number>()
  peersOn = new Map<string, string[]>()
  async publish (topic: string, data: Uint8Array, options: { as?: WorkloadIdentity }): Promise<{ recipients: string[] }> {
    this.published.push({ topic, data: JSON.parse(new TextDecoder().decode(data)), ...(options.as != null ? { as: options.as } : {}) })
    return { recipients: this.topicPeers(topic) }
  }

  topicPeers (topic: string): string[] { return this.peersOn.get(topic) ?? [] }
  subscribe (topic: string): void { this.subscribed.set(topic, (this.subscribed.get(topic) ?? 0) + 1) }
  unsubscribe (topic: string): void { this.subscribed.set(topic, (this.subscribed.get(topic) ?? 0) - 1) }
}

class FakeReplicas implements TopicReplicas {
  readonly running: LocalReplica[] = []
  readonly delivered: Array<{ replica: string, event: TopicEvent }> = []
  list (): LocalReplica[] { return this.running }
  of (id: string): LocalReplica[] { return this.running.filter(r => r.workloadId === id) }
  deliver (local: LocalReplica, event: TopicEvent): void { this.delivered.push({ replica: `${local.workloadId}#${local.replica}`, event }) }
  add (s: WorkloadSpec, replica: number, status: LocalReplica['status'] = 'running'): LocalReplica {
    const r: LocalReplica = { workloadId: s.id, spec: s, replica, epoch: 1, status, handled: 0, failures: 0, startedAt: 0, backlog: [] }
    this.running.push(r)
    return r
  }
}

class FakeTrust implements TopicTrust {
  denied = new Set<string>()
  readonly refusals: string[] = []
  readonly identities: string[] = []
  authorize (principal: Principal, action: 'publish', resource: { kind: 'topic', name: string }): void {
    const d = this.decide(principal, action, resource)
    if (!d.allowed) throw new Error(d.reason)
  }

  decide (principal: Principal, _action: 'publish', resource: { kind: 'topic', name: string }): Decision {
    const who = principal.kind === 'workload' ? `${principal.namespace}/${principal.name}` : principal.kind
    return this.denied.has(`${who}>${resource.name}`) ? { allowed: false, reason: `${who} may not publish to ${resource.name}` } : { allowed: true, reason: 'allowed' }
  }

  noteRefusal (what: string, reason: string): void { this.refusals.push(`${what}:${reason}`) }
  async workloadIdentity (workloadId: string, replica: number): Promise<WorkloadIdentity> {
    this.identities.push(`${workloadId}#${replica}`)
    return { key: await generateKey(), id: `${workloadId}#${replica}`, chain: [] }
  }
}

function harness () {
  const mesh = new FakeMesh()
  const replicas = new FakeReplicas()
  const trust = new FakeTrust()
  const remote = new Map<string, Array<{ peerId: string, replica: number, epoch: number, status: string }>>()
  let n = 0
  const topics = new TopicDispatch({ selfId: SELF, mesh, trust, replicas, remoteReplicas: id => remote.get(id) ?? [], now: () => 42, newEventId: () => `e${n++}` })
  return { topics, mesh, replicas, trust, remote }
}

function message (topic: string, data: unknown, id: string, sender?: unknown): MeshMessage {
  return { topic, from: A, id, data: new TextEncoder().encode(JSON.stringify({ id, data, ts: 1 })), ...(sender != null ? { sender } : {}) }
}

test('publish sends an envelope to the mesh and offers the event to this node\'s subscribed replicas', async () => {
  const h = harness()
  const s = spec({ delivery: 'fanout', replicas: 1 })
  h.replicas.add(s, 0)
  const out = await h.topics.publish('orders', { n: 1 })
  assert.equal(out, { id: 'e0', topic: 'orders', recipients: [], localReplicas: 1 })
  assert.equal(h.mesh.published[0]!.data, { id: 'e0', data: { n: 1 }, ts: 42 })
  assert.equal(h.replicas.delivered.map(d => d.replica), ['default/web#0'])
})

test('publish refuses a topic nobody listens on, unless a replica publishes (no listener required)', async () => {
  const h = harness()
  try {
    await h.topics.publish('nowhere', 1)
    assert.unreachable('published to nobody')
  } catch (err) {
    assert.instance(err, NoSubscribersError)
  }
  const from = h.replicas.add(spec({ topics: ['in'] }), 0)
  await h.topics.publish('nowhere', 1, { requireListeners: false, from })
  assert.equal(h.trust.identities, ['default/web#0'])
  assert.ok(h.mesh.published[0]!.as != null, 'a replica publishes as its workload identity')
  h.trust.denied.add('default/web>secret')
  try {
    await h.topics.publish('secret', 1, { requireListeners: false, from })
    assert.unreachable('the policy let it publish')
  } catch (err) {
    assert.match(String(err), 'may not publish')
  }
})

test('a queue group takes each event once mesh-wide; fanout gives it to every replica', () => {
  const h = harness()
  const s = spec({ replicas: 2 })
  const local = h.replicas.add(s, 0)
  h.remote.set(s.id, [{ peerId: A, replica: 1, epoch: 1, status: 'running' }])
  let mine = 0
  for (let i = 0; i < 200; i++) if (h.topics.ownsEvent(local, `ev-${i}`)) mine++
  assert.ok(mine > 50 && mine < 150, `this node took ${mine} of 200`)
  // Alone in the group (the peer's copy failed), this node takes every event.
  h.remote.set(s.id, [{ peerId: A, replica: 1, epoch: 1, status: 'failed' }])
  assert.ok(Array.from({ length: 20 }, (_, i) => h.topics.ownsEvent(local, `ev-${i}`)).every(Boolean))
  const fan = harness()
  fan.replicas.add(spec({ name: 'log', delivery: 'fanout' }), 0)
  fan.replicas.add(spec({ name: 'log', delivery: 'fanout' }), 1)
  fan.replicas.add(spec({ name: 'down', delivery: 'fanout' }), 0, 'failed')
  fan.topics.dispatch('orders', { topic: 'orders', data: 1, from: A, id: 'x', attempt: 1 })
  assert.equal(fan.replicas.delivered.map(d => d.replica), ['default/log#0', 'default/log#1'])
})

test('subscriptions follow the replicas\' topics; none change once stopped', () => {
  const h = harness()
  h.topics.syncSubscriptions(new Set(['a', 'b']))
  h.topics.syncSubscriptions(new Set(['b', 'c']))
  assert.equal(Object.fromEntries(h.mesh.subscribed), { a: 0, b: 1, c: 1 })
  h.topics.stop()
  h.topics.syncSubscriptions(new Set())
  assert.equal(Object.fromEntries(h.mesh.subscribed), { a: 0, b: 1, c: 1 })
})

test('messages: only on subscribed topics, and a workload\'s message the policy denies is dropped', () => {
  const h = harness()
  h.replicas.add(spec({ delivery: 'fanout', replicas: 1 }), 0)
  assert.not.ok(h.topics.onMessage(message('orders', 1, 'm0')), 'taken before subscribing')
  h.topics.syncSubscriptions(new Set(['orders']))
  assert.ok(h.topics.onMessage(message('orders', { n: 2 }, 'm1')))
  assert.equal(h.replicas.delivered.map(d => [d.event.id, d.event.data]), [['m1', { n: 2 }]])
  h.trust.denied.add('default/rogue>orders')
  h.topics.onMessage(message('orders', 3, 'm2', { principal: { kind: 'workload', namespace: 'default', name: 'rogue', labels: {} } }))
  assert.is(h.replicas.delivered.length, 1)
  assert.equal(h.trust.refusals, ['orders:denied'])
})

test.run()
