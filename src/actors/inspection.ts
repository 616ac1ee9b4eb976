/**
 * Live inspection of every XState actor a node runs, for the Stately
 * inspector (`@statelyai/inspect`): the node machine, the schedulers of its
 * tenders, its pod machines, and the user machines of the stateful
 * workloads it owns, which run in worker threads (sandbox/machine-worker.ts).
 *
 * XState reports each actor system through `createActor(logic, { inspect })`.
 * An observer turns those reports into InspectionRecords: JSON, ids relative
 * to the root actor (`path`), so that a worker thread can post them to the
 * main thread as they are. The node's Inspection maps a record of the root
 * shown as `<name>` to a Stately inspection event of actor
 * `<name>@<node>` (children: `<name>@<node>/<child id>/…`) and sends it to
 * the relay (`beemesh inspect`) through one WebSocket inspector.
 *
 * Inspection is best effort: nothing here throws into a transition, and
 * nothing waits on the network (inspector-relay.ts: the node's connection to
 * the relay buffers, keeps the last 200 events while it is unreachable, and
 * reconnects). This module has no I/O of its own, so machine workers load it
 * without a socket library.
 *
 * This module is loaded by machine workers when inspection is on; the
 * events follow `@statelyai/inspect`'s protocol (its relay, `beemesh
 * inspect`, passes them to the Stately inspector).
 */
import type { StatelyActorEvent, StatelyEventEvent, StatelyInspectionEvent, StatelySnapshotEvent } from '@statelyai/inspect'
import type { AnyEventObject, InspectionEvent, Observer, Snapshot } from 'xstate'

/** Where `beemesh inspect` listens unless told otherwise (the default of `@statelyai/inspect`'s server and WebSocket inspector). */
export const DEFAULT_INSPECT_URL = 'ws://127.0.0.1:8080'

/** The Stately inspection protocol version these events follow (that of `@statelyai/inspect` 0.7.2, which stamps its own). */
const PROTOCOL_VERSION = '0.7.2'
/** A context, output or definition larger than this (as JSON) is shown as a note instead. */
const MAX_JSON_CHARS = 64 * 1024
const MAX_DEFINITION_CHARS = 256 * 1024

/** An actor's state as the inspector shows it, JSON only. */
export interface InspectedState {
  status: string
  value?: unknown
  context?: unknown
  output?: unknown
  error?: string
}

/**
 * One inspection event of one actor system, as JSON. `path` names the actor
 * within its system: `''` for the root, else the ids from the root's child
 * down, joined with `/`.
 */
export type InspectionRecord =
  /** An actor was created (its state follows with its first `snapshot`). */
  | { type: 'actor', path: string, parent?: string, definition?: string }
  /** An event was sent to the actor (queued); `source`: the sending actor, absent for the outside world. */
  | { type: 'event', path: string, source?: string, event: AnyEventObject }
  /** The actor processed `event` and is now in `state`. */
  | { type: 'snapshot', path: string, event: AnyEventObject, state: InspectedState }

interface ActorRefInternals { id?: unknown, _parent?: ActorRefInternals, logic?: { config?: unknown } }

/** Where an actor stands in its system: its path and its parent's. */
function placeOf (ref: unknown): { path: string, parent?: string } {
  const ids: string[] = []
  for (let a = ref as ActorRefInternals | undefined; a?._parent != null; a = a._parent) ids.unshift(String(a.id))
  if (ids.length === 0) return { path: '' }
  return { path: ids.join('/'), parent: ids.slice(0, -1).join('/') }
}

function replacer (_key: string, v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message }
  if (typeof v === 'bigint') return `${v}n`
  if (typeof v === 'function') return `[function ${v.name !== '' ? v.name : 'anonymous'}]`
  return v
}

/** A JSON copy of `value`, or a note saying why it has none (cycles) or is not shown (too large). */
function jsonOf (value: unknown, max = MAX_JSON_CHARS): unknown {
  let text: string | undefined
  try {
    text = JSON.stringify(value, replacer)
  } catch (err) {
    return `[not JSON: ${err instanceof Error ? err.message : String(err)}]`
  }
  if (text === undefined) return undefined
  if (text.length > max) return `[${text.length} characters of JSON, not shown]`
  return JSON.parse(text)
}

function eventOf (event: unknown): AnyEventObject {
  const copy = jsonOf(event)
  if (typeof copy === 'object' && copy !== null && typeof (copy as { type?: unknown }).type === 'string') return copy as AnyEventObject
  return { type: String((event as { type?: unknown } | undefined)?.type) }
}

function stateOf (snapshot: Snapshot<unknown> | undefined): InspectedState {
  const s = (snapshot ?? {}) as { status?: unknown, value?: unknown, context?: unknown, output?: unknown, error?: unknown }
  const state: InspectedState = { status: typeof s.status === 'string' ? s.status : 'active' }
  if (s.value !== undefined) state.value = jsonOf(s.value)
  if (s.context !== undefined) state.context = jsonOf(s.context)
  if (s.output !== undefined) state.output = jsonOf(s.output)
  if (s.error !== undefined) state.error = s.error instanceof Error ? s.error.message : String(jsonOf(s.error))
  return state
}

