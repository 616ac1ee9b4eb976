import { rm } from 'node:fs/promises'
import { Level } from 'level'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { assign, createActor, setup, SimulatedClock, type AnyMachineSnapshot, type EventObject } from 'xstate'
import { CorruptJournalError, JournalError } from '../../src/store/errors.js'
import { JOURNAL_SUBLEVEL, WorkloadJournal, type JournalEntry, type SnapshotRecord, type TraceEntry } from '../../src/store/journal.js'
import { NodeStore } from '../../src/store/node-store.js'
import { tempDir } from '../helpers/processes.js'

const ID = 'default/counter'
const T0 = 1_700_000_000_000
const dirs: string[] = []

interface Opened { dir: string, store: NodeStore, journal: WorkloadJournal }

async function open (dir?: string): Promise<Opened> {
  if (dir == null) {
    dir = await tempDir('beemesh-journal-')
    dirs.push(dir)
  }
  const store = await NodeStore.open(dir)
  return { dir, store, journal: WorkloadJournal.fromStore(store) }
}

function entry (seq: number, epoch = 1): JournalEntry {
  return { seq, epoch, ts: T0 + seq, event: { type: 'inc', by: seq }, sender: 'peer-a', state: { count: seq } }
}

function range (from: number, to: number, epoch = 1): JournalEntry[] {
  const out: JournalEntry[] = []
  for (let seq = from; seq <= to; seq++) out.push(entry(seq, epoch))
  return out
}

function snap (seq: number, epoch = 1): SnapshotRecord {
  return { seq, epoch, ts: T0 + seq, snapshot: { status: 'active', value: 'counting', context: { count: seq }, children: {}, historyValue: {} } }
}

/** Every key (inside the journal sublevel) that belongs to `id`. */
async function rawKeys (store: NodeStore, id = ID): Promise<string[]> {
  const keys: string[] = []
  for await (const key of store.sublevel(JOURNAL_SUBLEVEL).keys({ gte: `${id}!`, lt: `${id}"` })) keys.push(key)
  return keys
}

async function rejects<E extends Error> (p: Promise<unknown>, type: new (...args: any[]) => E, pattern: RegExp): Promise<E> {
  try {
    await p
  } catch (err) {
    assert.instance(err, type)
    assert.match((err as Error).message, pattern)
    return err as E
  }
  throw new assert.Assertion({ message: `expected a ${type.name} matching ${String(pattern)}`, operator: 'rejects', expects: pattern, actual: 'resolved' })
}

test.after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

test('append, head and tail keep numeric order past 10 and 100 entries', async () => {
  const { store, journal } = await open()
  assert.is(await journal.head(ID), undefined)
  assert.equal(await journal.tail(ID, 0), [])
  await journal.append(ID, range(1, 9))
  await journal.append(ID, [entry(10)])
  await journal.append(ID, range(11, 99))
  for (let seq = 100; seq <= 150; seq += 10) await journal.append(ID, range(seq, seq + 9))
  assert.equal(await journal.head(ID), { seq: 159, epoch: 1 })

  const all = await journal.tail(ID, 0)
  assert.equal(all.map(e => e.seq), Array.from({ length: 159 }, (_, i) => i + 1))
  assert.equal(all[41], entry(42))
  assert.equal((await journal.tail(ID, 9)).map(e => e.seq).slice(0, 3), [10, 11, 12])
  assert.equal((await journal.tail(ID, 99)).map(e => e.seq), range(100, 159).map(e => e.seq))
  assert.equal(await journal.tail(ID, 159), [])
  assert.equal(await journal.tail(ID, 1000), [])

  const keys = await rawKeys(store)
  assert.is(keys[9], `${ID}!e!0000000000000010`)
  assert.is(keys[99], `${ID}!e!0000000000000100`)
  assert.equal(keys.slice(-1), [`${ID}!m`])
  await rejects(journal.tail(ID, -1), JournalError, /afterSeq must be an integer >= 0, got -1/)
  await store.close()
})

