/**
 * The worker-thread entry of a MachineSandbox (machine-sandbox.ts): it imports
 * one stateful workload artifact and runs its XState machine as an actor. The
 * parent sends `start` (once) and `send` requests; the worker answers `start`
 * with a `result`, and a `send` of N events with N `result`s (`index` 0…N-1),
 * each posted as soon as its event is applied, so that the parent sees the
 * progress of a batch (and which event hung, if one does). It reports every
 * transition nobody sent (a delayed event fired, an invoked actor finished)
 * as `spontaneous`, all in the order the machine took them. The events of one
 * `send` are applied back to back, synchronously: no timer fires and no
 * promise settles between them. The parent owns the thread's lifetime.
 *
 * The actor is made by this package's own xstate (`createActor`), while the
 * machine comes from the copy of xstate bundled into the artifact. They meet
 * only through XState's actor-logic contract (`transition`,
 * `getInitialSnapshot`, `restoreSnapshot`, the actor scope and the system's
 * scheduler), so the XState internals read here (`system._snapshot`
 * `._scheduledEvents`) are those of the pinned copy, whatever the user bundled.
 *
 * Times on the wire (`dueWall`) are `Date.now()` times; the parent converts
 * them to and from its own clock.
 *
 * Started with `inspect` (MachineWorkerInit), the worker also posts each
 * inspection event of the machine's actors (root and children) as an
 * `inspect` message: a JSON InspectionRecord (../inspection.ts), made and
 * posted synchronously, never throwing into the transition. Without it,
 * nothing of inspection is loaded or posted.
 */
import { format } from 'node:util'
import { pathToFileURL } from 'node:url'
import { createActor, initialTransition, transition, type Actor, type AnyMachineSnapshot, type AnyStateMachine, type InspectionEvent, type Snapshot } from 'xstate'
import { NO_DEFAULT_EXPORT } from '../workloads/errors.js'
import { isMachine } from '../workloads/machine.js'
import type { InspectionRecord } from '../actors/inspection.js'
import type { WorkerErrorInfo } from './worker.js'
import { connectParent } from './channel.js'
import type { Transition } from './machine-contract.js'

/** `workerData` of a machine worker. */
export interface MachineWorkerInit {
  artifactPath: string
  /** Post an `inspect` message for each inspection event of the machine's actors (see ../inspection.ts). */
  inspect?: boolean
}

/** A pending delayed event the root actor sent to itself, due at `dueWall` (a `Date.now()` time). */
export interface WireTimer {
  id: string
  event: unknown
  dueWall: number
}

/** A Transition as it crosses the thread boundary (see machine-sandbox.ts): its state as the snapshot and timers the worker holds. */
export type WireTransition = Omit<Transition, 'state'> & {
  persisted: unknown
  timers: WireTimer[]
}

export interface WireReplayEntry {
  event: unknown
  /** The live transition of this event ended in status `error` with this message. */
  error?: string
}

/** Parent → worker. */
export type ToMachineWorker =
  | {
    type: 'start'
    id: number
    /** The persisted snapshot to resume from; absent: the machine's initial state. */
    persisted?: unknown
    /** Events to apply (without running actions) after it. */
    replay: WireReplayEntry[]
    /** Timers to re-arm; with `derive`, the base that the replayed events' delayed sends and cancels are applied to. */
    timers: WireTimer[]
    derive: boolean
  }
  /** Applies the events in order, each as a single send would be; answered by one `result` per event. */
  | { type: 'send', id: number, events: Array<{ type: string }> }

/** Why a request failed. `restore`: the state cannot be restored; `not-active`: the machine takes no more events. */
export type MachineFailureCode = 'restore' | 'not-active' | 'failed'

