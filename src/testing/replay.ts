/**
 * Replays a stateful workload's recorded trace (`beemesh trace export <name>
 * > trace.jsonl`, one TraceEntry per line) against its machine, so that a
 * user's own tests can check that a changed machine still does what the
 * recorded one did. The first entry that comes out differently is reported
 * as a Divergence: its seq, its event, the recorded and the replayed state
 * value, context and status, and why.
 *
 * How, and the XState facts it rests on:
 *
 * - **Pure transitions, no actor.** Replay steps the machine with XState's
 *   pure `initialTransition(machine)` and `transition(machine, snapshot,
 *   event)`. They evaluate guards and `assign`s, so the context evolves as it
 *   did live, and return the actions to execute instead of executing them:
 *   entry, exit and transition actions with side effects never run, nor do
 *   `log` and `emit`. Nothing else is ever run either, so replay needs no
 *   stubs and no `provide()`.
 *
 * - **Invoked and spawned actors are not run.** Starting a child is an
 *   action too (`xstate.spawnChild`): the child exists in the snapshot as a
 *   reference and is never started, so a `fromPromise` is never called. What
 *   the children did comes from the trace: a recorded
 *   `xstate.done.actor.<id>` / `xstate.error.actor.<id>` (or any other event a
 *   child sent its parent: a spontaneous entry that is not a delayed event) is
 *   applied as recorded, payload (`output`, `error`) included.
 *
 * - **Simulated clock.** Replay time is 0 at the trace's first entry and
 *   entry k is applied at `ts[k] - ts[0]` ("t+N ms"; it never goes back,
 *   whatever a failover did to the owners' clocks). The delayed events the
 *   computed actions ask for are kept in a queue with their due times:
 *   `after` (a delayed `raise` whose id is its event type), `raise` or
 *   `sendTo` self with a delay, and `sendTo` self without one (XState queues
 *   it as a step of its own, due at once); a `cancel` (as leaving an `after`
 *   state does) removes one. There is no real timer: a 10 s delay costs a
 *   subtraction. XState's `SimulatedClock` drives the scheduler of a running
 *   actor; with no actor there is nothing for it to drive, and it fires
 *   whatever is due at once without saying when, while replay must compare
 *   each due time with the trace, so the queue is this module's.
 *
 *   A spontaneous entry (no `sender`) whose event type a pending delayed
 *   event has is that event firing: the machine's own event is applied (an
 *   `xstate.after.*` entry is never applied as recorded: if the machine has
 *   no such timer pending, for instance because its delay changed, that is a
 *   divergence) and it must be due by the entry's time. A delayed event due
 *   before an entry's time that the trace does not have there is a
 *   divergence too: live, it would have fired first. Both comparisons allow
 *   `timerToleranceMs` (default 1000 ms) for the owner's own latency: a
 *   timer is armed a little before its entry's `ts` is taken, and a failover
 *   moves it to another node's clock.
 *
 * - **Handled.** An event with a `sender` that the machine does not take in
 *   the replayed state (`transition` returns the same snapshot and
 *   `snapshot.can(event)` says no) is a divergence: the owner journals only
 *   the events it applied. A spontaneous one that changes nothing is fine if
 *   the trace recorded no change either.
 *
 * - **Failures.** An `assign` or guard that throws makes `transition` throw:
 *   the replay fails at that entry, as the live machine did (status
 *   `error`). An action of the machine's own that threw live is not run by
 *   replay; an entry recorded in status `error` with an `error` is therefore
 *   taken as it stands when its replayed step has such an action to blame (a
 *   non-`xstate.*` action), and is a divergence when it has none.
 *
 * - **A later start.** A trace whose first entry has seq > 0 (older entries
 *   pruned) starts from that entry's value and context
 *   (`machine.resolveState`); replay checks the entries after it. The timers
 *   pending then are unknown: an `after` timer of a state active at the start
 *   (and not left since) is assumed armed, due at an unknown time; other
 *   delayed events armed before the start are lost, as are spawned children.
 */
