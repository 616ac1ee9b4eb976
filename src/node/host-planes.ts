/**
 * The planes that run workload code on this node, built from the runtime's
 * components: stateless replicas (src/stateless/), containers
 * (src/containers/), stateful machines and the state this node holds for
 * others (src/stateful/), and services with their tunnel (src/services/).
 * What they need of the scheduling planes (records, the mesh view, topic
 * dispatch) comes in as `HostPlaneLinks`, so this file only wires.
 */
import { supersedes } from '../machines/fencing.js'
import type { MeshView } from '../membership/mesh-view.js'
import { principalOfSender } from '../policy/trust.js'
import type { SchedulerMessage } from '../protocol/messages.js'
import type { TransitionRecord } from '../protocol/state.js'
import { workloadPrincipal, workloadResource } from '../scheduling/admission.js'
import type { CatalogReader } from '../scheduling/catalog.js'
import { ContainerHost, type PodOutcome } from '../containers/container-host.js'
import { ServicePlane } from '../services/plane.js'
import { ServiceTunnel } from '../services/tunnel.js'
import { CallError } from '../services/errors.js'
import type { Endpoint } from '../services/directory.js'
import { MachineHost } from '../stateful/machine-host.js'
import { StateHolder } from '../stateful/state-holder.js'
import type { OwnerLocation, StatefulApi } from '../stateful/workload-api.js'
import { ReplicaHost } from '../stateless/replica-host.js'
import type { TopicDispatch } from '../stateless/topics.js'
import { WorkloadJournal } from '../store/journal.js'
import type { Logger } from '../transport/logger.js'
import type { CallRequest, WorkloadSpec } from '../workloads/types.js'
import type { WorkloadRuntimeInit } from './workload-components.js'

/** What the host planes use of the scheduling planes and the runtime (read when called: some are built after them). */
export interface HostPlaneLinks {
  log: Logger
  view: MeshView
  catalog: CatalogReader
  topics: () => TopicDispatch
  stateful: () => StatefulApi
  gossip: (message: SchedulerMessage) => Promise<void>
  onPodEnded: (id: string, replica: number, epoch: number, outcome: PodOutcome) => void
  onMachineCompleted: (spec: WorkloadSpec, epoch: number, output: unknown) => void
  onMachineFailed: (spec: WorkloadSpec, error: string) => void
  onTransition: (id: string, t: TransitionRecord) => void
  /** A replica's readiness changed: heartbeat soon. */
  onReadinessChanged: () => void
}

export interface HostPlanes {
  host: ReplicaHost
  containers: ContainerHost
  holder: StateHolder
  machines: MachineHost
  services: ServicePlane
  tunnel: ServiceTunnel
}

