/**
 * Membership at mesh scale, simulated: every node runs the real failure
 * detector (src/membership/swim.ts) over the simulated network. A killed
 * node's host refuses what is sent to it (one round trip), and the peers
 * that had an open connection to it see the connection drop; a silenced node
 * (hung, or cut off) answers nothing. The run: a mesh at rest (views seeded
 * at random, then mixed by the protocol itself), a quiet window that
 * measures what a node sends at rest, kills and silences one at a time,
 * joins, and a partition that heals.
 */
import { Swim, type SwimMessage } from '../src/membership/swim.js'
import { summary } from '../bench/lib.js'
import type { SimNetwork, Simulation } from './engine.js'

/** A connection unused this long is closed (libp2p prunes idle ones; a killed peer's drop is seen only on an open one). */
const LINK_IDLE_MS = 30_000

export interface MembershipFigures {
  /** Time from a kill or silence to the first node declaring it dead. */
  detectionP50Ms: number
  detectionP99Ms: number
  killedDetectionP99Ms: number
  silentDetectionP99Ms: number
  /** Victims no node declared dead by the end. */
  undetected: number
  /** Live nodes some node on their side of every cut declared dead. */
  falseDeaths: number
  /** Membership messages a node sends a second at rest. */
  restMessagesPerNodePerSec: number
  /** Membership messages a node sends a second over the whole run (kills, joins, the partition). */
  messagesPerNodePerSec: number
  /** Time from a join until three other nodes hold the newcomer in their view. */
  joinP99Ms: number
  /** After the partition heals: time until every node of the cut-off side is in a view on the other side again. */
  partitionHealMs: number
  /** Every node's view size at the end (min / median). */
  viewMin: number
  viewMedian: number
}

export interface MembershipRun { kills: number, silences: number, joins: number, restSeconds: number }

/** A mesh at rest: fills every detector's view with random other members (the protocol keeps them mixed from there). */
export function seedAtRest <O> (swims: Array<Swim<O>>, random: () => number): void {
  const ids = swims.map(s => s.selfId)
  for (const swim of swims) {
    const picks = new Set<string>()
    while (picks.size < Math.min(swim.options.viewSize, ids.length - 1)) {
      const other = ids[Math.floor(random() * ids.length)]!
      if (other !== swim.selfId) picks.add(other)
    }
    swim.seed([...picks])
  }
}