/** Worker → parent. */
export type FromMachineWorker =
  /** `definition`: the machine's statechart as JSON (`machine.toJSON()`), for diagrams; absent when it is too big or not JSON. */
  | { type: 'loaded', definition?: unknown }
  | { type: 'load-failed', error: WorkerErrorInfo }
  /** `index`: the event's position in its `send` (0 for `start`). */
  | { type: 'result', id: number, index: number, ok: true, transition: WireTransition }
  | { type: 'result', id: number, index: number, ok: false, code: MachineFailureCode, error: string, status?: string }
  | { type: 'spontaneous', event: unknown, transition: WireTransition }
  /** An event nobody sent reached the root: its step (`spontaneous`) follows, unless it hangs or crashes the thread. */
  | { type: 'busy', event: unknown }
  | { type: 'log', stream: 'log' | 'error', message: string }
  /** Only when started with `inspect`: an inspection event of the root actor or one of its descendants. */
  | { type: 'inspect', record: InspectionRecord }

/** Longer log messages are cut, so one runaway line cannot flood the parent. */
const MAX_LOG_CHARS = 64 * 1024
const MAX_ERROR_CHARS = 2000

function errorInfo (err: unknown): WorkerErrorInfo {
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: 'Error', message: String(err) }
}

/** One line for a thrown value (or an error restored from JSON, `{ name, message }`). */
function oneLine (err: unknown): string {
  let text: string
  if (err instanceof Error || (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string')) {
    const { name, message } = err as { name?: unknown, message: string }
    text = typeof name === 'string' && name !== 'Error' && name !== '' ? `${name}: ${message}` : message
  } else if (typeof err === 'string') {
    text = err
  } else {
    try {
      text = JSON.stringify(err) ?? String(err)
    } catch {
      text = String(err)
    }
  }
  const line = text.split('\n').map(s => s.trim()).filter(s => s !== '').join(' ')
  return line.length > MAX_ERROR_CHARS ? `${line.slice(0, MAX_ERROR_CHARS)}…` : line
}

/** A JSON copy of `value` (Errors become `{ name, message }`); throws on cycles and BigInt. */
function jsonCopy (value: unknown): unknown {
  const text = JSON.stringify(value, (_key, v: unknown) => v instanceof Error ? { name: v.name, message: v.message } : v)
  return text === undefined ? undefined : JSON.parse(text)
}

/** An event for the wire: its JSON copy, or just its type when it has none. */
function eventCopy (event: unknown): unknown {
  try {
    return jsonCopy(event)
  } catch {
    return { type: String((event as { type?: unknown } | undefined)?.type) }
  }
}

function isEvent (value: unknown): value is { type: string } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { type?: unknown }).type === 'string'
}

const { init, channel: port } = await connectParent<MachineWorkerInit, ToMachineWorker, FromMachineWorker>()

function post (msg: FromMachineWorker): void {
  port.post(msg)
}

function log (stream: 'log' | 'error', message: string): void {
  post({ type: 'log', stream, message: message.length > MAX_LOG_CHARS ? `${message.slice(0, MAX_LOG_CHARS)}… (truncated)` : message })
}

function captureConsole (): void {
  const streams = { log: 'log', info: 'log', debug: 'log', trace: 'log', warn: 'error', error: 'error' } as const
  for (const [method, stream] of Object.entries(streams)) {
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => { log(stream, format(...args)) }
  }
}

/** A delayed event as XState's scheduler keeps it (xstate/src/system.ts, `ScheduledEvent`). */
interface ScheduledEvent {
  id: string
  event: unknown
  startedAt: number
  delay: number
  source: unknown
  target: unknown
}

type MachineActor = Actor<AnyStateMachine>

let machine: AnyStateMachine | undefined
let actor: MachineActor | undefined
/**
 * Events relayed to the root actor and not yet processed, in order: XState's
 * mailbox is FIFO, so the head is the event a failing transition was for
 * (a failure reaches us through the error observer, which has no event).
 */
const rootInbox: unknown[] = []
/** The root actor failed: nothing more of it is reported. */
let ended = false
/** Why the machine's state cannot be reported (it is not JSON): the machine counts as failed. */
let unserialisable: string | undefined
/** The last state that could be reported, for a transition whose state cannot. */
let lastGood: { value: unknown, context: unknown, persisted: unknown } = { value: null, context: null, persisted: null }
/**
 * Set while a request runs: the step it waits for (the first whose event
 * `match`es) and the other steps taken meanwhile, posted after its result so
 * that the parent sees them in the order the machine took them.
 */
