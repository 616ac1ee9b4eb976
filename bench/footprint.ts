/**
 * Footprint: what one CLI call and one idle node cost, beside what Node.js
 * and libp2p cost on their own, measured in the same run (the lean-processes
 * issue's figures):
 *  - CLI: wall time of `beemesh --help` and `beemesh status` (against a
 *    running node), medians of ROUNDS, each round also timing `node -e 0`;
 *  - node start: a node's CPU from spawn until it is up (its API answers),
 *    as the node reports it, once without a code cache (the first start of
 *    a build) and then with one;
 *  - idle node: three `beemesh node start` processes form a mesh, with the
 *    V8 flags `beemesh up` gives them; each one's RSS (and PSS, USS) after
 *    REST_S seconds at rest, beside a bare Node.js process and a plain libp2p
 *    node (bench/processes.ts: TCP, noise, yamux, kad-dht, gossipsub, none of
 *    BeeMesh) after the same rest, and the plain node's CPU until it listens;
 *  - hosting: WORKLOADS stateless workloads applied across the three nodes;
 *    each node process's RSS then, and its sandboxes' RSS (their process trees,
 *    counted apart: confined workload code runs outside the node);
 *  - V8 flags (BENCH_FOOTPRINT_FLAGS=0 skips it): the same idle mesh with no
 *    flags, with all of them, and with all but one, so each flag's share of
 *    idle RSS and start CPU is a figure (src/node/process-flags.ts).
 */
import { spawn } from 'node:child_process'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadApplyFile } from '../src/bundle/bundler.js'
import { descendants } from '../src/sandbox/confine.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { ROOT, startNode, testTrust, waitUntil, type NodeProcess } from '../test/helpers/processes.js'
import { fmt, summary, writeResult } from './lib.js'
import { NODE_V8_FLAGS, NODE_V8_FLAGS_AT_REST } from '../src/node/process-flags.js'
import { children, cpuSeconds, installCleanup, memoryMb, rssMb, startRawNode, tempDirs } from './processes.js'

const env = (name: string, fallback: number): number => {
  const v = Number(process.env[name])
  return Number.isFinite(v) && v > 0 ? v : fallback
}
const ROUNDS = env('BENCH_FOOTPRINT_ROUNDS', 5)
const REST_S = env('BENCH_FOOTPRINT_REST_S', 15)
const WORKLOADS = env('BENCH_FOOTPRINT_WORKLOADS', 100)
const BIN = join(ROOT, 'bin', 'beemesh.js')

/** Wall time of one process run to its exit, in ms; it must exit 0. */
async function timed (args: string[]): Promise<number> {
  const t0 = performance.now()
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000) })
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  const ms = performance.now() - t0
  if (code !== 0) throw new Error(`node ${args.join(' ')} exited ${String(code)}: ${err.trim()}`)
  return ms
}

const median = (xs: number[]): number => summary(xs).p50

/** RSS in MB of every process below `pid` (its sandboxes), not `pid` itself. */
async function childrenRssMb (pid: number): Promise<number> {
  const sizes = await Promise.all(descendants(pid).map(rssMb))
  return sizes.filter(Number.isFinite).reduce((a, b) => a + b, 0)
}

async function cli (nodes: NodeProcess[]): Promise<{ nodeE0Ms: number, helpMs: number, statusMs: number, samples: Record<string, number[]> }> {
  const samples: Record<string, number[]> = { nodeE0: [], help: [], status: [] }
  for (let i = 0; i < ROUNDS; i++) {
    samples.nodeE0!.push(await timed(['-e', '0']))
    samples.help!.push(await timed([BIN, '--help']))
    samples.status!.push(await timed([BIN, 'status', '--api', nodes[i % nodes.length]!.apiUrl]))
  }
  return { nodeE0Ms: median(samples.nodeE0!), helpMs: median(samples.help!), statusMs: median(samples.status!), samples }
}

/** A bare Node.js process that stays up doing nothing; resolves with its pid once it runs. */
async function bareNode (): Promise<{ pid: number, stop: () => void }> {
  const child = spawn(process.execPath, ['-e', 'process.stdout.write("up\\n"); setInterval(() => {}, 60_000)'], { stdio: ['ignore', 'pipe', 'ignore'] })
  children.add(child)
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => { resolve() })
    child.once('exit', code => { reject(new Error(`the bare Node.js process exited (${String(code)})`)) })
  })
  return { pid: child.pid!, stop: () => { child.kill('SIGKILL') } }
}

/** A fresh code cache directory for this run, so the first start compiles from source. */
async function cacheDir (): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-code-cache-'))
  tempDirs.add(dir)
  return dir
}

interface IdleMesh { nodes: NodeProcess[], startCpuMs: number[], idle: Array<{ rss: number, pss: number, uss: number }> }

