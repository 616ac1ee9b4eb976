/**
 * The contract of a machine sandbox (machine-sandbox.ts): what it is started
 * with, what it returns for each transition, what it stores to resume a
 * machine elsewhere, and which events may be sent to it.
 */
import { describeError } from '../errors.js'
import type { WorkloadIdentity } from '../workloads/types.js'
import type { InspectionRecord } from '../actors/inspection.js'
import type { NodeIsolation } from './confine.js'
import { InvalidMachineEventError } from './errors.js'
import type { SandboxLogLine } from './sandbox.js'

/** A delayed event (`after`, or `raise`/`sendTo` self with a delay) the machine has pending, with its absolute due time. */
export interface PendingTimer { id: string, event: unknown, dueAt: number }

/** What must be stored to resume the machine elsewhere. */
export interface MachineState {
  /** actor.getPersistedSnapshot(), as JSON (Error values become `{ name, message }`). */
  persisted: unknown
  timers: PendingTimer[]
}

export interface Transition {
  /** false: the machine had no enabled transition for this event in its state; nothing changed and nothing must be journaled. */
  handled: boolean
  /** snapshot.value */
  value: unknown
  /** JSON copy of snapshot.context */
  context: unknown
  status: 'active' | 'done' | 'error' | 'stopped'
  /** When done. */
  output?: unknown
  /** When status is 'error' (an action or guard threw), one line. */
  error?: string
  /** After the event. */
  state: MachineState
}

/** A journal entry to replay on restore. */
export interface ReplayEntry {
  event: unknown
  /** Set when the live transition of this event ended in status 'error': replay ends there, in that error. */
  error?: string
}

export interface MachineRestore {
  /** The state to resume from; absent: the machine's initial state. */
  state?: MachineState
  /** Events applied after `state`, in order, without running actions. */
  replay?: ReplayEntry[]
  /** The timers to re-arm, overriding `state.timers` (with `replay`: the timers as of the last entry). */
  timers?: PendingTimer[]
  /** Now on the sandbox's clock, for the timers' remaining delays. Default: clock(). */
  now?: number
}

export interface MachineSandboxInit {
  /** The workload bundle: an ESM file on disk. */
  artifactPath: string
  identity: WorkloadIdentity
  /** V8 old-generation heap limit of the worker thread. */
  memoryLimitMb: number
  /** Confined child processes or worker threads (or `refused`: starting fails with UnconfinedHostError). Default: confined where the host can confine (defaultIsolation). */
  isolation?: NodeIsolation
  /** Each sent event (alone or in a batch) may take at most this long, else the thread is replaced and its result is a TransitionFailedError. */
  timeoutMs: number
  /** A transition nobody sent: a delayed event fired, an invoked/spawned actor finished or failed, etc. Called in order with send results. */
  onSpontaneous: (event: unknown, t: Transition) => void
  /** Console output of user code, and the sandbox's own notes (stream `error`). */
  onLog: (line: SandboxLogLine) => void
  /** Default Date.now. Timers' `dueAt` are on this clock. */
  clock?: () => number
  /** How long loading the module and starting the machine may take, at start and after each restart. Default 30 s. */
  loadTimeoutMs?: number
  /**
   * Inspection: when set, every worker (and its replacements) reports each
   * inspection event of the machine's actors, called here in the worker's
   * order. A throw is ignored. Unset, the worker does no inspection at all.
   */
  onInspect?: (record: InspectionRecord) => void
}

/** Called with each element of a sendMany as soon as it is known, in index order, interleaved in order with onSpontaneous. */
export type BatchResultListener = (index: number, result: Transition | Error) => void

/** XState's own events (`xstate.init`, `xstate.after.…`, `xstate.done.actor.…`) cannot be sent from outside. */
const RESERVED_PREFIX = 'xstate.'

/** The event's JSON copy, or why it is not a machine event. */
export function checkEvent (event: unknown): { type: string } {
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw new InvalidMachineEventError(`expected a JSON object with a string "type", got ${event === null ? 'null' : Array.isArray(event) ? 'an array' : typeof event}`)
  }
  const type = (event as { type?: unknown }).type
  if (typeof type !== 'string') throw new InvalidMachineEventError(`"type" must be a string, got ${type === undefined ? 'none' : type === null ? 'null' : typeof type}`)
  if (type === '') throw new InvalidMachineEventError('"type" must not be empty')
  if (type.startsWith(RESERVED_PREFIX)) throw new InvalidMachineEventError(`event types starting with "${RESERVED_PREFIX}" are reserved for XState's own events, got ${JSON.stringify(type)}`)
  let text: string | undefined
  try {
    text = JSON.stringify(event)
  } catch (err) {
    throw new InvalidMachineEventError(`${JSON.stringify(type)} is not JSON-serialisable: ${describeError(err)}`)
  }
  return JSON.parse(text as string) as { type: string }
}
