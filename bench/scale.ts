/**
 * Scale: fresh meshes of 10, 25 and 50 `beemesh node start` processes on
 * loopback (`BENCH_SCALE_SIZES=10,25,50`), each measured, then torn down:
 *  - formation, polled from the first spawn on: each node's join time (from
 *    its process printing "running" to having DHT neighbours, connected peers
 *    ≥ min(n-1, DISCOVERY_TARGET), and a place in the heartbeat topic's gossip
 *    mesh, ≥ min(n-1, 3) mesh peers); the whole mesh's: spawn → every node has
 *    DHT neighbours, and → every node hears every other's heartbeat
 *    (`/v1/nodes`: n-1 peers ready);
 *  - DHT get p50/p99: signed records put through random nodes, each read
 *    through another random node's API, beside the same get by a plain
 *    libp2p kad-dht node (MeshNode, no BeeMesh layer) in its own process,
 *    joined to the same mesh;
 *  - apply → running with 500 stateless workloads, bounded concurrency,
 *    round-robin over the nodes' APIs; placements/s; replicas per node;
 *  - RSS and CPU per node process at rest (/proc), after formation and again
 *    after the 500 workloads, with the plain libp2p node as the baseline.
 * Every child is killed and every temp dir removed on exit, error or Ctrl-C.
 */
import { execFile, spawn as spawnProcess, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream, rmSync } from 'node:fs'
import { cp, mkdir, mkdtemp, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { loadApplyFile } from '../src/bundle/bundler.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { ApiClient, useCredentials } from '../src/cli/api-client.js'
import type { NodeStatus } from '../src/workloads/views.js'
import { HEARTBEAT_TOPIC } from '../src/protocol/messages.js'
import { describeError } from '../src/errors.js'
import { DISCOVERY_TARGET, GOSSIP_DEGREES } from '../src/transport/mesh-node.js'
import { ROOT, testTrust, trustFlags, waitUntil, type TestTrust } from '../test/helpers/processes.js'
import { fmt, summary, writeResult } from './lib.js'
import { children, cpuPercent, installCleanup, rssMb, spread, startRawNode, tempDirs, type RawNode, type Spread } from './processes.js'
import { plotScale } from './plot.js'
import { seededRandom } from '../src/random.js'
import { NODE_V8_FLAGS } from '../src/node/process-flags.js'

const env = (name: string, fallback: number): number => {
  const v = Number(process.env[name])
  return Number.isFinite(v) && v > 0 ? v : fallback
}
const SIZES = (process.env.BENCH_SCALE_SIZES ?? '10,25,50').split(',').map(s => Number(s.trim())).filter(n => Number.isInteger(n) && n >= 2)
const RECORDS = env('BENCH_SCALE_RECORDS', 50)
const WORKLOADS = env('BENCH_SCALE_WORKLOADS', 500)
const CONCURRENCY = env('BENCH_SCALE_CONCURRENCY', 16)
/** Node processes starting at once: each takes ~0.3 s of CPU to start, on 2 shared cores. */
const SPAWN_CONCURRENCY = env('BENCH_SCALE_SPAWN_CONCURRENCY', 3)
const SETTLE_MS = env('BENCH_SCALE_SETTLE_S', 10) * 1000
const CPU_WINDOW_MS = env('BENCH_SCALE_CPU_WINDOW_S', 10) * 1000
/** No new apply is issued after this long: a mesh that places slowly still ends in bounded time. */
const APPLY_DEADLINE_MS = env('BENCH_SCALE_APPLY_DEADLINE_S', 120) * 1000
/**
 * The mesh's node processes together may use this much memory (the machine is
 * shared): past it no new apply is issued, and past 1.5× it the size is aborted.
 */
const MAX_RSS_BYTES = env('BENCH_SCALE_MAX_RSS_GB', 12) * 2 ** 30
const BOOTSTRAP_NODES = 3
/** A node is in the topic mesh with this many mesh peers (gossipsub's Dlo in mesh-node.ts), or all n-1 in smaller meshes. */
const TOPIC_MESH_MIN = GOSSIP_DEGREES.Dlo
const PLOT = join(ROOT, 'docs', 'images', 'scale.svg')

// ------------------------------------------------------------------ node processes

/**
 * A private build of the node (bin/ and dist/ in the run's temp dir, src/ and
 * node_modules/ linked): other work in the repository rebuilds dist/ (it is
 * removed first), which would break node processes starting or loading a
 * worker mid-run. Returns the app directory.
 */
async function buildSnapshot (dir: string): Promise<string> {
  const app = join(dir, 'app')
  await mkdir(app, { recursive: true })
  await symlink(join(ROOT, 'src'), join(app, 'src'))
  await symlink(join(ROOT, 'node_modules'), join(app, 'node_modules'))
  await cp(join(ROOT, 'bin'), join(app, 'bin'), { recursive: true })
  await cp(join(ROOT, 'package.json'), join(app, 'package.json'))
  await promisify(execFile)(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: app, timeout: 120_000 })
  return app
}

