import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { prng } from '../helpers/fuzz.js'
import {
  alreadyHostingFilter,
  capabilityFilter,
  cpuFilter,
  describeUnschedulable,
  evaluate,
  excludedFilter,
  feasibilityFilters,
  guardians,
  labelsFilter,
  memoryFilter,
  reconcile,
  rendezvousOwner,
  rendezvousRank,
  sampleCandidates,
  selectBids,
  type NodeOffer,
  type PlacementRequest,
  type Rejection,
  type ReplicaReport
} from '../../src/machines/placement.js'

const Mi = 1024 * 1024
const Gi = 1024 * Mi
const HOUR = 60 * 60_000

function node (over: Partial<NodeOffer> = {}): NodeOffer {
  return {
    peerId: '12D3KooWNodeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAaaa111',
    labels: {},
    capacity: { cpuMillis: 2000, memoryBytes: 4 * Gi },
    allocated: { cpuMillis: 0, memoryBytes: 0 },
    uptimeMs: HOUR,
    hosts: [],
    ...over
  }
}

function request (over: Partial<PlacementRequest> = {}): PlacementRequest {
  return {
    workloadId: 'default/orders',
    resources: { cpuMillis: 100, memoryBytes: 64 * Mi },
    nodeSelector: {},
    exclude: [],
    ...over
  }
}

function scoreOf (n: NodeOffer, req: PlacementRequest): number {
  const e = evaluate(n, req)
  if (!e.ok) throw new Error(`expected ${n.peerId} feasible, got ${e.rejections.map(r => r.reason).join('; ')}`)
  return e.score
}

// ---------------------------------------------------------------- candidates

test('sampleCandidates: asks only nodes whose offers fit, at most count, the same for a seed and spread across seeds', () => {
  const ids = Array.from({ length: 20 }, (_, i) => `12D3KooWNode${String(i).padStart(3, '0')}`)
  const offers = ids.map((peerId, i) => node({ peerId, allocated: { cpuMillis: i < 5 ? 2000 : 0, memoryBytes: 0 } }))
  const a = sampleCandidates(offers, request(), 4, 'tender-1/1')
  assert.is(a.candidates.length, 4)
  assert.is(a.feasible, 15)
  assert.ok(a.candidates.every(c => ids.indexOf(c) >= 5), 'no full node is asked')
  assert.equal(a.rejections.map(r => r.filter), ['cpu', 'cpu', 'cpu', 'cpu', 'cpu'])
  assert.equal(sampleCandidates(offers, request(), 4, 'tender-1/1').candidates, a.candidates)
  const picked = new Set<string>()
  for (let t = 0; t < 50; t++) for (const c of sampleCandidates(offers, request(), 2, `tender-${t}/1`).candidates) picked.add(c)
  assert.ok(picked.size >= 12, `50 tenders spread over ${picked.size} of 15 feasible nodes`)
})

test('sampleCandidates: a node hosting the workload is still asked (only it knows the generation); excluded and unknown peers', () => {
  const hosting = node({ peerId: 'A', hosts: ['default/orders'] })
  assert.equal(sampleCandidates([hosting], request(), 2, 's').candidates, ['A'])
  const r = sampleCandidates([node({ peerId: 'A' })], request({ exclude: ['A', 'U2'] }), 4, 's', { unknown: ['U1', 'U2', 'A'] })
  assert.equal(r.candidates, ['U1'])
  assert.is(r.feasible, 1)
  assert.equal(r.rejections.map(x => `${x.peerId}:${x.filter}`), ['A:excluded'])
})

// ---------------------------------------------------------------- filters

test('cpu filter: reason names need, free and capacity', () => {
  const n = node({ allocated: { cpuMillis: 1950, memoryBytes: 0 } })
  assert.equal(cpuFilter(n, request()), { peerId: n.peerId, filter: 'cpu', reason: 'insufficient cpu: needs 100m, 50m free of 2000m' })
  assert.is(cpuFilter(n, request({ resources: { cpuMillis: 50, memoryBytes: 0 } })), undefined)
})

test('memory filter: reason in binary units', () => {
  const n = node({ capacity: { cpuMillis: 2000, memoryBytes: 16 * Gi }, allocated: { cpuMillis: 0, memoryBytes: 15 * Gi } })
  const r = memoryFilter(n, request({ resources: { cpuMillis: 0, memoryBytes: 8 * Gi } }))
  assert.equal(r, { peerId: n.peerId, filter: 'memory', reason: 'insufficient memory: needs 8Gi, 1Gi free of 16Gi' })
  assert.is(memoryFilter(n, request({ resources: { cpuMillis: 0, memoryBytes: Gi } })), undefined)
})

