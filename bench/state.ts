/**
 * Stateful workloads:
 *  - the layer itself, in this process: persisted transitions per second
 *    through MachineHost (worker sandbox → journal, fsynced; for `replicated`
 *    also two holders on two more libp2p nodes over TCP loopback), 32
 *    senders at once, beside raw LevelDB batch puts (fsynced, the same 32
 *    writers at once, and one writer) and raw in-memory XState transitions,
 *    measured in the same run (ratios printed);
 *  - end to end on a 5-node local mesh (separate node processes), through
 *    the HTTP API, beside the same API's ceiling (GET /healthz at the same
 *    concurrency): what a client on this machine sees;
 *  - failover time: SIGKILL of the owner → first acknowledged event from the
 *    new owner, over FAILOVERS kills, with zero lost acknowledged events
 *    checked at the end.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { assign, createActor, setup } from 'xstate'
import { loadApplyFile } from '../src/bundle/bundler.js'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { MachineHost } from '../src/stateful/machine-host.js'
import { StateHolder } from '../src/stateful/state-holder.js'
import { STATE_PROTOCOL, StateRequest } from '../src/protocol/state.js'
import { WorkloadJournal } from '../src/store/journal.js'
import { NodeStore } from '../src/store/node-store.js'
import { ArtifactStore } from '../src/store/artifact-store.js'
import { ArtifactService } from '../src/transport/artifacts.js'
import { silentLogger } from '../src/transport/logger.js'
import { MeshNode } from '../src/transport/mesh-node.js'
import { serveRpc } from '../src/transport/rpc.js'
import type { WorkloadSpec } from '../src/workloads/types.js'
import { startMesh, startNode, waitUntil, type NodeProcess } from '../test/helpers/processes.js'
import { concurrently, fmt, summary, writeResult } from './lib.js'

const CONCURRENCY = 32
const PERSISTED_EVENTS = 3000
const RAW_WRITES = 3000
const RAW_TRANSITIONS = 200_000
const FAILOVERS = Number(process.env.BENCH_FAILOVERS ?? 20)

function rawXState (): number {
  const machine = setup({ types: {} as { context: { count: number }, events: { type: 'inc', by: number } } }).createMachine({
    context: { count: 0 },
    on: { inc: { actions: assign({ count: ({ context, event }) => context.count + event.by }) } }
  })
  const actor = createActor(machine).start()
  const t0 = performance.now()
  for (let i = 0; i < RAW_TRANSITIONS; i++) actor.send({ type: 'inc', by: 1 })
  const s = (performance.now() - t0) / 1000
  actor.stop()
  return RAW_TRANSITIONS / s
}

/** Fsynced one-put batches, as a journal write is: `writers` at once. */
async function rawLevel (writers: number): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-bench-level-'))
  const db = new Level<string, string>(dir)
  try {
    await db.open()
    const value = JSON.stringify({ seq: 0, epoch: 1, ts: Date.now(), event: { type: 'inc', by: 1 }, state: 'counting', id: 'x'.repeat(36) })
    return await concurrently(writers, RAW_WRITES, async n => {
      await db.batch([{ type: 'put', key: `w!e!${String(n).padStart(16, '0')}`, value }], { sync: true })
    })
  } finally {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
}

interface LayerNode { mesh: MeshNode, store: NodeStore, journal: WorkloadJournal, holder: StateHolder, artifacts: ArtifactService, dir: string }

async function layerNode (bootstrap?: string): Promise<LayerNode> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-bench-layer-'))
  const mesh = new MeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], ...(bootstrap != null ? { bootstrap: [bootstrap] } : {}) })
  await mesh.start()
  const store = await NodeStore.open(dir)
  const journal = WorkloadJournal.fromStore(store)
  const holder = new StateHolder(journal, store, silentLogger)
  await serveRpc(mesh, STATE_PROTOCOL, async (request, from) => ({ result: await holder.handle(StateRequest.parse(request), from) }), silentLogger)
  const artifacts = new ArtifactService(mesh, new ArtifactStore(dir), silentLogger)
  await artifacts.start()
  return { mesh, store, journal, holder, artifacts, dir }
}

