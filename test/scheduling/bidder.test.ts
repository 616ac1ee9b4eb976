/**
 * The bidder (src/scheduling/bidder.ts) with fakes of this node (its copies,
 * resources, capabilities), of admission and of the tenderer it answers: it
 * bids when the replica fits, declines with reasons when it does not, and
 * starts and confirms what it is awarded.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { BidRequest } from '../../src/protocol/messages.js'
import { Bidder, type BidderNode } from '../../src/scheduling/bidder.js'
import type { LocalCopy } from '../../src/scheduling/status.js'
import type { AnnouncedReplica, Award, Confirmation, Tender } from '../../src/scheduling/tenderer.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { Resources, WorkloadSpec } from '../../src/workloads/types.js'
import { A, B, Clock, SELF, catalog, record, spec } from './fakes.js'

class FakeNode implements BidderNode {
  used: Resources = { cpuMillis: 0, memoryBytes: 0 }
  held: LocalCopy[] = []
  caps = ['code']
  sorting = new Set<string>()
  readonly started: string[] = []
  readonly prefetched: string[] = []
  failStart?: string
  copies (id: string): LocalCopy[] { return this.held.filter(c => c.spec.id === id) }
  hosted (): string[] { return [...new Set(this.held.filter(c => c.kind !== 'machine').map(c => c.spec.id))] }
  allocated (): Resources { return { ...this.used } }
  capabilities (): string[] { return this.caps }
  isSorting (id: string): boolean { return this.sorting.has(id) }
  async start (s: WorkloadSpec, replica: number, epoch: number): Promise<void> {
    if (this.failStart != null) throw new Error(this.failStart)
    this.started.push(`${s.id}#${replica}@${epoch}`)
  }

  prefetch (s: WorkloadSpec, from: string[]): void { this.prefetched.push(`${s.id} from ${from.join(',')}`) }
}

function harness ({ refusal, labels = { zone: 'a' } }: { refusal?: string, labels?: Record<string, string> } = {}) {
  const clock = new Clock()
  const { catalog: c } = catalog(clock)
  const node = new FakeNode()
  const answers: Array<{ to: string, reply: BidRequest }> = []
  const confirmed: Array<Confirmation & { to: string }> = []
  const announced: AnnouncedReplica[] = []
  const bidder = new Bidder({
    selfId: SELF,
    log: silentLogger,
    labels,
    capacity: { cpuMillis: 1_000, memoryBytes: 1024 * 1024 * 1024 },
    catalog: c,
    node,
    admissible: async () => refusal,
    answer: async (to, reply) => { answers.push({ to, reply }) },
    confirm: async (to, m) => { confirmed.push({ ...m, to }) },
    announce: r => { announced.push(r) },
    tenderWindowMs: 250,
    now: clock.now
  })
  return { bidder, node, answers, confirmed, announced, catalog: c, clock }
}

function tender (s: WorkloadSpec, overrides: Partial<Tender> = {}): Tender {
  return { type: 'tender', tenderId: 't1', tenderer: A, epoch: 1, attempt: 1, spec: s, ordinals: [0], exclude: [], ...overrides }
}

function only (answers: Array<{ to: string, reply: BidRequest }>): BidRequest {
  assert.is(answers.length, 1)
  return answers[0]!.reply
}

test('bids when the replica fits, to the tenderer, and prefetches the artifact', async () => {
  const h = harness()
  await h.bidder.bidOn(tender(spec()))
  const reply = only(h.answers)
  assert.is(h.answers[0]!.to, A)
  assert.is(reply.type, 'bid')
  assert.equal(h.node.prefetched, [`default/web from ${A}`])
})

test('declines when over capacity, with the filter that refused it', async () => {
  const h = harness()
  h.node.used = { cpuMillis: 950, memoryBytes: 0 }
  await h.bidder.bidOn(tender(spec()))
  const reply = only(h.answers)
  assert.is(reply.type, 'decline')
  if (reply.type === 'decline') assert.equal(reply.rejections.map(r => r.filter), ['cpu'])
})

test('a bid reserves its resources for the window: the next tender sees them taken', async () => {
  const h = harness()
  await h.bidder.bidOn(tender(spec({ resources: { cpuMillis: 600, memoryBytes: 0 } }), { tenderId: 't1' }))
  await h.bidder.bidOn(tender(spec({ name: 'api', resources: { cpuMillis: 600, memoryBytes: 0 } }), { tenderId: 't2' }))
  assert.equal(h.answers.map(a => a.reply.type), ['bid', 'decline'])
  h.clock.advance(250 + 2_001)
  await h.bidder.bidOn(tender(spec({ name: 'api', resources: { cpuMillis: 600, memoryBytes: 0 } }), { tenderId: 't3' }))
  assert.is(h.answers[2]!.reply.type, 'bid', 'the reservation expired')
})

test('declines wrong labels, a refusal by policy, and a workload whose containers are being sorted out', async () => {
  const labels = harness({ labels: { zone: 'b' } })
  await labels.bidder.bidOn(tender(spec({ nodeSelector: { zone: 'a' } })))
  const l = only(labels.answers)
  assert.ok(l.type === 'decline' && l.rejections[0]!.filter === 'labels')
  const policy = harness({ refusal: 'this node may not host default/web: denied' })
  await policy.bidder.bidOn(tender(spec()))
  const p = only(policy.answers)
  assert.ok(p.type === 'decline' && p.rejections[0]!.filter === 'policy' && p.rejections[0]!.reason.includes('may not host'))
  const sorting = harness()
  sorting.node.sorting.add('default/web')
  await sorting.bidder.bidOn(tender(spec()))
  const s = only(sorting.answers)
  assert.ok(s.type === 'decline' && s.rejections[0]!.filter === 'already-hosting')
})

test('declines a workload it already hosts, but not when its copy is of an older generation', async () => {
  const h = harness()
  h.node.held = [{ kind: 'replica', spec: spec(), replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]
  await h.bidder.bidOn(tender(spec()))
  const same = only(h.answers)
  assert.ok(same.type === 'decline' && same.rejections[0]!.filter === 'already-hosting')
  const next = harness()
  next.node.held = [{ kind: 'replica', spec: spec(), replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]
  await next.bidder.bidOn(tender(spec({ artifact: { sha256: 'b'.repeat(64), size: 1 } }), { epoch: 2 }))
  assert.is(only(next.answers).type, 'bid')
})

test('a tender from a deposed tenderer (older epoch than the record) gets no answer', async () => {
  const h = harness()
  h.catalog.merge(record(spec(), { epoch: 3 }))
  await h.bidder.bidOn(tender(spec(), { epoch: 2 }))
  assert.is(h.answers.length, 0)
})

test('an award starts this node\'s replicas, confirms each, and announces the others', async () => {
  const h = harness()
  const award: Award = { type: 'award', tenderId: 't1', tenderer: A, workloadId: 'default/web', epoch: 1, spec: spec(), awards: [{ peerId: SELF, replica: 0 }, { peerId: B, replica: 1 }] }
  await h.bidder.onAward(award)
  assert.equal(h.node.started, ['default/web#0@1'])
  assert.equal(h.confirmed.map(m => `${m.type}#${m.replica}`), ['started#0'])
  // Confirmed to the tenderer that awarded it, not to the mesh.
  assert.equal(h.confirmed.map(m => m.to), [award.tenderer])
  assert.equal(h.announced.map(r => `${r.peerId}#${r.replica}:${r.status}`), [`${B}#1:starting`])
  const failing = harness()
  failing.node.failStart = 'no artifact'
  await failing.bidder.onAward(award)
  assert.is(failing.confirmed[0]?.type, 'start-failed')
  const refused = harness({ refusal: 'denied by policy' })
  await refused.bidder.onAward(award)
  assert.equal(refused.node.started, [])
  assert.is(refused.confirmed[0]?.type, 'start-failed')
})

test.run()