test('entries without a sender round-trip without one', async () => {
  const { store, journal } = await open()
  const e: JournalEntry = { seq: 1, epoch: 0, ts: T0, event: { type: 'start', at: [1, 'two', null, { z: true, a: 1.5 }] }, state: 'idle' }
  await journal.append(ID, [e])
  const [stored] = await journal.tail(ID, 0)
  assert.equal(stored, e)
  assert.not.ok(stored != null && 'sender' in stored)
  await store.close()
})

test('a rejected append writes nothing', async () => {
  const { store, journal } = await open()
  await journal.append(ID, range(1, 3))
  const before = await rawKeys(store)

  await rejects(journal.append(ID, [entry(4), entry(5), entry(7)]), JournalError,
    /^journal of default\/counter: entry seq 7 rejected: the journal is at seq 5, so the next entry must be seq 6$/)
  await rejects(journal.append(ID, [entry(4), { ...entry(5), state: { at: new Date(T0) } }]), JournalError,
    /entry #1 \(seq 5\): state\.at is a Date, not JSON/)
  await rejects(journal.append(ID, range(4, 6), snap(7)), JournalError,
    /snapshot at seq 7 rejected: it is past the last entry \(seq 6\)/)
  await rejects(journal.append(ID, [entry(4), entry(5, 0)]), JournalError, /entry seq 5 rejected: epoch 0 is below/)

  assert.equal(await rawKeys(store), before)
  assert.equal(await journal.head(ID), { seq: 3, epoch: 1 })
  assert.equal((await journal.tail(ID, 0)).map(e => e.seq), [1, 2, 3])
  await journal.append(ID, [entry(4)])
  assert.equal(await journal.head(ID), { seq: 4, epoch: 1 })
  await store.close()
})

test('seq gaps, repeats and lower epochs are rejected with clear messages', async () => {
  const { store, journal } = await open()
  const err = await rejects(journal.append(ID, [entry(2)]), JournalError, /entry seq 2 rejected: the journal is at seq 0, so the next entry must be seq 1/)
  assert.is(err.name, 'JournalError')
  assert.is(err.workloadId, ID)

  await journal.append(ID, range(1, 3, 2))
  await rejects(journal.append(ID, [entry(3, 2)]), JournalError, /entry seq 3 rejected: the journal is at seq 3, so the next entry must be seq 4/)
  await rejects(journal.append(ID, [entry(4, 1)]), JournalError,
    /entry seq 4 rejected: epoch 1 is below the journal's epoch 2 \(a deposed owner cannot write\)/)
  await rejects(journal.putSnapshot(ID, snap(3, 1)), JournalError,
    /snapshot at seq 3 rejected: epoch 1 is below the journal's epoch 2 \(a deposed owner cannot write\)/)

  // A new owner with a higher epoch takes over; the old one is now fenced.
  await journal.append(ID, [entry(4, 3)])
  assert.equal(await journal.head(ID), { seq: 4, epoch: 3 })
  await rejects(journal.append(ID, [entry(5, 2)]), JournalError, /epoch 2 is below the journal's epoch 3/)

  await rejects(journal.append(ID, [{ ...entry(5, 3), seq: 0 }]), JournalError, /entry #0 \(seq 0\): seq must be an integer >= 1, got 0/)
  await rejects(journal.append(ID, [{ ...entry(5, 3), ts: Number.NaN }]), JournalError, /entry #0 \(seq 5\): ts must be a finite number, got NaN/)
  await rejects(journal.append(ID, [{ ...entry(5, 3), event: { n: Number.POSITIVE_INFINITY } }]), JournalError, /event\.n is Infinity, not JSON/)
  await rejects(journal.append(ID, [{ ...entry(5, 3), event: { list: [1, undefined] } }]), JournalError, /event\.list\[1\] is undefined, not JSON/)
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  await rejects(journal.append(ID, [{ ...entry(5, 3), state: cyclic }]), JournalError, /state\.self contains itself, not JSON/)
  await rejects(journal.append(ID, [{ ...entry(5, 3), state: undefined }]), JournalError, /state is missing/)
  await rejects(journal.append('bad id!', [entry(1)]), JournalError, /journal of bad id!: not a workload id/)
  assert.equal(await journal.head(ID), { seq: 4, epoch: 3 })
  await store.close()
})

test('concurrent appends to one workload are serialised', async () => {
  const { store, journal } = await open()
  await Promise.all([journal.append(ID, [entry(1)]), journal.append(ID, [entry(2)]), journal.append(ID, range(3, 5))])
  assert.equal(await journal.head(ID), { seq: 5, epoch: 1 })
  const results = await Promise.allSettled([journal.append(ID, [entry(6)]), journal.append(ID, [entry(6)])])
  assert.equal(results.map(r => r.status), ['fulfilled', 'rejected'])
  const failure = results[1]
  assert.ok(failure?.status === 'rejected' && failure.reason instanceof JournalError)
  assert.equal((await journal.tail(ID, 0)).map(e => e.seq), [1, 2, 3, 4, 5, 6])
  await store.close()
})

test('a snapshot compacts the entries it covers; restore returns it and the later entries', async () => {
  const { store, journal } = await open()
  assert.is(await journal.restore(ID), undefined)
  assert.is(await journal.latestSnapshot(ID), undefined)
  await journal.append(ID, range(1, 20))
  assert.equal(await journal.restore(ID), { entries: range(1, 20) })

  await journal.append(ID, range(21, 22), snap(22))
  assert.equal(await journal.latestSnapshot(ID), snap(22))
  assert.equal(await rawKeys(store), [`${ID}!m`, `${ID}!s`])
  assert.equal(await journal.head(ID), { seq: 22, epoch: 1 })

  await journal.append(ID, range(23, 30))
  assert.equal(await journal.restore(ID), { snapshot: snap(22), entries: range(23, 30) })
  assert.equal(await journal.tail(ID, 22), range(23, 30))
  assert.equal(await journal.tail(ID, 25), range(26, 30))
  await rejects(journal.tail(ID, 5), JournalError, /tail after seq 5: entries up to seq 22 were compacted into the snapshot/)

  // Entries of the same call that the snapshot covers are never written.
  await journal.append(ID, range(31, 35), snap(33))
  assert.equal(await journal.restore(ID), { snapshot: snap(33), entries: range(34, 35) })
  assert.equal((await rawKeys(store)).filter(k => k.includes('!e!')), [`${ID}!e!0000000000000034`, `${ID}!e!0000000000000035`])

  await journal.putSnapshot(ID, snap(34))
  assert.equal(await journal.restore(ID), { snapshot: snap(34), entries: [entry(35)] })
  await rejects(journal.putSnapshot(ID, snap(30)), JournalError, /snapshot at seq 30 rejected: the stored snapshot is at seq 34/)

  // Adopting a replicated snapshot ahead of the journal moves the head to it.
  await journal.putSnapshot(ID, snap(40, 2))
  assert.equal(await journal.head(ID), { seq: 40, epoch: 2 })
  assert.equal(await journal.restore(ID), { snapshot: snap(40, 2), entries: [] })
  await rejects(journal.append(ID, [entry(36, 2)]), JournalError, /the next entry must be seq 41/)
  await journal.append(ID, [entry(41, 2)])
  assert.equal(await journal.restore(ID), { snapshot: snap(40, 2), entries: [entry(41, 2)] })
  await store.close()
})

test('a snapshot at seq 0 records the initial state before any event', async () => {
  const { store, journal } = await open()
  await journal.putSnapshot(ID, snap(0))
  assert.equal(await journal.head(ID), { seq: 0, epoch: 1 })
  await journal.append(ID, range(1, 2))
  assert.equal(await journal.restore(ID), { snapshot: snap(0), entries: range(1, 2) })
  await store.close()
})

test('the journal survives closing and reopening the database', async () => {
  const first = await open()
  await first.journal.append(ID, range(1, 12), snap(12))
  await first.journal.append(ID, range(13, 15))
  await first.journal.append('default/other', range(1, 2))
  await first.store.close()

  const again = await open(first.dir)
  assert.equal(await again.journal.head(ID), { seq: 15, epoch: 1 })
  assert.equal(await again.journal.restore(ID), { snapshot: snap(12), entries: range(13, 15) })
  assert.equal(await again.journal.list(), ['default/counter', 'default/other'])
  await rejects(again.journal.append(ID, [entry(15)]), JournalError, /next entry must be seq 16/)
  await again.journal.append(ID, [entry(16)])
  assert.equal((await again.journal.tail(ID, 15)).map(e => e.seq), [16])
  await again.store.close()
})

interface CounterContext { count: number, log: string[] }

const counterMachine = setup({
  types: {
    context: {} as CounterContext,
    events: {} as { type: 'inc', by: number } | { type: 'pause' } | { type: 'finish' }
  },
  delays: { cooldown: 1000 }
}).createMachine({
  id: 'counter',
  initial: 'counting',
  context: { count: 0, log: [] },
  states: {
    counting: {
      on: {
        inc: { actions: assign({ count: ({ context, event }) => context.count + event.by, log: ({ context, event }) => [...context.log, `+${event.by}`] }) },
        pause: 'paused',
        finish: 'done'
      }
    },
    paused: {
      entry: assign({ log: ({ context }) => [...context.log, 'paused'] }),
      after: { cooldown: { target: 'counting', actions: assign({ log: ({ context }) => [...context.log, 'resumed'] }) } }
    },
    done: { type: 'final' }
  }
})

test('an XState machine restored from snapshot plus journal tail matches the original', async () => {
  const first = await open()
  const clock = new SimulatedClock()
  const applied: Array<{ event: EventObject, state: unknown }> = []
  const actor = createActor(counterMachine, {
    clock,
    inspect: ev => {
      // Every transition of the root actor, delayed (`xstate.after...`) ones included.
      if (ev.type === '@xstate.snapshot' && ev.actorRef === actor && ev.event.type !== 'xstate.init') {
        applied.push({ event: ev.event, state: (ev.snapshot as AnyMachineSnapshot).value })
      }
    }
  })
  actor.start()
  let seq = 0
  /** Sends or ticks, then journals what happened, as a runtime would before acknowledging. */
  async function step (action: { type: 'inc', by: number } | { type: 'pause' } | { type: 'finish' } | number, snapshot = false): Promise<void> {
    if (typeof action === 'number') clock.increment(action)
    else actor.send(action)
    const entries = applied.splice(0).map(({ event, state }) => ({ seq: ++seq, epoch: 1, ts: T0 + clock.now(), event, sender: 'peer-a', state }))
    await first.journal.append(ID, entries, snapshot ? { seq, epoch: 1, ts: T0 + clock.now(), snapshot: actor.getPersistedSnapshot() } : undefined)
  }

  await step({ type: 'inc', by: 1 })
  await step({ type: 'inc', by: 2 })
  await step({ type: 'pause' })
  await step(1000)
  await step({ type: 'inc', by: 3 }, true)
  await step({ type: 'inc', by: 5 })
  await step({ type: 'pause' })
  await step(999)
  await step(1)
  await step({ type: 'inc', by: 10 })
  await step({ type: 'pause' })
  assert.equal(actor.getSnapshot().value, 'paused')
  assert.equal(actor.getSnapshot().context, { count: 21, log: ['+1', '+2', 'paused', 'resumed', '+3', '+5', 'paused', 'resumed', '+10', 'paused'] })
  await first.store.close()

  const again = await open(first.dir)
  const restored = await again.journal.restore(ID)
  assert.ok(restored?.snapshot != null)
  assert.is(restored.snapshot.seq, 5)
  assert.equal(restored.entries.map(e => e.seq), [6, 7, 8, 9, 10])
  assert.is((restored.entries[2]?.event as EventObject | undefined)?.type, 'xstate.after.cooldown.counter.paused')

  const clock2 = new SimulatedClock()
  const replica = createActor(counterMachine, { snapshot: restored.snapshot.snapshot as AnyMachineSnapshot, clock: clock2 }).start()
  assert.equal(replica.getSnapshot().context.log, ['+1', '+2', 'paused', 'resumed', '+3'])
  for (const e of restored.entries) {
    replica.send(e.event as Parameters<typeof replica.send>[0])
    assert.equal(replica.getSnapshot().value, e.state, `state after replaying seq ${e.seq}`)
  }
  assert.equal(replica.getSnapshot().context, actor.getSnapshot().context)
  assert.equal(replica.getPersistedSnapshot(), actor.getPersistedSnapshot())

  // The replayed `pause` scheduled the cooldown again on the new actor's clock.
  clock.increment(1000)
  clock2.increment(1000)
  assert.equal(replica.getSnapshot().value, 'counting')
  assert.equal(replica.getSnapshot().context, actor.getSnapshot().context)

  // A machine that reaches its final state has its journal erased.
  replica.send({ type: 'finish' })
  assert.is(replica.getSnapshot().status, 'done')
  await again.journal.erase(ID)
  assert.is(await again.journal.restore(ID), undefined)
  actor.stop()
  await again.store.close()
})

test('corruption is detected and named: flipped bytes, garbage, moved values, gaps, bad head', async () => {
  const { store, journal } = await open()
  const raw = store.sublevel(JOURNAL_SUBLEVEL)
  const ids = ['ns/flip', 'ns/garbage', 'ns/moved', 'ns/gap', 'ns/snap', 'ns/head', 'ns/healthy']
  for (const id of ids) {
    await journal.append(id, range(1, 4), snap(4))
    await journal.append(id, range(5, 9))
  }

  const key7 = `ns/flip!e!${String(7).padStart(16, '0')}`
  const value7 = await raw.get(key7)
  assert.ok(value7 != null)
  const at = value7.indexOf('"count":7') + '"count":'.length
  await raw.put(key7, `${value7.slice(0, at)}8${value7.slice(at + 1)}`)
  const flipped = await rejects(journal.restore('ns/flip'), CorruptJournalError, /^corrupt journal of ns\/flip at seq 7 \(key "ns\/flip!e!0000000000000007"\): checksum mismatch/)
  assert.is(flipped.name, 'CorruptJournalError')
  assert.is(flipped.workloadId, 'ns/flip')
  assert.is(flipped.seq, 7)
  assert.is(flipped.key, key7)
  await rejects(journal.tail('ns/flip', 4), CorruptJournalError, /at seq 7 .*checksum mismatch/)
  assert.equal((await journal.tail('ns/flip', 7)).map(e => e.seq), [8, 9])

  await raw.put('ns/garbage!e!0000000000000006', 'garbage')
  await rejects(journal.restore('ns/garbage'), CorruptJournalError, /ns\/garbage at seq 6 .*: value has no checksum envelope/)

  await raw.put('ns/moved!e!0000000000000008', await raw.get('ns/moved!e!0000000000000006') ?? '')
  await rejects(journal.restore('ns/moved'), CorruptJournalError, /ns\/moved at seq 8 .*: checksum mismatch/)

  await raw.del('ns/gap!e!0000000000000006')
  const gap = await rejects(journal.restore('ns/gap'), CorruptJournalError, /ns\/gap at seq 6 .*: entry missing \(next stored entry is seq 7\)/)
  assert.is(gap.seq, 6)
  await raw.del('ns/gap!e!0000000000000009')
  await rejects(journal.tail('ns/gap', 6), CorruptJournalError, /at seq 9 .*: entry missing \(head is at seq 9\)/)

  const snapValue = await raw.get('ns/snap!s')
  await raw.put('ns/snap!s', snapValue?.replace('"counting"', '"countinG"') ?? '')
  await rejects(journal.restore('ns/snap'), CorruptJournalError, /^corrupt journal of ns\/snap at key "ns\/snap!s": checksum mismatch/)
  await rejects(journal.latestSnapshot('ns/snap'), CorruptJournalError, /checksum mismatch/)

  await raw.put('ns/head!m', '0123456789abcdef {"epoch":1,"seq":9,"snapshotSeq":4}')
  await rejects(journal.head('ns/head'), CorruptJournalError, /ns\/head at key "ns\/head!m": checksum mismatch/)
  // An instance is its workloads' only writer and keeps the heads it wrote; one that has
  // not written this workload (a restarted node) reads the head and refuses a corrupt one.
  await rejects(WorkloadJournal.fromStore(store).append('ns/head', [entry(10)]), CorruptJournalError, /checksum mismatch/)
  await raw.del('ns/head!m')
  await rejects(journal.restore('ns/head'), CorruptJournalError, /head record missing/)

  assert.equal(await journal.restore('ns/healthy'), { snapshot: snap(4), entries: range(5, 9) })
  assert.equal(await journal.list(), [...ids].sort())
  await store.close()
})

test('erase removes every key of the workload and nothing else', async () => {
  const first = await open()
  await first.store.rememberPeer({ peerId: 'peer-a', addrs: ['/ip4/127.0.0.1/tcp/1'], lastSeen: T0 })
  for (const id of ['default/count', ID, 'default/counter2', 'default/counter-x']) {
    await first.journal.append(id, range(1, 12), snap(11))
    await first.journal.append(id, range(13, 14))
  }
  assert.equal(await first.journal.list(), ['default/count', ID, 'default/counter-x', 'default/counter2'])
  assert.ok((await rawKeys(first.store)).length > 0)

  await first.journal.erase(ID)
  await first.journal.erase('default/never-written')
  assert.equal(await rawKeys(first.store), [])
  assert.is(await first.journal.head(ID), undefined)
  assert.is(await first.journal.restore(ID), undefined)
  assert.equal(await first.journal.list(), ['default/count', 'default/counter-x', 'default/counter2'])
  await first.store.close()

  // Raw view of the whole database: nothing of the erased workload, the rest intact.
  const db = new Level<string, string>(first.store.path)
  const keys: string[] = []
  for await (const key of db.keys()) keys.push(key)
  await db.close()
  assert.equal(keys.filter(k => k.startsWith(`!journal!${ID}!`)), [])
  assert.equal(keys.filter(k => k.startsWith('!journal!default/counter2!')), [
    '!journal!default/counter2!e!0000000000000012',
    '!journal!default/counter2!e!0000000000000013',
    '!journal!default/counter2!e!0000000000000014',
    '!journal!default/counter2!m',
    '!journal!default/counter2!s'
  ])
  assert.ok(keys.includes('!peers!peer-a'))

  const again = await open(first.dir)
  for (const id of ['default/count', 'default/counter2', 'default/counter-x']) {
    assert.equal(await again.journal.restore(id), { snapshot: snap(11), entries: range(12, 14) })
  }
  assert.equal((await again.store.knownPeers()).map(p => p.peerId), ['peer-a'])
  // An erased workload starts over at seq 1.
  await again.journal.append(ID, [entry(1, 5)])
  assert.equal(await again.journal.head(ID), { seq: 1, epoch: 5 })
  await again.store.close()
})

test('appends issued back to back, without waiting, are written in order and share syncs', async () => {
  const { journal } = await open()
  await Promise.all(Array.from({ length: 50 }, async (_, i) => { await journal.append('ns/pipelined', range(2 * i + 1, 2 * i + 2)) }))
  assert.equal(await journal.head('ns/pipelined'), { seq: 100, epoch: 1 })
  const restored = await journal.restore('ns/pipelined')
  assert.equal(restored?.entries.map(e => e.seq), Array.from({ length: 100 }, (_, i) => i + 1))
  // A write the journal refuses (a gap) leaves the cached head as it was.
  await rejects(journal.append('ns/pipelined', range(102, 102)), JournalError, /next entry must be seq 101/)
  await journal.append('ns/pipelined', range(101, 101))
  assert.equal(await journal.head('ns/pipelined'), { seq: 101, epoch: 1 })
})

function traced (seq: number, epoch = 1, owner = 'owner-a'): JournalEntry {
  return { ...entry(seq, epoch), owner, context: { count: seq, log: [seq] } }
}

test('the trace: written with its entries, kept through compaction, bounded, erased with the workload unless kept', async () => {
  const { store, journal: unbounded } = await open()
  const journal = new WorkloadJournal(store.sublevel(JOURNAL_SUBLEVEL), { traceLimit: 5 })
  const start: TraceEntry = { workloadId: ID, seq: 0, epoch: 1, ts: T0, owner: 'owner-a', event: { type: 'xstate.init' }, value: 'counting', context: { count: 0, log: [] }, status: 'active' }
  await journal.append(ID, [traced(1), traced(2)], undefined, start)
  assert.equal(await journal.trace(ID), [
    start,
    { workloadId: ID, seq: 1, epoch: 1, ts: T0 + 1, owner: 'owner-a', event: { type: 'inc', by: 1 }, sender: 'peer-a', value: { count: 1 }, context: { count: 1, log: [1] }, status: 'active' },
    { workloadId: ID, seq: 2, epoch: 1, ts: T0 + 2, owner: 'owner-a', event: { type: 'inc', by: 2 }, sender: 'peer-a', value: { count: 2 }, context: { count: 2, log: [2] }, status: 'active' }
  ])
  // The journal entry itself keeps none of the trace fields.
  assert.equal((await journal.restore(ID))?.entries, range(1, 2))
  // A snapshot compacts entries, never the trace; past the limit the oldest records go.
  await journal.append(ID, [traced(3), traced(4, 2, 'owner-b')], snap(4, 2))
  assert.equal((await journal.restore(ID))?.entries, [])
  assert.equal((await journal.trace(ID)).map(r => [r.seq, r.epoch, r.owner]), [[0, 1, 'owner-a'], [1, 1, 'owner-a'], [2, 1, 'owner-a'], [3, 1, 'owner-a'], [4, 2, 'owner-b']])
  await journal.append(ID, [traced(5, 2, 'owner-b'), { ...traced(6, 2, 'owner-b'), status: 'done', output: { total: 6 } }])
  const kept = await journal.trace(ID)
  assert.equal(kept.map(r => r.seq), [2, 3, 4, 5, 6])
  assert.equal(kept.at(-1)?.status, 'done')
  assert.equal(kept.at(-1)?.output, { total: 6 })
  assert.equal((await journal.trace(ID, 4)).map(r => r.seq), [5, 6])
  // Entries without trace fields (older writers, installs) leave no record.
  await unbounded.append('default/plain', range(1, 3))
  assert.equal(await unbounded.trace('default/plain'), [])
  // The trace keys stay out of the journal's own key range, and list() names trace-only workloads too.
  assert.equal((await rawKeys(store)).filter(k => !/![ems](!|$)/.test(k.slice(ID.length))), [])
  await journal.erase(ID, { keepTrace: true })
  assert.equal(await journal.restore(ID), undefined)
  assert.equal((await journal.trace(ID)).length, 5)
  assert.equal(await journal.list(), ['default/counter', 'default/plain'])
  await journal.erase(ID)
  assert.equal(await journal.trace(ID), [])
  assert.equal(await journal.list(), ['default/plain'])
  await store.close()
})

test.run()
