/**
 * The control API as the page sees it: the shapes it reads (a subset of what
 * the node sends), a JSON client that carries the bearer token, and a
 * server-sent-events reader over fetch (EventSource cannot send headers).
 */

import type { NodeSummary, WorkloadStatus } from '../../workloads/views.js'

/** The shapes the node serves (src/workloads/views.ts), the page reads them as they are. */
export type { NodeStatus, NodeSummary, ReplicaPlacement, WorkloadStatus } from '../../workloads/views.js'


/** One durable transition of a machine. */
export interface TransitionRecord {
  seq: number
  epoch: number
  ts: number
  event: unknown
  value: unknown
  status?: string
  sender?: string
  id?: string
}

/** `GET /v1/workloads/:ns/:name/state`. */
export interface MachineState {
  workloadId: string
  owner: string
  epoch: number
  seq: number
  value: unknown
  context: unknown
  status: 'active' | 'done' | 'error' | 'stopped'
  output?: unknown
  error?: string
  durability: string
  holders: string[]
  recent: TransitionRecord[]
  startedAt: number
  stale?: boolean
}

/** A transition in an XState v5 machine's JSON (`machine.toJSON()`), functions dropped. */
export interface TransitionDefinition {
  target?: string[]
  eventType?: string | null
  guard?: string | { type?: string } | null
  delay?: number | string
  reenter?: boolean
}

/** A state node in an XState v5 machine's JSON. */
export interface StateDefinition {
  id: string
  key: string
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history'
  initial?: { target?: string[] } | string
  states?: Record<string, StateDefinition>
  on?: Record<string, TransitionDefinition[] | TransitionDefinition>
  after?: Record<string, TransitionDefinition[] | TransitionDefinition> | TransitionDefinition[]
  always?: TransitionDefinition[] | TransitionDefinition
  invoke?: Array<{ id?: string, src?: string | { id?: string } }>
  history?: boolean | 'shallow' | 'deep'
  order?: number
}

/** `GET /v1/workloads/:ns/:name/machine`. */
export interface MachineDefinition {
  workloadId: string
  definition: StateDefinition
}

/** A failed API call: its HTTP status and the node's error message. */
export class ApiError extends Error {
  override readonly name = 'ApiError'
  constructor (readonly status: number, message: string, readonly reason?: string) {
    super(message)
  }
}

const TOKEN_KEY = 'beemesh.token'

/**
 * The bearer token the page speaks with: from the URL fragment (`#token=…`,
 * as `beemesh ui` prints it), which is then moved to sessionStorage and
 * cleared from the address bar; else the one stored earlier in this tab.
 */
export function takeToken (): string | undefined {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ''))
  const given = fragment.get('token')
  if (given != null && given !== '') {
    sessionStorage.setItem(TOKEN_KEY, given)
    fragment.delete('token')
    const rest = fragment.toString()
    history.replaceState(null, '', `${location.pathname}${location.search}${rest !== '' ? `#${rest}` : ''}`)
    return given
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined
}

/** A server-sent event: its `event:` name and its `data:` lines joined. */
export interface ServerEvent { event: string, data: string }

/** The page's client for the node's control API. */
export class Api {
  constructor (private readonly token?: string) {}

  get authenticated (): boolean { return this.token != null }

  private headers (json: boolean): Record<string, string> {
    return {
      accept: 'application/json',
      ...(json ? { 'content-type': 'application/json' } : {}),
      ...(this.token != null ? { authorization: `Bearer ${this.token}` } : {})
    }
  }

  private async call<T> (method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await fetch(path, { method, headers: this.headers(body !== undefined), body: body !== undefined ? JSON.stringify(body) : null, signal: signal ?? null, cache: 'no-store' })
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text !== '' ? JSON.parse(text) : undefined
    } catch {
      parsed = text
    }
    if (!res.ok) {
      const err = parsed as { error?: string, reason?: string } | undefined
      throw new ApiError(res.status, err?.error ?? `HTTP ${res.status}`, err?.reason)
    }
    return parsed as T
  }

  async get<T> (path: string, signal?: AbortSignal): Promise<T> {
    return await this.call<T>('GET', path, undefined, signal)
  }

  async post<T> (path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return await this.call<T>('POST', path, body, signal)
  }

  /**
   * Reads the server-sent events of `path` until `signal` aborts, calling
   * `onEvent` for each; reconnects with a doubling back-off (0.5 s up to 10 s)
   * whenever the stream ends or fails, and reports each change of connection
   * to `onConnection`. An authorisation failure (401/403) is not retried.
   */
  async follow (path: string, { signal, onEvent, onConnection }: { signal: AbortSignal, onEvent: (e: ServerEvent) => void, onConnection?: (state: 'open' | 'retrying' | 'refused', detail?: string) => void }): Promise<void> {
    let backoffMs = 500
    while (!signal.aborted) {
      let detail = 'the stream ended'
      try {
        const res = await fetch(path, { headers: { ...this.headers(false), accept: 'text/event-stream' }, signal, cache: 'no-store' })
        if (res.status === 401 || res.status === 403) {
          onConnection?.('refused', `HTTP ${res.status}`)
          return
        }
        if (!res.ok || res.body == null) throw new ApiError(res.status, `HTTP ${res.status}`)
        onConnection?.('open')
        for await (const event of serverEvents(res.body)) {
          backoffMs = 500
          onEvent(event)
        }
      } catch (err) {
        detail = err instanceof Error ? err.message : String(err)
      }
      if (signal.aborted) return
      onConnection?.('retrying', detail)
      await sleep(backoffMs, signal)
      backoffMs = Math.min(backoffMs * 2, 10_000)
    }
  }
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const timer = setTimeout(done, ms)
    function done (): void { clearTimeout(timer); signal.removeEventListener('abort', done); resolve() }
    signal.addEventListener('abort', done, { once: true })
  })
}

/** The events of a `text/event-stream` body, parsed as the SSE spec says (comments skipped, data lines joined). */
export async function * serverEvents (body: ReadableStream<Uint8Array>): AsyncGenerator<ServerEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let event = ''
  let data: string[] = []
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      let newline: number
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline)
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1))
        if (line === '') {
          if (data.length > 0) yield { event: event !== '' ? event : 'message', data: data.join('\n') }
          event = ''
          data = []
          continue
        }
        if (line.startsWith(':')) continue
        const colon = line.indexOf(':')
        const field = colon >= 0 ? line.slice(0, colon) : line
        const text = colon >= 0 ? line.slice(colon + 1).replace(/^ /, '') : ''
        if (field === 'event') event = text
        else if (field === 'data') data.push(text)
      }
    }
  } finally {
    reader.releaseLock()
  }
}

/** The API path of a workload (`ns/name`) and an optional sub-resource. */
export function workloadPath (id: string, sub = ''): string {
  const [namespace, name] = id.split('/')
  return `/v1/workloads/${encodeURIComponent(namespace ?? '')}/${encodeURIComponent(name ?? '')}${sub}`
}