import { readFile } from 'node:fs/promises'
import { AssertionError } from 'node:assert'
import { isDeepStrictEqual } from 'node:util'
import { initialTransition, transition, type AnyMachineSnapshot, type AnyStateMachine, type StateValue } from 'xstate'
import * as z from 'zod'
import type { TraceEntry, TraceEvent } from '../store/trace.js'
import { InvalidTraceError } from './errors.js'

export type { TraceEntry, TraceEvent, TraceStatus } from '../store/trace.js'

/** A machine's state as replay compares it. */
export interface ReplayedState {
  value: unknown
  context: unknown
  status: string
  /** When `status` is `done`. */
  output?: unknown
  /** When `status` is `error`. */
  error?: string
}

/** The first entry that replays differently. */
export interface Divergence {
  /** seq of the entry. */
  step: number
  /** Its index in the trace array. */
  index: number
  /** The entry's event. */
  event: unknown
  /** As recorded. */
  expected: ReplayedState
  /** As replayed (for an event that was not applied: the state it met). */
  actual: ReplayedState
  /** One line: why the entry does not replay. */
  reason: string
}

/**
 * `steps`: how many entries were replayed and matched, the start at seq 0
 * included (its initial state is computed and compared); a later starting
 * point is restored, not replayed, so it is not counted.
 */
export type ReplayResult =
  | { ok: true, steps: number }
  | { ok: false, divergence: Divergence }

export interface ReplayOptions {
  /** The machine's input, for the initial state of a trace starting at seq 0. */
  input?: unknown
  /** How far a delayed event's due time may be off the recorded one before it counts as fired too early or too late. Default 1000 ms. */
  timerToleranceMs?: number
}

export const DEFAULT_TIMER_TOLERANCE_MS = 1000
const INIT_EVENT = 'xstate.init'
const AFTER_PREFIX = 'xstate.after.'

function isStateValue (v: unknown): v is StateValue {
  if (typeof v === 'string') return true
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  return Object.values(v).every(isStateValue)
}

const EntrySchema = z.object({
  workloadId: z.string().min(1),
  seq: z.number().int().nonnegative(),
  epoch: z.number().int().nonnegative(),
  ts: z.number().nonnegative(),
  owner: z.string().min(1),
  event: z.looseObject({ type: z.string().min(1) }),
  sender: z.string().optional(),
  id: z.string().optional(),
  value: z.custom<StateValue>(isStateValue, { error: 'expected a state value (a string, or an object of state values)' }),
  context: z.custom<unknown>((v) => v !== undefined),
  status: z.enum(['active', 'done', 'error']),
  output: z.unknown().optional(),
  error: z.string().optional()
})

/** The value at `path` in `raw`, to tell a missing field from a wrong one. */
function at (raw: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = raw
  for (const key of path) {
    if (typeof v !== 'object' || v === null) return undefined
    v = (v as Record<PropertyKey, unknown>)[key]
  }
  return v
}

function validateEntry (raw: unknown): { entry: TraceEntry } | { problem: string } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { problem: 'expected a JSON object (one trace entry)' }
  const parsed = EntrySchema.safeParse(raw)
  if (parsed.success) return { entry: parsed.data }
  const issue = parsed.error.issues[0]
  if (issue == null) return { problem: 'not a trace entry' }
  const field = issue.path.map(String).join('.')
  if (at(raw, issue.path) === undefined) return { problem: `missing field ${field}` }
  return { problem: `field ${field}: ${issue.message}` }
}

/**
 * The checks across entries: one workload, seq contiguous, epochs never going
 * down, seq 0 the start, nothing after a finished machine. `where(i)` names
 * entry i in an error.
 */
