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

/** How a sandbox runs user code: a confined child process, or a worker thread of the node (fault isolation only). */
export type Isolation = 'confined' | 'thread'

/** How a node runs sandboxes: `refused` on a host that cannot confine, unless the node allows unconfined workloads. */
export type NodeIsolation = Isolation | 'refused'

/** What a node reports in its status (`sandbox`). */
export interface SandboxMode {
  /** What the host can do. */
  host: 'confined' | 'unconfined'
  /** What the node does with workload code: confine it, run it in worker threads (--allow-unconfined), or refuse it. */
  isolation: NodeIsolation
  /** Why the host cannot confine. */
  reason?: string
}

/** `GET /v1/status`: one node, as `beemesh status` and the web view show it. */
export interface NodeStatus {
  peerId: string
  state: string
  addresses: string[]
  uptimeMs: number
  peerCount: number
  /** Peers in the DHT routing table, and mesh peers per gossip topic (absent while the mesh is down). */
  dht?: { routingTable: number }
  topicMesh?: Record<string, number>
  /** How often this node heartbeats now (it grows with the mesh). */
  heartbeatMs?: number
  /** Other nodes this node hears (live in its membership view; absent while the mesh is down). */
  members?: number
  capacity: Resources
  allocated: Resources
  labels: Record<string, string>
  replicas: number
  /** The container engine's socket and whether it answers (absent: none configured). */
  containers?: { socket: string, available: boolean }
  dataDir: string
  pid: number
  version: string
  /** How workload code runs here (docs/security.md, "Workload confinement"). */
  sandbox: SandboxMode
  /** Membership and the policy in force. */
  trust: { root: string, member: boolean, labels: Record<string, string>, policy: { name: string, version: number } }
}
