import type { AbortOptions } from '@libp2p/interface'
import type { OwnerPipeline } from '../machines/owner-pipeline.js'
import type { JournalEntry, JournalHead, RestoredJournal, SnapshotRecord, TraceEntry } from '../store/journal.js'
import type { Logger } from '../transport/logger.js'
import type { MeshNode } from '../transport/mesh-node.js'
import { callRpc } from '../transport/rpc.js'
import type { WorkloadSpec } from '../workloads/types.js'
import type { BatchResultListener, MachineRestore, MachineState, Transition } from '../sandbox/machine-sandbox.js'
import { SEND_PROTOCOL, STATE_PROTOCOL, type Ack, type MachineEvent, type SendReply, type SendRequest, type StateRequest, type TransitionRecord } from '../protocol/state.js'
import type { HolderReply } from './state-holder.js'

/**
 * What the parts of the stateful plane share: the record of a workload this
 * node owns, and the narrow views of the node's neighbours (mesh, journal,
 * holder, peers) they are built from, so each part can be tested with small
 * in-memory fakes.
 */

/** How many other peers hold a copy of a `replicated` workload before an event is acknowledged. */
export const REPLICATION_FACTOR = 2
/** Most peers asked for their copy when an owner resumes a workload (and ranked as holders). */
export const MAX_CLAIMS = 16

/** The mesh as the stateful plane uses it (a MeshNode is one). */
export interface StatefulMesh {
  readonly peerId: string
  putRecord: (key: string, value: Uint8Array, options?: AbortOptions) => Promise<unknown>
  getRecord: (key: string, options?: AbortOptions) => Promise<{ value: Uint8Array, publisher: string }>
  deleteLocalRecord: (key: string) => Promise<void>
  topicPeers: (topic: string) => string[]
  publish: (topic: string, data: Uint8Array) => Promise<unknown>
}

/** The node's journal as the stateful plane uses it (a WorkloadJournal is one). */
export interface StatefulJournal {
  append: (workloadId: string, entries: JournalEntry[], snapshot?: SnapshotRecord, start?: TraceEntry) => Promise<void>
  putSnapshot: (workloadId: string, s: SnapshotRecord) => Promise<void>
  head: (workloadId: string) => Promise<JournalHead | undefined>
  restore: (workloadId: string) => Promise<RestoredJournal | undefined>
  trace: (workloadId: string, afterSeq?: number) => Promise<TraceEntry[]>
  erase: (workloadId: string, options?: { keepTrace?: boolean }) => Promise<void>
}

/** This node's holder side, as the owner uses it (a StateHolder is one). */
export interface LocalHolder {
  handle: (req: StateRequest, from: string) => Promise<HolderReply>
  erase: (workloadId: string, options?: { keepTrace?: boolean }) => Promise<void>
}

/** Requests to other nodes' stateful planes. */
export interface StatePeers {
  /** Asks `peer`'s holder side (STATE_PROTOCOL); rejects if it does not answer. */
  state: (peer: string, req: StateRequest, options: { timeoutMs: number }) => Promise<HolderReply>
  /** Hands a send to `peer`'s owner side (SEND_PROTOCOL); resolves with its reply, unchecked. */
  send: (peer: string, req: SendRequest, options: { timeoutMs: number }) => Promise<unknown>
}

/** StatePeers over the mesh's request/response streams. */
export function rpcPeers (mesh: MeshNode): StatePeers {
  return {
    // The holder's replies are built by StateHolder.handle on a node of the same mesh.
    state: async (peer, req, { timeoutMs }) => (await callRpc(mesh, peer, STATE_PROTOCOL, req, { timeoutMs })).result as HolderReply,
    send: async (peer, req, { timeoutMs }) => (await callRpc(mesh, peer, SEND_PROTOCOL, req, { timeoutMs })).result
  }
}

/** Where the owner gets a workload's bundle (an ArtifactService is one). */
export interface ArtifactSource {
  /** The bundle's path on this node, fetched from `hints` or the providers the DHT knows if it is not here. */
  ensure: (sha256: string, hints?: string[], options?: AbortOptions) => Promise<string>
}

/** The sandbox an owned machine runs in, as the owner uses it (a MachineSandbox is one). */
export interface MachineRunner {
  start: (restore?: MachineRestore) => Promise<Transition>
  sendMany: (events: unknown[], onResult?: BatchResultListener) => Promise<Array<Transition | Error>>
  stop: () => Promise<void>
  /** The machine's statechart as JSON, once loaded. */
  readonly definition?: unknown
}

/** What every part of the plane is built from. */
export interface StatefulComponents {
  mesh: StatefulMesh
  peers: StatePeers
  journal: StatefulJournal
  holder: LocalHolder
  log: Logger
  /** Live peers other than this node. */
  livePeers: () => string[]
}

export class FencedError extends Error {
  constructor (workloadId: string, reason: string) {
    super(`${workloadId}: deposed: ${reason}`)
    this.name = 'FencedError'
  }
}

/** What a snapshot record of a machine holds: the machine and the ids of the last acknowledged events. */
export interface StoredSnapshot {
  machine: MachineState
  /** [event id, seq, state value] of recent acknowledged events, for de-duplication after a failover. */
  recent: Array<[string, number, unknown]>
}

export interface PendingSend {
  id: string
  event: MachineEvent
  sender?: string
  settle: (reply: SendReply) => void
}

/** One batch of the owner pipeline: applied to the machine, waiting to be durable. */
export interface Batch {
  entries: JournalEntry[]
  waiting: Array<{ p: PendingSend, entry: JournalEntry, t: Transition }>
  /** The machine after the batch's last transition. */
  last: Transition
  /** The batch takes the machine to its final state. */
  completes: boolean
  /** The batch's journal write, when issued ahead of the acknowledgement order. */
  durable?: Promise<void>
}

/** A stateful workload this node owns. */
export interface Owned {
  spec: WorkloadSpec
  epoch: number
  /** Where the owner pipeline is (src/machines/owner-pipeline.ts): phase, applied and durable seqs, batches in flight. */
  pipeline: OwnerPipeline
  startedAt: number
  sandbox?: MachineRunner
  holders: string[]
  /** Raised at every change of `holders` within the epoch (ReplicaSet in src/protocol/state.ts). */
  setVersion: number
  last?: Transition
  queue: PendingSend[]
  /** Spontaneous transitions (timers, invoked actors) waiting for the next batch. */
  spontaneous: JournalEntry[]
  /** Batches being made durable, in order. */
  persisting: Promise<void>
  /** Ids of sends applied but not yet durable, with later sends of the same id waiting on them. */
  pendingIds: Map<string, PendingSend[]>
  dedup: Map<string, Ack>
  recent: TransitionRecord[]
  lastSnapshotSeq: number
  ready: Promise<void>
  /** The trace's seq 0 (the machine's initial state), written with the workload's first batch. */
  start?: TraceEntry
}

export function traceStatus (t: Transition): TraceEntry['status'] {
  return t.status === 'done' || t.status === 'error' ? t.status : 'active'
}
