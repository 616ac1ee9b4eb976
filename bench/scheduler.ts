/**
 * Scheduler and dispatch on a 5-node local mesh (separate node processes):
 *  - apply → running latency (p50/p99), one workload at a time;
 *  - placements per second, 100 workloads submitted at once, beside raw
 *    signed RPC round trips per second to the same nodes at the same
 *    concurrency (a member in this process calls each node's bid protocol
 *    with a sealed request it opens and ignores, and opens the sealed reply);
 *  - topic event → handler throughput beside raw gossipsub publish → receive
 *    throughput on the same mesh, from the same publisher (ratio printed).
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { loadApplyFile } from '../src/bundle/bundler.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { issueCredential, keyId } from '../src/policy/credentials.js'
import { Trust } from '../src/policy/trust.js'
import { presentingGate } from '../src/transport/admission.js'
import { MeshNode } from '../src/transport/mesh-node.js'
import { BID_PROTOCOL } from '../src/protocol/messages.js'
import { callRpc, sealingGuard, setRpcGuard } from '../src/transport/rpc.js'
import { startMesh, testTrust, waitUntil, type NodeProcess } from '../test/helpers/processes.js'
import { concurrently, fmt, summary, writeResult } from './lib.js'

const SEQUENTIAL_APPLIES = 40
const CONCURRENT_APPLIES = 100
const EVENTS = 5000

async function applyAs (node: NodeProcess, bundle: Awaited<ReturnType<typeof loadApplyFile>>, name: string, topic = 'bench'): Promise<WorkloadStatus> {
  const spec = { ...bundle.spec, name, id: `default/${name}`, topics: [topic], createdAt: Date.now() }
  return await node.api.request<WorkloadStatus>('/v1/workloads', { method: 'POST', body: { spec, artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 60_000 })
}

export async function run (): Promise<void> {
  const nodes = await startMesh(5, (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(a => a !== ''))
  const extra: MeshNode[] = []
  try {
    const bundle = await loadApplyFile('bench/workloads/sink.ts')
    const remove = async (names: string[]): Promise<void> => {
      for (const name of names) await nodes[0]!.api.request(`/v1/workloads/default/${name}`, { method: 'DELETE', timeoutMs: 10_000 })
    }

    // 1. raw gossipsub vs. BeeMesh dispatch, same publisher, on a quiet mesh
    const { rawPerSecond, dispatchPerSecond, ratio } = await throughput(bundle)
    await remove(['sink'])
    await Promise.all(extra.splice(0).map(async n => await n.stop()))

    // 2. apply → running, one at a time, tenderers round-robin
    await applyAs(nodes[0]!, bundle, 'warmup')
    const latencies: number[] = []
    for (let i = 0; i < SEQUENTIAL_APPLIES; i++) {
      const t = performance.now()
      const s = await applyAs(nodes[i % nodes.length]!, bundle, `seq-${i}`, `seq-${i}`)
      latencies.push(performance.now() - t)
      if (s.ready !== 1) throw new Error(`seq-${i} not running: ${JSON.stringify(s)}`)
    }
    const apply = summary(latencies)
    await remove(['warmup', ...latencies.map((_, i) => `seq-${i}`)])
    process.stdout.write(`apply → running (${apply.n} sequential): p50 ${fmt(apply.p50)} ms, p99 ${fmt(apply.p99)} ms, max ${fmt(apply.max)} ms\n`)

    // 3. placements per second, all at once, beside raw signed RPCs on the same quiet mesh just before
    const { perSecond: rawRpcPerSecond, failed: rawRpcFailed, reasons: rawRpcReasons } = await rawRpcs()
    process.stdout.write(`raw signed RPCs, ${CONCURRENT_APPLIES} at a time to the same nodes: ${fmt(rawRpcPerSecond, 0)} /s answered, ${rawRpcFailed} refused${rawRpcFailed > 0 ? ` (${[...rawRpcReasons].join('; ')})` : ''}\n`)
    const t0 = performance.now()
    const concurrentMs = await Promise.all(Array.from({ length: CONCURRENT_APPLIES }, async (_, i) => {
      await applyAs(nodes[i % nodes.length]!, bundle, `par-${i}`, `par-${i}`)
      return performance.now() - t0
    }))
    const placementSeconds = (performance.now() - t0) / 1000
    const placementsPerSecond = CONCURRENT_APPLIES / placementSeconds
    const concurrent = summary(concurrentMs)
    process.stdout.write(`placements: ${CONCURRENT_APPLIES} concurrent in ${fmt(placementSeconds, 2)} s = ${fmt(placementsPerSecond)} /s (each apply answered after p50 ${fmt(concurrent.p50 / 1000, 2)} s, p90 ${fmt(concurrent.p90 / 1000, 2)} s, max ${fmt(concurrent.max / 1000, 2)} s)\n`)
    process.stdout.write(`placements are ${fmt(100 * placementsPerSecond / rawRpcPerSecond, 2)}% of the raw signed RPCs a second\n`)

    const path = await writeResult('scheduler', {
      nodes: nodes.length,
      applyToRunningMs: apply,
      placements: { count: CONCURRENT_APPLIES, seconds: placementSeconds, perSecond: placementsPerSecond, answeredAfterMs: concurrent, rawRpcPerSecond, rawRpcFailed, rawRpcFailures: [...rawRpcReasons], rawRpcCalls: CONCURRENT_APPLIES * 20, ratio: placementsPerSecond / rawRpcPerSecond },
      throughput: { events: EVENTS, rawGossipsubPerSecond: rawPerSecond, dispatchPerSecond, ratio },
      goals: { applyToRunningP99Ms: 100, dispatchRatio: 0.8, placementsToRawRpcRatio: 0.25 }
    })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await Promise.all(extra.map(async n => await n.stop()))
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  }

  /**
   * Signed request/reply round trips per second from one member to the 5 nodes, round robin,
   * CONCURRENT_APPLIES in flight: the substrate a placement's conversation runs on. Each request is a
   * bid for a tender no node has open, so a node opens it (signature, credential, replay window),
   * routes it nowhere and seals an empty reply.
   */
  async function rawRpcs (): Promise<{ perSecond: number, failed: number, reasons: Set<string> }> {
    const root = await testTrust()
    const key = await generateKeyPair('Ed25519')
    const credential = await issueCredential(root.rootKey, keyId(key))
    const trust = new Trust({ root: root.root, key, credential })
    await trust.start()
    const caller = new MeshNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: nodes.map(n => n.address), membership: presentingGate(credential) })
    await caller.start()
    extra.push(caller)
    setRpcGuard(caller, sealingGuard(trust))
    const bid = (i: number): unknown => ({ type: 'bid', tenderId: `raw-${i}`, attempt: 1, peerId: caller.peerId, score: 1 })
    await waitUntil(async () => { for (const n of nodes) await callRpc(caller, n.peerId, BID_PROTOCOL, bid(0), { timeoutMs: 2_000 }); return true }, { timeoutMs: 30_000, what: 'every node to answer a signed RPC' })
    // A call the node refuses (its 32 inbound streams of a protocol per connection are taken) is
    // counted, not retried: placements' bids meet the same limit.
    let failed = 0
    const reasons = new Set<string>()
    const total = CONCURRENT_APPLIES * 20
    const callsPerSecond = await concurrently(CONCURRENT_APPLIES, total, async i => await callRpc(caller, nodes[i % nodes.length]!.peerId, BID_PROTOCOL, bid(i), { timeoutMs: 10_000 }).catch((err: unknown) => {
      failed++
      reasons.add(String((err as Error).message).replace(/12D3KooW\w+/g, '<peer>'))
    }))
    return { perSecond: callsPerSecond * (total - failed) / total, failed, reasons }
  }

  async function throughput (bundle: Awaited<ReturnType<typeof loadApplyFile>>): Promise<{ rawPerSecond: number, dispatchPerSecond: number, ratio: number }> {
    // The publisher and the raw subscriber are members (the mesh admits no one else): each has a
    // credential from the mesh's root. Raw gossip between them is unsealed; BeeMesh events are sealed
    // by the publisher as every member seals what it publishes, so sealing is part of the measured path.
    const root = await testTrust()
    const members: Trust[] = []
    const mk = async (): Promise<MeshNode> => {
      const key = await generateKeyPair('Ed25519')
      const credential = await issueCredential(root.rootKey, keyId(key))
      const trust = new Trust({ root: root.root, key, credential })
      await trust.start()
      members.push(trust)
      const n = new MeshNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [nodes[0]!.address], membership: presentingGate(credential) })
      await n.start()
      extra.push(n)
      return n
    }
    const publisher = await mk()
    const sealer = members[0]!
    const rawSubscriber = await mk()
    rawSubscriber.subscribe('raw-bench')
    await waitUntil(() => publisher.topicPeers('raw-bench').includes(rawSubscriber.peerId), { what: 'raw subscriber to be known' })
    let received = 0
    const allReceived = new Promise<void>(resolve => {
      rawSubscriber.addEventListener('message', evt => { if (evt.detail.topic === 'raw-bench' && ++received === EVENTS) resolve() })
    })
    const enc = new TextEncoder()
    const r0 = performance.now()
    for (let i = 0; i < EVENTS; i++) await publisher.publish('raw-bench', enc.encode(JSON.stringify({ id: `raw-${i}`, data: { n: i }, ts: Date.now() })))
    await allReceived
    const rawPerSecond = EVENTS / ((performance.now() - r0) / 1000)

    const sink = await applyAs(nodes[1]!, bundle, 'sink', 'bench')
    const host = nodes.find(n => n.peerId === sink.placement[0]!.peerId)!
    await waitUntil(() => publisher.topicPeers('bench').includes(host.peerId), { what: 'sink host subscription to be known' })
    const handled = async (): Promise<number> => (await host.api.request<{ placement: Array<{ handled: number }> }>('/v1/workloads/default/sink')).placement.reduce((a, p) => a + p.handled, 0)
    const d0 = performance.now()
    for (let i = 0; i < EVENTS; i++) await publisher.publish('bench', await sealer.seal('bench', JSON.stringify({ id: `ev-${i}`, data: { n: i }, ts: Date.now() })))
    await waitUntil(async () => await handled() >= EVENTS, { timeoutMs: 120_000, intervalMs: 20, what: 'every bench event handled' })
    const dispatchPerSecond = EVENTS / ((performance.now() - d0) / 1000)
    const ratio = dispatchPerSecond / rawPerSecond
    process.stdout.write(`raw gossipsub publish → receive: ${fmt(rawPerSecond, 0)} msg/s\n`)
    process.stdout.write(`topic event → handler:           ${fmt(dispatchPerSecond, 0)} events/s  (${fmt(ratio * 100)}% of raw)\n`)
    return { rawPerSecond, dispatchPerSecond, ratio }
  }
}
