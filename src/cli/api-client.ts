import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, statSync, type Stats } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve as resolvePath } from 'node:path'
import { ApiRequestError, ApiUnreachableError } from '../api/errors.js'
import { describeError, InvalidArgumentError } from '../errors.js'
import { DEFAULT_KEY_PATH, DEFAULT_TRUST_DIR } from './defaults.js'
import { privateCacheDir, readPrivate, writePrivate } from './user-cache.js'

export const DEFAULT_API = 'http://127.0.0.1:7700'

/** The API URL a command talks to: `--api`, else `BEEMESH_API`, else the first local node. */
export function resolveApiUrl (flag?: string): string {
  const url = flag ?? process.env.BEEMESH_API ?? DEFAULT_API
  return url.replace(/\/+$/, '')
}

/**
 * Who the CLI speaks as, for the API at a given URL (first that applies):
 * a bearer token (`--token`, BEEMESH_TOKEN); a token made for each run from
 * the deployer key file `--key` / BEEMESH_KEY; the token `beemesh up` wrote
 * for the mesh serving that URL; a token made from
 * ~/.config/beemesh/deployer.key when it exists. Tokens made from a key are
 * for one mesh (their `aud`, the root's key id): `--mesh` / BEEMESH_MESH
 * (a mesh.json or the root id), else the `beemesh up` mesh serving the URL,
 * else ./beemesh-trust/mesh.json. None of these: no token, and the API answers 401.
 */
export interface CliCredentials {
  token?: string
  keyPath?: string
  mesh?: string
}

let credentials: CliCredentials = {}
/** Tokens made in this process, per API URL and lifetime, until a fifth of their lifetime (at least a minute) is left. */
const tokens = new Map<string, { token: Promise<string | undefined>, renewAt: number }>()

export function useCredentials (c: CliCredentials): void {
  credentials = c
  tokens.clear()
}

/** Where `beemesh up` notes, per API URL it serves, which mesh that is and where its token lies. */
export function upRegistryDir (): string {
  return join(homedir(), '.beemesh', 'up')
}

/** The registry file of one API URL (`http://127.0.0.1:7700` → 127.0.0.1_7700.json). */
export function upRegistryFile (apiUrl: string): string {
  const url = new URL(apiUrl)
  return join(upRegistryDir(), `${url.hostname.replace(/[^A-Za-z0-9.-]/g, '_')}_${url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80'}.json`)
}

/** What `beemesh up` noted for an API URL it serves: the mesh (root key id), its directory and its token file. */
export interface UpAccess { mesh: string, dir: string, tokenFile: string, apis: string[] }

/** The `beemesh up` mesh serving `apiUrl`, if the registry names one (and its token file is there). */
export async function upAccess (apiUrl: string): Promise<UpAccess | undefined> {
  let file: string
  try {
    file = upRegistryFile(apiUrl)
  } catch {
    return undefined
  }
  const text = await readFile(file, 'utf8').catch(() => undefined)
  if (text == null) return undefined
  try {
    const a = JSON.parse(text) as UpAccess
    if (typeof a.mesh !== 'string' || typeof a.tokenFile !== 'string' || !Array.isArray(a.apis) || !a.apis.includes(apiUrl.replace(/\/+$/, ''))) return undefined
    return a
  } catch {
    return undefined
  }
}

/** The token `beemesh up` wrote for the mesh serving `apiUrl`, if any. */
export async function upToken (apiUrl: string): Promise<string | undefined> {
  const a = await upAccess(apiUrl)
  if (a == null) return undefined
  const t = (await readFile(a.tokenFile, 'utf8').catch(() => '')).trim()
  return t !== '' ? t : undefined
}

/** The mesh id (root key id) a token made from a key is for: `--mesh`, BEEMESH_MESH, the up mesh at `apiUrl`, ./beemesh-trust/mesh.json. */
export async function meshFor (apiUrl: string | undefined, given = credentials.mesh ?? (process.env.BEEMESH_MESH !== '' ? process.env.BEEMESH_MESH : undefined)): Promise<string> {
  const { readJsonFile, MeshTrustSchema } = await import('../policy/credentials.js')
  if (given != null) {
    if (/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(given)) return given
    return (await readJsonFile(given, MeshTrustSchema, 'mesh trust file (--mesh)')).root
  }
  const up = apiUrl != null ? await upAccess(apiUrl) : undefined
  if (up != null) return up.mesh
  const local = join(DEFAULT_TRUST_DIR, 'mesh.json')
  if (existsSync(local)) return (await readJsonFile(local, MeshTrustSchema, 'mesh trust file')).root
  throw new InvalidArgumentError('which mesh is the token for? pass --mesh <mesh.json> (or set BEEMESH_MESH); tokens name the mesh they are for')
}

