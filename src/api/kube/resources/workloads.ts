/**
 * Container workloads seen as Kubernetes objects: each is a Deployment, and
 * each of its replicas a Pod named `<workload>-<ordinal>`, on the node (peer)
 * that runs it. Pure: a WorkloadStatus and `now` give the objects.
 */
import type { ReplicaPlacement, WorkloadStatus } from '../../../workloads/views.js'
import { age, type KubeObject, type TableColumn } from '../table.js'

/** The label every pod of a workload carries, and its Deployment selects on. */
export const WORKLOAD_LABEL = 'beemesh.io/workload'

/** Annotations on each pod naming the workload and replica it is. */
export const WORKLOAD_ID_ANNOTATION = 'beemesh.io/workload-id'
export const REPLICA_ANNOTATION = 'beemesh.io/replica'

/** A Deployment's pods are `<deployment>-<ordinal>`; a workload created as a Pod has one, named like it. */
export function podName (w: Pick<WorkloadStatus, 'name' | 'kubeKind'>, replica: number): string {
  return w.kubeKind === 'Pod' ? w.name : `${w.name}-${replica}`
}

/** The labels the manifest gave (a Deployment's template labels), else `beemesh.io/workload: <name>`. */
export function labelsOf (w: Pick<WorkloadStatus, 'name' | 'labels'>): Record<string, string> {
  return w.labels != null && Object.keys(w.labels).length > 0 ? w.labels : { [WORKLOAD_LABEL]: w.name }
}

type Manifest = { metadata?: Record<string, unknown>, spec?: Record<string, unknown> }

/** The object as it was posted to the Kubernetes API, if it was. */
function manifestOf (w: WorkloadStatus): Manifest | undefined {
  if (w.manifest == null) return undefined
  try {
    const m = JSON.parse(w.manifest) as unknown
    return typeof m === 'object' && m != null ? m as Manifest : undefined
  } catch {
    return undefined
  }
}

/** The pod spec's containers: from the manifest, else just the name. */
function containersOf (w: WorkloadStatus): unknown[] {
  const m = manifestOf(w)
  const podSpec = w.kubeKind === 'Pod' ? m?.spec : (m?.spec?.template as Manifest | undefined)?.spec
  const containers = podSpec?.containers
  return Array.isArray(containers) ? containers : [{ name: w.name }]
}

interface ContainerState { phase: string, ready: boolean, state: Record<string, unknown>, reason: string }

function containerState (p: ReplicaPlacement): ContainerState {
  const pod = p.pod
  if (p.status === 'running' && (pod == null || pod.phase === 'Running')) return { phase: 'Running', ready: true, state: { running: {} }, reason: 'Running' }
  if (p.status === 'exited' || pod?.phase === 'Succeeded' || pod?.phase === 'Failed') {
    const phase = pod?.phase === 'Succeeded' ? 'Succeeded' : 'Failed'
    const reason = pod?.reason ?? (phase === 'Succeeded' ? 'Completed' : 'Error')
    return { phase, ready: false, state: { terminated: { exitCode: pod?.exitCode ?? (phase === 'Succeeded' ? 0 : 1), reason } }, reason }
  }
  if (p.status === 'lost') return { phase: 'Unknown', ready: false, state: { waiting: { reason: 'NodeLost' } }, reason: 'Unknown' }
  if (p.status === 'failed') return { phase: 'Failed', ready: false, state: { waiting: { reason: pod?.reason ?? 'Failed' } }, reason: pod?.reason ?? 'Failed' }
  // Starting, or running but the container waits (CrashLoopBackOff, ImagePullBackOff …).
  const reason = pod?.reason ?? (pod != null && pod.phase !== 'Running' && pod.phase !== 'Pending' ? pod.phase : 'ContainerCreating')
  return { phase: p.status === 'running' ? 'Running' : 'Pending', ready: false, state: { waiting: { reason } }, reason }
}

/** The pods of a container workload, one per placed replica. */
export function toPods (w: WorkloadStatus): KubeObject[] {
  if (w.kind !== 'container') return []
  const containers = containersOf(w)
  const image = (containers[0] as { image?: string } | undefined)?.image ?? ''
  const manifest = w.kubeKind === 'Pod' ? manifestOf(w) : undefined
  return w.placement.map(p => {
    const s = containerState(p)
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: podName(w, p.replica),
        namespace: w.namespace,
        uid: `${w.id}/${p.replica}`,
        resourceVersion: '',
        creationTimestamp: new Date(w.createdAt).toISOString(),
        labels: labelsOf(w),
        annotations: { ...(manifest?.metadata?.annotations as Record<string, string> | undefined), [WORKLOAD_ID_ANNOTATION]: w.id, [REPLICA_ANNOTATION]: String(p.replica), 'beemesh.io/epoch': String(p.epoch) },
        ...(w.kubeKind !== 'Pod' ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: w.name, uid: w.id, controller: true }] } : {})
      },
      spec: { ...manifest?.spec, nodeName: p.peerId, containers },
      status: {
        phase: s.phase,
        ...(s.phase === 'Unknown' ? { reason: 'NodeLost' } : {}),
        conditions: [{ type: 'Ready', status: s.ready ? 'True' : 'False' }],
        podIP: '',
        containerStatuses: [{ name: (containers[0] as { name?: string } | undefined)?.name ?? w.name, ready: s.ready, started: s.ready, restartCount: p.pod?.restarts ?? 0, state: s.state, image, imageID: '' }]
      }
    }
  })
}