/**
 * MachineHost alone, in this process: 32 senders hand events straight to the
 * owner (no HTTP, no routing). `replicated` uses the two other nodes as holders.
 */
async function layer (durability: 'local' | 'replicated'): Promise<{ perSecond: number, latency: ReturnType<typeof summary> }> {
  const owner = await layerNode()
  const others = durability === 'replicated' ? [await layerNode(owner.mesh.addresses()[0]), await layerNode(owner.mesh.addresses()[0])] : []
  try {
    await waitUntil(() => owner.mesh.peers().length === others.length || undefined, { what: 'holders to connect' })
    const bundle = await loadApplyFile('test/fixtures/workloads/machines/counter.ts')
    await owner.artifacts.publish(bundle.code, bundle.sha256, { announce: false })
    const spec = { ...bundle.spec, durability, createdAt: Date.now() } as WorkloadSpec
    const host = new MachineHost({
      mesh: owner.mesh,
      artifacts: owner.artifacts,
      journal: owner.journal,
      holder: owner.holder,
      log: silentLogger,
      livePeers: () => others.map(o => o.mesh.peerId),
      locate: () => ({ owner: owner.mesh.peerId, kind: 'stateful', status: 'Running' }),
      onCompleted: () => {}
    })
    await host.start(spec, 1, [])
    const latencies: number[] = []
    const perSecond = await concurrently(CONCURRENCY, PERSISTED_EVENTS, async n => {
      const s = performance.now()
      const reply = await host.handleSend({ op: 'send', workloadId: spec.id, id: `e-${n}`, event: { type: 'inc', by: 1 } })
      if (!reply.ok) throw new Error(`not acknowledged: ${JSON.stringify(reply)}`)
      latencies.push(performance.now() - s)
    })
    const state = await host.state(spec.id)
    if ((state.context as { count: number }).count !== PERSISTED_EVENTS) throw new Error(`layer ${durability}: counted ${JSON.stringify(state.context)}`)
    await host.stopAll()
    return { perSecond, latency: summary(latencies) }
  } finally {
    for (const n of [owner, ...others]) {
      await n.mesh.stop()
      await n.store.close()
      await rm(n.dir, { recursive: true, force: true })
    }
  }
}

async function applyCounter (node: NodeProcess, name: string, durability: 'local' | 'replicated'): Promise<void> {
  const bundle = await loadApplyFile('test/fixtures/workloads/machines/counter.ts')
  const spec = { ...bundle.spec, name, id: `default/${name}`, durability, createdAt: Date.now() }
  await node.api.request('/v1/workloads', { method: 'POST', body: { spec, artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 60_000 })
}

async function stateOf (node: NodeProcess, name: string): Promise<MachineStateReport> {
  return await node.api.request<MachineStateReport>(`/v1/workloads/default/${name}/state`, { timeoutMs: 20_000 })
}

/** Acknowledged events per second through the owner's own API, CONCURRENCY senders at once. */
async function persisted (nodes: NodeProcess[], name: string): Promise<{ perSecond: number, latency: ReturnType<typeof summary> }> {
  const ownerId = (await stateOf(nodes[0]!, name)).owner
  const via = nodes.find(n => n.peerId === ownerId)!
  const latencies: number[] = []
  const perSecond = await concurrently(CONCURRENCY, PERSISTED_EVENTS, async n => {
    const s = performance.now()
    await via.api.request<Ack>(`/v1/workloads/default/${name}/events`, { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: `${name}-${n}` }, timeoutMs: 20_000 })
    latencies.push(performance.now() - s)
  })
  const count = ((await stateOf(via, name)).context as { count: number }).count
  if (count !== PERSISTED_EVENTS) throw new Error(`${name}: context counts ${count}, expected ${PERSISTED_EVENTS}`)
  return { perSecond, latency: summary(latencies) }
}

