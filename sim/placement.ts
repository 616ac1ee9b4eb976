/**
 * Placement at mesh scale, simulated: every node runs the real Tenderer,
 * Bidder, scheduler machine and placement pipeline (src/scheduling,
 * src/machines) and the real record catalog; only the transport and the
 * replicas are simulated. A message costs what it costs on the real mesh:
 * gossip reaches every other node (n - 1 deliveries, the least gossipsub can
 * do), an RPC is one message each way. Every node runs the real failure
 * detector (src/membership/swim.ts) too, and a tenderer samples from the
 * offers its probes carried: a bounded partial view, as old as the probes.
 *
 * Records are gossiped by the real catalog but not delivered to the other
 * simulated catalogs (10,000 copies of every record would make the
 * simulation, not the mesh, the bottleneck): the gossip is counted, and a
 * bidder that never heard a record bids as a real one would before the
 * record's gossip arrived.
 */
import type { NodeOffer } from '../src/machines/placement.js'
import { Swim } from '../src/membership/swim.js'
import { Bidder, type BidderNode } from '../src/scheduling/bidder.js'
import { RecordCatalog, type CatalogMesh } from '../src/scheduling/catalog.js'
import type { LocalCopy } from '../src/scheduling/status.js'
import { Tenderer, type Confirmation } from '../src/scheduling/tenderer.js'
import type { BidRequest } from '../src/protocol/messages.js'
import { silentLogger } from '../src/transport/logger.js'
import type { Resources, WorkloadSpec } from '../src/workloads/types.js'
import { summary } from '../bench/lib.js'
import { spec } from '../test/scheduling/fakes.js'
import { PROFILES, SimNetwork, Simulation } from './engine.js'
import { seedAtRest } from './membership.js'

/** Tender window and confirmation timeout as a node runs them by default (src/node/workload-runtime.ts). */
const TENDER_WINDOW_MS = 250
const CONFIRM_TIMEOUT_MS = 20_000

export interface SimNode {
  id: string
  tenderer: Tenderer
  bidder: Bidder
  /** The node's failure detector: its partial view, and the offers its probes carried. */
  swim: Swim<NodeOffer>
  /** Replicas started here, by workload id. */
  copies: Map<string, LocalCopy[]>
}

export interface PlacementMeshOptions {
  sim: Simulation
  net: SimNetwork
  nodes: number
  capacity: Resources
  /** How long a simulated replica takes from award to running (median, p99 in ms). */
  startMs: { median: number, p99: number }
}

/** A mesh of simulated nodes, each with the real placement code. */
export class PlacementMesh {
  readonly nodes: SimNode[] = []
  private readonly byId = new Map<string, SimNode>()
  private ids = 0

  constructor (private readonly o: PlacementMeshOptions) {
    for (let i = 0; i < o.nodes; i++) this.add(`node-${String(i).padStart(5, '0')}`)
    seedAtRest(this.nodes.map(n => n.swim), o.sim.random)
    for (const node of this.nodes) node.swim.start()
  }

  get(id: string): SimNode | undefined { return this.byId.get(id) }

  live (): SimNode[] { return this.nodes.filter(n => this.o.net.isUp(n.id)) }

