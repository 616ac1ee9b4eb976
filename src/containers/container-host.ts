import { connect } from 'node:net'
import type { PodEventRecord } from '../workloads/views.js'
import { createActor, fromPromise, type ActorRefFrom, type SnapshotFrom } from 'xstate'
import { describeError } from '../errors.js'
import { podMachine, podPhase, type ContainerExit, type ContainerRef, type CreateContainerInput, type EnsureImageInput, type EnsureImageOutput, type PodEvent, type StopContainerInput } from '../machines/pod-machine.js'
import type { Logger } from '../transport/logger.js'
import type { Resources, WorkloadSpec } from '../workloads/types.js'
import { EngineUnavailableError } from './container-errors.js'
import type { ContainerNetwork, PodEngine } from './container-engine.js'
import type { Inspection } from '../actors/inspection.js'
import type { LogLine, ReplicaReport } from '../protocol/messages.js'

/** Labels every BeeMesh container carries: how a restarted node finds, adopts or removes its own. */
export const LABELS = {
  workload: 'beemesh.workload',
  replica: 'beemesh.replica',
  epoch: 'beemesh.epoch',
  node: 'beemesh.node'
} as const

/** A pod event as `describe` shows it. */
/** How a container replica ended by its restart policy (Succeeded / Failed): not to be replaced. */
export interface PodOutcome {
  phase: 'Succeeded' | 'Failed'
  reason: string
  exitCode?: number
  message?: string
}

export interface LocalPod {
  workloadId: string
  spec: WorkloadSpec
  replica: number
  epoch: number
  containerName: string
  actor: ActorRefFrom<typeof podMachine>
  events: PodEventRecord[]
  startedAt: number
  /** Set once STOP was sent: the pod is going away on purpose. */
  stopping: boolean
}

export interface ContainerHostInit {
  selfId: string
  engine?: PodEngine
  log: Logger
  /** A replica reached Succeeded or Failed by its restart policy. */
  onEnded: (workloadId: string, replica: number, epoch: number, outcome: PodOutcome) => void
  /** Engine health: how often it is pinged. Default 2000 ms. */
  pingEveryMs?: number
  /** The node's inspector: pod machines show as `pod:<workload id>#<replica>@<node>`. */
  inspection?: Inspection
  /**
   * `/etc/hosts` lines for a new container of the namespace (`name:ip`): the
   * service addresses of the node's service proxy (src/services/tunnel.ts).
   * Read when the container is created.
   */
  extraHosts?: (namespace: string) => string[]
}

/** Where the service proxy reaches a container port of a local replica. */
export interface TunnelTarget {
  host: string
  port: number
}

const EVENTS_PER_POD = 50
/** How long a caller's address is trusted to belong to the same container before it is checked again. */
const CALLER_TTL_MS = 5_000
/** Least time between two engine-wide lookups of BeeMesh containers' addresses. */
const CALLER_REFRESH_MS = 250
const START_TIMEOUT_MS = 120_000
/** Grace period when the node itself shuts down: it must stop within its own deadline. */
const SHUTDOWN_GRACE_SECONDS = 1

/**
 * The container replicas this node runs, one pod-lifecycle machine each
 * (src/machines/pod-machine.ts) whose effects are dockerode calls through
 * the ContainerEngine. The node advertises the `container` capability only
 * while its engine answers pings.
 */
export class ContainerHost {
  private readonly pods = new Map<string, LocalPod>()
  /** Workloads with containers from before a restart not yet adopted or removed: no bids on them meanwhile. */
  private readonly unsorted = new Set<string>()
  private engineUp = false
  private engineInfo = ''
  private pinger?: NodeJS.Timeout
  /** Bridge address and published ports of each container this node started, by container id (read after each start). */
  private readonly networks = new Map<string, ContainerNetwork>()
  /** Every BeeMesh container of the engine (any node's: the engine may be shared), by bridge address. */
  private callers = new Map<string, { workloadId: string, containerId: string, checkedAt: number }>()
  private refreshing?: { started: number, done: Promise<void> }
  private lastRefresh = 0

  constructor (private readonly init: ContainerHostInit) {}

  /** Whether this node can run containers right now. */
  get available (): boolean {
    return this.init.engine != null && this.engineUp
  }

  get engine (): PodEngine | undefined {
    return this.init.engine
  }

  /** Pings the engine once (so the first heartbeat already tells), then every pingEveryMs. */
  async open (): Promise<void> {
    if (this.init.engine == null) return
    await this.ping()
    this.pinger = setInterval(() => { void this.ping() }, this.init.pingEveryMs ?? 2_000)
    this.pinger.unref()
  }