/**
 * Where one failover's time went, read from the live nodes' debug logs
 * (BENCH_STATE_ONLY=failover runs them at debug): ms after the kill at which
 * a guardian re-tendered, the award went out, and the new owner had the
 * machine running (with its recovery and sandbox boot), and the first ack.
 */
interface FailoverPhases { retender?: number, award?: number, owned?: number, recoverMs?: number, sandboxMs?: number, ack: number }

function failoverPhases (nodes: NodeProcess[], workload: string, killedAtMs: number, ackMs: number): FailoverPhases {
  const out: FailoverPhases = { ack: ackMs }
  for (const n of nodes) {
    for (const line of n.stderr().split('\n')) {
      if (!line.includes(workload)) continue
      let j: { time?: number, workload?: string, msg?: string, ms?: { recovered?: number, sandbox?: number } }
      try { j = JSON.parse(line) } catch { continue }
      if (j.workload !== `default/${workload}` || j.time == null || j.time < killedAtMs || j.time > killedAtMs + ackMs) continue
      const at = j.time - killedAtMs
      const first = (k: 'retender' | 'award' | 'owned'): void => { if (out[k] == null || at < out[k]!) out[k] = at }
      if (j.msg?.startsWith('re-tendering') === true) first('retender')
      else if (j.msg === 'award published') first('award')
      else if (j.msg === 'machine owned') { first('owned'); out.recoverMs = j.ms?.recovered; out.sandboxMs = j.ms?.sandbox }
    }
  }
  return out
}

async function failovers (nodes: NodeProcess[], phases?: FailoverPhases[]): Promise<{ samples: number[], acknowledged: number, counted: number }> {
  const name = 'failover'
  await applyCounter(nodes[0]!, name, 'replicated')
  const samples: number[] = []
  let acknowledged = 0
  let counter = 0
  for (let i = 0; i < FAILOVERS; i++) {
    // The owner as the owner itself reports it: a node that just restarted may still name the previous one
    // (killing that node would measure a holder's replacement, not a failover).
    const owner = await waitUntil(async () => {
      for (const n of nodes) if ((await stateOf(n, name).catch(() => undefined))?.owner === n.peerId) return n
      return undefined
    }, { what: 'the owner to report itself', timeoutMs: 20_000 })
    const ownerId = owner.peerId
    const via = nodes.find(n => n !== owner)!
    let stop = false
    let firstNew = 0
    let killedAt = 0
    const sender = (async () => {
      while (!stop) {
        const id = `f-${counter++}`
        for (;;) {
          try {
            const ack = await via.api.request<Ack>(`/v1/workloads/default/${name}/events`, { method: 'POST', body: { event: { type: 'inc', by: 1 }, id }, timeoutMs: 20_000 })
            acknowledged++
            if (killedAt > 0 && ack.owner !== ownerId && firstNew === 0) { firstNew = performance.now(); stop = true }
            break
          } catch {}
        }
      }
    })()
    const start = acknowledged
    await waitUntil(() => acknowledged >= start + 20 || undefined, { what: 'acks before the kill', timeoutMs: 20_000 })
    killedAt = performance.now()
    owner.child.kill('SIGKILL')
    await sender
    samples.push(firstNew - killedAt)
    process.stdout.write(`  kill ${i + 1}/${FAILOVERS}: ${fmt(firstNew - killedAt, 0)} ms\n`)
    if (phases != null) phases.push(failoverPhases(nodes, name, Date.now() - (performance.now() - killedAt), firstNew - killedAt))
    await owner.exited
    const back = await startNode({ dataDir: owner.dataDir, bootstrap: [via.address], ...(phases != null ? { logLevel: 'debug' } : {}) })
    nodes[nodes.indexOf(owner)] = back
    await waitUntil(async () => (await back.api.request<unknown[]>('/v1/nodes', { timeoutMs: 5_000 })).length === nodes.length, { what: 'the restarted node to hear every heartbeat', timeoutMs: 30_000 })
  }
  const counted = ((await stateOf(nodes[0]!, name)).context as { count: number }).count
  return { samples, acknowledged, counted }
}

