// longer than 700 lines: every Docker API call a pod needs, each bounded, with one mapping of the engine's failures to container errors
/**
 * The container engine a node runs pods on: one Dockerode client on a unix
 * socket speaking the Docker API (Podman's `podman system service`, or Docker).
 * It exposes exactly what the pod lifecycle needs and turns every failure into
 * one of the errors of `container-errors.ts`, so the pod machine can branch on
 * `reason` (`EngineUnavailable` is the node's fault, the rest the workload's).
 *
 * Every call is bounded: short calls by `callTimeoutMs`, a pull by its own
 * timeout, `wait` and followed `logs` only by the caller's signal, and those
 * two reject with EngineUnavailableError as soon as the engine drops the
 * connection (the engine died mid-call).
 */
import type { IncomingMessage } from 'node:http'
import { StringDecoder } from 'node:string_decoder'
import { Writable } from 'node:stream'
import { createRequire } from 'node:module'
import type Dockerode from 'dockerode'
import type DockerModem from 'docker-modem'
import { BeeMeshError, InvalidArgumentError, describeError } from '../errors.js'
import { silentLogger, type Logger } from '../transport/logger.js'
import {
  ContainerCreateError,
  ContainerEngineError,
  ContainerNameConflictError,
  ContainerNotFoundError,
  ContainerStartError,
  EngineUnavailableError,
  ImagePullError,
  PortInUseError
} from './container-errors.js'

export interface ContainerEngineInit {
  /** The engine's unix socket, e.g. /run/beemesh-podman.sock (see resolveEngineSocket). */
  socketPath: string
  log?: Logger
  /** Bound of each short call (inspect, create, start, remove, list). Default 30 s. */
  callTimeoutMs?: number
}

export interface EngineInfo {
  /** `Podman Engine`, `Docker Engine`, or the first component the engine names. */
  engine: string
  version: string
  apiVersion: string
}

export interface EnvVar { name: string, value: string }
export interface PortSpec { containerPort: number, hostPort?: number, protocol: 'TCP' | 'UDP' }
export interface ContainerLimits { cpuMillis?: number, memoryBytes?: number }

export interface CreateContainerOptions {
  name: string
  image: string
  /** Replaces the image's entrypoint (Kubernetes `command`). */
  command?: string[]
  /** Replaces the image's cmd (Kubernetes `args`). */
  args?: string[]
  env: EnvVar[]
  ports: PortSpec[]
  workingDir?: string
  limits: ContainerLimits
  labels: Record<string, string>
  /**
   * TCP container ports to publish on 127.0.0.1 with a host port the engine
   * picks (the service tunnel's targets). A port the user already publishes
   * with a hostPort is left as it is (reached through that one).
   */
  publishLoopback?: number[]
  /** `/etc/hosts` lines to add, as `name:ip` (HostConfig.ExtraHosts). */
  extraHosts?: string[]
}

export interface PullOptions {
  /** Each progress object the engine streams (`{ status, id, progressDetail }`). */
  onProgress?: (event: PullProgress) => void
  signal?: AbortSignal
  /** Default 60 s. */
  timeoutMs?: number
}

export interface PullProgress {
  status?: string
  id?: string
  progress?: string
  progressDetail?: { current?: number, total?: number }
  error?: string
  errorDetail?: { message?: string }
}

export interface ContainerExitStatus {
  exitCode: number
  oomKilled: boolean
  finishedAt?: string
  /** The engine's error for the run, when it reports one. */
  error?: string
}

export interface ContainerDetails {
  id: string
  name: string
  running: boolean
  exitCode: number
  oomKilled: boolean
  startedAt?: string
  finishedAt?: string
  labels: Record<string, string>
  image: string
  /** The engine's error for the last run (e.g. the runtime failed to exec), when it reports one. */
  error?: string
  /** Where a running container is reached: its bridge address and its published ports. */
  network: ContainerNetwork
}

