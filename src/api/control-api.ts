import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Duplex } from 'node:stream'
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'
import * as z from 'zod'
import { describeError } from '../errors.js'
import type { AbortOptions } from '@libp2p/interface'
import type { NodeMetrics } from '../actors/metrics.js'
import type { PolicySync } from '../actors/policy-sync.js'
import type { WorkloadRuntime } from '../node/workload-runtime.js'
import type { Trust } from '../policy/trust.js'
import type { MeshMessage, MeshPeer, PutResult } from '../transport/mesh-node.js'
import type { DecodedRecord } from '../transport/records.js'
import type { NodeStatus } from '../workloads/views.js'
import { RecordNotFoundError, InvalidRecordError, NotStartedError } from '../transport/errors.js'
import type { Logger } from '../transport/logger.js'
import { isBeeMeshKey } from '../transport/records.js'
import { ApiListenError } from './errors.js'
import { decodePathSegment, HttpError, readJson, sendError, sendJson } from './http.js'
import { EventNotHandledError, InvalidEventError, InvalidWorkloadError, MachineFailedError, NoSubscribersError, NoTraceError, OwnerUnavailableError, UnschedulableError, WorkloadCompletedError, WorkloadNotFoundError } from '../actors/errors.js'
import { traceTopic, type TransitionRecord } from '../protocol/state.js'
import { ArtifactError } from '../store/errors.js'
import { decodeEnvelope } from '../protocol/messages.js'
import { isKubePath, KubeApi } from './kube/server.js'
import { serveUi } from './ui.js'
import { evaluate, type Action, type Principal, type Resource } from '../policy/engine.js'
import { PolicyError, TrustError } from '../policy/errors.js'
import { asPrincipal, attachBearer } from '../policy/request-context.js'
import { SYSTEM_NAMESPACE } from '../policy/defaults.js'
import { CallError, callErrorStatus } from '../services/errors.js'
import { MAX_CALL_BYTES } from '../services/calls.js'
import { isLoopbackAddress, type ServingTls } from '../policy/tls.js'

/** What the control API needs from a node: the runtime in production, anything alike in tests. */
/** What the control API needs of its node (NodeRuntime is one). */
export interface NodeControl {
  readonly peerId: string
  readonly metrics: NodeMetrics
  readonly trust: Trust
  readonly policies: PolicySync
  readonly workloads: WorkloadRuntime
  status: () => NodeStatus
  peers: () => MeshPeer[]
  peer: (peerId: string) => Promise<{ peerId: string, connected: boolean, admitted: boolean, addressBook: boolean }>
  putRecord: (key: string, value: Uint8Array, options?: AbortOptions) => Promise<PutResult>
  getRecord: (key: string, options?: AbortOptions) => Promise<DecodedRecord>
  hasLocalRecord: (key: string) => Promise<boolean>
  watchTopic: (topic: string, onMessage: (msg: MeshMessage) => void) => () => void
  topicPeers: (topic: string) => string[]
}

export interface ControlApiInit {
  node: NodeControl
  host: string
  port: number
  logger: Logger
  /** Serve TLS with this certificate (docs/security.md, "TLS"). */
  tls?: ServingTls
  /** Also answer plain HTTP, to loopback peers only (`--api-insecure-http`). */
  insecureHttp?: boolean
  /** Further names or addresses clients may reach the API by (its Host header); loopback and this host's addresses always. */
  allowedHosts?: string[]
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** JSON and the Kubernetes patch and YAML types kubectl sends; never text/plain or form encodings (what any web page can post). */
const ACCEPTED_TYPE = /^\s*application\/(json|merge-patch\+json|strategic-merge-patch\+json|json-patch\+json|apply-patch\+yaml|yaml|x-yaml)\s*(;.*)?$/i

/** The host names an API on `listenHost` answers to besides loopback: the listen address, or every interface's when it listens on all, and the host's name. */
function ownHostNames (listenHost: string, bound: string | undefined, extra: string[]): Set<string> {
  const names = new Set<string>([...extra, listenHost, bound ?? ''].map(h => h.toLowerCase().replace(/^\[|\]$/g, '')).filter(h => h !== ''))
  if (listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '') {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase())
    names.add(hostname().toLowerCase())
  }
  return names
}

/** The first byte of a TLS record carrying a handshake (the ClientHello). */
const TLS_HANDSHAKE = 0x16
/** How long a connection may stay silent before its first byte says what it speaks. */
const FIRST_BYTE_TIMEOUT_MS = 10_000

