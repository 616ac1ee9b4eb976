/**
 * A stateful workload's XState machine, run as an actor in a worker thread
 * (machine-worker.ts) with the same isolation as ReplicaSandbox: a heap
 * limit, a timeout per transition, and no user code in the host's thread.
 * The host side keeps the last good state (the Transition after the last
 * transition the machine completed, sent or spontaneous), so a thread that
 * has to go can be replaced by one resumed from it.
 *
 * Its semantics, and the XState facts they rest on (handled, timers,
 * replay, invoked actors, failures, order, batches, JSON, clock,
 * inspection), are written down in docs/state.md ("The machine sandbox");
 * keep them true when this file changes.
 *
 * This is fault isolation, not a security boundary (see sandbox.ts).
 */
import { describeError } from '../errors.js'
import { ArtifactLoadError, InvalidMachineEventError, MachineNotActiveError, MachineRestoreError, SandboxStoppedError, TransitionFailedError } from './errors.js'
import type { FromMachineWorker, MachineWorkerInit, ToMachineWorker, WireTimer, WireTransition } from './machine-worker.js'
import { describeExit, isOutOfMemory, remoteError, spawnThread } from './sandbox.js'
import { Mailbox, Supervisor, type Thread, type ThreadExit } from './supervisor.js'
import { checkEvent, type BatchResultListener, type MachineRestore, type MachineSandboxInit, type PendingTimer, type Transition } from './machine-contract.js'

export type { BatchResultListener, MachineRestore, MachineSandboxInit, MachineState, PendingTimer, ReplayEntry, Transition } from './machine-contract.js'

const DEFAULT_LOAD_TIMEOUT_MS = 30_000

type ResultMessage = Extract<FromMachineWorker, { type: 'result' }>

/** How a request ended: every result arrived (`done`), or not. */
type Outcome =
  | { kind: 'done' }
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
  /** The request it is running: `onResult` gets each of its results (`t`: the Transition of an ok one), in order. */
  inflight?: { id: number, settle: (o: Outcome) => void, onResult: (msg: ResultMessage, t?: Transition) => void }
  /** Settled by `loaded` / `load-failed` / exit. */
  onLoad?: (err?: Error) => void
  /** Spontaneous events the worker is processing (announced by `busy`, done with `spontaneous`), in order. */
  busy: unknown[]
  /** Runs while `busy` is not empty: the step at its head must finish within timeoutMs. */
  watchdog?: NodeJS.Timeout
}

/** The events of one sendMany (or send) and what became of them. */
interface Batch {
  /** Each event's JSON copy, or why it is not a machine event. */
  events: Array<{ type: string } | Error>
  results: Array<Transition | Error | undefined>
  /** How many results (a prefix) were given to `onResult`. */
  reported: number
  onResult?: BatchResultListener
}

type Job =
  | { kind: 'current', resolve: (t: Transition) => void, reject: (err: Error) => void }
  | { kind: 'send', batch: Batch, resolve: (results: Array<Transition | Error>) => void }

