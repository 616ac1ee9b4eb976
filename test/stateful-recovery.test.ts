/**
 * A holder whose journal copy was corrupted on disk while it was down: after
 * it restarts and the owner is killed, the workload resumes from a sound
 * replicated copy; the corrupt copy is refused, not resumed from, and no
 * acknowledged event is lost.
 */
import { join } from 'node:path'
import { Level } from 'level'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import { cli, startMesh, startNode, waitUntil, type NodeProcess } from './helpers/processes.js'

let nodes: NodeProcess[] = []

test.before(async () => {
  nodes = await startMesh(4)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

async function stateVia (node: NodeProcess): Promise<MachineStateReport> {
  return await node.api.request<MachineStateReport>('/v1/workloads/default/counter/state', { timeoutMs: 20_000 })
}

test('a corrupt journal copy is refused on restart and the workload recovers from a replicated one', async () => {
  const applied = await cli(['apply', 'test/fixtures/workloads/machines/counter.ts', '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  for (let i = 0; i < 10; i++) await nodes[i % 4]!.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: `e-${i}` }, timeoutMs: 20_000 })
  const s = await stateVia(nodes[0]!)
  const owner = nodes.find(n => n.peerId === s.owner)!
  const holder = nodes.find(n => n.peerId === s.holders[0])!

  // Stop the holder, flip a byte of one journal entry's JSON (its checksum no longer matches), restart it.
  await holder.kill('SIGTERM')
  const db = new Level<string, string>(join(holder.dataDir, 'db'))
  const key = '!journal!default/counter!e!0000000000000005'
  const value = await db.get(key)
  assert.ok(value != null, 'the holder journaled entry 5')
  await db.put(key, value.replace('"by":1', '"by":7'))
  await db.close()
  const restarted = await startNode({ dataDir: holder.dataDir, bootstrap: [owner.address] })
  nodes[nodes.indexOf(holder)] = restarted
  await waitUntil(async () => (await restarted.api.request<unknown[]>('/v1/nodes', { timeoutMs: 5_000 })).length === 4, { what: 'the restarted holder to hear every node' })

  await owner.kill('SIGKILL')
  const via = nodes.find(n => n !== owner && n !== restarted)!
  const ack = await via.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: 'after' }, timeoutMs: 30_000 })
  assert.is.not(ack.owner, owner.peerId)
  assert.is(ack.seq, 11)
  const after = await stateVia(via)
  assert.is((after.context as { count: number }).count, 11, 'every acknowledged event, none corrupted')
  await waitUntil(() => /corrupt/.test(restarted.stderr()), { what: 'the restarted holder to report its corrupt copy', timeoutMs: 10_000 })
})

test.run()