/** The deployer key file the CLI signs with, if any. */
export async function deployerKey (): Promise<{ key: import('@libp2p/interface').PrivateKey, id: string } | undefined> {
  const explicit = credentials.keyPath ?? (process.env.BEEMESH_KEY !== '' ? process.env.BEEMESH_KEY : undefined)
  const path = explicit ?? DEFAULT_KEY_PATH()
  if (explicit == null && !existsSync(path)) return undefined
  const { readKeyFile } = await import('../policy/credentials.js')
  return await readKeyFile(path)
}

/**
 * The bearer token for the API at `apiUrl` (see CliCredentials); `ttlMs` for a
 * token made from a key. One made from a key is made again when a fifth of its
 * lifetime (at least a minute) is left, so a long-lived caller (a watch, the
 * scale bench polling a hundred nodes for a quarter of an hour) keeps a valid one.
 */
export async function bearerFor (apiUrl: string, { ttlMs = 10 * 60 * 1000 } = {}): Promise<string | undefined> {
  const given = credentials.token ?? process.env.BEEMESH_TOKEN
  if (given != null && given !== '') return given
  const cacheKey = `${apiUrl} ${ttlMs}`
  const held = tokens.get(cacheKey)
  if (held != null && Date.now() < held.renewAt) return await held.token
  const entry = { token: Promise.resolve<string | undefined>(undefined), renewAt: Infinity }
  entry.token = (async () => {
    const explicitKey = credentials.keyPath ?? (process.env.BEEMESH_KEY !== '' ? process.env.BEEMESH_KEY : undefined)
    if (explicitKey == null) {
      const up = await upToken(apiUrl)
      if (up != null) return up
    }
    const keyPath = explicitKey ?? DEFAULT_KEY_PATH()
    if (explicitKey == null && !existsSync(keyPath)) return undefined
    const cached = cachedToken(keyPath, apiUrl, ttlMs)
    if (cached?.token != null) {
      entry.renewAt = renewalTime(cached.expiresAt, ttlMs)
      return cached.token
    }
    const key = await deployerKey()
    if (key == null) return undefined
    const { issueToken } = await import('../policy/credentials.js')
    const now = Date.now()
    const token = await issueToken(key.key, { mesh: await meshFor(apiUrl), ttlMs, now })
    cached?.save(token, now + ttlMs)
    entry.renewAt = renewalTime(now + ttlMs, ttlMs)
    return token
  })()
  tokens.set(cacheKey, entry)
  return await entry.token
}

/** When a token that expires at `expiresAt` is made again: a fifth of its lifetime, and at least a minute, before. */
function renewalTime (expiresAt: number, ttlMs: number): number {
  return expiresAt - Math.max(60_000, ttlMs / 5)
}

/**
 * Tokens this CLI made from a deployer key, kept for their lifetime in the
 * user's private cache (src/cli/user-cache.ts; `<cache>/tokens`), as kubectl
 * keeps the tokens its credential plugins hand it: a script that runs the CLI
 * a hundred times signs once, and a call that finds one loads none of the
 * signing code. A token is found by the key file (path, size, change time),
 * the mesh it was asked for and the files that can decide it (as they are
 * now), the API URL, the working directory and its lifetime; it is used while a fifth of that
 * lifetime, and at least a minute, is left. BEEMESH_TOKEN_CACHE=0 turns it off.
 */
function cachedToken (keyPath: string, apiUrl: string, ttlMs: number): { token?: string, expiresAt: number, save: (token: string, expiresAt: number) => void } | undefined {
  if (process.env.BEEMESH_TOKEN_CACHE === '0') return undefined
  const base = privateCacheDir()
  if (base == null) return undefined
  let stat: Stats
  try {
    stat = statSync(keyPath)
  } catch {
    return undefined
  }
  const mesh = credentials.mesh ?? process.env.BEEMESH_MESH ?? ''
  // the files that can decide the mesh, as they are now: a mesh re-made in place means another token
  const version = (path: string): string => { try { const f = statSync(path); return `${f.size}:${f.mtimeMs}:${f.ctimeMs}` } catch { return '-' } }
  let registry = '-'
  try { registry = version(upRegistryFile(apiUrl)) } catch {}
  const id = createHash('sha256').update([resolvePath(keyPath), stat.size, stat.mtimeMs, stat.ctimeMs, mesh, mesh !== '' ? version(mesh) : '', registry, version(join(DEFAULT_TRUST_DIR, 'mesh.json')), apiUrl, process.cwd(), ttlMs].join('\0')).digest('hex').slice(0, 32)
  const dir = join(base, 'tokens')
  const file = join(dir, `${id}.json`)
  const save = (token: string, expiresAt: number): void => {
    try { mkdirSync(dir, { recursive: true, mode: 0o700 }) } catch { return }
    writePrivate(file, JSON.stringify({ token, expiresAt }))
  }
  try {
    const entry = JSON.parse(readPrivate(file)?.toString('utf8') ?? 'null') as { token?: unknown, expiresAt?: unknown } | null
    const left = typeof entry?.expiresAt === 'number' ? entry.expiresAt - Date.now() : 0
    if (typeof entry?.token === 'string' && Date.now() < renewalTime(Date.now() + left, ttlMs)) return { token: entry.token, expiresAt: Date.now() + left, save }
  } catch {}
  return { expiresAt: 0, save }
}

