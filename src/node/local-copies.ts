/**
 * The copies of workloads this node runs, across its three hosts (stateless
 * replicas, containers, stateful machines), seen as one: what the scheduling
 * planes read (copies of a workload, resources used, capabilities), the
 * start of an awarded replica, and the stops the catalog's events and
 * fencing call for.
 */
import { supersedes } from '../machines/fencing.js'
import type { CatalogEvent } from '../scheduling/catalog.js'
import { sameSpec } from '../scheduling/record-lifecycle.js'
import type { LocalCopy } from '../scheduling/status.js'
import type { NodeIsolation } from '../sandbox/confine.js'
import type { LocalReplica } from '../stateless/replica-host.js'
import type { Logger } from '../transport/logger.js'
import type { Resources, WorkloadSpec } from '../workloads/types.js'
import type { ReplicaReport } from '../protocol/messages.js'
import type { BidderNode } from '../scheduling/bidder.js'
import type { ArtifactService } from '../transport/artifacts.js'
import { describeError } from '../errors.js'

/** What LocalCopies uses of the stateless replicas (src/stateless/replica-host.ts's ReplicaHost). */
export interface LocalReplicas {
  list: () => LocalReplica[]
  of: (workloadId: string) => LocalReplica[]
  get: (workloadId: string, replica: number) => LocalReplica | undefined
  reports: () => ReplicaReport[]
  allocated: () => Resources
  start: (spec: WorkloadSpec, replica: number, epoch: number, hints: string[]) => Promise<unknown>
  stop: (workloadId: string, replica?: number) => Promise<void>
}

/** A container replica, as LocalCopies reads it. */
export interface LocalContainer { workloadId: string, spec: WorkloadSpec, replica: number, epoch: number }

/** What LocalCopies uses of the containers (src/containers/container-host.ts's ContainerHost). */
export interface LocalContainers {
  readonly available: boolean
  of: (workloadId: string) => LocalContainer[]
  get: (workloadId: string, replica: number) => LocalContainer | undefined
  reports: (workloadId?: string) => ReplicaReport[]
  allocated: () => Resources
  isSorting: (workloadId: string) => boolean
  start: (spec: WorkloadSpec, replica: number, epoch: number) => Promise<unknown>
  stop: (workloadId: string, replica?: number) => Promise<void>
}

/** A machine this node owns, as LocalCopies reads it. */
export interface LocalMachine { spec: WorkloadSpec, epoch: number, status: string }

/** What LocalCopies uses of the stateful machines (src/stateful/machine-host.ts's MachineHost). */
export interface LocalMachines {
  get: (workloadId: string) => LocalMachine | undefined
  list: () => LocalMachine[]
  reports: () => ReplicaReport[]
  start: (spec: WorkloadSpec, epoch: number, hints: string[]) => Promise<void>
  stop: (workloadId: string, options?: { erase?: boolean }) => Promise<void>
}

export interface LocalCopiesInit {
  selfId: string
  host: LocalReplicas
  containers: LocalContainers
  machines: LocalMachines
  view: { forgetWorkload: (workloadId: string) => void }
  log: Logger
  artifacts: { ensure: ArtifactService['ensure'] }
  isolation?: NodeIsolation
}

export class LocalCopies implements BidderNode {
  constructor (private readonly i: LocalCopiesInit) {}

  /** Every copy of a workload here: stateless replicas, then the machine (replica 0), then containers. */
  copies (id: string): LocalCopy[] {
    const out: LocalCopy[] = this.i.host.of(id).map(r => ({ kind: 'replica', spec: r.spec, replica: r.replica, epoch: r.epoch, status: r.status, handled: r.handled, failures: r.failures }))
    const owned = this.i.machines.get(id)
    if (owned != null) out.push({ kind: 'machine', spec: owned.spec, replica: 0, epoch: owned.epoch, status: owned.status === 'running' ? 'running' : 'starting', handled: 0, failures: 0 })
    const pods = new Map(this.i.containers.of(id).map(p => [p.replica, p.spec]))
    for (const r of this.i.containers.reports(id)) {
      const spec = pods.get(r.replica)
      if (spec != null) out.push({ kind: 'container', spec, replica: r.replica, epoch: r.epoch, status: r.status, handled: r.handled, failures: r.failures, ...(r.pod != null ? { pod: r.pod } : {}) })
    }
    return out
  }

  /** Workloads with a stateless replica or a container (not failed) here. */
  hosted (): string[] {
    return [...new Set([
      ...this.i.host.list().filter(r => r.status !== 'failed').map(r => r.workloadId),
      ...this.i.containers.reports().filter(r => r.status !== 'failed').map(r => r.workloadId)
    ])]
  }

  /** What every copy here reports, for the heartbeat. */
  reports (): ReplicaReport[] {
    return [...this.i.host.reports(), ...this.i.machines.reports(), ...this.i.containers.reports()]
  }

  /** Resources of the replicas, machines and containers this node runs. */
  allocated (): Resources {
    const a = this.i.host.allocated()
    const c = this.i.containers.allocated()
    a.cpuMillis += c.cpuMillis
    a.memoryBytes += c.memoryBytes
    for (const m of this.i.machines.list()) {
      a.cpuMillis += m.spec.resources.cpuMillis
      a.memoryBytes += m.spec.resources.memoryBytes
    }
    return a
  }