/** The Scale subresource of a Deployment (autoscaling/v1). */
export function toScale (deployment: KubeObject): KubeObject {
  const spec = deployment.spec as { replicas: number, selector?: { matchLabels?: Record<string, string> } }
  const status = deployment.status as { replicas: number }
  return {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name: deployment.metadata.name, namespace: deployment.metadata.namespace, uid: deployment.metadata.uid, resourceVersion: deployment.metadata.resourceVersion, creationTimestamp: deployment.metadata.creationTimestamp },
    spec: { replicas: spec.replicas },
    status: { replicas: status.replicas, selector: Object.entries(spec.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') }
  }
}

/** A container workload as an apps/v1 Deployment; generation follows the record's epoch. */
export function toDeployment (w: WorkloadStatus): KubeObject {
  const running = w.placement.filter(p => containerState(p).ready).length
  const available = running >= w.replicas
  const m = manifestOf(w)
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      ...m?.metadata,
      name: w.name,
      namespace: w.namespace,
      uid: w.id,
      resourceVersion: '',
      generation: w.epoch,
      creationTimestamp: new Date(w.createdAt).toISOString(),
      ...(m == null ? { labels: labelsOf(w) } : {})
    },
    spec: m?.spec != null
      ? { ...m.spec, replicas: w.replicas }
      : { replicas: w.replicas, selector: { matchLabels: labelsOf(w) }, template: { metadata: { labels: labelsOf(w) }, spec: { containers: containersOf(w) } } },
    status: {
      observedGeneration: w.epoch,
      replicas: w.placement.length,
      updatedReplicas: w.placement.length,
      readyReplicas: running,
      availableReplicas: running,
      ...(running < w.placement.length ? { unavailableReplicas: w.placement.length - running } : {}),
      conditions: [
        { type: 'Available', status: available ? 'True' : 'False', reason: available ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable', message: `${running} of ${w.replicas} replicas running; workload ${w.status}`, lastUpdateTime: new Date(w.updatedAt).toISOString(), lastTransitionTime: new Date(w.updatedAt).toISOString() },
        { type: 'Progressing', status: 'True', reason: available ? 'NewReplicaSetAvailable' : 'ReplicaSetUpdated', message: `epoch ${w.epoch}`, lastUpdateTime: new Date(w.updatedAt).toISOString(), lastTransitionTime: new Date(w.createdAt).toISOString() }
      ]
    }
  }
}

type PodStatus = { phase: string, containerStatuses: Array<{ ready: boolean, restartCount: number, state: { waiting?: { reason: string }, terminated?: { reason: string } } }> }

export const POD_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Ready', type: 'string', priority: 0, description: 'Ready containers of all containers.', cell: o => { const c = (o.status as PodStatus).containerStatuses; return `${c.filter(s => s.ready).length}/${c.length}` } },
  {
    name: 'Status',
    type: 'string',
    priority: 0,
    description: 'The pod phase, or why its container waits or ended.',
    cell: o => { const s = o.status as PodStatus; const c = s.containerStatuses[0]; return c?.state.waiting?.reason ?? c?.state.terminated?.reason ?? s.phase }
  },
  { name: 'Restarts', type: 'integer', priority: 0, description: 'Container restarts.', cell: o => (o.status as PodStatus).containerStatuses.reduce((n, c) => n + c.restartCount, 0) },
  { name: 'Age', type: 'string', priority: 0, description: 'Time since creation.', cell: (o, now) => age(o.metadata.creationTimestamp, now) },
  { name: 'IP', type: 'string', priority: 1, description: 'Pod IP (none on BeeMesh).', cell: () => '<none>' },
  { name: 'Node', type: 'string', priority: 1, description: 'The peer that runs it.', cell: o => (o.spec as { nodeName: string }).nodeName }
]

type DeploymentStatus = { readyReplicas: number, updatedReplicas: number, availableReplicas: number }

export const DEPLOYMENT_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Ready', type: 'string', priority: 0, description: 'Ready of desired replicas.', cell: o => `${(o.status as DeploymentStatus).readyReplicas}/${(o.spec as { replicas: number }).replicas}` },
  { name: 'Up-to-date', type: 'integer', priority: 0, description: 'Replicas of the current spec.', cell: o => (o.status as DeploymentStatus).updatedReplicas },
  { name: 'Available', type: 'integer', priority: 0, description: 'Available replicas.', cell: o => (o.status as DeploymentStatus).availableReplicas },
  { name: 'Age', type: 'string', priority: 0, description: 'Time since creation.', cell: (o, now) => age(o.metadata.creationTimestamp, now) }
]