function checkSequence (entries: readonly TraceEntry[], source: string, where: (i: number) => number | undefined, name: (i: number) => string): void {
  if (entries.length === 0) throw new InvalidTraceError(source, undefined, 'no entries')
  for (const [i, e] of entries.entries()) {
    if (e.seq === 0 && e.event.type !== INIT_EVENT) throw new InvalidTraceError(source, where(i), `seq 0 must be the start (event ${INIT_EVENT}), got event ${JSON.stringify(e.event.type)}`)
    const prev = entries[i - 1]
    if (prev == null) continue
    if (e.workloadId !== prev.workloadId) throw new InvalidTraceError(source, where(i), `workloadId ${JSON.stringify(e.workloadId)} differs from ${JSON.stringify(prev.workloadId)} of ${name(i - 1)}: a trace holds one workload`)
    if (e.seq !== prev.seq + 1) throw new InvalidTraceError(source, where(i), `seq ${e.seq} follows seq ${prev.seq} of ${name(i - 1)}: ${e.seq > prev.seq + 1 ? (e.seq === prev.seq + 2 ? `entry ${prev.seq + 1} is missing` : `entries ${prev.seq + 1}…${e.seq - 1} are missing`) : 'seq must rise by 1'}`)
    if (e.epoch < prev.epoch) throw new InvalidTraceError(source, where(i), `epoch ${e.epoch} is lower than epoch ${prev.epoch} of ${name(i - 1)}: epochs never go down`)
    if (prev.status !== 'active') throw new InvalidTraceError(source, where(i), `seq ${e.seq} follows seq ${prev.seq} of ${name(i - 1)}, where the machine is ${prev.status}: it takes no more events`)
  }
}

/**
 * Parses a trace as `beemesh trace export` writes it: JSONL, one entry a
 * line, blank lines ignored. Throws an InvalidTraceError naming
 * `source:line` and the problem.
 */
export function parseTrace (text: string, source = '<trace>'): TraceEntry[] {
  const entries: TraceEntry[] = []
  const lines: number[] = []
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (line.trim() === '') continue
    let raw: unknown
    try {
      raw = JSON.parse(line)
    } catch (err) {
      throw new InvalidTraceError(source, i + 1, `not valid JSON (${oneLine(err)})`)
    }
    const checked = validateEntry(raw)
    if ('problem' in checked) throw new InvalidTraceError(source, i + 1, checked.problem)
    entries.push(checked.entry)
    lines.push(i + 1)
  }
  checkSequence(entries, source, (i) => lines[i], (i) => `line ${lines[i] ?? '?'}`)
  return entries
}

/** Reads and parses a trace file (see parseTrace); errors name the path. */
export async function loadTrace (path: string, options: { signal?: AbortSignal } = {}): Promise<TraceEntry[]> {
  const text = await readFile(path, { encoding: 'utf8', ...(options.signal != null ? { signal: options.signal } : {}) })
  return parseTrace(text, path)
}

/** A delayed event pending on the simulated clock. */
interface Timer {
  /** XState's send id (an `after` timer's is its event type); undefined for an anonymous delayed send. */
  id: string | undefined
  event: TraceEvent
  /** On the replay clock; undefined: armed before a later starting point, due at an unknown time. */
  dueAt: number | undefined
}

/** What replay reads of an action computed by `transition` (ExecutableActionObject). */
interface ComputedAction {
  type: string
  params?: unknown
  info?: { self?: unknown }
}

function isEvent (v: unknown): v is TraceEvent {
  return typeof v === 'object' && v !== null && typeof (v as { type?: unknown }).type === 'string'
}

/** The delayed events the machine has pending, in the order they were armed. */
class DelayedEvents {
  private readonly pending: Timer[] = []

  /** Applies the timer effects of computed actions at replay time `now`. */
  apply (actions: readonly ComputedAction[], now: number): void {
    for (const action of actions) {
      const p = (typeof action.params === 'object' && action.params !== null ? action.params : {}) as Record<string, unknown>
      if (action.type === 'xstate.cancel') {
        if (typeof p.sendId === 'string') this.cancel(p.sendId)
        continue
      }
      const delay = typeof p.delay === 'number' ? p.delay : undefined
      const toSelf = action.type === 'xstate.sendTo' && p.to != null && p.to === action.info?.self
      // A raise without a delay was already taken by `transition` itself.
      if (!isEvent(p.event) || !(toSelf || (action.type === 'xstate.raise' && delay !== undefined))) continue
      this.arm(typeof p.id === 'string' ? p.id : undefined, p.event, now + Math.max(0, delay ?? 0))
    }
  }

