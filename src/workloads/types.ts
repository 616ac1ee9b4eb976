/**
 * Workload contracts shared by the CLI, the scheduler, the runtime and user
 * modules. `*Definition` is what a user writes (may hold functions);
 * `WorkloadSpec` is the validated, serialisable form that travels on the mesh.
 */

/** CPU in millicores and memory in bytes, after parsing Kubernetes quantities. */
export interface Resources {
  cpuMillis: number
  memoryBytes: number
}

/** An event delivered to a stateless handler. */
export interface TopicEvent<T = unknown> {
  topic: string
  /** The published JSON value. */
  data: T
  /** Peer id of the publishing node. */
  from: string
  /** Mesh-wide message id (the same on every replica that sees it). */
  id: string
  /** 1 on first delivery, then 2, 3… on retries. */
  attempt: number
}

export interface WorkloadIdentity {
  /** `<namespace>/<name>` */
  id: string
  name: string
  namespace: string
  /** Replica ordinal, 0-based. */
  replica: number
  /** Peer id of the node hosting this replica. */
  nodeId: string
  epoch: number
}

/** A service a workload offers to callers by name (docs/services.md). */
export interface ServiceDeclaration {
  /** The service's name (a DNS-1123 label), unique in the namespace. */
  name: string
  /** Container workloads: the container port the service reaches (default: the first declared port). Actors have none. */
  port?: number
}

export interface CallOptions {
  /** How long the whole call may take, retries included. Default 5000 ms. */
  timeout?: number
  /**
   * The request may run more than once: after a replica fails or vanishes
   * mid-call, it is retried on another. A call that is not idempotent is
   * retried only when it surely did not reach a replica (no connection).
   */
  idempotent?: boolean
  /** Attempts after the first (default 2), on other replicas where there are any. */
  retries?: number
}

/** A call as the called replica's `onCall` receives it. */
export interface CallRequest<T = unknown> {
  /** `<namespace>/<service>` */
  service: string
  data: T
  /** Who called: `workload:<namespace>/<name>`, or `deployer:<key>` for a call from the API. */
  caller: string
  /** The call's id (the same on every attempt). */
  id: string
  /** 1 on the first attempt, then 2, 3… on retries. */
  attempt: number
}

/** What `ctx.fetch` resolves with: a WHATWG Response (status, headers, text(), json(), arrayBuffer()). */
export type FetchResponse = Response

/** The options of `ctx.fetch`. */
export interface FetchInit { method?: string, headers?: Record<string, string>, body?: string, timeout?: number }

/** What the node's egress check answers a sandbox's fetch with (the sandbox makes a FetchResponse of it). */
export interface FetchReply { status: number, statusText: string, headers: Array<[string, string]>, body: Uint8Array }

export interface HandlerContext {
  readonly workload: WorkloadIdentity
  /** Publishes a JSON value on a topic of the mesh. */
  publish(topic: string, data: unknown): Promise<void>
  /** Writes a line to the workload's log (`beemesh logs <name>`). */
  log(message: string, fields?: Record<string, unknown>): void
  /**
   * Calls a service by name (`orders`, or `<namespace>/orders`) and resolves
   * with its reply. Rejects with a CallError (`code`: UNKNOWN_SERVICE,
   * NO_HEALTHY_REPLICA, TIMEOUT, DENIED, TOO_LARGE, UNAVAILABLE, FAILED).
   */
  call<R = unknown>(service: string, request: unknown, options?: CallOptions): Promise<R>
  /** `fetch` to a host outside the mesh, if the policy grants this workload `egress` to it. The global `fetch` is not available to actors. */
  fetch(url: string, init?: FetchInit): Promise<FetchResponse>
}

export type StatelessHandler<T = any> = (event: TopicEvent<T>, ctx: HandlerContext) => unknown | Promise<unknown>
/** Serves calls to a stateless workload's services: the value it returns (JSON) is the reply. */
export type CallHandler<T = any> = (request: CallRequest<T>, ctx: HandlerContext) => unknown | Promise<unknown>

export type Delivery = 'queue' | 'fanout'

