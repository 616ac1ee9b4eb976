import { ApiRequestError, ApiUnreachableError } from '../api/errors.js'
import { describeError } from '../errors.js'

export const DEFAULT_API = 'http://127.0.0.1:7700'

/** The API URL a command talks to: `--api`, else `BEEMESH_API`, else the first local node. */
export function resolveApiUrl (flag?: string): string {
  const url = flag ?? process.env.BEEMESH_API ?? DEFAULT_API
  return url.replace(/\/+$/, '')
}

/**
 * Who the CLI speaks as: a bearer token (`--token`, BEEMESH_TOKEN), or a token
 * made for each run from a deployer key file (`--key`, BEEMESH_KEY, or
 * ~/.config/beemesh/deployer.key when it exists). None: anonymous, which only
 * a --dev node accepts, and only from loopback.
 */
export interface CliCredentials {
  token?: string
  keyPath?: string
}

let credentials: CliCredentials = {}
let token: Promise<string | undefined> | undefined

export function useCredentials (c: CliCredentials): void {
  credentials = c
  token = undefined
}

/** The deployer key file the CLI signs with, if any. */
export async function deployerKey (): Promise<{ key: import('@libp2p/interface').PrivateKey, id: string } | undefined> {
  const { existsSync } = await import('node:fs')
  const { DEFAULT_KEY_PATH } = await import('./commands/trust.js')
  const explicit = credentials.keyPath ?? process.env.BEEMESH_KEY
  const path = explicit ?? DEFAULT_KEY_PATH()
  if (explicit == null && !existsSync(path)) return undefined
  const { readKeyFile } = await import('../policy/credentials.js')
  return await readKeyFile(path)
}

async function bearer (): Promise<string | undefined> {
  const given = credentials.token ?? process.env.BEEMESH_TOKEN
  if (given != null && given !== '') return given
  token ??= (async () => {
    const key = await deployerKey()
    if (key == null) return undefined
    const { issueToken } = await import('../policy/credentials.js')
    return await issueToken(key.key, { ttlMs: 10 * 60 * 1000 })
  })()
  return await token
}

export interface RequestOptions {
  method?: string
  body?: unknown
  timeoutMs?: number
  signal?: AbortSignal
}

/** A thin JSON client for the control API; every failure is one clear BeeMeshError. */
export class ApiClient {
  constructor (readonly baseUrl: string) {}

  async request<T> (path: string, options: RequestOptions = {}): Promise<T> {
    const res = await this.fetch(path, options)
    const text = await res.text()
    let body: unknown
    try {
      body = text.length > 0 ? JSON.parse(text) : undefined
    } catch {
      body = text
    }
    if (!res.ok) {
      const message = (body as { error?: string } | undefined)?.error ?? `HTTP ${res.status} ${res.statusText}`
      throw new ApiRequestError(res.status, message)
    }
    return body as T
  }

  /** The raw response, for streams. */
  async fetch (path: string, options: RequestOptions = {}): Promise<Response> {
    const url = this.baseUrl + path
    const signals = [options.signal, options.timeoutMs != null ? AbortSignal.timeout(options.timeoutMs) : undefined].filter((s): s is AbortSignal => s != null)
    const auth = await bearer()
    const headers: Record<string, string> = {
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(auth != null ? { authorization: `Bearer ${auth}` } : {})
    }
    try {
      return await fetch(url, {
        method: options.method ?? 'GET',
        headers,
        body: options.body !== undefined ? JSON.stringify(options.body) : undefined,
        signal: signals.length > 0 ? AbortSignal.any(signals) : undefined
      })
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause
      const reason = (cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED' ? 'connection refused' : describeError(cause ?? err)
      throw new ApiUnreachableError(this.baseUrl, reason, { cause: err })
    }
  }
}

/** The frames of a server-sent-events body: `{event, data}` per blank-line-separated frame. */
export async function * sseEvents (body: AsyncIterable<unknown>): AsyncGenerator<{ event?: string, data?: string }> {
  let buffer = ''
  const decoder = new TextDecoder()
  for await (const chunk of body) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true })
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const event = /^event: (.*)$/m.exec(frame)?.[1]
      const data = /^data: (.*)$/m.exec(frame)?.[1]
      yield { ...(event != null ? { event } : {}), ...(data != null ? { data } : {}) }
    }
  }
}
