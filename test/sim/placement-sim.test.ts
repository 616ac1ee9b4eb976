/**
 * The placement simulation (sim/) runs every node's real Tenderer, Bidder and
 * scheduler machine on a virtual clock. These tests hold it to what the
 * figures it writes rely on: the same seed gives the same figures, every
 * apply is accounted for, and its message count is the conversation's.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { simulateSize } from '../../sim/placement.js'

const options = { placements: 30, rate: 20, replicas: 2, profile: 'lan', seed: 7 }

test('the same seed gives the same figures; another seed other latencies', async () => {
  const a = await simulateSize(12, options)
  const b = await simulateSize(12, options)
  assert.equal(a.figures, b.figures)
  const c = await simulateSize(12, { ...options, seed: 8 })
  assert.is.not(c.figures.placementP99Ms, a.figures.placementP99Ms)
})

test('every apply is placed once, with no duplicate replica; a tender asks at most 2 candidates a replica and only they hear the award', async () => {
  const n = 12
  const { figures } = await simulateSize(n, options)
  assert.is(figures.placements, options.placements)
  assert.is(figures.lostPlacements, 0)
  assert.is(figures.unschedulable, 0)
  assert.is(figures.duplicatePlacements, 0)
  // 2 replicas: 4 candidates, one of which may be the tenderer itself (no message); each sent tender is answered once
  const tenders = figures.messagesByKind.tender ?? 0
  assert.ok(tenders > 0 && tenders <= options.placements * 4, `${tenders} tenders for ${options.placements} placements`)
  assert.is(figures.messagesByKind.bid, tenders)
  // the award goes to the candidates asked (never more than the tenders sent), each confirmation to its tenderer alone
  const awards = figures.messagesByKind.award ?? 0
  assert.ok(awards > 0 && awards <= tenders, `${awards} awards for ${tenders} tenders`)
  assert.ok((figures.messagesByKind.confirm ?? 0) <= options.placements * options.replicas, `${figures.messagesByKind.confirm} confirmations`)
  // what still reaches every node: the record's two gossips (Pending, Running)
  assert.is(figures.messagesByKind.record, options.placements * 2 * (n - 1))
  assert.ok(figures.placementP50Ms > 0 && figures.placementP99Ms >= figures.placementP50Ms)
})

test('an unknown network profile is refused by name', async () => {
  try {
    await simulateSize(3, { ...options, profile: 'moon' })
    assert.unreachable('expected an error')
  } catch (err) {
    assert.match(String(err), /unknown network profile moon: one of loopback, lan, wan/)
  }
})

test.run()