export interface ResourceQuantities {
  /** Kubernetes CPU quantity: `100m`, `0.5`, `2`. */
  cpu?: string | number
  /** Kubernetes memory quantity: `64Mi`, `1Gi`, `500M`, or bytes. */
  memory?: string | number
}

export interface StatelessDefinition<T = any> {
  name: string
  kind: 'stateless'
  namespace?: string
  /** Topics that wake `handler`. A workload that only serves calls needs none. */
  topics?: string[]
  replicas?: number
  resources?: ResourceQuantities
  /** Only nodes whose labels include all of these may host it. */
  nodeSelector?: Record<string, string>
  /** `queue` (default): each event handled by one live replica. `fanout`: by every replica. */
  delivery?: Delivery
  /** Retries after a failed handler call before the event goes to the dead-letter topic. Default 2. */
  retries?: number
  /** A handler call running longer than this is stopped and counts as failed. Default 5000. */
  timeoutMs?: number
  /** Handles topic events; required when `topics` are given. */
  handler?: StatelessHandler<T>
  /** Services this workload offers; each call runs `onCall`. */
  services?: ServiceDeclaration[]
  onCall?: CallHandler
}

/** Where a stateful workload's acknowledged transitions live before the sender hears of them. */
export type Durability = 'replicated' | 'local'

/**
 * An XState v5 machine (`setup(...).createMachine(...)`), structurally: the
 * parts of `StateMachine` the runtime uses. Typed loosely so that `beemesh`
 * does not pin the user's xstate version.
 */
export interface MachineLogic {
  id: string
  config: unknown
  transition: (...args: any[]) => unknown
  getInitialSnapshot: (...args: any[]) => unknown
  getPersistedSnapshot: (...args: any[]) => unknown
  restoreSnapshot?: (...args: any[]) => unknown
}

export interface StatefulDefinition {
  name: string
  kind: 'stateful'
  namespace?: string
  /** The workload's behaviour: an XState v5 machine. One owner node runs it. */
  machine: MachineLogic
  /**
   * `replicated` (default): an event is acknowledged once its transition is in
   * the owner's journal and on two other peers. `local`: once it is in the
   * owner's journal (fsynced); a dead owner's disk is then the only copy.
   */
  durability?: Durability
  /** A full snapshot is journaled (and older entries compacted) every this many transitions. Default 100. */
  snapshotEvery?: number
  resources?: ResourceQuantities
  nodeSelector?: Record<string, string>
  /** How long one transition may run in the sandbox before it fails. Default 5000. */
  timeoutMs?: number
  /** Services this workload offers: a call's request is an event for the machine, its reply the acknowledged state. */
  services?: ServiceDeclaration[]
}

/** Kubernetes' pod restart policies: when an exited container is started again. */
export type RestartPolicy = 'Always' | 'OnFailure' | 'Never'

/** When the engine pulls the image: Kubernetes' imagePullPolicy. */
export type ImagePullPolicy = 'Always' | 'IfNotPresent' | 'Never'

export interface ContainerPort {
  containerPort: number
  /** Published on the node (the engine binds it); none when absent. */
  hostPort?: number
  protocol: 'TCP' | 'UDP'
  name?: string
}

export interface EnvVar {
  name: string
  value: string
}

/** Restart delays: `initialMs`, doubling up to `maxMs`; reset once a run lasts `resetAfterMs`. */
export interface RestartBackoff {
  initialMs: number
  maxMs: number
  resetAfterMs: number
}

/** The container of a container workload (one per replica, like a one-container pod). */
export interface ContainerSpec {
  image: string
  /** Overrides the image's entrypoint (Kubernetes `command`). */
  command?: string[]
  /** Overrides the image's cmd (Kubernetes `args`). */
  args?: string[]
  env: EnvVar[]
  ports: ContainerPort[]
  workingDir?: string
  restartPolicy: RestartPolicy
  imagePullPolicy: ImagePullPolicy
  /** Engine limits (HostConfig NanoCpus / Memory); absent = unlimited. Scheduling uses `resources` (requests). */
  limits: { cpuMillis?: number, memoryBytes?: number }
  backoff: RestartBackoff
  /** Seconds between SIGTERM and SIGKILL when the container is stopped. */
  terminationGracePeriodSeconds: number
}

