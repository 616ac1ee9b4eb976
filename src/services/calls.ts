/**
 * Calls between actors (docs/services.md): `ctx.call(service, request)` on
 * one node, `/beemesh/call/1.0.0` to a ready replica on another.
 *
 * - The replica is picked by the power of two choices: two at random, the one
 *   with fewer calls in flight from this node.
 * - The policy decides at both ends: the caller's node before it sends, the
 *   callee's node on what the signed request proves (the calling workload's
 *   own key, vouched for by its host; or a node calling for a deployer).
 * - Retries go to another replica: always when the request surely did not
 *   reach one (no stream, or the callee turned it away unrun), and after a
 *   failure mid-call only for idempotent calls.
 * - A replica that failed a call is left out for a few seconds.
 */
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import * as z from 'zod'
import { describeError } from '../errors.js'
import type { MeshNode } from '../transport/mesh-node.js'
import type { Logger } from '../transport/logger.js'
import { replyDomain } from '../transport/rpc.js'
import type { Decision, Principal } from '../policy/engine.js'
import { senderOf, type Trust, type WorkloadIdentity } from '../policy/trust.js'
import { relayedPrincipal } from '../policy/relay.js'
import { currentBearer } from '../policy/request-context.js'
import type { CallOptions, CallRequest } from '../workloads/types.js'
import { CALL_PROTOCOL, endpointKey, pickOfTwo, serviceResource, type Endpoint, type ServiceDirectory, type ServiceSpec } from './directory.js'
import { CALL_ERROR_CODES, CallError, type CallErrorCode } from './errors.js'

/** Largest request (its JSON) a call may carry, and largest reply. */
export const MAX_CALL_BYTES = 1024 * 1024
/** A sealed request's frame: the request, escaped once more inside the envelope, plus signatures and credentials. */
const MAX_REQUEST_FRAME = 2 * MAX_CALL_BYTES + 64 * 1024
const MAX_REPLY_FRAME = 2 * MAX_CALL_BYTES + 64 * 1024
export const DEFAULT_CALL_TIMEOUT_MS = 5_000
const MAX_CALL_TIMEOUT_MS = 600_000
const DEFAULT_RETRIES = 2
/** A replica that failed a call is not picked again for this long (unless nothing else is left). */
const EJECT_MS = 5_000
/** Concurrent calls a node serves per connection. */
const MAX_STREAMS = 512

const CallBody = z.object({
  service: z.string().max(200),
  workload: z.string().max(200),
  replica: z.number().int().min(0),
  data: z.unknown(),
  id: z.string().max(100),
  attempt: z.number().int().min(1).max(100),
  deadline: z.number(),
  /** A node calling for a principal that is not a workload (a deployer through the API). */
  onBehalfOf: z.string().max(300).optional(),
  /** With a `deployer:` onBehalfOf: the deployer's bearer token, the proof the callee checks (src/policy/relay.ts). */
  token: z.string().max(4096).optional()
})
type CallBody = z.infer<typeof CallBody>

const CallReply = z.union([
  z.object({ ok: z.literal(true), value: z.unknown() }),
  z.object({ ok: z.literal(false), code: z.enum(CALL_ERROR_CODES as [CallErrorCode, ...CallErrorCode[]]), message: z.string().max(4096), ran: z.boolean() })
])
type CallReply = z.infer<typeof CallReply>

/** Who is calling, as the caller's node knows it. */
export interface Caller {
  principal: Principal
  /** The calling replica's own key: the request is signed with it (absent: the node signs, for `onBehalfOf`). */
  identity?: WorkloadIdentity
  /** Service names without a namespace resolve in this one. */
  namespace: string
}

export interface CallMetrics {
  call: (service: string, side: 'caller' | 'callee', outcome: string, seconds: number) => void
  denied: (service: string, side: 'caller' | 'callee') => void
}

export interface CallRouterInit {
  mesh: MeshNode
  trust: Trust
  directory: ServiceDirectory
  log: Logger
  metrics?: CallMetrics
  /** Runs a call on one of this node's replicas; rejects with CallError (`ran: false` when it did not start). */
  serveLocal: (endpoint: Endpoint, request: CallRequest, deadline: number) => Promise<unknown>
}

/** A failure of one attempt, and whether the request may have run. */
class AttemptError extends Error {
  constructor (readonly code: CallErrorCode, message: string, readonly ran: boolean) {
    super(message)
  }
}

const enc = new TextEncoder()

export class CallRouter {
  private readonly inflight = new Map<string, number>()
  private readonly ejected = new Map<string, number>()
  private counter = 0
  private readonly prefix = Math.random().toString(36).slice(2, 8)

  constructor (private readonly init: CallRouterInit) {}

