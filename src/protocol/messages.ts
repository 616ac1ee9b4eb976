import * as z from 'zod'
import type { MeshMessage } from '../transport/mesh-node.js'
import { PodReport, ReplicaStatus, WorkloadRecordSchema, WorkloadSpecSchema } from '../workloads/records.js'
import { LocationRecord } from './state.js'
import { FILTER_NAMES, MAX_TENDER_ATTEMPTS } from '../machines/placement.js'

/** Gossip topics and stream protocols of the workload plane. */
export const SCHEDULER_TOPIC = 'beemesh.scheduler.v1'
export const HEARTBEAT_TOPIC = 'beemesh.heartbeat.v1'
export const BID_PROTOCOL = '/beemesh/bid/1.0.0'
/**
 * Bids in flight on one connection, each way: a bidder answers every open tender of a tenderer at
 * once (100 applies over 5 tenderers put 20 on each connection, and closing streams still count), and
 * libp2p's 32 refused 1–13 % of them ("Cannot write to a stream that is closed", docs/benchmarks.md).
 */
export const BID_STREAMS = 256
export const LOGS_PROTOCOL = '/beemesh/logs/1.0.0'
/** Asks the node hosting a replica to stop it (a deleted pod): the guardian then replaces it. */
export const REPLICA_PROTOCOL = '/beemesh/replica/1.0.0'
/** A newcomer's first view of the mesh: a peer hands over the newest sealed heartbeat of every node it knows live. */
export const VIEW_PROTOCOL = '/beemesh/view/1.0.0'

const peerId = z.string().min(10).max(128)
const workloadId = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/)
const resources = z.object({ cpuMillis: z.number().int().min(0), memoryBytes: z.number().int().min(0) })

export const ReplicaReport = z.object({
  workloadId,
  replica: z.number().int().min(0).max(1000),
  epoch: z.number().int().min(0),
  status: ReplicaStatus,
  handled: z.number().int().min(0).default(0),
  failures: z.number().int().min(0).default(0),
  pod: PodReport.optional(),
  /** The replica answers its health probe (docs/services.md): only ready replicas of a service receive calls. */
  ready: z.boolean().optional()
})
export type ReplicaReport = z.infer<typeof ReplicaReport>

export const Heartbeat = z.object({
  type: z.literal('heartbeat'),
  peerId,
  ts: z.number(),
  labels: z.record(z.string(), z.string()),
  capacity: resources,
  allocated: resources,
  uptimeMs: z.number().min(0),
  /** What the node can run beyond actors: `container` while its engine answers. */
  capabilities: z.array(z.string().max(40)).max(16).default([]),
  replicas: z.array(ReplicaReport).max(10_000),
  /** The version of the policy the node enforces: peers behind pull the newer one. */
  policy: z.number().int().optional(),
  /** Peers the node has a connection to (the mesh's links, for the web view). */
  links: z.array(peerId).max(1_000).optional(),
  /** How often the node heartbeats now (it grows with the mesh): peers wait 3.5 of these before counting it gone. */
  intervalMs: z.number().int().min(100).max(600_000).optional()
})
export type Heartbeat = z.infer<typeof Heartbeat>

/**
 * A node whose connection to `peerId` dropped and that could not dial it back
 * says so on the heartbeat topic: peers with no connection of their own to it
 * count it gone at once, not after its heartbeat timeout (which grows with the
 * mesh). The peer itself, if alive, answers with a heartbeat.
 */
export const PeerDown = z.object({
  type: z.literal('peer-down'),
  peerId,
  reporter: peerId,
  ts: z.number()
})
export type PeerDown = z.infer<typeof PeerDown>

export const HeartbeatTopicMessage = z.discriminatedUnion('type', [Heartbeat, PeerDown])

/** The reply on VIEW_PROTOCOL: each heartbeat as its author sealed it (base64), and how long ago the peer heard it. */
export const ViewReply = z.object({
  heartbeats: z.array(z.object({ sealed: z.string().max(512 * 1024), ageMs: z.number().int().min(0) })).max(10_000)
})
export type ViewReply = z.infer<typeof ViewReply>

export const Award = z.object({ peerId, replica: z.number().int().min(0) })

/** A tender, sent by the tenderer to each candidate it sampled (BID_PROTOCOL). */
export const TenderMessage = z.object({
  type: z.literal('tender'),
  tenderId: z.string().min(1).max(128),
  tenderer: peerId,
  epoch: z.number().int().min(0),
  attempt: z.number().int().min(1).max(MAX_TENDER_ATTEMPTS),
  spec: WorkloadSpecSchema,
  ordinals: z.array(z.number().int().min(0)).min(1),
  exclude: z.array(peerId)
})