const RecordPut = z.object({ key: z.string(), value: z.string(), encoding: z.enum(['utf8', 'base64']).default('utf8') })
const Publish = z.object({ data: z.unknown() })
const Apply = z.object({ spec: z.unknown(), artifact: z.string().min(1).optional() })
const Upload = z.object({ artifact: z.string().min(1) })
const SendEvent = z.object({ event: z.unknown(), id: z.string().min(1).max(128).optional(), timeoutMs: z.number().int().min(100).max(120_000).optional() })
const CallBody = z.object({ data: z.unknown(), timeoutMs: z.number().int().min(1).max(600_000).optional(), idempotent: z.boolean().optional(), retries: z.number().int().min(0).max(10).optional() })
const MAX_APPLY_BYTES = 48 * 1024 * 1024
const NAME = '[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?'
const WORKLOAD_PATH = new RegExp(`^/v1/workloads/(${NAME})/(${NAME})(/logs|/events|/state|/trace/export|/trace|/machine)?$`)
const SERVICE_PATH = new RegExp(`^/v1/services/(${NAME})/(${NAME})(/call)?$`)
const TOPIC = /^[A-Za-z0-9._~:/-]{1,200}$/

/**
 * The node's local control API (used by the CLI), on 127.0.0.1 by default:
 * TLS with the node's certificate, plain HTTP only to loopback callers and
 * only when asked for (both on one port: see dispatch).
 *
 *   GET  /healthz                      liveness and node state
 *   GET  /v1/ca                        the mesh CA certificate (PEM; public)
 *   GET  /v1/status                    peer id, addresses, uptime, peer count
 *   GET  /metrics                      Prometheus metrics (a bearer token with read on beemesh-system)
 *   GET  /v1/peers                     connected peers
 *   PUT  /v1/records                   {key, value, encoding?} → signed DHT put
 *   GET  /v1/records?key=/beemesh/..   newest valid record
 *   POST /v1/topics/:topic/messages    {data} → gossipsub publish
 *   GET  /v1/topics/:topic/messages    server-sent events, one per message
 *   GET  /v1/topics/:topic/peers       peers known to subscribe to the topic
 *   GET  /v1/nodes                     this node and every peer heartbeating: capacity, labels, replicas
 *   POST /v1/workloads                 {spec, artifact (base64 bundle)} → placed workload
 *   GET  /v1/workloads                 every workload with status and placement
 *   POST /v1/artifacts                 {artifact: base64} → {sha256, size}: a bundle alone (beemesh upload), for Kubernetes Actors and Machines
 *   GET  /v1/workloads/:ns/:name       spec, placement, epoch, scheduling events
 *   DELETE /v1/workloads/:ns/:name     stop every replica and tombstone the record
 *   GET  /v1/workloads/:ns/:name/logs  ?tail=N&since=<ms>: log lines from every replica
 *   POST /v1/workloads/:ns/:name/events       {event, id?} → acknowledgement, once durable (stateful)
 *   GET  /v1/workloads/:ns/:name/state        state value, context, owner, epoch, seq (stateful)
 *   GET  /v1/workloads/:ns/:name/trace        recent transitions; ?follow=true: server-sent events
 *   GET  /v1/workloads/:ns/:name/trace/export the whole trace as JSONL, gathered across owners
 *   GET  /v1/workloads/:ns/:name/machine      the machine's definition (statechart JSON)
 *   GET  /ui/                                 the built-in web view (static; its data calls authenticate)
 *   /version, /api/…, /apis/…          the Kubernetes-compatible API kubectl drives (src/api/kube/)
 */
export class ControlApi {
  private readonly init: ControlApiInit
  private readonly server: Server
  /** One port for both: the first byte of a connection picks TLS or (loopback, when allowed) plain HTTP. */
  private readonly front: NetServer
  private readonly secureContext?: SecureContext
  /** Connections whose first byte has not come yet. */
  private readonly undecided = new Set<Socket>()
  private readonly streams = new Set<ServerResponse>()
  private readonly kube: KubeApi

