/**
 * The fencing rule (src/machines/fencing.ts) must be a strict total order on
 * copies: of two distinct copies exactly one survives, whichever node
 * compares them, and a copy never fences itself. Checked exhaustively over a
 * small domain (epochs 0-4, five peer ids).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { supersedes, type Copy } from '../../src/machines/fencing.js'

const peers = ['12D3KooWA', '12D3KooWB', '12D3KooWb', '12D3KooWz', 'QmOld']
const copies: Copy[] = peers.flatMap(peerId => [0, 1, 2, 3, 4].map(epoch => ({ epoch, peerId })))

test('a newer epoch wins; at one epoch the lower peer id wins', () => {
  assert.ok(supersedes({ epoch: 3, peerId: 'z' }, { epoch: 2, peerId: 'a' }))
  assert.not.ok(supersedes({ epoch: 2, peerId: 'a' }, { epoch: 3, peerId: 'z' }))
  assert.ok(supersedes({ epoch: 2, peerId: 'a' }, { epoch: 2, peerId: 'b' }))
  assert.not.ok(supersedes({ epoch: 2, peerId: 'b' }, { epoch: 2, peerId: 'a' }))
})

test('a copy never supersedes itself', () => {
  for (const c of copies) assert.not.ok(supersedes(c, { ...c }), JSON.stringify(c))
})

test('of two distinct copies exactly one supersedes the other (every node keeps the same one)', () => {
  for (const a of copies) {
    for (const b of copies) {
      if (a.epoch === b.epoch && a.peerId === b.peerId) continue
      assert.is(supersedes(a, b) !== supersedes(b, a), true, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`)
    }
  }
})

test('transitive: the survivor of a whole set does not depend on the order of comparisons', () => {
  for (const a of copies) {
    for (const b of copies) {
      if (!supersedes(a, b)) continue
      for (const c of copies) if (supersedes(b, c)) assert.ok(supersedes(a, c), `${JSON.stringify([a, b, c])}`)
    }
  }
})

test.run()
