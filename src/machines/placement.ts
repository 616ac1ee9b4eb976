import { compareCodeUnits } from '../compare.js'
import { formatMemoryApprox } from '../workloads/quantities.js'
import type { Resources } from '../workloads/types.js'

/**
 * Placement as pure data, after Nomad's scheduler: a chain of small
 * feasibility filters that each return a reason when a node cannot take a
 * replica → rankers that score the feasible ones → a seeded selector. A new
 * policy is one new stage in `feasibilityFilters` or `rankers`.
 *
 * Also here: rendezvous (highest-random-weight) hashing for queue-group
 * delivery and guardian choice, and `reconcile`, the pure diff between the
 * replicas a workload wants and the ones the mesh reports.
 *
 * No I/O, no clock, no `Math.random`: time and seeds are arguments.
 */

/** What a node knows about itself when it answers a tender. */
export interface NodeOffer {
  peerId: string
  labels: Record<string, string>
  capacity: Resources
  /** Everything already committed here, including short-lived reservations for open bids. */
  allocated: Resources
  uptimeMs: number
  /** Ids of the workloads with a replica on this node. */
  hosts: string[]
  /** What it can run beyond actors: `container` while its engine answers. */
  capabilities?: string[]
}

/** What a tender asks of one node. */
export interface PlacementRequest {
  workloadId: string
  resources: Resources
  nodeSelector: Record<string, string>
  /** Peer ids that must not get a replica: already hosting, failed before. */
  exclude: string[]
  /** Capabilities a node needs: `container` for container workloads. */
  requires?: string[]
}

/** Every feasibility stage's name, as a rejection carries it (and a decline on the wire). */
export const FILTER_NAMES = ['cpu', 'memory', 'labels', 'already-hosting', 'excluded', 'capability', 'policy', 'unreachable'] as const
export type FilterName = typeof FILTER_NAMES[number]

/** Why one node cannot host a replica; data, not an exception. */
export interface Rejection {
  peerId: string
  filter: FilterName
  /** One human line: `insufficient cpu: needs 100m, 50m free of 2000m`. */
  reason: string
}

/** One feasibility stage: a rejection when the node cannot take the request. */
export type FeasibilityFilter = (node: NodeOffer, req: PlacementRequest) => Rejection | undefined

/** One ranking stage: a preference in 0..1 (higher is better), weighted into the score. */
export interface Ranker {
  name: string
  weight: number
  rank: (node: NodeOffer, req: PlacementRequest) => number
}

export interface Pipeline {
  filters: readonly FeasibilityFilter[]
  rankers: readonly Ranker[]
}

export type Evaluation =
  | { ok: true, score: number }
  | { ok: false, rejections: Rejection[] }

const UPTIME_SATURATION_MS = 60 * 60_000

// ---------------------------------------------------------------- filters

export function excludedFilter (node: NodeOffer, req: PlacementRequest): Rejection | undefined {
  if (!req.exclude.includes(node.peerId)) return undefined
  return { peerId: node.peerId, filter: 'excluded', reason: 'excluded by the tenderer (already hosting or failed before)' }
}

export function alreadyHostingFilter (node: NodeOffer, req: PlacementRequest): Rejection | undefined {
  if (!node.hosts.includes(req.workloadId)) return undefined
  return { peerId: node.peerId, filter: 'already-hosting', reason: `already hosts a replica of ${req.workloadId}` }
}

/** A filter that rejects a node whose free amount of one resource is less than requested. */
function resourceFilter (filter: 'cpu' | 'memory', key: keyof Resources, format: (n: number) => string): FeasibilityFilter {
  return (node, req) => {
    const free = node.capacity[key] - node.allocated[key]
    if (req.resources[key] <= free) return undefined
    return {
      peerId: node.peerId,
      filter,
      reason: `insufficient ${filter}: needs ${format(req.resources[key])}, ${format(Math.max(0, free))} free of ${format(node.capacity[key])}`
    }
  }
}

export const cpuFilter = resourceFilter('cpu', 'cpuMillis', millis => `${Math.round(millis)}m`)
export const memoryFilter = resourceFilter('memory', 'memoryBytes', formatMemoryApprox)

