/**
 * User code runs in sandboxes: one per replica, with a V8 heap limit from the
 * workload's memory request. A handler that throws fails only its event; one
 * that runs past its timeout, exhausts its heap or ends its sandbox
 * (`process.exit`) gets the sandbox replaced by a fresh one.
 *
 * Where the host can (confine.ts), a sandbox is a child process confined by
 * the OS (bubblewrap: its own uid and namespaces, no network, none of the
 * node's files or environment); the node relays its capabilities over the
 * IPC channel. Otherwise (`isolation: 'thread'`, a node started with
 * --allow-unconfined) it is a worker thread of the node: fault isolation, not
 * a security boundary (it shares the process's file system, network and
 * environment). Both run the same worker entries behind one spawn function.
 */
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Worker, type ResourceLimits } from 'node:worker_threads'
import type { Readable } from 'node:stream'
import type { Serializable } from 'node:child_process'
import { describeError } from '../errors.js'
import { InvalidDefinitionError, NO_DEFAULT_EXPORT } from '../workloads/errors.js'
import type { CallOptions, CallRequest, FetchInit, FetchReply, TopicEvent, WorkloadIdentity } from '../workloads/types.js'
import { ArtifactLoadError, SandboxStoppedError, UnconfinedHostError } from './errors.js'
import { endConfined, hostConfinement, SANDBOX_ARTIFACT, spawnConfined, workerBundle, type ConfinedInit, type Isolation, type NodeIsolation, type WorkerFile } from './confine.js'
import type { CallFailure, FromWorker, InspectedMachine, ToWorker, WorkerErrorInfo, WorkerInit } from './worker.js'
import { Mailbox, Supervisor, type Thread, type ThreadExit } from './supervisor.js'

/** Why an invocation failed. `stopped`: the sandbox stopped before the handler finished (or ran). */
export type FailureCause = 'threw' | 'timeout' | 'crashed' | 'out-of-memory' | 'stopped'

/** The outcome of one handler call; `ms` is the time from hand-over to the worker until the outcome. */
export type InvokeResult =
  | { ok: true, ms: number, value?: unknown }
  | { ok: false, error: string, cause: FailureCause, ms: number }

/** A line of a replica's log: `ctx.log`, console output of user code, or the sandbox's own notes. */
export interface SandboxLogLine {
  ts: number
  replica: number
  message: string
  fields?: Record<string, unknown>
  stream: 'log' | 'error'
}

export interface SandboxStats {
  /** Handler calls that ran to an outcome (not counting ones cut short by stop). */
  invocations: number
  /** Of those, the ones that did not succeed. */
  failures: number
  /** Worker threads replaced after a timeout, crash or out-of-memory. */
  restarts: number
}

export interface ReplicaSandboxInit {
  /** The workload bundle: an ESM file on disk. */
  artifactPath: string
  identity: WorkloadIdentity
  /** A handler call running longer than this fails with `timeout` and its thread is replaced. */
  timeoutMs: number
  /** V8 old-generation heap limit of the worker thread. */
  memoryLimitMb: number
  /** Called for each `ctx.publish`; its rejection is reported back to the handler. */
  onPublish: (topic: string, data: unknown) => Promise<void>
  /** Called for each `ctx.call`: resolves with the reply, or rejects with an error whose `code` the handler sees. */
  onCall?: (service: string, request: unknown, options: CallOptions) => Promise<unknown>
  /** Called for each `ctx.fetch`: the node's egress check and the fetch itself. */
  onFetch?: (url: string, init: FetchInit) => Promise<FetchReply>
  onLog: (line: SandboxLogLine) => void
  /** How long loading the module may take, at start and after each restart. Default 30 s. */
  loadTimeoutMs?: number
  /** Confined child processes or worker threads (or `refused`: starting fails with UnconfinedHostError). Default: confined where the host can confine (defaultIsolation). */
  isolation?: NodeIsolation
}

const DEFAULT_LOAD_TIMEOUT_MS = 30_000
/** Longer stdout/stderr lines of a worker are cut into pieces of this size. */
const MAX_OUTPUT_LINE = 64 * 1024

/** The worker entries next to this file: `worker` serves stateless handlers, `machine-worker` runs a state machine (machine-sandbox.ts). */
export type { WorkerFile }

