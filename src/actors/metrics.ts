import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface NodeGauges {
  peers: () => number
  workloads: () => number
  replicas: () => number
  /** Messages remembered by the replay window (each refused if seen again within it). */
  replayWindow: () => number
  /** Blank confined sandboxes kept warm. */
  warmSandboxes: () => number
}

/**
 * The node's Prometheus metrics (served at `GET /metrics`). One registry per
 * node, passed to the components that count things; no global registry.
 */
export class NodeMetrics {
  readonly registry = new Registry()
  readonly eventsHandled: Counter<'workload'>
  readonly eventsFailed: Counter<'workload' | 'cause'>
  readonly deadLetters: Counter<'workload'>
  readonly tenders: Counter<'outcome'>
  readonly tenderSeconds: Histogram<'outcome'>
  readonly replicaStarts: Counter<'outcome'>
  readonly refusals: Counter<'what' | 'reason'>
  readonly decisions: Counter<'action' | 'decision' | 'rule'>
  readonly bans: Counter
  readonly calls: Counter<'service' | 'side' | 'outcome'>
  readonly callSeconds: Histogram<'side'>
  readonly callsDenied: Counter<'service' | 'side'>
  readonly egress: Counter<'host' | 'outcome'>
  readonly tunnels: Counter<'service' | 'side' | 'outcome'>
  /** What the service plane counts (src/services/plane.ts). */
  readonly services: {
    call: (service: string, side: 'caller' | 'callee', outcome: string, seconds: number) => void
    denied: (service: string, side: 'caller' | 'callee') => void
    egress: (host: string, outcome: string) => void
    tunnel: (service: string, side: 'caller' | 'callee', outcome: string) => void
  }

  constructor (gauges: NodeGauges) {
    const registers = [this.registry]
    // The event-loop delay histogram samples every `eventLoopMonitoringPrecision` ms: prom-client's
    // 10 ms default wakes an idle node 100 times a second (0.75 % of a core, measured), 1 s does not.
    collectDefaultMetrics({ register: this.registry, prefix: 'beemesh_', eventLoopMonitoringPrecision: 1_000 })
    this.eventsHandled = new Counter({ name: 'beemesh_events_handled_total', help: 'Topic events handled by local replicas', labelNames: ['workload'], registers })
    this.eventsFailed = new Counter({ name: 'beemesh_event_attempts_failed_total', help: 'Handler attempts that failed, by cause (threw, timeout, crashed, out-of-memory)', labelNames: ['workload', 'cause'], registers })
    this.deadLetters = new Counter({ name: 'beemesh_dead_letters_total', help: 'Events sent to a dead-letter topic after their retries', labelNames: ['workload'], registers })
    this.tenders = new Counter({ name: 'beemesh_tenders_total', help: 'Tenders this node ran, by outcome (placed, unschedulable, failed, cancelled)', labelNames: ['outcome'], registers })
    this.tenderSeconds = new Histogram({ name: 'beemesh_tender_duration_seconds', help: 'Time from tender to every awardee confirmed (or the tender failing)', labelNames: ['outcome'], buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers })
    this.replicaStarts = new Counter({ name: 'beemesh_replica_starts_total', help: 'Replica starts on this node, by outcome (started, failed)', labelNames: ['outcome'], registers })
    this.refusals = new Counter({ name: 'beemesh_security_refusals_total', help: 'Messages, manifests and API calls refused, by what (gossip topic, stream protocol, manifest, api) and reason (bad-signature, replayed, stale, not-a-member, denied …)', labelNames: ['what', 'reason'], registers })
    this.decisions = new Counter({ name: 'beemesh_policy_decisions_total', help: 'Policy decisions, by action, decision (allow, deny) and the rule that decided (default-deny when none did)', labelNames: ['action', 'decision', 'rule'], registers })
    this.bans = new Counter({ name: 'beemesh_peers_banned_total', help: 'Peers disconnected and refused because gossipsub scored them below the graylist threshold', registers })
    this.calls = new Counter({ name: 'beemesh_calls_total', help: 'Service calls, by service, side (caller: made from this node; callee: served here) and outcome (ok, denied, timeout, unavailable, failed …)', labelNames: ['service', 'side', 'outcome'], registers })
    this.callSeconds = new Histogram({ name: 'beemesh_call_duration_seconds', help: 'Service call time, by side', labelNames: ['side'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers })
    this.callsDenied = new Counter({ name: 'beemesh_calls_denied_total', help: 'Service calls the policy refused, by service and side (caller\'s node, callee\'s node)', labelNames: ['service', 'side'], registers })
    this.egress = new Counter({ name: 'beemesh_egress_total', help: 'Egress requests of actors (ctx.fetch), by host and outcome (allowed, denied, failed)', labelNames: ['host', 'outcome'], registers })
    this.tunnels = new Counter({ name: 'beemesh_tunnel_connections_total', help: 'TCP connections through service tunnels, by service, side (caller: accepted by this node\'s proxy; callee: delivered to a container here) and outcome', labelNames: ['service', 'side', 'outcome'], registers })
    this.services = {
      call: (service, side, outcome, seconds) => { this.calls.inc({ service, side, outcome }); this.callSeconds.observe({ side }, seconds) },
      denied: (service, side) => { this.callsDenied.inc({ service, side }) },
      egress: (host, outcome) => { this.egress.inc({ host, outcome }) },
      tunnel: (service, side, outcome) => { this.tunnels.inc({ service, side, outcome }) }
    }
    new Gauge({ name: 'beemesh_peers', help: 'Connected peers', registers, collect () { this.set(gauges.peers()) } })
    new Gauge({ name: 'beemesh_workloads', help: 'Workloads this node knows of (not deleted)', registers, collect () { this.set(gauges.workloads()) } })
    new Gauge({ name: 'beemesh_replicas', help: 'Replicas running on this node', registers, collect () { this.set(gauges.replicas()) } })
    new Gauge({ name: 'beemesh_replay_window_messages', help: 'Sealed messages remembered by the replay window: each is refused if it comes again within the window', registers, collect () { this.set(gauges.replayWindow()) } })
    new Gauge({ name: 'beemesh_warm_sandboxes', help: 'Blank confined sandboxes started ahead of the replicas that will take them', registers, collect () { this.set(gauges.warmSandboxes()) } })
  }

  async render (): Promise<{ contentType: string, body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
