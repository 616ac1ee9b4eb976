/**
 * The tenderer (src/scheduling/tenderer.ts) running real scheduler machines,
 * with a fake mesh (gossip captured) and fake bidders that answer its
 * tenders and confirm its awards: an apply is recorded Pending, awarded to
 * the best bids and recorded Running with its placement; declines end
 * Unschedulable; a cancelled tender does not reach its own bidder.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { UnschedulableError } from '../../src/actors/errors.js'
import type { SchedulerMessage } from '../../src/protocol/messages.js'
import { Tenderer, type AnnouncedReplica, type Award, type Tender } from '../../src/scheduling/tenderer.js'
import { silentLogger } from '../../src/transport/logger.js'
import { A, B, C, SELF, catalog, record, spec, until } from './fakes.js'

interface Options {
  /** How each peer answers a tender: a score, or a decline. */
  answers?: Record<string, number | 'decline'>
  /** Holds every gossip until released. */
  holdGossip?: boolean
}

function harness ({ answers = { [A]: 50, [B]: 40, [C]: 10 }, holdGossip = false }: Options = {}) {
  const { catalog: c, mesh } = catalog()
  const gossiped: SchedulerMessage[] = []
  const tenders: Tender[] = []
  const awards: Award[] = []
  const announced: AnnouncedReplica[] = []
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let ids = 0
  const tenderer: Tenderer = new Tenderer({
    selfId: SELF,
    log: silentLogger,
    catalog: c,
    // Publishing ignores the signal here, so the test sees what the tenderer itself does with it.
    gossip: async m => {
      if (holdGossip) await held
      gossiped.push(m)
    },
    bidOn: tender => {
      tenders.push(tender)
      // Every peer answers the tender, after it went out (as the bid protocol would deliver it).
      setImmediate(() => {
        for (const [peerId, answer] of Object.entries(answers)) {
          if (answer === 'decline') tenderer.routeBid({ type: 'decline', tenderId: tender.tenderId, attempt: tender.attempt, peerId, rejections: [{ peerId, filter: 'cpu', reason: 'insufficient cpu' }] })
          else tenderer.routeBid({ type: 'bid', tenderId: tender.tenderId, attempt: tender.attempt, peerId, score: answer })
        }
      })
    },
    onAward: award => {
      awards.push(award)
      setImmediate(() => {
        for (const a of award.awards) tenderer.onConfirmation({ type: 'started', tenderId: award.tenderId, workloadId: award.workloadId, epoch: award.epoch, peerId: a.peerId, replica: a.replica })
      })
    },
    expectedResponders: () => Object.keys(answers).length,
    announce: r => { announced.push(r) },
    tenderWindowMs: 1_000,
    confirmTimeoutMs: 1_000,
    newId: () => `tender-${++ids}`
  })
  return { tenderer, catalog: c, mesh, gossiped, tenders, awards, announced, release }
}

test('an apply is recorded Pending, awarded to the best bids, and recorded Running with its placement', async () => {
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
  assert.is(h.tenders[0]!.tenderId, 'tender-1')
  assert.equal(h.gossiped.map(m => m.type), ['tender', 'award'])
  // The catalog gossiped the record twice: Pending (not put in the DHT), then Running (put).
  assert.equal(h.mesh.gossiped.map(m => m.type === 'record' ? m.record.status : m.type), ['Pending', 'Running'])
  await until(() => h.mesh.dht.size === 1, 'the Running record put')
  // Awardees' confirmations put their replicas in the mesh view.
  assert.equal(h.announced.map(r => `${r.peerId}:${r.status}`).sort(), [`${A}:running`, `${B}:running`])
  assert.not.ok(h.tenderer.isTendering(s.id))
})

test('when every node declines, the record is Unschedulable and the apply rejects with the reasons', async () => {
  const h = harness({ answers: { [A]: 'decline', [B]: 'decline' } })
  const s = spec({ replicas: 1 })
  const { placed } = h.tenderer.apply(s, record(s, { epoch: 3, status: 'Running' }))
  try {
    await placed
    assert.unreachable('the apply was placed')
  } catch (err) {
    assert.instance(err, UnschedulableError)
  }
  const r = h.catalog.get(s.id)!
  assert.is(r.status, 'Unschedulable')
  assert.is(r.epoch, 4)
  assert.is(r.events.at(-1)!.reason, 'FailedScheduling')
  assert.is(h.awards.length, 0)
})

test('a tender cancelled while its publication is in flight is not bid on here (the effect honours its AbortSignal)', async () => {
  const h = harness({ holdGossip: true })
  const s = spec({ replicas: 1 })
  const run = h.tenderer.run(s, 1, [0], [])
  h.tenderer.stop()
  const output = await run
  assert.is(output.status, 'cancelled')
  h.release()
  await until(() => h.gossiped.length === 1, 'the held publication')
  assert.is(h.tenders.length, 0, 'the cancelled tender reached this node\'s bidder')
})

test('a guardian\'s tender for missing ordinals excludes the given hosts and awards only those ordinals', async () => {
  const h = harness()
  const s = spec({ replicas: 3 })
  const output = await h.tenderer.run(s, 2, [2], [A])
  assert.is(output.status, 'placed')
  assert.equal(h.tenders[0]!.exclude, [A])
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