/**
 * The mesh CA the CLI verifies https APIs with: `useCa`, else `BEEMESH_CA`,
 * else the CA of `beemesh up`'s default mesh (~/.beemesh/local/trust/ca.crt)
 * when it exists; without one, Node's default trust (which knows no mesh CA).
 */
let caPath: string | undefined
let caPem: Promise<string | undefined> | undefined

export function useCa (path: string | undefined): void {
  caPath = path
  caPem = undefined
}

async function meshCa (): Promise<string | undefined> {
  caPem ??= (async () => {
    const { readFile } = await import('node:fs/promises')
    const explicit = caPath ?? (process.env.BEEMESH_CA !== '' ? process.env.BEEMESH_CA : undefined)
    if (explicit != null) {
      try {
        return await readFile(explicit, 'utf8')
      } catch (err) {
        throw new ApiUnreachableError(explicit, `cannot read the mesh CA certificate (--ca / BEEMESH_CA): ${describeError(err)}`, { cause: err })
      }
    }
    const { join } = await import('node:path')
    const { homedir } = await import('node:os')
    return await readFile(join(homedir(), '.beemesh', 'local', 'trust', 'ca.crt'), 'utf8').catch(() => undefined)
  })()
  return await caPem
}

/** fetch() over node:https, verifying the server with `ca` (global fetch cannot be given a CA without undici). */
async function httpsFetch (url: string, init: { method: string, headers: Record<string, string>, body?: string, signal?: AbortSignal }, ca: string | undefined): Promise<Response> {
  const { request } = await import('node:https')
  const { Readable } = await import('node:stream')
  return await new Promise<Response>((resolve, reject) => {
    const req = request(url, { method: init.method, headers: init.headers, ...(ca != null ? { ca } : {}), ...(init.signal != null ? { signal: init.signal } : {}) }, res => {
      const headers = new Headers()
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) for (const one of v) headers.append(k, one)
        else if (v != null) headers.set(k, v)
      }
      const status = res.statusCode ?? 502
      const nullBody = status === 204 || status === 304 || init.method === 'HEAD'
      if (nullBody) res.resume()
      resolve(new Response(nullBody ? null : Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, statusText: res.statusMessage ?? '', headers }))
    })
    req.on('error', reject)
    req.end(init.body)
  })
}

/** A certificate failure in words a user can act on. */
function tlsReason (err: unknown, hasCa: boolean): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? ''
  if (!/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return undefined
  return `the API's TLS certificate was not accepted (${code}: ${describeError(err)}); ${hasCa ? 'the mesh CA given (--ca / BEEMESH_CA) did not sign it for this host' : 'pass the mesh CA certificate with --ca <ca.crt> or BEEMESH_CA'}`
}

export interface RequestOptions {
  method?: string
  body?: unknown
  timeoutMs?: number
  signal?: AbortSignal
}

/** A thin JSON client for the control API; every failure is one clear BeeMeshError. */
export class ApiClient {
  /** `token`: this client's own bearer token (`beemesh up` talking to its nodes), else the CLI's for the URL (bearerFor). */
  constructor (readonly baseUrl: string, private readonly token?: string) {}

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
    const auth = this.token ?? await bearerFor(this.baseUrl)
    const headers: Record<string, string> = {
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(auth != null ? { authorization: `Bearer ${auth}` } : {})
    }
    const init = {
      method: options.method ?? 'GET',
      headers,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {})
    }
    const ca = url.startsWith('https:') ? await meshCa() : undefined
    try {
      return url.startsWith('https:') ? await httpsFetch(url, init, ca) : await fetch(url, init)
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err
      const reason = (cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED' ? 'connection refused' : tlsReason(cause, ca != null) ?? describeError(cause)
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