  private async ping (): Promise<void> {
    const engine = this.init.engine
    if (engine == null) return
    try {
      // The version once (slow on Podman), then only the cheap liveness check.
      if (!this.engineUp) {
        const info = await engine.ping(10_000)
        this.init.log.info({ engine: info.engine, version: info.version }, 'container engine answers: this node takes container workloads')
        this.engineInfo = `${info.engine} ${info.version}`
      } else {
        await engine.alive(5_000)
      }
      this.engineUp = true
    } catch (err) {
      if (this.engineUp || this.engineInfo === '') this.init.log.warn({ err: describeError(err) }, 'container engine does not answer: this node takes no container workloads')
      this.engineUp = false
      this.engineInfo = 'unreachable'
    }
  }

  private key (workloadId: string, replica: number): string {
    return `${workloadId}#${replica}`
  }

  list (): LocalPod[] {
    return [...this.pods.values()]
  }

  of (workloadId: string): LocalPod[] {
    return this.list().filter(p => p.workloadId === workloadId)
  }

  get (workloadId: string, replica: number): LocalPod | undefined {
    return this.pods.get(this.key(workloadId, replica))
  }

  /** Requests of the pods still holding the node: ended ones free their share. */
  allocated (): Resources {
    let cpuMillis = 0
    let memoryBytes = 0
    for (const p of this.pods.values()) {
      const status = statusOf(p)
      if (status === 'failed' || status === 'exited') continue
      cpuMillis += p.spec.resources.cpuMillis
      memoryBytes += p.spec.resources.memoryBytes
    }
    return { cpuMillis, memoryBytes }
  }

  /**
   * The health probe of a container replica that offers services, as a
   * Kubernetes tcpSocket readiness probe: its pod is Running and each service
   * port accepts a TCP connection within `timeoutMs`.
   */
  async probe (workloadId: string, replica: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    const pod = this.get(workloadId, replica)
    if (pod == null || podPhase(pod.actor.getSnapshot()).phase !== 'Running') return false
    if (!await this.knowNetwork(pod, timeoutMs)) return false
    for (const port of servicePorts(pod.spec)) {
      const target = this.target(workloadId, replica, port)
      if (target == null || !await canConnect(target, deadline - Date.now())) return false
    }
    return true
  }

  /**
   * Where a container port of a running local replica is reached from this
   * host: its loopback publication (a service port, or a user hostPort), else
   * the container's bridge address. Undefined when the replica is not running
   * here or its addresses are not known yet.
   */
  target (workloadId: string, replica: number, containerPort: number): TunnelTarget | undefined {
    const pod = this.get(workloadId, replica)
    if (pod == null || pod.stopping) return undefined
    const snapshot = pod.actor.getSnapshot()
    const containerId = snapshot.context.containerId
    if (containerId == null || podPhase(snapshot).phase !== 'Running') return undefined
    const net = this.networks.get(containerId)
    if (net == null) return undefined
    const bound = net.ports[`${containerPort}/tcp`]?.find(b => b.hostIp === '127.0.0.1' || b.hostIp === '' || b.hostIp === '0.0.0.0')
    if (bound != null) return { host: '127.0.0.1', port: bound.hostPort }
    return net.ip != null ? { host: net.ip, port: containerPort } : undefined
  }

  /**
   * The workload (id) of the BeeMesh container at a bridge address of this
   * host's engine, which other node processes may share: found by the labels
   * every BeeMesh container carries. A local pod answers at once; others come
   * from an engine-wide lookup, cached for CALLER_TTL_MS, then checked again
   * (an address may pass to another container once its holder is gone).
   */
  async workloadAt (ip: string): Promise<string | undefined> {
    for (const pod of this.pods.values()) {
      const id = pod.actor.getSnapshot().context.containerId
      if (id != null && !pod.stopping && this.networks.get(id)?.ip === ip) return pod.workloadId
    }
    const engine = this.init.engine
    if (engine == null) return undefined
    const asked = Date.now()
    const hit = this.callers.get(ip)
    if (hit != null && asked - hit.checkedAt < CALLER_TTL_MS) return hit.workloadId
    if (hit != null) {
      const d = await engine.inspect(hit.containerId).catch(() => undefined)
      if (d?.running === true && d.network.ip === ip && d.labels[LABELS.workload] === hit.workloadId) {
        hit.checkedAt = Date.now()
        return hit.workloadId
      }
    }
    await this.refreshCallers(asked)
    return this.callers.get(ip)?.workloadId
  }