export function resourceLimits (memoryLimitMb: number): ResourceLimits {
  return {
    maxOldGenerationSizeMb: memoryLimitMb,
    maxYoungGenerationSizeMb: Math.min(16, Math.max(2, Math.floor(memoryLimitMb / 8))),
    stackSizeMb: 4
  }
}

export { restartDelay, type Thread, type ThreadExit } from './supervisor.js'

export function isOutOfMemory (exit: ThreadExit): boolean {
  return (exit.error as NodeJS.ErrnoException | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY'
}

export function describeExit (exit: ThreadExit): string {
  return exit.error != null ? describeError(exit.error) : `exit code ${exit.code}`
}

/** Calls `onLine` for each line of a worker's stdout or stderr. */
function forwardLines (stream: Readable, onLine: (line: string) => void): void {
  let buffer = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    buffer += chunk
    let nl = buffer.indexOf('\n')
    while (nl >= 0 || buffer.length > MAX_OUTPUT_LINE) {
      const end = nl >= 0 ? nl : MAX_OUTPUT_LINE
      onLine(buffer.slice(0, end).replace(/\r$/, ''))
      buffer = buffer.slice(nl >= 0 ? end + 1 : end)
      nl = buffer.indexOf('\n')
    }
  })
  stream.on('end', () => {
    if (buffer !== '') onLine(buffer)
    buffer = ''
  })
  stream.on('error', () => {})
}

/** How sandboxes run when their owner does not say: confined where the host can confine, in worker threads otherwise. */
export function defaultIsolation (): Isolation {
  return hostConfinement().mode === 'confined' ? 'confined' : 'thread'
}

/**
 * Starts a sandbox worker (`file`, by default the stateless one) for `init`:
 * a confined child process (confine.ts) or a worker thread of this process,
 * behind one interface. Every listener is guarded: whatever the worker does,
 * nothing it sends can throw in the host. Messages without a string `type`
 * are dropped.
 */
export function spawnThread<TInit extends { artifactPath: string } = WorkerInit, TMessage extends { type: string } = FromWorker> (init: TInit, memoryLimitMb: number, onMessage: (msg: TMessage) => void, onOutput: (stream: 'log' | 'error', line: string) => void, file: WorkerFile = 'worker', isolation: NodeIsolation = defaultIsolation()): Thread {
  if (isolation === 'refused') throw new UnconfinedHostError(hostConfinement().reason ?? 'the host cannot confine workload code')
  const receive = (msg: unknown): void => {
    if (typeof msg !== 'object' || msg === null || typeof (msg as { type?: unknown }).type !== 'string') return
    // the channel's own messages (confine.ts), not the worker's
    if ((msg as { type: string }).type.startsWith('__sandbox-')) return
    try {
      onMessage(msg as TMessage)
    } catch {
      // a malformed message from user code posting on the channel; ignored
    }
  }
  const guarded = (stream: 'log' | 'error') => (line: string) => {
    try {
      onOutput(stream, line)
    } catch {
      // the host's log sink failed; the line is dropped
    }
  }
  if (isolation === 'confined') {
    // read before a child is taken, so an unreadable artifact costs no sandbox
    const artifactCode = readFileSync(init.artifactPath)
    const { child, fatal, outOfMemory } = spawnConfined(file, memoryLimitMb)
    let spawnError: Error | undefined
    child.on('error', err => { spawnError ??= err })
    child.on('message', receive)
    if (child.stdout != null) forwardLines(child.stdout, guarded('log'))
    if (child.stderr != null) forwardLines(child.stderr, guarded('error'))
    const exited = new Promise<ThreadExit>(resolve => {
      child.once('close', (code, signal) => {
        const error = outOfMemory()
          ? Object.assign(new Error('the sandbox ran out of memory'), { code: 'ERR_WORKER_OUT_OF_MEMORY' })
          : fatal() ?? spawnError ?? (signal != null && code == null ? new Error(`the sandbox process was killed by ${signal}`) : undefined)
        resolve({ code: code ?? 1, ...(error != null ? { error } : {}) })
      })
    })
    // the first message is the init, with the artifact's bytes and where the sandbox will see them
    child.send({ ...init, artifactPath: SANDBOX_ARTIFACT, artifactCode } satisfies TInit & ConfinedInit)
    return {
      isolation,
      exited,
      post: msg => {
        if (!child.connected) throw new Error('the sandbox process is gone')
        child.send(msg as Serializable, err => { if (err != null) endConfined(child) })
      },
      terminate: async () => {
        endConfined(child)
        await exited
      }
    }
  }
  // the same self-contained entry a confined child runs (no loader needed, from source or dist);
  // execArgv is not inherited: the host's flags (loaders, --import) are not meant for user code
  const worker = new Worker(pathToFileURL(workerBundle(file)), { execArgv: [], workerData: init, resourceLimits: resourceLimits(memoryLimitMb), stdout: true, stderr: true })
  let error: Error | undefined
  worker.on('message', receive)
  worker.on('error', err => { error ??= err })
  worker.on('messageerror', err => { error ??= err })
  forwardLines(worker.stdout, guarded('log'))
  forwardLines(worker.stderr, guarded('error'))
  const exited = new Promise<ThreadExit>(resolve => {
    worker.once('exit', code => { resolve({ code, ...(error != null ? { error } : {}) }) })
  })
  return {
    isolation,
    exited,
    post: msg => { worker.postMessage(msg) },
    terminate: async () => { await worker.terminate() }
  }
}