  async start (): Promise<void> {
    await this.init.mesh.handle(CALL_PROTOCOL, (stream, connection) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })
  }

  /** Calls a service; resolves with its reply or rejects with CallError. */
  async call (ref: string, data: unknown, options: CallOptions, caller: Caller): Promise<unknown> {
    const started = performance.now()
    const timeout = options.timeout ?? DEFAULT_CALL_TIMEOUT_MS
    let serviceId = ref
    try {
      if (!(Number.isFinite(timeout) && timeout > 0 && timeout <= MAX_CALL_TIMEOUT_MS)) throw new CallError('BAD_REQUEST', ref, `timeout must be from 1 to ${MAX_CALL_TIMEOUT_MS} ms, got ${String(options.timeout)}`)
      const service = this.init.directory.resolve(ref, caller.namespace)
      serviceId = service.id
      const value = await this.callService(service, data, { ...options, timeout }, caller)
      this.init.metrics?.call(service.id, 'caller', 'ok', (performance.now() - started) / 1000)
      return value
    } catch (err) {
      const e = err instanceof CallError ? err : new CallError('FAILED', serviceId, describeError(err), { cause: err })
      this.init.metrics?.call(serviceId, 'caller', e.code.toLowerCase(), (performance.now() - started) / 1000)
      throw e
    }
  }

  private async callService (service: ServiceSpec, data: unknown, options: CallOptions & { timeout: number }, caller: Caller): Promise<unknown> {
    const { trust, log } = this.init
    const decision = decideCall({ trust, log, ...(this.init.metrics != null ? { metrics: this.init.metrics } : {}) }, caller.principal, service, 'call', 'caller')
    if (!decision.allowed) throw new CallError('DENIED', service.id, `forbidden by policy ${trust.policy.name} v${trust.policy.version}: ${decision.reason}`)
    const size = JSON.stringify(data ?? null).length
    if (size > MAX_CALL_BYTES) throw new CallError('TOO_LARGE', service.id, `the request is ${size} bytes of JSON; the limit is ${MAX_CALL_BYTES}`)
    const deadline = Date.now() + options.timeout
    const retries = Math.max(0, Math.min(10, options.retries ?? DEFAULT_RETRIES))
    const id = `${this.prefix}-${(this.counter++).toString(36)}`
    const tried = new Set<string>()
    let last: AttemptError | undefined
    for (let attempt = 1; attempt <= 1 + retries; attempt++) {
      if (Date.now() >= deadline) break
      const endpoint = this.pick(this.init.directory.endpoints(service), tried)
      if (endpoint == null) break
      const key = endpointKey(endpoint)
      tried.add(key)
      this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1)
      try {
        const body: CallBody = { service: service.id, workload: endpoint.workloadId, replica: endpoint.replica, data: data ?? null, id, attempt, deadline, ...(caller.identity == null ? relayFor(caller.principal) : {}) }
        return endpoint.peerId === this.init.mesh.peerId
          ? await this.localAttempt(service, endpoint, body, caller)
          : await this.remoteAttempt(endpoint, body, caller.identity)
      } catch (err) {
        const e = err instanceof AttemptError ? err : new AttemptError('FAILED', describeError(err), true)
        last = e
        if (e.code === 'DENIED' || e.code === 'FAILED' || e.code === 'TOO_LARGE' || e.code === 'BAD_REQUEST' || e.code === 'UNKNOWN_SERVICE') throw new CallError(e.code, service.id, e.message)
        this.ejected.set(key, Date.now() + EJECT_MS)
        // Not run on the replica: safe to try another. Possibly run: only if the caller said so.
        if (e.ran && options.idempotent !== true) throw new CallError(e.code, service.id, `${e.message} (not retried: the call may have run, and it is not marked idempotent)`)
        log.debug({ service: service.id, peer: endpoint.peerId, replica: endpoint.replica, attempt, err: e.message }, 'call attempt failed; trying another replica')
      } finally {
        const n = (this.inflight.get(key) ?? 1) - 1
        if (n <= 0) this.inflight.delete(key)
        else this.inflight.set(key, n)
      }
    }
    if (Date.now() >= deadline) throw new CallError('TIMEOUT', service.id, `timed out: no reply within ${options.timeout} ms${last != null ? ` (last attempt: ${last.message})` : ''}`)
    throw new CallError(last?.code ?? 'UNAVAILABLE', service.id, `${tried.size} replica(s) tried, none answered${last != null ? `: ${last.message}` : ''}`)
  }

  /** Power of two choices on in-flight calls, over the endpoints not yet tried (and not ejected, while others remain). */
  private pick (endpoints: Endpoint[], tried: Set<string>): Endpoint | undefined {
    const now = Date.now()
    const pool = endpoints.filter(e => !tried.has(endpointKey(e)))
    const healthy = pool.filter(e => (this.ejected.get(endpointKey(e)) ?? 0) <= now)
    return pickOfTwo(healthy.length > 0 ? healthy : pool, key => this.inflight.get(key) ?? 0)
  }

  private async localAttempt (service: ServiceSpec, endpoint: Endpoint, body: CallBody, caller: Caller): Promise<unknown> {
    const started = performance.now()
    // The callee's check, here on the same node: the same policy, the same principal.
    const outcome = await this.runCall(service, endpoint, body, caller.principal)
    this.init.metrics?.call(service.id, 'callee', outcome.ok ? 'ok' : outcome.code.toLowerCase(), (performance.now() - started) / 1000)
    if (!outcome.ok) throw new AttemptError(outcome.code, outcome.message, outcome.ran)
    return outcome.value
  }

  private async remoteAttempt (endpoint: Endpoint, body: CallBody, identity: WorkloadIdentity | undefined): Promise<unknown> {
    const signal = AbortSignal.timeout(Math.max(1, body.deadline - Date.now()))
    let stream: Stream | undefined
    try {
      stream = await this.init.mesh.dialProtocol(endpoint.peerId, CALL_PROTOCOL, { signal, negotiateFully: false })
    } catch (err) {
      throw new AttemptError(signal.aborted ? 'TIMEOUT' : 'UNAVAILABLE', `cannot reach ${endpoint.peerId}: ${describeError(err)}`, false)
    }
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_REPLY_FRAME })
      const sealed = await this.init.trust.sealValue(CALL_PROTOCOL, JSON.stringify(body), identity)
      await lp.write(enc.encode(JSON.stringify(sealed)), { signal })
      let frame: Uint8Array
      try {
        frame = (await lp.read({ signal })).subarray()
      } catch (err) {
        throw new AttemptError(signal.aborted ? 'TIMEOUT' : 'UNAVAILABLE', signal.aborted ? `timed out: no reply from ${endpoint.peerId} within the call's time` : `${endpoint.peerId} went away mid-call: ${describeError(err)}`, true)
      }
      // The reply is sealed by the callee's node and names this request (a refusal made before the request was opened names none).
      let opened: { body: string }
      try {
        opened = await this.init.trust.open(replyDomain(CALL_PROTOCOL), frame, { from: endpoint.peerId })
      } catch (err) {
        throw new AttemptError('UNAVAILABLE', `reply from ${endpoint.peerId} refused: ${describeError(err)}`, true)
      }
      const value = JSON.parse(opened.body) as { re?: unknown, ok?: unknown }
      const reply = CallReply.safeParse(value)
      await stream.close({ signal }).catch(() => {})
      if (!reply.success) throw new AttemptError('UNAVAILABLE', `malformed reply from ${endpoint.peerId}`, true)
      if (value.re !== sealed.e.nonce && !(value.ok === false && value.re == null)) throw new AttemptError('UNAVAILABLE', `the reply from ${endpoint.peerId} does not answer this call`, true)
      if (!reply.data.ok) throw new AttemptError(reply.data.code, reply.data.message, reply.data.ran)
      return reply.data.value
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (err instanceof AttemptError) throw err
      throw new AttemptError(signal.aborted ? 'TIMEOUT' : 'UNAVAILABLE', `call stream to ${endpoint.peerId} failed: ${describeError(err)}`, true)
    }
  }

  /** CALL_PROTOCOL, serving: check the sealed request, the policy, then run it on the named local replica. */
  private async serve (stream: Stream, from: string): Promise<void> {
    const started = performance.now()
    const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_FRAME })
    const signal = AbortSignal.timeout(MAX_CALL_TIMEOUT_MS)
    let service = 'unknown'
    let re: string | undefined
    const answer = async (reply: CallReply): Promise<void> => {
      this.init.metrics?.call(service, 'callee', reply.ok ? 'ok' : reply.code.toLowerCase(), (performance.now() - started) / 1000)
      await lp.write(await this.init.trust.seal(replyDomain(CALL_PROTOCOL), JSON.stringify(re != null ? { ...reply, re } : reply)), { signal })
      await stream.close({ signal })
    }
    try {
      let frame: Uint8Array
      try {
        frame = (await lp.read({ signal: AbortSignal.timeout(10_000) })).subarray()
      } catch (err) {
        const tooLarge = /max.*length|too long|InvalidDataLength/i.test(describeError(err)) || (err as { name?: string }).name === 'InvalidDataLengthError'
        if (tooLarge) { await answer({ ok: false, code: 'TOO_LARGE', message: `the request exceeds ${MAX_CALL_BYTES} bytes`, ran: false }); return }
        throw err
      }
      let opened: Awaited<ReturnType<Trust['open']>>
      try {
        opened = await this.init.trust.open(CALL_PROTOCOL, frame, { from })
      } catch (err) {
        await answer({ ok: false, code: 'DENIED', message: `refused by ${this.init.mesh.peerId}: ${describeError(err)}`, ran: false })
        return
      }
      re = opened.nonce
      const body = CallBody.safeParse(JSON.parse(opened.body))
      if (!body.success) { await answer({ ok: false, code: 'BAD_REQUEST', message: 'malformed call request', ran: false }); return }
      service = body.data.service
      // A workload speaks for itself; a node may speak for the deployer whose API request it serves, with its token.
      let principal: Principal
      try {
        principal = await relayedPrincipal(this.init.trust, opened.sender.principal, body.data, { workloads: true })
      } catch (err) {
        this.init.metrics?.denied(body.data.service, 'callee')
        this.init.log.warn({ service: body.data.service, from, err: describeError(err) }, 'call refused: unproven onBehalfOf')
        await answer({ ok: false, code: 'DENIED', message: `forbidden by ${this.init.mesh.peerId}: ${describeError(err)}`, ran: false })
        return
      }
      const spec = this.init.directory.services().find(s => s.id === body.data.service)
      const endpoint = spec != null ? this.localEndpoint(spec, body.data) : undefined
      if (spec == null || endpoint == null) {
        await answer({ ok: false, code: 'UNAVAILABLE', message: `${this.init.mesh.peerId} runs no ready replica ${body.data.replica} of ${body.data.workload}`, ran: false })
        return
      }
      const outcome = await this.runCall(spec, endpoint, body.data, principal)
      await answer(outcome.ok ? { ok: true, value: outcome.value } : { ok: false, code: outcome.code, message: outcome.message, ran: outcome.ran })
    } catch (err) {
      this.init.log.debug({ from, err: describeError(err) }, 'call stream failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /** The callee's side of a call: the policy, then the replica. Never throws. */
  private async runCall (service: ServiceSpec, endpoint: Endpoint, body: CallBody, principal: Principal): Promise<{ ok: true, value: unknown } | { ok: false, code: CallErrorCode, message: string, ran: boolean }> {
    const { trust, log } = this.init
    const decision = decideCall({ trust, log, ...(this.init.metrics != null ? { metrics: this.init.metrics } : {}) }, principal, service, 'call', 'callee')
    if (!decision.allowed) return { ok: false, code: 'DENIED', message: `forbidden by ${this.init.mesh.peerId} under policy ${trust.policy.name} v${trust.policy.version}: ${decision.reason}`, ran: false }
    if (Date.now() >= body.deadline) return { ok: false, code: 'TIMEOUT', message: 'timed out before it reached the replica', ran: false }
    try {
      const value = await this.init.serveLocal(endpoint, { service: service.id, data: body.data, caller: senderOf(principal), id: body.id, attempt: body.attempt }, body.deadline)
      return { ok: true, value: value ?? null }
    } catch (err) {
      if (err instanceof CallError) return { ok: false, code: err.code, message: err.detail, ran: err.ran }
      return { ok: false, code: 'FAILED', message: describeError(err), ran: true }
    }
  }

  /** The local endpoint a request names, if it is here and ready. */
  private localEndpoint (service: ServiceSpec, body: CallBody): Endpoint | undefined {
    return this.init.directory.replicas(service).find(r => r.peerId === this.init.mesh.peerId && r.workloadId === body.workload && r.replica === body.replica && r.ready)
  }
}

/**
 * The policy's `call` decision on a service, for a call or a tunnel, at the
 * caller's node or the callee's: a refusal is logged at warn and counted.
 */
export function decideCall (ctx: { trust: Trust, log: Logger, metrics?: Pick<CallMetrics, 'denied'> }, principal: Principal, service: ServiceSpec, what: 'call' | 'tunnel', side: 'caller' | 'callee', fields: Record<string, unknown> = {}): Decision {
  const decision = ctx.trust.decide(principal, 'call', serviceResource(service))
  if (!decision.allowed) {
    ctx.metrics?.denied(service.id, side)
    ctx.log.warn({ service: service.id, caller: senderOf(principal), ...fields, rule: decision.rule ?? 'default-deny' }, `${what} denied at the ${side}'s node`)
  }
  return decision
}

/** What a node's call carries when it speaks for a caller without a key of its own: who, and a deployer's token. */
function relayFor (principal: Principal): { onBehalfOf: string, token?: string } {
  const token = principal.kind === 'deployer' ? currentBearer() : undefined
  return { onBehalfOf: senderOf(principal), ...(token != null ? { token } : {}) }
}