  constructor (init: ControlApiInit) {
    this.init = init
    this.kube = new KubeApi({
      workloads: () => init.node.workloads,
      logger: init.logger,
      url: () => this.url,
      // The bundle an Actor or Machine names: this node's copy, else a member's (POST /v1/artifacts stored it);
      // its definition is read back in this node's sandbox mode (refused where it cannot confine).
      // The bundler loads only when an Actor or Machine is first posted.
      readArtifact: async (sha256, opts) => {
        const path = await init.node.workloads.artifacts.ensure(sha256, [], { signal: AbortSignal.timeout(20_000) }).catch(err => {
          throw err instanceof ArtifactError ? err : new ArtifactError(sha256, describeError(err), { cause: err })
        })
        const code = await readFile(path)
        const isolation = init.node.status().sandbox?.isolation
        return await (await import('../bundle/bundler.js')).readBundle(code, { ...opts, shown: opts.source, ...(isolation != null ? { isolation } : {}) })
      }
    })
    const handler = (req: IncomingMessage, res: ServerResponse): void => { void this.handle(req, res) }
    this.server = createServer(handler)
    this.server.keepAliveTimeout = 1_000
    if (init.tls != null) this.secureContext = createSecureContext({ cert: init.tls.cert, key: init.tls.key, minVersion: 'TLSv1.2' })
    this.front = createNetServer(socket => { this.dispatch(socket) })
  }

  /**
   * TLS on a socket whose first bytes were already read (Node's TLS would read
   * the socket's handle directly and miss them): the socket is wrapped in a
   * stream that replays them, and the decrypted side goes to the HTTP server
   * as one more connection, with the peer's real address.
   */
  private terminateTls (socket: Socket, secureContext: SecureContext): void {
    const tlsSocket = new TLSSocket(new ReplayingStream(socket), { isServer: true, secureContext })
    for (const key of ['remoteAddress', 'remotePort', 'remoteFamily', 'localAddress', 'localPort'] as const) {
      Object.defineProperty(tlsSocket, key, { value: socket[key], configurable: true })
    }
    const handshake = setTimeout(() => { tlsSocket.destroy() }, FIRST_BYTE_TIMEOUT_MS)
    tlsSocket.on('error', err => {
      this.init.logger.debug({ err: describeError(err), peer: socket.remoteAddress }, 'TLS with an API client failed')
      tlsSocket.destroy()
    })
    tlsSocket.once('close', () => { clearTimeout(handshake); socket.destroy() })
    tlsSocket.once('secure', () => {
      clearTimeout(handshake)
      this.server.emit('connection', tlsSocket)
    })
    socket.resume()
  }