/** A machine's definition for the inspector's diagram (its config as JSON), once per logic. */
function definitionOf (ref: unknown, cache: WeakMap<object, string | null>): string | undefined {
  const logic = (ref as ActorRefInternals).logic
  if (typeof logic !== 'object' || logic === null || typeof logic.config !== 'object' || logic.config === null) return undefined
  let definition = cache.get(logic)
  if (definition === undefined) {
    try {
      const text = JSON.stringify(logic.config, replacer)
      definition = text.length <= MAX_DEFINITION_CHARS ? text : null
    } catch {
      definition = null
    }
    cache.set(logic, definition)
  }
  return definition ?? undefined
}

/**
 * The record of an XState inspection event, or undefined for the kinds the
 * inspector does not show (microsteps, actions). Throws only if the actor
 * system is not XState v5's.
 */
export function inspectionRecord (ev: InspectionEvent, definitions: WeakMap<object, string | null> = new WeakMap()): InspectionRecord | undefined {
  switch (ev.type) {
    case '@xstate.actor': {
      const definition = definitionOf(ev.actorRef, definitions)
      return { type: 'actor', ...placeOf(ev.actorRef), ...(definition != null ? { definition } : {}) }
    }
    case '@xstate.event':
      return { type: 'event', path: placeOf(ev.actorRef).path, ...(ev.sourceRef != null ? { source: placeOf(ev.sourceRef).path } : {}), event: eventOf(ev.event) }
    case '@xstate.snapshot':
      return { type: 'snapshot', path: placeOf(ev.actorRef).path, event: eventOf(ev.event), state: stateOf(ev.snapshot) }
    default:
      return undefined
  }
}

/**
 * `<first 8>…<last 6>` of a peer id: the node suffix of every actor id
 * (`node@12D3KooW…x7Qpaz`). Ed25519 peer ids all start `12D3KooW`; the end tells nodes apart.
 */
export function nodeSuffix (peerId: string): string {
  return peerId.length <= 14 ? peerId : `${peerId.slice(0, 8)}…${peerId.slice(-6)}`
}

/** The node's window for the inspector; see the module comment. */
export interface Inspection {
  /** `<name>@<node suffix>`: how the actor system shown as `name` appears. */
  actorId: (name: string) => string
  /** For `createActor(logic, { inspect })`: shows that actor and its descendants as `name`. */
  observer: (name: string) => Observer<InspectionEvent>
  /** Shows the records of an actor system running elsewhere (a sandbox's worker thread) as `name`. */
  forward: (name: string) => (record: InspectionRecord) => void
  /** Stops sending; later records are dropped. */
  stop: () => void
}

export interface InspectionInit {
  /** This node's peer id, for the actor ids. */
  peerId: string
  /** Where the Stately inspection events go (the inspector's adapter). Must not block; may throw (caught). */
  send: (event: StatelyInspectionEvent) => void
  /** Called with the first error `send` throws (later ones are counted silently). */
  onError?: (err: unknown) => void
  /** Default Date.now. */
  clock?: () => number
}

/** An Inspection that sends to `init.send`; see `connectInspector` for the WebSocket one. */
export function inspection (init: InspectionInit): Inspection {
  const suffix = nodeSuffix(init.peerId)
  const clock = init.clock ?? Date.now
  const definitions = new WeakMap<object, string | null>()
  let stopped = false
  let failed = false
  let seq = 0

  const actorId = (name: string): string => `${name}@${suffix}`

  function send (event: StatelyInspectionEvent): void {
    try {
      init.send(event)
    } catch (err) {
      if (!failed) init.onError?.(err)
      failed = true
    }
  }

  function forward (name: string): (record: InspectionRecord) => void {
    const root = actorId(name)
    const idOf = (path: string): string => path === '' ? root : `${root}/${path}`
    return record => {
      if (stopped) return
      try {
        const base = { sessionId: idOf(record.path), rootId: root, createdAt: String(clock()), id: `${suffix}:${++seq}`, _version: PROTOCOL_VERSION }
        switch (record.type) {
          case 'actor':
            send({ ...base, type: '@xstate.actor', name: base.sessionId, definition: record.definition, parentId: record.parent != null ? idOf(record.parent) : undefined, snapshot: { status: 'active' } } satisfies StatelyActorEvent)
            break
          case 'event':
            send({ ...base, type: '@xstate.event', event: record.event, sourceId: record.source != null ? idOf(record.source) : undefined } satisfies StatelyEventEvent)
            break
          case 'snapshot':
            send({ ...base, type: '@xstate.snapshot', event: record.event, snapshot: record.state as Snapshot<unknown> } satisfies StatelySnapshotEvent)
            break
        }
      } catch (err) {
        if (!failed) init.onError?.(err)
        failed = true
      }
    }
  }

  function observer (name: string): Observer<InspectionEvent> {
    const to = forward(name)
    return {
      next: ev => {
        if (stopped) return
        try {
          const record = inspectionRecord(ev, definitions)
          if (record != null) to(record)
        } catch (err) {
          if (!failed) init.onError?.(err)
          failed = true
        }
      }
    }
  }

  return { actorId, observer, forward, stop: () => { stopped = true } }
}