interface NodeProc { i: number, peerId: string, address: string, pid: number, child: ChildProcess, api: ApiClient, status: () => Promise<NodeStatus>, kill: () => Promise<void> }

/** `beemesh node start` on loopback (ephemeral ports, the test trust root; its clients speak as the admin deployer), as test/helpers/processes.ts starts one; resolves once it runs. */
async function startNodeProcess (app: string, i: number, dataDir: string, bootstrap: string[], trustArgs: string[]): Promise<NodeProc> {
  const args = [...NODE_V8_FLAGS, join(app, 'bin', 'beemesh.js'), 'node', 'start', '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', dataDir, '--api-port', '0', '--log-level', 'warn', ...trustArgs]
  for (const b of bootstrap) args.push('--bootstrap', b)
  const child = spawnProcess(process.execPath, args, { cwd: app, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  const exited = new Promise<void>(resolve => child.once('exit', () => { children.delete(child); resolve() }))
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => { if (out.length < 64 * 1024) out += d.toString() })
  child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4096) })
  // BENCH_SCALE_LOGS=<dir>: every node's warnings and errors to <dir>/node-<i>.log (kept after the run).
  if (process.env.BENCH_SCALE_LOGS != null) child.stderr!.pipe(createWriteStream(join(process.env.BENCH_SCALE_LOGS, `node-${i}.log`), { flags: 'a' }))
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    const pattern = /node (\S+) running\n\s+listening\s+(\S+)[\s\S]*?api\s+(\S+)\n/
    const timer = setTimeout(() => { done(); reject(new Error(`node-${i} did not start within 60 s; stderr: ${err.trim().split('\n').slice(-3).join(' | ')}`)) }, 60_000)
    const check = (): void => { const m = pattern.exec(out); if (m != null) { done(); resolve(m) } }
    const gone = (): void => { done(); reject(new Error(`node-${i} exited before it ran; stderr: ${err.trim().split('\n').slice(-3).join(' | ')}`)) }
    const done = (): void => { clearTimeout(timer); child.stdout!.off('data', check); child.off('exit', gone) }
    child.stdout!.on('data', check)
    child.once('exit', gone)
  })
  const api = new ApiClient(m[3]!)
  return {
    i,
    peerId: m[1]!,
    address: m[2]!,
    pid: child.pid!,
    child,
    api,
    status: async () => await api.request<NodeStatus>('/v1/status', { timeoutMs: 5_000 }),
    kill: async () => { child.kill('SIGKILL'); await exited }
  }
}

// ------------------------------------------------------------------ one mesh


/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function pool<T, R> (items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }))
  return out
}

export interface ScaleSizeResult {
  nodes: number
  formation: { spawnMs: number, dhtMs: number, meshMs: number, fullViewAfterSpawnMs: number, joinMs: Spread, dhtPeerTarget: number, topicMeshTarget: number, peersAtMeshReady: Spread, heartbeatMs: number }
  dht: { records: number, putMs: ReturnType<typeof summary>, getMs: ReturnType<typeof summary>, rawGetMs: ReturnType<typeof summary>, ratioP50: number, ratioP99: number, failedGets: number, failedRawGets: number }
  apply: { workloads: number, issued: number, stoppedBy: string | null, concurrency: number, latencyMs: ReturnType<typeof summary>, seconds: number, placementsPerSecond: number, running: number, failed: number, replicasPerNode: Spread, replicasInAll: number }
  rssMb: { idle: Spread, afterWorkloads: Spread, rawIdle: number, rawAfterWorkloads: number }
  cpuPercent: { idle: Spread, afterWorkloads: Spread, rawIdle: number, rawAfterWorkloads: number, windowS: number }
  wallSeconds: number
}

