/**
 * The stateful issue's acceptance on a 4-node mesh of real processes: 1,000
 * acknowledged events survive a SIGKILL of the owner with none lost and none
 * applied twice; the restarted old owner does not run the workload again
 * (fencing); a machine that reaches its final state leaves no trace of its
 * state in any node's LevelDB or DHT store.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Level } from 'level'
import { join } from 'node:path'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import type { WorkloadDescription } from '../src/workloads/views.js'
import { ApiRequestError } from '../src/api/errors.js'
import { cli, startCli, startMesh, startNode, waitUntil, type NodeProcess } from './helpers/processes.js'

const COUNTER = 'test/fixtures/workloads/machines/counter.ts'
const EVENTS = 1000
let nodes: NodeProcess[] = []

test.before(async () => {
  nodes = await startMesh(4)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

function alive (n: NodeProcess): boolean {
  return n.child.exitCode == null && n.child.signalCode == null
}

async function stateOf (node: NodeProcess, name = 'counter'): Promise<MachineStateReport> {
  return await node.api.request<MachineStateReport>(`/v1/workloads/default/${name}/state`, { timeoutMs: 20_000 })
}

async function describe (node: NodeProcess, name: string): Promise<WorkloadDescription> {
  return await node.api.request<WorkloadDescription>(`/v1/workloads/default/${name}`, { timeoutMs: 10_000 })
}

/**
 * Sends EVENTS `inc` events, 8 at a time, through the APIs of `via` (round
 * robin). An event whose send fails (owner dying, failing over) is retried
 * with the same id until it is acknowledged. `onAck` sees every ack.
 */
async function sendAll (via: () => NodeProcess[], onAck: (n: number, ack: Ack) => void): Promise<Map<number, Ack>> {
  const acks = new Map<number, Ack>()
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    while (next < EVENTS) {
      const n = next++
      const id = `event-${n}`
      const deadline = Date.now() + 60_000
      for (let attempt = 0; ; attempt++) {
        const targets = via()
        const node = targets[(n + attempt + worker) % targets.length]!
        try {
          const ack = await node.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id }, timeoutMs: 20_000 })
          acks.set(n, ack)
          onAck(n, ack)
          break
        } catch (err: unknown) {
          if (Date.now() > deadline) throw new Error(`event ${n} never acknowledged: ${String(err)}`)
          if (err instanceof ApiRequestError && err.status < 500) throw err
        }
      }
    }
  }))
  return acks
}

let killed: NodeProcess | undefined
let newOwner = ''