  arm (id: string | undefined, event: TraceEvent, dueAt: number | undefined): void {
    if (id !== undefined) this.cancel(id)
    this.pending.push({ id, event, dueAt })
  }

  cancel (id: string): void {
    const i = this.pending.findIndex((t) => t.id === id)
    if (i >= 0) this.pending.splice(i, 1)
  }

  remove (timer: Timer): void {
    const i = this.pending.indexOf(timer)
    if (i >= 0) this.pending.splice(i, 1)
  }

  /** The pending event of this type that fires first (one armed before the start first). */
  firstOfType (type: string): Timer | undefined {
    return this.byDue().find((t) => t.event.type === type)
  }

  /** The first pending event other than `matched` that was due before `t` and before `matched`, so would have fired before this entry. */
  overdue (t: number, toleranceMs: number, matched: Timer | undefined): Timer | undefined {
    if (matched !== undefined && matched.dueAt === undefined) return undefined
    return this.byDue().find((p) => p !== matched && p.dueAt !== undefined && p.dueAt + toleranceMs < t && (matched?.dueAt === undefined || p.dueAt < matched.dueAt))
  }

  describe (): string {
    if (this.pending.length === 0) return 'the machine has no delayed event pending'
    return `the machine has pending: ${this.byDue().map((t) => `${t.event.type} ${t.dueAt === undefined ? 'armed before the start' : `due at t+${t.dueAt} ms`}`).join(', ')}`
  }

  /** Stable: equal due times keep arming order, as XState's scheduler fires them. */
  private byDue (): Timer[] {
    return [...this.pending].sort((a, b) => (a.dueAt ?? -Infinity) - (b.dueAt ?? -Infinity))
  }
}

function oneLine (err: unknown): string {
  const text = err instanceof Error ? err.message : typeof err === 'string' ? err : JSON.stringify(err) ?? String(err)
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

function jsonCopy (v: unknown): unknown {
  const text = JSON.stringify(v)
  return text === undefined ? undefined : JSON.parse(text)
}

function sameJson (a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(jsonCopy(a), jsonCopy(b))
}

function shown (v: unknown): string {
  return JSON.stringify(v) ?? 'undefined'
}

/** The state a replayed snapshot shows (`failure`: its transition threw). */
function observe (snap: AnyMachineSnapshot, failure?: string): ReplayedState {
  try {
    const status = failure !== undefined ? 'error' : snap.status
    const state: ReplayedState = { value: jsonCopy(snap.value), context: jsonCopy(snap.context), status }
    if (status === 'done') state.output = jsonCopy(snap.output)
    if (status === 'error') state.error = failure ?? oneLine(snap.error)
    return state
  } catch (err) {
    // as live, where a state with no JSON form fails the machine
    return { value: snap.value, context: null, status: 'error', error: `the state has no JSON form: ${oneLine(err)}` }
  }
}

function recorded (e: TraceEntry): ReplayedState {
  const state: ReplayedState = { value: e.value, context: e.context, status: e.status }
  if (e.status === 'done' && 'output' in e) state.output = e.output
  if (e.error !== undefined) state.error = e.error
  return state
}

/** Up to three places where two JSON values differ: `coins: recorded 1, replayed 2`. */
function differences (expected: unknown, actual: unknown, path = '', out: string[] = []): string[] {
  if (out.length >= 3 || isDeepStrictEqual(expected, actual)) return out
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null
  if (isObject(expected) && isObject(actual) && Array.isArray(expected) === Array.isArray(actual)) {
    for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
      differences(expected[key], actual[key], path === '' ? key : `${path}.${key}`, out)
    }
    return out
  }
  const fmt = (v: unknown): string => v === undefined ? 'absent' : shown(v)
  out.push(`${path === '' ? '' : `${path}: `}recorded ${fmt(expected)}, replayed ${fmt(actual)}`)
  return out
}