let request: { match: (event: unknown) => boolean, step?: WireTransition, later: Array<{ event: unknown, transition: WireTransition }> } | undefined

/**
 * The root's pending delayed events. The system's scheduler keeps every
 * delayed `raise`/`sendTo` (an `after` transition is a delayed raise whose id
 * is its event type, cancelled by the state's exit) in `_scheduledEvents`,
 * keyed `<source sessionId>.<id>`, until it fires or is cancelled.
 */
function scheduledEvents (a: MachineActor): Record<string, ScheduledEvent> {
  const scheduled = (a.system as unknown as { _snapshot?: { _scheduledEvents?: unknown } })._snapshot?._scheduledEvents
  if (typeof scheduled !== 'object' || scheduled === null) throw new Error('this version of xstate keeps no scheduled events where the sandbox reads them')
  return scheduled as Record<string, ScheduledEvent>
}

/** Only what the root sent to itself: events for children or from children do not survive a restore (see machine-sandbox.ts). */
function pendingTimers (a: MachineActor): WireTimer[] {
  const out: WireTimer[] = []
  for (const s of Object.values(scheduledEvents(a))) {
    if (s.source !== a || s.target !== a) continue
    // startedAt is Date.now() when scheduled (XState does not read its clock option for it)
    out.push({ id: s.id, event: jsonCopy(s.event), dueWall: s.startedAt + s.delay })
  }
  return out.sort((x, y) => x.dueWall - y.dueWall)
}

/** The actor's current state as a Transition. Never throws. */
function describe (a: MachineActor, handled: boolean): WireTransition {
  if (unserialisable != null) return { handled, ...lastGood, status: 'error', error: unserialisable, timers: [] }
  const snap = a.getSnapshot() as AnyMachineSnapshot
  const status = snap.status
  try {
    const persisted = jsonCopy(a.getPersistedSnapshot())
    const value = jsonCopy(snap.value)
    const context = jsonCopy(snap.context) ?? null
    const output = status === 'done' ? jsonCopy(snap.output) : undefined
    const timers = status === 'active' ? pendingTimers(a) : []
    lastGood = { value, context, persisted }
    return { handled, value, context, status, ...(output !== undefined ? { output } : {}), ...(status === 'error' ? { error: oneLine(snap.error) } : {}), persisted, timers }
  } catch (err) {
    // It cannot be journaled, so it cannot go on: the machine is failed, at its last reportable state.
    unserialisable = `the machine's state is not JSON-serialisable: ${oneLine(err)}`
    ended = true
    try {
      a.stop()
    } catch {
      // already stopped
    }
    return { handled, ...lastGood, status: 'error', error: unserialisable, timers: [] }
  }
}

/** A macrostep of the root actor finished (or failed) for `event`. */
function onRootStep (a: MachineActor, event: unknown): void {
  const t = describe(a, true)
  if (request != null) {
    if (request.step == null && request.match(event)) request.step = t
    else request.later.push({ event: eventCopy(event), transition: t })
    return
  }
  post({ type: 'spontaneous', event: eventCopy(event), transition: t })
}

/** Posts a request's result, then the steps that followed its own. */
function finishRequest (id: number, index: number, a: MachineActor): void {
  const r = request
  request = undefined
  post({ type: 'result', id, index, ok: true, transition: r?.step ?? describe(a, true) })
  for (const s of r?.later ?? []) post({ type: 'spontaneous', ...s })
}

/** Turns an inspection event into a record to post; set by load() when the sandbox inspects. */
let toRecord: ((ev: InspectionEvent) => InspectionRecord | undefined) | undefined

/** Posts the record of `ev`, never throwing: inspection must not disturb the machine. */
function forwardInspection (record: (ev: InspectionEvent) => InspectionRecord | undefined, ev: InspectionEvent): void {
  try {
    const r = record(ev)
    if (r != null) post({ type: 'inspect', record: r })
  } catch {
    // not inspectable (a value structured clone refuses): the inspector misses this one
  }
}

/**
 * Inspection is XState's public window on the actor system: `@xstate.event`
 * when an event is relayed to an actor (queued), `@xstate.snapshot` after the
 * actor has processed one (emitted at the end of Actor.update, once deferred
 * actions ran and delayed events were scheduled or cancelled).
 */