/** Every selector label must be present with the same value; all mismatches go in one reason, `; `-separated. */
export function labelsFilter (node: NodeOffer, req: PlacementRequest): Rejection | undefined {
  const problems: string[] = []
  for (const [key, want] of Object.entries(req.nodeSelector)) {
    if (!Object.hasOwn(node.labels, key)) problems.push(`label ${key} missing`)
    else if (node.labels[key] !== want) problems.push(`label ${key}=${want} not matched (node has ${key}=${String(node.labels[key])})`)
  }
  if (problems.length === 0) return undefined
  return { peerId: node.peerId, filter: 'labels', reason: problems.join('; ') }
}

const CAPABILITY_MISSING: Record<string, string> = {
  container: 'no container engine answers on this node (start it with --container-socket or DOCKER_HOST)',
  code: 'this node cannot confine workload code and was not started with --allow-unconfined'
}

/** A node can only take what it has the means to run: containers need an engine that answers, workload code (actors, machines) a sandbox. */
export function capabilityFilter (node: NodeOffer, req: PlacementRequest): Rejection | undefined {
  const missing = (req.requires ?? []).filter(c => !(node.capabilities ?? []).includes(c))
  if (missing.length === 0) return undefined
  return { peerId: node.peerId, filter: 'capability', reason: missing.map(c => CAPABILITY_MISSING[c] ?? `capability ${c} missing`).join('; ') }
}

export const feasibilityFilters: readonly FeasibilityFilter[] = [
  excludedFilter,
  capabilityFilter,
  alreadyHostingFilter,
  cpuFilter,
  memoryFilter,
  labelsFilter
]

// ---------------------------------------------------------------- rankers

/** Least-allocated, like Kubernetes: the share of each resource left free after placement, averaged. */
export function spreadRank (node: NodeOffer, req: PlacementRequest): number {
  const share = (capacity: number, allocated: number, wanted: number): number =>
    capacity > 0 ? clamp01((capacity - allocated - wanted) / capacity) : 0
  const cpu = share(node.capacity.cpuMillis, node.allocated.cpuMillis, req.resources.cpuMillis)
  const memory = share(node.capacity.memoryBytes, node.allocated.memoryBytes, req.resources.memoryBytes)
  return (cpu + memory) / 2
}

/** Long-lived peers are preferred: linear in uptime, saturating at one hour. */
export function uptimeRank (node: NodeOffer): number {
  return clamp01(node.uptimeMs / UPTIME_SATURATION_MS)
}

/**
 * The share of selector labels the node carries. A hard selector leaves only
 * fully matching nodes feasible, so within one tender this is a bonus every
 * bidder gets alike; the stage is where softer affinities slot in.
 */
export function affinityRank (node: NodeOffer, req: PlacementRequest): number {
  const entries = Object.entries(req.nodeSelector)
  if (entries.length === 0) return 0
  return entries.filter(([k, v]) => node.labels[k] === v).length / entries.length
}

/** Weights add up to 1, so scores run 0..100. */
export const rankers: readonly Ranker[] = [
  { name: 'spread', weight: 0.6, rank: spreadRank },
  { name: 'uptime', weight: 0.25, rank: uptimeRank },
  { name: 'affinity', weight: 0.15, rank: affinityRank }
]

export const defaultPipeline: Pipeline = { filters: feasibilityFilters, rankers }

/**
 * Runs every filter (collecting all reasons, not just the first), then, when
 * none objects, scores the node 0..100 (two decimals): the weighted mean of
 * the rankers' preferences.
 */
export function evaluate (node: NodeOffer, req: PlacementRequest, pipeline: Pipeline = defaultPipeline): Evaluation {
  const rejections: Rejection[] = []
  for (const filter of pipeline.filters) {
    const r = filter(node, req)
    if (r != null) rejections.push(r)
  }
  if (rejections.length > 0) return { ok: false, rejections }
  let total = 0
  let weights = 0
  for (const ranker of pipeline.rankers) {
    const w = Math.max(0, ranker.weight)
    const r = ranker.rank(node, req)
    total += w * (Number.isFinite(r) ? clamp01(r) : 0)
    weights += w
  }
  const score = weights > 0 ? 100 * total / weights : 0
  return { ok: true, score: Math.round(score * 100) / 100 }
}