/** A container's addresses as the engine reports them (after start; empty for a stopped one). */
export interface ContainerNetwork {
  /** The container's address on the engine's bridge (`NetworkSettings.IPAddress`, or its first network's). */
  ip?: string
  /** Published ports: `8080/tcp` → the host bindings the engine made. */
  ports: Record<string, Array<{ hostIp: string, hostPort: number }>>
}

export interface ContainerSummary {
  id: string
  name: string
  labels: Record<string, string>
  running: boolean
  /** The engine's word: created, running, exited, … */
  state: string
}

export type LogStream = 'stdout' | 'stderr'

export interface LogsOptions {
  /** Keep reading as the container writes, until it stops or `signal` aborts. */
  follow: boolean
  /** Only the last N lines. */
  tail?: number
  /** Only lines since this time (Unix seconds). */
  since?: number
  /**
   * One call per complete line, without its newline. `ts` (ms) is the engine's
   * timestamp, strictly increasing in the engine's order within one call (see
   * LogClock: Podman 4.3 gives whole seconds), so it may carry a fraction.
   */
  onLine: (stream: LogStream, line: string, ts: number) => void
  signal?: AbortSignal
}

const DEFAULT_CALL_TIMEOUT_MS = 30_000
const DEFAULT_PULL_TIMEOUT_MS = 60_000
const DEFAULT_PING_TIMEOUT_MS = 5_000
/** How much longer than the grace period a stop may take (the kill and the engine's bookkeeping). */
const STOP_SLACK_MS = 30_000

/** Network failures that mean the engine is not there (or went away mid-call). */
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EPIPE', 'ECONNRESET', 'ETIMEDOUT', 'EACCES', 'ENOTSOCK', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET'])

/** GET /version: Podman names itself in Components (`Podman Engine`), Docker as `Engine`. */
interface VersionAnswer {
  Version?: string
  ApiVersion?: string
  Components?: Array<{ Name?: string, Version?: string }>
}

/** What docker-modem rejects with for an unexpected HTTP status. */
interface ModemError extends Error {
  statusCode?: number
  json?: unknown
  code?: string
}

/**
 * The engine socket to use: the `--container-socket` value (a path or
 * `unix://path`), else DOCKER_HOST when it is `unix://…`; undefined when
 * neither is given. Only unix sockets are supported: a tcp://, ssh:// or
 * npipe:// address is an InvalidArgumentError.
 */
export function resolveEngineSocket (flag?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flag != null && flag.trim() !== '') return socketPathOf(flag.trim(), '--container-socket')
  const host = env.DOCKER_HOST?.trim()
  if (host == null || host === '') return undefined
  return socketPathOf(host, 'DOCKER_HOST')
}

function socketPathOf (value: string, source: string): string {
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length)
    if (path === '') throw new InvalidArgumentError(`${source} ${value} names no socket path (expected unix:///path/to/engine.sock)`)
    return path
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]
  if (scheme != null) {
    throw new InvalidArgumentError(`${source} ${value}: only unix sockets are supported for the container engine (unix:///run/podman/podman.sock), not ${scheme}://`)
  }
  return value
}

/** Options every engine call takes: the caller's signal aborts the call (it rejects with the signal's reason). */
export interface EngineCallOptions {
  signal?: AbortSignal
}

/**
 * What a node's container plane needs of an engine (ContainerEngine is the
 * real one, on the engine's socket; tests give the container host a small
 * in-memory one). Every call takes the caller's AbortSignal.
 */
export interface PodEngine {
  ping: (timeoutMs?: number, options?: EngineCallOptions) => Promise<EngineInfo>
  alive: (timeoutMs?: number, options?: EngineCallOptions) => Promise<void>
  hasImage: (image: string, options?: EngineCallOptions) => Promise<boolean>
  pull: (image: string, options?: PullOptions) => Promise<void>
  create: (opts: CreateContainerOptions, options?: EngineCallOptions) => Promise<string>
  start: (id: string, options?: EngineCallOptions) => Promise<void>
  wait: (id: string, options?: EngineCallOptions) => Promise<ContainerExitStatus>
  stop: (id: string, graceSeconds: number, options?: EngineCallOptions) => Promise<void>
  remove: (id: string, options?: EngineCallOptions & { force?: boolean }) => Promise<void>
  inspect: (id: string, options?: EngineCallOptions) => Promise<ContainerDetails | undefined>
  list: (labelFilter: Record<string, string> | string[], options?: EngineCallOptions) => Promise<ContainerSummary[]>
  logs: (id: string, options: LogsOptions) => Promise<void>
}