/**
 * Three nodes with `nodeFlags` form a mesh (after one start that leaves a code
 * cache for these flags), then rest REST_S seconds; `during` runs while they
 * rest (the baselines are measured in the same window). The nodes keep running.
 */
async function idleMesh (nodeFlags: readonly string[], env: Record<string, string>, during: (nodes: NodeProcess[]) => Promise<void> = async () => {}): Promise<IdleMesh> {
  await (await startNode({ nodeFlags, env })).kill('SIGKILL')
  const nodes: NodeProcess[] = []
  try {
    nodes.push(await startNode({ nodeFlags, env }))
    for (let i = 1; i < 3; i++) nodes.push(await startNode({ nodeFlags, env, bootstrap: [nodes[0]!.address] }))
    await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === nodes.length - 1, { what: `${n.peerId} to see the other nodes` })))
    await Promise.all([sleep(REST_S * 1000), during(nodes)])
    return { nodes, startCpuMs: nodes.map(n => n.startCpuMs), idle: await Promise.all(nodes.map(async n => await memoryMb(n.child.pid!))) }
  } catch (err) {
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
    throw err
  }
}

/**
 * The V8 settings compared: none, all, all but one group (the two
 * code-flushing flags go together; `--optimize-for-size` is set once the node
 * is up), and two that were tried and dropped: `--optimize-for-size` from
 * spawn, and a 1 MB young generation.
 */
function flagSets (): Array<{ name: string, flags: readonly string[], env: Record<string, string> }> {
  const groups: Array<{ name: string, flags: string[] }> = []
  for (const f of NODE_V8_FLAGS) {
    const name = f === '--bytecode-old-age=1' || f === '--flush-baseline-code' ? 'code flushing' : f
    const g = groups.find(x => x.name === name)
    if (g != null) g.flags.push(f)
    else groups.push({ name, flags: [f] })
  }
  const none = { BEEMESH_V8_FLAGS_AT_REST: '' }
  return [
    { name: 'no flags', flags: [], env: none },
    { name: 'all (as shipped)', flags: NODE_V8_FLAGS, env: {} },
    ...groups.map(g => ({ name: `all but ${g.name}`, flags: NODE_V8_FLAGS.filter(f => !g.flags.includes(f)), env: {} })),
    { name: `all but ${NODE_V8_FLAGS_AT_REST.join(' ')} once up`, flags: NODE_V8_FLAGS, env: none },
    { name: `${NODE_V8_FLAGS_AT_REST.join(' ')} from spawn instead`, flags: [...NODE_V8_FLAGS, ...NODE_V8_FLAGS_AT_REST], env: none },
    { name: 'all and --max-semi-space-size=1', flags: [...NODE_V8_FLAGS, '--max-semi-space-size=1'], env: {} }
  ]
}

