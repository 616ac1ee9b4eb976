/**
 * The tenderer (src/scheduling/tenderer.ts) running real scheduler machines,
 * with a fake mesh (gossip captured) and fake candidates that answer the
 * tenders sent to them and confirm their awards: an apply is recorded
 * Pending, sent to a sample of the nodes whose offers fit, awarded to the best
 * bids and recorded Running with its placement; a tender with no bid widens to
 * untried candidates, then ends Unschedulable naming every node's reason.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { UnschedulableError } from '../../src/actors/errors.js'
import type { NodeOffer } from '../../src/machines/placement.js'
import { Tenderer, type AnnouncedReplica, type Award, type Tender } from '../../src/scheduling/tenderer.js'
import { silentLogger } from '../../src/transport/logger.js'
import { A, B, C, SELF, catalog, record, spec, until } from './fakes.js'

const D = '12D3KooWDdddDdddDdddDddd'
const E = '12D3KooWEeeeEeeeEeeeEeee'

interface Options {
  /** How each candidate answers a tender: a score, a decline, or (absent) the tender does not reach it. */
  answers?: Record<string, number | 'decline'>
  /** The offers the tenderer samples from (default: an empty node for each peer in `answers`). */
  offers?: NodeOffer[]
  /** Holds every tender sent until released. */
  holdSends?: boolean
  tenderWindowMs?: number
}

function offer (peerId: string, overrides: Partial<NodeOffer> = {}): NodeOffer {
  return { peerId, labels: {}, capacity: { cpuMillis: 1_000, memoryBytes: 2 ** 30 }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 0, hosts: [], capabilities: ['code', 'container'], ...overrides }
}

function harness ({ answers = { [A]: 50, [B]: 40, [C]: 10 }, offers, holdSends = false, tenderWindowMs = 1_000 }: Options = {}) {
  const { catalog: c, mesh } = catalog()
  const sent: Array<{ to: string, tender: Tender, signal: AbortSignal }> = []
  const awardsSent: Array<{ to: string, award: Award }> = []
  const awards: Award[] = []
  const announced: AnnouncedReplica[] = []
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let ids = 0
  const answer = (peerId: string, tender: Tender): void => {
    const a = answers[peerId]
    if (a === 'decline') tenderer.routeBid({ type: 'decline', tenderId: tender.tenderId, attempt: tender.attempt, peerId, rejections: [{ peerId, filter: 'cpu', reason: 'insufficient cpu' }] })
    else if (a != null) tenderer.routeBid({ type: 'bid', tenderId: tender.tenderId, attempt: tender.attempt, peerId, score: a })
  }
  const tenderer: Tenderer = new Tenderer({
    selfId: SELF,
    log: silentLogger,
    catalog: c,
    sendTender: async (to, tender, { signal }) => {
      sent.push({ to, tender, signal })
      if (holdSends) await held
      if (answers[to] == null) throw new Error(`no route to ${to}`)
      // The candidate answers after the tender arrived (as the bid protocol would deliver it).
      setImmediate(() => { answer(to, tender) })
    },
    sendAward: async (to, award) => {
      awardsSent.push({ to, award })
      if (answers[to] == null) throw new Error(`no route to ${to}`)
      // An awardee confirms its replicas once the award arrived.
      setImmediate(() => {
        for (const a of award.awards) if (a.peerId === to) tenderer.onConfirmation({ type: 'started', tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: a.peerId, replica: a.replica })
      })
    },
    offers: () => offers ?? Object.keys(answers).map(p => offer(p)),
    unknownPeers: () => [],
    bidOn: tender => { setImmediate(() => { answer(SELF, tender) }) },
    onAward: award => {
      awards.push(award)
      setImmediate(() => {
        for (const a of award.awards) if (a.peerId === SELF) tenderer.onConfirmation({ type: 'started', tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: a.peerId, replica: a.replica })
      })
    },
    announce: r => { announced.push(r) },
    tenderWindowMs,
    confirmTimeoutMs: 1_000,
    newId: () => `tender-${++ids}`
  })
  return { tenderer, catalog: c, mesh, sent, awardsSent, awards, announced, release }
}

test('an apply is recorded Pending, sent to sampled candidates, awarded to the best bids, and recorded Running', async () => {
  const h = harness()
  const s = spec({ replicas: 2 })
  const { placed } = h.tenderer.apply(s, undefined)
  assert.is(h.catalog.get(s.id)?.status, 'Pending')
  assert.ok(h.tenderer.isTendering(s.id))
  assert.throws(() => { h.tenderer.checkIdle(s.id) }, /being placed right now/)
  const done = await placed
  assert.is(done.status, 'Running')
  assert.is(done.epoch, 1)
  assert.equal(done.placement.map(p => `${p.replica}@${p.peerId}`).sort(), [`0@${A}`, `1@${B}`].sort())
  assert.is(h.catalog.get(s.id), done)
  // 2 replicas: up to 2 × 2 candidates, and only 3 nodes fit, so all 3 were asked, directly.
  assert.equal(h.sent.map(x => x.to).sort(), [A, B, C].sort())
  assert.is(h.sent[0]!.tender.tenderId, 'tender-1')
  // The award went to the candidates asked, directly (the loser's bid held a reservation), and to this node's own bidder.
  assert.equal(h.awardsSent.map(x => x.to).sort(), [A, B, C].sort())
  assert.is(h.awards.length, 1)
  // The catalog gossiped the record twice: Pending (not put in the DHT), then Running (put).
  assert.equal(h.mesh.gossiped.map(m => m.type === 'record' ? m.record.status : m.type), ['Pending', 'Running'])
  await until(() => h.mesh.dht.size === 1, 'the Running record put')
  // Awardees' confirmations put their replicas in the mesh view.
  assert.equal(h.announced.map(r => `${r.peerId}:${r.status}`).sort(), [`${A}:running`, `${B}:running`])
  assert.not.ok(h.tenderer.isTendering(s.id))
})