  /**
   * What this node can run: `container` with an engine that answers, `code`
   * (actors, machines) unless it cannot confine it, and `confined` when it
   * runs that code confined by the OS rather than in worker threads.
   */
  capabilities (): string[] {
    return [
      ...(this.i.containers.available ? ['container'] : []),
      ...(this.i.isolation !== 'refused' ? ['code'] : []),
      ...(this.i.isolation === 'confined' ? ['confined'] : [])
    ]
  }

  isSorting (id: string): boolean {
    return this.i.containers.isSorting(id)
  }

  /** Starts an awarded replica on the host for its kind. */
  async start (spec: WorkloadSpec, replica: number, epoch: number, hints: string[]): Promise<void> {
    if (spec.kind === 'stateful') await this.i.machines.start(spec, epoch, hints)
    else if (spec.kind === 'container') await this.i.containers.start(spec, replica, epoch)
    else await this.i.host.start(spec, replica, epoch, hints)
  }

  /** Fetches a workload's artifact ahead of an award, from the peers named first (best effort). */
  prefetch (spec: WorkloadSpec, from: string[]): void {
    if (spec.artifact == null) return
    this.i.artifacts.ensure(spec.artifact.sha256, from, { signal: AbortSignal.timeout(20_000) }).catch(err => {
      this.i.log.debug({ workload: spec.id, err: describeError(err) }, 'artifact prefetch failed')
    })
  }

  /** Stops one ordinal here (`kubectl delete pod`); returns how many copies it stopped. */
  async stopReplica (id: string, replica: number): Promise<number> {
    const n = this.i.containers.of(id).filter(p => p.replica === replica).length + this.i.host.of(id).filter(r => r.replica === replica).length
    this.i.log.info({ workload: id, replica }, 'replica stopped on request; the guardian replaces it')
    await Promise.all([this.i.containers.stop(id, replica), this.i.host.stop(id, replica)])
    return n
  }

  /** Stops what a newly adopted record no longer wants here. */
  onCatalogEvent (e: CatalogEvent): void {
    const { record } = e
    const id = record.spec.id
    switch (e.type) {
      case 'record.ended':
        this.i.view.forgetWorkload(id)
        void this.i.host.stop(id)
        void this.i.containers.stop(id)
        // The workload's state is transient: every node drops what it holds of it.
        if (record.spec.kind === 'stateful') void this.i.machines.stop(id, { erase: true })
        return
      case 'record.scaled-down':
        // The ordinals at or above the count stop.
        for (const local of this.i.host.of(id)) if (local.replica >= record.spec.replicas) void this.i.host.stop(id, local.replica)
        for (const pod of this.i.containers.of(id)) if (pod.replica >= record.spec.replicas) void this.i.containers.stop(id, pod.replica)
        return
      case 'record.generation-replaced':
        // A replica from an older generation (different artifact or spec) is stopped once a newer one is placed.
        for (const local of this.i.host.of(id)) if (!sameSpec(local.spec, record.spec)) void this.i.host.stop(id, local.replica)
        for (const pod of this.i.containers.of(id)) if (!sameSpec(pod.spec, record.spec)) void this.i.containers.stop(id, pod.replica)
    }
  }

  /** A deletion heard of for a workload this node has no record of: stop whatever runs of it. */
  stopAllOf (id: string): void {
    void this.i.host.stop(id)
    void this.i.containers.stop(id)
  }

  /**
   * Fencing: if another node runs the same replica ordinal at a higher epoch
   * (it was re-tendered while this node was cut off), this node's copy stops.
   */
  fence (workloadId: string, replica: number, epoch: number, peerId: string): void {
    const self = this.i.selfId
    const owned = this.i.machines.get(workloadId)
    if (owned != null && replica === 0 && supersedes({ epoch, peerId }, { epoch: owned.epoch, peerId: self })) {
      this.i.log.warn({ workload: workloadId, epoch: owned.epoch, newer: epoch, by: peerId }, 'machine owned at a newer epoch elsewhere: stopping and dropping this copy')
      void this.i.machines.stop(workloadId, { erase: true })
    }
    const pod = this.i.containers.get(workloadId, replica)
    if (pod != null && supersedes({ epoch, peerId }, { epoch: pod.epoch, peerId: self })) {
      this.i.log.warn({ workload: workloadId, replica, epoch: pod.epoch, newer: epoch, by: peerId }, 'container replica superseded by a newer epoch elsewhere: stopping and removing it')
      void this.i.containers.stop(workloadId, replica)
    }
    const mine = this.i.host.get(workloadId, replica)
    if (mine == null || mine.status === 'failed') return
    if (supersedes({ epoch, peerId }, { epoch: mine.epoch, peerId: self })) {
      this.i.log.warn({ workload: workloadId, replica, epoch: mine.epoch, newer: epoch, by: peerId }, 'replica superseded by a newer epoch elsewhere: stopping it')
      void this.i.host.stop(workloadId, replica)
    }
  }
}
