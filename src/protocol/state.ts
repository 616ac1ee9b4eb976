/**
 * Wire formats of the stateful plane:
 *
 * - `/beemesh/send/1.0.0`: a sender asks a workload's owner to apply an event
 *   (or to report its state); the reply is the acknowledgement or a refusal
 *   (`not-owner` with a redirect hint, `not-handled`, `completed`, …).
 * - `/beemesh/state/1.0.0`: owner ↔ holder replication. The owner claims an
 *   epoch on its holders (fencing), appends journal batches to them, installs
 *   a full copy on a new holder, fetches copies when it resumes, and erases
 *   them when the workload ends.
 * - DHT records: `/beemesh/location/<ns>/<name>` (who owns it, at which epoch,
 *   and which peers hold copies) and `/beemesh/snapshot/<ns>/<name>` (a
 *   periodic full snapshot, the last-resort copy).
 */
import * as z from 'zod'

export const SEND_PROTOCOL = '/beemesh/send/1.0.0'
export const STATE_PROTOCOL = '/beemesh/state/1.0.0'

const peerId = z.string().min(10).max(128)
const workloadId = z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/)
const epoch = z.number().int().min(0)
const seq = z.number().int().min(0)
/** An idempotency key: a retried send with the same id is applied at most once. */
const eventId = z.string().min(1).max(128)

/** An event for a machine: a JSON object with a string `type`. */
export const MachineEvent = z.looseObject({ type: z.string().min(1).max(256) })
export type MachineEvent = z.infer<typeof MachineEvent>

export const SendRequest = z.discriminatedUnion('op', [
  z.object({ op: z.literal('send'), workloadId, id: eventId, event: MachineEvent, sender: z.string().max(128).optional() }),
  z.object({ op: z.literal('state'), workloadId }),
  /** The machine's definition (statechart JSON), for diagrams. */
  z.object({ op: z.literal('machine'), workloadId })
])
export type SendRequest = z.infer<typeof SendRequest>

/** What an acknowledgement carries: the event's place in the journal and the state it led to. */
export const Ack = z.object({
  workloadId,
  id: eventId,
  seq,
  epoch,
  owner: peerId,
  value: z.unknown(),
  status: z.enum(['active', 'done', 'error', 'stopped']),
  output: z.unknown().optional(),
  /** The event had been applied before (same id): this is its original acknowledgement. */
  duplicate: z.boolean().optional()
})
export type Ack = z.infer<typeof Ack>

/** Why a send was not applied. `not-owner` and `unavailable` are worth retrying (after re-resolving the owner). */
export const Refusal = z.object({
  code: z.enum(['not-owner', 'not-handled', 'completed', 'unknown-workload', 'unavailable', 'bad-event', 'machine-error', 'forbidden']),
  message: z.string().max(4000),
  owner: peerId.optional(),
  epoch: epoch.optional(),
  value: z.unknown().optional(),
  output: z.unknown().optional()
})
export type Refusal = z.infer<typeof Refusal>

/** A transition as `state` and `trace` show it. */
export const TransitionRecord = z.object({
  seq,
  epoch,
  ts: z.number(),
  event: z.unknown(),
  value: z.unknown(),
  status: z.string().optional(),
  sender: z.string().optional(),
  id: z.string().optional()
})
export type TransitionRecord = z.infer<typeof TransitionRecord>

export const MachineStateReport = z.object({
  workloadId,
  owner: peerId,
  epoch,
  seq,
  value: z.unknown(),
  context: z.unknown(),
  status: z.enum(['active', 'done', 'error', 'stopped']),
  output: z.unknown().optional(),
  error: z.string().optional(),
  durability: z.enum(['replicated', 'local']),
  holders: z.array(peerId),
  /** The newest transitions, oldest first. */
  recent: z.array(TransitionRecord),
  startedAt: z.number(),
  /** Set when the owner is unreachable and this is the newest copy a holder has. */
  stale: z.boolean().optional()
})
export type MachineStateReport = z.infer<typeof MachineStateReport>

export const SendReply = z.union([
  z.object({ ok: z.literal(true), ack: Ack }),
  z.object({ ok: z.literal(true), state: MachineStateReport }),
  z.object({ ok: z.literal(true), machine: z.object({ workloadId, definition: z.unknown() }) }),
  z.object({ ok: z.literal(false), refusal: Refusal })
])
export type SendReply = z.infer<typeof SendReply>