/** Why `actual` is not `expected`, or undefined when they match. */
function mismatch (type: string, expected: ReplayedState, actual: ReplayedState): string | undefined {
  if (actual.status === 'error' && expected.status !== 'error') return `replaying ${type} failed the machine: ${actual.error ?? 'no error given'}`
  const diffs: string[] = []
  if (!sameJson(expected.value, actual.value)) diffs.push(`state value ${shown(actual.value)}, recorded ${shown(expected.value)}`)
  if (!sameJson(expected.context, actual.context)) diffs.push(`a different context (${differences(jsonCopy(expected.context), jsonCopy(actual.context)).join('; ')})`)
  if (expected.status !== actual.status) diffs.push(`status ${actual.status}, recorded ${expected.status}`)
  else if (expected.status === 'done' && 'output' in expected && !sameJson(expected.output, actual.output)) diffs.push(`a different output (${differences(jsonCopy(expected.output), jsonCopy(actual.output)).join('; ')})`)
  return diffs.length === 0 ? undefined : `after ${type} the replayed machine has ${diffs.join(' and ')}`
}

interface Applied {
  snap: AnyMachineSnapshot
  actions: ComputedAction[]
  /** `transition` threw (an assign or guard). */
  failure?: string
  handled: boolean
}

function apply (machine: AnyStateMachine, snap: AnyMachineSnapshot, event: TraceEvent): Applied {
  let next: AnyMachineSnapshot
  let actions: ComputedAction[]
  try {
    [next, actions] = transition(machine, snap, event)
  } catch (err) {
    return { snap, actions: [], failure: oneLine(err), handled: true }
  }
  let handled = next !== snap
  if (!handled) {
    try {
      handled = snap.can(event)
    } catch {
      handled = true
    }
  }
  return { snap: next, actions, handled }
}

/** A computed action of the machine's own (not one of XState's built-ins), which could have thrown when run live. */
function hasOwnAction (actions: readonly ComputedAction[]): boolean {
  return actions.some((a) => !a.type.startsWith('xstate.'))
}

/**
 * Replays `trace` against `machine` (see the module comment) and resolves to
 * `{ ok: true, steps }` or to the first Divergence. Throws an
 * InvalidTraceError for a trace that is not one (empty, out of sequence).
 */
