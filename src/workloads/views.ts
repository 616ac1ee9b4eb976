/**
 * What the API serves and the CLI, the Kubernetes mapping and the web view
 * read: a workload as `get`/`describe` show it, a node as `get nodes` shows
 * it. Plain types with no imports beyond types.ts, so the browser bundle can
 * import them (src/ui/web/api.ts); the zod schemas in records.ts are checked
 * against them.
 */
import type { Resources, WorkloadSpec } from './types.js'

/** Where a workload is in its life (the record's status). */
export type WorkloadStatusName = 'Pending' | 'Running' | 'Degraded' | 'Unschedulable' | 'Failed' | 'Succeeded' | 'Completed' | 'Deleted'

/** A line of a workload's history, as `describe` and `kubectl get events` show it. */
export interface SchedulingEvent {
  ts: number
  type: 'Normal' | 'Warning'
  reason: string
  message: string
}

/** A container replica's pod state, as `get` and `describe` show it. */
export interface PodReport {
  phase: string
  reason?: string
  restarts: number
  exitCode?: number
}

export interface ReplicaPlacement {
  replica: number
  peerId: string
  epoch: number
  status: 'starting' | 'running' | 'failed' | 'lost' | 'exited'
  handled: number
  failures: number
  /** Container replicas: pod phase (Running, CrashLoopBackOff, Succeeded, Failed …), reason, restarts. */
  pod?: PodReport
}

/** A workload as `get`/`describe` show it: the record plus what the mesh observes now. */
export interface WorkloadStatus {
  id: string
  name: string
  namespace: string
  kind: WorkloadSpec['kind']
  status: WorkloadStatusName
  replicas: number
  ready: number
  epoch: number
  placement: ReplicaPlacement[]
  topics: string[]
  delivery: WorkloadSpec['delivery']
  artifact: WorkloadSpec['artifact']
  createdAt: number
  updatedAt: number
  /** Stateful workloads that completed: the machine's output. */
  output?: unknown
  /** Kubernetes labels and kind, for workloads created through the Kubernetes API (see WorkloadSpec). */
  labels?: Record<string, string>
  kubeKind?: WorkloadSpec['kubeKind']
  manifest?: string
  durability?: WorkloadSpec['durability']
}

export interface WorkloadDescription extends WorkloadStatus {
  spec: WorkloadSpec
  events: SchedulingEvent[]
  /** Container workloads: what each replica's pod went through, from the nodes that run them. */
  podEvents?: PodEventRecord[]
}

/** A mesh node as `get nodes` shows it: this node, and every peer heartbeating. */
export interface NodeSummary {
  peerId: string
  self: boolean
  ready: boolean
  labels: Record<string, string>
  capacity: Resources
  allocated: Resources
  replicas: number
  uptimeMs: number
  /** Milliseconds since its last heartbeat arrived (0 for this node). */
  lastSeenMs: number
  /** Peers it is connected to (from its heartbeat). */
  links: string[]
  /** What it can run (from its heartbeat): `container`, `code`, and `confined` when it confines workload code. */
  capabilities: string[]
}

export interface PublishOutcome {
  id: string
  topic: string
  recipients: string[]
  /** Local replicas the event was offered to. */
  localReplicas: number
}

/** A container replica's pod event, from the node that runs it. */
export interface PodEventRecord {
  ts: number
  type: 'Normal' | 'Warning'
  reason: string
  message: string
  replica: number
  nodeId: string
}
