// longer than 700 lines: both ends of a service tunnel (the caller's listeners and the callee's admission) and the byte splicing they share, read together
/**
 * The service proxy of one node (docs/services.md, "Containers: the service
 * proxy"): every container service gets a stable address in the node's
 * service block (`--service-cidr`), and a TCP connection to `<address>:<port>` is tunnelled over a
 * libp2p stream (TUNNEL_PROTOCOL) to the container port of a ready replica
 * on whichever node hosts it. No overlay network: a container reaches
 * `orders:8080` through its own host's proxy, by the `/etc/hosts` line the
 * node gave it at creation (`extraHosts`).
 *
 * - Caller's side: one listener per (service, port) on the service address,
 *   added on `lo` when the node runs as root. The connecting container is
 *   identified by its bridge address (the labels BeeMesh puts on containers);
 *   a process of the host itself speaks as the node. The policy decides
 *   `call` on the service, then a replica is picked (power of two choices on
 *   open tunnels, up to 3 tried), and the node opens a stream to its host
 *   with a header sealed as the node, on behalf of the calling workload.
 * - Callee's side: the sealed header is opened (signature, freshness, replay,
 *   membership), the policy decides again on what it proves, and only then
 *   is the local container port connected; a one-frame reply says so, and
 *   the raw bytes flow both ways, half-closes included.
 *
 * Several node processes on one host with the same block share its
 * addresses: only one can listen on an address and port, the others try
 * again every reconcile round, so the host stays served when that node goes
 * (any node's proxy can route any connection: all know all services).
 */
import { execFile } from 'node:child_process'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { AbortOptions, Stream, StreamCloseEvent, StreamHandler, StreamMessageEvent } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import * as z from 'zod'
import { describeError } from '../errors.js'
import type { Principal } from '../policy/engine.js'
import { principalOfSender, RefusedMessage, senderOf, type Sender, type Trust } from '../policy/trust.js'
import { replyDomain } from '../transport/rpc.js'
import type { Logger } from '../transport/logger.js'
import { cidrText, endpointKey, pickOfTwo, TUNNEL_PROTOCOL, type Endpoint, type ServiceDirectory, type ServiceSpec } from './directory.js'
import { decideCall } from './calls.js'
import { CALL_ERROR_CODES, CallError, type CallErrorCode } from './errors.js'

/** How often listeners and addresses are brought in line with the services the node knows. */
export const TUNNEL_RECONCILE_MS = 2_000
/** Replicas tried for one connection. */
const ATTEMPTS = 3
/** Tunnels a node serves (and opens) per connection to a peer. */
const MAX_STREAMS = 1024
/** A sealed header: a small JSON body plus the envelope's signature and the node's credential. */
const MAX_FRAME = 64 * 1024
/** The header must arrive within this time of the stream opening. */
const HEADER_TIMEOUT_MS = 10_000
/** Dial, header and reply of one attempt. */
const OPEN_TIMEOUT_MS = 5_000
/** The callee's TCP connection to the container port. */
const CONNECT_TIMEOUT_MS = 5_000
/** Identifying the calling container from its address (an engine lookup). */
const IDENTIFY_TIMEOUT_MS = 5_000
const KEEPALIVE_MS = 30_000
/** What `ip` says when the address or route is there already (another node process on this host added it). */
const ALREADY = /File exists|already assigned/i

const TunnelHeader = z.object({
  service: z.string().max(200),
  workload: z.string().max(200),
  replica: z.number().int().min(0),
  targetPort: z.number().int().min(1).max(65_535),
  /** A node tunnelling for a workload's container: `workload:<namespace>/<name>`. */
  onBehalfOf: z.string().max(300).optional(),
  /** That workload's labels, as its node vouches for them (policy conditions see the same principal at both ends). */
  labels: z.record(z.string().max(253), z.string().max(253)).optional()
})
type TunnelHeader = z.infer<typeof TunnelHeader>

const TunnelReply = z.union([
  z.object({ ok: z.literal(true) }),
  z.object({ ok: z.literal(false), code: z.enum(CALL_ERROR_CODES as [CallErrorCode, ...CallErrorCode[]]), message: z.string().max(4096) })
])
type TunnelReply = z.infer<typeof TunnelReply>