test('overcommitted node shows 0 free', () => {
  const n = node({ allocated: { cpuMillis: 2500, memoryBytes: 0 } })
  assert.is(cpuFilter(n, request())?.reason, 'insufficient cpu: needs 100m, 0m free of 2000m')
})

test('labels filter: mismatched value and missing label, all in one reason', () => {
  const n = node({ labels: { zone: 'us' } })
  assert.is(labelsFilter(n, request({ nodeSelector: { zone: 'eu' } }))?.reason, 'label zone=eu not matched (node has zone=us)')
  assert.is(labelsFilter(n, request({ nodeSelector: { gpu: 'true' } }))?.reason, 'label gpu missing')
  const both = labelsFilter(n, request({ nodeSelector: { zone: 'eu', gpu: 'true' } }))
  assert.is(both?.filter, 'labels')
  assert.is(both?.reason, 'label zone=eu not matched (node has zone=us); label gpu missing')
  assert.is(labelsFilter(node({ labels: { zone: 'eu', disk: 'ssd' } }), request({ nodeSelector: { zone: 'eu' } })), undefined)
})

test('already-hosting and excluded filters', () => {
  const n = node({ hosts: ['default/orders'] })
  assert.equal(alreadyHostingFilter(n, request()), { peerId: n.peerId, filter: 'already-hosting', reason: 'already hosts a replica of default/orders' })
  assert.is(alreadyHostingFilter(n, request({ workloadId: 'default/other' })), undefined)
  const e = excludedFilter(n, request({ exclude: [n.peerId] }))
  assert.is(e?.filter, 'excluded')
  assert.match(e?.reason ?? '', /^excluded/)
  assert.is(excludedFilter(n, request({ exclude: ['someone-else'] })), undefined)
})

test('evaluate collects every rejection, not only the first', () => {
  const n = node({ labels: { zone: 'us' }, allocated: { cpuMillis: 2000, memoryBytes: 4 * Gi }, hosts: ['default/orders'] })
  const e = evaluate(n, request({ nodeSelector: { zone: 'eu' }, exclude: [n.peerId], requires: ['container'] }))
  assert.is(e.ok, false)
  if (e.ok) return
  assert.equal(e.rejections.map(r => r.filter).sort(), ['already-hosting', 'capability', 'cpu', 'excluded', 'labels', 'memory'])
  assert.is(feasibilityFilters.length, 6)
})

test('container workloads need a node whose engine answers', () => {
  const req = request({ requires: ['container'] })
  assert.equal(capabilityFilter(node({ capabilities: ['container'] }), req), undefined)
  const r = capabilityFilter(node(), req)
  assert.is(r?.filter, 'capability')
  assert.match(r?.reason ?? '', /^no container engine answers on this node/)
  assert.equal(capabilityFilter(node(), request()), undefined, 'actors need no capability')
  assert.match(describeUnschedulable([r!, { ...r!, peerId: 'other-peer-id-1234567' }], 2, 'default/web'), /^0\/2 nodes can host default\/web: 2 × no container engine answers on this node$/)
})


// ---------------------------------------------------------------- scoring

test('score: the emptier node ranks higher', () => {
  const empty = node({ peerId: 'empty' })
  const busy = node({ peerId: 'busy', allocated: { cpuMillis: 1500, memoryBytes: 3 * Gi } })
  assert.ok(scoreOf(empty, request()) > scoreOf(busy, request()))
})

test('score: long-lived peers preferred, saturating at one hour', () => {
  const fresh = node({ uptimeMs: 60_000 })
  const old = node({ uptimeMs: HOUR })
  const older = node({ uptimeMs: 10 * HOUR })
  assert.ok(scoreOf(old, request()) > scoreOf(fresh, request()))
  assert.is(scoreOf(older, request()), scoreOf(old, request()))
})

test('score: a matched selector earns the affinity bonus; scores stay within 0..100', () => {
  const n = node({ labels: { zone: 'eu' } })
  const withSelector = scoreOf(n, request({ nodeSelector: { zone: 'eu' } }))
  const without = scoreOf(n, request())
  assert.ok(withSelector > without)
  const best = scoreOf(node({ labels: { zone: 'eu' }, capacity: { cpuMillis: 1e9, memoryBytes: 1e15 } }), request({ nodeSelector: { zone: 'eu' }, resources: { cpuMillis: 0, memoryBytes: 0 } }))
  assert.is(best, 100)
  const worst = scoreOf(node({ uptimeMs: 0, capacity: { cpuMillis: 100, memoryBytes: 64 * Mi } }), request())
  assert.is(worst, 0)
})

