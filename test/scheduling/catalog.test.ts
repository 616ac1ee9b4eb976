/**
 * The record catalog (src/scheduling/catalog.ts) with an in-memory mesh:
 * which copy of a record wins, which events the planes get, what is gossiped
 * and put, and the backoff of DHT lookups.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { encodeMessage, workloadKey } from '../../src/protocol/messages.js'
import type { CatalogEvent } from '../../src/scheduling/catalog.js'
import * as lifecycle from '../../src/scheduling/record-lifecycle.js'
import { A, B, catalog, record, spec, until } from './fakes.js'

function events (c: ReturnType<typeof catalog>['catalog']): string[] {
  const seen: string[] = []
  c.on((e: CatalogEvent) => { seen.push(`${e.type}@${e.record.epoch}`) })
  return seen
}

test('a newer epoch is adopted; an older one is ignored', () => {
  const { catalog: c } = catalog()
  const seen = events(c)
  assert.ok(c.merge(record(spec(), { epoch: 2 })))
  assert.not.ok(c.merge(record(spec(), { epoch: 1, status: 'Deleted' })))
  assert.is(c.get('default/web')?.epoch, 2)
  assert.is(c.get('default/web')?.status, 'Running')
  assert.equal(seen, ['record.adopted@2', 'record.scaled-down@2', 'record.generation-replaced@2'])
})

test('a Deleted record emits record.ended (what stops local replicas), and nothing about scaling', () => {
  const { catalog: c } = catalog()
  c.merge(record(spec(), { epoch: 1 }))
  const seen = events(c)
  assert.ok(c.merge(lifecycle.deleted(record(spec(), { epoch: 1 }), { now: 5, by: B })))
  assert.equal(seen, ['record.adopted@2', 'record.ended@2'])
  assert.equal(c.active(), [])
})

test('a record not Running asks hosts to stop scaled-down ordinals, not older generations', () => {
  const { catalog: c } = catalog()
  const seen = events(c)
  c.merge(record(spec(), { epoch: 1, status: 'Pending' }))
  assert.equal(seen, ['record.adopted@1', 'record.scaled-down@1'])
})

test('same-epoch copies merge the outcomes each host wrote; a copy adding nothing is not news', () => {
  const { catalog: c, clock } = catalog()
  const s = spec({ kind: 'container', topics: [], replicas: 2 })
  const base = record(s, { placement: [{ peerId: A, replica: 0, epoch: 1 }, { peerId: B, replica: 1, epoch: 1 }] })
  const fromA = lifecycle.podEnded(base, 0, 1, { phase: 'Succeeded', reason: 'Completed' }, { now: 10, by: A })
  const fromB = lifecycle.podEnded(base, 1, 1, { phase: 'Failed', reason: 'Error' }, { now: 11, by: B })
  c.merge(fromA)
  clock.advance(100)
  assert.ok(c.merge(fromB))
  const merged = c.get(s.id)!
  assert.equal(merged.placement.map(p => p.outcome?.phase), ['Succeeded', 'Failed'])
  assert.is(merged.status, 'Failed')
  assert.is(c.seenAt(s.id), clock.t)
  assert.not.ok(c.merge(fromA))
})

test('update gossips, and puts in the DHT unless transient; amend skips deleted records', async () => {
  const { catalog: c, mesh } = catalog()
  c.update(record(spec(), { status: 'Pending' }), { persist: false })
  assert.is(mesh.gossiped.length, 1)
  assert.is(mesh.dht.size, 0)
  c.update(record(spec(), { epoch: 2 }))
  await until(() => mesh.dht.size === 1, 'the record put')
  c.amend('default/web', r => lifecycle.machineFailed(r, 'boom', { now: 1, by: A }))
  assert.is(c.get('default/web')?.status, 'Failed')
  c.update(lifecycle.deleted(c.get('default/web')!, { now: 2, by: A }))
  const before = mesh.gossiped.length
  c.amend('default/web', r => lifecycle.machineFailed(r, 'late', { now: 3, by: A }))
  assert.is(mesh.gossiped.length, before)
})

test('fetch reads the DHT and merges; lookUp backs off after a miss', async () => {
  const { catalog: c, mesh, clock } = catalog()
  mesh.dht.set(workloadKey('default/web'), encodeMessage(record(spec(), { epoch: 3 })))
  assert.is((await c.known('default/web'))?.epoch, 3)
  assert.ok(c.has('default/web'))
  c.lookUp('default/api')
  await until(() => mesh.gets.length === 2, 'the first lookup')
  await new Promise(resolve => setTimeout(resolve, 5))
  c.lookUp('default/api')
  assert.is(mesh.gets.length, 2, 'looked up again before the backoff')
  clock.advance(1_001)
  c.lookUp('default/api')
  await until(() => mesh.gets.length === 3, 'the lookup after the backoff')
})

test.run()
