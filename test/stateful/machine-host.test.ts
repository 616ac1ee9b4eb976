/**
 * MachineHost, the owner side of the stateful plane, with in-memory
 * neighbours (fakes.ts: holders on their own LevelDB behind a fake
 * StatePeers, a fake mesh) and a fake machine instead of a sandbox. No
 * process or thread is started.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MachineHost } from '../../src/stateful/machine-host.js'
import type { MachineRunner } from '../../src/stateful/owner.js'
import type { BatchResultListener, Transition } from '../../src/sandbox/machine-sandbox.js'
import type { SendReply, SendRequest } from '../../src/protocol/state.js'
import { silentLogger } from '../../src/transport/logger.js'
import { toWorkloadSpec } from '../../src/workloads/spec.js'
import { waitUntil } from '../helpers/processes.js'
import { CLAIMER, cluster, gate, OWNER } from './fakes.js'

/** A counter: `inc` counts, `finish` ends it with the count as output; anything else is not handled. */
class FakeCounter implements MachineRunner {
  private n = 0
  private done = false
  readonly definition = null

  async start (): Promise<Transition> {
    return this.transition(true)
  }

  async sendMany (events: unknown[], onResult?: BatchResultListener): Promise<Array<Transition | Error>> {
    const out: Array<Transition | Error> = []
    for (const [i, event] of events.entries()) {
      const type = (event as { type?: unknown }).type
      let r: Transition | Error
      if (this.done) r = new Error('the machine is done')
      else if (type === 'inc') { this.n++; r = this.transition(true) } else if (type === 'finish') { this.done = true; r = this.transition(true) } else r = this.transition(false)
      out.push(r)
      onResult?.(i, r)
    }
    return out
  }

  async stop (): Promise<void> {}

  private transition (handled: boolean): Transition {
    const value = this.done ? 'finished' : 'counting'
    return { handled, value, context: { n: this.n }, status: this.done ? 'done' : 'active', ...(this.done ? { output: this.n } : {}), state: { persisted: { value, context: { n: this.n } }, timers: [] } }
  }
}

const spec = toWorkloadSpec({ name: 'counter', kind: 'stateful' }, { artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'counter.ts', now: 0, machineId: 'counter' })

async function owner (): Promise<{ host: MachineHost, c: Awaited<ReturnType<typeof cluster>>, completed: unknown[], holders: () => string[] }> {
  const c = await cluster()
  const completed: unknown[] = []
  let holders: string[] = []
  const host = new MachineHost({
    mesh: c.components.mesh,
    peers: c.components.peers,
    journal: c.components.journal,
    holder: c.owner.holder,
    artifacts: { ensure: async () => '/nonexistent/counter.mjs' },
    sandboxes: () => new FakeCounter(),
    log: silentLogger,
    livePeers: c.components.livePeers,
    locate: () => ({ owner: OWNER, epoch: 1, kind: 'stateful' }),
    onCompleted: (_spec, _epoch, output) => { completed.push(output) },
    onLocation: loc => { holders = loc.holders }
  })
  await host.start(spec, 1, [])
  assert.is(host.get(spec.id)?.status, 'running')
  return { host, c, completed, holders: () => holders }
}

const send = (id: string, type: string): SendRequest => ({ op: 'send', workloadId: spec.id, id, event: { type } })

test('the owner acknowledges a send only once it is in its own journal and on both holders', async () => {
  const { host, c, holders } = await owner()
  try {
    const [first, second] = holders()
    assert.ok(first != null && second != null, 'two holders were chosen')
    const local = gate()
    c.localGate.current = local.wait
    const holdFirst = gate()
    c.net.holdAppend.set(first, holdFirst.wait)
    let reply: SendReply | undefined
    const replying = host.handleSend(send('e1', 'inc')).then(r => { reply = r })
    await waitUntil(async () => (await c.peers[second]!.journal.head(spec.id))?.seq === 1, { timeoutMs: 5_000, intervalMs: 5, what: 'the second holder has the event' })
    assert.is(reply, undefined, 'not acknowledged with one holder')
    holdFirst.open()
    await waitUntil(async () => (await c.peers[first]!.journal.head(spec.id))?.seq === 1, { timeoutMs: 5_000, intervalMs: 5, what: 'the first holder has the event' })
    assert.is(reply, undefined, 'not acknowledged before the owner\'s own journal has it')
    local.open()
    await replying
    assert.ok(reply?.ok === true && 'ack' in reply, JSON.stringify(reply))
    assert.equal({ seq: reply.ack.seq, epoch: reply.ack.epoch, value: reply.ack.value }, { seq: 1, epoch: 1, value: 'counting' })
    // The same id again: the first acknowledgement, not a second step.
    const again = await host.handleSend(send('e1', 'inc'))
    assert.ok(again.ok && 'ack' in again && again.ack.duplicate === true && again.ack.seq === 1)
    assert.is((await c.owner.journal.head(spec.id))?.seq, 1)
  } finally {
    await host.stopAll()
    await c.close()
  }
})

test('an event the machine does not handle is refused and not journaled', async () => {
  const { host, c } = await owner()
  try {
    const reply = await host.handleSend(send('x', 'jump'))
    assert.ok(!reply.ok && reply.refusal.code === 'not-handled', JSON.stringify(reply))
    assert.is((await c.owner.journal.head(spec.id))?.seq ?? 0, 0)
  } finally {
    await host.stopAll()
    await c.close()
  }
})

test('a deposed owner gets nothing acknowledged and steps down', async () => {
  const { host, c, holders } = await owner()
  try {
    for (const h of holders()) assert.ok((await c.peers[h]!.holder.handle({ op: 'claim', workloadId: spec.id, epoch: 2, owner: CLAIMER }, CLAIMER)).ok)
    const reply = await host.handleSend(send('e1', 'inc'))
    assert.ok(!reply.ok && reply.refusal.code === 'unavailable', JSON.stringify(reply))
    await waitUntil(() => host.get(spec.id) == null, { timeoutMs: 5_000, intervalMs: 5, what: 'the owner stepped down' })
    const after = await host.handleSend(send('e2', 'inc'))
    assert.ok(!after.ok && after.refusal.code === 'not-owner', JSON.stringify(after))
  } finally {
    await host.stopAll()
    await c.close()
  }
})

test('the event that ends the machine is acknowledged, then the workload completes and its copies are erased', async () => {
  const { host, c, completed, holders } = await owner()
  try {
    const held = holders()
    assert.ok((await host.handleSend(send('e1', 'inc'))).ok)
    const reply = await host.handleSend(send('e2', 'finish'))
    assert.ok(reply.ok && 'ack' in reply && reply.ack.status === 'done' && reply.ack.output === 1, JSON.stringify(reply))
    await waitUntil(() => completed.length === 1 && host.get(spec.id) == null, { timeoutMs: 5_000, intervalMs: 5, what: 'the workload completed' })
    assert.equal(completed, [1])
    for (const h of held) await waitUntil(async () => (await c.peers[h]!.journal.head(spec.id)) == null, { timeoutMs: 5_000, intervalMs: 5, what: `holder ${h.slice(-5)} erased its copy` })
  } finally {
    await host.stopAll()
    await c.close()
  }
})

test.run()