  private add (id: string): SimNode {
    const { sim, net } = this.o
    const copies = new Map<string, LocalCopy[]>()
    const catalogMesh: CatalogMesh = {
      gossip: async () => { net.sent.count('record', this.nodes.length - 1) },
      putRecord: async () => { net.sent.count('record-put') },
      getRecord: async () => { throw new Error('the simulation keeps no DHT records') }
    }
    const catalog = new RecordCatalog({ mesh: catalogMesh, log: silentLogger, now: () => sim.now })
    const allocated = (): Resources => {
      let cpuMillis = 0
      let memoryBytes = 0
      for (const list of copies.values()) for (const c of list) { cpuMillis += c.spec.resources.cpuMillis; memoryBytes += c.spec.resources.memoryBytes }
      return { cpuMillis, memoryBytes }
    }
    const hostNode: BidderNode = {
      copies: workloadId => copies.get(workloadId) ?? [],
      hosted: () => [...copies.keys()],
      allocated,
      capabilities: () => ['code', 'container'],
      isSorting: () => false,
      start: async (spec: WorkloadSpec, replica: number, epoch: number) => {
        await new Promise<void>(resolve => { sim.setTimeout(() => { resolve() }, sim.logNormal(this.o.startMs.median, this.o.startMs.p99)) })
        if (!net.isUp(id)) throw new Error('host went down while starting')
        copies.set(spec.id, [...copies.get(spec.id) ?? [], { kind: 'replica', spec, replica, epoch, status: 'running', handled: 0, failures: 0 }])
      },
      prefetch: () => {}
    }
    let node: SimNode
    const tenderer = new Tenderer({
      selfId: id,
      log: silentLogger,
      catalog,
      sendTender: async (peerId, tender) => {
        if (!net.send('tender', id, peerId, () => { void this.byId.get(peerId)?.bidder.bidOn(tender) })) throw new Error(`${peerId} is unreachable`)
      },
      sendAward: async (peerId, award) => {
        if (!net.send('award', id, peerId, () => { void this.byId.get(peerId)?.bidder.onAward(award) })) throw new Error(`${peerId} is unreachable`)
      },
      // This node's own offer, and those its failure detector's probes carried (a bounded partial view).
      offers: () => [bidder.offer(), ...swim.offers().map(o => o.offer)],
      unknownPeers: () => { const fresh = new Set(swim.offers().map(o => o.id)); return swim.members().filter(m => !fresh.has(m)) },
      bidOn: tender => { void node.bidder.bidOn(tender) },
      onAward: award => { void node.bidder.onAward(award) },
      announce: () => {},
      tenderWindowMs: TENDER_WINDOW_MS,
      confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
      now: () => sim.now,
      clock: sim,
      newId: () => `${id}-t${++this.ids}`
    })
    const bidder = new Bidder({
      selfId: id,
      log: silentLogger,
      labels: {},
      capacity: this.o.capacity,
      catalog,
      node: hostNode,
      admissible: async () => undefined,
      answer: async (tendererId: string, reply: BidRequest) => {
        if (tendererId === id) { tenderer.routeBid(reply); return }
        if (!net.send('bid', id, tendererId, () => { this.byId.get(tendererId)?.tenderer.routeBid(reply) })) throw new Error(`${tendererId} is unreachable`)
      },
      confirm: async (tendererId: string, m: Confirmation) => {
        if (tendererId === id) { tenderer.onConfirmation(m); return }
        if (!net.send('confirm', id, tendererId, () => { this.byId.get(tendererId)?.tenderer.onConfirmation(m) })) throw new Error(`${tendererId} is unreachable`)
      },
      announce: () => {},
      tenderWindowMs: TENDER_WINDOW_MS,
      now: () => sim.now,
      startedAt: sim.now - 3_600_000
    })
    const swim: Swim<NodeOffer> = new Swim<NodeOffer>({
      selfId: id,
      clock: sim,
      now: () => sim.now,
      random: sim.random,
      offer: () => bidder.offer(),
      send: (to, m) => { net.send(`swim-${m.type}`, id, to, () => { this.byId.get(to)?.swim.receive(id, m) }) }
    })
    node = { id, tenderer, bidder, copies, swim }
    this.nodes.push(node)
    this.byId.set(id, node)
    return node
  }

  /** Replicas of a workload running anywhere, and how many ordinals have more than one. */
  replicasOf (workloadId: string): { running: number, duplicateOrdinals: number } {
    const ordinals = new Map<number, number>()
    for (const n of this.nodes) {
      if (!this.o.net.isUp(n.id)) continue
      for (const c of n.copies.get(workloadId) ?? []) ordinals.set(c.replica, (ordinals.get(c.replica) ?? 0) + 1)
    }
    let running = 0
    let duplicateOrdinals = 0
    for (const count of ordinals.values()) { running += count; if (count > 1) duplicateOrdinals++ }
    return { running, duplicateOrdinals }
  }
}