test('evaluate with a custom pipeline: a new policy is one more stage', () => {
  const noArm: typeof feasibilityFilters[number] = n => n.labels.arch === 'arm' ? { peerId: n.peerId, filter: 'labels', reason: 'arm nodes are draining' } : undefined
  const e = evaluate(node({ labels: { arch: 'arm' } }), request(), { filters: [...feasibilityFilters, noArm], rankers: [] })
  assert.equal(e, { ok: false, rejections: [{ peerId: node().peerId, filter: 'labels', reason: 'arm nodes are draining' }] })
})

// ---------------------------------------------------------------- selection

test('selectBids picks the distinct best, best first', () => {
  const bids = [
    { peerId: 'a', score: 10 },
    { peerId: 'b', score: 90 },
    { peerId: 'c', score: 50 },
    { peerId: 'b', score: 20 },
    { peerId: 'd', score: Number.NaN }
  ]
  assert.equal(selectBids(bids, 2, 's'), ['b', 'c'])
  assert.equal(selectBids(bids, 10, 's'), ['b', 'c', 'a'])
  assert.equal(selectBids(bids, 0, 's'), [])
})

test('selectBids: ties are broken by the seed, deterministically', () => {
  const bids = Array.from({ length: 8 }, (_, i) => ({ peerId: `peer-${i}`, score: 42 }))
  const first = selectBids(bids, 8, 'seed-1')
  assert.equal(selectBids([...bids].reverse(), 8, 'seed-1'), first)
  const orders = new Set<string>()
  const winners = new Set<string>()
  for (let i = 0; i < 20; i++) {
    const order = selectBids(bids, 8, `seed-${i}`)
    orders.add(order.join(','))
    winners.add(order[0] as string)
  }
  assert.ok(orders.size > 1, 'different seeds give different tie orders')
  assert.ok(winners.size >= 4, `tie winners spread across peers, got ${[...winners].join(',')}`)
})

test('property: selectBids never duplicates, never exceeds count, always has the top scorer', () => {
  const rand = prng(20240611)
  for (let c = 0; c < 500; c++) {
    const peers = 1 + Math.floor(rand() * 12)
    const bids = Array.from({ length: Math.floor(rand() * 20) }, () => ({
      peerId: `p${Math.floor(rand() * peers)}`,
      score: Math.floor(rand() * 5) * 10
    }))
    const count = Math.floor(rand() * 6)
    const out = selectBids(bids, count, `case-${c}`)
    const distinct = new Set(bids.map(b => b.peerId))
    assert.is(new Set(out).size, out.length, `case ${c}: duplicates in ${out.join(',')}`)
    assert.is(out.length, Math.min(count, distinct.size), `case ${c}: length`)
    if (count > 0 && bids.length > 0) {
      const top = Math.max(...bids.map(b => b.score))
      const best = (p: string): number => Math.max(...bids.filter(b => b.peerId === p).map(b => b.score))
      assert.is(best(out[0] as string), top, `case ${c}: first is a top scorer`)
      for (let i = 1; i < out.length; i++) assert.ok(best(out[i - 1] as string) >= best(out[i] as string), `case ${c}: ordered`)
      const cut = out.length > 0 ? best(out[out.length - 1] as string) : top
      for (const p of distinct) if (!out.includes(p)) assert.ok(best(p) <= cut, `case ${c}: ${p} left out but beats the last pick`)
    }
  }
})

// ---------------------------------------------------------------- rendezvous

test('rendezvousOwner is deterministic and independent of candidate order', () => {
  const cands = ['n1', 'n2', 'n3', 'n4', 'n5']
  for (let i = 0; i < 100; i++) {
    const owner = rendezvousOwner(`msg-${i}`, cands)
    assert.ok(owner != null && cands.includes(owner))
    assert.is(rendezvousOwner(`msg-${i}`, [...cands].reverse()), owner)
    assert.is(rendezvousRank(`msg-${i}`, cands)[0], owner)
  }
  assert.is(rendezvousOwner('k', []), undefined)
})

test('rendezvousOwner spreads 10,000 keys over 5 candidates at 20% ± 3% each', () => {
  const cands = ['12D3KooWA', '12D3KooWB', '12D3KooWC', '12D3KooWD', '12D3KooWE']
  const counts = new Map(cands.map(c => [c, 0]))
  for (let i = 0; i < 10_000; i++) {
    const o = rendezvousOwner(`message-${i}`, cands) as string
    counts.set(o, (counts.get(o) ?? 0) + 1)
  }
  for (const [c, n] of counts) assert.ok(n >= 1700 && n <= 2300, `${c} got ${n} of 10000`)
})