// ---------------------------------------------------------------- selection

/**
 * The `count` best distinct peers, best first. A peer that bid twice counts
 * with its best score; non-finite scores are ignored. Ties are broken by a
 * hash of (seed, peerId): the same seed always gives the same order, and no
 * peer id is favoured across seeds.
 */
export function selectBids (bids: Array<{ peerId: string, score: number }>, count: number, seed: string): string[] {
  const n = Math.floor(count)
  if (!(n > 0)) return []
  const best = new Map<string, number>()
  for (const { peerId, score } of bids) {
    if (!Number.isFinite(score)) continue
    const prev = best.get(peerId)
    if (prev == null || score > prev) best.set(peerId, score)
  }
  return [...best]
    .map(([peerId, score]) => ({ peerId, score, tie: hash53(seed, peerId) }))
    .sort((a, b) => b.score - a.score || b.tie - a.tie || compareCodeUnits(a.peerId, b.peerId))
    .slice(0, n)
    .map(b => b.peerId)
}

/**
 * How many nodes a tender asks per missing replica: Sparrow's batch sampling
 * (probe d·m nodes for m tasks), with d = 2. Two choices already take the
 * expected worst load from log n / log log n to log log n; more only adds
 * messages.
 */
export const PROBES_PER_REPLICA = 2

/** Tenders in all for one placement, widenings included (also the largest `attempt` a tender on the wire may carry). */
export const MAX_TENDER_ATTEMPTS = 100

/**
 * The filters a tenderer runs on others' offers: all but `already-hosting`.
 * Whether a node's replica is of the generation being placed (a re-applied
 * spec replaces the old one node by node) only the node itself can tell; it
 * declines when it does host the workload.
 */
export const offerPipeline: Pipeline = { filters: feasibilityFilters.filter(f => f !== alreadyHostingFilter), rankers }

export interface CandidateSample {
  /** Whom to ask, at most `count`: a seeded random choice among the feasible. */
  candidates: string[]
  /** How many nodes looked feasible (known offers that pass every filter, and nodes known by connection only). */
  feasible: number
  /** Why each known node that did not pass could not host the request, as its last offer says. */
  rejections: Rejection[]
}

/**
 * The nodes a tender asks. Each known offer (this node's own, and each live
 * peer's from its last heartbeat) goes through the same filters a bidder runs
 * on itself, so a node its offer shows full, mislabelled or already hosting is
 * not asked. Among the rest, `count` are drawn by rendezvous rank on `seed`:
 * random, so tenderers with the same stale view do not all pile onto the one
 * node that looked emptiest, and deterministic for a seed. Nodes known only by
 * a connection (no heartbeat heard yet: a node that just joined) count as
 * feasible; they decide for themselves when asked. The bidder's own check
 * on its current state decides in the end: an offer only picks whom to ask.
 */
export function sampleCandidates (offers: NodeOffer[], req: PlacementRequest, count: number, seed: string, { unknown = [], pipeline = offerPipeline }: { unknown?: string[], pipeline?: Pipeline } = {}): CandidateSample {
  const feasible = new Set<string>()
  const rejections: Rejection[] = []
  for (const offer of offers) {
    const e = evaluate(offer, req, pipeline)
    if (e.ok) feasible.add(offer.peerId)
    else rejections.push(...e.rejections)
  }
  const known = new Set(offers.map(o => o.peerId))
  for (const peerId of unknown) if (!known.has(peerId) && !req.exclude.includes(peerId)) feasible.add(peerId)
  const candidates = rendezvousRank(seed, [...feasible]).slice(0, Math.max(0, Math.floor(count)))
  return { candidates, feasible: feasible.size, rejections }
}

/**
 * Highest-random-weight hashing: the candidate whose hash(key, candidate) is
 * highest. Deterministic, spreads keys evenly, and removing a candidate only
 * moves the keys it owned.
 */
export function rendezvousOwner (key: string, candidates: string[]): string | undefined {
  let owner: string | undefined
  let top = -1
  for (const c of candidates) {
    const w = hash53(key, c)
    if (w > top || (w === top && owner != null && compareCodeUnits(c, owner) < 0)) {
      owner = c
      top = w
    }
  }
  return owner
}