  /** Waits for an engine-wide lookup that started at or after `since` (one at a time, at most one per CALLER_REFRESH_MS). */
  private async refreshCallers (since: number): Promise<void> {
    const engine = this.init.engine
    if (engine == null) return
    for (;;) {
      const current = this.refreshing
      if (current != null) {
        await current.done.catch(() => {})
        if (current.started >= since) return
        continue
      }
      if (this.lastRefresh >= since) return
      const wait = this.lastRefresh + CALLER_REFRESH_MS - Date.now()
      if (wait > 0) { await new Promise(resolve => setTimeout(resolve, wait)); continue }
      const started = Date.now()
      this.lastRefresh = started
      const done = (async () => {
        const found = await engine.list([LABELS.workload])
        const fresh = new Map<string, { workloadId: string, containerId: string, checkedAt: number }>()
        await Promise.all(found.filter(c => c.running).map(async c => {
          const d = await engine.inspect(c.id).catch(() => undefined)
          const workloadId = d?.labels[LABELS.workload]
          if (d?.running === true && d.network.ip != null && workloadId != null) fresh.set(d.network.ip, { workloadId, containerId: d.id, checkedAt: started })
        }))
        this.callers = fresh
      })()
      this.refreshing = { started, done }
      try {
        await done
      } catch (err) {
        this.init.log.debug({ err: describeError(err) }, 'could not list the engine\'s containers to identify a caller')
      } finally {
        this.refreshing = undefined
      }
      return
    }
  }

  /** Reads a pod's addresses from the engine when they are not known (an adopted container). */
  private async knowNetwork (pod: LocalPod, timeoutMs: number): Promise<boolean> {
    const containerId = pod.actor.getSnapshot().context.containerId
    if (containerId == null) return false
    if (this.networks.has(containerId)) return true
    await this.readNetwork(containerId, AbortSignal.timeout(Math.max(1, timeoutMs)))
    return this.networks.has(containerId)
  }

  private async readNetwork (containerId: string, signal?: AbortSignal): Promise<void> {
    try {
      const d = await this.init.engine?.inspect(containerId, signal != null ? { signal } : {})
      if (d?.running === true) this.networks.set(containerId, d.network)
    } catch (err) {
      this.init.log.debug({ container: containerId, err: describeError(err) }, 'could not read the container\'s addresses')
    }
  }

  /** What the heartbeat says of each pod here (of one workload's, with `workloadId`). */
  reports (workloadId?: string): ReplicaReport[] {
    return (workloadId != null ? this.of(workloadId) : this.list()).map(p => {
      const phase = podPhase(p.actor.getSnapshot())
      const ctx = p.actor.getSnapshot().context
      return {
        workloadId: p.workloadId,
        replica: p.replica,
        epoch: p.epoch,
        status: statusOf(p),
        handled: 0,
        failures: 0,
        pod: {
          phase: phase.phase,
          ...(phase.reason != null ? { reason: phase.reason } : {}),
          restarts: ctx.restarts,
          ...(ctx.exitCode != null ? { exitCode: ctx.exitCode } : {})
        }
      }
    })
  }