test('1,000 acknowledged events survive a SIGKILL of the owner: none lost, none applied twice, one owner after', async () => {
  const applied = await cli(['apply', COUNTER, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  const before = await stateOf(nodes[0]!)
  assert.is(before.seq, 0)
  assert.equal(before.context, { count: 0, applied: [] })
  assert.is(before.holders.length, 2, 'replicated durability: two holders besides the owner')
  const owner = nodes.find(n => n.peerId === before.owner)!
  assert.ok(owner, 'the owner is one of the mesh nodes')
  const senders = (): NodeProcess[] => nodes.filter(n => n !== owner && alive(n))
  let killedAt = 0
  let firstAckAfterKill = 0
  const acks = await sendAll(senders, (_n, ack) => {
    if (killedAt === 0 && ack.seq >= 300) {
      killedAt = Date.now()
      killed = owner
      owner.child.kill('SIGKILL')
    } else if (killedAt > 0 && firstAckAfterKill === 0 && ack.owner !== owner.peerId) {
      firstAckAfterKill = Date.now()
    }
  })
  assert.ok(killedAt > 0, 'the owner was killed mid-run')
  assert.is(acks.size, EVENTS)
  console.log(`failover: first acknowledgement from the new owner ${firstAckAfterKill - killedAt} ms after the kill`)
  // Every acknowledged event has its own place in the journal.
  const seqs = new Set([...acks.values()].map(a => a.seq))
  const fresh = [...acks.values()].filter(a => a.duplicate !== true)
  assert.is(new Set(fresh.map(a => a.seq)).size, fresh.length, 'no two acknowledgements share a sequence number')
  assert.ok(seqs.size >= EVENTS - 8, `distinct seqs: ${seqs.size}`)
  const after = await stateOf(senders()[0]!)
  assert.is.not(after.owner, owner.peerId)
  assert.ok(after.epoch > before.epoch, `epoch rose: ${before.epoch} → ${after.epoch}`)
  assert.is((after.context as { count: number }).count, EVENTS, 'the context counts exactly the acknowledged events')
  newOwner = after.owner
  // One owner: every live node sees exactly one running replica of the workload, on the new owner.
  for (const n of senders()) {
    const d = await waitUntil(async () => {
      const desc = await describe(n, 'counter')
      return desc.placement.filter(p => p.status === 'running').length === 1 ? desc : undefined
    }, { what: `${n.peerId} to see one owner` })
    assert.equal(d.placement.filter(p => p.status === 'running').map(p => p.peerId), [after.owner])
  }
})

test('fencing: the old owner restarted on its data dir does not run the workload again', async () => {
  assert.ok(killed != null)
  const restarted = await startNode({ dataDir: killed.dataDir, bootstrap: [nodes.find(n => n !== killed)!.address] })
  nodes[nodes.indexOf(killed)] = restarted
  assert.is(restarted.peerId, killed.peerId)
  // Wait until it has heard the current owner's heartbeat, then a few more rounds.
  await waitUntil(async () => (await describe(restarted, 'counter')).placement.some(p => p.peerId === newOwner && p.status === 'running'), { what: 'restarted node to see the new owner' })
  const ack = await restarted.api.request<Ack>('/v1/workloads/default/counter/events', { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: 'after-restart' }, timeoutMs: 20_000 })
  assert.is(ack.owner, newOwner, 'a send through the restarted node reaches the current owner')
  assert.is(ack.seq, EVENTS + 1)
  const nodesView = await restarted.api.request<Array<{ peerId: string, replicas: number }>>('/v1/nodes', { timeoutMs: 10_000 })
  assert.is(nodesView.find(n => n.peerId === restarted.peerId)?.replicas, 0, 'the restarted node runs nothing')
  const state = await stateOf(restarted)
  assert.is(state.owner, newOwner)
  assert.is((state.context as { count: number }).count, EVENTS + 1)
})

test('bad input: unknown event type is reported not handled; malformed JSON and unknown workload are clear errors', async () => {
  const api = nodes.find(n => alive(n) && n.peerId !== newOwner)!.apiUrl
  const unhandled = await cli(['send', 'counter', '{"type":"teleport"}', '--api', api])
  assert.is(unhandled.code, 1)
  assert.match(unhandled.stderr, /not handled.*teleport/)
  const malformed = await cli(['send', 'counter', '{"type":', '--api', api])
  assert.is.not(malformed.code, 0)
  assert.match(malformed.stderr, /not valid JSON/)
  const unknown = await cli(['send', 'nosuch', 'inc', '--api', api])
  assert.is.not(unknown.code, 0)
  assert.match(unknown.stderr, /nosuch not found/)
  const state = await cli(['state', 'counter', '-o', 'json', '--api', api])
  assert.is(state.code, 0, state.stderr)
  assert.is((JSON.parse(state.stdout) as MachineStateReport).seq, EVENTS + 1, 'nothing was applied by the refused sends')
})

test('the turnstile example through the CLI: send prints the new state, state and trace -f show it', async () => {
  const api = nodes.find(n => alive(n))!.apiUrl
  const applied = await cli(['apply', 'examples/turnstile/turnstile.ts', '--api', api], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  const follow = startCli(['trace', 'turnstile', '-f', '--api', api])
  try {
    const coin = await cli(['send', 'turnstile', 'coin', '--api', api])
    assert.is(coin.code, 0, coin.stderr)
    assert.is(coin.stdout, 'unlocked\n')
    assert.match(coin.stderr, /acknowledged: default\/turnstile seq 1 epoch \d+/)
    const push = await cli(['send', 'turnstile', '{"type":"push"}', '--api', api])
    assert.is(push.stdout, 'locked\n')
    await follow.waitForOutput(/#2 e\d+\s+push → locked/)
    const state = await cli(['state', 'turnstile', '--api', api])
    assert.is(state.code, 0, state.stderr)
    assert.match(state.stdout, /State:\s+locked/)
    assert.match(state.stdout, /"coins":1,"passes":1/)
    const trace = await cli(['trace', 'turnstile', '-o', 'json', '--api', api])
    assert.equal(trace.stdout.trim().split('\n').map(l => (JSON.parse(l) as { value: string }).value), ['unlocked', 'locked'])
  } finally {
    follow.child.kill('SIGTERM')
  }
})

test('final state: the workload shows Completed with its output, and its state is gone from every LevelDB and DHT store', async () => {
  const api = nodes.find(n => alive(n) && n.peerId !== newOwner)!.apiUrl
  const done = await cli(['send', 'counter', 'finish', '-o', 'json', '--api', api])
  assert.is(done.code, 0, done.stderr)
  const ack = JSON.parse(done.stdout) as Ack
  assert.is(ack.status, 'done')
  assert.equal(ack.output, { total: EVENTS + 1 })
  const live = nodes.filter(alive)
  for (const n of live) {
    await waitUntil(async () => (await describe(n, 'counter')).status === 'Completed', { what: `${n.peerId} to show Completed` })
    const desc = await describe(n, 'counter')
    assert.equal(desc.output, { total: EVENTS + 1 })
  }
  const again = await cli(['send', 'counter', 'inc', '--api', api])
  assert.is(again.code, 1)
  assert.match(again.stderr, /completed/)
  for (const n of live) {
    for (const key of ['/beemesh/location/default/counter', '/beemesh/snapshot/default/counter']) {
      await waitUntil(async () => !(await n.api.request<{ present: boolean }>(`/v1/records?key=${encodeURIComponent(key)}&local=true`, { timeoutMs: 5_000 })).present, { what: `${key} gone from ${n.peerId}'s DHT store` })
    }
  }
  await Promise.all(live.map(async n => await n.kill('SIGTERM')))
  for (const n of nodes) {
    const db = new Level<string, string>(join(n.dataDir, 'db'))
    try {
      const traces: string[] = []
      for await (const [key, value] of db.iterator()) {
        if (key.includes('default/counter') || value.includes('default/counter')) traces.push(key)
      }
      assert.equal(traces, [], `${n.peerId} keeps no trace of the machine's state`)
    } finally {
      await db.close()
    }
  }
})

test.run()
