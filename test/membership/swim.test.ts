/**
 * The failure detector (src/membership/swim.ts) on a virtual clock and a
 * simulated network (sim/engine.ts): a killed member is known in a round
 * trip, a silent one after its suspicion runs out, a live one refutes, a stale
 * report from the far side of a cut does not take a live member down, views
 * stay bounded and take newcomers in, and offers ride on the probes.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Swim, type DeathCause, type SwimMessage, type SwimOptions } from '../../src/membership/swim.js'
import { PROFILES, SimNetwork, Simulation } from '../../sim/engine.js'

interface Mesh {
  sim: Simulation
  net: SimNetwork
  swims: Map<string, Swim<{ free: number }>>
  killed: Set<string>
  deaths: Array<{ by: string, dead: string, cause: DeathCause, at: number }>
  /** Messages of these kinds from these nodes are dropped (a lost ack). */
  drop: (from: string, m: SwimMessage<{ free: number }>) => boolean
}

function mesh (n: number, options: Partial<SwimOptions> = {}, seed = 1): Mesh {
  const sim = new Simulation(seed, { promises: false })
  const net = new SimNetwork(sim, PROFILES.loopback!)
  const m: Mesh = { sim, net, swims: new Map(), killed: new Set(), deaths: [], drop: () => false }
  for (let i = 0; i < n; i++) add(m, `n${i}`, options)
  return m
}

function add (m: Mesh, id: string, options: Partial<SwimOptions> = {}): Swim<{ free: number }> {
  const { sim, net } = m
  const swim: Swim<{ free: number }> = new Swim({
    selfId: id,
    clock: sim,
    now: () => sim.now,
    random: sim.random,
    offer: () => ({ free: Number(id.slice(1)) }),
    options,
    send: (to, message) => {
      if (m.drop(id, message)) return
      if (m.killed.has(to)) { sim.setTimeout(() => { swim.refused(to) }, 1); return }
      net.send(message.type, id, to, () => { m.swims.get(to)?.receive(id, message) })
    },
    onDead: (dead, cause) => { m.deaths.push({ by: id, dead, cause, at: sim.now }) }
  })
  m.swims.set(id, swim)
  return swim
}

function startAll (m: Mesh): void {
  const ids = [...m.swims.keys()]
  for (const [id, s] of m.swims) s.seed(ids.filter(x => x !== id))
  for (const s of m.swims.values()) s.start()
}

test('a killed member is known in about a round trip once a connection to it drops', async () => {
  const m = mesh(8)
  startAll(m)
  await m.sim.run(5_000)
  const at = m.sim.now
  m.killed.add('n3')
  m.net.kill('n3')
  m.swims.get('n3')!.stop()
  m.swims.get('n0')!.linkDown('n3')
  await m.sim.run(at + 100)
  const first = m.deaths.find(d => d.dead === 'n3')
  assert.ok(first != null, 'n3 declared dead')
  assert.is(first.cause, 'refused')
  assert.ok(first.at - at < 10, `declared after ${first.at - at} ms`)
})

test('a silent member is suspected, then dead after the suspicion timeout; no live member is', async () => {
  const m = mesh(10)
  startAll(m)
  await m.sim.run(5_000)
  const at = m.sim.now
  m.net.partition(['n4'])
  await m.sim.run(at + 8_000)
  const first = m.deaths.filter(d => d.dead === 'n4' && d.by !== 'n4').sort((a, b) => a.at - b.at)[0]
  assert.ok(first != null, 'n4 declared dead')
  assert.is(first.cause, 'timeout')
  const o = m.swims.get('n0')!.options
  // At least a probe and the suspicion; at most a few periods for some probe to come round, then the same.
  assert.ok(first.at - at >= o.suspicionMs, `declared after ${first.at - at} ms`)
  assert.ok(first.at - at <= 5_000, `declared after ${first.at - at} ms`)
  // Every other node has let it go, and none was declared dead but n4 (save by n4 itself, alone).
  for (const [id, s] of m.swims) if (id !== 'n4') assert.not.ok(s.members().includes('n4'), `${id} still holds n4`)
  assert.equal([...new Set(m.deaths.filter(d => d.by !== 'n4').map(d => d.dead))], ['n4'])
})

test('a live member whose acks were lost refutes the suspicion and stays', async () => {
  const m = mesh(6)
  startAll(m)
  await m.sim.run(3_000)
  // n2 answers nothing for 600 ms: whoever probes it then suspects it.
  const until = m.sim.now + 600
  m.drop = (from, msg) => from === 'n2' && msg.type === 'ack' && m.sim.now < until
  await m.sim.run(m.sim.now + 10_000)
  assert.is(m.deaths.filter(d => d.dead === 'n2').length, 0, 'n2 was never declared dead')
  for (const [id, s] of m.swims) if (id !== 'n2') assert.is(s.state('n2'), 'alive')
})