const AwardSchema = z.object({
  type: z.literal('award'),
  tenderId: z.string(),
  tenderer: peerId,
  workloadId,
  epoch: z.number().int().min(0),
  spec: WorkloadSpecSchema,
  awards: z.array(Award).min(1)
})
const Started = z.object({
  type: z.literal('started'),
  tenderId: z.string(),
  workloadId,
  epoch: z.number().int().min(0),
  peerId,
  replica: z.number().int().min(0)
})
const StartFailed = Started.extend({ type: z.literal('start-failed'), reason: z.string().max(2000) })

export const SchedulerMessage = z.discriminatedUnion('type', [
  TenderMessage,
  AwardSchema,
  Started,
  StartFailed,
  z.object({
    type: z.literal('record'),
    record: z.lazy(() => WorkloadRecordSchema)
  }),
  z.object({
    type: z.literal('location'),
    location: LocationRecord
  }),
  z.object({
    type: z.literal('deleted'),
    workloadId,
    epoch: z.number().int().min(0),
    by: peerId
  })
])
export type SchedulerMessage = z.infer<typeof SchedulerMessage>

export const BidRequest = z.discriminatedUnion('type', [
  z.object({ type: z.literal('bid'), tenderId: z.string(), attempt: z.number().int().min(1), peerId, score: z.number().min(0).max(1000) }),
  z.object({
    type: z.literal('decline'),
    tenderId: z.string(),
    attempt: z.number().int().min(1),
    peerId,
    rejections: z.array(z.object({ peerId, filter: z.enum(FILTER_NAMES), reason: z.string().max(500) })).max(20)
  })
])
export type BidRequest = z.infer<typeof BidRequest>

/**
 * What BID_PROTOCOL carries: a tender to a candidate and its bid or decline
 * back; the award to the candidates asked, and each awardee's confirmation
 * back to the tenderer.
 */
export const PlacementRequest = z.discriminatedUnion('type', [
  TenderMessage,
  ...BidRequest.options,
  AwardSchema,
  Started,
  StartFailed
])
export type PlacementRequest = z.infer<typeof PlacementRequest>

/** Undefined when `from` may send `m`: a tender or an award comes from its tenderer, a bid or decline from its bidder, a confirmation from its awardee; else why not. */
export function placementSenderError (m: PlacementRequest, from: string): string | undefined {
  if (m.type === 'tender' || m.type === 'award') return m.tenderer === from ? undefined : `a${m.type === 'award' ? 'n' : ''} ${m.type} must come from its tenderer itself`
  if (m.type === 'bid' || m.type === 'decline') return m.peerId === from ? undefined : `a ${m.type} must come from its bidder itself`
  return m.peerId === from ? undefined : 'a confirmation must come from its awardee itself'
}

/** For whom a node asks another to act (src/policy/relay.ts): absent, the asking node itself. */
const relay = { onBehalfOf: z.string().max(300).optional(), token: z.string().max(4096).optional() }

export const ReplicaStopRequest = z.object({ workloadId, replica: z.number().int().min(0).max(1000), ...relay })

export const LogsRequest = z.object({ workloadId, tail: z.number().int().min(1).max(100_000).optional(), since: z.number().optional(), events: z.boolean().optional(), ...relay })

export interface LogLine {
  ts: number
  workloadId: string
  replica: number
  nodeId: string
  /** `log`/`error`: an actor's lines and BeeMesh's own; `stdout`/`stderr`: a container's. */
  stream: 'log' | 'error' | 'stdout' | 'stderr'
  message: string
  fields?: Record<string, unknown>
}

export function workloadKey (id: string): string {
  return `/beemesh/workload/${id}`
}

/** Parses JSON bytes against a schema; undefined (never a throw) for anything malformed. */
export function decodeMessage<T> (schema: z.ZodType<T>, bytes: Uint8Array): T | undefined {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    return undefined
  }
  const result = schema.safeParse(value)
  return result.success ? result.data : undefined
}

export function encodeMessage (value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

/**
 * A topic event as BeeMesh publishes it: `{id, data, ts}`, so every replica
 * sees the same event id. Messages published by other software are taken
 * whole as `data`, with the message's own id (MeshMessage.id) as the event id.
 */
export function decodeEnvelope (msg: MeshMessage): { id: string, data: unknown } {
  try {
    const v = JSON.parse(new TextDecoder().decode(msg.data)) as { id?: unknown, data?: unknown }
    if (v != null && typeof v === 'object' && typeof v.id === 'string' && 'data' in v) return { id: v.id, data: v.data }
    return { id: msg.id, data: v }
  } catch {
    return { id: msg.id, data: { base64: Buffer.from(msg.data).toString('base64') } }
  }
}

/** How a node runs workload code, from its capabilities: confined by the OS, in worker threads (--allow-unconfined), or not at all. */
export function sandboxOf (capabilities: string[] | undefined): string {
  if (capabilities == null) return '<unknown>'
  if (capabilities.includes('confined')) return 'confined'
  return capabilities.includes('code') ? 'threads' : 'refused'
}
