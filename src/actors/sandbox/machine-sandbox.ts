/**
 * A stateful workload's XState machine, run as an actor in a worker thread
 * (machine-worker.ts) with the same isolation as ReplicaSandbox: a heap
 * limit, a timeout per transition, and no user code in the host's thread.
 * The host side keeps the last good state (the Transition after the last
 * transition the machine completed, sent or spontaneous), so a thread that
 * has to go can be replaced by one resumed from it.
 *
 * Semantics, and the XState facts they rest on:
 *
 * - **handled.** Before an event is applied the worker asks
 *   `snapshot.can(event)`: it matches the current state's transitions by event
 *   type (wildcard `*` and `foo.*` descriptors included), evaluates their
 *   guards (so a guard may run twice per event; guards should be pure) and
 *   needs one with a target or actions. can() ignores eventless (`always`)
 *   transitions, whose guards also get the event, so when it says no a pure
 *   dry run decides. The root does not pass events to its children: an event
 *   only a child would handle is not handled. An unhandled event is not
 *   applied; `send` resolves `handled: false` with the unchanged state.
 *
 * - **Timers.** XState's persisted snapshot has no scheduled (delayed) events,
 *   and restoring it does not re-run entry actions, so `after` timers and
 *   delayed `raise`/`sendTo`-self events would be lost. After each transition
 *   the worker reads the root's pending self-addressed delayed events from
 *   the system scheduler (`startedAt + delay`) into `state.timers`, with
 *   `dueAt` on this sandbox's clock. `start({ state })` re-arms them for
 *   `max(0, dueAt - now)` under their own ids (an `after` timer's id is its
 *   event type), so leaving the state still cancels them. Delayed events
 *   the root sends to children, and children's own timers, are not kept.
 *
 * - **Replay.** `start({ state, replay, timers })` restores `state.persisted`,
 *   applies each replayed event with xstate's pure `transition()` (actions are
 *   computed, not run; invoked actors are not started), then creates the live
 *   actor from the final snapshot. The timers re-armed are `timers` when given
 *   (the host's "snapshot at seq S + events S+1..N + timers as of N"); without
 *   it, `state.timers` with the replayed events' delayed self-sends and
 *   cancels applied, a new timer counting its delay from `now` (a replay
 *   entry carries no time). A replay entry with `error` ends in status
 *   `error` with that message, as its live transition did (its actions, which
 *   threw, are not run by replay).
 *
 * - **Invoked and spawned actors** run live in the worker; their completion
 *   is a spontaneous transition. A persisted snapshot keeps the children
 *   active in it (by `src`, so they must be named in `setup({ actors })`). On
 *   restore XState re-creates and starts them: an invoked promise that was in
 *   flight is started again from its input, not resumed; its first run's
 *   result is lost with the old thread.
 *
 * - **Failures.** An action or guard that throws puts the machine in status
 *   `error` (a Transition like any other); later sends reject with
 *   MachineNotActiveError, as they do once it is `done`. A sent event whose
 *   transition runs past `timeoutMs`, exhausts the heap or ends the thread
 *   rejects with TransitionFailedError, and the thread is replaced by one
 *   resumed from the last good state: the event is not applied, later sends
 *   work (and in-flight invoked promises start again). Restarting is safe: it
 *   is what a restore on another node does anyway. A thread that ends
 *   outside any transition (a stray timer of user code) is replaced the same
 *   way, with growing delays while that keeps happening. A transition nobody
 *   sent that hangs or ends the thread cannot be refused like a send: resumed,
 *   the machine would take it again (an overdue timer fires at once), so the
 *   machine fails instead: onSpontaneous gets a Transition in status `error`
 *   at the last good state (its persisted snapshot failed too), and the thread
 *   is not replaced. The worker announces each such event (`busy`) so its
 *   time is watched even when no send is waiting.
 *
 * - **Order.** Sends run one at a time in call order (a send made while
 *   `start` runs waits for it); `current()` answers from the host's copy of
 *   the last state, after the sends called before it. `onSpontaneous` is
 *   called for the steps the machine took, in the order it took them, with
 *   the send results in between: a step taken before a send's own is
 *   reported before the send resolves, and one its processing caused (a
 *   child answering at once) after.
 *
 * - **JSON.** Events, context, output and persisted snapshots cross as JSON
 *   (an Error becomes `{ name, message }`). Sent events must be JSON objects
 *   with a non-empty string `type` not starting with `xstate.` (XState's own
 *   events). A transition whose state has no JSON form (a BigInt in the
 *   context) fails the machine, at its last reportable state.
 *
 * - **Clock.** XState stamps scheduled events with Date.now(); `dueAt` is
 *   converted to the injected clock (its offset from Date.now()), and back
 *   when timers are re-armed.
 *
 * This is fault isolation, not a security boundary (see sandbox.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { describeError } from '../../errors.js'
import type { WorkloadIdentity } from '../../workloads/types.js'
import { ArtifactLoadError, InvalidMachineEventError, MachineNotActiveError, MachineRestoreError, SandboxStoppedError, TransitionFailedError } from './errors.js'
import type { FromMachineWorker, MachineWorkerInit, ToMachineWorker, WireTimer, WireTransition } from './machine-worker.js'
import { describeExit, isOutOfMemory, remoteError, restartDelay, spawnThread, type SandboxLogLine, type Thread, type ThreadExit } from './sandbox.js'

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
  /** One send may take at most this long, else the thread is replaced and send rejects with TransitionFailedError. */
  timeoutMs: number
  /** A transition nobody sent: a delayed event fired, an invoked/spawned actor finished or failed, etc. Called in order with send results. */
  onSpontaneous: (event: unknown, t: Transition) => void
  /** Console output of user code, and the sandbox's own notes (stream `error`). */
  onLog: (line: SandboxLogLine) => void
  /** Default Date.now. Timers' `dueAt` are on this clock. */
  clock?: () => number
  /** How long loading the module and starting the machine may take, at start and after each restart. Default 30 s. */
  loadTimeoutMs?: number
}

