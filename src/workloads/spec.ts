/**
 * toWorkloadSpec: the serialisable spec of a validated definition, with
 * defaults applied (see DEFAULTS in schema.ts).
 */
import { DEFAULTS, normaliseEnv, normalisePorts, restartBackoff, validateDefinition, type DefinitionFields } from './schema.js'
import { isMachine } from './machine.js'
import { parseCpu, parseMemory } from './quantities.js'
import type { ArtifactRef, ContainerDefinition, ContainerSpec, ResourceQuantities, WorkloadDefinition, WorkloadSpec } from './types.js'

const MEBIBYTE = 1024 * 1024

function uniqueTopics (topics: string[]): string[] {
  return [...new Set(topics)]
}

function memoryLimitMb (memoryBytes: number): number {
  return Math.max(DEFAULTS.minMemoryLimitMb, Math.ceil(memoryBytes / MEBIBYTE))
}

/** The container part of a container workload's spec, defaults applied. */
function toContainerSpec (d: ContainerDefinition): ContainerSpec {
  const limits = d.limits ?? {}
  return {
    image: d.image,
    // Empty lists mean "the image's own", as in Kubernetes.
    ...(d.command != null && d.command.length > 0 ? { command: [...d.command] } : {}),
    ...(d.args != null && d.args.length > 0 ? { args: [...d.args] } : {}),
    env: normaliseEnv(d.env),
    ports: normalisePorts(d.ports),
    ...(d.workingDir != null ? { workingDir: d.workingDir } : {}),
    restartPolicy: d.restartPolicy ?? DEFAULTS.restartPolicy,
    imagePullPolicy: d.imagePullPolicy ?? DEFAULTS.imagePullPolicy,
    limits: {
      ...(limits.cpu != null ? { cpuMillis: parseCpu(limits.cpu) } : {}),
      ...(limits.memory != null ? { memoryBytes: parseMemory(limits.memory) } : {})
    },
    backoff: restartBackoff(d.backoff),
    terminationGracePeriodSeconds: d.terminationGracePeriodSeconds ?? DEFAULTS.terminationGracePeriodSeconds
  }
}

/**
 * The serialisable spec of a definition (its handler, if any, is dropped),
 * with defaults applied: namespace `default`, 1 replica, `100m` CPU, `64Mi`
 * memory, `queue` delivery, 2 retries, 5000 ms timeout, and a worker heap of
 * the memory request in MiB (at least 16).
 *
 * A container workload has no artifact (an `artifact` given for one is
 * ignored), no topics and no retries; its requests default to its limits,
 * resource by resource, as in Kubernetes, and its `container` gets restart
 * policy `Always`, pull policy `IfNotPresent`, a 30 s grace period and restart
 * delays from 1 s doubling to 5 min (see DEFAULTS).
 */
export function toWorkloadSpec (def: ContainerDefinition, options: { source: string, now: number }): WorkloadSpec
export function toWorkloadSpec (def: DefinitionFields | WorkloadDefinition, options: { artifact: ArtifactRef, source: string, now: number, machineId?: string }): WorkloadSpec
export function toWorkloadSpec (def: DefinitionFields | WorkloadDefinition, { artifact, source, now, machineId }: { artifact?: ArtifactRef, source: string, now: number, machineId?: string }): WorkloadSpec {
  const { handler: _handler, onCall: _onCall, machine, ...fields } = def as DefinitionFields & { handler?: unknown, onCall?: unknown, machine?: unknown }
  const d = validateDefinition(fields, source, { requireHandler: false })
  const namespace = d.namespace ?? DEFAULTS.namespace
  if (d.kind === 'container') {
    const requests = d.resources ?? {}
    const limits = d.limits ?? {}
    const memoryBytes = parseMemory(requests.memory ?? limits.memory ?? DEFAULTS.memory)
    return {
      id: `${namespace}/${d.name}`,
      name: d.name,
      namespace,
      kind: 'container',
      topics: [],
      replicas: d.replicas ?? DEFAULTS.replicas,
      resources: { cpuMillis: parseCpu(requests.cpu ?? limits.cpu ?? DEFAULTS.cpu), memoryBytes },
      nodeSelector: { ...(d.nodeSelector ?? {}) },
      delivery: DEFAULTS.delivery,
      retries: 0,
      timeoutMs: DEFAULTS.timeoutMs,
      memoryLimitMb: memoryLimitMb(memoryBytes),
      container: toContainerSpec(d),
      ...servicesOf(d.services, normalisePorts(d.ports).find(p => p.protocol === 'TCP')?.containerPort),
      source,
      createdAt: now
    }
  }
  if (artifact == null) throw new TypeError(`toWorkloadSpec: a ${d.kind} workload needs the artifact of its bundled module`)
  const resources: ResourceQuantities = d.resources ?? {}
  const memoryBytes = parseMemory(resources.memory ?? DEFAULTS.memory)
  if (d.kind === 'stateful') {
    const id = machineId ?? (isMachine(machine) ? machine.id : undefined)
    return {
      id: `${namespace}/${d.name}`,
      name: d.name,
      namespace,
      kind: 'stateful',
      topics: [],
      replicas: 1,
      resources: { cpuMillis: parseCpu(resources.cpu ?? DEFAULTS.cpu), memoryBytes },
      nodeSelector: { ...(d.nodeSelector ?? {}) },
      delivery: DEFAULTS.delivery,
      retries: 0,
      timeoutMs: d.timeoutMs ?? DEFAULTS.timeoutMs,
      memoryLimitMb: memoryLimitMb(memoryBytes),
      durability: d.durability ?? DEFAULTS.durability,
      snapshotEvery: d.snapshotEvery ?? DEFAULTS.snapshotEvery,
      ...(id != null ? { machineId: id } : {}),
      ...servicesOf(d.services),
      artifact: { sha256: artifact.sha256, size: artifact.size },
      source,
      createdAt: now
    }
  }
  return {
    id: `${namespace}/${d.name}`,
    name: d.name,
    namespace,
    kind: d.kind,
    topics: uniqueTopics(d.topics ?? []),
    replicas: d.replicas ?? DEFAULTS.replicas,
    resources: { cpuMillis: parseCpu(resources.cpu ?? DEFAULTS.cpu), memoryBytes },
    nodeSelector: { ...(d.nodeSelector ?? {}) },
    delivery: d.delivery ?? DEFAULTS.delivery,
    retries: d.retries ?? DEFAULTS.retries,
    timeoutMs: d.timeoutMs ?? DEFAULTS.timeoutMs,
    memoryLimitMb: memoryLimitMb(memoryBytes),
    ...servicesOf(d.services),
    artifact: { sha256: artifact.sha256, size: artifact.size },
    source,
    createdAt: now
  }
}

/** `{ services }` for a spec (none when the definition declares none); a container's service port defaults to its first TCP port. */
function servicesOf (services: ReadonlyArray<{ name: string, port?: number | undefined }> | undefined, defaultPort?: number): Pick<WorkloadSpec, 'services'> {
  if (services == null || services.length === 0) return {}
  return { services: services.map(s => ({ name: s.name, ...(s.port ?? defaultPort) != null ? { port: (s.port ?? defaultPort) as number } : {} })) }
}