  /**
   * Starts a replica's pod. Resolves once the pod is past its start (running,
   * backing off, or already ended by its own doing); rejects when the node
   * cannot run it (no engine, engine lost), so the tender tries another node.
   */
  async start (spec: WorkloadSpec, replica: number, epoch: number, adopt?: { containerId: string, running: boolean }): Promise<LocalPod> {
    const engine = this.init.engine
    if (spec.container == null) throw new Error(`${spec.id} is not a container workload`)
    if (engine == null || !this.engineUp) throw new EngineUnavailableError(engine == null ? 'no container engine configured (start the node with --container-socket or DOCKER_HOST)' : `the container engine does not answer (${this.engineInfo})`)
    const key = this.key(spec.id, replica)
    const existing = this.pods.get(key)
    if (existing != null && existing.epoch >= epoch && statusOf(existing) !== 'failed') return existing
    if (existing != null) await this.stop(spec.id, replica)
    const containerName = `beemesh-${spec.namespace}-${spec.name}-${replica}-e${epoch}`
    const labels = { [LABELS.workload]: spec.id, [LABELS.replica]: String(replica), [LABELS.epoch]: String(epoch), [LABELS.node]: this.init.selfId }
    const container = spec.container
    const logic = podMachine.provide({
      actors: {
        // Each effect passes its actor's signal to the engine: the machine leaving the state
        // (a stop, a newer epoch) aborts the call instead of leaving it to finish unheeded.
        ensureImage: fromPromise<EnsureImageOutput, EnsureImageInput>(async ({ input, signal }) => {
          const present = await engine.hasImage(input.image, { signal })
          if (input.pullPolicy === 'Never' && !present) throw Object.assign(new Error(`image ${input.image} is not present on this node and imagePullPolicy is Never`), { reason: 'ErrImageNeverPull' })
          if (present && input.pullPolicy !== 'Always') return { pulled: false }
          await engine.pull(input.image, { signal })
          return { pulled: true }
        }),
        createContainer: fromPromise<ContainerRef, CreateContainerInput>(async ({ input, signal }) => {
          const publish = servicePorts(spec)
          const extraHosts = this.init.extraHosts?.(spec.namespace) ?? []
          const opts = { name: input.name, image: container.image, ...(container.command != null ? { command: container.command } : {}), ...(container.args != null ? { args: container.args } : {}), env: container.env, ports: container.ports, ...(container.workingDir != null ? { workingDir: container.workingDir } : {}), limits: container.limits, labels, ...(publish.length > 0 ? { publishLoopback: publish } : {}), ...(extraHosts.length > 0 ? { extraHosts } : {}) }
          try {
            return { containerId: await engine.create(opts, { signal }) }
          } catch (err) {
            // A leftover of this very replica and epoch (a restart before adoption decided): replace it.
            if ((err as { code?: string }).code !== 'CONTAINER_NAME_CONFLICT') throw err
            await engine.remove(input.name, { force: true, signal })
            return { containerId: await engine.create(opts, { signal }) }
          }
        }),
        startContainer: fromPromise<void, ContainerRef>(async ({ input, signal }) => {
          // Addresses may change with each start: the service proxy reads them afresh.
          this.networks.delete(input.containerId)
          await engine.start(input.containerId, { signal })
          if (servicePorts(spec).length > 0) await this.readNetwork(input.containerId, signal)
        }),
        waitContainer: fromPromise<ContainerExit, ContainerRef>(async ({ input, signal }) => await engine.wait(input.containerId, { signal })),
        stopContainer: fromPromise<void, StopContainerInput>(async ({ input, signal }) => { await engine.stop(input.containerId, input.graceSeconds, { signal }) }),
        removeContainer: fromPromise<void, ContainerRef>(async ({ input, signal }) => {
          this.networks.delete(input.containerId)
          await engine.remove(input.containerId, { force: true, signal })
        })
      }
    })
    const id = `pod:${spec.id}#${replica}`
    const actor = createActor(logic, { input: { spec: container, name: containerName, ...(adopt != null ? { adopt } : {}) }, id, ...(this.init.inspection != null ? { inspect: this.init.inspection.observer(id) } : {}) })
    const pod: LocalPod = { workloadId: spec.id, spec, replica, epoch, containerName, actor, events: [], startedAt: Date.now(), stopping: false }
    this.pods.set(key, pod)
    actor.on('pod.event', (e: PodEvent) => {
      pod.events.push({ ts: Date.now(), type: e.kind, reason: e.reason, message: e.message, replica, nodeId: this.init.selfId })
      if (pod.events.length > EVENTS_PER_POD) pod.events.splice(0, pod.events.length - EVENTS_PER_POD)
      this.init.log.debug({ workload: spec.id, replica, reason: e.reason }, e.message)
    })
    let ended = false
    actor.subscribe({
      next: snapshot => {
        if (ended || snapshot.status !== 'done' || pod.stopping) return
        ended = true
        const ctx = snapshot.context
        if (ctx.nodeFault) {
          this.init.log.warn({ workload: spec.id, replica, reason: ctx.reason }, `pod failed on this node: ${ctx.message ?? ctx.reason ?? 'engine lost'}`)
          return
        }
        const phase = snapshot.value === 'Succeeded' ? 'Succeeded' : 'Failed'
        this.init.onEnded(spec.id, replica, epoch, { phase, reason: ctx.reason ?? phase, ...(ctx.exitCode != null ? { exitCode: ctx.exitCode } : {}), ...(ctx.message != null ? { message: ctx.message } : {}) })
      },
      error: err => { this.init.log.error({ workload: spec.id, replica, err: describeError(err) }, 'pod machine crashed') }
    })
    actor.start()
    const settled = await waitForSettled(actor, START_TIMEOUT_MS)
    if (settled.status === 'done' && settled.context.nodeFault) {
      this.pods.delete(key)
      throw new EngineUnavailableError(settled.context.message ?? 'the container engine was lost while starting the pod')
    }
    return pod
  }