export class ContainerEngine implements PodEngine {
  readonly socketPath: string
  private client?: Dockerode
  private readonly log: Logger
  private readonly callTimeoutMs: number

  constructor (init: ContainerEngineInit) {
    this.socketPath = init.socketPath
    this.log = init.log ?? silentLogger
    this.callTimeoutMs = init.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS
  }

  /**
   * The dockerode client, made on first use: dockerode (with ssh2, gRPC and
   * protobufjs below it) is loaded only by a node that talks to an engine.
   */
  private get docker (): Dockerode {
    this.client ??= new (createRequire(import.meta.url)('dockerode') as typeof Dockerode)({ socketPath: this.socketPath })
    return this.client
  }

  /** The engine's name and version (from GET /version); EngineUnavailableError when it does not answer in time. */
  async ping (timeoutMs = DEFAULT_PING_TIMEOUT_MS, { signal }: { signal?: AbortSignal } = {}): Promise<EngineInfo> {
    const v = await this.call('ping', timeoutMs, signal, async signal =>
      await this.dial<VersionAnswer>({ path: '/version', method: 'GET', abortSignal: signal }))
    const components = v.Components ?? []
    const podman = components.find(c => c.Name === 'Podman Engine')
    const docker = components.find(c => c.Name === 'Engine')
    const main = podman ?? docker ?? components[0]
    return {
      engine: podman != null ? 'Podman Engine' : docker != null ? 'Docker Engine' : main?.Name ?? 'unknown engine',
      version: main?.Version ?? v.Version ?? 'unknown',
      apiVersion: v.ApiVersion ?? 'unknown'
    }
  }

  /**
   * A cheap liveness check (`GET /_ping`, ~1 ms), for the node's periodic
   * health probe: Podman's `/version` runs conmon and runc each time (~0.4 s).
   */
  async alive (timeoutMs = DEFAULT_PING_TIMEOUT_MS, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
    await this.call('ping', timeoutMs, signal, async s =>
      await this.dial({ path: '/_ping', method: 'GET', abortSignal: s }))
  }

  /** Whether the engine has the image locally (short names resolve as the engine resolves them). */
  async hasImage (image: string, { signal }: { signal?: AbortSignal } = {}): Promise<boolean> {
    try {
      await this.call(`inspect image ${image}`, this.callTimeoutMs, signal, async s =>
        await this.dial({ path: `/images/${encodeURI(image)}/json`, method: 'GET', abortSignal: s }))
      return true
    } catch (err) {
      if (statusOf(err) === 404) return false
      throw err
    }
  }