/** What the tunnel counts (NodeMetrics.services). */
export interface TunnelMetrics {
  tunnel: (service: string, side: 'caller' | 'callee', outcome: string) => void
  denied: (service: string, side: 'caller' | 'callee') => void
}

/** The node's containers, as the tunnel needs them (ContainerHost, through the workload runtime). */
export interface TunnelContainers {
  /** Where a container port of a running local replica is reached from this host. */
  target: (workloadId: string, replica: number, containerPort: number) => { host: string, port: number } | undefined
  /** The workload principal of the BeeMesh container at a bridge address of this host's engine. */
  principalOf: (ip: string) => Promise<Principal | undefined>
}

/** What the tunnel needs of the transport (MeshNode is one): serve the tunnel protocol, dial peers on it. */
export interface TunnelMesh {
  readonly peerId: string
  handle: (protocol: string, handler: StreamHandler, options?: { maxInboundStreams?: number, maxOutboundStreams?: number }) => Promise<void>
  dialProtocol: (peer: string, protocol: string, options?: AbortOptions & { negotiateFully?: boolean }) => Promise<Stream>
}

export interface ServiceTunnelInit {
  mesh: TunnelMesh
  trust: Trust
  log: Logger
  metrics?: TunnelMetrics
  directory: ServiceDirectory
  containers: TunnelContainers
  /**
   * Add each service address to `lo` (and route the rest of the service block
   * nowhere) with `ip`. Default: when the process runs as root. Without it,
   * the proxy listens only on service addresses some other process added.
   */
  manageAddresses?: boolean
  reconcileMs?: number
}

export interface TunnelStats {
  /** `address:port` of each service this process's proxy listens for. */
  listening: string[]
  /** Tunnels open now: accepted by this node's proxy (caller), delivered to a container here (callee). */
  open: { caller: number, callee: number }
  /** Tunnels established since start. */
  opened: { caller: number, callee: number }
  /** Connections and streams turned away since start (policy, unknown caller, no replica, failures). */
  refused: { caller: number, callee: number }
}

/** A service port the proxy serves on this host. */
interface Wanted {
  key: string
  ip: string
  port: number
  serviceId: string
}

interface Listener extends Wanted {
  server: Server
}

/** An attempt turned away by the callee's node: not worth another replica when the policy said no. */
class Refusal extends CallError {}

const enc = new TextEncoder()

export class ServiceTunnel {
  private readonly listeners = new Map<string, Listener>()
  /** Keys whose address:port another process holds (EADDRINUSE): tried again each round. */
  private readonly waiting = new Set<string>()
  /** Service addresses this process added to `lo` (removed again when no one needs them). */
  private readonly added = new Set<string>()
  /** Open tunnels from this node, per endpoint: the power of two choices picks the less loaded. */
  private readonly load = new Map<string, number>()
  /** Everything to tear down on stop: accepted sockets, target sockets, streams. */
  private readonly live = new Set<{ destroy: () => void }>()
  private readonly counts = { open: { caller: 0, callee: 0 }, opened: { caller: 0, callee: 0 }, refused: { caller: 0, callee: 0 } }
  private manage: boolean
  private routed = false
  private warned = false
  private local = new Set<string>()
  private timer?: NodeJS.Timeout
  private reconciling?: Promise<void>
  private stopped = false

  constructor (private readonly init: ServiceTunnelInit) {
    this.manage = init.manageAddresses ?? process.getuid?.() === 0
  }