test('property: removing a candidate only moves the keys it owned', () => {
  const rand = prng(7)
  for (let c = 0; c < 50; c++) {
    const size = 2 + Math.floor(rand() * 8)
    const cands = Array.from({ length: size }, (_, i) => `peer-${c}-${i}`)
    const gone = cands[Math.floor(rand() * size)] as string
    const rest = cands.filter(x => x !== gone)
    for (let k = 0; k < 200; k++) {
      const key = `key-${c}-${k}`
      const before = rendezvousOwner(key, cands)
      const after = rendezvousOwner(key, rest)
      if (before !== gone) assert.is(after, before, `key ${key} moved from ${String(before)} though ${gone} left`)
      else assert.ok(after != null && after !== gone)
    }
  }
})

test('guardians: k distinct live peers, stable under churn elsewhere', () => {
  const peers = Array.from({ length: 10 }, (_, i) => `peer-${i}`)
  const g = guardians('default/orders', peers)
  assert.is(g.length, 3)
  assert.is(new Set(g).size, 3)
  assert.equal(guardians('default/orders', [...peers].reverse()), g)
  const outsider = peers.find(p => !g.includes(p)) as string
  assert.equal(guardians('default/orders', peers.filter(p => p !== outsider)), g)
  assert.equal(guardians('default/orders', ['a', 'a', 'b'], 5).sort(), ['a', 'b'])
  assert.equal(guardians('default/orders', peers, 0), [])
})

// ---------------------------------------------------------------- reconcile

const live = new Set(['a', 'b', 'c', 'd'])

function report (peerId: string, replica: number, status: ReplicaReport['status'] = 'running', lastHeartbeat = 1000): ReplicaReport {
  return { peerId, replica, status, lastHeartbeat }
}

test('reconcile: all healthy → nothing to do', () => {
  const r = reconcile({ workloadId: 'default/orders', replicas: 2 }, [report('a', 0), report('b', 1, 'starting')], live, 1500, 1000)
  assert.equal(r, { keep: [{ peerId: 'a', replica: 0 }, { peerId: 'b', replica: 1 }], lost: [], place: 0, missing: [], stop: [] })
})

test('reconcile: dead host, stale heartbeat and failed replica are lost and re-placed', () => {
  const r = reconcile(
    { workloadId: 'default/orders', replicas: 4 },
    [report('gone', 0), report('a', 1, 'running', 100), report('b', 2, 'failed'), report('c', 3)],
    live, 2000, 1000
  )
  assert.equal(r.keep, [{ peerId: 'c', replica: 3 }])
  assert.equal(r.lost, [
    { peerId: 'gone', replica: 0, why: 'host is not live' },
    { peerId: 'a', replica: 1, why: 'no heartbeat for 1.9s (timeout 1s)' },
    { peerId: 'b', replica: 2, why: 'replica failed' }
  ])
  assert.is(r.place, 3)
  assert.equal(r.missing, [0, 1, 2])
  assert.equal(r.stop, [])
})

test('reconcile: a heartbeat exactly at the timeout still counts', () => {
  const r = reconcile({ workloadId: 'w', replicas: 1 }, [report('a', 0, 'running', 1000)], live, 2000, 1000)
  assert.is(r.keep.length, 1)
})

test('reconcile: one ordinal on two peers → stop the extra, running beats starting', () => {
  const r = reconcile({ workloadId: 'default/orders', replicas: 1 }, [report('a', 0, 'starting'), report('b', 0, 'running')], live, 1000, 1000)
  assert.equal(r.keep, [{ peerId: 'b', replica: 0 }])
  assert.equal(r.stop, [{ peerId: 'a', replica: 0 }])
  assert.is(r.place, 0)
})

test('reconcile: duplicate running copies resolve the same way whatever the report order', () => {
  const reports = [report('a', 0), report('b', 0), report('c', 0)]
  const one = reconcile({ workloadId: 'default/orders', replicas: 1 }, reports, live, 1000, 1000)
  const two = reconcile({ workloadId: 'default/orders', replicas: 1 }, [...reports].reverse(), live, 1000, 1000)
  assert.is(one.keep.length, 1)
  assert.is(one.stop.length, 2)
  assert.equal(two.keep, one.keep)
  assert.equal(new Set(two.stop.map(s => s.peerId)), new Set(one.stop.map(s => s.peerId)))
})

