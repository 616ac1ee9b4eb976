import { describeError } from '../errors.js'
import type { NodeIsolation } from '../sandbox/confine.js'
import type { Logger } from '../transport/logger.js'
import type { ArtifactService } from '../transport/artifacts.js'
import { artifactOf, deadLetterTopic, type Resources, type TopicEvent, type WorkloadSpec } from '../workloads/types.js'
import type { LogLine, ReplicaReport } from '../protocol/messages.js'
import { ReplicaSandbox } from '../sandbox/sandbox.js'
import type { NodeMetrics } from '../actors/metrics.js'
import type { CallOptions, FetchInit, FetchReply } from '../workloads/types.js'

export interface LocalReplica {
  workloadId: string
  spec: WorkloadSpec
  replica: number
  epoch: number
  status: ReplicaReport['status']
  handled: number
  failures: number
  startedAt: number
  sandbox?: ReplicaSandbox
  /** Events that arrived while the sandbox was starting. */
  backlog: TopicEvent[]
}

export interface ReplicaHostInit {
  selfId: string
  artifacts: ArtifactService
  log: Logger
  /** Publishes a JSON value on the mesh (and to local replicas). */
  /** `from`: the replica publishing (its workload identity signs the message); absent for the node's own messages. */
  publish: (topic: string, data: unknown, from?: LocalReplica) => Promise<void>
  /** `ctx.call` of a replica: resolves with the reply, rejects with a CallError. */
  call?: (from: LocalReplica, service: string, request: unknown, options: CallOptions) => Promise<unknown>
  /** `ctx.fetch` of a replica, through the egress check. */
  fetch?: (from: LocalReplica, url: string, init: FetchInit) => Promise<FetchReply>
  /** Called whenever the set of topics local replicas need changes. */
  onTopicsChanged: (topics: Set<string>) => void
  metrics?: NodeMetrics
  /** How sandboxes run workload code (confine.ts); default: confined where the host can confine. */
  isolation?: NodeIsolation
}

const LOG_LINES_PER_WORKLOAD = 20_000

/**
 * The replicas this node runs. Each runs user code in its own worker-thread
 * sandbox; a handler failure is retried `spec.retries` times, then the event
 * goes to the workload's dead-letter topic with the error.
 */
export class ReplicaHost {
  private readonly replicas = new Map<string, LocalReplica>()
  private readonly logs = new Map<string, LogLine[]>()

  constructor (private readonly init: ReplicaHostInit) {}

  private key (workloadId: string, replica: number): string {
    return `${workloadId}#${replica}`
  }

  list (): LocalReplica[] {
    return [...this.replicas.values()]
  }

  of (workloadId: string): LocalReplica[] {
    return this.list().filter(r => r.workloadId === workloadId)
  }

  get (workloadId: string, replica: number): LocalReplica | undefined {
    return this.replicas.get(this.key(workloadId, replica))
  }

  allocated (): Resources {
    let cpuMillis = 0
    let memoryBytes = 0
    for (const r of this.replicas.values()) {
      if (r.status === 'failed') continue
      cpuMillis += r.spec.resources.cpuMillis
      memoryBytes += r.spec.resources.memoryBytes
    }
    return { cpuMillis, memoryBytes }
  }

  topics (): Set<string> {
    const topics = new Set<string>()
    for (const r of this.replicas.values()) if (r.status !== 'failed') for (const t of r.spec.topics) topics.add(t)
    return topics
  }

  reports (): ReplicaReport[] {
    return this.list().map(r => ({ workloadId: r.workloadId, replica: r.replica, epoch: r.epoch, status: r.status, handled: r.handled, failures: r.failures }))
  }