function inspect (ev: InspectionEvent): void {
  if (toRecord != null) forwardInspection(toRecord, ev)
  try {
    const a = actor
    if (a == null || ev.actorRef !== a) return
    if (ev.type === '@xstate.event') {
      rootInbox.push(ev.event)
      // Outside a request, an event relayed to the running root is processed now (or right after the
      // step being processed): tell the parent, which watches the step's time. A stopped root drops events.
      if (request == null && !ended && a.getSnapshot().status === 'active') post({ type: 'busy', event: eventCopy(ev.event) })
    } else if (ev.type === '@xstate.snapshot') {
      rootInbox.shift()
      if (!ended) onRootStep(a, ev.event)
    }
  } catch (err) {
    log('error', `the machine sandbox failed to report a transition: ${oneLine(err)}`)
  }
}

/**
 * A transition threw (an action or guard): the actor is now in status
 * `error` and stopped. This is the only notice of it (no `@xstate.snapshot`
 * when the throw happened inside `transition`).
 */
function onRootError (): void {
  const a = actor
  if (a == null || ended) return
  ended = true
  onRootStep(a, rootInbox.shift())
}

/**
 * Applies the timer effects of actions computed (not run) by a pure
 * transition: delayed self-sends arm a timer due `delay` from now, cancels
 * remove one. For the start when replayed events come without timers.
 */
function applyTimerActions (timers: Map<string, WireTimer>, actions: unknown[]): void {
  const now = Date.now()
  for (const action of actions as Array<{ type?: unknown, params?: Record<string, unknown>, info?: { self?: unknown } }>) {
    const p = action.params ?? {}
    if (action.type === 'xstate.cancel') {
      if (typeof p.sendId === 'string') timers.delete(p.sendId)
    } else if ((action.type === 'xstate.raise' || (action.type === 'xstate.sendTo' && p.to === action.info?.self)) && typeof p.delay === 'number') {
      const id = typeof p.id === 'string' ? p.id : `replayed-${Math.random().toString(36).slice(2)}`
      timers.set(id, { id, event: jsonCopy(p.event), dueWall: now + p.delay })
    }
  }
}

function isRestorable (persisted: unknown): persisted is Record<string, unknown> {
  return typeof persisted === 'object' && persisted !== null && !Array.isArray(persisted)
}

/** A restored snapshot in status `error` is a failed restore unless the persisted one was already failed. */
function restoreFailure (snap: AnyMachineSnapshot, persisted: Record<string, unknown>): string | undefined {
  return snap.status === 'error' && persisted.status !== 'error' ? oneLine(snap.error) : undefined
}

/**
 * The persisted snapshot (and timers) to create the live actor from: the
 * stored one, advanced by the replayed events. Replay uses xstate's pure
 * `transition(logic, snapshot, event)` (our copy; it only calls the
 * machine's `transition` with an inert actor scope that collects actions
 * instead of running them), so no action runs and no invoked actor starts.
 */
