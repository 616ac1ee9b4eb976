/**
 * Services as Kubernetes objects (docs/services.md, docs/kubernetes.md). A
 * BeeMesh service is a ClusterIP Service: its CLUSTER-IP is the address every
 * node's service proxy serves it on; its Endpoints are the replicas it
 * reaches, ready or not. Services a workload declares itself are listed too
 * (selector `beemesh.io/workload: <name>`, annotation `beemesh.io/origin:
 * workload`); they change with the workload, not through this API.
 */
import type { Endpoint, ServicePort, ServiceSpec } from '../../../services/directory.js'
import { atPath } from '../../../workloads/schema.js'
import type { WorkloadSpec } from '../../../workloads/types.js'
import { invalid } from '../errors.js'
import { age, type KubeObject, type TableColumn } from '../table.js'
import { WORKLOAD_LABEL } from './workloads.js'

export const ORIGIN_ANNOTATION = 'beemesh.io/origin'

export interface ServiceState {
  service: ServiceSpec
  address?: string
  replicas: Array<Endpoint & { ready: boolean }>
  /** The pod a replica is (podName of its workload). */
  podOf: (workloadId: string, replica: number) => string
}

function selectorOf (s: ServiceSpec): Record<string, string> {
  if (s.selector != null) return s.selector
  return { [WORKLOAD_LABEL]: s.workload?.split('/')[1] ?? s.name }
}

function manifestOf (s: ServiceSpec): { metadata?: Record<string, unknown> } | undefined {
  if (s.manifest == null) return undefined
  try {
    return JSON.parse(s.manifest) as { metadata?: Record<string, unknown> }
  } catch {
    return undefined
  }
}

export function toService (state: ServiceState): KubeObject {
  const s = state.service
  const m = manifestOf(s)
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      ...m?.metadata,
      name: s.name,
      namespace: s.namespace,
      uid: `service/${s.id}`,
      resourceVersion: '',
      creationTimestamp: new Date(s.createdAt).toISOString(),
      labels: s.labels ?? {},
      annotations: { ...(m?.metadata?.annotations as Record<string, string> | undefined), [ORIGIN_ANNOTATION]: s.origin === 'kube' ? 'kubernetes' : `workload ${s.workload ?? ''}` }
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: state.address ?? 'None',
      clusterIPs: state.address != null ? [state.address] : [],
      selector: selectorOf(s),
      ports: s.ports.map(p => ({ ...(p.name != null ? { name: p.name } : {}), protocol: 'TCP', port: p.port, targetPort: p.targetName ?? p.targetPort })),
      sessionAffinity: 'None',
      ipFamilies: ['IPv4']
    },
    status: { loadBalancer: {} }
  }
}

/** The hosts' addresses: a replica is reached through its node (`ip`: the node's address, `nodeName`: its peer id). */
export function toEndpoints (state: ServiceState, hostIp: (peerId: string) => string): KubeObject {
  const s = state.service
  const address = (r: Endpoint): Record<string, unknown> => ({
    ip: hostIp(r.peerId),
    nodeName: r.peerId,
    targetRef: { kind: 'Pod', namespace: s.namespace, name: state.podOf(r.workloadId, r.replica) }
  })
  const ready = state.replicas.filter(r => r.ready)
  const notReady = state.replicas.filter(r => !r.ready)
  const ports = s.ports.length > 0 ? s.ports.map(p => ({ ...(p.name != null ? { name: p.name } : {}), port: p.targetPort, protocol: 'TCP' })) : [{ name: 'call', port: 0, protocol: 'TCP' }]
  return {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: s.name, namespace: s.namespace, uid: `endpoints/${s.id}`, resourceVersion: '', creationTimestamp: new Date(s.createdAt).toISOString(), labels: s.labels ?? {} },
    subsets: state.replicas.length === 0 ? [] : [{ ...(ready.length > 0 ? { addresses: ready.map(address) } : {}), ...(notReady.length > 0 ? { notReadyAddresses: notReady.map(address) } : {}), ports }]
  }
}