  /**
   * Starts a replica: fetches the artifact (from `hints` first, then DHT
   * providers) and loads it in a sandbox. Topics are subscribed before the
   * sandbox is ready; events that arrive meanwhile wait in a backlog.
   */
  async start (spec: WorkloadSpec, replica: number, epoch: number, hints: string[]): Promise<LocalReplica> {
    const key = this.key(spec.id, replica)
    const existing = this.replicas.get(key)
    if (existing != null && existing.epoch >= epoch && existing.status !== 'failed') return existing
    if (existing != null) await this.stop(spec.id, replica)
    const local: LocalReplica = { workloadId: spec.id, spec, replica, epoch, status: 'starting', handled: 0, failures: 0, startedAt: Date.now(), backlog: [] }
    this.replicas.set(key, local)
    this.init.onTopicsChanged(this.topics())
    try {
      const artifactPath = await this.init.artifacts.ensure(artifactOf(spec).sha256, hints, { signal: AbortSignal.timeout(20_000) })
      const sandbox = new ReplicaSandbox({
        artifactPath,
        identity: { id: spec.id, name: spec.name, namespace: spec.namespace, replica, nodeId: this.init.selfId, epoch },
        timeoutMs: spec.timeoutMs,
        memoryLimitMb: spec.memoryLimitMb,
        onPublish: async (topic, data) => { await this.init.publish(topic, data, local) },
        ...(this.init.call != null ? { onCall: async (service: string, request: unknown, options: CallOptions) => await this.init.call!(local, service, request, options) } : {}),
        ...(this.init.fetch != null ? { onFetch: async (url: string, fetchInit: FetchInit) => await this.init.fetch!(local, url, fetchInit) } : {}),
        onLog: line => { this.appendLog({ ts: line.ts, workloadId: spec.id, replica, nodeId: this.init.selfId, stream: line.stream, message: line.message, fields: line.fields as Record<string, unknown> | undefined }) },
        ...(this.init.isolation != null ? { isolation: this.init.isolation } : {})
      })
      await sandbox.start()
      if (this.replicas.get(key) !== local) { await sandbox.stop(); throw new Error('replica was stopped while starting') }
      local.sandbox = sandbox
      local.status = 'running'
      this.appendLog({ ts: Date.now(), workloadId: spec.id, replica, nodeId: this.init.selfId, stream: 'log', message: `replica ${replica} started (epoch ${epoch})` })
      this.init.metrics?.replicaStarts.inc({ outcome: 'started' })
      const backlog = local.backlog.splice(0)
      for (const event of backlog) void this.handle(local, event)
      return local
    } catch (err) {
      local.status = 'failed'
      this.init.metrics?.replicaStarts.inc({ outcome: 'failed' })
      this.replicas.delete(key)
      this.init.onTopicsChanged(this.topics())
      this.appendLog({ ts: Date.now(), workloadId: spec.id, replica, nodeId: this.init.selfId, stream: 'error', message: `replica ${replica} failed to start: ${describeError(err)}` })
      throw err
    }
  }

  async stop (workloadId: string, replica?: number): Promise<void> {
    const targets = this.of(workloadId).filter(r => replica == null || r.replica === replica)
    for (const r of targets) this.replicas.delete(this.key(r.workloadId, r.replica))
    if (targets.length > 0) this.init.onTopicsChanged(this.topics())
    await Promise.all(targets.map(async r => {
      await r.sandbox?.stop().catch(() => {})
      this.appendLog({ ts: Date.now(), workloadId, replica: r.replica, nodeId: this.init.selfId, stream: 'log', message: `replica ${r.replica} stopped` })
    }))
  }

  async stopAll (): Promise<void> {
    const ids = new Set(this.list().map(r => r.workloadId))
    await Promise.all([...ids].map(async id => { await this.stop(id) }))
  }

  forgetLogs (workloadId: string): void {
    this.logs.delete(workloadId)
  }

  /** Hands an event to a local replica (queued while it starts). */
  deliver (local: LocalReplica, event: TopicEvent): void {
    if (local.status === 'starting') { local.backlog.push(event); return }
    if (local.status === 'running') void this.handle(local, event)
  }

  private async handle (local: LocalReplica, event: TopicEvent): Promise<void> {
    const attempts = 1 + local.spec.retries
    let lastError = ''
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const sandbox = local.sandbox
      if (sandbox == null || local.status !== 'running') return
      const result = await sandbox.invoke({ ...event, attempt })
      if (result.ok) {
        local.handled++
        this.init.metrics?.eventsHandled.inc({ workload: local.workloadId })
        return
      }
      local.failures++
      this.init.metrics?.eventsFailed.inc({ workload: local.workloadId, cause: result.cause })
      lastError = `${result.cause}: ${result.error}`
      this.appendLog({ ts: Date.now(), workloadId: local.workloadId, replica: local.replica, nodeId: this.init.selfId, stream: 'error', message: `event ${event.id} attempt ${attempt}/${attempts} failed (${lastError})` })
    }
    const topic = deadLetterTopic(local.workloadId)
    this.init.log.warn({ workload: local.workloadId, event: event.id, error: lastError }, 'event sent to the dead-letter topic')
    this.init.metrics?.deadLetters.inc({ workload: local.workloadId })
    await this.init.publish(topic, { workload: local.workloadId, replica: local.replica, nodeId: this.init.selfId, event, error: lastError, attempts }).catch(err => {
      this.init.log.error({ topic, err: describeError(err) }, 'dead-letter publish failed')
    })
  }

  private appendLog (line: LogLine): void {
    let lines = this.logs.get(line.workloadId)
    if (lines == null) { lines = []; this.logs.set(line.workloadId, lines) }
    lines.push(line)
    if (lines.length > LOG_LINES_PER_WORKLOAD) lines.splice(0, lines.length - LOG_LINES_PER_WORKLOAD)
  }

  logLines (workloadId: string, { tail, since }: { tail?: number, since?: number } = {}): LogLine[] {
    let lines = this.logs.get(workloadId) ?? []
    if (since != null) lines = lines.filter(l => l.ts > since)
    if (tail != null) lines = lines.slice(-tail)
    return lines
  }
}