/** The fields a user may write for a container; `toWorkloadSpec` fills the defaults. */
export interface ContainerFields {
  image: string
  command?: string[]
  args?: string[]
  /** `{ NAME: 'value' }` or Kubernetes' `[{ name, value }]`. */
  env?: Record<string, string> | EnvVar[]
  /** Container ports: `8080`, or `{ containerPort, hostPort?, protocol?, name? }`. */
  ports?: Array<number | { containerPort: number, hostPort?: number, protocol?: 'TCP' | 'UDP', name?: string }>
  workingDir?: string
  restartPolicy?: RestartPolicy
  imagePullPolicy?: ImagePullPolicy
  /** Engine limits; `resources` (requests) default to these when absent, as in Kubernetes. */
  limits?: ResourceQuantities
  backoff?: Partial<RestartBackoff>
  terminationGracePeriodSeconds?: number
}

export interface ContainerDefinition extends ContainerFields {
  name: string
  kind: 'container'
  namespace?: string
  replicas?: number
  /** Requests: what the scheduler reserves on the node. */
  resources?: ResourceQuantities
  nodeSelector?: Record<string, string>
  /** Services this workload offers: TCP to `port` (a container port), through every node's service proxy. */
  services?: ServiceDeclaration[]
}

export type WorkloadDefinition = StatelessDefinition | StatefulDefinition | ContainerDefinition

export interface ArtifactRef {
  /** Hex sha256 of the bundle bytes: the artifact's content address. */
  sha256: string
  size: number
}

/** The validated, serialisable form of a workload, as it travels on the mesh. */
export interface WorkloadSpec {
  /** `<namespace>/<name>` */
  id: string
  name: string
  namespace: string
  kind: 'stateless' | 'stateful' | 'container'
  /** Stateless: the topics that wake it. Stateful and container: none (events are addressed by workload id). */
  topics: string[]
  /** Stateless: replica count. Stateful: always 1 (one owner). */
  replicas: number
  resources: Resources
  nodeSelector: Record<string, string>
  delivery: Delivery
  retries: number
  timeoutMs: number
  /** V8 old-generation heap limit of each replica's worker, from resources.memory. */
  memoryLimitMb: number
  /** Stateful only. */
  durability?: Durability
  /** Stateful only. */
  snapshotEvery?: number
  /** Stateful only: the machine's id. */
  machineId?: string
  /** Services the workload offers by name (for containers, each with its container port). */
  services?: ServiceDeclaration[]
  /** Container only: what to run. */
  container?: ContainerSpec
  /** The bundled module (stateless and stateful); container workloads have none. */
  artifact?: ArtifactRef
  /** Where the module came from, for `describe`. */
  source: string
  createdAt: number
  /** Labels of the Kubernetes manifest it came from (a Deployment's pod template labels): `kubectl get -l` selects on them. */
  labels?: Record<string, string>
  /** Created through the Kubernetes API as this kind (container workloads are shown as Deployments otherwise). */
  kubeKind?: 'Pod' | 'Deployment' | 'Actor' | 'Machine'
  /** The object as posted to the Kubernetes API (JSON, without status): GET shows it, PATCH applies to it. */
  manifest?: string
  /** Who deployed it, signed over the rest of the spec (src/policy/credentials.ts): every node checks it before it bids or runs. */
  provenance?: { deployer: string, signer: string, signedAt: number, expiresAt?: number, sig: string }
}

/** The bundled module of an actor workload (stateless or stateful); container workloads have none. */
export function artifactOf (spec: WorkloadSpec): ArtifactRef {
  if (spec.artifact == null) throw new Error(`${spec.id} (${spec.kind}) has no artifact`)
  return spec.artifact
}

/** The dead-letter topic a stateless workload's failed events go to. */
export function deadLetterTopic (workloadId: string): string {
  return `beemesh.dead-letter.${workloadId.replace('/', '.')}`
}