  /** Hands a new connection to the TLS server, or to the plain one when it may speak plain HTTP. */
  private dispatch (socket: Socket): void {
    socket.on('error', () => { socket.destroy() })
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => { socket.destroy() })
    this.undecided.add(socket)
    socket.once('close', () => { this.undecided.delete(socket) })
    socket.once('data', (first: Buffer) => {
      this.undecided.delete(socket)
      socket.setTimeout(0)
      socket.pause()
      socket.unshift(first)
      const tls = first[0] === TLS_HANDSHAKE
      if (tls && this.secureContext != null) { this.terminateTls(socket, this.secureContext); return }
      if (!tls && this.init.insecureHttp === true && isLoopbackAddress(socket.remoteAddress)) {
        this.server.emit('connection', socket)
        socket.resume()
        return
      }
      const why = tls
        ? 'this API has no TLS certificate (start the node with --tls-cert and --tls-key)'
        : this.secureContext != null
          ? `this API speaks TLS: use https://${hostPort(socket.localAddress, socket.localPort)} with the mesh CA (plain HTTP is served only to loopback callers of a node started with --api-insecure-http)`
          : 'plain HTTP is served only to loopback callers'
      this.init.logger.debug({ peer: socket.remoteAddress }, `refused an API connection: ${why}`)
      if (tls) { socket.destroy(); return }
      const body = JSON.stringify({ error: why, reason: 'TLSRequired' }) + '\n'
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
      // Drain what the peer still sends until it closes, for at most the first-byte timeout.
      socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => { socket.destroy() })
      socket.resume()
    })
  }

  async listen (): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ApiListenError(this.init.host, this.init.port, err.code === 'EADDRINUSE' ? 'address already in use' : describeError(err), { cause: err }))
      }
      this.front.once('error', onError)
      this.front.listen(this.init.port, this.init.host, () => {
        this.front.off('error', onError)
        resolve()
      })
    })
    return this.url
  }

  get url (): string {
    const addr = this.front.address() as AddressInfo
    return `${this.secureContext != null ? 'https' : 'http'}://${hostPort(addr.address, addr.port)}`
  }

  async close (): Promise<void> {
    for (const res of this.streams) res.end()
    this.kube.close()
    this.server.closeAllConnections()
    for (const socket of this.undecided) socket.destroy()
    await new Promise<void>(resolve => this.front.close(() => { resolve() }))
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.route(req, res)
    } catch (err) {
      const httpError = toHttpError(err)
      if (httpError.status >= 500) this.init.logger.error({ err: describeError(err), url: req.url }, 'control API request failed')
      if (!res.headersSent) sendError(res, httpError)
      else res.end()
    }
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const path = url.pathname
    const method = req.method ?? 'GET'
    const { node } = this.init

    // Before anything else: only requests to this API's own host, from no other
    // origin (DNS rebinding, cross-site requests a web page can make), and
    // writes only in the JSON/YAML types the APIs read (no text/plain or form posts).
    const refusal = this.guard(req, method)
    if (refusal != null) {
      // (Before the node has started there is no trust service to count it: refused all the same.)
      try { node.trust.noteRefusal('api', refusal.reason, `refused an API request to ${method} ${path}: ${refusal.error.message}`) } catch {}
      throw refusal.error
    }
    if (path === '/healthz' && method === 'GET') {
      const status = node.status()
      sendJson(res, status.state.startsWith('running') ? 200 : 503, { status: status.state.startsWith('running') ? 'ok' : 'unavailable', state: status.state, peerId: status.peerId })
      return
    }
    // The mesh CA certificate is public: clients fetch it to verify this API (`beemesh kubeconfig`).
    if (path === '/v1/ca' && method === 'GET') {
      const ca = this.init.tls?.ca
      if (ca == null) throw new HttpError(404, this.init.tls != null ? 'this node\'s certificate file holds no CA certificate after its own' : 'this node serves no TLS (no --tls-cert)', 'NotFound')
      res.writeHead(200, { 'content-type': 'application/x-pem-file', 'content-length': Buffer.byteLength(ca) })
      res.end(ca)
      return
    }
    // The web view's static files (no data in them: the page calls the API below with its token).
    if (method === 'GET' && (path === '/ui' || path.startsWith('/ui/')) && await serveUi(path, res)) return
    // Everything else needs a caller: a deployer's bearer token for this mesh. There is no anonymous access.
    let principal: Principal
    try {
      principal = await node.trust.authenticate(req.headers.authorization)
    } catch (err) {
      if (!(err instanceof TrustError)) throw err
      node.trust.noteRefusal('api', err.reason, `refused an API request to ${method} ${path}: ${err.message}`)
      if (isKubePath(path)) { this.kube.unauthorized(res, err.message); return }
      throw new HttpError(401, err.message, 'Unauthorized')
    }
    await asPrincipal(principal, async () => { await this.serve(req, res, url, principal) })
  }

  /** The Host/Origin and content-type checks every request passes first: the refusal, or undefined. */
  private guard (req: IncomingMessage, method: string): { reason: string, error: HttpError } | undefined {
    const host = req.headers.host
    if (host == null || !this.isOwnHost(host)) {
      return { reason: 'foreign-host', error: new HttpError(403, `Host "${String(host ?? '').slice(0, 100)}" is not this API's own (loopback or this node's addresses); refused (DNS rebinding)`, 'Forbidden') }
    }
    const origin = req.headers.origin
    if (origin != null) {
      const scheme = (req.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http'
      let own = false
      try { own = new URL(origin).origin === new URL(`${scheme}://${host}`).origin } catch {}
      if (!own) return { reason: 'foreign-origin', error: new HttpError(403, `Origin "${origin.slice(0, 100)}" is not this API's own origin; cross-site requests are refused`, 'Forbidden') }
    }
    if (WRITE_METHODS.has(method)) {
      const type = req.headers['content-type']
      const hasBody = req.headers['transfer-encoding'] != null || (req.headers['content-length'] != null && req.headers['content-length'] !== '0')
      if (type == null ? hasBody : !ACCEPTED_TYPE.test(type)) {
        return { reason: 'content-type', error: new HttpError(415, `${method} needs a JSON body (Content-Type application/json, or a Kubernetes patch or YAML type), not ${type ?? 'a body without a Content-Type'}`, 'UnsupportedMediaType') }
      }
    }
    return undefined
  }

  /** Loopback names and addresses, the address the API listens on, this host's own addresses and name. */
  private isOwnHost (host: string): boolean {
    let name: string
    try { name = new URL(`http://${host}`).hostname.toLowerCase() } catch { return false }
    if (name.startsWith('[')) name = name.slice(1, -1)
    if (name === 'localhost' || name.endsWith('.localhost') || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)) return true
    this.ownHosts ??= ownHostNames(this.init.host, (this.server.address() as AddressInfo | null)?.address, this.init.allowedHosts ?? [])
    return this.ownHosts.has(name)
  }

  private ownHosts?: Set<string>

  private async serve (req: IncomingMessage, res: ServerResponse, url: URL, principal: Principal): Promise<void> {
    // The caller's token rides with the request: relayed as proof when another node must act for it (src/policy/relay.ts).
    attachBearer(req.headers.authorization)
    const path = url.pathname
    const method = req.method ?? 'GET'
    const { node } = this.init
    const authorize = (action: Action, resource: Resource): void => { node.trust.authorize(principal, action, resource) }
    const workload = (id: string): Resource => {
      const [namespace = '', name = ''] = id.split('/')
      const known = node.workloads.list().find(w => w.id === id)
      return { kind: 'workload', namespace, name, labels: known?.labels ?? {} }
    }

    // The Kubernetes-compatible API (kubectl): src/api/kube/.
    if (isKubePath(path)) { await this.kube.handle(req, res, url, authorize, (action, resource) => evaluate(node.trust.policy, { principal, action, resource }).allowed); return }
    // Mesh-level reads (status, peers, nodes, policy, metrics) need read on the system namespace.
    const readMesh = (): void => { authorize('read', { kind: 'namespace', name: SYSTEM_NAMESPACE }) }
    if (path === '/v1/status' && method === 'GET') { readMesh(); sendJson(res, 200, node.status()); return }
    if (path === '/v1/policy') {
      if (method === 'GET') {
        readMesh()
        const p = node.trust.currentSignedPolicy
        sendJson(res, 200, { name: node.trust.policy.name, version: node.trust.policy.version, signer: p?.signer ?? null, signedAt: p?.signedAt ?? null, text: p?.text ?? '', peerId: node.peerId })
        return
      }
      if (method === 'PUT') {
        // The root's signature is the authority over policies, not the policy itself (no lock-out).
        await node.policies.apply(await readJson(req, 1024 * 1024), `PUT /v1/policy from ${principal.kind === 'deployer' ? principal.key : 'a caller'}`)
        sendJson(res, 200, { name: node.trust.policy.name, version: node.trust.policy.version, peerId: node.peerId })
        return
      }
      throw methodNotAllowed(method, path)
    }
    if (path === '/metrics' && method === 'GET') {
      readMesh()
      const { contentType, body } = await node.metrics.render()
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
      res.end(body)
      return
    }
    if (path === '/v1/peers' && method === 'GET') { readMesh(); sendJson(res, 200, node.peers()); return }
    if (path.startsWith('/v1/peers/') && method === 'GET') {
      readMesh()
      const id = path.slice('/v1/peers/'.length)
      if (!/^[1-9A-HJ-NP-Za-km-z]{40,64}$/.test(id)) throw new HttpError(400, `"${id.slice(0, 80)}" is not a peer id`, 'BadRequest')
      sendJson(res, 200, await node.peer(id))
      return
    }

    if (path === '/v1/records') {
      authorize('admin', { kind: 'namespace', name: SYSTEM_NAMESPACE })
      if (method === 'PUT') {
        const body = parse(RecordPut, await readJson(req))
        if (!isBeeMeshKey(body.key)) throw new HttpError(400, `key "${body.key}" must have the form /beemesh/<kind>/<id>`, 'BadRequest')
        const value = body.encoding === 'base64' ? Buffer.from(body.value, 'base64') : Buffer.from(body.value, 'utf8')
        sendJson(res, 200, await node.putRecord(body.key, value, { signal: AbortSignal.timeout(10_000) }))
        return
      }
      if (method === 'GET') {
        const key = url.searchParams.get('key')
        if (key == null || !isBeeMeshKey(key)) throw new HttpError(400, 'query parameter key=/beemesh/<kind>/<id> is required', 'BadRequest')
        // local=true: does this node's own DHT store hold the key (no network lookup)?
        if (url.searchParams.get('local') === 'true') { sendJson(res, 200, { key, present: await node.hasLocalRecord(key) }); return }
        // The publisher's credential was checked (it is a member): the answer says so rather than repeat it.
        const { cred: _cred, ...record } = await node.getRecord(key, { signal: AbortSignal.timeout(10_000) })
        sendJson(res, 200, { ...record, value: Buffer.from(record.value).toString('utf8'), valueBase64: Buffer.from(record.value).toString('base64') })
        return
      }
      throw methodNotAllowed(method, path)
    }

    const peersMatch = /^\/v1\/topics\/([^/]+)\/peers$/.exec(path)
    if (peersMatch != null && method === 'GET') {
      const topic = decodePathSegment(peersMatch[1]!)
      authorize('read', { kind: 'topic', name: topic })
      sendJson(res, 200, node.topicPeers(topic))
      return
    }

    const topicMatch = /^\/v1\/topics\/([^/]+)\/messages$/.exec(path)
    if (topicMatch != null) {
      const topic = decodePathSegment(topicMatch[1]!)
      if (!TOPIC.test(topic)) throw new HttpError(400, `invalid topic name "${topic}"`, 'BadRequest')
      if (method === 'POST') {
        authorize('publish', { kind: 'topic', name: topic })
        const body = parse(Publish, await readJson(req))
        sendJson(res, 200, await node.workloads.publish(topic, body.data ?? null))
        return
      }
      if (method === 'GET') { authorize('subscribe', { kind: 'topic', name: topic }); this.streamTopic(topic, req, res); return }
      throw methodNotAllowed(method, path)
    }

    if (path === '/v1/nodes' && method === 'GET') { readMesh(); sendJson(res, 200, node.workloads.nodes()); return }

    if (path === '/v1/services' && method === 'GET') {
      const plane = node.workloads.services
      const all = plane.directory.services()
      const readable = all.filter(s => evaluate(node.trust.policy, { principal, action: 'read', resource: { kind: 'service', namespace: s.namespace, name: s.name, labels: s.labels ?? {} } }).allowed)
      if (readable.length === 0 && all.length > 0) authorize('read', { kind: 'service', namespace: all[0]!.namespace, name: all[0]!.name })
      sendJson(res, 200, await Promise.all(readable.map(async s => await plane.describe(s, { records: false }))))
      return
    }
    const serviceMatch = SERVICE_PATH.exec(path)
    if (serviceMatch != null) {
      const namespace = serviceMatch[1]!
      const name = serviceMatch[3]!
      const plane = node.workloads.services
      if (serviceMatch[5] === '/call') {
        if (method !== 'POST') throw methodNotAllowed(method, path)
        const body = parse(CallBody, await readJson(req, 2 * MAX_CALL_BYTES + 4096))
        // The policy decides at the caller's node (inside call) and at the callee's.
        const value = await plane.call(`${namespace}/${name}`, body.data, { ...(body.timeoutMs != null ? { timeout: body.timeoutMs } : {}), ...(body.idempotent != null ? { idempotent: body.idempotent } : {}), ...(body.retries != null ? { retries: body.retries } : {}) }, { principal, namespace })
        sendJson(res, 200, { value: value ?? null })
        return
      }
      if (method !== 'GET') throw methodNotAllowed(method, path)
      authorize('read', { kind: 'service', namespace, name })
      sendJson(res, 200, await plane.describe(plane.directory.resolve(`${namespace}/${name}`, namespace)))
      return
    }
    if (path.startsWith('/v1/services/')) throw new HttpError(400, `service path must be /v1/services/<namespace>/<name>[/call] with DNS-1123 names, got ${path}`, 'BadRequest')

    if (path === '/v1/artifacts') {
      // A bundle alone, as `beemesh apply` sends it: Kubernetes Actors and Machines name it by its sha256.
      if (method !== 'POST') throw methodNotAllowed(method, path)
      authorize('deploy', { kind: 'namespace', name: url.searchParams.get('namespace') ?? 'default' })
      const bytes = Buffer.from(parse(Upload, await readJson(req, MAX_APPLY_BYTES)).artifact, 'base64')
      const sha256 = await node.workloads.artifacts.publish(bytes)
      sendJson(res, 201, { sha256, size: bytes.byteLength })
      return
    }

    if (path === '/v1/workloads') {
      if (method === 'GET') {
        // Only what the caller may read (decided without logging a denial for each hidden workload);
        // a caller who may read none of them is refused outright, as kubectl's users expect.
        const all = node.workloads.list()
        const readable = all.filter(w => evaluate(node.trust.policy, { principal, action: 'read', resource: { kind: 'workload', namespace: w.namespace, name: w.name, labels: w.labels ?? {} } }).allowed)
        if (readable.length === 0 && all.length > 0) authorize('read', workload(all[0]!.id))
        sendJson(res, 200, readable)
        return
      }
      if (method === 'POST') {
        const apply = parse(Apply, await readJson(req, MAX_APPLY_BYTES))
        const { placed } = await node.workloads.submit(apply.spec, apply.artifact != null ? Buffer.from(apply.artifact, 'base64') : undefined)
        if (url.searchParams.get('wait') === 'false') {
          // Validated and recorded; placement goes on after the answer.
          placed.catch(err => { this.init.logger.warn({ err: describeError(err) }, 'background placement failed') })
          sendJson(res, 202, { accepted: true })
          return
        }
        sendJson(res, 201, await placed)
        return
      }
      throw methodNotAllowed(method, path)
    }

    const workloadMatch = WORKLOAD_PATH.exec(path)
    if (workloadMatch != null) {
      const id = `${workloadMatch[1]!}/${workloadMatch[3]!}`
      authorize(method === 'DELETE' ? 'delete' : workloadMatch[5] === '/events' ? 'send' : 'read', workload(id))
      if (workloadMatch[5] === '/events') {
        if (method !== 'POST') throw methodNotAllowed(method, path)
        const body = parse(SendEvent, await readJson(req))
        sendJson(res, 200, await node.workloads.sendEvent(id, body.event, { ...(body.id != null ? { id: body.id } : {}), ...(body.timeoutMs != null ? { timeoutMs: body.timeoutMs } : {}) }))
        return
      }
      if (workloadMatch[5] === '/state') {
        if (method !== 'GET') throw methodNotAllowed(method, path)
        sendJson(res, 200, await node.workloads.machineState(id))
        return
      }
      if (workloadMatch[5] === '/machine') {
        if (method !== 'GET') throw methodNotAllowed(method, path)
        sendJson(res, 200, await node.workloads.machineDefinition(id))
        return
      }
      if (workloadMatch[5] === '/trace/export') {
        if (method !== 'GET') throw methodNotAllowed(method, path)
        const { records, sources } = await node.workloads.exportTrace(id)
        res.writeHead(200, { 'content-type': 'application/x-ndjson', 'x-beemesh-trace-sources': String(sources) })
        res.end(records.map(r => JSON.stringify(r) + '\n').join(''))
        return
      }
      if (workloadMatch[5] === '/trace') {
        if (method !== 'GET') throw methodNotAllowed(method, path)
        const state = await node.workloads.machineState(id)
        if (url.searchParams.get('follow') !== 'true') { sendJson(res, 200, state.recent); return }
        this.streamTrace(id, state.recent, req, res)
        return
      }
      if (workloadMatch[5] === '/logs') {
        if (method !== 'GET') throw methodNotAllowed(method, path)
        const tail = url.searchParams.get('tail')
        const since = url.searchParams.get('since')
        sendJson(res, 200, await node.workloads.logs(id, { tail: tail != null ? positiveInt(tail, 'tail') : undefined, since: since != null ? Number(since) : undefined }))
        return
      }
      if (method === 'GET') {
        sendJson(res, 200, await node.workloads.describe(id))
        return
      }
      if (method === 'DELETE') {
        await node.workloads.delete(id)
        sendJson(res, 200, { deleted: id })
        return
      }
      throw methodNotAllowed(method, path)
    }
    if (path.startsWith('/v1/workloads/')) throw new HttpError(400, `workload path must be /v1/workloads/<namespace>/<name> with DNS-1123 names, got ${path}`, 'BadRequest')

    throw new HttpError(404, `no such endpoint: ${method} ${path}`, 'NotFound')
  }

  /** SSE of a machine's transitions: the recent ones, then each as its owner makes it durable. */
  private streamTrace (id: string, recent: TransitionRecord[], req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    let lastSeq = 0
    const emit = (t: TransitionRecord): void => {
      if (t.seq <= lastSeq) return
      lastSeq = t.seq
      res.write(`event: transition\ndata: ${JSON.stringify(t)}\n\n`)
    }
    for (const t of recent) emit(t)
    this.streams.add(res)
    const workloads = this.init.node.workloads
    const stopLocal = workloads.onTransition((wid, t) => { if (wid === id) emit(t) })
    const stopRemote = this.init.node.watchTopic(traceTopic(id), msg => {
      const { data } = decodeEnvelope(msg)
      if (data != null && typeof data === 'object' && typeof (data as TransitionRecord).seq === 'number') emit(data as TransitionRecord)
    })
    // Gossip reaches a new subscriber only once its subscription has spread, and
    // drops nothing but may lag: once a second the owner's recent transitions fill any gap.
    const catchUp = setInterval(() => {
      workloads.machineState(id).then(s => { for (const t of s.recent) emit(t) }, () => {})
    }, 1_000)
    catchUp.unref()
    const end = (): void => { clearInterval(catchUp); stopLocal(); stopRemote(); this.streams.delete(res) }
    req.on('close', end)
    res.on('close', end)
  }

  private streamTopic (topic: string, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    res.write(`event: subscribed\ndata: ${JSON.stringify({ topic })}\n\n`)
    this.streams.add(res)
    const stop = this.init.node.watchTopic(topic, msg => {
      const { id, data } = decodeEnvelope(msg)
      res.write(`event: message\ndata: ${JSON.stringify({ topic: msg.topic, from: msg.from, id, data })}\n\n`)
    })
    const end = (): void => { stop(); this.streams.delete(res) }
    req.on('close', end)
    res.on('close', end)
  }
}