function prepare (m: AnyStateMachine, msg: Extract<ToMachineWorker, { type: 'start' }>): { persisted?: Record<string, unknown>, timers: WireTimer[] } {
  if (msg.persisted !== undefined && !isRestorable(msg.persisted)) throw new Error(`the persisted snapshot is ${msg.persisted === null ? 'null' : `a ${Array.isArray(msg.persisted) ? 'array' : typeof msg.persisted}`}, not an object`)
  for (const t of msg.timers) {
    if (typeof t?.id !== 'string' || !isEvent(t.event) || !Number.isFinite(t.dueWall)) throw new Error(`timer ${JSON.stringify(t?.id)} is not { id, event: { type }, dueAt }`)
  }
  if (msg.replay.length === 0) return { ...(msg.persisted !== undefined ? { persisted: msg.persisted } : {}), timers: msg.timers }

  const timers = new Map(msg.timers.map(t => [t.id, t]))
  let snap: AnyMachineSnapshot
  if (msg.persisted !== undefined) {
    // A never-started actor is only a way to run the machine's restoreSnapshot (children are re-created, not started).
    snap = createActor(m, { snapshot: msg.persisted as Snapshot<unknown> }).getSnapshot() as AnyMachineSnapshot
    const failure = restoreFailure(snap, msg.persisted)
    if (failure != null) throw new Error(failure)
  } else {
    const [initial, actions] = initialTransition(m)
    snap = initial as AnyMachineSnapshot
    if (msg.derive) applyTimerActions(timers, actions)
  }
  for (const [i, entry] of msg.replay.entries()) {
    const where = `replayed event ${i + 1} of ${msg.replay.length}`
    if (!isEvent(entry?.event)) throw new Error(`${where} is not an object with a string type`)
    if (snap.status !== 'active') throw new Error(`${where} (${JSON.stringify(entry.event.type)}) follows a ${snap.status} state`)
    let actions: unknown[] = []
    try {
      [snap, actions] = transition(m, snap, entry.event) as [AnyMachineSnapshot, unknown[]]
    } catch (err) {
      // as the live actor does when a guard or assigner throws
      snap = { ...snap, status: 'error', error: err }
    }
    // The live transition failed in an action, which replay does not run: fail it the same way.
    if (typeof entry.error === 'string') snap = { ...snap, status: 'error', error: { message: entry.error } }
    if (msg.derive) applyTimerActions(timers, actions)
  }
  const persisted = jsonCopy(m.getPersistedSnapshot(snap)) as Record<string, unknown>
  return { persisted, timers: snap.status === 'active' ? [...timers.values()] : [] }
}

function start (msg: Extract<ToMachineWorker, { type: 'start' }>): void {
  const m = machine
  if (m == null || actor != null) {
    post({ type: 'result', id: msg.id, index: 0, ok: false, code: 'failed', error: m == null ? 'the module is not loaded' : 'the machine is already started' })
    return
  }
  let prepared: ReturnType<typeof prepare>
  try {
    prepared = prepare(m, msg)
  } catch (err) {
    post({ type: 'result', id: msg.id, index: 0, ok: false, code: 'restore', error: oneLine(err) })
    return
  }
  const { persisted, timers } = prepared

  let a: MachineActor
  try {
    a = createActor(m, { ...(persisted !== undefined ? { snapshot: persisted as Snapshot<unknown> } : {}), inspect, logger: (...args: unknown[]) => { log('log', format(...args)) } })
  } catch (err) {
    post({ type: 'result', id: msg.id, index: 0, ok: false, code: persisted !== undefined ? 'restore' : 'failed', error: oneLine(err) })
    return
  }
  if (persisted !== undefined) {
    // createActor catches a failing restoreSnapshot (unknown state value, unknown child logic…) into status `error`
    const failure = restoreFailure(a.getSnapshot() as AnyMachineSnapshot, persisted)
    if (failure != null) {
      post({ type: 'result', id: msg.id, index: 0, ok: false, code: 'restore', error: failure })
      return
    }
    if (a.getSnapshot().status === 'active') {
      // A persisted snapshot has no scheduled events, and restoring does not re-run entry actions. The
      // root's start() calls system.start(), which (re)schedules every entry of _scheduledEvents: put
      // the timers there, under the ids the machine cancels them by, and they are armed exactly once,
      // before any event is processed. `delay` is read when system.start() schedules the entry, so
      // it is computed then (a getter), however long the thread takes to get there.
      const scheduled = scheduledEvents(a)
      for (const t of timers) {
        scheduled[`${a.sessionId}.${t.id}`] = { source: a, target: a, event: t.event, get delay () { return Math.max(0, t.dueWall - Date.now()) }, id: t.id, startedAt: Date.now() }
      }
    }
  }
  actor = a
  a.subscribe({ error: onRootError })
  request = { match: e => (e as { type?: unknown } | undefined)?.type === 'xstate.init', later: [] }
  try {
    a.start()
  } catch (err) {
    request = undefined
    post({ type: 'result', id: msg.id, index: 0, ok: false, code: 'failed', error: `starting the machine failed: ${oneLine(err)}` })
    return
  }
  finishRequest(msg.id, 0, a)
}

