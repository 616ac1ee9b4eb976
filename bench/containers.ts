/**
 * Container start latency. In the same run, against the same engine:
 *  - raw: dockerode create + start of the same busybox container, from this process;
 *  - BeeMesh: `POST /v1/workloads` (a 1-replica Pod) on a 3-node mesh of real
 *    processes → the workload reports Running (tender, bids, award, the pod
 *    machine's image check, create and start on the awarded node, the
 *    confirmation, then the first heartbeat that shows the pod Running).
 * Needs DOCKER_HOST (scripts/container-engine.sh start).
 */
import { performance } from 'node:perf_hooks'
import { randomUUID } from 'node:crypto'
import { toWorkloadSpec } from '../src/workloads/spec.js'
import type { WorkloadDescription } from '../src/workloads/views.js'
import { removeContainersOf, requireEngine } from '../test/helpers/engine.js'
import { startMesh, waitUntil } from '../test/helpers/processes.js'
import { fmt, summary, writeResult } from './lib.js'

const RUNS = Number(process.env.BENCH_CONTAINER_RUNS ?? 20)
const IMAGE = 'busybox'

export async function run (): Promise<void> {
  const { engine, socket } = await requireEngine()
  const version = await engine.ping(5_000)
  process.stdout.write(`engine: ${version.engine} ${version.version} at ${socket}\n`)

  // Raw: what the engine itself takes for create + start.
  const raw: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const name = `beemesh-bench-raw-${randomUUID().slice(0, 8)}`
    const t0 = performance.now()
    const id = await engine.create({ name, image: IMAGE, command: ['sleep', '3600'], env: [], ports: [], limits: {}, labels: { 'beemesh.bench': '1' } })
    await engine.start(id)
    raw.push(performance.now() - t0)
    await engine.remove(id, { force: true })
  }
  const r = summary(raw)
  process.stdout.write(`raw dockerode create+start: p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms over ${r.n}\n`)

  const nodes = await startMesh(3, socket.length > 0 ? ['--container-socket', socket] : [])
  const layer: number[] = []
  try {
    await waitUntil(async () => (await Promise.all(nodes.map(async n => await n.status()))).every(s => (s as { containers?: { available: boolean } }).containers?.available === true) || undefined, { what: 'every node to reach the engine' })
    for (let i = 0; i < RUNS; i++) {
      const name = `bench-start-${i}`
      const { createdAt: _c, ...spec } = toWorkloadSpec({ name, kind: 'container', image: IMAGE, command: ['sleep', '3600'], restartPolicy: 'Always' }, { source: 'bench', now: 0 })
      const via = nodes[i % nodes.length]!
      const t0 = performance.now()
      await via.api.request('/v1/workloads?wait=false', { method: 'POST', body: { spec: { ...spec, createdAt: Date.now() } }, timeoutMs: 30_000 })
      await waitUntil(async () => (await via.api.request<WorkloadDescription>(`/v1/workloads/default/${name}`, { timeoutMs: 10_000 })).ready === 1 || undefined, { what: `${name} running`, intervalMs: 5, timeoutMs: 30_000 })
      layer.push(performance.now() - t0)
      await via.api.request(`/v1/workloads/default/${name}`, { method: 'DELETE', timeoutMs: 10_000 })
    }
  } finally {
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
    await removeContainersOf(engine, nodes.map(n => n.peerId))
  }
  const l = summary(layer)
  process.stdout.write(`apply → Running through BeeMesh: p50 ${fmt(l.p50)} ms, p99 ${fmt(l.p99)} ms over ${l.n} (${fmt(l.p50 / r.p50, 2)}× the raw create+start at p50)\n`)
  const path = await writeResult('containers', {
    engine: version,
    runs: RUNS,
    raw: { what: 'dockerode create + start from the benchmark process', ms: r, samples: raw },
    beemesh: { what: 'POST /v1/workloads (1-replica Pod, wait=false) → describe shows 1 ready, 3-node mesh', ms: l, samples: layer },
    ratioP50: l.p50 / r.p50
  })
  process.stdout.write(`wrote ${path}\n`)
}
