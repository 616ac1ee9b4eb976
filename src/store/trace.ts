import type { StateValue } from 'xstate'

/**
 * One step of a stateful workload's trace: the one shape a transition takes
 * once it is recorded. The journal writes it (`WorkloadJournal.trace`),
 * `beemesh trace export` writes it as JSONL (one a line), holders receive the
 * start step in it, and `beemesh/testing` replays it (`loadTrace`,
 * `replayTrace`), so what is recorded is what is replayed. Types only: the
 * testing module imports it without pulling in the store.
 */

/** A machine's status as the trace records it. */
export type TraceStatus = 'active' | 'done' | 'error'

/** An event as applied by the owner: a JSON object with a string `type`. */
export interface TraceEvent {
  type: string
  [key: string]: unknown
}

/** One line of `beemesh trace export`: an event the owner applied, and the state after it. */
export interface TraceEntry {
  /** `<namespace>/<name>`; one per trace. */
  workloadId: string
  /** 0 is the workload's start (`xstate.init`); then 1, 2, 3… with no gaps. */
  seq: number
  /** Ownership epoch: rises when another node takes over after a failover. */
  epoch: number
  /** When the owner applied the event, ms since the Unix epoch. */
  ts: number
  /** Peer id of the owner that applied it. */
  owner: string
  event: TraceEvent
  /** Sent events only: the sender's peer id. Absent on spontaneous events (timers, children). */
  sender?: string
  /** Sent events only: the send's id. */
  id?: string
  /** State value after the event. */
  value: StateValue
  /** JSON copy of the context after the event. */
  context: unknown
  status: TraceStatus
  /** When `status` is `done`. */
  output?: unknown
  /** When the transition failed the machine (`status` is `error`): one line. */
  error?: string
}
