/**
 * The entry of the sandbox (a confined child process or a worker thread; see
 * channel.ts): it imports one workload artifact (an
 * ESM bundle on disk) and either serves `invoke` messages with its handler
 * (`mode: 'serve'`) or reports the serialisable parts of its default export
 * (`mode: 'inspect'`). The parent (sandbox.ts) owns the thread's lifetime: it
 * terminates it after an inspection, a timeout or on stop.
 *
 * Console output of user code is captured here and sent to the parent as log
 * messages, in order with handler results.
 */
import { format } from 'node:util'
import { pathToFileURL } from 'node:url'
import { connectParent } from './channel.js'
import { isMachine } from '../workloads/machine.js'
import { NO_DEFAULT_EXPORT } from '../workloads/errors.js'
import type { CallHandler, CallOptions, CallRequest, FetchInit, FetchReply, HandlerContext, StatelessHandler, TopicEvent, WorkloadIdentity } from '../workloads/types.js'

/** `workerData` of a sandbox worker. */
export type WorkerInit =
  | { mode: 'serve', artifactPath: string, identity: WorkloadIdentity }
  | { mode: 'inspect', artifactPath: string }

/** An error as it crosses the thread boundary. `detail` is kept for InvalidDefinitionError. */
export interface WorkerErrorInfo {
  name: string
  message: string
  detail?: string
}

/** A call's failure as it crosses the thread boundary: the parent's CallError code and message. */
export interface CallFailure { code: string, message: string }

/** Parent → worker. */
export type ToWorker =
  | { type: 'invoke', id: number, event: TopicEvent }
  | { type: 'invoke-call', id: number, call: CallRequest }
  | { type: 'publish-ack', id: number, error?: string }
  | { type: 'call-reply', id: number, ok: true, value: unknown }
  | { type: 'call-reply', id: number, ok: false, error: CallFailure }
  | { type: 'fetch-reply', id: number, ok: true, reply: FetchReply }
  | { type: 'fetch-reply', id: number, ok: false, error: string }
  | { type: 'ping', id: number }

/** Worker → parent. */
export type FromWorker =
  | { type: 'ready' }
  | { type: 'load-failed', error: WorkerErrorInfo }
  | { type: 'result', id: number, ok: true, value?: unknown }
  | { type: 'result', id: number, ok: false, error: string }
  | { type: 'publish', id: number, topic: string, data: unknown }
  | { type: 'call', id: number, service: string, request: unknown, options: CallOptions }
  | { type: 'fetch', id: number, url: string, init: FetchInit }
  | { type: 'pong', id: number }
  | { type: 'log', stream: 'log' | 'error', message: string, fields?: Record<string, unknown> }
  | { type: 'inspected', hasDefault: boolean, exportType: string, value: Record<string, unknown>, hasHandler: boolean, hasOnCall: boolean, machine?: InspectedMachine }

/** What inspection reports of a stateful definition's machine (the machine itself cannot cross threads). */
export interface InspectedMachine {
  /** Structurally an XState v5 machine. */
  valid: boolean
  id?: string
}

/** Longer log messages are cut, so one runaway line cannot flood the parent. */
const MAX_LOG_CHARS = 64 * 1024

function errorInfo (err: unknown): WorkerErrorInfo {
  if (err instanceof Error) {
    const detail = (err as { detail?: unknown }).detail
    return { name: err.name, message: err.message, ...(typeof detail === 'string' ? { detail } : {}) }
  }
  return { name: 'Error', message: String(err) }
}

/** One line for a thrown value: `TypeError: x is not a function`, or the value itself. */
function errorMessage (err: unknown): string {
  if (err instanceof Error) return err.name === 'Error' || err.name === '' ? err.message : `${err.name}: ${err.message}`
  if (typeof err === 'string') return err
  try {
    return JSON.stringify(err) ?? String(err)
  } catch {
    return String(err)
  }
}

function truncate (message: string): string {
  return message.length > MAX_LOG_CHARS ? `${message.slice(0, MAX_LOG_CHARS)}… (truncated)` : message
}

/** A JSON copy of `value`, or undefined when it has none (functions, undefined). Throws on cycles and BigInt. */
function jsonCopy (value: unknown): unknown {
  const text = JSON.stringify(value)
  return text === undefined ? undefined : JSON.parse(text)
}

/** Everything of `value` except functions and symbols, as plain data; cycles are cut. */
function plain (value: unknown, ancestors: object[] = []): unknown {
  if (typeof value === 'function' || typeof value === 'symbol') return undefined
  if (typeof value === 'bigint') return value.toString()
  if (value === null || typeof value !== 'object') return value
  if (ancestors.includes(value) || ancestors.length > 32) return undefined
  const next = [...ancestors, value]
  if (Array.isArray(value)) return value.map(v => plain(v, next) ?? null)
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) {
    const p = plain(v, next)
    if (p !== undefined) out[k] = p
  }
  return out
}

