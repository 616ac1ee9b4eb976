/**
 * A stateful workload across a real network partition: five node processes,
 * each in its own network namespace (test/helpers/netns.ts). The owner and
 * one peer that holds no copy are cut off from the other three. The majority side takes the
 * workload over at a higher epoch and keeps acknowledging events; the
 * minority side still answers reads (marked stale) but acknowledges nothing,
 * since its holders are out of reach. After healing, exactly one owner and
 * one history remain: the machine's count equals the acknowledged events.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import type { WorkloadDescription } from '../src/workloads/views.js'
import { createHosts, netnsUnsupported, startMeshInHosts, type TestNetwork } from './helpers/netns.js'
import { cli, waitUntil, type NodeProcess } from './helpers/processes.js'

let network: TestNetwork | undefined
let nodes: NodeProcess[] = []
const acked = new Set<string>()

test.before(async () => {
  const unsupported = netnsUnsupported()
  if (unsupported != null) throw new Error(`network namespaces are not available here: ${unsupported}`)
  network = await createHosts(5)
  nodes = await startMeshInHosts(network)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await network?.destroy()
})

async function send (node: NodeProcess, id: string, timeoutMs = 20_000): Promise<Ack> {
  const ack = await node.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id, timeoutMs }, timeoutMs: timeoutMs + 5_000 })
  acked.add(id)
  return ack
}

async function stateVia (node: NodeProcess): Promise<MachineStateReport> {
  return await node.api.request<MachineStateReport>('/v1/workloads/default/counter/state', { timeoutMs: 20_000 })
}

let before: MachineStateReport
let sideA: number[] = []
let sideB: number[] = []

test('both sides of a partition serve what they can; only the side with the holders acknowledges', async () => {
  const applied = await cli(['apply', 'test/fixtures/workloads/machines/counter.ts', '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  for (let i = 0; i < 20; i++) await send(nodes[i % 5]!, `before-${i}`)
  before = await stateVia(nodes[0]!)
  const owner = nodes.findIndex(n => n.peerId === before.owner)
  // The owner goes with a peer that holds no copy: both holders stay on the majority side, a
  // majority of the replica set (owner and holders). Cut off with a holder instead, the owner
  // would keep the majority of its replica set and the other side could not take over (docs/state.md).
  const other = [0, 1, 2, 3, 4].find(i => i !== owner && !before.holders.includes(nodes[i]!.peerId))!
  sideA = [owner, other]
  sideB = [0, 1, 2, 3, 4].filter(i => !sideA.includes(i))
  await network!.partition(sideA, sideB)
  const t0 = Date.now()

  // Majority side: a new owner at a higher epoch, within bounds, and events are acknowledged.
  const b = nodes[sideB[0]!]!
  const first = await waitUntil(async () => {
    const ack = await send(b, 'majority-0', 3_000)
    return ack.epoch > before.epoch ? ack : undefined
  }, { timeoutMs: 30_000, intervalMs: 200, what: 'the majority side to take the workload over' })
  console.log(`partition: majority side acknowledged under epoch ${first.epoch} (owner …${first.owner.slice(-8)}) ${Date.now() - t0} ms after the cut`)
  assert.ok(sideB.some(i => nodes[i]!.peerId === first.owner), 'the new owner is on the majority side')
  for (let i = 1; i < 20; i++) await send(nodes[sideB[i % 3]!]!, `majority-${i}`)

  // Minority side: reads are answered (stale), sends are refused, never acknowledged.
  const a = nodes[sideA[1]!]!
  const stale = await stateVia(a)
  assert.ok(stale.seq >= before.seq, 'the minority side still reads the state it had')
  const refused = await a.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: 'minority-0', timeoutMs: 3_000 }, timeoutMs: 10_000 })
    .then(ack => ({ ack }), (err: Error) => ({ err }))
  assert.ok('err' in refused, `the minority side acknowledged an event: ${JSON.stringify(refused)}`)
  assert.match(refused.err.message, /no owner answered|not acknowledged|holders|could not start/)
})

test('after healing, exactly one owner and one history remain', async () => {
  await network!.heal()
  const owners = async (): Promise<string[]> => {
    const seen = new Set<string>()
    for (const n of nodes) {
      const d = await n.api.request<WorkloadDescription>('/v1/workloads/default/counter', { timeoutMs: 5_000 })
      for (const p of d.placement.filter(p => p.status === 'running')) seen.add(`${p.peerId}@${p.epoch}`)
    }
    return [...seen]
  }
  const one = await waitUntil(async () => { const o = await owners(); return o.length === 1 ? o : undefined }, { timeoutMs: 30_000, intervalMs: 250, what: 'every node to agree on one owner' })
  // Every node routes to that owner, and the history is the acknowledged one.
  for (const [i, n] of nodes.entries()) await send(n, `healed-${i}`)
  const states = await Promise.all(nodes.map(async n => await stateVia(n)))
  assert.is(new Set(states.map(s => `${s.owner}@${s.epoch}#${s.seq}`)).size, 1, `one owner, epoch and sequence everywhere: ${JSON.stringify(one)}`)
  assert.is(states[0]!.stale, undefined)
  assert.is((states[0]!.context as { count: number }).count, acked.size, 'the count equals exactly the acknowledged events')
  assert.ok(!acked.has('minority-0'))
})

test.run()