  /**
   * Pulls an image. A failure the engine reports inside the progress stream
   * (HTTP 200 with `{ error, errorDetail }`) is an ImagePullError like an HTTP
   * error; a pull still going after `timeoutMs` is aborted and is one too.
   */
  async pull (image: string, { onProgress, signal, timeoutMs = DEFAULT_PULL_TIMEOUT_MS }: PullOptions = {}): Promise<void> {
    const timeout = AbortSignal.timeout(timeoutMs)
    const combined = signal != null ? AbortSignal.any([signal, timeout]) : timeout
    const started = Date.now()
    let stream: NodeJS.ReadableStream
    try {
      stream = await this.docker.pull(image, { abortSignal: combined })
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      if (timeout.aborted) throw new ImagePullError(image, 'ErrImagePull', `no answer from the engine within ${timeoutMs} ms`, { cause: err })
      if (isUnreachable(err)) throw this.unreachable(err)
      throw new ImagePullError(image, 'ErrImagePull', engineMessage(err), { cause: err })
    }
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined
      let settled = false
      const finish = (err?: Error): void => {
        if (settled) return
        settled = true
        combined.removeEventListener('abort', onAbort)
        if (err != null) reject(err)
        else resolve()
      }
      const onAbort = (): void => {
        ;(stream as unknown as { destroy?: () => void }).destroy?.()
        if (signal?.aborted === true) finish(signal.reason as Error)
        else finish(new ImagePullError(image, 'ErrImagePull', `the pull did not finish within ${timeoutMs} ms`))
      }
      combined.addEventListener('abort', onAbort, { once: true })
      this.docker.modem.followProgress(stream, (err) => {
        if (err != null) {
          finish(isUnreachable(err) ? this.unreachable(err) : new ImagePullError(image, 'ErrImagePull', describeError(err), { cause: err }))
        } else if (failure != null) {
          finish(new ImagePullError(image, 'ErrImagePull', failure))
        } else if (!(stream as unknown as { readableEnded?: boolean }).readableEnded) {
          finish(this.unreachable(new Error(`connection closed while pulling ${image}`)))
        } else {
          this.log.debug({ image, ms: Date.now() - started }, 'image pulled')
          finish()
        }
      }, (event: PullProgress) => {
        if (failure == null && (event.error != null || event.errorDetail?.message != null)) {
          failure = event.errorDetail?.message ?? event.error
        }
        onProgress?.(event)
      })
    })
  }

  /**
   * Creates a container (not started) and returns its id. `command`/`args`
   * map to Entrypoint/Cmd as in Kubernetes; ports with a hostPort are
   * published; the engine runs an init process as pid 1 (so a stop is quick)
   * and never restarts or removes the container on its own.
   */
  async create (opts: CreateContainerOptions, { signal }: { signal?: AbortSignal } = {}): Promise<string> {
    const body = createBody(opts)
    try {
      const created = await this.call(`create ${opts.name}`, this.callTimeoutMs, signal, async s =>
        await this.dial<{ Id: string }>({ path: '/containers/create?', method: 'POST', options: { _query: { name: opts.name }, _body: body }, abortSignal: s }))
      return created.Id
    } catch (err) {
      if (!(err instanceof ContainerEngineError)) throw err
      const status = statusOf(err)
      const message = engineMessage(err)
      if (status === 409 || /name .* is already in use|already in use by|name is already in use/i.test(message)) {
        throw new ContainerNameConflictError(opts.name, message, { cause: err })
      }
      if (status === 404 || /no such image|image not known/i.test(message)) {
        throw new ImagePullError(opts.image, 'ImageNotFound', message, { cause: err })
      }
      throw new ContainerCreateError(opts.name, message, { cause: err })
    }
  }

  /** Starts a created container; starting a running one is fine. A host port already bound is a PortInUseError. */
  async start (id: string, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.call(`start ${id}`, this.callTimeoutMs, signal, async s => await this.docker.getContainer(id).start({ abortSignal: s }))
    } catch (err) {
      if (!(err instanceof ContainerEngineError)) throw err
      const status = statusOf(err)
      if (status === 304) return
      const message = engineMessage(err)
      if (status === 404) throw new ContainerNotFoundError(id, message, { cause: err })
      const port = portInUse(message)
      if (port != null) throw new PortInUseError(id, port.port, port.protocol, message, { cause: err })
      throw new ContainerStartError(id, message, { cause: err })
    }
  }

  /**
   * Resolves when the container stops, with its exit code and whether the
   * kernel OOM-killed it (at once for one already stopped; call it after
   * `start`: Podman answers exit code -1 at once for a container never
   * started). Rejects with EngineUnavailableError as soon as the engine drops
   * the connection; with the signal's reason when it aborts.
   */
  async wait (id: string, { signal }: { signal?: AbortSignal } = {}): Promise<ContainerExitStatus> {
    let res: IncomingMessage
    try {
      res = await this.dialStream({ path: `/containers/${encodeURIComponent(id)}/wait?`, method: 'POST', ...(signal != null ? { abortSignal: signal } : {}) })
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      if (statusOf(err) === 404) throw new ContainerNotFoundError(id, engineMessage(err), { cause: err })
      throw this.translate(err, `wait ${id}`)
    }
    const text = (await this.readAll(res, `waiting for container ${id}`, signal)).toString('utf8')
    let answer: { StatusCode?: number, Error?: { Message?: string } | null }
    try {
      answer = JSON.parse(text) as typeof answer
    } catch {
      throw new ContainerEngineError(`wait ${id}`, res.statusCode, `unexpected answer ${JSON.stringify(text.slice(0, 200))}`)
    }
    const details = await this.inspect(id, { signal })
    const exitCode = answer.StatusCode ?? details?.exitCode ?? -1
    const error = answer.Error?.Message ?? details?.error
    return {
      exitCode,
      oomKilled: details?.oomKilled ?? false,
      ...(details?.finishedAt != null ? { finishedAt: details.finishedAt } : {}),
      ...(error != null && error !== '' ? { error } : {})
    }
  }

  /** Stops a container: SIGTERM, then SIGKILL after `graceSeconds`. Already stopped or gone is fine. */
  async stop (id: string, graceSeconds: number, { signal }: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.call(`stop ${id}`, graceSeconds * 1000 + STOP_SLACK_MS, signal, async s =>
        await this.docker.getContainer(id).stop({ t: Math.max(0, Math.round(graceSeconds)), abortSignal: s }))
    } catch (err) {
      const status = statusOf(err)
      if (status === 304 || status === 404) return
      throw err
    }
  }

  /** Removes a container (with `force`, a running one too) and its anonymous volumes. Already gone is fine. */
  async remove (id: string, { force = false, signal }: { force?: boolean, signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.call(`remove ${id}`, this.callTimeoutMs, signal, async s =>
        await this.docker.getContainer(id).remove({ force, v: true, abortSignal: s }))
    } catch (err) {
      if (statusOf(err) === 404) return
      throw err
    }
  }

  /** The container's state, or undefined when the engine has no such container. */
  async inspect (id: string, { signal }: { signal?: AbortSignal } = {}): Promise<ContainerDetails | undefined> {
    let info: Dockerode.ContainerInspectInfo
    try {
      info = await this.call(`inspect ${id}`, this.callTimeoutMs, signal, async s => await this.docker.getContainer(id).inspect({ abortSignal: s }))
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw err
    }
    const state = info.State
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      running: state.Running,
      exitCode: state.ExitCode,
      oomKilled: state.OOMKilled,
      ...(isSet(state.StartedAt) ? { startedAt: state.StartedAt } : {}),
      ...(isSet(state.FinishedAt) ? { finishedAt: state.FinishedAt } : {}),
      labels: info.Config.Labels ?? {},
      image: info.Config.Image,
      ...(state.Error != null && state.Error !== '' ? { error: state.Error } : {}),
      network: networkOf(info)
    }
  }

  /**
   * Containers (running or not) carrying all the given labels: a record of
   * label → value, or a list of `key` / `key=value` filters.
   */
  async list (labelFilter: Record<string, string> | string[], { signal }: { signal?: AbortSignal } = {}): Promise<ContainerSummary[]> {
    const label = Array.isArray(labelFilter) ? labelFilter : Object.entries(labelFilter).map(([k, v]) => `${k}=${v}`)
    const found = await this.call('list containers', this.callTimeoutMs, signal, async s =>
      await this.docker.listContainers({ all: true, filters: { label }, abortSignal: s }))
    return found.map(c => ({
      id: c.Id,
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      labels: c.Labels ?? {},
      running: c.State === 'running',
      state: c.State
    }))
  }

  /**
   * Reads a container's logs, demultiplexed into stdout and stderr and split
   * into lines (a partial line is kept until its newline or the end). Resolves
   * when the stream ends: at once for `follow: false`, when the container stops
   * for `follow: true`, or when `signal` aborts.
   */
  async logs (id: string, { follow, tail, since, onLine, signal }: LogsOptions): Promise<void> {
    const query: Record<string, string | number | boolean> = { follow, stdout: true, stderr: true, timestamps: true }
    if (tail != null) query.tail = tail
    if (since != null) query.since = since
    let res: IncomingMessage
    try {
      res = await this.dialStream({ path: `/containers/${encodeURIComponent(id)}/logs?`, method: 'GET', options: { _query: query }, ...(signal != null ? { abortSignal: signal } : {}) })
    } catch (err) {
      if (signal?.aborted === true) return
      if (statusOf(err) === 404) throw new ContainerNotFoundError(id, engineMessage(err), { cause: err })
      throw this.translate(err, `logs ${id}`)
    }
    const clock = new LogClock()
    const stdout = new LineSplitter('stdout', onLine, clock)
    const stderr = new LineSplitter('stderr', onLine, clock)
    this.docker.modem.demuxStream(res, stdout.writable(), stderr.writable())
    try {
      await this.readAll(res, `reading the logs of ${id}`, signal, false)
    } catch (err) {
      if (signal?.aborted !== true) throw err
    } finally {
      stdout.flush()
      stderr.flush()
    }
  }

  // --- plumbing --------------------------------------------------------------

  /**
   * Runs one short engine call bounded by `timeoutMs` and the caller's signal:
   * the caller's abort rejects with its reason, the timeout and any network
   * failure with EngineUnavailableError, an HTTP error with ContainerEngineError
   * (its `statusCode` is kept for the method to decide).
   */
  private async call<T> (operation: string, timeoutMs: number, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs)
    const combined = signal != null ? AbortSignal.any([signal, timeout]) : timeout
    try {
      return await fn(combined)
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      if (timeout.aborted) throw new EngineUnavailableError(`${operation} got no answer within ${timeoutMs} ms`, { socket: this.socketPath, cause: err })
      throw this.translate(err, operation)
    }
  }

  private translate (err: unknown, operation: string): Error {
    if (err instanceof BeeMeshError) return err
    if (isUnreachable(err)) return this.unreachable(err)
    return new ContainerEngineError(operation, statusOf(err), engineMessage(err), { cause: err })
  }

  private unreachable (err: unknown): EngineUnavailableError {
    return new EngineUnavailableError(describeError(err), { socket: this.socketPath, cause: err })
  }

  /** One request whose answer is read whole; statuses other than 2xx reject with the engine's message. */
  private async dial<T> (options: DockerModem.DialOptions): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      this.docker.modem.dial({ statusCodes: OK_STATUSES, ...options }, (err, data) => {
        if (err != null) reject(err)
        else resolve(data as T)
      })
    })
  }

  /** One request whose answer is handed over as a stream once the engine sent its headers. */
  private async dialStream (options: DockerModem.DialOptions): Promise<IncomingMessage> {
    return await new Promise<IncomingMessage>((resolve, reject) => {
      this.docker.modem.dial({ statusCodes: OK_STATUSES, ...options, isStream: true }, (err, data) => {
        if (err != null) reject(err)
        else resolve(data as IncomingMessage)
      })
    })
  }

  /**
   * Reads a response to its end. The engine closing the connection first (it
   * died, or was stopped) is an EngineUnavailableError; `signal` aborting
   * destroys the stream and rejects with its reason.
   */
  private async readAll (res: IncomingMessage, what: string, signal?: AbortSignal, keep = true): Promise<Buffer> {
    return await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      let settled = false
      const finish = (err: unknown, value?: Buffer): void => {
        if (settled) return
        settled = true
        signal?.removeEventListener('abort', onAbort)
        if (err != null) reject(err)
        else resolve(value ?? Buffer.alloc(0))
      }
      const onAbort = (): void => {
        finish(signal?.reason ?? new Error('aborted'))
        res.destroy()
      }
      if (signal?.aborted === true) { onAbort(); return }
      signal?.addEventListener('abort', onAbort, { once: true })
      if (keep) res.on('data', (chunk: Buffer) => { chunks.push(chunk) })
      else res.resume()
      res.on('end', () => { finish(null, Buffer.concat(chunks)) })
      // An error on a response under way is the connection failing: the engine went away.
      res.on('error', err => { finish(this.unreachable(new Error(`connection lost while ${what} (${describeError(err)})`, { cause: err }))) })
      res.on('close', () => {
        if (!res.complete) finish(this.unreachable(new Error(`connection closed while ${what}`)))
        else finish(null, Buffer.concat(chunks))
      })
    })
  }
}