  /** Stops and removes a workload's containers here (all replicas, or one). */
  async stop (workloadId: string, replica?: number, { graceSeconds }: { graceSeconds?: number } = {}): Promise<void> {
    const targets = this.of(workloadId).filter(p => replica == null || p.replica === replica)
    await Promise.all(targets.map(async p => { await this.stopPod(p, graceSeconds) }))
  }

  private async stopPod (pod: LocalPod, graceSeconds?: number): Promise<void> {
    pod.stopping = true
    this.pods.delete(this.key(pod.workloadId, pod.replica))
    const snapshot = pod.actor.getSnapshot()
    const containerId = snapshot.context.containerId
    if (snapshot.status !== 'done') {
      const done = waitForDone(pod.actor, 60_000)
      pod.actor.send({ type: 'STOP', ...(graceSeconds != null ? { graceSeconds } : {}) })
      await done.catch(err => { this.init.log.warn({ workload: pod.workloadId, err: describeError(err) }, 'pod did not terminate in time') })
    }
    pod.actor.stop()
    // An ended pod keeps its container (and logs) until the workload goes; then it is removed.
    if (containerId != null) {
      this.networks.delete(containerId)
      await this.init.engine?.remove(containerId, { force: true }).catch(() => {})
    }
  }

  /** On node shutdown: stop and remove every container quickly (the mesh re-places them). */
  async stopAll (): Promise<void> {
    if (this.pinger != null) clearInterval(this.pinger)
    await Promise.all(this.list().map(async p => { await this.stopPod(p, SHUTDOWN_GRACE_SECONDS) }))
  }

  /** Pod events of a workload's replicas on this node, oldest first. */
  events (workloadId: string): PodEventRecord[] {
    return this.of(workloadId).flatMap(p => p.events).sort((a, b) => a.ts - b.ts)
  }

  /** Log lines of a workload's containers on this node, read from the engine. */
  async logLines (workloadId: string, { tail, since }: { tail?: number, since?: number } = {}): Promise<LogLine[]> {
    const engine = this.init.engine
    if (engine == null) return []
    const out: LogLine[] = []
    await Promise.all(this.of(workloadId).map(async pod => {
      const containerId = pod.actor.getSnapshot().context.containerId
      if (containerId == null) return
      const lines: LogLine[] = []
      try {
        await engine.logs(containerId, {
          follow: false,
          ...(tail != null ? { tail } : {}),
          ...(since != null ? { since: Math.floor(since / 1000) } : {}),
          onLine: (stream, message, ts) => { if (since == null || ts > since) lines.push({ ts, workloadId, replica: pod.replica, nodeId: this.init.selfId, stream, message }) }
        })
      } catch (err) {
        this.init.log.debug({ workload: workloadId, err: describeError(err) }, 'could not read container logs')
      }
      out.push(...lines)
    }))
    return out.sort((a, b) => a.ts - b.ts)
  }

  /**
   * After a restart: containers this node ran before. Each is adopted when
   * `decide` says its replica still belongs here at that epoch, and removed
   * when it is stale (the workload moved on, or is gone).
   */
  async adoptOrRemove (decide: (workloadId: string, replica: number, epoch: number) => Promise<{ adopt: WorkloadSpec } | { remove: string }>, { before }: { before?: () => Promise<void> } = {}): Promise<{ adopted: number, removed: number }> {
    const engine = this.init.engine
    if (engine == null || !this.engineUp) return { adopted: 0, removed: 0 }
    const found = await engine.list({ [LABELS.node]: this.init.selfId })
    for (const c of found) { const id = c.labels[LABELS.workload]; if (id != null) this.unsorted.add(id) }
    const counts = { adopted: 0, removed: 0 }
    try {
      await before?.()
      await Promise.all(found.map(async c => { counts[await this.sortOut(engine, c, decide)]++ }))
    } finally {
      this.unsorted.clear()
    }
    return counts
  }

  /** Whether this node still has to adopt or remove containers of the workload from before its restart. */
  isSorting (workloadId: string): boolean {
    return this.unsorted.has(workloadId)
  }