/** Distinct candidates ordered by rendezvous weight for `key`, highest first. */
export function rendezvousRank (key: string, candidates: string[]): string[] {
  return [...new Set(candidates)]
    .map(c => ({ c, w: hash53(key, c) }))
    .sort((a, b) => b.w - a.w || compareCodeUnits(a.c, b.c))
    .map(x => x.c)
}

/**
 * The `k` live peers that look after a workload's record. This stands in for
 * "the k closest by XOR distance on hashes" of a Kademlia DHT: rendezvous
 * ranking gives the same properties (every peer computes the same set from the
 * same membership, and churn only moves the slots of peers that came or went)
 * without needing the peers' DHT keys.
 */
export function guardians (workloadId: string, livePeers: string[], k = 3): string[] {
  return rendezvousRank(workloadId, livePeers).slice(0, Math.max(0, Math.floor(k)))
}

// ---------------------------------------------------------------- reconciliation

export interface ReplicaReport {
  peerId: string
  replica: number
  status: 'starting' | 'running' | 'failed'
  /** When the replica's last heartbeat was seen, in the same clock as `now`. */
  lastHeartbeat: number
}

export interface ReconcileResult {
  /** One healthy replica per wanted ordinal. */
  keep: Array<{ peerId: string, replica: number }>
  /** Replicas that no longer count: host gone, heartbeat stale or replica failed. */
  lost: Array<{ peerId: string, replica: number, why: string }>
  /** How many replicas to tender for. */
  place: number
  /** The ordinals to tender for, ascending (`place` of them). */
  missing: number[]
  /** Healthy surplus: duplicates of a kept ordinal, or ordinals beyond `desired.replicas`. */
  stop: Array<{ peerId: string, replica: number }>
}

/**
 * The pure diff between the replicas a workload wants and the reports the
 * mesh has. A replica is lost when its host is not live, its status is
 * `failed`, or its heartbeat is older than `heartbeatTimeoutMs`. Of several
 * healthy copies of one ordinal, a running one beats a starting one, and among
 * equals the rendezvous owner of `<workloadId>#<ordinal>` stays, so every
 * node computing this diff stops the same copies.
 */
export function reconcile (
  desired: { workloadId: string, replicas: number },
  actual: ReplicaReport[],
  livePeers: Set<string>,
  now: number,
  heartbeatTimeoutMs: number
): ReconcileResult {
  const wanted = Math.max(0, Math.floor(desired.replicas))
  const lost: ReconcileResult['lost'] = []
  const stop: ReconcileResult['stop'] = []
  const healthy = new Map<number, ReplicaReport[]>()
  const seen = new Set<string>()
  for (const r of actual) {
    const id = `${r.peerId}\u0000${r.replica}`
    if (seen.has(id)) continue
    seen.add(id)
    const age = now - r.lastHeartbeat
    if (!livePeers.has(r.peerId)) lost.push({ peerId: r.peerId, replica: r.replica, why: 'host is not live' })
    else if (r.status === 'failed') lost.push({ peerId: r.peerId, replica: r.replica, why: 'replica failed' })
    else if (age > heartbeatTimeoutMs) lost.push({ peerId: r.peerId, replica: r.replica, why: `no heartbeat for ${formatDuration(age)} (timeout ${formatDuration(heartbeatTimeoutMs)})` })
    else if (!Number.isInteger(r.replica) || r.replica < 0 || r.replica >= wanted) stop.push({ peerId: r.peerId, replica: r.replica })
    else healthy.set(r.replica, [...healthy.get(r.replica) ?? [], r])
  }
  const keep: ReconcileResult['keep'] = []
  const missing: number[] = []
  for (let ordinal = 0; ordinal < wanted; ordinal++) {
    const copies = healthy.get(ordinal) ?? []
    if (copies.length === 0) {
      missing.push(ordinal)
      continue
    }
    const running = copies.filter(c => c.status === 'running')
    const pool = (running.length > 0 ? running : copies).map(c => c.peerId)
    const keeper = rendezvousOwner(`${desired.workloadId}#${ordinal}`, pool)
    for (const c of copies) {
      if (c.peerId === keeper) keep.push({ peerId: c.peerId, replica: ordinal })
      else stop.push({ peerId: c.peerId, replica: ordinal })
    }
  }
  return { keep, lost, place: missing.length, missing, stop }
}