const OK_STATUSES: DockerModem.StatusCodes = { 200: true, 201: true, 204: true }

function createBody (opts: CreateContainerOptions): Record<string, unknown> {
  const exposed: Record<string, Record<string, never>> = {}
  const bindings: Record<string, Array<{ HostIp: string, HostPort: string }>> = {}
  for (const p of opts.ports) {
    const key = `${p.containerPort}/${p.protocol.toLowerCase()}`
    exposed[key] = {}
    if (p.hostPort != null) (bindings[key] ??= []).push({ HostIp: '', HostPort: String(p.hostPort) })
  }
  // An empty HostPort: the engine picks a free one (read back with inspect after start).
  for (const port of new Set(opts.publishLoopback ?? [])) {
    const key = `${port}/tcp`
    exposed[key] = {}
    if (bindings[key] == null) bindings[key] = [{ HostIp: '127.0.0.1', HostPort: '' }]
  }
  const hostConfig: Record<string, unknown> = {
    Init: true,
    AutoRemove: false,
    RestartPolicy: { Name: 'no' },
    PortBindings: bindings
  }
  if (opts.extraHosts != null && opts.extraHosts.length > 0) hostConfig.ExtraHosts = opts.extraHosts
  if (opts.limits.cpuMillis != null) hostConfig.NanoCpus = Math.round(opts.limits.cpuMillis * 1e6)
  if (opts.limits.memoryBytes != null) {
    hostConfig.Memory = opts.limits.memoryBytes
    // No swap beyond the limit, as the kubelet does: the limit is the memory the process gets.
    hostConfig.MemorySwap = opts.limits.memoryBytes
  }
  return {
    Image: opts.image,
    ...(opts.command != null ? { Entrypoint: opts.command } : {}),
    ...(opts.args != null ? { Cmd: opts.args } : {}),
    Env: opts.env.map(e => `${e.name}=${e.value}`),
    ExposedPorts: exposed,
    ...(opts.workingDir != null ? { WorkingDir: opts.workingDir } : {}),
    Labels: opts.labels,
    HostConfig: hostConfig
  }
}