/**
 * Whether the machine would take `event` now. `snapshot.can(event)`
 * selects the state's candidate transitions for the event type (wildcards
 * and `foo.*` descriptors included), evaluates their guards, and says yes
 * when one is enabled and has a target or actions. It does not see eventless
 * (`always`) transitions, whose guards also get the event: when can() says
 * no, a pure dry run tells whether one would be taken (the snapshot object
 * stays the same when nothing is). A guard that throws counts as handled, so
 * that the live transition reports the failure.
 */
function accepts (m: AnyStateMachine, snap: AnyMachineSnapshot, event: { type: string }): boolean {
  try {
    if (snap.can(event)) return true
  } catch {
    return true
  }
  try {
    const [next] = transition(m, snap, event)
    return next !== snap
  } catch {
    return true
  }
}

/** Applies one event of a `send` request and posts its result (and the steps its processing caused). */
function send (id: number, index: number, event: { type: string }): void {
  const a = actor
  const m = machine
  if (a == null || m == null) {
    post({ type: 'result', id, index, ok: false, code: 'failed', error: 'the machine is not started' })
    return
  }
  const snap = a.getSnapshot() as AnyMachineSnapshot
  if (unserialisable != null || snap.status !== 'active') {
    const status = unserialisable != null ? 'error' : snap.status
    const detail = unserialisable ?? (snap.status === 'error' ? oneLine(snap.error) : undefined)
    post({ type: 'result', id, index, ok: false, code: 'not-active', status, error: detail ?? `the machine's status is ${status}` })
    return
  }
  if (!isEvent(event)) {
    post({ type: 'result', id, index, ok: false, code: 'failed', error: 'the event is not an object with a string type' })
    return
  }
  if (!accepts(m, snap, event)) {
    post({ type: 'result', id, index, ok: true, transition: describe(a, false) })
    return
  }
  // XState passes the very event object through to the inspection of its step.
  request = { match: e => e === event, later: [] }
  try {
    a.send(event)
  } catch (err) {
    log('error', `sending ${JSON.stringify(event.type)} failed in the sandbox: ${oneLine(err)}`)
  }
  finishRequest(id, index, a)
}

port.onMessage((msg: ToMachineWorker) => {
  if (msg.type === 'start') start(msg)
  else if (msg.type === 'send') {
    const events = Array.isArray(msg.events) ? msg.events : []
    for (let i = 0; i < events.length; i++) send(msg.id, i, events[i] as { type: string })
  }
})

async function load (): Promise<void> {
  try {
    if (init.inspect === true) {
      const { inspectionRecord } = await import('../actors/inspection.js')
      const definitions = new WeakMap<object, string | null>()
      toRecord = ev => inspectionRecord(ev, definitions)
    }
    const mod = await import(pathToFileURL(init.artifactPath).href) as Record<string, unknown>
    if (!('default' in mod)) throw new Error(NO_DEFAULT_EXPORT)
    const def = mod.default as { kind?: unknown, machine?: unknown } | null
    if (def == null || typeof def !== 'object') throw new Error(`the default export is ${def === null ? 'null' : `a ${typeof def}`}, not a workload definition`)
    if (def.kind !== 'stateful') throw new Error(`the default export has kind ${JSON.stringify(def.kind)}; a machine sandbox runs "stateful" workloads`)
    if (!isMachine(def.machine)) throw new Error('the default export has no XState v5 machine (setup({...}).createMachine({...}))')
    machine = def.machine as unknown as AnyStateMachine
  } catch (err) {
    post({ type: 'load-failed', error: errorInfo(err) })
    return
  }
  post({ type: 'loaded', definition: definitionOf(machine) })
}

/** Most characters of a machine definition sent to the host (a statechart, not a data dump). */
const MAX_DEFINITION_CHARS = 512 * 1024

function definitionOf (m: AnyStateMachine): unknown {
  try {
    // functions (inline actions, guards) have no JSON: they are left out, as JSON.stringify does
    const text = JSON.stringify(m.toJSON())
    return text.length <= MAX_DEFINITION_CHARS ? JSON.parse(text) : undefined
  } catch {
    return undefined
  }
}

captureConsole()
await load()
