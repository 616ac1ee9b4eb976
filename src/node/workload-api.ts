/**
 * What the APIs (the control API, the Kubernetes API) read and change of a
 * node's workloads: the contract WorkloadRuntime implements. It lives beside
 * the runtime rather than in src/workloads/ because its types come from
 * src/protocol/ and src/services/, which import src/workloads/ themselves.
 */
import type { LogLine } from '../protocol/messages.js'
import type { MachineStateReport } from '../protocol/state.js'
import type { ServicePlane } from '../services/plane.js'
import type { NodeSummary, WorkloadDescription, WorkloadStatus } from '../workloads/views.js'

export interface WorkloadApi {
  /** This node and the peers it hears heartbeats from. */
  nodes: () => NodeSummary[]
  /** Every workload not deleted, by id. */
  list: () => WorkloadStatus[]
  describe: (id: string) => Promise<WorkloadDescription>
  logs: (id: string, opts?: { tail?: number, since?: number }) => Promise<LogLine[]>
  delete: (id: string) => Promise<void>
  /** Validates and records a workload; `placed` settles when its tender does. */
  submit: (specInput: unknown, artifact?: Uint8Array) => Promise<{ placed: Promise<WorkloadStatus> }>
  scale: (id: string, replicas: number) => Promise<WorkloadStatus>
  machineState: (id: string) => Promise<MachineStateReport>
  /** Stops one replica wherever it runs; the guardian replaces it. */
  stopReplica: (id: string, replica: number) => Promise<{ peerId: string }>
  /** Services by name, calls, health probes and egress. */
  readonly services: ServicePlane
  /** A node's IP address as this node reaches it. */
  hostAddress: (peerId: string) => string
}
