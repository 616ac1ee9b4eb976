/**
 * The workload record and everything in it, once: the spec a workload is
 * placed with (WorkloadSpecSchema), the record every node keeps of it (status,
 * placement, events; signed into the DHT as `/beemesh/workload/<ns>/<name>`),
 * and what a replica reports of its pod. The wire messages
 * (src/protocol/messages.ts) carry these; the API, CLI and web view read them.
 */
import * as z from 'zod'
import { ProvenanceSchema } from '../policy/credentials.js'
import type { WorkloadSpec } from './types.js'
import type { PodReport as PodReportType, SchedulingEvent as SchedulingEventType, WorkloadStatusName as WorkloadStatusNameType } from './views.js'

const peerId = z.string().min(10).max(128)
const workloadId = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/)
const resources = z.object({ cpuMillis: z.number().int().min(0), memoryBytes: z.number().int().min(0) })

export const WorkloadSpecSchema: z.ZodType<WorkloadSpec> = z.object({
  id: workloadId,
  name: z.string().min(1).max(63),
  namespace: z.string().min(1).max(63),
  kind: z.enum(['stateless', 'stateful', 'container']),
  topics: z.array(z.string().regex(/^[A-Za-z0-9._~:-]{1,200}$/)).max(64),
  replicas: z.number().int().min(1).max(100),
  resources,
  nodeSelector: z.record(z.string(), z.string()),
  delivery: z.enum(['queue', 'fanout']),
  retries: z.number().int().min(0).max(20),
  timeoutMs: z.number().int().min(10).max(600_000),
  memoryLimitMb: z.number().int().min(8),
  durability: z.enum(['replicated', 'local']).optional(),
  snapshotEvery: z.number().int().min(1).max(100_000).optional(),
  machineId: z.string().max(200).optional(),
  services: z.array(z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/), port: z.number().int().min(1).max(65535).optional() })).max(16).optional(),
  container: z.lazy(() => ContainerSpecSchema).optional(),
  artifact: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().min(0) }).optional(),
  source: z.string().max(1024),
  createdAt: z.number(),
  labels: z.record(z.string().max(317), z.string().max(63)).optional(),
  kubeKind: z.enum(['Pod', 'Deployment', 'Actor', 'Machine']).optional(),
  manifest: z.string().max(256 * 1024).optional(),
  provenance: ProvenanceSchema.optional()
}).refine(s => s.id === `${s.namespace}/${s.name}`, { message: 'id must be <namespace>/<name>' })
  .refine(s => s.kind === 'stateful' ? s.replicas === 1 && s.topics.length === 0 : s.kind === 'container' || s.topics.length > 0 || (s.services?.length ?? 0) > 0, { message: 'a stateless workload needs topics or services; a stateful one has exactly 1 replica and no topics' })
  .refine(s => s.kind === 'container' ? s.container != null && s.topics.length === 0 : s.artifact != null && s.container == null, { message: 'a container workload needs container and no topics; the others need an artifact' })

const quantity = z.number().int().min(0)
export const ContainerSpecSchema = z.object({
  image: z.string().min(1).max(512),
  command: z.array(z.string().max(4096)).max(256).optional(),
  args: z.array(z.string().max(4096)).max(256).optional(),
  env: z.array(z.object({ name: z.string().min(1).max(256), value: z.string().max(32_768) })).max(512),
  ports: z.array(z.object({ containerPort: z.number().int().min(1).max(65535), hostPort: z.number().int().min(1).max(65535).optional(), protocol: z.enum(['TCP', 'UDP']), name: z.string().max(63).optional() })).max(64),
  workingDir: z.string().max(4096).optional(),
  restartPolicy: z.enum(['Always', 'OnFailure', 'Never']),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']),
  limits: z.object({ cpuMillis: quantity.optional(), memoryBytes: quantity.optional() }),
  backoff: z.object({ initialMs: z.number().int().min(1), maxMs: z.number().int().min(1), resetAfterMs: z.number().int().min(0) }),
  terminationGracePeriodSeconds: z.number().int().min(0).max(3600)
})

/**
 * `failed`: the node could not run it (the mesh replaces it elsewhere).
 * `exited`: a container that ended by its restart policy (Succeeded/Failed): it keeps its place.
 */
export const ReplicaStatus = z.enum(['starting', 'running', 'failed', 'exited'])

/** A container replica's pod state, as `get` and `describe` show it. */
export const PodReport: z.ZodType<PodReportType> = z.object({
  phase: z.string().max(40),
  reason: z.string().max(100).optional(),
  restarts: z.number().int().min(0),
  exitCode: z.number().int().optional()
})
export type PodReport = PodReportType

export const SchedulingEvent: z.ZodType<SchedulingEventType> = z.object({ ts: z.number(), type: z.enum(['Normal', 'Warning']), reason: z.string().max(100), message: z.string().max(4000) })
export type SchedulingEvent = SchedulingEventType

export const WorkloadStatusName: z.ZodType<WorkloadStatusNameType> = z.enum(['Pending', 'Running', 'Degraded', 'Unschedulable', 'Failed', 'Succeeded', 'Completed', 'Deleted'])

/** How a container replica ended by its restart policy; kept in the record so it is never run again. */
export const ReplicaOutcome = z.object({
  phase: z.enum(['Succeeded', 'Failed']),
  reason: z.string().max(100),
  exitCode: z.number().int().optional(),
  message: z.string().max(2000).optional(),
  at: z.number()
})
export type ReplicaOutcome = z.infer<typeof ReplicaOutcome>
export type WorkloadStatusName = WorkloadStatusNameType

/** The signed DHT record of a workload (`/beemesh/workload/<ns>/<name>`): who runs what. */
export const WorkloadRecordSchema = z.object({
  spec: WorkloadSpecSchema,
  epoch: z.number().int().min(0),
  status: WorkloadStatusName,
  placement: z.array(z.object({ peerId, replica: z.number().int().min(0), epoch: z.number().int().min(0), outcome: ReplicaOutcome.optional() })),
  events: z.array(SchedulingEvent).max(50),
  updatedAt: z.number(),
  updatedBy: peerId,
  /** Stateful workloads that reached a final state: the machine's output. */
  output: z.unknown().optional()
})
export type WorkloadRecord = z.infer<typeof WorkloadRecordSchema>