type Bundle = Awaited<ReturnType<typeof loadApplyFile>>

async function measure (n: number, app: string, trust: TestTrust, bundle: Bundle): Promise<ScaleSizeResult> {
  const started = performance.now()
  const log = (line: string): void => { process.stdout.write(`[${n} nodes, ${fmt((performance.now() - started) / 1000, 0)} s] ${line}\n`) }
  const renewToken = (): void => { useCredentials({ keyPath: trust.deployerKeyFile }) } // tokens live 10 min
  renewToken()
  const base = await mkdtemp(join(tmpdir(), `beemesh-scale-${n}-`))
  tempDirs.add(base)
  const nodes: NodeProc[] = []
  let raw: RawNode | undefined
  let watch: NodeJS.Timeout | undefined
  try {
    // 1. formation: spawning, with a poller watching every node that runs from the start
    const t0 = performance.now()
    const dhtTarget = Math.min(n - 1, DISCOVERY_TARGET)
    const topicTarget = Math.min(n - 1, TOPIC_MESH_MIN)
    const runningAt = new Map<NodeProc, number>()
    const joinedAt = new Map<NodeProc, number>()
    const dhtAt = new Map<NodeProc, number>()
    const meshAt = new Map<NodeProc, number>()
    const last = new Map<NodeProc, { peers: number, topic: number, ready: number }>()
    const peersAtMesh: number[] = []
    const spawn = async (i: number, bootstrap: string[]): Promise<NodeProc> => {
      const node = await startNodeProcess(app, i, join(base, `node-${i}`), bootstrap, trustFlags(trust))
      runningAt.set(node, performance.now() - t0)
      nodes.push(node)
      return node
    }
    let spawning = true
    const pollOnce = async (): Promise<void> => {
      await pool(nodes.filter(p => !meshAt.has(p) || !dhtAt.has(p) || !joinedAt.has(p)), 8, async p => {
        try {
          const status = await p.status()
          const ready = status.members ?? 0
          const topic = status.topicMesh?.[HEARTBEAT_TOPIC] ?? 0
          last.set(p, { peers: status.peerCount, topic, ready })
          const now = performance.now() - t0
          if (!dhtAt.has(p) && status.peerCount >= dhtTarget) dhtAt.set(p, now)
          if (!joinedAt.has(p) && status.peerCount >= dhtTarget && topic >= topicTarget) joinedAt.set(p, now)
          // The whole mesh hears every node only once all are spawned.
          if (!spawning && !meshAt.has(p) && ready >= n - 1) { meshAt.set(p, now); peersAtMesh.push(status.peerCount) }
        } catch { /* a busy node answers next round */ }
      })
    }
    // The poller is itself load on the mesh (a status call per node a round, with a signed token
    // checked; `members` is how many others the node hears): a round every 500 ms at 10 nodes,
    // every n × 25 ms beyond (2.5 s at 100).
    const pollGapMs = Math.max(500, 25 * n)
    const poller = (async () => { while (spawning) { await pollOnce(); await sleep(pollGapMs) } })()
    let spawnMs: number
    const seeds: string[] = []
    try {
      const first = await spawn(0, [])
      seeds.push(first.address)
      for (let i = 1; i < Math.min(BOOTSTRAP_NODES, n); i++) seeds.push((await spawn(i, [first.address])).address)
      await pool(Array.from({ length: Math.max(0, n - BOOTSTRAP_NODES) }, (_, k) => k + BOOTSTRAP_NODES), SPAWN_CONCURRENCY, async i => await spawn(i, seeds))
      spawnMs = performance.now() - t0
      log(`spawned ${n} node processes in ${fmt(spawnMs / 1000, 1)} s (${SPAWN_CONCURRENCY} at a time, bootstrap: the first ${seeds.length})`)
    } finally {
      spawning = false
      await poller
    }
    const formTimeoutMs = 60_000 + 3_000 * n
    const deadline = Date.now() + formTimeoutMs
    while (meshAt.size < n || dhtAt.size < n || joinedAt.size < n) {
      if (Date.now() > deadline) {
        const behind = nodes.filter(p => !meshAt.has(p) || !dhtAt.has(p) || !joinedAt.has(p)).map(p => `${p.peerId.slice(-8)} (peers ${last.get(p)?.peers ?? '?'}/${dhtTarget}, topic mesh ${last.get(p)?.topic ?? '?'}/${topicTarget}, heartbeats ready ${last.get(p)?.ready ?? '?'}/${n - 1})`)
        throw new Error(`the ${n}-node mesh did not form within ${formTimeoutMs / 1000} s: ${behind.length} node(s) behind: ${behind.slice(0, 10).join(', ')}${behind.length > 10 ? ', …' : ''}; ${await unheard(nodes)}`)
      }
      await pollOnce()
      await sleep(pollGapMs)
    }
    const dhtMs = Math.max(...dhtAt.values())
    const meshMs = Math.max(...meshAt.values())
    const joinMs = spread(nodes.map(p => joinedAt.get(p)! - runningAt.get(p)!))
    const heartbeatMs = (await nodes[0]!.status()).heartbeatMs ?? NaN
    log(`formed: a node joins (≥ ${dhtTarget} DHT peers and ≥ ${topicTarget} heartbeat-mesh peers) ${fmt(joinMs.p50 / 1000, 1)} s after it starts (p50; max ${fmt(joinMs.max / 1000, 1)} s); every node has its DHT peers at ${fmt(dhtMs / 1000, 1)} s and hears all ${n - 1} others' heartbeats at ${fmt(meshMs / 1000, 1)} s, ${fmt((meshMs - spawnMs) / 1000, 1)} s after the last started (connected peers then: ${JSON.stringify(spread(peersAtMesh))}; heartbeat interval ${heartbeatMs} ms)`)

    // The plain libp2p node joins too: raw DHT gets, and the idle baseline process.
    raw = await startRawNode(app, seeds)
    const rawNode = raw
    await waitUntil(async () => (await rawNode.ask<{ peers: number }>({ type: 'peers' })).peers >= dhtTarget, { timeoutMs: 30_000, intervalMs: 250, what: `the plain libp2p node to reach ${dhtTarget} peers` })
    log(`plain libp2p node joined (pid ${raw.pid})`)

    // 2. RSS and CPU at rest
    const pids = nodes.map(p => p.pid)
    log(`idle ${SETTLE_MS / 1000} s, then CPU over ${CPU_WINDOW_MS / 1000} s`)
    await sleep(SETTLE_MS)
    const rssIdle = await Promise.all(pids.map(rssMb))
    const rawRssIdle = await rssMb(raw.pid)
    const cpuIdleAll = await cpuPercent([...pids, raw.pid], CPU_WINDOW_MS)
    const cpuIdle = cpuIdleAll.slice(0, n)
    const rawCpuIdle = cpuIdleAll[n]!
    log(`at rest: RSS p50 ${fmt(spread(rssIdle).p50)} MB max ${fmt(spread(rssIdle).max)} MB (plain libp2p ${fmt(rawRssIdle)} MB); CPU p50 ${fmt(spread(cpuIdle).p50, 2)} % max ${fmt(spread(cpuIdle).max, 2)} % of a core (plain libp2p ${fmt(rawCpuIdle, 2)} %)`)

    // 3. DHT put/get, beside the plain node's get of the same key
    renewToken()
    const random = seededRandom(n)
    const pick = (not?: number): number => { for (;;) { const i = Math.floor(random() * n); if (i !== not) return i } }
    const stamp = Date.now().toString(36)
    const puts: number[] = []
    const putters: number[] = []
    for (let i = 0; i < RECORDS; i++) {
      const by = pick()
      putters.push(by)
      const t = performance.now()
      await nodes[by]!.api.request('/v1/records', { method: 'PUT', body: { key: `/beemesh/bench/${i}`, value: `${stamp}-${i}` }, timeoutMs: 15_000 })
      puts.push(performance.now() - t)
    }
    const gets: number[] = []
    const rawGets: number[] = []
    let failedGets = 0
    let failedRawGets = 0
    for (let i = 0; i < RECORDS; i++) {
      const key = `/beemesh/bench/${i}`
      const t = performance.now()
      try {
        const r = await nodes[pick(putters[i])]!.api.request<{ value: string }>(`/v1/records?key=${encodeURIComponent(key)}`, { timeoutMs: 15_000 })
        if (r.value !== `${stamp}-${i}`) throw new Error(`wrong value ${r.value}`)
        gets.push(performance.now() - t)
      } catch (err) {
        failedGets++
        log(`get ${key} failed: ${describeError(err)}`)
      }
      const r = await raw.ask<{ ms: number, value?: string, error?: string }>({ type: 'get', key })
      if (r.value === `${stamp}-${i}`) rawGets.push(r.ms)
      else { failedRawGets++; log(`plain libp2p get ${key} failed: ${r.error ?? `wrong value ${String(r.value)}`}`) }
    }
    const putMs = summary(puts)
    const getMs = summary(gets)
    const rawGetMs = summary(rawGets)
    log(`DHT, ${RECORDS} records: put p50 ${fmt(putMs.p50)} ms p99 ${fmt(putMs.p99)} ms; get through the API p50 ${fmt(getMs.p50)} ms p99 ${fmt(getMs.p99)} ms; plain kad-dht get p50 ${fmt(rawGetMs.p50)} ms p99 ${fmt(rawGetMs.p99)} ms (${fmt(getMs.p50 / rawGetMs.p50, 2)}× / ${fmt(getMs.p99 / rawGetMs.p99, 2)}×)`)

    // 4. apply → running, WORKLOADS at once with bounded concurrency, round-robin over the APIs.
    // First one apply alone, so every node (each bidder prefetches the artifact) stores the
    // bundle before the burst: concurrent stores of one artifact on a node race in
    // ArtifactStore.put (same temp file name within a millisecond, the second rename fails ENOENT).
    renewToken()
    const apply = async (node: NodeProc, name: string): Promise<WorkloadStatus> => {
      const spec = { ...bundle.spec, name, id: `default/${name}`, topics: ['scale'], createdAt: Date.now() }
      return await node.api.request<WorkloadStatus>('/v1/workloads', { method: 'POST', body: { spec, artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 120_000 })
    }
    await apply(nodes[0]!, 'scale-warmup')
    const artifact = `${createHash('sha256').update(bundle.code).digest('hex')}.mjs`
    const stored = async (): Promise<number> => (await Promise.all(nodes.map(async (_, i) => await stat(join(base, `node-${nodes[i]!.i}`, 'artifacts', artifact)).then(() => 1, () => 0)))).reduce<number>((a, b) => a + b, 0)
    await waitUntil(async () => await stored() === n, { timeoutMs: 30_000, intervalMs: 250, what: 'every node to store the artifact' })
      .catch(async () => { log(`only ${await stored()}/${n} nodes stored the artifact after the warm-up apply; going on`) })
    const latencies: number[] = []
    let failedApplies = 0
    const a0 = performance.now()
    let done = 0
    let issued = 0
    let memoryStop: string | undefined
    watch = setInterval(() => {
      void Promise.all(pids.map(async pid => await rssMb(pid).catch(() => 0))).then(mbs => {
        const total = mbs.filter(Number.isFinite).reduce((a, b) => a + b, 0) * 2 ** 20
        if (total > MAX_RSS_BYTES && memoryStop == null) {
          memoryStop = `the ${n} node processes use ${fmt(total / 2 ** 30, 1)} GiB together (cap ${fmt(MAX_RSS_BYTES / 2 ** 30, 0)} GiB, BENCH_SCALE_MAX_RSS_GB)`
          log(`${memoryStop}: no new applies`)
        }
        if (total > 1.5 * MAX_RSS_BYTES) {
          log(`${fmt(total / 2 ** 30, 1)} GiB: aborting this mesh to protect the shared machine`)
          for (const p of nodes) p.child.kill('SIGKILL')
        }
      })
    }, 2_000)
    await pool(Array.from({ length: WORKLOADS }, (_, i) => i), CONCURRENCY, async i => {
      if (performance.now() - a0 > APPLY_DEADLINE_MS || memoryStop != null) return
      issued++
      const name = `scale-${i}`
      const t = performance.now()
      try {
        const s = await apply(nodes[i % n]!, name)
        if (s.ready < 1) throw new Error(`not running: ${s.status}, ${s.ready}/${s.replicas} ready`)
        latencies.push(performance.now() - t)
      } catch (err) {
        failedApplies++
        if (failedApplies <= 5) log(`apply ${name} failed: ${describeError(err)}`)
      }
      if (++done % 100 === 0) log(`applied ${done}/${WORKLOADS}`)
    })
    const seconds = (performance.now() - a0) / 1000
    const latencyMs = summary(latencies)
    if (issued < WORKLOADS) log(`stopped issuing applies (${memoryStop ?? `after ${APPLY_DEADLINE_MS / 1000} s`}): ${issued}/${WORKLOADS} issued`)
    // Every workload ends Running (as node 0 sees the mesh), and where the replicas went (each node's own count).
    let running = 0
    await waitUntil(async () => {
      const list = await nodes[0]!.api.request<WorkloadStatus[]>('/v1/workloads', { timeoutMs: 15_000 })
      running = list.filter(w => /^scale-\d+$/.test(w.name) && w.status === 'Running' && w.ready >= w.replicas).length
      return running >= issued
    }, { timeoutMs: 30_000, intervalMs: 1_000, what: `all ${issued} workloads Running` }).catch(err => { log(describeError(err)) })
    // A node starved of CPU may answer slowly: a longer timeout, and one that does not answer is left out.
    const perNode = await Promise.all(nodes.map(async p => await p.api.request<NodeStatus>('/v1/status', { timeoutMs: 20_000 }).then(st => st.replicas, () => NaN)))
    const replicasPerNode = spread(perNode.filter(Number.isFinite))
    log(`apply → running, ${issued} of ${WORKLOADS} workloads issued, ${CONCURRENCY} at a time: p50 ${fmt(latencyMs.p50)} ms p99 ${fmt(latencyMs.p99)} ms; ${fmt(latencies.length / seconds)} placements/s; ${running}/${issued} Running, ${failedApplies} failed; replicas per node min ${replicasPerNode.min} max ${replicasPerNode.max}, ${perNode.filter(Number.isFinite).reduce((a, b) => a + b, 0)} in all`)

    // 5. RSS and CPU at rest again, carrying the workloads
    await sleep(SETTLE_MS)
    const rssAfter = await Promise.all(pids.map(rssMb))
    const rawRssAfter = await rssMb(raw.pid)
    const cpuAfterAll = await cpuPercent([...pids, raw.pid], CPU_WINDOW_MS)
    const cpuAfter = cpuAfterAll.slice(0, n)
    log(`at rest with ${WORKLOADS} workloads: RSS p50 ${fmt(spread(rssAfter).p50)} MB max ${fmt(spread(rssAfter).max)} MB; CPU p50 ${fmt(spread(cpuAfter).p50, 2)} % max ${fmt(spread(cpuAfter).max, 2)} %`)

    return {
      nodes: n,
      formation: { spawnMs, dhtMs, meshMs, fullViewAfterSpawnMs: meshMs - spawnMs, joinMs, dhtPeerTarget: dhtTarget, topicMeshTarget: topicTarget, peersAtMeshReady: spread(peersAtMesh), heartbeatMs },
      dht: { records: RECORDS, putMs, getMs, rawGetMs, ratioP50: getMs.p50 / rawGetMs.p50, ratioP99: getMs.p99 / rawGetMs.p99, failedGets, failedRawGets },
      apply: { workloads: WORKLOADS, issued, stoppedBy: memoryStop ?? (issued < WORKLOADS ? 'deadline' : null), concurrency: CONCURRENCY, latencyMs, seconds, placementsPerSecond: latencies.length / seconds, running, failed: failedApplies, replicasPerNode, replicasInAll: perNode.filter(Number.isFinite).reduce((a, b) => a + b, 0) },
      rssMb: { idle: spread(rssIdle), afterWorkloads: spread(rssAfter), rawIdle: rawRssIdle, rawAfterWorkloads: rawRssAfter },
      cpuPercent: { idle: spread(cpuIdle), afterWorkloads: spread(cpuAfter), rawIdle: rawCpuIdle, rawAfterWorkloads: cpuAfterAll[n]!, windowS: CPU_WINDOW_MS / 1000 },
      wallSeconds: (performance.now() - started) / 1000
    }
  } finally {
    clearInterval(watch)
    raw?.stop()
    await Promise.all(nodes.map(async p => await p.kill()))
    rmSync(base, { recursive: true, force: true })
    tempDirs.delete(base)
    log('torn down')
  }
}

// ------------------------------------------------------------------ the table

function table (results: ScaleSizeResult[]): string {
  const rows: Array<[string, (r: ScaleSizeResult) => number, number]> = [
    ['spawn all processes (s)', r => r.formation.spawnMs / 1000, 1],
    ['a node joins, p50 (s after it starts)', r => r.formation.joinMs.p50 / 1000, 1],
    ['a node joins, max (s)', r => r.formation.joinMs.max / 1000, 1],
    ['every node has DHT peers (s from 1st spawn)', r => r.formation.dhtMs / 1000, 1],
    ['everyone hears everyone (s from 1st spawn)', r => r.formation.meshMs / 1000, 1],
    ['… after the last node started (s)', r => r.formation.fullViewAfterSpawnMs / 1000, 1],
    ['heartbeat interval (s)', r => r.formation.heartbeatMs / 1000, 1],
    ['DHT get p50 (ms)', r => r.dht.getMs.p50, 1],
    ['DHT get p99 (ms)', r => r.dht.getMs.p99, 1],
    ['plain kad-dht get p50 (ms)', r => r.dht.rawGetMs.p50, 1],
    ['plain kad-dht get p99 (ms)', r => r.dht.rawGetMs.p99, 1],
    ['apply → running p50 (ms)', r => r.apply.latencyMs.p50, 0],
    ['apply → running p99 (ms)', r => r.apply.latencyMs.p99, 0],
    ['placements/s', r => r.apply.placementsPerSecond, 1],
    ['replicas per node min', r => r.apply.replicasPerNode.min, 0],
    ['replicas per node max', r => r.apply.replicasPerNode.max, 0],
    ['idle RSS p50 (MB)', r => r.rssMb.idle.p50, 0],
    ['idle RSS max (MB)', r => r.rssMb.idle.max, 0],
    ['RSS with workloads p50 (MB)', r => r.rssMb.afterWorkloads.p50, 0],
    ['RSS with workloads max (MB)', r => r.rssMb.afterWorkloads.max, 0],
    ['idle CPU p50 (% core)', r => r.cpuPercent.idle.p50, 2],
    ['idle CPU max (% core)', r => r.cpuPercent.idle.max, 2],
    ['CPU with workloads p50 (% core)', r => r.cpuPercent.afterWorkloads.p50, 2],
    ['plain libp2p idle RSS (MB)', r => r.rssMb.rawIdle, 0],
    ['plain libp2p idle CPU (% core)', r => r.cpuPercent.rawIdle, 2]
  ]
  const head = ['figure', ...results.map(r => `${r.nodes} nodes`), results.length > 1 ? `${results.at(-1)!.nodes}/${results[0]!.nodes}` : '']
  const body = rows.map(([label, get, digits]) => {
    const values = results.map(get)
    const growth = results.length > 1 ? `${fmt(values.at(-1)! / values[0]!, 2)}×` : ''
    return [label, ...values.map(v => fmt(v, digits)), growth]
  })
  const widths = head.map((h, c) => Math.max(h.length, ...body.map(r => r[c]!.length)))
  const line = (cells: string[]): string => cells.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ')
  return [line(head), ...body.map(line)].join('\n') + '\n'
}

export async function run (): Promise<void> {
  installCleanup()
  if (SIZES.length === 0) throw new Error('BENCH_SCALE_SIZES names no mesh size of 2 or more nodes')
  const wall = performance.now()
  const trust = await testTrust()
  tempDirs.add(trust.dir)
  const work = await mkdtemp(join(tmpdir(), 'beemesh-scale-app-'))
  tempDirs.add(work)
  try {
    const app = await buildSnapshot(work)
    const bundle = await loadApplyFile('bench/workloads/sink.ts')
    const results: ScaleSizeResult[] = []
    const failures: Array<{ nodes: number, error: string }> = []
    for (const n of SIZES) {
      process.stdout.write(`-- ${n} node processes --\n`)
      try {
        results.push(await measure(n, app, trust, bundle))
      } catch (err) {
        // The other sizes still run and are written; the run fails at the end with this message.
        failures.push({ nodes: n, error: describeError(err) })
        process.stdout.write(`FAILED at ${n} nodes: ${describeError(err)}\n`)
      }
    }
    const wallSeconds = (performance.now() - wall) / 1000
    if (results.length > 0) process.stdout.write(`\n${table(results)}`)
    process.stdout.write(`wall time ${fmt(wallSeconds, 0)} s\n`)
    const result = {
      sizes: results,
      failures,
      settings: { sizes: SIZES, records: RECORDS, workloads: WORKLOADS, concurrency: CONCURRENCY, spawnConcurrency: SPAWN_CONCURRENCY, bootstrapNodes: BOOTSTRAP_NODES, settleS: SETTLE_MS / 1000, applyDeadlineS: APPLY_DEADLINE_MS / 1000, cpuWindowS: CPU_WINDOW_MS / 1000, dhtPeerTarget: `min(n-1, ${DISCOVERY_TARGET})` },
      wallSeconds
    }
    const path = await writeResult('scale', result)
    process.stdout.write(`wrote ${path}\n`)
    if (results.length > 0) {
      await writeFile(PLOT, await plotScale({ benchmark: 'scale', at: new Date().toISOString(), ...result }))
      process.stdout.write(`wrote ${PLOT}\n`)
    }
    if (failures.length > 0) throw new Error(`scale benchmark failed at ${failures.map(f => `${f.nodes} nodes (${f.error})`).join('; ')}`)
  } finally {
    for (const d of [trust.dir, work]) { rmSync(d, { recursive: true, force: true }); tempDirs.delete(d) }
  }
}

/** Which nodes the others do not hear, and what those nodes say of themselves (for a mesh that did not form). */
async function unheard (nodes: NodeProc[]): Promise<string> {
  const heardBy = new Map<string, number>(nodes.map(p => [p.peerId, 0]))
  await pool(nodes, 8, async p => {
    try {
      for (const s of await p.api.request<Array<{ peerId: string, self: boolean, ready: boolean }>>('/v1/nodes', { timeoutMs: 10_000 })) if (!s.self && s.ready) heardBy.set(s.peerId, (heardBy.get(s.peerId) ?? 0) + 1)
    } catch { /* counted as hearing no one */ }
  })
  const worst = [...heardBy].sort((a, b) => a[1] - b[1]).slice(0, 8)
  const described = await Promise.all(worst.map(async ([peerId, count]) => {
    const p = nodes.find(q => q.peerId === peerId)!
    const s = await p.status().catch(() => undefined)
    return `${peerId.slice(-8)} heard by ${count} (its status: ${s == null ? 'no answer' : `up ${Math.round(s.uptimeMs / 1000)} s, hears ${s.members ?? '?'}, ${s.peerCount} peers, heartbeat topic mesh ${s.topicMesh?.[HEARTBEAT_TOPIC] ?? '?'}, heartbeat every ${s.heartbeatMs ?? '?'} ms`})`
  }))
  const counts = [...heardBy.values()].sort((a, b) => a - b)
  return `heard by (min/median/max of ${nodes.length}): ${counts[0]}/${counts[Math.floor(counts.length / 2)]}/${counts.at(-1)}; least heard: ${described.join('; ')}`
}