/** The service's one EndpointSlice (kubectl describe svc reads these): every replica, with its readiness. */
export function toEndpointSlice (state: ServiceState, hostIp: (peerId: string) => string): KubeObject {
  const s = state.service
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${s.name}-beemesh`, namespace: s.namespace, uid: `endpointslice/${s.id}`, resourceVersion: '', creationTimestamp: new Date(s.createdAt).toISOString(), labels: { 'kubernetes.io/service-name': s.name, 'endpointslice.kubernetes.io/managed-by': 'beemesh.io' } },
    addressType: 'IPv4',
    endpoints: state.replicas.map(r => ({
      addresses: [hostIp(r.peerId)],
      conditions: { ready: r.ready, serving: r.ready, terminating: false },
      nodeName: r.peerId,
      targetRef: { kind: 'Pod', namespace: s.namespace, name: state.podOf(r.workloadId, r.replica) }
    })),
    ports: s.ports.map(p => ({ ...(p.name != null ? { name: p.name } : {}), port: p.targetPort, protocol: 'TCP' }))
  }
}

export const ENDPOINT_SLICE_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'AddressType', type: 'string', description: 'Address family', priority: 0, cell: o => String(o.addressType) },
  { name: 'Ports', type: 'string', description: 'Target ports', priority: 0, cell: o => (o.ports as Array<{ port: number }>).map(p => String(p.port)).join(',') || '<unset>' },
  { name: 'Endpoints', type: 'string', description: 'Replica addresses', priority: 0, cell: o => (o.endpoints as Array<{ addresses: string[] }>).flatMap(e => e.addresses).join(',') || '<unset>' },
  { name: 'Age', type: 'string', description: 'Time since creation', priority: 0, cell: (o, now) => age(o.metadata.creationTimestamp, now) }
]

function ports (o: KubeObject): string {
  const list = ((o.spec as { ports?: Array<{ port: number, protocol: string }> }).ports ?? [])
  return list.length === 0 ? '<none>' : list.map(p => `${p.port}/${p.protocol}`).join(',')
}

export const SERVICE_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Type', type: 'string', description: 'Always ClusterIP: an address on every node', priority: 0, cell: o => String((o.spec as { type: string }).type) },
  { name: 'Cluster-IP', type: 'string', description: 'The address every node\'s service proxy serves it on', priority: 0, cell: o => String((o.spec as { clusterIP: string }).clusterIP) },
  { name: 'External-IP', type: 'string', description: 'None: BeeMesh has no load balancers', priority: 0, cell: () => '<none>' },
  { name: 'Port(s)', type: 'string', description: 'Service ports', priority: 0, cell: ports },
  { name: 'Age', type: 'string', description: 'Time since creation', priority: 0, cell: (o, now) => age(o.metadata.creationTimestamp, now) },
  { name: 'Selector', type: 'string', description: 'Pod labels it selects', priority: 1, cell: o => Object.entries((o.spec as { selector: Record<string, string> }).selector).map(([k, v]) => `${k}=${v}`).join(',') }
]

export const ENDPOINTS_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  {
    name: 'Endpoints',
    type: 'string',
    description: 'Ready replicas (host address:port)',
    priority: 0,
    cell: o => {
      const subsets = (o.subsets as Array<{ addresses?: Array<{ ip: string }>, ports: Array<{ port: number }> }>)
      const out = subsets.flatMap(s => (s.addresses ?? []).flatMap(a => s.ports.map(p => `${a.ip}:${p.port}`)))
      return out.length === 0 ? '<none>' : out.length > 3 ? `${out.slice(0, 3).join(',')} + ${out.length - 3} more...` : out.join(',')
    }
  },
  { name: 'Age', type: 'string', description: 'Time since creation', priority: 0, cell: (o, now) => age(o.metadata.creationTimestamp, now) }
]

/**
 * A posted Service (v1) as a ServiceSpec: type ClusterIP, a non-empty
 * selector, TCP ports with a port and a targetPort (a number, or the name of
 * a container port of a selected workload). 422 naming the field otherwise.
 */
export function serviceFromObject (body: unknown, namespace: string, now: number, selected: (selector: Record<string, string>) => WorkloadSpec[]): ServiceSpec {
  const o = (body ?? {}) as { apiVersion?: unknown, kind?: unknown, metadata?: { name?: unknown, namespace?: unknown, labels?: unknown }, spec?: Record<string, unknown> }
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : ''
  const fail = (field: string, message: string): never => { throw invalid('Service', name, [{ reason: 'FieldValueInvalid', field, message }]) }
  if (o.kind !== 'Service' || o.apiVersion !== 'v1') fail('kind', `expected apiVersion v1 and kind Service, got ${String(o.apiVersion)} ${String(o.kind)}`)
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name)) fail('metadata.name', `Invalid value: ${JSON.stringify(name)}: a DNS-1123 label (lowercase letters, digits and '-', at most 63)`)
  if (o.metadata?.namespace != null && o.metadata.namespace !== namespace) fail('metadata.namespace', `the namespace of the object (${String(o.metadata.namespace)}) does not match the namespace on the request (${namespace})`)
  const spec = o.spec ?? {}
  const type = spec.type ?? 'ClusterIP'
  if (type !== 'ClusterIP') fail('spec.type', `Unsupported value: ${JSON.stringify(type)}: BeeMesh serves ClusterIP services (an address on every node); NodePort and LoadBalancer need a cluster edge it does not have`)
  if (spec.clusterIP === 'None') fail('spec.clusterIP', 'Unsupported value: "None": headless services are not supported; call the workload by its service name')
  const selector = spec.selector
  if (selector == null || typeof selector !== 'object' || Array.isArray(selector) || Object.keys(selector).length === 0 || !Object.values(selector).every(v => typeof v === 'string')) {
    fail('spec.selector', 'Required value: a map of pod labels (services without a selector are not supported)')
  }
  const labels = selector as Record<string, string>
  const rawPorts = spec.ports
  if (!Array.isArray(rawPorts) || rawPorts.length === 0) fail('spec.ports', 'Required value: at least one port')
  const workloads = selected(labels)
  const out: ServicePort[] = []
  for (const [i, raw] of (rawPorts as unknown[]).entries()) {
    const p = (raw ?? {}) as { name?: unknown, port?: unknown, targetPort?: unknown, protocol?: unknown }
    const at = (f: string): string => atPath(['spec', 'ports', i, f], '').replace(/: $/, '')
    if (p.protocol != null && p.protocol !== 'TCP') fail(at('protocol'), `Unsupported value: ${JSON.stringify(p.protocol)}: only TCP is tunnelled`)
    if (typeof p.port !== 'number' || !Number.isInteger(p.port) || p.port < 1 || p.port > 65535) fail(at('port'), `Invalid value: ${JSON.stringify(p.port ?? null)}: must be a port number from 1 to 65535`)
    let target = p.targetPort ?? p.port
    let targetName: string | undefined
    if (typeof target === 'string' && /^\d+$/.test(target)) target = Number(target)
    if (typeof target === 'string') {
      targetName = target
      const named = workloads.flatMap(w => w.container?.ports ?? []).find(cp => cp.name === target)
      if (named == null) fail(at('targetPort'), `Invalid value: ${JSON.stringify(target)}: no container port of the selected pods has that name`)
      target = named!.containerPort
    }
    if (typeof target !== 'number' || !Number.isInteger(target) || target < 1 || target > 65535) fail(at('targetPort'), `Invalid value: ${JSON.stringify(target)}: must be a port number or a container port's name`)
    if (p.name != null && typeof p.name !== 'string') fail(at('name'), 'Invalid value: must be a string')
    out.push({ ...(typeof p.name === 'string' ? { name: p.name } : {}), port: p.port as number, targetPort: target as number, ...(targetName != null ? { targetName } : {}) })
  }
  const metaLabels = o.metadata?.labels
  return {
    id: `${namespace}/${name}`,
    namespace,
    name,
    selector: labels,
    ports: out,
    origin: 'kube',
    createdAt: now,
    ...(metaLabels != null && typeof metaLabels === 'object' ? { labels: metaLabels as Record<string, string> } : {}),
    manifest: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: o.metadata, spec })
  }
}