export async function run (): Promise<void> {
  if (process.env.BENCH_STATE_ONLY === 'failover') {
    // A look at failover alone, with where its time goes (nodes log at debug; no JSON written):
    // BENCH_STATE_ONLY=failover npm run bench -- state
    const nodes = await startMesh(5, [], { logLevel: 'debug' })
    try {
      await applyCounter(nodes[0]!, 'bench-local', 'local')
      await applyCounter(nodes[0]!, 'bench-replicated', 'replicated')
      const phases: FailoverPhases[] = []
      const fo = await failovers(nodes, phases)
      const s = summary(fo.samples)
      process.stdout.write(`failover over ${s.n} kills: p50 ${fmt(s.p50, 0)} ms, p99 ${fmt(s.p99, 0)} ms; lost ${fo.acknowledged - fo.counted}\n`)
      const phase = (k: keyof FailoverPhases): string => { const v = phases.map(p => p[k]).filter((x): x is number => x != null); return v.length === 0 ? '-' : `p50 ${fmt(summary(v).p50, 0)} / max ${fmt(summary(v).max, 0)} ms` }
      process.stdout.write(`after the kill: re-tender ${phase('retender')}, award ${phase('award')}, machine running ${phase('owned')} (recovery ${phase('recoverMs')}, sandbox boot ${phase('sandboxMs')}), first ack ${phase('ack')}\n`)
    } finally {
      await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
    }
    return
  }
  const xstatePerSecond = rawXState()
  process.stdout.write(`raw XState (in memory): ${fmt(xstatePerSecond, 0)} transitions/s\n`)
  const levelOne = await rawLevel(1)
  const levelConcurrent = await rawLevel(CONCURRENCY)
  process.stdout.write(`raw LevelDB fsynced batch puts: ${fmt(levelOne, 0)}/s one writer, ${fmt(levelConcurrent, 0)}/s ${CONCURRENCY} writers\n`)
  const layerLocal = await layer('local')
  process.stdout.write(`layer, local durability: ${fmt(layerLocal.perSecond, 0)} persisted transitions/s = ${fmt(100 * layerLocal.perSecond / levelConcurrent, 0)}% of raw LevelDB (${CONCURRENCY} writers), ${fmt(100 * layerLocal.perSecond / levelOne, 0)}% of one writer; p50 ${fmt(layerLocal.latency.p50)} ms p99 ${fmt(layerLocal.latency.p99)} ms\n`)
  const layerReplicated = await layer('replicated')
  process.stdout.write(`layer, replicated durability: ${fmt(layerReplicated.perSecond, 0)} persisted transitions/s = ${fmt(100 * layerReplicated.perSecond / levelConcurrent, 0)}% of raw LevelDB (${CONCURRENCY} writers); p50 ${fmt(layerReplicated.latency.p50)} ms p99 ${fmt(layerReplicated.latency.p99)} ms\n`)
  const nodes = await startMesh(5)
  try {
    const httpCeiling = await concurrently(CONCURRENCY, PERSISTED_EVENTS, async () => await nodes[0]!.api.request('/healthz', { timeoutMs: 10_000 }))
    process.stdout.write(`HTTP API ceiling from this client (GET /healthz, ${CONCURRENCY} at once): ${fmt(httpCeiling, 0)} requests/s\n`)
    await applyCounter(nodes[0]!, 'bench-local', 'local')
    await applyCounter(nodes[0]!, 'bench-replicated', 'replicated')
    const local = await persisted(nodes, 'bench-local')
    process.stdout.write(`end to end over HTTP, local durability: ${fmt(local.perSecond, 0)} acknowledged transitions/s (${fmt(100 * local.perSecond / httpCeiling, 0)}% of the HTTP ceiling), p50 ${fmt(local.latency.p50)} ms p99 ${fmt(local.latency.p99)} ms\n`)
    const replicated = await persisted(nodes, 'bench-replicated')
    process.stdout.write(`end to end over HTTP, replicated durability: ${fmt(replicated.perSecond, 0)} acknowledged transitions/s (${fmt(100 * replicated.perSecond / httpCeiling, 0)}% of the HTTP ceiling), p50 ${fmt(replicated.latency.p50)} ms p99 ${fmt(replicated.latency.p99)} ms\n`)
    // The alternative to direct replication: a signed DHT put of the newest state per batch.
    const dhtPut: number[] = []
    const value = JSON.stringify({ seq: 1, epoch: 1, snapshot: { value: 'counting', context: { count: 1 } } })
    for (let i = 0; i < 30; i++) {
      const s0 = performance.now()
      await nodes[i % 5]!.api.request('/v1/records', { method: 'PUT', body: { key: `/beemesh/bench/dht-put-${i}`, value }, timeoutMs: 20_000 })
      dhtPut.push(performance.now() - s0)
    }
    const dht = summary(dhtPut)
    const ownerId = (await stateOf(nodes[0]!, 'bench-replicated')).owner
    const owner = nodes.find(n => n.peerId === ownerId)!
    const single: number[] = []
    for (let i = 0; i < 30; i++) {
      const s0 = performance.now()
      await owner.api.request(`/v1/workloads/default/bench-replicated/events`, { method: 'POST', body: { event: { type: 'inc', by: 1 }, id: `single-${i}` }, timeoutMs: 20_000 })
      single.push(performance.now() - s0)
    }
    const one = summary(single)
    process.stdout.write(`one at a time through the HTTP API: a replicated send p50 ${fmt(one.p50)} ms p99 ${fmt(one.p99)} ms; a DHT put of a state record (the alternative to direct replication) p50 ${fmt(dht.p50)} ms p99 ${fmt(dht.p99)} ms\n`)
    const fo = await failovers(nodes)
    const s = summary(fo.samples)
    process.stdout.write(`failover (kill → first ack from the new owner) over ${s.n} kills: p50 ${fmt(s.p50, 0)} ms, p99 ${fmt(s.p99, 0)} ms, max ${fmt(s.max, 0)} ms; acknowledged ${fo.acknowledged}, counted ${fo.counted} (lost ${fo.acknowledged - fo.counted})\n`)
    const path = await writeResult('state', {
      raw: { xstateTransitionsPerSecond: xstatePerSecond, levelBatchPutsPerSecond: { oneWriter: levelOne, concurrent: levelConcurrent, writers: CONCURRENCY } },
      layer: {
        local: { ...layerLocal, ratioToRawLevel: layerLocal.perSecond / levelConcurrent, ratioToRawLevelOneWriter: layerLocal.perSecond / levelOne, ratioToRawXState: layerLocal.perSecond / xstatePerSecond },
        replicated: { ...layerReplicated, ratioToRawLevel: layerReplicated.perSecond / levelConcurrent, ratioToRawXState: layerReplicated.perSecond / xstatePerSecond }
      },
      http: {
        ceilingPerSecond: httpCeiling,
        local: { ...local, ratioToHttpCeiling: local.perSecond / httpCeiling },
        replicated: { ...replicated, ratioToHttpCeiling: replicated.perSecond / httpCeiling }
      },
      oneAtATimeMs: { replicatedSend: one, dhtPut: dht },
      failover: { kills: s.n, ms: s, samples: fo.samples, acknowledged: fo.acknowledged, counted: fo.counted, lost: fo.acknowledged - fo.counted },
      settings: { concurrency: CONCURRENCY, events: PERSISTED_EVENTS, rawWrites: RAW_WRITES, nodes: 5 }
    })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  }
}