/** What one simulated mesh size measured (bench/results/sim-latest.json, one entry of `sizes`). */
export interface SizeFigures {
  nodes: number
  placements: number
  messagesPerPlacement: number
  messagesByKind: Record<string, number>
  recordGossipsPerPlacement: number
  placementP50Ms: number
  placementP99Ms: number
  duplicatePlacements: number
  lostPlacements: number
  unschedulable: number
  simulatedSeconds: number
}

const PLACEMENT_KINDS = new Set(['tender', 'bid', 'award', 'confirm'])
/** The detectors run this long before the first apply, so the offers in each view come from its probes. */
const WARM_UP_MS = 15_000

/** The i-th simulated workload: the scheduling tests' stateless spec (100m CPU, 64 MiB). */
function workload (i: number, replicas: number): WorkloadSpec {
  return spec({ name: `w${i}`, namespace: 'sim', topics: [`t${i}`], replicas, source: 'sim' })
}

/** Applies `placements` workloads at `rate` a second, each at a random node, on a mesh of `nodes`, and measures the conversation. */
export async function simulateSize (nodes: number, o: { placements: number, rate: number, replicas: number, profile: string, seed: number }): Promise<{ figures: SizeFigures, wallMs: number }> {
  const t0 = performance.now()
  const sim = new Simulation(o.seed * 1_000_003 + nodes)
  const profile = PROFILES[o.profile]
  if (profile == null) throw new Error(`unknown network profile ${o.profile}: one of ${Object.keys(PROFILES).join(', ')}`)
  const net = new SimNetwork(sim, profile)
  const mesh = new PlacementMesh({ sim, net, nodes, capacity: { cpuMillis: 4_000, memoryBytes: 8 * 2 ** 30 }, startMs: { median: 30, p99: 150 } })
  const latencies: number[] = []
  let unschedulable = 0
  let lost = 0
  const specs: WorkloadSpec[] = []
  for (let i = 0; i < o.placements; i++) {
    const s = workload(i, o.replicas)
    specs.push(s)
    const at = WARM_UP_MS + (i / o.rate) * 1000
    sim.setTimeout(() => {
      const tenderer = mesh.nodes[Math.floor(sim.random() * mesh.nodes.length)]!.tenderer
      const start = sim.now
      tenderer.apply(s, undefined).placed.then(
        () => { latencies.push(sim.now - start); settled++ },
        (err: unknown) => { settled++; if (/nodes can host/.test(String(err))) unschedulable++; else lost++ }
      )
    }, at)
  }
  // The detectors probe for ever: run until every apply settled (or a generous bound), then stop them.
  let settled = 0
  const bound = WARM_UP_MS + (o.placements / o.rate) * 1000 + 120_000
  while (settled < o.placements && sim.now < bound) await sim.run(sim.now + 1_000)
  for (const n of mesh.nodes) n.swim.stop()
  await sim.run()
  let duplicates = 0
  for (const s of specs) {
    const r = mesh.replicasOf(s.id)
    duplicates += r.duplicateOrdinals + Math.max(0, r.running - s.replicas)
  }
  const byKind = net.sent.snapshot().byKind
  const placementMessages = Object.entries(byKind).filter(([k]) => PLACEMENT_KINDS.has(k)).reduce((a, [, v]) => a + v, 0)
  const placed = latencies.length
  const lat = summary(latencies)
  return {
    figures: {
      nodes,
      placements: placed,
      messagesPerPlacement: round(placementMessages / Math.max(1, o.placements)),
      messagesByKind: byKind,
      recordGossipsPerPlacement: round((byKind.record ?? 0) / Math.max(1, o.placements)),
      placementP50Ms: round(lat.p50),
      placementP99Ms: round(lat.p99),
      duplicatePlacements: duplicates,
      lostPlacements: lost + (o.placements - placed - unschedulable - lost),
      unschedulable,
      simulatedSeconds: round(sim.now / 1000)
    },
    wallMs: performance.now() - t0
  }
}

function round (n: number): number {
  return Number.isFinite(n) ? Math.round(n * 100) / 100 : n
}
