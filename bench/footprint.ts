/**
 * Footprint: what one CLI call and one idle node cost, beside what Node.js
 * and libp2p cost on their own, measured in the same run (the lean-processes
 * issue's figures):
 *  - CLI: wall time of `beemesh --help` and `beemesh status` (against a
 *    running node), medians of ROUNDS, each round also timing `node -e 0`;
 *  - node: three `beemesh node start` processes form a mesh; each one's CPU
 *    time (utime + stime) from spawn until its API answers, and its RSS after
 *    REST_S seconds at rest; beside a bare Node.js process and a plain libp2p
 *    node (bench/processes.ts: TCP, noise, yamux, kad-dht, gossipsub, none of
 *    BeeMesh) after the same rest, and the plain node's CPU until it listens;
 *  - hosting: WORKLOADS stateless workloads applied across the three nodes;
 *    each node process's RSS then, and its sandboxes' RSS (their process trees,
 *    counted apart: confined workload code runs outside the node).
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadApplyFile } from '../src/bundle/bundler.js'
import { descendants } from '../src/sandbox/confine.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { ROOT, startNode, testTrust, waitUntil, type NodeProcess } from '../test/helpers/processes.js'
import { fmt, summary, writeResult } from './lib.js'
import { children, cpuSeconds, installCleanup, rssMb, startRawNode } from './processes.js'

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

export async function run (): Promise<void> {
  installCleanup()
  await testTrust()
  const bundle = await loadApplyFile('bench/workloads/sink.ts')
  // Start CPU: each node's is read the moment it has printed its API address (it answers then).
  const nodes: NodeProcess[] = []
  const startCpuS: number[] = []
  const started = async (node: NodeProcess): Promise<NodeProcess> => { startCpuS.push(await cpuSeconds(node.child.pid!)); return node }
  try {
    nodes.push(await started(await startNode()))
    for (let i = 1; i < 3; i++) nodes.push(await started(await startNode({ bootstrap: [nodes[0]!.address] })))
    await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === nodes.length - 1, { what: `${n.peerId} to see the other nodes` })))
    const bare = await bareNode()
    const raw = await startRawNode(ROOT, [nodes[0]!.address])
    const rawStartCpuS = await cpuSeconds(raw.pid)
    process.stdout.write(`resting ${REST_S} s…\n`)
    await sleep(REST_S * 1000)
    const idle = {
      nodesMb: await Promise.all(nodes.map(async n => await rssMb(n.child.pid!))),
      bareNodeMb: await rssMb(bare.pid),
      plainLibp2pMb: await rssMb(raw.pid)
    }
    bare.stop()
    raw.stop()
    process.stdout.write(`idle RSS: nodes ${idle.nodesMb.map(v => fmt(v, 0)).join(', ')} MB; bare Node.js ${fmt(idle.bareNodeMb, 0)} MB; plain libp2p ${fmt(idle.plainLibp2pMb, 0)} MB\n`)
    process.stdout.write(`start CPU (spawn → API ready): nodes ${startCpuS.map(v => fmt(v * 1000, 0)).join(', ')} ms; plain libp2p (spawn → listening) ${fmt(rawStartCpuS * 1000, 0)} ms\n`)

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

    const path = await writeResult('footprint', {
      cli: { rounds: ROUNDS, nodeE0Ms: c.nodeE0Ms, helpMs: c.helpMs, statusMs: c.statusMs, helpRatio: c.helpMs / c.nodeE0Ms, statusRatio: c.statusMs / c.nodeE0Ms, samples: c.samples },
      node: { restSeconds: REST_S, idleRssMb: idle.nodesMb, startCpuMs: startCpuS.map(s => s * 1000), bareNodeRssMb: idle.bareNodeMb, plainLibp2pRssMb: idle.plainLibp2pMb, plainLibp2pStartCpuMs: rawStartCpuS * 1000 },
      hosting,
      goals: {
        helpWithin3x: c.helpMs <= 3 * c.nodeE0Ms,
        statusWithin4x: c.statusMs <= 4 * c.nodeE0Ms,
        idleRssWithin75Mb: idle.nodesMb.every(v => v <= 75),
        startCpuWithin300Ms: startCpuS.every(s => s <= 0.3)
      }
    })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  }
}