function hostPort (address: string | undefined, port: number | undefined): string {
  return `${address?.includes(':') === true ? `[${address}]` : address ?? ''}:${port ?? ''}`
}

/** A duplex over a socket that first yields what was already read from it (unshifted). */
class ReplayingStream extends Duplex {
  constructor (private readonly socket: Socket) {
    super()
    socket.on('data', (chunk: Buffer) => { if (!this.push(chunk)) socket.pause() })
    socket.once('end', () => { this.push(null) })
    socket.once('close', () => { this.destroy() })
    socket.on('error', err => { this.destroy(err) })
    // The TLS socket above reports failures; a broken peer must never become an unhandled 'error'.
    this.on('error', () => {})
  }

  override _read (): void { this.socket.resume() }
  override _write (chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void { this.socket.write(chunk, done) }
  override _final (done: (err?: Error | null) => void): void { this.socket.end(done) }
  override _destroy (err: Error | null, done: (err?: Error | null) => void): void { this.socket.destroy(); done(err) }
}

function parse<T> (schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new HttpError(400, `invalid request body: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`, 'BadRequest')
  }
  return result.data
}

function methodNotAllowed (method: string, path: string): HttpError {
  return new HttpError(405, `method ${method} not allowed on ${path}`, 'MethodNotAllowed')
}