test('a stale death report about a live member is checked first-hand, not believed', async () => {
  const m = mesh(6)
  startAll(m)
  await m.sim.run(3_000)
  // n5 claims n1 is dead (as the far side of a healed cut would) at n1's current incarnation.
  m.swims.get('n0')!.receive('n5', { type: 'ping', seq: 999, incarnation: 0, sample: [], updates: [{ id: 'n1', state: 'dead', incarnation: 0 }] })
  assert.is(m.swims.get('n0')!.state('n1'), 'suspect')
  await m.sim.run(m.sim.now + 5_000)
  assert.is(m.swims.get('n0')!.state('n1'), 'alive')
  assert.is(m.deaths.filter(d => d.dead === 'n1').length, 0)
})

test('views stay bounded, a newcomer is taken in, and every member is probed: offers ride on the probes', async () => {
  const m = mesh(40, { viewSize: 8 })
  startAll(m)
  await m.sim.run(10_000)
  for (const s of m.swims.values()) assert.ok(s.members().length <= 8)
  const j = add(m, 'n99', { viewSize: 8 })
  j.start(['n0', 'n1'])
  await m.sim.run(m.sim.now + 10_000)
  const holders = [...m.swims.values()].filter(s => s.members().includes('n99')).length
  assert.ok(holders >= 3, `n99 is in ${holders} views`)
  assert.ok(j.members().length >= 4, `n99 holds ${j.members().length}`)
  const offers = m.swims.get('n0')!.offers()
  assert.ok(offers.length >= 4, `${offers.length} offers`)
  for (const o of offers) assert.is(o.offer.free, Number(o.id.slice(1)))
})

test('another member\'s word that a suspect is alive does not save it: only its own messages do', async () => {
  const m = mesh(6)
  startAll(m)
  await m.sim.run(3_000)
  m.net.partition(['n2'])
  // Run until some node suspects n2.
  let suspecter: string | undefined
  for (let t = 0; t < 100 && suspecter == null; t++) {
    await m.sim.run(m.sim.now + 50)
    suspecter = [...m.swims].find(([id, s]) => id !== 'n2' && s.state('n2') === 'suspect')?.[0]
  }
  assert.ok(suspecter != null, 'someone suspects n2')
  // n5 (a compromised member, say) vouches for n2 at a far higher incarnation.
  m.swims.get(suspecter)!.receive(suspecter === 'n5' ? 'n4' : 'n5', { type: 'ping', seq: 999, incarnation: 0, sample: [], updates: [{ id: 'n2', state: 'alive', incarnation: 1e12 }] })
  await m.sim.run(m.sim.now + 3_000)
  assert.is(m.swims.get(suspecter)!.state('n2'), 'dead')
})

test('a node restarted under the same id is taken back: its incarnation starts at its start time', async () => {
  const m = mesh(6)
  startAll(m)
  await m.sim.run(3_000)
  m.killed.add('n3')
  m.net.kill('n3')
  m.swims.get('n3')!.stop()
  m.swims.get('n0')!.linkDown('n3')
  await m.sim.run(m.sim.now + 5_000)
  for (const [id, s] of m.swims) if (id !== 'n3') assert.is.not(s.state('n3'), 'alive', `${id} let n3 go`)
  // Back: a new process, the same id, one contact.
  m.killed.delete('n3')
  m.net.revive('n3')
  add(m, 'n3').start(['n0'])
  await m.sim.run(m.sim.now + 10_000)
  const holders = [...m.swims].filter(([id, s]) => id !== 'n3' && s.members().includes('n3')).length
  assert.ok(holders >= 3, `n3 is back in ${holders} views`)
})

test('a node whose own timers run late waits longer on others (Lifeguard\'s local health); on time again, it recovers', async () => {
  const m = mesh(6)
  const late = { by: 150 }
  // n0's timers fire late (its event loop is starved); the others' on time.
  const sim = m.sim
  const n0 = new Swim<{ free: number }>({
    selfId: 'n0',
    clock: { setTimeout: (fn, ms) => sim.setTimeout(fn, ms + late.by), clearTimeout: id => { sim.clearTimeout(id) } },
    now: () => sim.now,
    random: sim.random,
    send: (to, message) => { m.net.send(message.type, 'n0', to, () => { m.swims.get(to)?.receive('n0', message) }) }
  })
  m.swims.set('n0', n0)
  startAll(m)
  await sim.run(5_000)
  assert.ok(n0.localHealth > 0, `n0's health ${n0.localHealth}`)
  for (const [id, s] of m.swims) if (id !== 'n0') assert.is(s.localHealth, 0, id)
  late.by = 0
  await sim.run(sim.now + 10_000)
  assert.is(n0.localHealth, 0)
})

test('a probe costs the same at 20 nodes and at 400: messages per node per second are flat in n', async () => {
  const rate = async (n: number): Promise<number> => {
    const m = mesh(n)
    const ids = [...m.swims.keys()]
    // Random partial views, as a mesh at rest has them.
    for (const [id, s] of m.swims) s.seed(ids.filter(x => x !== id).sort(() => m.sim.random() - 0.5).slice(0, 24))
    for (const s of m.swims.values()) s.start()
    await m.sim.run(5_000)
    const before = m.net.sent.total
    await m.sim.run(15_000)
    return (m.net.sent.total - before) / n / 10
  }
  const small = await rate(20)
  const large = await rate(400)
  assert.ok(small > 3 && small < 5, `${small} a node a second at 20`)
  assert.ok(Math.abs(large - small) / small < 0.1, `${large} at 400 vs ${small} at 20`)
})

test.run()