export function hostPlanes (init: WorkloadRuntimeInit, links: HostPlaneLinks): HostPlanes {
  const { mesh, trust, log, view, catalog } = { ...init, ...links }
  const selfId = mesh.peerId
  const host: ReplicaHost = new ReplicaHost({
    selfId,
    artifacts: init.artifacts,
    log,
    publish: async (topic, data, from) => { await links.topics().publish(topic, data, { requireListeners: false, ...(from != null ? { from } : {}) }) },
    call: async (from, service, request, options) => await services.call(service, request, options, { principal: workloadPrincipal(from.spec), identity: await links.topics().identityOf(from), namespace: from.spec.namespace }),
    fetch: async (from, url, fetchInit) => await services.fetch(workloadPrincipal(from.spec), url, fetchInit),
    onTopicsChanged: topics => { links.topics().syncSubscriptions(topics) },
    metrics: init.metrics,
    ...(init.isolation != null ? { isolation: init.isolation } : {})
  })
  const containers: ContainerHost = new ContainerHost({
    selfId,
    ...(init.engine != null ? { engine: init.engine } : {}),
    log,
    onEnded: links.onPodEnded,
    ...(init.inspection != null ? { inspection: init.inspection } : {}),
    extraHosts: namespace => tunnel.extraHosts(namespace)
  })
  const journal = WorkloadJournal.fromStore(init.store)
  const holder = new StateHolder(journal, init.store, log, (id, epoch, owner) => {
    const owned = machines.get(id)
    if (owned != null && owner !== selfId && supersedes({ epoch, peerId: owner }, { epoch: owned.epoch, peerId: selfId })) {
      log.warn({ workload: id, epoch: owned.epoch, newer: epoch, by: owner }, 'a newer owner claimed this machine: stopping it')
      void machines.stop(id)
    }
  })
  const machines: MachineHost = new MachineHost({
    mesh,
    artifacts: init.artifacts,
    journal,
    holder,
    log,
    livePeers: () => view.livePeerIds().filter(p => p !== selfId),
    locate: (id): OwnerLocation | undefined => links.stateful().locate(id),
    onCompleted: links.onMachineCompleted,
    onFailed: (spec, _epoch, error) => { links.onMachineFailed(spec, error) },
    onLocation: loc => { void links.gossip({ type: 'location', location: loc }) },
    onTransition: links.onTransition,
    onPersisted: (id, n) => { init.metrics?.eventsHandled.inc({ workload: id }, n) },
    forbidSend: (spec, sender) => {
      const d = trust.decide(principalOfSender(sender ?? ''), 'send', workloadResource(spec))
      return d.allowed ? undefined : `forbidden: ${d.reason}`
    },
    ...(init.inspection != null ? { inspection: init.inspection } : {}),
    ...(init.isolation != null ? { isolation: init.isolation } : {}),
    placedBefore: (id, epoch) => (catalog.get(id)?.placement.some(p => p.replica === 0 && p.epoch < epoch) ?? false) || view.remoteReplicas(id).some(r => r.replica === 0 && r.epoch < epoch)
  })
  /** Runs a call on one of this node's replicas (the callee's side, after the policy let it through). */
  const serveCall = async (endpoint: Endpoint, request: CallRequest, deadline: number): Promise<unknown> => {
    const remaining = deadline - Date.now()
    if (endpoint.kind === 'container') throw new CallError('BAD_REQUEST', endpoint.service, `${endpoint.service} is a container service: connect to it over TCP (its address on every node: beemesh services), not with ctx.call`, { ran: false })
    if (endpoint.kind === 'stateful') {
      const ack = await links.stateful().sendEvent(endpoint.workloadId, request.data, { id: `call:${request.id}`, sender: request.caller, timeoutMs: Math.max(1, remaining) })
      return { state: ack.value, status: ack.status, seq: ack.seq, ...(ack.output !== undefined ? { output: ack.output } : {}) }
    }
    const local = host.get(endpoint.workloadId, endpoint.replica)
    if (local?.sandbox == null || local.status !== 'running') throw new CallError('UNAVAILABLE', endpoint.service, `replica ${endpoint.replica} of ${endpoint.workloadId} is not running here`, { ran: false })
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new CallError('TIMEOUT', endpoint.service, `timed out: replica ${endpoint.replica} of ${endpoint.workloadId} did not reply within the call's time`)) }, Math.max(1, remaining))
    })
    try {
      const result = await Promise.race([local.sandbox.invokeCall(request), expired])
      if (result.ok) return result.value
      if (result.cause === 'stopped') throw new CallError('UNAVAILABLE', endpoint.service, `replica ${endpoint.replica} of ${endpoint.workloadId} stopped before it ran the call`, { ran: false })
      throw new CallError(result.cause === 'timeout' ? 'TIMEOUT' : 'FAILED', endpoint.service, result.error)
    } finally {
      clearTimeout(timer)
    }
  }
  const services: ServicePlane = new ServicePlane({
    mesh,
    trust,
    log: log.child({ component: 'services' }),
    ...(init.metrics != null ? { metrics: init.metrics.services } : {}),
    workloads: () => [...catalog.values()].filter(r => r.status !== 'Deleted' && r.status !== 'Completed').map(r => r.spec),
    localReplicas: () => [
      ...host.list().map(r => ({ workloadId: r.workloadId, replica: r.replica, epoch: r.epoch, status: r.status })),
      ...machines.reports(),
      ...containers.reports()
    ],
    remoteReplicas: id => view.remoteReplicas(id),
    placedOn: id => [...new Set(catalog.get(id)?.placement.map(p => p.peerId) ?? [])],
    probe: async (spec, r, timeoutMs) => {
      if (spec.kind === 'stateless') return await (host.get(spec.id, r.replica)?.sandbox?.ping(timeoutMs) ?? false)
      if (spec.kind === 'stateful') return machines.get(spec.id)?.status === 'running'
      return await containers.probe(spec.id, r.replica, timeoutMs)
    },
    serveLocal: serveCall,
    onReadinessChanged: links.onReadinessChanged,
    livePeers: () => view.livePeerIds(),
    ...(init.serviceCidr != null ? { serviceCidr: init.serviceCidr } : {})
  })
  const tunnel = new ServiceTunnel({
    mesh,
    trust,
    log: log.child({ component: 'tunnel' }),
    ...(init.metrics != null ? { metrics: init.metrics.services } : {}),
    directory: services.directory,
    containers: {
      target: (id, replica, port) => containers.target(id, replica, port),
      principalOf: async ip => {
        const id = await containers.workloadAt(ip)
        if (id == null) return undefined
        const spec = catalog.get(id)?.spec
        return spec != null ? workloadPrincipal(spec) : principalOfSender(`workload:${id}`)
      }
    }
  })
  return { host, containers, holder, machines, services, tunnel }
}
