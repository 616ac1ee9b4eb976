import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateHolder } from '../../src/stateful/state-holder.js'
import { silentLogger } from '../../src/transport/logger.js'
import { NodeStore } from '../../src/store/node-store.js'
import { WorkloadJournal } from '../../src/store/journal.js'

const W = 'default/counter'
const OWNER = '12D3KooWOwnerOwnerOwnerOwnerOwnerOwnerOwnerOwner'
const CLAIMER = '12D3KooWClaimClaimClaimClaimClaimClaimClaimClaim'
const A = '12D3KooWHoldAHoldAHoldAHoldAHoldAHoldAHoldAHoldA'
const B = '12D3KooWHoldBHoldBHoldBHoldBHoldBHoldBHoldBHoldB'
const D = '12D3KooWHoldDHoldDHoldDHoldDHoldDHoldDHoldDHoldD'

const entry = (seq: number, epoch = 1): { seq: number, epoch: number, ts: number, event: unknown, state: unknown } => ({ seq, epoch, ts: 1_000 + seq, event: { type: 'inc' }, state: 'counting' })

// A real LevelDB on disk, as a holder node has it.
async function holder (): Promise<{ h: StateHolder, close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-holder-'))
  const store = await NodeStore.open(dir)
  const h = new StateHolder(WorkloadJournal.fromStore(store), store, silentLogger)
  return { h, close: async () => { await store.close(); await rm(dir, { recursive: true, force: true }) } }
}

test('a holder keeps the newest holder set it was told of and reports it to a claimer of a newer epoch', async () => {
  const { h, close } = await holder()
  try {
    assert.ok((await h.handle({ op: 'append', workloadId: W, epoch: 1, owner: OWNER, entries: [entry(1)], holders: [A, B], setVersion: 1 }, OWNER)).ok)
    // The owner replaced A with D and told this holder (B) before going on.
    assert.ok((await h.handle({ op: 'append', workloadId: W, epoch: 1, owner: OWNER, entries: [entry(1)], holders: [B, D], setVersion: 2 }, OWNER)).ok)
    // A late batch carrying the older set does not roll it back.
    assert.ok((await h.handle({ op: 'append', workloadId: W, epoch: 1, owner: OWNER, entries: [entry(2)], holders: [A, B], setVersion: 1 }, OWNER)).ok)
    const claimed = await h.handle({ op: 'claim', workloadId: W, epoch: 2, owner: CLAIMER }, CLAIMER)
    assert.ok(claimed.ok)
    assert.equal(claimed.head?.set, { epoch: 1, owner: OWNER, holders: [B, D], version: 2 })
    assert.is(claimed.head?.seq, 2)
    // Fenced now: the old owner's next batch is refused, whatever set it carries.
    const late = await h.handle({ op: 'append', workloadId: W, epoch: 1, owner: OWNER, entries: [entry(3)], holders: [B, D], setVersion: 3 }, OWNER)
    assert.equal({ ok: late.ok, code: (late as { code?: string }).code }, { ok: false, code: 'fenced' })
    // The new owner's claim reply said the set before it; its own set starts with its first batch.
    const again = await h.handle({ op: 'claim', workloadId: W, epoch: 3, owner: OWNER }, OWNER)
    assert.is(again.head?.set, undefined, 'epoch 2 has told this holder no set yet')
  } finally {
    await close()
  }
})

test.run()