const { init, channel: port } = await connectParent<WorkerInit, ToWorker, FromWorker>()

function post (msg: FromWorker): void {
  port.post(msg)
}

let onInvoke: ((id: number, event: TopicEvent) => void) | undefined
let onInvokeCall: ((id: number, call: CallRequest) => void) | undefined
const publishes = new Map<number, { resolve: () => void, reject: (err: Error) => void }>()
const calls = new Map<number, { resolve: (value: unknown) => void, reject: (err: Error) => void }>()
const fetches = new Map<number, { resolve: (value: FetchReply) => void, reject: (err: Error) => void }>()

/** What `ctx.call` rejects with: `code` says why (UNKNOWN_SERVICE, NO_HEALTHY_REPLICA, TIMEOUT, DENIED, TOO_LARGE, UNAVAILABLE, FAILED). */
class CallError extends Error {
  constructor (readonly code: string, message: string) {
    super(message)
    this.name = 'CallError'
  }
}

// Registered first, this listener also keeps the thread alive after it has
// reported (inspected, load-failed), until the parent terminates it: nothing
// it posted can be lost to an early exit.
port.onMessage((msg: ToWorker) => {
  if (msg.type === 'invoke') {
    onInvoke?.(msg.id, msg.event)
  } else if (msg.type === 'invoke-call') {
    onInvokeCall?.(msg.id, msg.call)
  } else if (msg.type === 'ping') {
    post({ type: 'pong', id: msg.id })
  } else if (msg.type === 'call-reply') {
    const pending = calls.get(msg.id)
    calls.delete(msg.id)
    if (msg.ok) pending?.resolve(msg.value)
    else pending?.reject(new CallError(msg.error.code, msg.error.message))
  } else if (msg.type === 'fetch-reply') {
    const pending = fetches.get(msg.id)
    fetches.delete(msg.id)
    if (msg.ok) pending?.resolve(msg.reply)
    else pending?.reject(new TypeError(`ctx.fetch: ${msg.error}`))
  } else if (msg.type === 'publish-ack') {
    const pending = publishes.get(msg.id)
    publishes.delete(msg.id)
    if (msg.error == null) pending?.resolve()
    else pending?.reject(new Error(`publish failed: ${msg.error}`))
  }
})

function log (stream: 'log' | 'error', message: string, fields?: Record<string, unknown>): void {
  post({ type: 'log', stream, message: truncate(message), ...(fields != null ? { fields } : {}) })
}

function captureConsole (): void {
  const streams = { log: 'log', info: 'log', debug: 'log', trace: 'log', warn: 'error', error: 'error' } as const
  for (const [method, stream] of Object.entries(streams)) {
    (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => { log(stream, format(...args)) }
  }
}

async function importDefault (): Promise<{ hasDefault: boolean, value: unknown }> {
  const mod = await import(pathToFileURL(init.artifactPath).href) as Record<string, unknown>
  return { hasDefault: 'default' in mod, value: mod.default }
}

async function inspect (): Promise<void> {
  try {
    const { hasDefault, value } = await importDefault()
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value)
    const { handler, onCall, machine } = isObject ? value as Record<string, unknown> : {}
    const m = machine as { id?: unknown } | undefined
    // plain() of the whole export, so that cycles back to it are cut; the machine is reported on its own.
    const rest = isObject ? plain(value) as Record<string, unknown> : {}
    delete rest.machine
    post({
      type: 'inspected',
      hasDefault,
      exportType: value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value,
      value: rest,
      hasHandler: typeof handler === 'function',
      hasOnCall: typeof onCall === 'function',
      ...(machine !== undefined ? { machine: { valid: isMachine(machine), ...(typeof m?.id === 'string' ? { id: m.id } : {}) } } : {})
    })
  } catch (err) {
    post({ type: 'load-failed', error: errorInfo(err) })
  }
}