// ---------------------------------------------------------------- reporting

/**
 * One line saying why no node could host a workload, grouped by reason, most
 * common first: `0/3 nodes can host default/big: 2 × insufficient memory
 * (node 12D3…7f3abc: needs 8Gi, 1Gi free of 4Gi, and 1 more), 1 × label
 * zone=eu not matched`. A reason's detail after `: ` (node-specific numbers)
 * is shown for the first node of its group; a parenthesised explanation is
 * left out of the summary. Nodes that were asked but gave no reason are
 * counted as `no answer`.
 */
export function describeUnschedulable (rejections: Rejection[], nodesAsked: number, workloadId?: string): string {
  const groups = new Map<string, { count: number, example?: { peerId: string, detail: string } }>()
  const peers = new Set<string>()
  for (const r of rejections) {
    peers.add(r.peerId)
    for (const part of r.reason.split('; ')) {
      const { headline, detail } = splitReason(part)
      const g = groups.get(headline) ?? { count: 0 }
      g.count++
      if (g.example == null && detail != null) g.example = { peerId: r.peerId, detail }
      groups.set(headline, g)
    }
  }
  const asked = Math.max(Math.floor(nodesAsked), peers.size)
  const parts = [...groups]
    .sort((a, b) => b[1].count - a[1].count)
    .map(([headline, g]) => {
      if (g.example == null) return `${g.count} × ${headline}`
      const more = g.count > 1 ? `, and ${g.count - 1} more` : ''
      return `${g.count} × ${headline} (node ${shortPeerId(g.example.peerId)}: ${g.example.detail}${more})`
    })
  const silent = asked - peers.size
  if (silent > 0) parts.push(`${silent} × no answer`)
  const what = workloadId ?? 'the workload'
  return `0/${asked} nodes can host ${what}: ${parts.length > 0 ? parts.join(', ') : 'no node was asked'}`
}

/** `12D3KooWAbc…` → `12D3…7f3abc`: enough to tell peers apart in one line. */
export function shortPeerId (peerId: string): string {
  return peerId.length > 12 ? `${peerId.slice(0, 4)}…${peerId.slice(-6)}` : peerId
}

// ---------------------------------------------------------------- hashing

/**
 * A 53-bit hash of the parts (safe as a JS number), from two FNV-1a 32-bit
 * lanes over the UTF-16 code units, each finished with the murmur3 avalanche
 * so nearby inputs land far apart. Parts are length-prefixed, so
 * ('ab', 'c') and ('a', 'bc') differ. Not cryptographic.
 */
export function hash53 (...parts: string[]): number {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ 0x5bd1e995
  const feed = (byte: number): void => {
    a = Math.imul(a ^ byte, 0x01000193)
    b = Math.imul(b ^ byte, 0x01000193) ^ (a >>> 15)
  }
  for (const part of parts) {
    const n = part.length
    feed(n & 0xff)
    feed((n >>> 8) & 0xff)
    feed((n >>> 16) & 0xff)
    for (let i = 0; i < n; i++) {
      const c = part.charCodeAt(i)
      feed(c & 0xff)
      feed(c >>> 8)
    }
  }
  const hi = fmix32(a) & 0x1fffff
  const lo = fmix32(b ^ Math.imul(a, 0x9e3779b1))
  return hi * 0x100000000 + lo
}

function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

function clamp01 (x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x
}

function splitReason (reason: string): { headline: string, detail?: string } {
  const colon = reason.indexOf(': ')
  const paren = reason.indexOf(' (')
  if (colon >= 0 && (paren < 0 || colon < paren)) return { headline: reason.slice(0, colon), detail: reason.slice(colon + 2) }
  if (paren >= 0) return { headline: reason.slice(0, paren) }
  return { headline: reason }
}

function formatDuration (ms: number): string {
  return ms >= 1000 ? `${Number((ms / 1000).toFixed(1))}s` : `${Math.round(ms)}ms`
}