const DEFAULT_LOAD_TIMEOUT_MS = 30_000
/** XState's own events (`xstate.init`, `xstate.after.…`, `xstate.done.actor.…`) cannot be sent from outside. */
const RESERVED_PREFIX = 'xstate.'

type Outcome =
  | { kind: 'result', msg: Extract<FromMachineWorker, { type: 'result' }> }
  | { kind: 'timeout' }
  | { kind: 'exit', exit: ThreadExit }
  | { kind: 'unsendable', error: string }

/** One worker thread. */
interface Live {
  thread: Thread
  /** Terminated on purpose (timeout, stop, failed start) or replaced: its exit and messages need no reaction. */
  retired: boolean
  /** The machine is started in it. */
  started: boolean
  /** The id of its `start` request. */
  startId: number
  exit?: ThreadExit
  /** The request it is running. */
  inflight?: { id: number, settle: (o: Outcome) => void }
  /** Settled by `loaded` / `load-failed` / exit. */
  onLoad?: (err?: Error) => void
  /** Spontaneous events the worker is processing (announced by `busy`, done with `spontaneous`), in order. */
  busy: unknown[]
  /** Runs while `busy` is not empty: the step at its head must finish within timeoutMs. */
  watchdog?: NodeJS.Timeout
}

interface Job {
  event?: { type: string }
  resolve: (t: Transition) => void
  reject: (err: Error) => void
}