const JournalEntryWire = z.object({
  seq: z.number().int().min(1),
  epoch,
  ts: z.number(),
  event: z.unknown(),
  sender: z.string().optional(),
  id: z.string().optional(),
  state: z.unknown(),
  timers: z.unknown().optional(),
  error: z.string().optional(),
  /** Trace fields (see JournalEntry): the context after the event and who applied it. */
  context: z.unknown().optional(),
  owner: peerId.optional(),
  status: z.enum(['active', 'done', 'error']).optional(),
  output: z.unknown().optional()
})
const SnapshotWire = z.object({ seq, epoch, ts: z.number(), snapshot: z.unknown() })
/** One step of a workload's trace (TraceEntry, src/store/trace.ts). */
export const TraceRecordWire = z.object({
  workloadId,
  seq,
  epoch,
  ts: z.number(),
  owner: peerId,
  event: z.unknown(),
  sender: z.string().max(128).optional(),
  id: z.string().max(128).optional(),
  value: z.unknown(),
  context: z.unknown(),
  status: z.enum(['active', 'done', 'error']),
  output: z.unknown().optional(),
  error: z.string().optional()
})

/**
 * The owner's holder set, with a version it raises at every change within its
 * epoch: holders keep the newest they were told of (with their fence), and a
 * claim's reply says it, so a claimer whose own idea of the set is out of date
 * checks its majority against the newer one.
 */
const replicaSetFields = { holders: z.array(peerId).max(16).optional(), setVersion: z.number().int().min(0).optional() }

export interface ReplicaSet { epoch: number, owner: string, holders: string[], version: number }

export const StateRequest = z.discriminatedUnion('op', [
  /** The owner of `epoch` takes the workload: the holder refuses older epochs from now on and reports what it holds. */
  z.object({ op: z.literal('claim'), workloadId, epoch, owner: peerId }),
  /** A journal batch; `snapshot` when the batch crosses a snapshot boundary. */
  z.object({ op: z.literal('append'), workloadId, epoch, owner: peerId, entries: z.array(JournalEntryWire).min(1).max(10_000), snapshot: SnapshotWire.optional(), start: TraceRecordWire.optional(), ...replicaSetFields }),
  /** A whole copy (snapshot plus the entries after it) for a holder that is new or behind. */
  z.object({ op: z.literal('install'), workloadId, epoch, owner: peerId, snapshot: SnapshotWire.optional(), entries: z.array(JournalEntryWire).max(100_000), ...replicaSetFields }),
  /** The holder's copy, for an owner that resumes the workload. */
  z.object({ op: z.literal('fetch'), workloadId }),
  /** The workload ended (final state or deleted): remove every trace of its state. */
  z.object({ op: z.literal('erase'), workloadId, epoch }),
  /** The trace records this node has of a workload, after `afterSeq` (`beemesh trace export` gathers them from every node). */
  z.object({ op: z.literal('trace'), workloadId, afterSeq: z.number().int().min(-1).optional() })
])
export type StateRequest = z.infer<typeof StateRequest>

export interface HolderHead {
  /** Last seq held; 0 when nothing is held. */
  seq: number
  /** Highest epoch of the entries held. */
  epoch: number
  /** The epoch this holder is fenced at (claims below it are refused). */
  fence: number
  /** The copy could not be read (checksum, gap): the holder must not be restored from. */
  corrupt?: string
  /** In a claim's reply: the replica set this holder last heard of, before the claim raised its fence. */
  set?: ReplicaSet
}

export function locationKey (id: string): string {
  return `/beemesh/location/${id}`
}

export function snapshotRecordKey (id: string): string {
  return `/beemesh/snapshot/${id}`
}

/** The gossip topic a stateful workload's owner publishes its transitions on (`beemesh trace -f`). */
export function traceTopic (id: string): string {
  return `beemesh.trace.${id.replace('/', '.')}`
}

/** The DHT location record: who owns a stateful workload now and where its copies are. */
export const LocationRecord = z.object({
  workloadId,
  owner: peerId,
  epoch,
  holders: z.array(peerId).max(16),
  /** Raised at every holder change within the epoch (see ReplicaSet). */
  setVersion: z.number().int().min(0).optional(),
  seq,
  ts: z.number()
})
export type LocationRecord = z.infer<typeof LocationRecord>

/** The periodic DHT snapshot: a full copy signed by the owner of `epoch`. */
export const SnapshotRecordWire = z.object({
  workloadId,
  owner: peerId,
  epoch,
  seq,
  ts: z.number(),
  snapshot: z.unknown()
})
export type SnapshotRecordWire = z.infer<typeof SnapshotRecordWire>
