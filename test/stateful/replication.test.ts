/**
 * Stage 2 of the owner pipeline (src/stateful/replication.ts) with in-memory
 * neighbours (fakes.ts): the holders are real StateHolders on their own
 * LevelDB, reached through a fake StatePeers that can hold a request back or
 * drop it. No process is spawned.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { initialOwnerPipeline } from '../../src/machines/owner-pipeline.js'
import { FencedError, type Owned } from '../../src/stateful/owner.js'
import { Replication } from '../../src/stateful/replication.js'
import type { JournalEntry } from '../../src/store/journal.js'
import { toWorkloadSpec } from '../../src/workloads/spec.js'
import type { Transition } from '../../src/sandbox/machine-sandbox.js'
import type { StateRequest } from '../../src/protocol/state.js'
import { A, B, C, CLAIMER, cluster, gate } from './fakes.js'
import { OwnerUnavailableError } from '../../src/actors/errors.js'
import { waitUntil } from '../helpers/processes.js'

const spec = toWorkloadSpec({ name: 'counter', kind: 'stateful' }, { artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'counter.ts', now: 0, machineId: 'counter' })

function owned (holders: string[], epoch = 1): Owned {
  return { spec, epoch, pipeline: { ...initialOwnerPipeline, phase: 'running' }, startedAt: 0, holders, setVersion: 1, queue: [], spontaneous: [], persisting: Promise.resolve(), pendingIds: new Map(), dedup: new Map(), recent: [], lastSnapshotSeq: 0, ready: Promise.resolve() }
}

const transition: Transition = { handled: true, value: 'counting', context: { n: 1 }, status: 'active', state: { persisted: { value: 'counting' }, timers: [] } }
const entry = (seq: number, epoch = 1): JournalEntry => ({ seq, epoch, ts: 1_000 + seq, event: { type: 'inc' }, id: `e${seq}`, state: 'counting' })

test('a batch is durable only once it is in the owner\'s journal and on both holders', async () => {
  const c = await cluster()
  try {
    const o = owned([A, B])
    const local = gate()
    c.localGate.current = local.wait
    const holdA = gate()
    c.net.holdAppend.set(A, holdA.wait)
    const arrivedA = new Promise<StateRequest>(resolve => { c.net.arrived.set(A, [resolve]) })
    const arrivedB = new Promise<StateRequest>(resolve => { c.net.arrived.set(B, [resolve]) })
    const replication = new Replication(c.components, { publishLocation: () => {} })
    let durable = false
    const persisting = replication.persist(o, [entry(1)], transition).then(() => { durable = true })
    await Promise.all([arrivedA, arrivedB])
    // B has the batch; A and the owner's own journal do not yet.
    await waitUntil(async () => (await c.peers[B]!.journal.head(spec.id))?.seq === 1, { timeoutMs: 5_000, intervalMs: 5, what: 'B has the batch' })
    assert.is(durable, false, 'not durable with one holder and no local write')
    holdA.open()
    await waitUntil(async () => (await c.peers[A]!.journal.head(spec.id))?.seq === 1, { timeoutMs: 5_000, intervalMs: 5, what: 'A has the batch' })
    assert.is(durable, false, 'not durable before the owner\'s own journal has it')
    assert.equal(c.localAppends, [])
    local.open()
    await persisting
    assert.is(durable, true)
    assert.equal(c.localAppends, [1])
    assert.is((await c.owner.journal.head(spec.id))?.seq, 1)
  } finally {
    await c.close()
  }
})

test('a holder that does not answer is replaced by a live peer, which gets a whole copy, and the holder kept is told the new set', async () => {
  const c = await cluster()
  try {
    const o = owned([A, B])
    const replication = new Replication(c.components, { publishLocation: () => { published.push([...o.holders]) } })
    const published: string[][] = []
    await replication.persist(o, [entry(1)], transition)
    c.net.down.add(A)
    await replication.persist(o, [entry(2)], transition)
    assert.equal(o.holders, [B, C])
    assert.is(o.setVersion, 2)
    assert.equal(published, [[B, C]], 'the new holder set was published')
    assert.is((await c.peers[C]!.journal.head(spec.id))?.seq, 2, 'the new holder has the whole copy')
    assert.equal((await c.peers[B]!.holder.fence(spec.id))?.holders, [B, C], 'the holder kept knows the new set')
  } finally {
    await c.close()
  }
})

test('a deposed owner gets nothing acknowledged: holders fenced at a newer epoch refuse its batch', async () => {
  const c = await cluster()
  try {
    const o = owned([A, B])
    const replication = new Replication(c.components, { publishLocation: () => {} })
    await replication.persist(o, [entry(1)], transition)
    // A new owner claims epoch 2 on both holders (a failover the old owner has not heard of).
    for (const h of [A, B]) assert.ok((await c.peers[h]!.holder.handle({ op: 'claim', workloadId: spec.id, epoch: 2, owner: CLAIMER }, CLAIMER)).ok)
    try {
      await replication.persist(o, [entry(2)], transition)
      assert.unreachable('the batch of an older epoch was made durable')
    } catch (err) {
      assert.instance(err, FencedError)
    }
    for (const h of [A, B]) assert.is((await c.peers[h]!.journal.head(spec.id))?.seq, 1, `${h.slice(-5)} did not take the old owner's batch`)
  } finally {
    await c.close()
  }
})

test('an owner no holder answers does not pick new holders (it may be the cut-off side)', async () => {
  const c = await cluster()
  try {
    const o = owned([A, B])
    c.net.down.add(A).add(B)
    const replication = new Replication(c.components, { publishLocation: () => {} })
    try {
      await replication.persist(o, [entry(1)], transition)
      assert.unreachable('durable with no holder')
    } catch (err) {
      assert.instance(err, OwnerUnavailableError)
    }
    assert.equal(o.holders, [A, B])
    assert.is(await c.peers[C]!.journal.head(spec.id), undefined, 'no copy was installed on another peer')
  } finally {
    await c.close()
  }
})

test('chooseHolders prefers peers already up to date and installs a copy on the others', async () => {
  const c = await cluster()
  try {
    await c.owner.journal.append(spec.id, [entry(1), entry(2)])
    const o = owned([])
    o.setVersion = 0
    const replication = new Replication(c.components, { publishLocation: () => {} })
    await replication.chooseHolders(o, new Map([[C, { seq: 2, epoch: 1, fence: 1 }]]), 2)
    assert.is(o.holders.length, 2)
    assert.ok(o.holders.includes(C), 'the up-to-date peer is chosen')
    const other = o.holders.find(h => h !== C)!
    assert.is((await c.peers[other]!.journal.head(spec.id))?.seq, 2, 'the other holder got a whole copy')
    assert.is(o.setVersion, 1)
  } finally {
    await c.close()
  }
})

test.run()