/** The event's JSON copy, or why it is not a machine event. */
function checkEvent (event: unknown): { type: string } {
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

/** A sandbox for one stateful workload's machine. */
export class MachineSandbox {
  private status: 'new' | 'starting' | 'running' | 'stopped' = 'new'
  /** The thread serving sends (or being started). */
  private serving?: Promise<Live>
  private readonly threads = new Set<Live>()
  /** The state after the last transition the machine completed. */
  private last?: Transition
  private readonly queue: Job[] = []
  private draining = false
  private nextId = 0
  private consecutiveFailures = 0
  private readonly lifetime = new AbortController()
  private readonly clock: () => number
  private readonly loadTimeoutMs: number
  /** `workload <id>`, for load errors. */
  private readonly label: string
  /** `the machine of <id>`, for the machine's own errors. */
  private readonly machineLabel: string

  constructor (private readonly init: MachineSandboxInit) {
    this.clock = init.clock ?? Date.now
    this.loadTimeoutMs = init.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS
    this.label = `workload ${init.identity.id}`
    this.machineLabel = `the machine of ${init.identity.id}`
  }

  /**
   * Loads the artifact, creates the actor from `restore` (a state and events
   * to replay after it) or from the machine's initial state, starts it, and
   * returns the current Transition (handled: true). Rejects with
   * ArtifactLoadError when the module does not load or is not a stateful
   * workload with a machine, and MachineRestoreError when the state cannot
   * be restored.
   */
  async start (restore: MachineRestore = {}): Promise<Transition> {
    if (this.status === 'stopped') throw this.stoppedError()
    if (this.status !== 'new') throw new Error(`the machine sandbox of ${this.init.identity.id} is already started`)
    this.status = 'starting'
    const first = this.spawn(0, restore)
    const live = first.then(r => r.live)
    live.catch(() => {})
    this.serving = live
    let started: Transition
    try {
      started = (await first).transition
    } catch (err) {
      if (this.serving === live) this.serving = undefined
      if (this.status === 'starting') {
        this.status = 'new'
        for (const job of this.queue.splice(0)) job.reject(new Error(`the machine sandbox of ${this.init.identity.id} did not start: ${describeError(err)}`))
      }
      throw err
    }
    if (this.stopped()) throw this.stoppedError()
    this.status = 'running'
    void this.drain()
    return started
  }

  /** Sends one event (a JSON object with a string `type`); resolves with its Transition. Sends are processed one at a time in call order. */
  async send (event: unknown): Promise<Transition> {
    const copy = checkEvent(event)
    return await this.enqueue(copy)
  }

  /** The machine's current state (no event), after the sends called before. */
  async current (): Promise<Transition> {
    return await this.enqueue(undefined)
  }

  /** Terminates the worker; queued sends reject with SandboxStoppedError. */
  async stop (): Promise<void> {
    if (this.status !== 'stopped') {
      this.status = 'stopped'
      this.lifetime.abort()
      this.serving = undefined
      for (const job of this.queue.splice(0)) job.reject(this.stoppedError())
    }
    await Promise.all([...this.threads].map(async live => {
      live.retired = true
      await live.thread.worker.terminate()
    }))
  }

  private stopped (): boolean {
    return this.status === 'stopped'
  }

  private stoppedError (): SandboxStoppedError {
    return new SandboxStoppedError(this.init.identity.id, this.init.identity.replica)
  }

  private log (stream: 'log' | 'error', message: string): void {
    try {
      this.init.onLog({ ts: Date.now(), replica: this.init.identity.replica, message, stream })
    } catch {
      // the host's log sink failed; the line is dropped
    }
  }

  /** This sandbox's clock minus Date.now(): wire times are Date.now() times. */
  private offset (): number {
    return this.clock() - Date.now()
  }

  private toTransition (w: WireTransition): Transition {
    const offset = this.offset()
    return {
      handled: w.handled,
      value: w.value,
      context: w.context,
      status: w.status,
      ...(w.output !== undefined ? { output: w.output } : {}),
      ...(w.error !== undefined ? { error: w.error } : {}),
      state: { persisted: w.persisted, timers: w.timers.map(t => ({ id: t.id, event: t.event, dueAt: t.dueWall + offset })) }
    }
  }

  private toWire (timers: PendingTimer[], now: number): WireTimer[] {
    const wallNow = Date.now()
    if (!Array.isArray(timers)) throw new MachineRestoreError(this.machineLabel, 'timers must be an array')
    return timers.map(t => ({ id: t?.id, event: t?.event, dueWall: wallNow + (t?.dueAt - now) }))
  }

  private startMessage (id: number, restore: MachineRestore): ToMachineWorker {
    const { state, replay = [], timers, now = this.clock() } = restore
    if (state != null && (typeof state !== 'object' || state.persisted === undefined)) throw new MachineRestoreError(this.machineLabel, 'the state has no persisted snapshot')
    if (!Array.isArray(replay)) throw new MachineRestoreError(this.machineLabel, 'replay must be an array')
    return {
      type: 'start',
      id,
      ...(state != null ? { persisted: state.persisted } : {}),
      replay: replay.map(e => ({ event: e?.event, ...(typeof e?.error === 'string' ? { error: e.error } : {}) })),
      timers: this.toWire(timers ?? state?.timers ?? [], now),
      derive: timers == null && replay.length > 0
    }
  }

  private async enqueue (event: { type: string } | undefined): Promise<Transition> {
    if (this.status === 'stopped') throw this.stoppedError()
    if (this.status === 'new') throw new Error(`the machine sandbox of ${this.init.identity.id} is not started`)
    return await new Promise<Transition>((resolve, reject) => {
      this.queue.push({ ...(event != null ? { event } : {}), resolve, reject })
      if (this.status === 'running') void this.drain()
    })
  }

  private async drain (): Promise<void> {
    if (this.draining) return
    this.draining = true
    try {
      for (let job = this.queue.shift(); job != null; job = this.queue.shift()) {
        if (job.event == null) {
          job.resolve({ ...(this.last as Transition), handled: true })
          continue
        }
        try {
          job.resolve(await this.run(job.event))
        } catch (err) {
          job.reject(err instanceof Error ? err : new Error(String(err)))
        }
      }
    } finally {
      this.draining = false
    }
  }

  private notActive (): MachineNotActiveError | undefined {
    const last = this.last
    return last != null && last.status !== 'active' ? new MachineNotActiveError(this.machineLabel, last.status, last.error) : undefined
  }

  private async run (event: { type: string }): Promise<Transition> {
    const inactive = this.notActive()
    if (inactive != null) throw inactive
    let live: Live
    try {
      live = await this.acquire()
    } catch (err) {
      if (this.stopped()) throw this.stoppedError()
      throw new TransitionFailedError('crashed', `no worker could be started for the machine of ${this.init.identity.id}: ${describeError(err)}`)
    }
    // a spontaneous transition may have ended the machine meanwhile
    const ended = this.notActive()
    if (ended != null) throw ended
    if (this.stopped()) throw this.stoppedError()

    const outcome = await this.request(live, { type: 'send', id: ++this.nextId, event }, this.init.timeoutMs)
    if (this.stopped() && outcome.kind !== 'result') throw this.stoppedError()
    if (outcome.kind === 'timeout' && live.busy.length > 0 && !live.retired) {
      // the worker never got to this event: it is stuck in a spontaneous step
      this.failSpontaneous(live, `did not finish within ${this.init.timeoutMs} ms`)
    }
    if (outcome.kind !== 'result') {
      const failed = this.notActive()
      if (failed != null) throw failed
    }
    const what = `the transition for event ${JSON.stringify(event.type)}`
    switch (outcome.kind) {
      case 'result': {
        const msg = outcome.msg
        if (msg.ok) {
          this.consecutiveFailures = 0
          return this.toTransition(msg.transition)
        }
        if (msg.code === 'not-active') throw new MachineNotActiveError(this.machineLabel, msg.status ?? 'stopped', msg.error)
        throw new Error(`${what} failed in the sandbox: ${msg.error}`)
      }
      case 'unsendable':
        throw new InvalidMachineEventError(`${JSON.stringify(event.type)} could not be passed to the worker: ${outcome.error}`)
      case 'timeout':
        this.replace(live)
        throw new TransitionFailedError('timeout', `${what} did not finish within ${this.init.timeoutMs} ms; the event was not applied, and the machine's worker was replaced and resumed from the last good state`)
      case 'exit':
        if (isOutOfMemory(outcome.exit)) {
          throw new TransitionFailedError('out-of-memory', `${what} ran out of memory (heap limit ${this.init.memoryLimitMb} MB); the event was not applied, and the machine's worker was replaced and resumed from the last good state`)
        }
        throw new TransitionFailedError('crashed', `the worker crashed during ${what} (${describeExit(outcome.exit)}); the event was not applied, and the machine's worker was replaced and resumed from the last good state`)
    }
  }

  /** Posts a request to a thread and waits for its result, the thread's exit, or the timeout. */
  private async request (live: Live, msg: ToMachineWorker, timeoutMs: number): Promise<Outcome> {
    return await new Promise<Outcome>(resolve => {
      const timer = setTimeout(() => { settle({ kind: 'timeout' }) }, timeoutMs)
      const settle = (o: Outcome): void => {
        clearTimeout(timer)
        if (live.inflight?.id === msg.id) live.inflight = undefined
        resolve(o)
      }
      if (live.exit != null) {
        settle({ kind: 'exit', exit: live.exit })
        return
      }
      live.inflight = { id: msg.id, settle }
      try {
        live.thread.worker.postMessage(msg)
      } catch (err) {
        settle({ kind: 'unsendable', error: describeError(err) })
      }
    })
  }

  private async acquire (): Promise<Live> {
    if (this.serving == null) {
      if (this.status !== 'running') throw this.stoppedError()
      this.respawn()
    }
    return await (this.serving as Promise<Live>)
  }

  /** Retires a thread and starts its successor from the last good state. */
  private replace (live: Live): void {
    if (live.retired) return
    live.retired = true
    void live.thread.worker.terminate()
    if (this.status !== 'running') return
    this.respawn()
  }

  private respawn (): void {
    this.consecutiveFailures++
    const last = this.last
    const next = this.spawn(restartDelay(this.consecutiveFailures), last != null ? { state: last.state } : {}).then(r => r.live)
    this.serving = next
    next.catch(err => {
      if (this.serving === next) this.serving = undefined
      if (this.status === 'running') this.log('error', `restarting the machine of ${this.init.identity.id} failed: ${describeError(err)}`)
    })
  }

  /** Starts a thread (after `delayMs`), loads the module and starts the machine in it from `restore`. */
  private async spawn (delayMs: number, restore: MachineRestore): Promise<{ live: Live, transition: Transition }> {
    if (delayMs > 0) {
      try {
        await sleep(delayMs, undefined, { signal: this.lifetime.signal })
      } catch {
        throw this.stoppedError()
      }
    }
    if (this.stopped()) throw this.stoppedError()
    const start = this.startMessage(++this.nextId, restore)

    const where = `${this.label} from ${this.init.artifactPath}`
    const init: MachineWorkerInit = { artifactPath: this.init.artifactPath }
    // assigned below, before the thread can deliver its first message
    let self!: Live
    let thread: Thread
    try {
      thread = spawnThread<MachineWorkerInit, FromMachineWorker>(init, this.init.memoryLimitMb, msg => { this.onMessage(self, msg) }, (stream, line) => { this.log(stream, line) }, 'machine-worker')
    } catch (err) {
      throw new ArtifactLoadError(where, `cannot start a worker thread: ${describeError(err)}`, { cause: err })
    }
    self = { thread, retired: false, started: false, startId: start.id, busy: [] }
    this.threads.add(self)
    void thread.exited.then(exit => { this.onExit(self, exit) })

    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new ArtifactLoadError(where, `the module did not finish loading within ${this.loadTimeoutMs} ms`)) }, this.loadTimeoutMs)
        self.onLoad = err => {
          clearTimeout(timer)
          self.onLoad = undefined
          if (err != null) reject(err)
          else resolve()
        }
        if (self.exit != null) self.onLoad(this.exitError(where, self.exit, 'while loading the module'))
      })
      const outcome = await this.request(self, start, this.loadTimeoutMs)
      switch (outcome.kind) {
        case 'result':
          if (outcome.msg.ok) return { live: self, transition: { ...this.toTransition(outcome.msg.transition), handled: true } }
          if (outcome.msg.code === 'restore') throw new MachineRestoreError(this.machineLabel, outcome.msg.error)
          throw new ArtifactLoadError(where, outcome.msg.error)
        case 'timeout':
          throw new ArtifactLoadError(where, `the machine did not start within ${this.loadTimeoutMs} ms`)
        case 'exit':
          throw this.exitError(where, outcome.exit, 'while starting the machine')
        case 'unsendable':
          throw new MachineRestoreError(this.machineLabel, `the state could not be passed to the worker: ${outcome.error}`)
      }
    } catch (err) {
      self.retired = true
      void thread.worker.terminate()
      if (this.stopped()) throw this.stoppedError()
      throw err
    }
  }

  private exitError (where: string, exit: ThreadExit, when: string): ArtifactLoadError {
    const reason = isOutOfMemory(exit) ? `it ran out of memory (heap limit ${this.init.memoryLimitMb} MB)` : `the worker exited (${describeExit(exit)})`
    return new ArtifactLoadError(where, `${reason} ${when}`)
  }

  /**
   * Bookkeeping happens here, as messages arrive: `last` follows the
   * machine's steps in the worker's order, whenever the awaiting code runs.
   */
  private onMessage (live: Live, msg: FromMachineWorker): void {
    switch (msg.type) {
      case 'loaded':
        live.onLoad?.()
        break
      case 'load-failed':
        live.onLoad?.(new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, remoteError(msg.error)))
        break
      case 'log':
        if (typeof msg.message === 'string') this.log(msg.stream === 'error' ? 'error' : 'log', msg.message)
        break
      case 'result':
        if (live.inflight?.id !== msg.id) break
        if (msg.ok && msg.id === live.startId) live.started = true
        if (msg.ok && msg.transition.handled && !live.retired) this.last = this.toTransition(msg.transition)
        live.inflight.settle({ kind: 'result', msg })
        break
      case 'busy':
        if (live.retired || !live.started) break
        live.busy.push(msg.event)
        if (live.watchdog == null) this.watch(live)
        break
      case 'spontaneous': {
        if (live.retired || !live.started) break
        live.busy.shift()
        clearTimeout(live.watchdog)
        live.watchdog = undefined
        if (live.busy.length > 0) this.watch(live)
        const t = this.toTransition(msg.transition)
        this.last = t
        try {
          this.init.onSpontaneous(msg.event, t)
        } catch (err) {
          this.log('error', `onSpontaneous failed: ${describeError(err)}`)
        }
        break
      }
    }
  }

  private onExit (live: Live, exit: ThreadExit): void {
    live.exit = exit
    this.threads.delete(live)
    clearTimeout(live.watchdog)
    live.onLoad?.(this.exitError(`${this.label} from ${this.init.artifactPath}`, exit, 'while loading the module'))
    if (live.started && !live.retired && this.status === 'running') {
      if (live.busy.length > 0) {
        this.failSpontaneous(live, isOutOfMemory(exit) ? `ran out of memory (heap limit ${this.init.memoryLimitMb} MB)` : `crashed the worker (${describeExit(exit)})`)
      } else {
        if (live.inflight == null) this.log('error', `the worker of the machine of ${this.init.identity.id} stopped outside a transition (${describeExit(exit)}); resuming it from the last good state`)
        this.replace(live)
      }
    }
    live.inflight?.settle({ kind: 'exit', exit })
  }

  private watch (live: Live): void {
    live.watchdog = setTimeout(() => {
      live.watchdog = undefined
      if (!live.retired && live.busy.length > 0 && this.status === 'running') this.failSpontaneous(live, `did not finish within ${this.init.timeoutMs} ms`)
    }, this.init.timeoutMs)
  }

  /**
   * A transition nobody sent hung or crashed its thread. Unlike a send it
   * cannot be refused: resumed from the last good state, the machine would
   * take it again (an overdue timer fires at once, an invoked promise runs
   * again). So the machine fails, at its last good state, with a Transition
   * in status `error` reported through onSpontaneous, whose persisted
   * snapshot is failed too; the thread is not replaced.
   */
  private failSpontaneous (live: Live, what: string): void {
    const event = live.busy[0]
    live.busy = []
    clearTimeout(live.watchdog)
    live.watchdog = undefined
    live.retired = true
    void live.thread.worker.terminate()
    if (this.serving != null) this.serving = undefined
    const last = this.last as Transition
    const type = (event as { type?: unknown } | undefined)?.type
    const error = `the transition for ${typeof type === 'string' ? `event ${JSON.stringify(type)}` : 'an event'} ${what}`
    const persisted = typeof last.state.persisted === 'object' && last.state.persisted !== null ? { ...last.state.persisted, status: 'error', error: { name: 'Error', message: error } } : last.state.persisted
    const t: Transition = { handled: true, value: last.value, context: last.context, status: 'error', error, state: { persisted, timers: [] } }
    this.last = t
    this.log('error', `the machine of ${this.init.identity.id} failed: ${error}`)
    try {
      this.init.onSpontaneous(event, t)
    } catch (err) {
      this.log('error', `onSpontaneous failed: ${describeError(err)}`)
    }
  }
}