export async function replayTrace (machine: AnyStateMachine, trace: readonly TraceEntry[], options: ReplayOptions = {}): Promise<ReplayResult> {
  checkSequence(trace, 'trace', (i) => i, (i) => `entry ${i}`)
  const toleranceMs = options.timerToleranceMs ?? DEFAULT_TIMER_TOLERANCE_MS
  const first = trace[0] as TraceEntry
  const timers = new DelayedEvents()
  const diverged = (index: number, entry: TraceEntry, actual: ReplayedState, reason: string): ReplayResult =>
    ({ ok: false, divergence: { step: entry.seq, index, event: entry.event, expected: recorded(entry), actual, reason } })

  let snap: AnyMachineSnapshot
  let steps = 0
  if (first.seq === 0) {
    let actions: ComputedAction[]
    try {
      [snap, actions] = initialTransition(machine, options.input)
    } catch (err) {
      const actual: ReplayedState = { value: null, context: null, status: 'error', error: oneLine(err) }
      if (first.status === 'error') return { ok: true, steps: 1 }
      return diverged(0, first, actual, `the machine's initial transition failed: ${actual.error ?? ''}`)
    }
    const actual = observe(snap)
    const reason = mismatch(INIT_EVENT, recorded(first), actual)
    if (reason !== undefined) return diverged(0, first, actual, reason)
    timers.apply(actions, 0)
    steps = 1
  } else {
    try {
      snap = machine.resolveState({ value: first.value, context: first.context })
    } catch (err) {
      return diverged(0, first, { value: null, context: null, status: 'error', error: oneLine(err) }, `the machine cannot be restored to the starting point ${shown(first.value)}: ${oneLine(err)}`)
    }
    for (const node of snap._nodes) {
      for (const delayed of node.after) timers.arm(delayed.eventType, { type: delayed.eventType }, undefined)
    }
  }

  let now = 0
  for (let index = 1; index < trace.length; index++) {
    const entry = trace[index] as TraceEntry
    const type = entry.event.type
    const t = entry.ts - first.ts
    const spontaneous = entry.sender === undefined
    const timer = spontaneous ? timers.firstOfType(type) : undefined
    const before = observe(snap)

    if (timer === undefined && type.startsWith(AFTER_PREFIX)) {
      return diverged(index, entry, before, `expected the delayed event ${type} to fire by t+${t} ms, but it did not (${timers.describe()})`)
    }
    if (timer?.dueAt !== undefined && timer.dueAt > t + toleranceMs) {
      return diverged(index, entry, before, `expected the delayed event ${type} to fire by t+${t} ms, but it did not: the machine has it due at t+${timer.dueAt} ms`)
    }
    const late = timers.overdue(t, toleranceMs, timer)
    if (late !== undefined) {
      const fired = apply(machine, snap, late.event)
      return diverged(index, entry, observe(fired.snap, fired.failure), `the delayed event ${late.event.type} was due at t+${late.dueAt ?? '?'} ms, before this entry at t+${t} ms, but the trace does not have it there (it would have fired first)`)
    }
    if (timer !== undefined && !sameJson(timer.event, entry.event)) {
      return diverged(index, entry, before, `the delayed event ${type} fired as ${shown(timer.event)}, recorded as ${shown(entry.event)}`)
    }
    now = Math.max(now, t)
    if (timer !== undefined) timers.remove(timer)

    const step = apply(machine, snap, timer?.event ?? entry.event)
    const expected = recorded(entry)
    if (!step.handled && (!spontaneous || mismatch(type, expected, before) !== undefined)) {
      return diverged(index, entry, before, `the machine does not handle ${type} in state ${shown(before.value)}`)
    }
    let actual = observe(step.snap, step.failure)
    if (expected.status === 'error' && actual.status === 'active' && entry.error !== undefined) {
      // Live, an action threw; replay runs no action, so the failure is taken from the trace when an action could have thrown.
      if (!hasOwnAction(step.actions)) return diverged(index, entry, actual, `the trace has ${type} fail the machine (${entry.error}), but its replay did not fail and runs no action of the machine's own that could have`)
      actual = { ...actual, status: 'error', error: entry.error }
    }
    const reason = mismatch(type, expected, actual)
    if (reason !== undefined) return diverged(index, entry, actual, reason)
    if (step.failure === undefined && step.snap.status === 'active') timers.apply(step.actions, now)
    snap = step.snap
    steps++
  }
  return { ok: true, steps }
}

/** A Divergence as a multi-line report: the step, its event, recorded and replayed state. */
export function describeDivergence (d: Divergence): string {
  const state = (s: ReplayedState): string[] => {
    const lines = [`value ${shown(s.value)}, status ${s.status}${s.error !== undefined ? ` (${s.error})` : ''}`, `context ${shown(s.context)}`]
    if (s.output !== undefined) lines.push(`output ${shown(s.output)}`)
    return lines
  }
  const block = (label: string, lines: string[]): string => lines.map((l, i) => `  ${i === 0 ? label.padEnd(10) : ' '.repeat(10)}${l}`).join('\n')
  return [
    `diverged at seq ${d.step} (trace entry ${d.index}): ${d.reason}`,
    block('event', [shown(d.event)]),
    block('expected', state(d.expected)),
    block('actual', state(d.actual))
  ].join('\n')
}

/**
 * Replays `trace` against `machine` and throws an AssertionError (node:assert)
 * with a multi-line report when it diverges. `message` heads the report.
 */
export async function assertReplays (machine: AnyStateMachine, trace: readonly TraceEntry[], message?: string, options?: ReplayOptions): Promise<void> {
  const result = await replayTrace(machine, trace, options)
  if (result.ok) return
  const d = result.divergence
  throw new AssertionError({
    message: `${message ?? `the trace of ${trace[0]?.workloadId ?? 'the workload'} does not replay`}: ${describeDivergence(d)}`,
    actual: d.actual,
    expected: d.expected,
    operator: 'replayTrace'
  })
}