export function remoteError (info: WorkerErrorInfo): string {
  return info.name === 'Error' || info.name === '' ? info.message : `${info.name}: ${info.message}`
}

/** One live (or loading) worker thread of a replica. */
interface Live {
  thread: Thread
  /** The module loaded and the thread serves invocations. */
  ready: boolean
  /** Terminated on purpose (timeout, stop) or already replaced: its exit needs no reaction. */
  retired: boolean
  /** Set once the thread has exited. */
  exit?: ThreadExit
  /** The invocation the thread is running. */
  inflight?: { id: number, settle: (outcome: Outcome) => void }
}

interface Job {
  event?: TopicEvent
  call?: CallRequest
  resolve: (result: InvokeResult) => void
}

type Outcome =
  | { kind: 'result', msg: Extract<FromWorker, { type: 'result' }> }
  | { kind: 'timeout' }
  | { kind: 'exit', exit: ThreadExit }
  | { kind: 'unsendable', error: string }

/**
 * The sandbox of one replica. Invocations run one at a time, in arrival
 * order (a replica is a single actor; run more replicas for parallelism).
 * `invoke` never rejects: every failure is an InvokeResult.
 */
export class ReplicaSandbox {
  /** Keeps a worker serving (spawn, replace, respawn, stop: supervisor.ts). */
  private readonly supervisor: Supervisor<Live>
  /** Invocations, one at a time in arrival order. */
  private readonly mailbox: Mailbox<Job>
  private nextId = 0
  private nextPing = 0
  private readonly pings = new Map<number, () => void>()
  private readonly counters: SandboxStats = { invocations: 0, failures: 0, restarts: 0 }
  private readonly loadTimeoutMs: number
  private readonly label: string

  constructor (private readonly init: ReplicaSandboxInit) {
    this.loadTimeoutMs = init.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS
    this.label = `workload ${init.identity.id} replica ${init.identity.replica}`
    this.supervisor = new Supervisor<Live>({
      respawn: async delayMs => await this.spawn(delayMs),
      stoppedError: () => new SandboxStoppedError(init.identity.id, init.identity.replica),
      onRestart: () => { this.counters.restarts++ },
      onRestartFailed: err => { this.log('error', `restarting the worker of replica ${init.identity.replica} failed: ${describeError(err)}`) }
    })
    this.mailbox = new Mailbox<Job>(async job => {
      let result: InvokeResult
      try {
        result = await this.run(job)
      } catch (err) {
        result = { ok: false, cause: 'crashed', error: `the sandbox failed: ${describeError(err)}`, ms: 0 }
      }
      job.resolve(result)
    })
  }

  private get state (): 'new' | 'starting' | 'running' | 'stopped' {
    return this.supervisor.status
  }

  get stats (): SandboxStats {
    return { ...this.counters }
  }

  /** Loads the module in a first worker; rejects with ArtifactLoadError if it fails to load or is not a stateless workload. */
  async start (): Promise<void> {
    if (this.state === 'stopped') throw new SandboxStoppedError(this.init.identity.id, this.init.identity.replica)
    if (this.state === 'running' || this.state === 'starting') {
      await this.supervisor.current
      return
    }
    const first = this.spawn(0)
    this.supervisor.starting(first)
    try {
      await first
    } catch (err) {
      this.supervisor.startFailed(first)
      throw err
    }
    this.supervisor.started()
  }