function positiveInt (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new HttpError(400, `query parameter ${name} must be a positive integer, got "${value}"`, 'BadRequest')
  return n
}

function toHttpError (err: unknown): HttpError {
  if (err instanceof HttpError) return err
  if (err instanceof CallError) return new HttpError(callErrorStatus(err.code), err.message, err.code)
  if (err instanceof TrustError) return new HttpError(403, err.message, 'Forbidden')
  if (err instanceof PolicyError) return new HttpError(400, err.message, 'BadRequest')
  if (err instanceof WorkloadNotFoundError) return new HttpError(404, err.message, 'NotFound')
  if (err instanceof EventNotHandledError) return new HttpError(422, err.message, 'NotHandled')
  if (err instanceof InvalidEventError) return new HttpError(400, err.message, 'BadRequest')
  if (err instanceof WorkloadCompletedError) return new HttpError(409, err.message, 'Completed')
  if (err instanceof MachineFailedError) return new HttpError(409, err.message, 'MachineFailed')
  if (err instanceof OwnerUnavailableError) return new HttpError(503, err.message, 'Unavailable')
  if (err instanceof NoSubscribersError) return new HttpError(404, err.message, 'NoSubscribers')
  if (err instanceof NoTraceError) return new HttpError(404, err.message, 'NoTrace')
  if (err instanceof InvalidWorkloadError) return new HttpError(422, err.message, 'Invalid')
  if (err instanceof UnschedulableError) return new HttpError(409, err.message, 'Unschedulable')
  if (err instanceof ArtifactError) return new HttpError(422, err.message, 'Invalid')
  if (err instanceof RecordNotFoundError) return new HttpError(404, err.message, 'NotFound')
  if (err instanceof InvalidRecordError) return new HttpError(400, err.message, 'BadRequest')
  if (err instanceof NotStartedError) return new HttpError(503, err.message, 'ServiceUnavailable')
  if (err instanceof Error && err.name === 'TimeoutError') return new HttpError(504, `timed out: ${err.message}`, 'Timeout')
  return new HttpError(500, describeError(err), 'InternalError')
}