  private async sortOut (engine: PodEngine, c: { id: string, name: string, labels: Record<string, string>, running: boolean }, decide: (workloadId: string, replica: number, epoch: number) => Promise<{ adopt: WorkloadSpec } | { remove: string }>): Promise<'adopted' | 'removed'> {
    const workloadId = c.labels[LABELS.workload] ?? ''
    const replica = Number(c.labels[LABELS.replica])
    const epoch = Number(c.labels[LABELS.epoch])
    const verdict = !Number.isInteger(replica) || !Number.isInteger(epoch)
      ? { remove: `its labels name no replica and epoch (${JSON.stringify(c.labels)})` }
      : this.get(workloadId, replica) != null ? { remove: `replica ${replica} of ${workloadId} already runs here` } : await decide(workloadId, replica, epoch)
    if ('adopt' in verdict) {
      try {
        const pod = await this.start(verdict.adopt, replica, epoch, { containerId: c.id, running: c.running })
        pod.events.push({ ts: Date.now(), type: 'Normal', reason: 'Adopted', message: `container ${c.name} from before the node restarted (${c.running ? 'running' : 'exited'}) adopted at epoch ${epoch}`, replica, nodeId: this.init.selfId })
        this.init.log.info({ workload: workloadId, replica, epoch, container: c.name }, 'adopted a container from before the restart')
        return 'adopted'
      } catch (err) {
        this.init.log.warn({ workload: workloadId, err: describeError(err) }, 'could not adopt container: removing it')
      }
    }
    await engine.remove(c.id, { force: true }).catch(() => {})
    this.init.log.warn({ workload: workloadId, replica, epoch, container: c.name, why: 'remove' in verdict ? verdict.remove : 'adoption failed' }, 'removed a stale container from before the restart')
    return 'removed'
  }
}

/** The container ports a workload's services reach (each service's port, else the first TCP port): published on loopback for the service proxy. */
export function servicePorts (spec: WorkloadSpec): number[] {
  if (spec.container == null || spec.services == null || spec.services.length === 0) return []
  const firstTcp = spec.container.ports.find(p => p.protocol === 'TCP')?.containerPort
  const ports = spec.services.map(s => s.port ?? firstTcp).filter((p): p is number => p != null)
  return [...new Set(ports)]
}

/** Whether a TCP connection to `target` opens within `timeoutMs` (closed at once). */
function canConnect (target: TunnelTarget, timeoutMs: number): Promise<boolean> {
  if (timeoutMs <= 0) return Promise.resolve(false)
  return new Promise(resolve => {
    const socket = connect({ host: target.host, port: target.port })
    const done = (ok: boolean): void => { clearTimeout(timer); socket.destroy(); resolve(ok) }
    const timer = setTimeout(() => { done(false) }, timeoutMs)
    socket.once('connect', () => { done(true) })
    socket.once('error', () => { done(false) })
  })
}

/**
 * How a pod counts for placement: `failed` only when the node failed it (so
 * the mesh replaces it elsewhere); an ended pod (`exited`) keeps its place.
 */
function statusOf (pod: LocalPod): ReplicaReport['status'] {
  const snapshot = pod.actor.getSnapshot()
  if (snapshot.status === 'done') return snapshot.context.nodeFault ? 'failed' : 'exited'
  const value = snapshot.value as string
  if (value === 'Running') return 'running'
  return 'starting'
}

type PodSnapshot = SnapshotFrom<typeof podMachine>

const STARTING = new Set(['Pending', 'ContainerCreating'])

function waitForSettled (actor: ActorRefFrom<typeof podMachine>, timeoutMs: number): Promise<PodSnapshot> {
  return new Promise((resolve, reject) => {
    const check = (s: PodSnapshot): boolean => s.status !== 'active' || !STARTING.has(topState(s.value))
    const now = actor.getSnapshot()
    if (check(now)) { resolve(now); return }
    const timer = setTimeout(() => { sub.unsubscribe(); reject(new Error(`the pod did not start within ${timeoutMs} ms`)) }, timeoutMs)
    const sub = actor.subscribe(s => { if (check(s)) { clearTimeout(timer); sub.unsubscribe(); resolve(s) } })
  })
}

function waitForDone (actor: ActorRefFrom<typeof podMachine>, timeoutMs: number): Promise<PodSnapshot> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { sub.unsubscribe(); reject(new Error(`the pod did not terminate within ${timeoutMs} ms`)) }, timeoutMs)
    const sub = actor.subscribe(s => { if (s.status !== 'active') { clearTimeout(timer); sub.unsubscribe(); resolve(s) } })
  })
}

function topState (value: unknown): string {
  return typeof value === 'string' ? value : Object.keys(value as object)[0] ?? ''
}