  async start (): Promise<void> {
    await this.init.mesh.handle(TUNNEL_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })
    if (!this.manage && this.init.manageAddresses == null) this.warnOnce('the service proxy cannot manage service addresses (not root): it listens only on those another process added to lo')
    this.timer = setInterval(() => { void this.reconcile() }, this.init.reconcileMs ?? TUNNEL_RECONCILE_MS)
    this.timer.unref()
    void this.reconcile()
  }

  /** Closes the listeners and every open tunnel; removes the addresses this process added that no other process listens on. */
  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer != null) clearInterval(this.timer)
    await this.reconciling?.catch(() => {})
    const closing = [...this.listeners.values()]
    this.listeners.clear()
    this.waiting.clear()
    const closed = Promise.all(closing.map(async l => { await new Promise(resolve => { l.server.close(resolve) }) }))
    for (const t of [...this.live]) t.destroy()
    this.live.clear()
    await withTimeout(closed, 2_000).catch(() => {})
    if (!this.manage) return
    const ports = new Map<string, Set<number>>()
    for (const w of [...closing, ...this.wanted().values()]) ports.set(w.ip, (ports.get(w.ip) ?? new Set()).add(w.port))
    for (const ip of [...this.added]) {
      // Another node process on this host may serve one of its ports (or have taken one over meanwhile): then the address stays.
      const taken = await Promise.all([...(ports.get(ip) ?? [])].map(async port => await portTaken(ip, port)))
      if (taken.some(Boolean)) continue
      await this.ip(['addr', 'del', `${ip}/32`, 'dev', 'lo']).catch(() => {})
      this.added.delete(ip)
    }
  }

  stats (): TunnelStats {
    return {
      listening: [...this.listeners.values()].map(l => `${l.ip}:${l.port}`).sort(),
      open: { ...this.counts.open },
      opened: { ...this.counts.opened },
      refused: { ...this.counts.refused }
    }
  }

  /** The service's stable address on every node. */
  address (serviceId: string): string | undefined {
    return this.init.directory.addresses().get(serviceId)
  }

  /**
   * `/etc/hosts` lines for a new container of `namespace` (ContainerHost's
   * `extraHosts`): each container service as `name.<ns>`, `name.<ns>.svc`,
   * `name.<ns>.svc.cluster.local`, and by its bare name in its own namespace.
   */
  extraHosts (namespace: string): string[] {
    const addresses = this.init.directory.addresses()
    const out: string[] = []
    for (const s of this.containerServices()) {
      const ip = addresses.get(s.id)
      if (ip == null) continue
      if (s.namespace === namespace) out.push(`${s.name}:${ip}`)
      for (const suffix of ['', '.svc', '.svc.cluster.local']) out.push(`${s.name}.${s.namespace}${suffix}:${ip}`)
    }
    return out
  }

  // ---------------------------------------------------------------- listeners and addresses

  private containerServices (): ServiceSpec[] {
    return this.init.directory.services().filter(s => s.ports.length > 0)
  }

  private wanted (): Map<string, Wanted> {
    const addresses = this.init.directory.addresses()
    const out = new Map<string, Wanted>()
    for (const s of this.containerServices()) {
      const ip = addresses.get(s.id)
      if (ip == null) continue
      for (const p of s.ports) out.set(`${ip}:${p.port}`, { key: `${ip}:${p.port}`, ip, port: p.port, serviceId: s.id })
    }
    return out
  }

  /** One round at a time: addresses, then listeners for what is wanted, closing what is not. */
  private async reconcile (): Promise<void> {
    if (this.reconciling != null || this.stopped) return
    this.reconciling = (async () => {
      const wanted = this.wanted()
      const ips = new Set([...wanted.values()].map(w => w.ip))
      if (this.manage) await this.manageAddresses(ips)
      this.local = hostAddresses()
      for (const [key, l] of this.listeners) {
        const w = wanted.get(key)
        if (w != null && w.serviceId === l.serviceId) continue
        this.listeners.delete(key)
        l.server.close()
      }
      for (const key of [...this.waiting]) if (!wanted.has(key)) this.waiting.delete(key)
      for (const w of wanted.values()) {
        if (this.stopped) return
        const current = this.listeners.get(w.key)
        if (current != null || !this.local.has(w.ip)) continue
        await this.listen(w)
      }
    })()
    try {
      await this.reconciling
    } catch (err) {
      this.init.log.warn({ err: describeError(err) }, 'service proxy reconcile failed')
    } finally {
      this.reconciling = undefined
    }
  }

  private async listen (w: Wanted): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, socket => { this.accept(w, socket) })
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host: w.ip, port: w.port }, () => { server.off('error', reject); resolve() })
      })
    } catch (err) {
      server.close()
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE') {
        // Another node process on this host serves it: try again next round (it may go).
        if (!this.waiting.has(w.key)) this.init.log.debug({ service: w.serviceId, address: w.key }, 'service address served by another process on this host')
        this.waiting.add(w.key)
      } else {
        this.init.log.warn({ service: w.serviceId, address: w.key, err: describeError(err) }, 'service proxy cannot listen')
      }
      return
    }
    if (this.stopped) { server.close(); return }
    server.on('error', err => { this.init.log.warn({ service: w.serviceId, address: w.key, err: describeError(err) }, 'service proxy listener failed') })
    this.waiting.delete(w.key)
    this.listeners.set(w.key, { ...w, server })
    this.init.log.debug({ service: w.serviceId, address: w.key }, 'service proxy listening')
  }

  /** Adds the wanted service addresses to `lo` and removes those this process added that are no longer wanted. */
  private async manageAddresses (ips: Set<string>): Promise<void> {
    try {
      if (!this.routed) {
        // Service addresses nobody serves fail at once, instead of leaking to the default gateway.
        await this.ip(['route', 'add', 'unreachable', cidrText(this.init.directory.cidr)]).catch(err => { if (!ALREADY.test(describeError(err))) throw err })
        this.routed = true
      }
      const present = hostAddresses()
      for (const ip of ips) {
        if (present.has(ip)) continue
        try {
          await this.ip(['addr', 'add', `${ip}/32`, 'dev', 'lo'])
          this.added.add(ip)
        } catch (err) {
          // Another node process on this host added it first.
          if (!ALREADY.test(describeError(err))) throw err
        }
      }
      for (const ip of [...this.added]) {
        if (ips.has(ip)) continue
        await this.ip(['addr', 'del', `${ip}/32`, 'dev', 'lo']).catch(() => {})
        this.added.delete(ip)
      }
    } catch (err) {
      this.manage = false
      this.warnOnce(`the service proxy cannot manage service addresses (${describeError(err)}): it listens only on those another process added to lo`)
    }
  }

  private async ip (args: string[]): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      execFile('ip', args, { timeout: 5_000 }, (err, _stdout, stderr) => {
        if (err != null) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() !== '' ? stderr.trim() : err.message}`))
        else resolve()
      })
    })
  }

  private warnOnce (message: string): void {
    if (this.warned) return
    this.warned = true
    this.init.log.warn({}, message)
  }

  // ---------------------------------------------------------------- caller's side

  private accept (w: Wanted, socket: Socket): void {
    socket.on('error', () => {})
    const handle = { destroy: () => { socket.destroy() } }
    this.live.add(handle)
    socket.once('close', () => { this.live.delete(handle) })
    if (this.stopped) { socket.destroy(); return }
    void this.route(w, socket).catch(err => {
      this.init.log.debug({ service: w.serviceId, err: describeError(err) }, 'tunnel failed')
      reset(socket)
    })
  }

  /** The caller's node: who is calling, may it, and which replica; then the tunnel. */
  private async route (w: Wanted, socket: Socket): Promise<void> {
    const { log, directory } = this.init
    const refuse = (outcome: string): void => {
      this.counts.refused.caller++
      this.init.metrics?.tunnel(w.serviceId, 'caller', outcome)
      reset(socket)
    }
    const service = directory.services().find(s => s.id === w.serviceId)
    if (service == null) { refuse('unknown-service'); return }
    const source = plainAddress(socket.remoteAddress)
    const principal = await this.callerOf(source)
    if (principal == null) {
      log.warn({ service: service.id, source }, 'tunnel refused: the connecting address is no BeeMesh container of this host')
      refuse('unknown-caller')
      return
    }
    if (!decideCall(this.policyContext(), principal, service, 'tunnel', 'caller', { source }).allowed) {
      refuse('denied')
      return
    }
    let endpoints: Endpoint[]
    try {
      endpoints = directory.endpoints(service)
    } catch (err) {
      log.debug({ service: service.id, err: describeError(err) }, 'tunnel: no ready replica')
      refuse('no-replica')
      return
    }
    const tried = new Set<string>()
    let last: unknown
    for (let attempt = 0; attempt < ATTEMPTS && !socket.destroyed; attempt++) {
      const endpoint = this.pick(endpoints, tried)
      if (endpoint == null) break
      const key = endpointKey(endpoint)
      tried.add(key)
      const targetPort = endpoint.ports?.find(p => p.port === w.port)?.targetPort
      if (targetPort == null) continue
      const header: TunnelHeader = {
        service: service.id,
        workload: endpoint.workloadId,
        replica: endpoint.replica,
        targetPort,
        ...(principal.kind === 'workload' ? { onBehalfOf: senderOf(principal), labels: { ...principal.labels } } : {})
      }
      try {
        if (endpoint.peerId === this.init.mesh.peerId) {
          const target = await this.openLocal(header, principal)
          if (socket.destroyed) { target.destroy(); return }
          this.established(service.id, 'caller', key)
          this.established(service.id, 'callee')
          spliceSockets(socket, target, () => { this.closed('caller', key); this.closed('callee') })
        } else {
          const stream = await this.openRemote(endpoint.peerId, header)
          if (socket.destroyed) { stream.abort(new Error('the client went away')); return }
          this.established(service.id, 'caller', key)
          spliceStream(socket, stream, () => { this.closed('caller', key) })
        }
        return
      } catch (err) {
        last = err
        if (err instanceof Refusal && err.code === 'DENIED') {
          log.warn({ service: service.id, caller: senderOf(principal), peer: endpoint.peerId, err: err.message }, 'tunnel denied at the callee\'s node')
          refuse('denied')
          return
        }
        log.debug({ service: service.id, peer: endpoint.peerId, replica: endpoint.replica, attempt: attempt + 1, err: describeError(err) }, 'tunnel attempt failed; trying another replica')
      }
    }
    log.debug({ service: service.id, tried: tried.size, err: last != null ? describeError(last) : undefined }, 'tunnel: no replica could be reached')
    refuse('unavailable')
  }

  /** The principal behind a connection's source address: the node for the host's own processes, a container's workload otherwise. */
  private async callerOf (source: string): Promise<Principal | undefined> {
    if (source.startsWith('127.') || source === '::1' || this.local.has(source)) return this.init.trust.nodePrincipal(this.init.mesh.peerId)
    try {
      return await withTimeout(this.init.containers.principalOf(source), IDENTIFY_TIMEOUT_MS)
    } catch (err) {
      this.init.log.debug({ source, err: describeError(err) }, 'could not identify the calling container')
      return undefined
    }
  }

  /** Power of two choices over the endpoints not yet tried: the one with fewer open tunnels from this node. */
  private pick (endpoints: Endpoint[], tried: Set<string>): Endpoint | undefined {
    return pickOfTwo(endpoints.filter(e => !tried.has(endpointKey(e))), key => this.load.get(key) ?? 0)
  }

  private policyContext (): Parameters<typeof decideCall>[0] {
    return { trust: this.init.trust, log: this.init.log, ...(this.init.metrics != null ? { metrics: this.init.metrics } : {}) }
  }

  private async openRemote (peerId: string, header: TunnelHeader): Promise<Stream> {
    const signal = AbortSignal.timeout(OPEN_TIMEOUT_MS)
    const stream = await this.init.mesh.dialProtocol(peerId, TUNNEL_PROTOCOL, { signal, negotiateFully: false })
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
      const sealed = await this.init.trust.sealValue(TUNNEL_PROTOCOL, JSON.stringify(header))
      await lp.write(enc.encode(JSON.stringify(sealed)), { signal })
      // The reply is sealed by the callee's node and names this request (a refusal made before it was opened names none).
      let value: { re?: unknown, ok?: unknown }
      try {
        value = JSON.parse((await this.init.trust.open(replyDomain(TUNNEL_PROTOCOL), (await lp.read({ signal })).subarray(), { from: peerId })).body)
      } catch (err) {
        if (err instanceof RefusedMessage) throw new CallError('UNAVAILABLE', header.service, `tunnel reply from ${peerId} refused: ${err.message}`)
        throw err
      }
      const reply = TunnelReply.safeParse(value)
      if (!reply.success || (value.re !== sealed.e.nonce && !(value.ok === false && value.re == null))) throw new CallError('UNAVAILABLE', header.service, `malformed tunnel reply from ${peerId}`)
      if (!reply.data.ok) throw new Refusal(reply.data.code, header.service, reply.data.message)
      // From here on the stream carries the connection's bytes (any the callee sent already stay queued).
      return lp.unwrap()
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      throw err
    }
  }

  /** A replica on this node: the callee's check here, with the same principal, then the container port. */
  private async openLocal (header: TunnelHeader, principal: Principal): Promise<Socket> {
    const verdict = this.admit(header, principal)
    if (!verdict.ok) {
      this.counts.refused.callee++
      this.init.metrics?.tunnel(header.service, 'callee', verdict.outcome)
      throw new Refusal(verdict.code, header.service, verdict.message)
    }
    try {
      return await connectTcp(verdict.target, CONNECT_TIMEOUT_MS)
    } catch (err) {
      this.counts.refused.callee++
      this.init.metrics?.tunnel(header.service, 'callee', 'unavailable')
      throw err
    }
  }

  /** A tunnel is up: counted, and on the caller's side added to its endpoint's load. */
  private established (service: string, side: 'caller' | 'callee', endpoint?: string): void {
    if (endpoint != null) this.load.set(endpoint, (this.load.get(endpoint) ?? 0) + 1)
    this.counts.open[side]++
    this.counts.opened[side]++
    this.init.metrics?.tunnel(service, side, 'ok')
  }

  private closed (side: 'caller' | 'callee', endpoint?: string): void {
    if (endpoint != null) {
      const n = (this.load.get(endpoint) ?? 1) - 1
      if (n <= 0) this.load.delete(endpoint)
      else this.load.set(endpoint, n)
    }
    this.counts.open[side]--
  }

  // ---------------------------------------------------------------- callee's side

  /** TUNNEL_PROTOCOL: open the sealed header, decide, connect the container port, reply, then carry bytes. */
  private async serve (stream: Stream, from: string): Promise<void> {
    const { trust, log } = this.init
    const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
    const signal = AbortSignal.timeout(HEADER_TIMEOUT_MS)
    let service = 'unknown'
    let re: string | undefined
    const reply = async (value: TunnelReply): Promise<Uint8Array> => await trust.seal(replyDomain(TUNNEL_PROTOCOL), JSON.stringify(re != null ? { ...value, re } : value))
    const refuse = async (code: CallErrorCode, message: string, outcome: string): Promise<void> => {
      this.counts.refused.callee++
      this.init.metrics?.tunnel(service, 'callee', outcome)
      await lp.write(await reply({ ok: false, code, message }), { signal })
      await stream.close({ signal })
    }
    try {
      if (this.stopped) { await refuse('UNAVAILABLE', `${this.init.mesh.peerId} is stopping`, 'unavailable'); return }
      const frame = (await lp.read({ signal })).subarray()
      let opened: { body: string, sender: Sender, nonce: string }
      try {
        opened = await trust.open(TUNNEL_PROTOCOL, frame, { from })
      } catch (err) {
        log.warn({ from, err: describeError(err) }, 'tunnel refused: its header does not verify')
        await refuse('DENIED', `refused by ${this.init.mesh.peerId}: ${describeError(err)}`, 'refused')
        return
      }
      re = opened.nonce
      let header: TunnelHeader
      try {
        header = TunnelHeader.parse(JSON.parse(opened.body))
      } catch {
        await refuse('BAD_REQUEST', 'malformed tunnel header', 'bad-request')
        return
      }
      service = header.service
      const principal = principalFor(opened.sender, header)
      if (principal == null) {
        await refuse('BAD_REQUEST', `${opened.sender.signer} may not tunnel on behalf of ${header.onBehalfOf ?? '(nobody)'}: only a node may, and only for a workload`, 'bad-request')
        return
      }
      const verdict = this.admit(header, principal)
      if (!verdict.ok) { await refuse(verdict.code, verdict.message, verdict.outcome); return }
      let socket: Socket
      try {
        socket = await connectTcp(verdict.target, CONNECT_TIMEOUT_MS)
      } catch (err) {
        await refuse('UNAVAILABLE', `replica ${header.replica} of ${header.workload} does not accept connections on port ${header.targetPort}: ${describeError(err)}`, 'unavailable')
        return
      }
      try {
        await lp.write(await reply({ ok: true }), { signal })
      } catch (err) {
        socket.destroy()
        throw err
      }
      this.established(service, 'callee')
      const handle = { destroy: () => { reset(socket) } }
      this.live.add(handle)
      spliceStream(socket, lp.unwrap(), () => { this.live.delete(handle); this.closed('callee') })
    } catch (err) {
      log.debug({ from, service, err: describeError(err) }, 'tunnel stream failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /**
   * The callee's decision on one tunnel: the policy first (so a refused
   * caller learns nothing of the replicas), then the named replica must run
   * here and the port must be one its service maps.
   */
  private admit (header: TunnelHeader, principal: Principal): { ok: true, target: { host: string, port: number } } | { ok: false, code: CallErrorCode, message: string, outcome: string } {
    const { trust, directory } = this.init
    const self = this.init.mesh.peerId
    const service = directory.services().find(s => s.id === header.service)
    if (service == null) return { ok: false, code: 'UNKNOWN_SERVICE', message: `${self} knows no service ${header.service}`, outcome: 'unknown-service' }
    const decision = decideCall(this.policyContext(), principal, service, 'tunnel', 'callee')
    if (!decision.allowed) {
      return { ok: false, code: 'DENIED', message: `forbidden by ${self} under policy ${trust.policy.name} v${trust.policy.version}: ${decision.reason}`, outcome: 'denied' }
    }
    const endpoint = directory.replicas(service).find(r => r.peerId === self && r.workloadId === header.workload && r.replica === header.replica)
    if (endpoint == null) return { ok: false, code: 'UNAVAILABLE', message: `${self} runs no replica ${header.replica} of ${header.workload} for ${service.id}`, outcome: 'unavailable' }
    if (endpoint.ports?.some(p => p.targetPort === header.targetPort) !== true) return { ok: false, code: 'BAD_REQUEST', message: `port ${header.targetPort} is not a port of ${service.id}`, outcome: 'bad-request' }
    const target = this.init.containers.target(header.workload, header.replica, header.targetPort)
    if (target == null) return { ok: false, code: 'UNAVAILABLE', message: `replica ${header.replica} of ${header.workload} is not running on ${self}`, outcome: 'unavailable' }
    return { ok: true, target }
  }
}

/**
 * Who a tunnel is for, as the callee sees it: the signer, or, when the
 * signer is a node, the workload it names (its own container's; a node may
 * not speak for deployers or other nodes here).
 */
function principalFor (sender: Sender, header: TunnelHeader): Principal | undefined {
  if (header.onBehalfOf == null) return sender.principal
  if (sender.principal.kind !== 'node' || !header.onBehalfOf.startsWith('workload:')) return undefined
  const p = principalOfSender(header.onBehalfOf)
  if (p.kind !== 'workload' || p.namespace === '' || p.name === '') return undefined
  return { ...p, labels: header.labels ?? {} }
}

/** `::ffff:10.88.0.5` → `10.88.0.5` */
function plainAddress (address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '')
}

/** Every address of this host's interfaces (a connection from one of them comes from a process of the host). */
function hostAddresses (): Set<string> {
  const out = new Set<string>()
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address)
  return out
}

/** Whether some other process listens on ip:port (a bind fails with EADDRINUSE). */
async function portTaken (ip: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const probe = createServer()
    probe.once('error', err => { resolve((err as NodeJS.ErrnoException).code === 'EADDRINUSE') })
    probe.listen({ host: ip, port }, () => { probe.close(() => { resolve(false) }) })
  })
}

async function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no answer within ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

function connectTcp (target: { host: string, port: number }, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: target.host, port: target.port, allowHalfOpen: true })
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`connect to ${target.host}:${target.port} timed out after ${timeoutMs} ms`)) }, timeoutMs)
    socket.once('error', err => { clearTimeout(timer); socket.destroy(); reject(err) })
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      socket.pause()
      resolve(socket)
    })
  })
}

/** Closes a socket with a TCP reset: the client sees the connection refused at once. */
function reset (socket: Socket): void {
  if (socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

/**
 * Carries bytes between a TCP socket and a libp2p stream until both are
 * closed, with back-pressure both ways (a full socket pauses the stream, a
 * full stream pauses the socket) and half-closes passed on (a FIN becomes the
 * stream's close of its writable end, and the other way). An abort or error
 * on either side resets the other. `done` runs once, when both are closed.
 */
export function spliceStream (socket: Socket, stream: Stream, done: () => void): void {
  socket.setKeepAlive(true, KEEPALIVE_MS)
  socket.setNoDelay(true)
  let socketClosed = false
  let streamClosed = false
  let finished = false
  let gotFin = false
  let sentFin = false
  let paused = false
  const finish = (): void => {
    if (finished || !socketClosed || !streamClosed) return
    finished = true
    stream.removeEventListener('message', onMessage)
    stream.removeEventListener('drain', onStreamDrain)
    stream.removeEventListener('end', onEnd)
    stream.removeEventListener('close', onStreamClose)
    done()
  }
  const onMessage = (evt: StreamMessageEvent): void => {
    const data = evt.data
    let ok = true
    for (const chunk of data instanceof Uint8Array ? [data] : data) ok = socket.write(chunk) && ok
    if (!ok && !paused) {
      paused = true
      try { stream.pause() } catch {}
    }
  }
  const onStreamDrain = (): void => { socket.resume() }
  const onEnd = (): void => {
    if (sentFin || stream.status === 'aborted' || stream.status === 'reset') return
    sentFin = true
    socket.end()
    // Nothing can carry the client's further bytes once the stream is gone: close after the last write.
    if (streamClosed && !gotFin) socket.destroySoon()
  }
  const onStreamClose = (evt: StreamCloseEvent): void => {
    streamClosed = true
    if (evt.error != null) reset(socket)
    // Bytes still queued behind a full socket: 'end' follows once they are written.
    else if (!sentFin && stream.readBufferLength > 0) socket.resume()
    else {
      onEnd()
      if (!gotFin) socket.destroySoon()
    }
    finish()
  }
  socket.on('drain', () => {
    if (!paused) return
    paused = false
    try { stream.resume() } catch {}
  })
  socket.on('data', (chunk: Buffer) => {
    try {
      if (!stream.send(chunk)) socket.pause()
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      reset(socket)
    }
  })
  socket.on('end', () => {
    gotFin = true
    stream.close().catch(err => { stream.abort(err instanceof Error ? err : new Error(String(err))) })
  })
  socket.on('error', () => {})
  socket.once('close', () => {
    socketClosed = true
    if (!(gotFin && sentFin)) stream.abort(new Error('the TCP connection closed abruptly'))
    finish()
  })
  stream.addEventListener('message', onMessage)
  stream.addEventListener('drain', onStreamDrain)
  stream.addEventListener('end', onEnd)
  stream.addEventListener('close', onStreamClose)
  if (stream.status !== 'open') {
    streamClosed = true
    reset(socket)
  } else if (stream.readableEnded) {
    onEnd()
  }
  socket.resume()
}

/** Carries bytes between two TCP sockets (a replica on this node), half-closes included; `done` once both are closed. */
export function spliceSockets (a: Socket, b: Socket, done: () => void): void {
  let open = 2
  const wire = (from: Socket, to: Socket): void => {
    from.setKeepAlive(true, KEEPALIVE_MS)
    from.setNoDelay(true)
    let ended = false
    from.on('end', () => { ended = true })
    from.on('error', () => {})
    from.once('close', () => {
      if (!ended) reset(to)
      if (--open === 0) done()
    })
    from.pipe(to)
  }
  wire(a, b)
  wire(b, a)
  a.resume()
  b.resume()
}
