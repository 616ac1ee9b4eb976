/**
 * Reaching a workload's replicas on the nodes that run them: their logs and
 * pod events (LOGS_PROTOCOL), gathered from every host, and stopping one
 * replica (REPLICA_PROTOCOL). The serving side checks that the principal the
 * asking node acts for (a deployer, proven by its token, or the node itself)
 * may `read` or `delete` the workload under the policy.
 */
import { describeError } from '../errors.js'
import type { MeshView } from '../membership/mesh-view.js'
import { TrustError } from '../policy/errors.js'
import { relayedPrincipal, relayOfCurrentRequest, type Relay } from '../policy/relay.js'
import { senderOf, type Trust } from '../policy/trust.js'
import { LOGS_PROTOCOL, LogsRequest, REPLICA_PROTOCOL, ReplicaStopRequest, type LogLine } from '../protocol/messages.js'
import { workloadResource } from '../scheduling/admission.js'
import type { ContainerHost } from '../containers/container-host.js'
import type { ReplicaHost } from '../stateless/replica-host.js'
import type { Logger } from '../transport/logger.js'
import type { MeshNode } from '../transport/mesh-node.js'
import { callRpc } from '../transport/rpc.js'
import type { WorkloadRecord } from '../workloads/records.js'
import type { PodEventRecord } from '../workloads/views.js'
import type { LocalCopies } from './local-copies.js'

export interface ReplicaAccessInit {
  mesh: MeshNode
  trust: Trust
  view: MeshView
  host: ReplicaHost
  containers: ContainerHost
  local: LocalCopies
  log: Logger
  /** The workload's record: this node's copy, else the mesh's (DHT). */
  known: (id: string) => Promise<WorkloadRecord | undefined>
}

export class ReplicaAccess {
  constructor (private readonly i: ReplicaAccessInit) {}

  private get selfId (): string { return this.i.mesh.peerId }

  /** Log lines of every replica of a workload, gathered from the nodes that host them. */
  async logs (record: WorkloadRecord, opts: { tail?: number, since?: number }): Promise<LogLine[]> {
    const id = record.spec.id
    const lines = (await this.fromHosts<LogLine>(record, opts, async () => [...this.i.host.logLines(id, opts), ...await this.i.containers.logLines(id, opts)], 'could not fetch logs')).sort((a, b) => a.ts - b.ts)
    return opts.tail != null ? lines.slice(-opts.tail) : lines
  }

  /** Pod events of a container workload, gathered from the nodes that run (or ran) its replicas. */
  async podEvents (record: WorkloadRecord): Promise<PodEventRecord[]> {
    const id = record.spec.id
    return (await this.fromHosts<PodEventRecord>(record, { events: true }, async () => this.i.containers.events(id), 'could not fetch pod events')).sort((a, b) => a.ts - b.ts)
  }

  /** Stops one replica on `peerId` (this node, or another over REPLICA_PROTOCOL). */
  async stopOn (peerId: string, id: string, replica: number): Promise<void> {
    if (peerId === this.selfId) await this.i.local.stopReplica(id, replica)
    else await callRpc(this.i.mesh, peerId, REPLICA_PROTOCOL, { workloadId: id, replica, ...relayOfCurrentRequest() }, { timeoutMs: 15_000 })
  }

  /** LOGS_PROTOCOL, served: this node's log lines (or pod events) of a workload. */
  async serveLogs (request: unknown, from: string): Promise<{ result: unknown }> {
    const req = LogsRequest.safeParse(request)
    if (!req.success) throw new Error('malformed logs request')
    await this.authorize(from, req.data, 'read')
    if (req.data.events === true) return { result: this.i.containers.events(req.data.workloadId) }
    return { result: [...this.i.host.logLines(req.data.workloadId, req.data), ...await this.i.containers.logLines(req.data.workloadId, req.data)] }
  }

  /** REPLICA_PROTOCOL, served: stops a replica here. */
  async serveStop (request: unknown, from: string): Promise<{ result: { stopped: number } }> {
    const req = ReplicaStopRequest.safeParse(request)
    if (!req.success) throw new Error('malformed replica stop request')
    await this.authorize(from, req.data, 'delete')
    return { result: { stopped: await this.i.local.stopReplica(req.data.workloadId, req.data.replica) } }
  }

  /** Asks every node that runs (or ran) a workload's replicas over LOGS_PROTOCOL (this node: `here`); silent or dead nodes add nothing. */
  private async fromHosts<T> (record: WorkloadRecord, request: Record<string, unknown>, here: () => Promise<T[]>, failure: string): Promise<T[]> {
    const id = record.spec.id
    const hosts = new Set([this.selfId, ...record.placement.map(p => p.peerId), ...this.i.view.remoteReplicas(id).map(r => r.peerId)])
    const all = await Promise.all([...hosts].map(async (peer): Promise<T[]> => {
      if (peer === this.selfId) return await here()
      if (!this.i.view.isLive(peer)) return []
      try {
        const { result } = await callRpc(this.i.mesh, peer, LOGS_PROTOCOL, { workloadId: id, ...request, ...relayOfCurrentRequest() }, { timeoutMs: 5_000 })
        return Array.isArray(result) ? result as T[] : []
      } catch (err) {
        this.i.log.debug({ peer, err: describeError(err) }, failure)
        return []
      }
    }))
    return all.flat()
  }

  /**
   * Whether another node may have this node stop (`delete`) or read the logs
   * and pod events of (`read`) a workload's replicas here: the principal it
   * acts for must be allowed by the policy on the workload. Throws TrustError naming the problem.
   */
  private async authorize (from: string, req: { workloadId: string } & Relay, action: 'read' | 'delete'): Promise<void> {
    const trust = this.i.trust
    const protocol = action === 'read' ? LOGS_PROTOCOL : REPLICA_PROTOCOL
    const principal = await relayedPrincipal(trust, trust.nodePrincipal(from), req).catch(err => {
      trust.noteRefusal(protocol, err instanceof TrustError ? err.reason : 'malformed', `refused ${from}: ${describeError(err)}`)
      throw err
    })
    const [namespace = '', name = ''] = req.workloadId.split('/')
    const d = trust.decide(principal, action, workloadResource((await this.i.known(req.workloadId))?.spec ?? { namespace, name }))
    if (!d.allowed) {
      const message = `forbidden by ${this.selfId}: ${senderOf(principal)} may not ${action} ${req.workloadId} (${d.reason}${d.rule == null ? ', default deny' : ''})`
      trust.noteRefusal(protocol, 'denied', message)
      throw new TrustError('denied', message)
    }
  }
}