async function serve (identity: WorkloadIdentity): Promise<void> {
  let handler: StatelessHandler | undefined
  let onCall: CallHandler | undefined
  try {
    const { hasDefault, value } = await importDefault()
    if (!hasDefault) throw new Error(NO_DEFAULT_EXPORT)
    const def = value as { kind?: unknown, handler?: unknown, onCall?: unknown } | null
    if (def == null || typeof def !== 'object') throw new Error(`the default export is ${def === null ? 'null' : `a ${typeof def}`}, not a workload definition`)
    if (def.kind !== 'stateless') throw new Error(`the default export has kind ${JSON.stringify(def.kind)}; only "stateless" workloads run in a sandbox`)
    if (typeof def.handler !== 'function' && typeof def.onCall !== 'function') throw new Error('the default export has no handler or onCall function')
    if (typeof def.handler === 'function') handler = def.handler as StatelessHandler
    if (typeof def.onCall === 'function') onCall = def.onCall as CallHandler
  } catch (err) {
    post({ type: 'load-failed', error: errorInfo(err) })
    return
  }

  const workload = Object.freeze({ ...identity })
  let nextPublish = 0

  async function publish (topic: string, data: unknown): Promise<void> {
    if (typeof topic !== 'string' || topic === '') throw new TypeError('ctx.publish: the topic must be a non-empty string')
    let copy: unknown
    try {
      copy = jsonCopy(data)
    } catch (err) {
      throw new TypeError(`ctx.publish: the data for topic "${topic}" is not JSON-serialisable: ${errorMessage(err)}`)
    }
    if (copy === undefined) throw new TypeError(`ctx.publish: the data for topic "${topic}" must be a JSON value, got ${typeof data}`)
    const id = ++nextPublish
    const acked = new Promise<void>((resolve, reject) => { publishes.set(id, { resolve, reject }) })
    post({ type: 'publish', id, topic, data: copy })
    await acked
  }

  let nextCall = 0
  async function call (service: string, request: unknown, options: CallOptions = {}): Promise<any> {
    if (typeof service !== 'string' || service === '') throw new TypeError('ctx.call: the service must be a non-empty string')
    let copy: unknown
    try {
      copy = jsonCopy(request)
    } catch (err) {
      throw new TypeError(`ctx.call: the request to "${service}" is not JSON-serialisable: ${errorMessage(err)}`)
    }
    const opts = jsonCopy(options ?? {}) as CallOptions
    const id = ++nextCall
    const replied = new Promise<unknown>((resolve, reject) => { calls.set(id, { resolve, reject }) })
    post({ type: 'call', id, service, request: copy ?? null, options: opts })
    return await replied
  }

  let nextFetch = 0
  async function egressFetch (url: string, init: FetchInit = {}): Promise<Response> {
    if (typeof url !== 'string') throw new TypeError('ctx.fetch: the URL must be a string')
    if (init.body != null && typeof init.body !== 'string') throw new TypeError('ctx.fetch: the body must be a string')
    const id = ++nextFetch
    const replied = new Promise<FetchReply>((resolve, reject) => { fetches.set(id, { resolve, reject }) })
    post({ type: 'fetch', id, url, init: jsonCopy(init) as FetchInit })
    const reply = await replied
    const noBody = reply.status === 204 || reply.status === 304 || (reply.status >= 100 && reply.status < 200)
    return new Response(noBody ? null : reply.body, { status: reply.status, statusText: reply.statusText, headers: reply.headers })
  }

  function ctxLog (message: string, fields?: Record<string, unknown>): void {
    let copy: Record<string, unknown> | undefined
    if (fields != null) {
      try {
        copy = jsonCopy(fields) as Record<string, unknown>
      } catch (err) {
        copy = { fieldsError: `fields are not JSON-serialisable: ${errorMessage(err)}` }
      }
    }
    log('log', String(message), copy)
  }

  const ctx: HandlerContext = Object.freeze({ workload, publish, log: ctxLog, call, fetch: egressFetch })

  async function invoke (id: number, event: TopicEvent): Promise<void> {
    try {
      if (handler == null) throw new Error(`the workload has no handler for topic events (event on ${event.topic})`)
      await handler(event, ctx)
      post({ type: 'result', id, ok: true })
    } catch (err) {
      post({ type: 'result', id, ok: false, error: errorMessage(err) })
    }
  }

  async function invokeCall (id: number, request: CallRequest): Promise<void> {
    try {
      if (onCall == null) throw new Error('the workload has no onCall function to serve calls')
      const reply = await onCall(request, ctx)
      let copy: unknown
      try {
        copy = jsonCopy(reply)
      } catch (err) {
        throw new TypeError(`the reply to a call of ${request.service} is not JSON-serialisable: ${errorMessage(err)}`)
      }
      post({ type: 'result', id, ok: true, value: copy ?? null })
    } catch (err) {
      post({ type: 'result', id, ok: false, error: errorMessage(err) })
    }
  }

  onInvoke = (id, event) => { void invoke(id, event) }
  onInvokeCall = (id, request) => { void invokeCall(id, request) }
  post({ type: 'ready' })
}

/**
 * Actors reach hosts outside the mesh through `ctx.fetch`, which the node
 * checks against the egress policy; the global `fetch` would bypass it. In a
 * confined sandbox there is no network at all (its own network namespace);
 * in a worker thread (unconfined nodes) `node:net` stays importable.
 */
function withholdFetch (): void {
  const refuse = async (): Promise<never> => { throw new TypeError('fetch is not available to BeeMesh actors: use ctx.fetch(url), which goes through the egress policy') }
  Object.defineProperty(globalThis, 'fetch', { value: refuse, writable: false, configurable: false })
}

captureConsole()
if (init.mode === 'serve') withholdFetch()
if (init.mode === 'inspect') await inspect()
else await serve(init.identity)