/**
 * The host port in an engine's "already in use" answer. Podman:
 * `cannot listen on the TCP port: listen tcp4 :8080: bind: address already in use`;
 * Docker: `Bind for 0.0.0.0:8080 failed: port is already allocated`.
 */
export function portInUse (message: string): { port: number | undefined, protocol: 'TCP' | 'UDP' } | undefined {
  const listen = /listen (tcp|udp)\d?\s+\[?[^\s\]]*\]?:(\d+): bind: address already in use/i.exec(message)
  if (listen != null) return { port: Number(listen[2]), protocol: listen[1]?.toLowerCase() === 'udp' ? 'UDP' : 'TCP' }
  const docker = /Bind for \S*:(\d+) failed: port is already allocated/i.exec(message)
  if (docker != null) return { port: Number(docker[1]), protocol: 'TCP' }
  if (/address already in use|port is already allocated/i.test(message)) return { port: undefined, protocol: /udp/i.test(message) ? 'UDP' : 'TCP' }
  return undefined
}

/**
 * The bridge address and published ports of an inspected container. Podman
 * 4.3 fills `NetworkSettings.IPAddress` for its default network, and
 * `Networks.<name>.IPAddress` always; the list API leaves both empty.
 */
function networkOf (info: Dockerode.ContainerInspectInfo): ContainerNetwork {
  // Dockerode's types lack the legacy top-level IPAddress that Podman (and Docker's default bridge) still fill.
  const settings = info.NetworkSettings as Partial<Dockerode.ContainerInspectInfo['NetworkSettings']> & { IPAddress?: string } | undefined
  const first = Object.values(settings?.Networks ?? {}).map(n => n.IPAddress).find(ip => ip != null && ip !== '')
  const ip = settings?.IPAddress != null && settings.IPAddress !== '' ? settings.IPAddress : first
  const ports: ContainerNetwork['ports'] = {}
  for (const [key, bound] of Object.entries(settings?.Ports ?? {})) {
    const list = (bound ?? []).map(b => ({ hostIp: b.HostIp ?? '', hostPort: Number(b.HostPort) })).filter(b => Number.isInteger(b.hostPort) && b.hostPort > 0)
    if (list.length > 0) ports[key] = list
  }
  return { ...(ip != null ? { ip } : {}), ports }
}