/** A sandbox for one stateful workload's machine. */
export class MachineSandbox {
  /** Keeps a worker serving (spawn, replace, respawn, stop: supervisor.ts). */
  private readonly supervisor: Supervisor<Live>
  /** Sends and `current` calls, one at a time in call order. */
  private readonly mailbox: Mailbox<Job>
  /** The state after the last transition the machine completed. */
  private last?: Transition
  /** The machine's statechart as JSON (`machine.toJSON()`), once a thread has loaded it; for diagrams. */
  definition?: unknown
  private nextId = 0
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
    this.supervisor = new Supervisor<Live>({
      // a successor resumes from the last good state
      respawn: async delayMs => {
        const last = this.last
        return (await this.spawn(delayMs, last != null ? { state: last.state } : {})).live
      },
      stoppedError: () => this.stoppedError(),
      onRestartFailed: err => { this.log('error', `restarting the machine of ${init.identity.id} failed: ${describeError(err)}`) }
    })
    this.mailbox = new Mailbox<Job>(job => {
      if (job.kind === 'current') {
        job.resolve({ ...(this.last as Transition), handled: true })
        return undefined
      }
      return this.runJob(job)
    })
  }

  private get status (): 'new' | 'starting' | 'running' | 'stopped' {
    return this.supervisor.status
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
    const first = this.spawn(0, restore)
    const live = first.then(r => r.live)
    live.catch(() => {})
    this.supervisor.starting(live)
    let started: Transition
    try {
      started = (await first).transition
    } catch (err) {
      if (this.supervisor.startFailed(live)) {
        for (const job of this.mailbox.takeAll()) this.abandon(job, () => new Error(`the machine sandbox of ${this.init.identity.id} did not start: ${describeError(err)}`))
      }
      throw err
    }
    if (this.stopped()) throw this.stoppedError()
    this.supervisor.started()
    void this.mailbox.drain()
    return started
  }

  /** Sends one event (a JSON object with a string `type`); resolves with its Transition. Sends are processed one at a time in call order. */
  async send (event: unknown): Promise<Transition> {
    const [result] = await this.sendMany([event])
    if (result instanceof Error) throw result
    return result as Transition
  }

  /**
   * Applies `events` in order, as `send` would one after another, in one
   * round trip to the worker. Each element is the Transition or the Error
   * that `send` would have given for that event (a malformed event, a
   * machine no longer active, a TransitionFailedError, a stopped sandbox…);
   * the others still run. Never rejects (but for an `events` that is not an
   * array). Batches and sends are processed one at a time in call order.
   *
   * `onResult(i, r)` is called with each element as soon as it is known, in
   * index order and in order with `onSpontaneous`: a step the machine took
   * between events i and i+1 of the batch is reported after `onResult(i)`
   * and before `onResult(i + 1)`. (Within a batch the only such steps are
   * those event i's own processing caused, a child answering at once or a
   * `sendTo` self: see Batches in docs/state.md. Those the last event caused
   * follow `onResult` of the last, maybe after the promise resolves, as for
   * `send`.) A caller that journals
   * spontaneous steps with the events needs it; the resolved array alone
   * does not say where in the batch they fell.
   */
  async sendMany (events: unknown[], onResult?: BatchResultListener): Promise<Array<Transition | Error>> {
    if (!Array.isArray(events)) throw new TypeError(`sendMany expects an array of events, got ${events === null ? 'null' : typeof events}`)
    const batch: Batch = { events: [], results: [], reported: 0, ...(onResult != null ? { onResult } : {}) }
    for (const event of events) {
      let copy: { type: string } | Error
      try {
        copy = checkEvent(event)
      } catch (err) {
        copy = err as Error
      }
      batch.events.push(copy)
      batch.results.push(copy instanceof Error ? copy : undefined)
    }
    if (this.status === 'stopped') this.failRest(batch, () => this.stoppedError())
    else if (this.status === 'new') this.failRest(batch, () => this.notStartedError())
    if (batch.results.every(r => r !== undefined)) {
      this.flush(batch)
      return batch.results as Array<Transition | Error>
    }
    return await new Promise<Array<Transition | Error>>(resolve => {
      this.mailbox.push({ kind: 'send', batch, resolve })
      if (this.status === 'running') void this.mailbox.drain()
    })
  }

  /** The machine's current state (no event), after the sends called before. */
  async current (): Promise<Transition> {
    if (this.status === 'stopped') throw this.stoppedError()
    if (this.status === 'new') throw this.notStartedError()
    return await new Promise<Transition>((resolve, reject) => {
      this.mailbox.push({ kind: 'current', resolve, reject })
      if (this.status === 'running') void this.mailbox.drain()
    })
  }

  /** Terminates the worker; queued sends reject with SandboxStoppedError. */
  async stop (): Promise<void> {
    await this.supervisor.stop(() => {
      for (const job of this.mailbox.takeAll()) this.abandon(job, () => this.stoppedError())
    })
  }

  private stopped (): boolean {
    return this.supervisor.stopped()
  }

  private stoppedError (): SandboxStoppedError {
    return new SandboxStoppedError(this.init.identity.id, this.init.identity.replica)
  }

  private notStartedError (): Error {
    return new Error(`the machine sandbox of ${this.init.identity.id} is not started`)
  }

  /** Ends a queued job that will not run: `current` rejects, the events of a batch get `make()`. */
  private abandon (job: Job, make: () => Error): void {
    if (job.kind === 'current') {
      job.reject(make())
      return
    }
    this.failRest(job.batch, make)
    this.flush(job.batch)
    job.resolve(job.batch.results as Array<Transition | Error>)
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

  /** Runs a send job (a batch) and resolves it with every event's result. */
  private async runJob (job: Extract<Job, { kind: 'send' }>): Promise<void> {
    try {
      await this.run(job.batch)
    } catch (err) {
      // not expected: run reports each event's failure in its result
      const error = err instanceof Error ? err : new Error(String(err))
      this.failRest(job.batch, () => error)
    }
    this.flush(job.batch)
    job.resolve(job.batch.results as Array<Transition | Error>)
  }

  /** Sets the result of a batch's event `i`, and gives `onResult` the results now known in order. */
  private settle (batch: Batch, i: number, result: Transition | Error): void {
    if (batch.results[i] !== undefined) return
    batch.results[i] = result
    this.flush(batch)
  }

  private flush (batch: Batch): void {
    while (batch.reported < batch.results.length) {
      const result = batch.results[batch.reported]
      if (result === undefined) return
      const i = batch.reported++
      if (batch.onResult == null) continue
      try {
        batch.onResult(i, result)
      } catch (err) {
        this.log('error', `onResult failed: ${describeError(err)}`)
      }
    }
  }

  /** Every event of the batch without a result gets `make()`. */
  private failRest (batch: Batch, make: () => Error): void {
    for (let i = 0; i < batch.results.length; i++) {
      if (batch.results[i] === undefined) batch.results[i] = make()
    }
  }

  private notActive (): MachineNotActiveError | undefined {
    const last = this.last
    return last != null && last.status !== 'active' ? new MachineNotActiveError(this.machineLabel, last.status, last.error) : undefined
  }

  /**
   * Applies a batch's events that have no result yet, in as few round trips
   * as the worker allows: one, unless an event hangs or ends the thread; then
   * that event fails, the thread is replaced from the last good state and
   * the events after it are sent to the new one.
   */
  private async run (batch: Batch): Promise<void> {
    for (;;) {
      const pending: number[] = []
      for (let i = 0; i < batch.results.length; i++) if (batch.results[i] === undefined) pending.push(i)
      if (pending.length === 0) return
      if (this.notActive() != null) {
        this.failRest(batch, () => this.notActive() as MachineNotActiveError)
        return
      }
      let live: Live
      try {
        live = await this.supervisor.acquire()
      } catch (err) {
        if (this.stopped()) this.failRest(batch, () => this.stoppedError())
        else this.failRest(batch, () => new TransitionFailedError('crashed', `no worker could be started for the machine of ${this.init.identity.id}: ${describeError(err)}; the event was not applied`))
        return
      }
      // a spontaneous transition may have ended the machine meanwhile
      if (this.notActive() != null) {
        this.failRest(batch, () => this.notActive() as MachineNotActiveError)
        return
      }
      if (this.stopped()) {
        this.failRest(batch, () => this.stoppedError())
        return
      }

      const events = pending.map(i => batch.events[i] as { type: string })
      const { done, outcome } = await this.request(live, { type: 'send', id: ++this.nextId, events }, this.init.timeoutMs, (msg, t, j) => {
        if (t != null) this.supervisor.succeeded()
        this.settle(batch, pending[j] as number, t ?? this.failure(msg, events[j] as { type: string }))
      })
      if (outcome.kind === 'done') continue
      // event `done` of the request did not finish
      const i = pending[done] as number
      const event = events[done] as { type: string }
      if (this.stopped()) {
        this.failRest(batch, () => this.stoppedError())
        return
      }
      if (outcome.kind === 'timeout' && live.busy.length > 0 && !live.retired) {
        // the worker never got to the batch: it is stuck in a spontaneous step
        this.failSpontaneous(live, `did not finish within ${this.init.timeoutMs} ms`)
      }
      if (this.notActive() != null) {
        this.failRest(batch, () => this.notActive() as MachineNotActiveError)
        return
      }
      const what = `the transition for event ${JSON.stringify(event.type)}`
      const resumed = 'the event was not applied, and the machine\'s worker was replaced and resumed from the last good state'
      switch (outcome.kind) {
        case 'unsendable':
          // cannot happen to JSON copies; nothing of the request was applied
          for (const [j, k] of pending.entries()) {
            if (j >= done) this.settle(batch, k, new InvalidMachineEventError(`${JSON.stringify((events[j] as { type: string }).type)} could not be passed to the worker: ${outcome.error}`))
          }
          break
        case 'timeout':
          this.supervisor.replace(live)
          this.settle(batch, i, new TransitionFailedError('timeout', `${what} did not finish within ${this.init.timeoutMs} ms; ${resumed}`))
          break
        case 'exit':
          // onExit has replaced the thread
          if (isOutOfMemory(outcome.exit)) this.settle(batch, i, new TransitionFailedError('out-of-memory', `${what} ran out of memory (heap limit ${this.init.memoryLimitMb} MB); ${resumed}`))
          else this.settle(batch, i, new TransitionFailedError('crashed', `the worker crashed during ${what} (${describeExit(outcome.exit)}); ${resumed}`))
          break
      }
    }
  }

  /** The Error of a result the worker refused. */
  private failure (msg: ResultMessage, event: { type: string }): Error {
    if (msg.ok) return new Error('unreachable: an ok result has a transition')
    if (msg.code === 'not-active') return new MachineNotActiveError(this.machineLabel, msg.status ?? 'stopped', msg.error)
    return new Error(`the transition for event ${JSON.stringify(event.type)} failed in the sandbox: ${msg.error}`)
  }

  /**
   * Posts a request to a thread and waits for its results (one per event of
   * a `send`, one for `start`), the thread's exit, or the timeout, which
   * applies to each result in turn: it restarts with each result that
   * arrives. `onResult` gets each result with its index as it arrives; `done`
   * is how many arrived (the index of the one that did not, if any).
   */
  private async request (live: Live, msg: ToMachineWorker, timeoutMs: number, onResult: (msg: ResultMessage, t: Transition | undefined, index: number) => void): Promise<{ done: number, outcome: Outcome }> {
    const expected = msg.type === 'send' ? msg.events.length : 1
    return await new Promise<{ done: number, outcome: Outcome }>(resolve => {
      let done = 0
      const timer = setTimeout(() => { settle({ kind: 'timeout' }) }, timeoutMs)
      const settle = (o: Outcome): void => {
        clearTimeout(timer)
        if (live.inflight?.id === msg.id) live.inflight = undefined
        resolve({ done, outcome: o })
      }
      if (live.exit != null) {
        settle({ kind: 'exit', exit: live.exit })
        return
      }
      if (expected === 0) {
        settle({ kind: 'done' })
        return
      }
      live.inflight = {
        id: msg.id,
        settle,
        onResult: (result, t) => {
          if (result.index !== done) return
          timer.refresh()
          done++
          onResult(result, t, done - 1)
          if (done === expected) settle({ kind: 'done' })
        }
      }
      try {
        live.thread.post(msg)
      } catch (err) {
        settle({ kind: 'unsendable', error: describeError(err) })
      }
    })
  }

  /** Starts a thread (after `delayMs`), loads the module and starts the machine in it from `restore`. */
  private async spawn (delayMs: number, restore: MachineRestore): Promise<{ live: Live, transition: Transition }> {
    await this.supervisor.backoff(delayMs)
    const start = this.startMessage(++this.nextId, restore)

    const where = `${this.label} from ${this.init.artifactPath}`
    const init: MachineWorkerInit = { artifactPath: this.init.artifactPath, ...(this.init.onInspect != null ? { inspect: true } : {}) }
    // assigned below, before the thread can deliver its first message
    let self!: Live
    let thread: Thread
    try {
      thread = spawnThread<MachineWorkerInit, FromMachineWorker>(init, this.init.memoryLimitMb, msg => { this.onMessage(self, msg) }, (stream, line) => { this.log(stream, line) }, 'machine-worker', this.init.isolation)
    } catch (err) {
      throw new ArtifactLoadError(where, `cannot start a sandbox: ${describeError(err)}`, { cause: err })
    }
    self = { thread, retired: false, started: false, startId: start.id, busy: [] }
    this.supervisor.track(self)
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
      let result: { msg: ResultMessage, t?: Transition } | undefined
      const { outcome } = await this.request(self, start, this.loadTimeoutMs, (msg, t) => { result = { msg, ...(t != null ? { t } : {}) } })
      switch (outcome.kind) {
        case 'done': {
          const { msg, t } = result as { msg: ResultMessage, t?: Transition }
          if (t != null) return { live: self, transition: { ...t, handled: true } }
          if (msg.ok) throw new Error('unreachable: an ok result has a transition')
          if (msg.code === 'restore') throw new MachineRestoreError(this.machineLabel, msg.error)
          throw new ArtifactLoadError(where, msg.error)
        }
        case 'timeout':
          throw new ArtifactLoadError(where, `the machine did not start within ${this.loadTimeoutMs} ms`)
        case 'exit':
          throw this.exitError(where, outcome.exit, 'while starting the machine')
        case 'unsendable':
          throw new MachineRestoreError(this.machineLabel, `the state could not be passed to the worker: ${outcome.error}`)
      }
    } catch (err) {
      self.retired = true
      void thread.terminate()
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
        if (msg.definition !== undefined) this.definition = msg.definition
        live.onLoad?.()
        break
      case 'load-failed':
        live.onLoad?.(new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, remoteError(msg.error)))
        break
      case 'log':
        if (typeof msg.message === 'string') this.log(msg.stream === 'error' ? 'error' : 'log', msg.message)
        break
      case 'result': {
        if (live.inflight?.id !== msg.id) break
        if (msg.ok && msg.id === live.startId) live.started = true
        const t = msg.ok ? this.toTransition(msg.transition) : undefined
        if (t?.handled === true && !live.retired) this.last = t
        live.inflight.onResult(msg, t)
        break
      }
      case 'inspect':
        // a retired thread's steps are not the machine's (it resumes from the last good state)
        if (live.retired || this.init.onInspect == null) break
        try {
          this.init.onInspect(msg.record)
        } catch {
          // inspection is best effort
        }
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
    this.supervisor.exited(live)
    clearTimeout(live.watchdog)
    live.onLoad?.(this.exitError(`${this.label} from ${this.init.artifactPath}`, exit, 'while loading the module'))
    if (live.started && !live.retired && this.status === 'running') {
      if (live.busy.length > 0) {
        this.failSpontaneous(live, isOutOfMemory(exit) ? `ran out of memory (heap limit ${this.init.memoryLimitMb} MB)` : `crashed the worker (${describeExit(exit)})`)
      } else {
        if (live.inflight == null) this.log('error', `the worker of the machine of ${this.init.identity.id} stopped outside a transition (${describeExit(exit)}); resuming it from the last good state`)
        this.supervisor.replace(live)
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
    void live.thread.terminate()
    this.supervisor.drop()
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