test('a tender asks 2 candidates a replica, not every node', async () => {
  const h = harness({ answers: { [A]: 50, [B]: 40, [C]: 30, [D]: 20, [E]: 10 } })
  const output = await h.tenderer.run(spec({ replicas: 1 }), 1, [0], [])
  assert.is(output.status, 'placed')
  assert.is(h.sent.length, 2)
  assert.is(new Set(h.sent.map(x => x.to)).size, 2)
})

test('a tender with no bid widens to candidates not asked yet, excluding the decliners', async () => {
  const h = harness({ answers: { [A]: 'decline', [B]: 'decline', [C]: 'decline', [D]: 'decline', [E]: 30 } })
  const output = await h.tenderer.run(spec({ replicas: 1 }), 1, [0], [])
  assert.is(output.status, 'placed', output.reason)
  assert.equal(output.placed, [{ peerId: E, replica: 0 }])
  const asked = h.sent.map(x => x.to)
  assert.is(new Set(asked).size, asked.length, 'no node was asked twice')
  for (const x of h.sent.filter(x => x.tender.attempt > 1)) {
    for (const earlier of h.sent.filter(y => y.tender.attempt < x.tender.attempt)) assert.ok(x.tender.exclude.includes(earlier.to), `${earlier.to} excluded in attempt ${x.tender.attempt}`)
  }
})

test('when every node declines or its offer does not fit, the record is Unschedulable and the reasons name every node', async () => {
  const full = offer(C, { allocated: { cpuMillis: 1_000, memoryBytes: 0 } })
  const h = harness({ answers: { [A]: 'decline', [B]: 'decline' }, offers: [offer(A), offer(B), full] })
  const s = spec({ replicas: 1 })
  const { placed } = h.tenderer.apply(s, record(s, { epoch: 3, status: 'Running' }))
  try {
    await placed
    assert.unreachable('the apply was placed')
  } catch (err) {
    assert.instance(err, UnschedulableError)
    assert.match(String(err), /0\/3 nodes can host default\/web: 3 × insufficient cpu/)
  }
  assert.not.ok(h.sent.some(x => x.to === C), 'the node whose offer is full was not asked')
  const r = h.catalog.get(s.id)!
  assert.is(r.status, 'Unschedulable')
  assert.is(r.epoch, 4)
  assert.is(r.events.at(-1)!.reason, 'FailedScheduling')
  assert.is(h.awards.length, 0)
})

test('a candidate the tender cannot reach is declined at once: the window does not run out', async () => {
  // A one-minute window: the run ends only because the unreachable candidate counts as answered.
  const h = harness({ answers: { [B]: 40 }, offers: [offer(A), offer(B)], tenderWindowMs: 60_000 })
  const output = await h.tenderer.run(spec({ replicas: 1 }), 1, [0], [])
  assert.is(output.status, 'placed')
  assert.equal(output.placed, [{ peerId: B, replica: 0 }])
  assert.equal(h.sent.map(x => x.to).sort(), [A, B].sort())
})

test('a tender cancelled while its sends are in flight ends cancelled, and its sends are aborted', async () => {
  const h = harness({ holdSends: true })
  const run = h.tenderer.run(spec({ replicas: 1 }), 1, [0], [])
  await until(() => h.sent.length > 0, 'the tender to be sent')
  h.tenderer.stop()
  const output = await run
  assert.is(output.status, 'cancelled')
  assert.ok(h.sent.every(x => x.signal.aborted), 'every send was told to stop')
  h.release()
})

test('a guardian\'s tender for missing ordinals does not ask the given hosts and awards only those ordinals', async () => {
  const h = harness()
  const s = spec({ replicas: 3 })
  const output = await h.tenderer.run(s, 2, [2], [A])
  assert.is(output.status, 'placed')
  assert.not.ok(h.sent.some(x => x.to === A))
  assert.equal(h.sent[0]!.tender.exclude, [A])
  assert.equal(h.awards[0]!.awards, [{ peerId: B, replica: 2 }])
  await until(() => !h.tenderer.isTendering(s.id), 'the tender to end')
})

test('rescale writes the next epoch with the new count, gossiped and put', () => {
  const h = harness()
  const s = spec({ replicas: 3 })
  const r = record(s, { epoch: 5, placement: [0, 1, 2].map(i => ({ peerId: A, replica: i, epoch: 5 })) })
  h.catalog.merge(r)
  const next = h.tenderer.rescale(r, spec({ replicas: 1 }))
  assert.is(next.epoch, 6)
  assert.equal(next.placement.map(p => p.replica), [0])
  assert.is(h.catalog.get(s.id), next)
  assert.is(h.mesh.gossiped.at(-1)?.type, 'record')
})

test.run()