function statusOf (err: unknown): number | undefined {
  if (err instanceof ContainerEngineError) return err.statusCode
  const code = (err as ModemError | undefined)?.statusCode
  return typeof code === 'number' ? code : undefined
}

/** The engine's own message (`{ message, cause }` in its JSON answer), else the error's. */
function engineMessage (err: unknown): string {
  if (err instanceof ContainerEngineError) return err.detail
  const json = (err as ModemError | undefined)?.json
  if (json != null && typeof json === 'object') {
    const m = (json as { message?: unknown }).message
    if (typeof m === 'string' && m !== '') return m
  }
  if (typeof json === 'string' && json.trim() !== '') return json.trim()
  if (Buffer.isBuffer(json) && json.length > 0) return json.toString('utf8').trim()
  return describeError(err)
}

function isUnreachable (err: unknown): boolean {
  if (err instanceof EngineUnavailableError) return true
  if (!(err instanceof Error)) return false
  const code = (err as ModemError).code
  if (code != null && UNREACHABLE_CODES.has(code)) return true
  return /socket hang up|premature close/i.test(err.message)
}

function isSet (time: string | undefined): time is string {
  return time != null && time !== '' && !time.startsWith('0001-01-01')
}

/** An engine timestamp prefix: RFC 3339, with or without fractional seconds. */
const TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ?/

