/**
 * The decisions of recovery after a failover (src/stateful/recovery.ts),
 * which are pure: whether a takeover is safe on the heads a claim gathered,
 * the newest replica set known, and which copy to resume from.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { copiesNewestFirst, lastReplicaSet, Locations, takeoverRefusal, type Claimed, type TakeoverInput } from '../../src/stateful/recovery.js'
import type { HolderHead, LocationRecord } from '../../src/protocol/state.js'

const W = 'default/counter'
const SELF = 'self'
const OLD = 'old-owner'
const A = 'holder-a'
const B = 'holder-b'
const D = 'holder-d'

const head = (seq: number, epoch = 1, extra: Partial<HolderHead> = {}): HolderHead => ({ seq, epoch, fence: 2, ...extra })
const location = (holders: string[], setVersion = 1, epoch = 1): LocationRecord => ({ workloadId: W, owner: OLD, epoch, holders, setVersion, seq: 5, ts: 1 })

function input (claimed: Claimed, over: Partial<TakeoverInput> = {}): TakeoverInput {
  return { workloadId: W, epoch: 2, durability: 'replicated', selfId: SELF, previous: location([A, B]), claimed, placedBefore: true, ...over }
}

test('a takeover with a majority of the last replica set and a sound copy among its holders is safe', () => {
  const claimed: Claimed = { own: head(0), heads: new Map([[A, head(5)], [B, head(5)]]) }
  assert.is(takeoverRefusal(input(claimed)), undefined)
})

test('a takeover without a majority of the last replica set is refused (the old owner may still acknowledge)', () => {
  const claimed: Claimed = { own: head(0), heads: new Map([[A, head(5)]]) }
  assert.match(takeoverRefusal(input(claimed)) ?? '', /reached 1 of the 3 nodes of epoch 1's replica set/)
})

test('a takeover whose only copies from the last holders are corrupt is refused', () => {
  const claimed: Claimed = { own: head(0), heads: new Map([[A, head(0, 0, { corrupt: 'bad checksum' })], [OLD, head(5)]]) }
  assert.match(takeoverRefusal(input(claimed, { previous: location([A, B]) })) ?? '', /no sound copy from the holders of epoch 1/)
})

test('a takeover of a workload that ran, with no word of its last replica set, waits', () => {
  const claimed: Claimed = { own: head(0), heads: new Map([[A, head(5)]]) }
  assert.match(takeoverRefusal(input(claimed, { previous: undefined })) ?? '', /no location record/)
  assert.is(takeoverRefusal(input({ own: head(0), heads: new Map() }, { previous: undefined, placedBefore: false })), undefined, 'a workload never placed before starts afresh')
  assert.is(takeoverRefusal(input(claimed, { previous: undefined, durability: 'local' })), undefined, 'local durability resumes from what there is')
})

test('a holder set newer than the location record (told to a holder) is the one that counts', () => {
  // The old owner replaced B with D and told A; the location record with [A, D] never reached this node.
  const newer = { epoch: 1, owner: OLD, holders: [A, D], version: 2 }
  const heads = new Map([[A, head(5, 1, { set: newer })], [B, head(4)]])
  assert.equal(lastReplicaSet(location([A, B]), [head(0), ...heads.values()], 2), newer)
  // A and B answer, but of the newest set {OLD, A, D} only A did (and this node is not in it): no majority.
  assert.match(takeoverRefusal(input({ own: head(0), heads })) ?? '', /reached 1 of the 3 nodes/)
  // A set told at the claimed epoch or later is not a previous one.
  assert.equal(lastReplicaSet(undefined, [head(5, 1, { set: { ...newer, epoch: 2 } })], 2), undefined)
})

test('copies are tried newest first: highest epoch, then highest seq, this node first on a tie; corrupt and empty ones never', () => {
  const claimed: Claimed = {
    own: head(5, 1),
    heads: new Map([[A, head(5, 1)], [B, head(3, 2)], [D, head(9, 1, { corrupt: 'gap' })], ['empty', head(0, 0)]])
  }
  assert.equal(copiesNewestFirst(SELF, claimed).map(c => c.peer), [B, SELF, A])
})

test('a location record is replaced only by a newer one', () => {
  const l = new Locations()
  l.note(location([A, B], 1, 2))
  l.note({ ...location([A, D], 2, 1), ts: 99 })
  assert.equal(l.get(W)?.holders, [A, B], 'an older epoch does not replace a newer one')
  l.note({ ...location([A, D], 3, 2), ts: 2 })
  assert.equal(l.get(W)?.holders, [A, D])
})

test.run()