test('reconcile: scale down stops ordinals beyond the desired count', () => {
  const r = reconcile({ workloadId: 'w', replicas: 1 }, [report('a', 0), report('b', 1), report('c', 2)], live, 1000, 1000)
  assert.equal(r.keep, [{ peerId: 'a', replica: 0 }])
  assert.equal(r.stop, [{ peerId: 'b', replica: 1 }, { peerId: 'c', replica: 2 }])
  assert.is(r.place, 0)
})

test('reconcile: nothing running → place every replica; repeated reports count once', () => {
  assert.equal(reconcile({ workloadId: 'w', replicas: 3 }, [], live, 0, 1000).missing, [0, 1, 2])
  const r = reconcile({ workloadId: 'w', replicas: 1 }, [report('a', 0), report('a', 0)], live, 1000, 1000)
  assert.equal(r.keep, [{ peerId: 'a', replica: 0 }])
  assert.equal(r.stop, [])
})

test('property: reconcile accounts for every report and covers every ordinal once', () => {
  const rand = prng(99)
  const statuses: Array<ReplicaReport['status']> = ['starting', 'running', 'failed']
  for (let c = 0; c < 300; c++) {
    const replicas = Math.floor(rand() * 5)
    const peers = ['a', 'b', 'c', 'd', 'e', 'f']
    const liveNow = new Set(peers.filter(() => rand() < 0.8))
    const seen = new Set<string>()
    const actual: ReplicaReport[] = []
    for (let i = Math.floor(rand() * 8); i > 0; i--) {
      const r = report(peers[Math.floor(rand() * peers.length)] as string, Math.floor(rand() * 6), statuses[Math.floor(rand() * 3)], Math.floor(rand() * 3000))
      if (seen.has(`${r.peerId}/${r.replica}`)) continue
      seen.add(`${r.peerId}/${r.replica}`)
      actual.push(r)
    }
    const out = reconcile({ workloadId: 'w', replicas }, actual, liveNow, 3000, 1500)
    assert.is(out.keep.length + out.lost.length + out.stop.length, actual.length, `case ${c}: every report lands once`)
    const kept = out.keep.map(k => k.replica)
    assert.is(new Set(kept).size, kept.length, `case ${c}: one keeper per ordinal`)
    assert.equal([...kept, ...out.missing].sort(), Array.from({ length: replicas }, (_, i) => i), `case ${c}: ordinals covered`)
    assert.is(out.place, out.missing.length)
    for (const k of out.keep) assert.ok(liveNow.has(k.peerId), `case ${c}: keeps only live hosts`)
  }
})

// ---------------------------------------------------------------- reporting

test('describeUnschedulable groups reasons, most common first, with one example', () => {
  const big = request({ workloadId: 'default/big', resources: { cpuMillis: 100, memoryBytes: 8 * Gi }, nodeSelector: { zone: 'eu' } })
  const rejections: Rejection[] = []
  const nodes = [
    node({ peerId: '12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1abc', labels: { zone: 'eu' }, capacity: { cpuMillis: 2000, memoryBytes: 4 * Gi }, allocated: { cpuMillis: 0, memoryBytes: 3 * Gi } }),
    node({ peerId: '12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2def', labels: { zone: 'eu' } }),
    node({ peerId: '12D3KooWCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3ghi', labels: { zone: 'us' }, capacity: { cpuMillis: 2000, memoryBytes: 64 * Gi } })
  ]
  for (const n of nodes) {
    const e = evaluate(n, big)
    if (!e.ok) rejections.push(...e.rejections)
  }
  assert.is(
    describeUnschedulable(rejections, 3, 'default/big'),
    '0/3 nodes can host default/big: 2 × insufficient memory (node 12D3…AA1abc: needs 8Gi, 1Gi free of 4Gi, and 1 more), 1 × label zone=eu not matched'
  )
})

test('describeUnschedulable counts silent nodes and splits combined label reasons', () => {
  const rejections: Rejection[] = [{ peerId: 'p1', filter: 'labels', reason: 'label zone=eu not matched (node has zone=us); label gpu missing' }]
  assert.is(describeUnschedulable(rejections, 3), '0/3 nodes can host the workload: 1 × label zone=eu not matched, 1 × label gpu missing, 2 × no answer')
  assert.is(describeUnschedulable([], 0, 'w'), '0/0 nodes can host w: no node was asked')
  assert.is(describeUnschedulable(rejections, 0, 'w'), '0/1 nodes can host w: 1 × label zone=eu not matched, 1 × label gpu missing')
})

test.run()
