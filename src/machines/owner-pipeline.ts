/**
 * The owner pipeline of one stateful workload, as data: the state an owner is
 * in and what each event does to it, with no I/O (the effects it asks for are
 * returned, and src/stateful/machine-host.ts runs them).
 *
 * An owner goes `starting` → `running` → `stopped`:
 *
 * - `starting`: recovering the newest copy, restoring the machine, choosing
 *   holders. Sends wait; `owner.restored` sets the seq the machine resumed at.
 * - `running`: a two-stage pipeline. Stage 1 applies queued sends to the
 *   machine (`batch.applied`, which raises `applied`); stage 2 makes batches
 *   durable one after another, in order (`batch.durable` raises `durable`, and
 *   only then are the batch's senders acknowledged). At most
 *   MAX_INFLIGHT_BATCHES batches are applied but not yet durable. One drain
 *   loop runs at a time (`draining`). Once a send takes the machine to its
 *   final state (`machine.done`), later sends are refused as completed, and
 *   the batch that completes it, once durable, completes the workload.
 * - `stopped`: fenced, deleted, completed, stepping down or shutting down.
 *   Nothing is applied any more; a batch already being made durable may
 *   still finish (and is acknowledged: it is durable).
 *
 * Invariants, kept by `next` (an event that would break one is not taken, as
 * `can` says): `durable <= applied`; both only go up; `inflight` is between
 * 0 and MAX_INFLIGHT_BATCHES; no batch is begun outside `running`; a batch
 * that cannot be made durable while `running` makes the owner step down, so
 * nothing after it is acknowledged.
 */

/** Batches applied to the machine but not yet durable, at most (the pipeline's depth). */
export const MAX_INFLIGHT_BATCHES = 4

export type OwnerPhase = 'starting' | 'running' | 'stopped'

export interface OwnerPipeline {
  readonly phase: OwnerPhase
  /** Seq of the last transition applied to the machine (durable or not). */
  readonly applied: number
  /** Seq of the last durable transition: everything up to it may be acknowledged. */
  readonly durable: number
  /** Batches applied but not yet durable. */
  readonly inflight: number
  /** A drain loop is running. */
  readonly draining: boolean
  /** The machine reached a final state (in a batch applied, maybe not durable yet). */
  readonly completed: boolean
}

export type OwnerPipelineEvent =
  /** Recovery restored the machine at `seq` (the newest durable copy found). */
  | { type: 'owner.restored', seq: number }
  /** The holders are chosen: the owner takes sends. `final` when the machine was restored in its final state. */
  | { type: 'owner.started', final: boolean }
  /** The owner stops (fenced, deleted, completed, stepping down, shutting down, or failed to start). */
  | { type: 'owner.stopped' }
  | { type: 'drain.started' }
  | { type: 'drain.ended' }
  /** A send applied in stage 1 took the machine to its final state: later sends are refused as completed. */
  | { type: 'machine.done' }
  /** Stage 1 applied a batch ending at `lastSeq`. */
  | { type: 'batch.applied', lastSeq: number }
  /** Stage 2 made the batch ending at `lastSeq` durable; `failed` when its last transition is the machine's error state. */
  | { type: 'batch.durable', lastSeq: number, completes: boolean, failed: boolean }
  /** Stage 2 could not make a batch durable. */
  | { type: 'batch.refused' }

/** What the runtime is asked to do after a transition, in order. */
export type OwnerEffect =
  /** Tell the mesh where the workload is (location record). */
  | { type: 'publishLocation' }
  /** Start a drain loop (apply what is queued). */
  | { type: 'drain' }
  /** Acknowledge the batch's senders (it is durable). */
  | { type: 'acknowledge' }
  /** Refuse the batch's senders (it is not durable). */
  | { type: 'refuse' }
  /** Report the machine's final state, then erase its state everywhere. */
  | { type: 'complete' }
  /** Report that the machine failed (its last state stays readable). */
  | { type: 'reportFailure' }
  /** Stop owning the workload: nothing after the refused batch may be acknowledged. */
  | { type: 'stepDown' }

export const initialOwnerPipeline: OwnerPipeline = { phase: 'starting', applied: 0, durable: 0, inflight: 0, draining: false, completed: false }

/** Whether `event` is taken in `state` (else `next` leaves the state as it is and asks for nothing). */
export function can (state: OwnerPipeline, event: OwnerPipelineEvent): boolean {
  switch (event.type) {
    case 'owner.restored': return state.phase === 'starting' && event.seq >= state.durable
    case 'owner.started': return state.phase === 'starting'
    case 'owner.stopped': return state.phase !== 'stopped'
    case 'drain.started': return state.phase === 'running' && !state.draining
    case 'drain.ended': return state.draining
    // A batch whose application began while running is counted even if the owner stopped
    // meanwhile: its senders are still waiting, and stage 2 refuses them.
    case 'batch.applied': return state.phase !== 'starting' && state.inflight < MAX_INFLIGHT_BATCHES && event.lastSeq > state.applied
    case 'machine.done': return !state.completed
    case 'batch.durable': return state.inflight > 0 && event.lastSeq > state.durable && event.lastSeq <= state.applied
    case 'batch.refused': return state.inflight > 0
  }
}

/** Whether stage 1 may apply another batch now (else it waits for stage 2 to finish one). */
export function canApply (state: OwnerPipeline): boolean {
  return state.phase === 'running' && state.inflight < MAX_INFLIGHT_BATCHES
}

/** The state after `event`, and the effects the runtime runs for it. */
export function next (state: OwnerPipeline, event: OwnerPipelineEvent): { state: OwnerPipeline, effects: OwnerEffect[] } {
  if (!can(state, event)) return { state, effects: [] }
  switch (event.type) {
    case 'owner.restored':
      return { state: { ...state, applied: event.seq, durable: event.seq }, effects: [] }
    case 'owner.started':
      // A machine restored in its final state completes at once; the drain loop
      // still runs, and refuses what was queued while starting (the machine takes no event).
      return {
        state: { ...state, phase: 'running' },
        effects: [{ type: 'publishLocation' }, ...(event.final ? [{ type: 'complete' } as const] : []), { type: 'drain' }]
      }
    case 'owner.stopped':
      return { state: { ...state, phase: 'stopped' }, effects: [] }
    case 'drain.started':
      return { state: { ...state, draining: true }, effects: [] }
    case 'drain.ended':
      return { state: { ...state, draining: false }, effects: [] }
    case 'machine.done':
      return { state: { ...state, completed: true }, effects: [] }
    case 'batch.applied':
      return { state: { ...state, applied: event.lastSeq, inflight: state.inflight + 1 }, effects: [] }
    case 'batch.durable': {
      const after = { ...state, durable: event.lastSeq, inflight: state.inflight - 1 }
      if (event.completes) return { state: after, effects: [{ type: 'acknowledge' }, { type: 'complete' }] }
      return { state: after, effects: [{ type: 'acknowledge' }, ...(event.failed ? [{ type: 'reportFailure' } as const] : []), { type: 'drain' }] }
    }
    case 'batch.refused':
      return { state: { ...state, inflight: state.inflight - 1 }, effects: [{ type: 'refuse' }, ...(state.phase === 'running' ? [{ type: 'stepDown' } as const] : [])] }
  }
}
