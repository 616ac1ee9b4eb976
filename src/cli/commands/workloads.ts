import { readFile } from 'node:fs/promises'
import { extname, relative } from 'node:path'
import { type LogLine } from '../../protocol/messages.js'
import { WorkloadSpecSchema } from '../../workloads/records.js'
import { signManifest } from '../../policy/credentials.js'
import type { WorkloadSpec } from '../../workloads/types.js'
import type { NodeSummary, WorkloadDescription, WorkloadStatus } from '../../workloads/views.js'
import { sandboxOf } from '../../protocol/messages.js'
import { BeeMeshError, InvalidArgumentError } from '../../errors.js'
import { loadWorkload } from '../../bundle/bundler.js'
import { MANIFEST_API_VERSION, parseAnyManifest } from '../../workloads/manifest.js'
import { formatCpu, formatMemory, formatMemoryApprox } from '../../workloads/quantities.js'
import { ApiClient, deployerKey } from '../api-client.js'
import { formatAge, printObject, printRows, type OutputFormat } from '../output.js'

export interface WorkloadCliOptions {
  api: string
  output: OutputFormat | 'wide'
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/** `orders` or `default/orders` → `default/orders`, checked like Kubernetes names. */
export function workloadId (name: string, namespace = 'default'): string {
  const [ns, n] = name.includes('/') ? name.split('/', 2) as [string, string] : [namespace, name]
  if (!NAME.test(ns) || !NAME.test(n)) throw new InvalidArgumentError(`"${name}" is not a workload name (lowercase letters, digits and '-', at most 63)`)
  return `${ns}/${n}`
}

function short (peerId: string): string {
  return peerId.length > 16 ? `…${peerId.slice(-8)}` : peerId
}

/** Signs a spec with the CLI's deployer key, when it has one: every node then checks the deployer's own signature. */
async function signSpec (spec: WorkloadSpec): Promise<WorkloadSpec> {
  const key = await deployerKey()
  if (key == null) return spec
  const parsed = WorkloadSpecSchema.parse(spec)
  return { ...parsed, provenance: await signManifest(key.key, parsed) }
}

/**
 * `beemesh upload <file>`: bundles a workload module (or an Actor manifest's),
 * stores the bundle on the node without running it (POST /v1/artifacts, the
 * bundle as apply sends it) and prints the beemesh.io/v1 Actor or Machine
 * naming it by sha256, with the manifest's overrides: `kubectl apply -f` it.
 */
export async function upload (file: string, opts: WorkloadCliOptions): Promise<void> {
  const { spec, bundle } = await loadWorkload(file)
  if (bundle == null) throw new InvalidArgumentError(`${spec.id} is a container workload: it has no module to upload; apply it as a Pod or Deployment`)
  const client = new ApiClient(opts.api)
  const stored = await client.request<{ sha256: string, size: number }>(`/v1/artifacts?namespace=${encodeURIComponent(spec.namespace)}`, { method: 'POST', body: { artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 120_000 })
  if (stored.sha256 !== bundle.sha256) throw new BeeMeshError(`the node stored the upload as sha256:${stored.sha256}, not sha256:${bundle.sha256}`)
  process.stderr.write(`uploaded ${spec.id}: artifact sha256:${bundle.sha256.slice(0, 12)} (${(bundle.code.byteLength / 1024).toFixed(1)} KiB) to ${opts.api}\n`)
  let overrides: Record<string, unknown> = {}
  if (!['.ts', '.mts', '.js', '.mjs'].includes(extname(file).toLowerCase())) {
    const parsed = parseAnyManifest(await readFile(file, 'utf8'), file)
    if (parsed.type === 'actor') { const { name: _n, namespace: _ns, ...rest } = parsed.manifest.overrides; overrides = rest }
  }
  const object = {
    apiVersion: MANIFEST_API_VERSION,
    kind: spec.kind === 'stateful' ? 'Machine' : 'Actor',
    metadata: { name: spec.name, namespace: spec.namespace },
    spec: { artifact: `sha256:${bundle.sha256}`, ...overrides }
  }
  printObject(object, opts.output === 'json' ? 'json' : 'yaml')
}

/** `beemesh apply <file>`: bundle, send to a node, wait until every replica runs (unless --no-wait). */
export async function apply (file: string, opts: WorkloadCliOptions & { wait: boolean }): Promise<void> {
  const started = Date.now()
  const progress = (line: string): void => { if (opts.output === 'table' || opts.output === 'wide') process.stderr.write(line + '\n') }
  progress(`reading ${relative(process.cwd(), file) || file}…`)
  const { spec, bundle } = await loadWorkload(file)
  if (bundle != null) progress(`bundled ${spec.id}: artifact sha256:${bundle.sha256.slice(0, 12)} (${(bundle.code.byteLength / 1024).toFixed(1)} KiB) in ${Date.now() - started} ms`)
  else if (spec.container != null) progress(`${spec.id}: ${spec.replicas} × container ${spec.container.image} (restartPolicy ${spec.container.restartPolicy})`)
  progress(`tendering ${spec.replicas} replica(s) on the mesh via ${opts.api}…`)
  const client = new ApiClient(opts.api)
  const signed = await signSpec({ ...spec, createdAt: Date.now() })
  if (signed.provenance != null) progress(`signed the manifest as deployer ${signed.provenance.deployer}`)
  const body = { spec: signed, ...(bundle != null ? { artifact: Buffer.from(bundle.code).toString('base64') } : {}) }
  if (!opts.wait) {
    await client.request('/v1/workloads?wait=false', { method: 'POST', body, timeoutMs: 30_000 })
    process.stdout.write(`workload ${spec.id} accepted; placing it in the background (see: beemesh get workloads)\n`)
    return
  }
  let status = await client.request<WorkloadStatus>('/v1/workloads', { method: 'POST', body, timeoutMs: 120_000 })
  if (spec.kind === 'container') status = await settleContainers(client, status, progress)
  const refused = status.kind === 'container' ? status.placement.filter(p => p.pod?.phase === 'Failed' && NEVER_RAN.has(p.pod.reason ?? '')) : []
  if (opts.output === 'json' || opts.output === 'yaml') printObject(status as unknown as Record<string, unknown>, opts.output)
  else {
    process.stdout.write(`workload ${status.id} ${displayStatus(status).toLowerCase()} (epoch ${status.epoch}) in ${Date.now() - started} ms\n`)
    for (const p of status.placement) process.stdout.write(`  replica ${p.replica} → ${p.peerId} (${p.pod != null ? `${p.pod.phase}${p.pod.reason != null && p.pod.reason !== p.pod.phase ? `: ${p.pod.reason}` : ''}` : p.status})\n`)
  }
  if (refused.length > 0) throw new ContainerRefusedError(status.id, refused.map(p => `replica ${p.replica}: ${p.pod?.reason ?? 'Failed'}`).join(', '))
}

/** Pod failures where the container never ran: the engine refused it (the apply failed, not the workload). */
const NEVER_RAN = new Set(['ErrImagePull', 'ErrImageNeverPull', 'ImageNotFound', 'PortInUse', 'CreateContainerError', 'RunContainerError'])

class ContainerRefusedError extends BeeMeshError {
  constructor (id: string, what: string) {
    super(`${id} could not start: ${what} (see: beemesh describe workload ${id.split('/')[1] ?? id})`)
    this.name = 'ContainerRefusedError'
  }
}

/**
 * After placement, a container workload's pods are still pulling, creating
 * and starting: wait (at most 2 min) until each runs, ended, or backs off,
 * showing phase changes.
 */
async function settleContainers (client: ApiClient, placed: WorkloadStatus, progress: (line: string) => void): Promise<WorkloadStatus> {
  const deadline = Date.now() + 120_000
  const seen = new Map<number, string>()
  let status = placed
  for (;;) {
    for (const p of status.placement) {
      const phase = p.pod != null ? `${p.pod.phase}${p.pod.reason != null && p.pod.reason !== p.pod.phase ? ` (${p.pod.reason})` : ''}` : p.status
      if (seen.get(p.replica) !== phase) { seen.set(p.replica, phase); progress(`  replica ${p.replica} on ${short(p.peerId)}: ${phase}`) }
    }
    const settled = status.placement.length >= status.replicas && status.placement.every(p => p.pod != null && SETTLED.has(p.pod.phase))
    if (settled || Date.now() > deadline) return status
    await new Promise(resolve => setTimeout(resolve, 200))
    // The list carries each workload's status without describe's pod-event round trips to the hosts.
    const id = status.id
    status = (await client.request<WorkloadStatus[]>('/v1/workloads', { timeoutMs: 10_000 })).find(w => w.id === id) ??
      await client.request<WorkloadStatus>(`/v1/workloads/${id}`, { timeoutMs: 10_000 })
  }
}

const SETTLED = new Set(['Running', 'Succeeded', 'Failed', 'CrashLoopBackOff'])

export async function getWorkloads (opts: WorkloadCliOptions): Promise<void> {
  const list = await new ApiClient(opts.api).request<WorkloadStatus[]>('/v1/workloads', { timeoutMs: 10_000 })
  const now = Date.now()
  if (opts.output === 'json' || opts.output === 'yaml') { printRows(list, [], opts.output); return }
  const columns = [
    { header: 'NAMESPACE', value: (w: WorkloadStatus) => w.namespace },
    { header: 'NAME', value: (w: WorkloadStatus) => w.name },
    { header: 'KIND', value: (w: WorkloadStatus) => w.kind },
    { header: 'READY', value: (w: WorkloadStatus) => `${w.ready}/${w.replicas}` },
    { header: 'STATUS', value: (w: WorkloadStatus) => displayStatus(w) },
    { header: 'RESTARTS', value: (w: WorkloadStatus) => w.kind === 'container' ? String(w.placement.reduce((n, p) => n + (p.pod?.restarts ?? 0), 0)) : '-' },
    { header: 'EPOCH', value: (w: WorkloadStatus) => String(w.epoch) },
    { header: 'AGE', value: (w: WorkloadStatus) => formatAge(now - w.createdAt) }
  ]
  if (opts.output === 'wide') {
    columns.push({ header: 'TOPICS', value: w => w.topics.join(',') })
    columns.push({ header: 'NODES', value: w => w.placement.map(p => `${p.replica}:${short(p.peerId)}`).join(',') })
  }
  printRows(list, columns, 'table')
}

export async function getNodes (opts: WorkloadCliOptions): Promise<void> {
  const list = await new ApiClient(opts.api).request<NodeSummary[]>('/v1/nodes', { timeoutMs: 10_000 })
  if (opts.output === 'json' || opts.output === 'yaml') { printRows(list, [], opts.output); return }
  const pct = (used: number, cap: number): string => cap > 0 ? `${Math.round((100 * used) / cap)}%` : '-'
  const columns = [
    { header: 'NAME', value: (n: NodeSummary) => `${n.peerId}${n.self ? ' (this node)' : ''}` },
    { header: 'STATUS', value: (n: NodeSummary) => n.ready ? 'Ready' : 'NotReady' },
    { header: 'CPU', value: (n: NodeSummary) => `${formatCpu(n.allocated.cpuMillis)}/${formatCpu(n.capacity.cpuMillis)} (${pct(n.allocated.cpuMillis, n.capacity.cpuMillis)})` },
    { header: 'MEMORY', value: (n: NodeSummary) => `${formatMemoryApprox(n.allocated.memoryBytes)}/${formatMemoryApprox(n.capacity.memoryBytes)} (${pct(n.allocated.memoryBytes, n.capacity.memoryBytes)})` },
    { header: 'REPLICAS', value: (n: NodeSummary) => String(n.replicas) },
    { header: 'SANDBOX', value: (n: NodeSummary) => sandboxOf(n.capabilities) },
    { header: 'AGE', value: (n: NodeSummary) => formatAge(n.uptimeMs) }
  ]
  if (opts.output === 'wide') columns.push({ header: 'LABELS', value: n => Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '<none>' })
  printRows(list, columns, 'table')
}

/**
 * The STATUS column: the workload's status, or for a container workload that
 * is not Running, what its pods say (CrashLoopBackOff, ErrImagePull …), as kubectl shows pods.
 */
function displayStatus (w: WorkloadStatus): string {
  if (w.kind !== 'container' || w.status === 'Running') return w.status
  const reasons = [...new Set(w.placement.map(p => p.pod?.phase === 'Failed' || p.pod?.phase === 'CrashLoopBackOff' ? p.pod.reason ?? p.pod.phase : undefined).filter(r => r != null && r !== w.status))]
  const backoff = w.placement.some(p => p.pod?.phase === 'CrashLoopBackOff')
  if (backoff) return 'CrashLoopBackOff'
  return reasons.length > 0 ? `${w.status} (${reasons.join(', ')})` : w.status
}

export async function describeWorkload (name: string, opts: WorkloadCliOptions): Promise<void> {
  const id = workloadId(name)
  const d = await new ApiClient(opts.api).request<WorkloadDescription>(`/v1/workloads/${id}`, { timeoutMs: 10_000 })
  if (opts.output === 'json' || opts.output === 'yaml') { printObject(d as unknown as Record<string, unknown>, opts.output); return }
  const out = process.stdout
  const c = d.spec.container
  const fields: Record<string, unknown> = {
    Name: d.name,
    Namespace: d.namespace,
    Kind: d.kind,
    Status: displayStatus(d),
    Replicas: `${d.ready} ready / ${d.replicas} desired`,
    Epoch: d.epoch
  }
  if (c != null) {
    fields.Image = c.image
    if (c.command != null) fields.Command = c.command.join(' ')
    if (c.args != null) fields.Args = c.args.join(' ')
    fields['Restart policy'] = c.restartPolicy
    if (c.ports.length > 0) fields.Ports = c.ports.map(p => `${p.containerPort}/${p.protocol}${p.hostPort != null ? ` → host ${p.hostPort}` : ''}`).join(', ')
    if (c.env.length > 0) fields.Environment = c.env.map(e => `${e.name}=${e.value}`).join(', ')
    fields.Limits = `cpu ${c.limits.cpuMillis != null ? formatCpu(c.limits.cpuMillis) : '<none>'}, memory ${c.limits.memoryBytes != null ? formatMemory(c.limits.memoryBytes) : '<none>'}`
  } else {
    fields.Topics = d.topics.join(', ')
    fields.Delivery = d.delivery
  }
  fields[c != null ? 'Requests' : 'Resources'] = `cpu ${formatCpu(d.spec.resources.cpuMillis)}, memory ${formatMemory(d.spec.resources.memoryBytes)}`
  fields['Node selector'] = Object.entries(d.spec.nodeSelector).map(([k, v]) => `${k}=${v}`).join(', ') || '<none>'
  if (c == null) fields['Retries/timeout'] = `${d.spec.retries} retries, ${d.spec.timeoutMs} ms per call`
  if (d.artifact != null) fields.Artifact = `sha256:${d.artifact.sha256} (${d.artifact.size} bytes)`
  fields.Source = d.spec.source
  printObject(fields, 'table', out)
  out.write('Placement:\n')
  printRows(d.placement, c != null
    ? [
        { header: '  REPLICA', value: p => `  ${p.replica}` },
        { header: 'NODE', value: p => p.peerId },
        { header: 'PHASE', value: p => p.pod?.phase ?? p.status },
        { header: 'REASON', value: p => p.pod?.reason ?? '' },
        { header: 'RESTARTS', value: p => String(p.pod?.restarts ?? 0) },
        { header: 'EXIT', value: p => p.pod?.exitCode != null ? String(p.pod.exitCode) : '' },
        { header: 'EPOCH', value: p => String(p.epoch) }
      ]
    : [
        { header: '  REPLICA', value: p => `  ${p.replica}` },
        { header: 'NODE', value: p => p.peerId },
        { header: 'STATUS', value: p => p.status },
        { header: 'EPOCH', value: p => String(p.epoch) },
        { header: 'HANDLED', value: p => String(p.handled) },
        { header: 'FAILURES', value: p => String(p.failures) }
      ], 'table', out)
  out.write('Events:\n')
  const now = Date.now()
  const events = [
    ...d.events.map(e => ({ ...e, from: 'scheduler' })),
    ...(d.podEvents ?? []).map(e => ({ ts: e.ts, type: e.type, reason: e.reason, message: e.message, from: `replica ${e.replica}@${short(e.nodeId)}` }))
  ].sort((a, b) => a.ts - b.ts)
  printRows(events, [
    { header: '  TYPE', value: e => `  ${e.type}` },
    { header: 'REASON', value: e => e.reason },
    { header: 'AGE', value: e => formatAge(now - e.ts) },
    { header: 'FROM', value: e => e.from },
    { header: 'MESSAGE', value: e => e.message }
  ], 'table', out)
}

export async function deleteWorkload (name: string, opts: WorkloadCliOptions): Promise<void> {
  const id = workloadId(name)
  await new ApiClient(opts.api).request(`/v1/workloads/${id}`, { method: 'DELETE', timeoutMs: 10_000 })
  process.stdout.write(`workload ${id} deleted\n`)
}

function printLog (line: LogLine, out: NodeJS.WritableStream): void {
  const fields = line.fields != null && Object.keys(line.fields).length > 0 ? ` ${JSON.stringify(line.fields)}` : ''
  const mark = line.stream === 'error' ? ' ERROR' : line.stream === 'stderr' ? ' stderr' : ''
  out.write(`${new Date(line.ts).toISOString()} [${line.replica}@${short(line.nodeId)}]${mark} ${line.message}${fields}\n`)
}

/** `beemesh logs <name> [-f] [--tail N]`: lines from every replica, in time order. */
export async function logs (name: string, opts: WorkloadCliOptions & { follow: boolean, tail?: string }): Promise<void> {
  const id = workloadId(name)
  const tail = opts.tail != null ? Number(opts.tail) : undefined
  if (tail != null && (!Number.isInteger(tail) || tail < 1)) throw new InvalidArgumentError(`--tail must be a positive whole number, got "${opts.tail}"`)
  const client = new ApiClient(opts.api)
  const json = opts.output === 'json'
  const emit = (lines: LogLine[]): void => { for (const l of lines) json ? process.stdout.write(JSON.stringify(l) + '\n') : printLog(l, process.stdout) }
  let lines = await client.request<LogLine[]>(`/v1/workloads/${id}/logs${tail != null ? `?tail=${tail}` : ''}`, { timeoutMs: 15_000 })
  emit(lines)
  if (!opts.follow) return
  let since = lines.at(-1)?.ts ?? Date.now() - 1
  const seen = new Set(lines.filter(l => l.ts === since).map(l => JSON.stringify(l)))
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, 500))
    try {
      lines = await client.request<LogLine[]>(`/v1/workloads/${id}/logs?since=${since - 1}`, { timeoutMs: 15_000 })
    } catch (err) {
      if (err instanceof BeeMeshError && /not found/.test(err.message)) { process.stderr.write(`workload ${id} is gone\n`); return }
      throw err
    }
    const fresh = lines.filter(l => !seen.has(JSON.stringify(l)))
    emit(fresh)
    if (fresh.length > 0) {
      since = fresh.at(-1)!.ts
      for (const l of fresh) seen.add(JSON.stringify(l))
      if (seen.size > 50_000) seen.clear()
    }
  }
}