export async function run (): Promise<void> {
  installCleanup()
  await testTrust()
  const bundle = await loadApplyFile('bench/workloads/sink.ts')
  const env = { BEEMESH_CACHE_DIR: await cacheDir() }

  // The first start of this build: no code cache yet (the node compiles from source and leaves one).
  const cold = await startNode({ env })
  const coldStartCpuMs = cold.startCpuMs
  if (!/compiled from source; code cache saved/.test(cold.stdout())) throw new Error(`the first start did not save a code cache:\n${cold.stdout()}`)
  await cold.kill('SIGKILL')
  process.stdout.write(`first start (no code cache): ${fmt(coldStartCpuMs, 0)} ms of CPU\n`)

  let bare: { pid: number, stop: () => void } | undefined
  let raw: Awaited<ReturnType<typeof startRawNode>> | undefined
  let rawStartCpuS = NaN
  const baselines: { bareNodeMb?: number, plainLibp2pMb?: number } = {}
  process.stdout.write(`three nodes, then ${REST_S} s at rest…\n`)
  const main = await idleMesh(NODE_V8_FLAGS, env, async mesh => {
    bare = await bareNode()
    raw = await startRawNode(ROOT, [mesh[0]!.address])
    rawStartCpuS = await cpuSeconds(raw.pid)
  })
  const nodes = main.nodes
  try {
    baselines.bareNodeMb = await rssMb(bare!.pid)
    baselines.plainLibp2pMb = await rssMb(raw!.pid)
    bare!.stop()
    raw!.stop()
    if (!nodes.every(n => /compiled from the code cache/.test(n.stdout()))) throw new Error('a node of the mesh did not start from the code cache')
    process.stdout.write(`idle RSS: nodes ${main.idle.map(m => fmt(m.rss, 0)).join(', ')} MB (PSS ${main.idle.map(m => fmt(m.pss, 0)).join(', ')}; USS ${main.idle.map(m => fmt(m.uss, 0)).join(', ')}); bare Node.js ${fmt(baselines.bareNodeMb, 0)} MB; plain libp2p ${fmt(baselines.plainLibp2pMb, 0)} MB\n`)
    process.stdout.write(`start CPU (spawn → up, code cache): nodes ${main.startCpuMs.map(v => fmt(v, 0)).join(', ')} ms; plain libp2p (spawn → listening) ${fmt(rawStartCpuS * 1000, 0)} ms\n`)

    const c = await cli(nodes)
    process.stdout.write(`CLI (median of ${ROUNDS}): node -e 0 ${fmt(c.nodeE0Ms, 0)} ms; beemesh --help ${fmt(c.helpMs, 0)} ms (${fmt(c.helpMs / c.nodeE0Ms, 2)}×); beemesh status ${fmt(c.statusMs, 0)} ms (${fmt(c.statusMs / c.nodeE0Ms, 2)}×)\n`)

    // Hosting: the workloads spread by the scheduler over the three nodes.
    let placed = 0
    for (let i = 0; i < WORKLOADS; i++) {
      const name = `footprint-${i}`
      const spec = { ...bundle.spec, name, id: `default/${name}`, topics: [name], createdAt: Date.now() }
      const s = await nodes[i % nodes.length]!.api.request<WorkloadStatus>('/v1/workloads', { method: 'POST', body: { spec, artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 60_000 })
      placed += s.ready
      if ((i + 1) % 20 === 0) process.stdout.write(`  applied ${i + 1}/${WORKLOADS}\n`)
    }
    if (placed !== WORKLOADS) throw new Error(`${placed} of ${WORKLOADS} workloads ran`)
    await sleep(5_000)
    const hosting = {
      workloads: WORKLOADS,
      replicasPerNode: await Promise.all(nodes.map(async n => (await n.status()).replicas)),
      nodesMb: await Promise.all(nodes.map(async n => await rssMb(n.child.pid!))),
      sandboxesMb: await Promise.all(nodes.map(async n => await childrenRssMb(n.child.pid!)))
    }
    process.stdout.write(`with ${WORKLOADS} workloads (replicas ${hosting.replicasPerNode.join(', ')}): node RSS ${hosting.nodesMb.map(v => fmt(v, 0)).join(', ')} MB; their sandboxes ${hosting.sandboxesMb.map(v => fmt(v, 0)).join(', ')} MB\n`)
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))

    const flags: Array<{ name: string, flags: readonly string[], idleRssMb: number[], startCpuMs: number[], medianRssMb: number, medianStartCpuMs: number }> = []
    if (process.env.BENCH_FOOTPRINT_FLAGS !== '0') {
      for (const set of flagSets()) {
        const m = await idleMesh(set.flags, { ...env, ...set.env })
        await Promise.all(m.nodes.map(async n => await n.kill('SIGKILL')))
        const row = { name: set.name, flags: set.flags, idleRssMb: m.idle.map(x => x.rss), startCpuMs: m.startCpuMs, medianRssMb: median(m.idle.map(x => x.rss)), medianStartCpuMs: median(m.startCpuMs) }
        flags.push(row)
        process.stdout.write(`  ${set.name.padEnd(44)} idle RSS ${row.idleRssMb.map(v => fmt(v, 0)).join(', ')} MB; start CPU ${row.startCpuMs.map(v => fmt(v, 0)).join(', ')} ms\n`)
      }
    }

    const path = await writeResult('footprint', {
      cli: { rounds: ROUNDS, nodeE0Ms: c.nodeE0Ms, helpMs: c.helpMs, statusMs: c.statusMs, helpRatio: c.helpMs / c.nodeE0Ms, statusRatio: c.statusMs / c.nodeE0Ms, samples: c.samples },
      node: {
        flags: NODE_V8_FLAGS,
        restSeconds: REST_S,
        idleRssMb: main.idle.map(m => m.rss),
        idlePssMb: main.idle.map(m => m.pss),
        idleUssMb: main.idle.map(m => m.uss),
        startCpuMs: main.startCpuMs,
        coldStartCpuMs,
        bareNodeRssMb: baselines.bareNodeMb,
        plainLibp2pRssMb: baselines.plainLibp2pMb,
        plainLibp2pStartCpuMs: rawStartCpuS * 1000
      },
      hosting,
      flags,
      goals: {
        helpWithin3x: c.helpMs <= 3 * c.nodeE0Ms,
        statusWithin4x: c.statusMs <= 4 * c.nodeE0Ms,
        idleRssWithin75Mb: main.idle.every(m => m.rss <= 75),
        startCpuWithin300Ms: main.startCpuMs.every(ms => ms <= 300)
      }
    })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  }
}
