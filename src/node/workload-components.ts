/**
 * What the workload runtime is built from: one components object (the
 * transport, the node's stores and engine, its policy, its limits and
 * timings), from which src/node/workload-runtime.ts wires every plane.
 */
import type { Inspection } from '../actors/inspection.js'
import type { NodeMetrics } from '../actors/metrics.js'
import type { PolicySync } from '../actors/policy-sync.js'
import type { ContainerEngine } from '../containers/container-engine.js'
import type { Trust } from '../policy/trust.js'
import type { NodeIsolation } from '../sandbox/confine.js'
import type { ServiceCidr } from '../services/directory.js'
import type { NodeStore } from '../store/node-store.js'
import type { ArtifactService } from '../transport/artifacts.js'
import type { Logger } from '../transport/logger.js'
import type { MeshNode } from '../transport/mesh-node.js'
import type { Resources } from '../workloads/types.js'

export interface WorkloadRuntimeInit {
  mesh: MeshNode
  artifacts: ArtifactService
  /** The node database: stateful workloads' journals and fences live in it. */
  store: NodeStore
  log: Logger
  capacity: Resources
  labels: Record<string, string>
  /** Longest bid window; the tender closes early once every live peer answered. */
  tenderWindowMs?: number
  /** How long awardees have to fetch, start and confirm. */
  confirmTimeoutMs?: number
  heartbeatMs?: number
  heartbeatTimeoutMs?: number
  metrics?: NodeMetrics
  /** The container engine (Docker Engine API) this node runs container workloads on, if any. */
  engine?: ContainerEngine
  /** Whom this node trusts and what the policy allows (src/policy/trust.ts). */
  trust: Trust
  /** Spreads policies: heartbeats say which version each node enforces. */
  policySync?: PolicySync
  /** The node's inspector (`node start --inspect`): schedulers, pods and stateful workloads' machines show there. */
  inspection?: Inspection
  /** Where this node's service proxy puts service addresses (`--service-cidr`, default 198.18.0.0/16). */
  serviceCidr?: ServiceCidr
  /** How workload code runs here (src/sandbox/confine.ts); default: confined where the host can confine. */
  isolation?: NodeIsolation
  /** The clock the scheduling planes read (default Date.now). */
  now?: () => number
  /** Tender ids (default randomUUID). */
  newId?: () => string
}