/**
 * The times handed to `onLine` in one `logs` call: the engine's, made strictly
 * increasing in the order the engine sent the lines. Podman 4.3 stamps log
 * lines to the second only, so lines of the same second would tie; each gets
 * 1 µs more than the one before, and sorting by time keeps the engine's order
 * (also between stdout and stderr).
 */
class LogClock {
  private last = -Infinity

  stamp (ts: number): number {
    this.last = ts > this.last ? ts : this.last + 0.001
    return this.last
  }
}

/**
 * Turns the frames of one stream into lines. Each frame the engine sends
 * starts with its timestamp (with `timestamps=true`), also the continuation of
 * a partial line; the line keeps the time of its first fragment.
 */
class LineSplitter {
  private readonly decoder = new StringDecoder('utf8')
  private pending = ''
  private pendingTs: number | undefined

  constructor (private readonly stream: LogStream, private readonly onLine: LogsOptions['onLine'], private readonly clock: LogClock) {}

  writable (): Writable {
    return new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.frame(chunk)
        callback()
      }
    })
  }

  private frame (chunk: Buffer): void {
    // The prefix is ASCII: cut it off the bytes, so a character split across
    // two frames is joined by the decoder without a timestamp in between.
    let ts = Date.now()
    const m = TIMESTAMP.exec(chunk.subarray(0, 48).toString('latin1'))
    if (m?.[1] != null) {
      const parsed = Date.parse(m[1])
      if (!Number.isNaN(parsed)) ts = parsed
      chunk = chunk.subarray(m[0].length)
    }
    let lineTs = this.pendingTs ?? ts
    this.pending += this.decoder.write(chunk)
    let nl: number
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl).replace(/\r$/, '')
      this.pending = this.pending.slice(nl + 1)
      this.onLine(this.stream, line, this.clock.stamp(lineTs))
      lineTs = ts
    }
    this.pendingTs = this.pending === '' ? undefined : lineTs
  }

  flush (): void {
    this.pending += this.decoder.end()
    if (this.pending !== '') this.onLine(this.stream, this.pending, this.clock.stamp(this.pendingTs ?? Date.now()))
    this.pending = ''
    this.pendingTs = undefined
  }
}