  /** Runs the handler on one event, after the events before it. */
  async invoke (event: TopicEvent): Promise<InvokeResult> {
    if (this.state === 'stopped' || this.state === 'new') return this.notRunning(0)
    return await new Promise<InvokeResult>(resolve => {
      this.mailbox.push({ event, resolve })
      void this.mailbox.drain()
    })
  }

  /** Runs `onCall` on one call, after the invocations before it; a success carries the reply in `value`. */
  async invokeCall (call: CallRequest): Promise<InvokeResult> {
    if (this.state === 'stopped' || this.state === 'new') return this.notRunning(0)
    return await new Promise<InvokeResult>(resolve => {
      this.mailbox.push({ call, resolve })
      void this.mailbox.drain()
    })
  }

  /**
   * The health probe: resolves true once the worker's event loop answers
   * within `timeoutMs`. A worker busy in synchronous code, loading, or being
   * replaced does not answer, and the replica is then not ready for calls.
   */
  async ping (timeoutMs: number): Promise<boolean> {
    const current = this.supervisor.current
    if (this.state !== 'running' || current == null) return false
    const live = await Promise.race([current, sleep(timeoutMs).then(() => undefined)]).catch(() => undefined)
    if (live == null || live.retired || live.exit != null) return false
    const id = ++this.nextPing
    return await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => { this.pings.delete(id); resolve(false) }, timeoutMs)
      this.pings.set(id, () => { clearTimeout(timer); resolve(true) })
      try {
        live.thread.post({ type: 'ping', id } satisfies ToWorker)
      } catch {
        clearTimeout(timer)
        this.pings.delete(id)
        resolve(false)
      }
    })
  }

  /** Terminates the worker; queued and running invocations resolve with cause `stopped`. */
  async stop (): Promise<void> {
    await this.supervisor.stop(() => {
      for (const job of this.mailbox.takeAll()) job.resolve(this.notRunning(0))
    })
  }

  private stopped (): boolean {
    return this.supervisor.stopped()
  }

  private notRunning (ms: number): InvokeResult {
    return { ok: false, cause: 'stopped', error: this.state === 'stopped' ? 'the sandbox was stopped' : 'the sandbox is not started', ms }
  }

  private log (stream: 'log' | 'error', message: string, fields?: Record<string, unknown>): void {
    try {
      this.init.onLog({ ts: Date.now(), replica: this.init.identity.replica, message, stream, ...(fields != null ? { fields } : {}) })
    } catch {
      // the host's log sink failed; the line is dropped rather than failing user code
    }
  }

  /** Starts a worker (after `delayMs`) and resolves once its module has loaded. */
  private async spawn (delayMs: number): Promise<Live> {
    await this.supervisor.backoff(delayMs)

    let loaded!: () => void
    let failed!: (err: Error) => void
    const ready = new Promise<void>((resolve, reject) => { loaded = resolve; failed = reject })
    const init: WorkerInit = { mode: 'serve', artifactPath: this.init.artifactPath, identity: this.init.identity }
    // assigned below, before the thread can deliver its first message
    let self!: Live
    let thread: Thread
    try {
      thread = spawnThread(init, this.init.memoryLimitMb, msg => { this.onMessage(self, msg, loaded, failed) }, (stream, line) => { this.log(stream, line) }, 'worker', this.init.isolation)
    } catch (err) {
      throw new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, `cannot start a sandbox: ${describeError(err)}`, { cause: err })
    }
    self = { thread, ready: false, retired: false }
    this.supervisor.track(self)
    void thread.exited.then(exit => { this.onExit(self, exit, failed) })

    const timer = setTimeout(() => {
      failed(new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, `the module did not finish loading within ${this.loadTimeoutMs} ms`))
    }, this.loadTimeoutMs)
    try {
      await ready
    } catch (err) {
      self.retired = true
      void thread.terminate()
      if (this.stopped()) throw new SandboxStoppedError(this.init.identity.id, this.init.identity.replica)
      throw err
    } finally {
      clearTimeout(timer)
    }
    self.ready = true
    return self
  }

  private onMessage (live: Live, msg: FromWorker, loaded: () => void, failed: (err: Error) => void): void {
    switch (msg.type) {
      case 'ready':
        loaded()
        break
      case 'load-failed':
        failed(new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, remoteError(msg.error)))
        break
      case 'result':
        if (live.inflight?.id === msg.id) live.inflight.settle({ kind: 'result', msg })
        break
      case 'publish':
        this.relay(live, async () => { await this.init.onPublish(msg.topic, msg.data) }, () => ({ type: 'publish-ack', id: msg.id }), (err) => ({ type: 'publish-ack', id: msg.id, error: describeError(err) }))
        break
      case 'call':
        this.relay(live, async () => {
          if (this.init.onCall == null) throw Object.assign(new Error('calls are not available here'), { code: 'UNAVAILABLE' })
          return await this.init.onCall(msg.service, msg.request, msg.options ?? {})
        }, (value) => ({ type: 'call-reply', id: msg.id, ok: true, value }), (err) => ({ type: 'call-reply', id: msg.id, ok: false, error: callFailure(err) }))
        break
      case 'fetch':
        this.relay(live, async () => {
          if (this.init.onFetch == null) throw new Error('egress is not available here')
          return await this.init.onFetch(msg.url, msg.init ?? {})
        }, (reply) => ({ type: 'fetch-reply', id: msg.id, ok: true, reply }), (err) => ({ type: 'fetch-reply', id: msg.id, ok: false, error: describeError(err) }))
        break
      case 'pong':
        this.pings.get(msg.id)?.()
        this.pings.delete(msg.id)
        break
      case 'log':
        if (typeof msg.message === 'string') this.log(msg.stream === 'error' ? 'error' : 'log', msg.message, msg.fields)
        break
    }
  }

  /** Runs a request of the worker's (a publish, a call, a fetch) on the host side and posts the answer back, unless the thread is gone. */
  private relay<T> (live: Live, run: () => Promise<T>, ok: (value: T) => ToWorker, failed: (err: unknown) => ToWorker): void {
    const send = (msg: ToWorker): void => {
      if (live.retired) return
      try {
        live.thread.post(msg)
      } catch {
        // the thread is gone; its pending request went with it
      }
    }
    Promise.resolve().then(run).then(value => { send(ok(value)) }, err => { send(failed(err)) })
  }

  private onExit (live: Live, exit: ThreadExit, failed: (err: Error) => void): void {
    live.exit = exit
    this.supervisor.exited(live)
    const reason = isOutOfMemory(exit) ? `it ran out of memory (heap limit ${this.init.memoryLimitMb} MB)` : `the worker exited (${describeExit(exit)})`
    failed(new ArtifactLoadError(`${this.label} from ${this.init.artifactPath}`, `${reason} while loading the module`))
    if (live.ready && !live.retired && this.state === 'running') {
      if (live.inflight == null) this.log('error', `the worker of replica ${this.init.identity.replica} stopped outside a handler call (${describeExit(exit)}); restarting it`)
      this.supervisor.replace(live)
    }
    live.inflight?.settle({ kind: 'exit', exit })
  }

  private async run (job: Job): Promise<InvokeResult> {
    let live: Live
    try {
      live = await this.supervisor.acquire()
    } catch (err) {
      if (this.state !== 'running' && this.state !== 'starting') return this.notRunning(0)
      this.counters.invocations++
      this.counters.failures++
      return { ok: false, cause: 'crashed', error: `no worker could be started: ${describeError(err)}`, ms: 0 }
    }
    if (this.state === 'stopped') return this.notRunning(0)

    const id = ++this.nextId
    const started = performance.now()
    const outcome = await new Promise<Outcome>(resolve => {
      const timer = setTimeout(() => { resolve({ kind: 'timeout' }) }, this.init.timeoutMs)
      const settle = (o: Outcome): void => { clearTimeout(timer); resolve(o) }
      if (live.exit != null) {
        settle({ kind: 'exit', exit: live.exit })
        return
      }
      live.inflight = { id, settle }
      try {
        live.thread.post((job.call != null ? { type: 'invoke-call', id, call: job.call } : { type: 'invoke', id, event: job.event as TopicEvent }) satisfies ToWorker)
      } catch (err) {
        settle({ kind: 'unsendable', error: describeError(err) })
      }
    })
    live.inflight = undefined
    const ms = Math.round(performance.now() - started)
    if (this.stopped() && outcome.kind !== 'result') return this.notRunning(ms)

    this.counters.invocations++
    if (outcome.kind === 'result' && outcome.msg.ok) {
      this.supervisor.succeeded()
      return { ok: true, ms, ...(outcome.msg.value !== undefined ? { value: outcome.msg.value } : {}) }
    }
    this.counters.failures++
    switch (outcome.kind) {
      case 'result':
        this.supervisor.succeeded()
        return { ok: false, cause: 'threw', error: outcome.msg.ok ? '' : outcome.msg.error, ms }
      case 'unsendable':
        return { ok: false, cause: 'threw', error: `the event could not be passed to the worker: ${outcome.error}`, ms }
      case 'timeout':
        this.supervisor.replace(live)
        return { ok: false, cause: 'timeout', error: `the handler did not finish within ${this.init.timeoutMs} ms; its worker was replaced`, ms }
      case 'exit':
        if (isOutOfMemory(outcome.exit)) {
          return { ok: false, cause: 'out-of-memory', error: `the handler ran out of memory (heap limit ${this.init.memoryLimitMb} MB); its worker was replaced`, ms }
        }
        return { ok: false, cause: 'crashed', error: `the worker crashed (${describeExit(outcome.exit)}); it was replaced`, ms }
    }
  }
}