/** Runs the membership scenario on a fresh mesh of `nodes` (the caller's sim and network). */
export async function simulateMembership (sim: Simulation, net: SimNetwork, nodes: number, run: MembershipRun): Promise<MembershipFigures> {
  const swims = new Map<string, Swim>()
  const links = new Map<string, Map<string, number>>()
  const killed = new Set<string>()
  const silenced = new Set<string>()
  const victimAt = new Map<string, { at: number, how: 'killed' | 'silent' }>()
  const detected = new Map<string, number>()
  const falseDeaths = new Set<string>()
  const joinedAt = new Map<string, number>()
  const admittedBy = new Map<string, number>()
  const joinTimes: number[] = []

  const link = (a: string, b: string): void => {
    let m = links.get(a)
    if (m == null) links.set(a, m = new Map())
    m.set(b, sim.now)
  }

  const create = (id: string): Swim => {
    const swim: Swim = new Swim({
      selfId: id,
      clock: sim,
      now: () => sim.now,
      random: sim.random,
      send: (to: string, m: SwimMessage<unknown>) => {
        if (!net.isUp(id)) return
        link(id, to)
        link(to, id)
        // A killed node's host refuses the connection: the sender knows in one round trip.
        if (killed.has(to) && net.reachable(id, id)) {
          net.sent.count(`swim-${m.type}`)
          const rtt = net.latency() * 2
          sim.setTimeout(() => { if (net.isUp(id)) swim.refused(to) }, rtt)
          return
        }
        net.send(`swim-${m.type}`, id, to, () => { swims.get(to)?.receive(id, m) })
      },
      onDead: (dead: string) => {
        // What a killed or silenced node concludes (it hears no one) is its side of a cut, not a mistake.
        if (!net.isUp(id) || silenced.has(id)) return
        const v = victimAt.get(dead)
        if (v != null) { if (!detected.has(dead)) detected.set(dead, sim.now - v.at); return }
        if (!cutOff.has(dead) && !cutOff.has(id)) falseDeaths.add(dead)
      },
      onAlive: (alive: string) => {
        const at = joinedAt.get(alive)
        if (at == null) return
        const n = (admittedBy.get(alive) ?? 0) + 1
        admittedBy.set(alive, n)
        if (n === 3) joinTimes.push(sim.now - at)
      }
    })
    swims.set(id, swim)
    return swim
  }

  const ids = Array.from({ length: nodes }, (_, i) => `n${i}`)
  for (const id of ids) create(id)
  // A mesh at rest: every view full of random members, then mixed by the protocol for a while.
  seedAtRest([...swims.values()], sim.random)
  const cutOff = new Set<string>()
  for (const s of swims.values()) s.start()
  await sim.run(sim.now + 10_000)

  // At rest.
  const count = (): number => { let n = 0; for (const [k, v] of Object.entries(net.sent.snapshot().byKind)) if (k.startsWith('swim-')) n += v; return n }
  const restFrom = count()
  const restStart = sim.now
  await sim.run(sim.now + run.restSeconds * 1000)
  const restMessagesPerNodePerSec = (count() - restFrom) / nodes / ((sim.now - restStart) / 1000)

  // Kills and silences, one a second; the victim is gone for good.
  const runFrom = count()
  const runStart = sim.now
  const alive = (): string[] => ids.filter(id => net.isUp(id) && !silenced.has(id))
  const pickVictim = (): string => { const a = alive(); return a[Math.floor(sim.random() * a.length)]! }
  let kills = 0
  let silences = 0
  for (let i = 0; i < run.kills + run.silences; i++) {
    const victim = pickVictim()
    const how = (i % 2 === 0 ? kills < run.kills : silences >= run.silences) ? 'killed' : 'silent'
    if (how === 'killed') kills++; else silences++
    victimAt.set(victim, { at: sim.now, how })
    if (how === 'killed') {
      killed.add(victim)
      net.kill(victim)
      swims.get(victim)!.stop()
      // Peers with an open connection see it drop.
      for (const [peer, last] of links.get(victim) ?? []) {
        if (sim.now - last > LINK_IDLE_MS || !net.isUp(peer)) continue
        sim.setTimeout(() => { swims.get(peer)?.linkDown(victim) }, net.latency())
      }
    } else {
      // Each silenced node alone: it hears no one and no one hears it.
      silenced.add(victim)
      net.partition([victim])
    }
    await sim.run(sim.now + 1_000)
  }
  await sim.run(sim.now + 5_000)

  // Joins: a newcomer knows two live nodes.
  for (let i = 0; i < run.joins; i++) {
    const id = `j${i}`
    ids.push(id)
    const swim = create(id)
    joinedAt.set(id, sim.now)
    const a = alive().filter(x => x !== id)
    swim.start([a[Math.floor(sim.random() * a.length)]!, a[Math.floor(sim.random() * a.length)]!])
    await sim.run(sim.now + 200)
  }
  await sim.run(sim.now + 5_000)

  // A partition: a tenth of the live nodes cut off together for 10 s, then healed.
  const side = alive().filter(() => sim.random() < 0.1)
  for (const id of side) cutOff.add(id)
  net.partition(side)
  await sim.run(sim.now + 10_000)
  net.heal(side)
  const healedAt = sim.now
  const sideSet = new Set(side)
  let partitionHealMs = Infinity
  for (let t = 0; t < 60 && partitionHealMs === Infinity; t++) {
    await sim.run(sim.now + 1_000)
    const seen = new Set<string>()
    for (const [id, s] of swims) {
      if (sideSet.has(id) || !net.isUp(id) || silenced.has(id)) continue
      for (const m of s.members()) if (sideSet.has(m)) seen.add(m)
    }
    if (seen.size === sideSet.size) partitionHealMs = sim.now - healedAt
  }
  const messagesPerNodePerSec = (count() - runFrom) / ids.length / ((sim.now - runStart) / 1000)
  for (const s of swims.values()) s.stop()

  const all = [...detected.values()]
  const of = (how: 'killed' | 'silent'): number[] => [...detected].filter(([id]) => victimAt.get(id)?.how === how).map(([, ms]) => ms)
  const views = [...swims].filter(([id]) => net.isUp(id) && !silenced.has(id)).map(([, s]) => s.members().length).sort((a, b) => a - b)
  return {
    detectionP50Ms: round(summary(all).p50),
    detectionP99Ms: round(summary(all).p99),
    killedDetectionP99Ms: round(summary(of('killed')).p99),
    silentDetectionP99Ms: round(summary(of('silent')).p99),
    undetected: victimAt.size - detected.size,
    falseDeaths: falseDeaths.size,
    restMessagesPerNodePerSec: round(restMessagesPerNodePerSec),
    messagesPerNodePerSec: round(messagesPerNodePerSec),
    joinP99Ms: round(summary(joinTimes).p99),
    partitionHealMs: round(partitionHealMs),
    viewMin: views[0] ?? 0,
    viewMedian: views[Math.floor(views.length / 2)] ?? 0
  }
}

function round (n: number): number {
  return Number.isFinite(n) ? Math.round(n * 100) / 100 : n
}