/** A call's failure as the worker sees it: the code of a CallError (src/services/errors.ts), FAILED otherwise. */
function callFailure (err: unknown): CallFailure {
  const code = (err as { code?: unknown } | null)?.code
  return { code: typeof code === 'string' && /^[A-Z_]+$/.test(code) ? code : 'FAILED', message: describeError(err) }
}

export interface InspectOptions {
  /** How long loading may take. Default 30 s. */
  timeoutMs?: number
  /** Heap limit of the inspecting worker. Default 256 MB. */
  memoryLimitMb?: number
  /** Names the module in errors (e.g. the user's entry file). Default: the artifact path. */
  source?: string
  /** Default: confined where the host can confine, so module top-level code never runs with the caller's authority there; `refused` fails with UnconfinedHostError. */
  isolation?: NodeIsolation
}

/**
 * Loads an artifact in a throwaway worker thread and returns the serialisable
 * parts of its default export (functions dropped) plus `hasHandler`. Never
 * imports user code into the calling thread. Throws InvalidDefinitionError for
 * a missing or non-object default export (or a failing `defineWorkload`), and
 * ArtifactLoadError when the module throws, hangs or crashes while loading.
 */
export async function inspectArtifact (artifactPath: string, { timeoutMs = DEFAULT_LOAD_TIMEOUT_MS, memoryLimitMb = 256, source = artifactPath, isolation }: InspectOptions = {}): Promise<Record<string, unknown> & { hasHandler: boolean, hasOnCall: boolean, machine?: InspectedMachine }> {
  return await new Promise((resolve, reject) => {
    let thread: Thread | undefined
    let settled = false
    const timer = setTimeout(() => { finish(new ArtifactLoadError(source, `the module did not finish loading within ${timeoutMs} ms`)) }, timeoutMs)
    function finish (err: Error | undefined, value?: Record<string, unknown> & { hasHandler: boolean, hasOnCall: boolean, machine?: InspectedMachine }): void {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (thread != null) void thread.terminate()
      if (err != null) reject(err)
      else if (value != null) resolve(value)
    }
    try {
      thread = spawnThread({ mode: 'inspect', artifactPath }, memoryLimitMb, msg => {
        if (msg.type === 'load-failed') {
          const { error } = msg
          finish(error.name === 'InvalidDefinitionError' && error.detail != null
            ? new InvalidDefinitionError(source, error.detail)
            : new ArtifactLoadError(source, remoteError(error)))
        } else if (msg.type === 'inspected') {
          if (!msg.hasDefault) finish(new InvalidDefinitionError(source, NO_DEFAULT_EXPORT))
          else if (msg.exportType !== 'object') finish(new InvalidDefinitionError(source, `the default export is ${msg.exportType === 'null' ? 'null' : `a ${msg.exportType}`}; export default defineWorkload({...})`))
          else finish(undefined, { ...msg.value, hasHandler: msg.hasHandler, hasOnCall: msg.hasOnCall, ...(msg.machine != null ? { machine: msg.machine } : {}) })
        }
      }, () => {}, 'worker', isolation)
    } catch (err) {
      finish(new ArtifactLoadError(source, `cannot start a sandbox: ${describeError(err)}`, { cause: err }))
      return
    }
    void thread.exited.then(exit => {
      const reason = isOutOfMemory(exit) ? `it ran out of memory (heap limit ${memoryLimitMb} MB)` : `the worker exited (${describeExit(exit)})`
      finish(new ArtifactLoadError(source, `${reason} while loading the module`))
    })
  })
}
