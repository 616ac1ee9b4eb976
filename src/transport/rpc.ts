import { lpStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { describeError } from '../errors.js'
import type { MeshNode } from './mesh-node.js'
import { RpcError } from './errors.js'
import type { Logger } from './logger.js'

/** Largest request frame a protocol accepts unless it says otherwise: requests are small JSON. */
export const DEFAULT_MAX_REQUEST = 64 * 1024
/** Largest reply frame (JSON), and largest binary frame (artifacts). */
export const MAX_RPC_FRAME = 1024 * 1024
export const MAX_BLOB_FRAME = 32 * 1024 * 1024
/** Requests a peer may make across every RPC protocol: a bucket of BURST refilled at RATE a second. */
const RATE_PER_SECOND = 1_000
const BURST = 2_000

export interface RpcReply {
  /** JSON result. */
  result?: unknown
  /** An optional binary payload sent as a second frame. */
  blob?: Uint8Array
}

export type RpcHandler = (request: unknown, from: string, options: AbortOptions) => Promise<RpcReply>

export interface ServeOptions {
  /** How long one request may take, read to reply. Default 30 s. */
  timeoutMs?: number
  /** Largest request frame: a longer one is refused before it is read. Default DEFAULT_MAX_REQUEST. */
  maxRequestBytes?: number
  /** Concurrent streams of this protocol per connection, each way (libp2p's defaults: 32 in, 64 out). Default 32. */
  maxInboundStreams?: number
}

/**
 * Seals requests and replies and opens them again on the far side
 * (src/policy/trust.ts): with a guard set on a mesh node, every RPC request
 * it sends is signed, fresh and carries the sender's membership credential;
 * every request it serves is refused unless it opens; every reply is sealed by
 * the replying node and names the request it answers (`re`, the request's
 * nonce), so a reply cannot be forged, replayed or swapped. `open` throws with the reason.
 */
export interface RpcGuard {
  seal: (domain: string, value: unknown) => Promise<{ sealed: unknown, nonce: string }>
  open: (domain: string, sealed: unknown, from: string) => Promise<{ value: unknown, nonce: string }>
  /** A request refused before it was opened (too large, rate limited): counted by the node. */
  refused?: (protocol: string, reason: string) => void
}

/** What sealing RPCs needs of a node's trust (src/policy/trust.ts's Trust has it). */
export interface RpcSealer {
  sealValue: (domain: string, body: string) => Promise<{ e: { nonce: string } }>
  open: (domain: string, sealed: unknown, options: { from: string }) => Promise<{ body: string, nonce: string }>
}

/** The guard every member's RPCs go through: requests and replies sealed by their author, opened and replay-checked by the receiver. */
export function sealingGuard (trust: RpcSealer, refused?: RpcGuard['refused']): RpcGuard {
  return {
    seal: async (domain, value) => {
      const sealed = await trust.sealValue(domain, JSON.stringify(value))
      return { sealed, nonce: sealed.e.nonce }
    },
    open: async (domain, sealed, from) => {
      const opened = await trust.open(domain, sealed, { from })
      return { value: JSON.parse(opened.body), nonce: opened.nonce }
    },
    ...(refused != null ? { refused } : {})
  }
}

const guards = new WeakMap<MeshNode, RpcGuard>()
const limiters = new WeakMap<MeshNode, RateLimiter>()

export function setRpcGuard (mesh: MeshNode, guard: RpcGuard): void {
  guards.set(mesh, guard)
}

/** The domain a reply to `protocol` is sealed for: a request can never pass for a reply, nor the reverse. */
export const replyDomain = (protocol: string): string => `${protocol}#reply`

const enc = new TextEncoder()
const dec = new TextDecoder()

interface ReplyHeader { ok: boolean, result?: unknown, error?: string, blob?: boolean, re?: string }

/**
 * Serves a request/response protocol: one length-prefixed request frame, then
 * a reply frame `{ok, result}` or `{ok: false, error}`, optionally followed by
 * one binary frame. Before anything is parsed, the frame's announced length is
 * checked against the protocol's limit (a longer one is refused unread) and the
 * peer's request rate against its bucket; the sealed envelope is then checked
 * (signature, freshness, membership, replay) before the request inside it is
 * parsed. Nothing a peer sends can throw out of the handler.
 */
export async function serveRpc (mesh: MeshNode, protocol: string, handler: RpcHandler, log: Logger, options: ServeOptions = {}): Promise<void> {
  const { timeoutMs = 30_000, maxRequestBytes = DEFAULT_MAX_REQUEST, maxInboundStreams = 32 } = options
  await mesh.handle(protocol, async (stream: Stream, connection) => {
    const signal = AbortSignal.timeout(timeoutMs)
    const lp = lpStream(stream, { maxDataLength: maxRequestBytes })
    const from = connection.remotePeer.toString()
    const guard = guards.get(mesh)
    let re: string | undefined
    const reply = async (header: ReplyHeader, blob?: Uint8Array): Promise<void> => {
      const value = re != null ? { ...header, re } : header
      const frame = guard != null ? (await guard.seal(replyDomain(protocol), value)).sealed : value
      await lp.write(enc.encode(JSON.stringify(frame)), { signal })
      if (blob != null) await lp.write(blob, { signal })
      await stream.close({ signal })
    }
    try {
      let limiter = limiters.get(mesh)
      if (limiter == null) { limiter = new RateLimiter(RATE_PER_SECOND, BURST); limiters.set(mesh, limiter) }
      if (!limiter.take(from)) {
        guard?.refused?.(protocol, 'rate-limited')
        await reply({ ok: false, error: `rate limited: more than ${RATE_PER_SECOND} requests a second from ${from}` })
        return
      }
      let request: unknown
      try {
        request = JSON.parse(dec.decode((await lp.read({ signal })).subarray()))
      } catch (err) {
        const tooLarge = isTooLong(err)
        if (tooLarge) guard?.refused?.(protocol, 'too-large')
        await reply({ ok: false, error: tooLarge ? `request refused unread: it exceeds ${protocol}'s limit of ${maxRequestBytes} bytes` : `malformed request: ${describeError(err)}` })
        return
      }
      let result: RpcReply
      try {
        if (guard != null) {
          const opened = await guard.open(protocol, request, from)
          re = opened.nonce
          request = opened.value
        }
        result = await handler(request, from, { signal })
      } catch (err) {
        await reply({ ok: false, error: describeError(err) })
        return
      }
      await reply({ ok: true, result: result.result ?? null, blob: result.blob != null }, result.blob)
    } catch (err) {
      log.debug({ protocol, from, err: describeError(err) }, 'rpc stream failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }, { maxInboundStreams, maxOutboundStreams: Math.max(64, maxInboundStreams) })
}

/** Calls a peer's RPC protocol; rejects with RpcError naming the peer and the reason. */
export async function callRpc (mesh: MeshNode, peer: string, protocol: string, request: unknown, options: AbortOptions & { timeoutMs?: number } = {}): Promise<RpcReply> {
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs ?? 10_000)].filter((s): s is AbortSignal => s != null))
  let stream: Stream | undefined
  try {
    // The caller writes first, so the protocol selection can travel with the request
    // (optimistic multistream-select) instead of costing a round trip of its own.
    stream = await mesh.dialProtocol(peer, protocol, { signal, negotiateFully: false })
    const lp = lpStream(stream, { maxDataLength: MAX_BLOB_FRAME })
    const guard = guards.get(mesh)
    const sealed = guard != null ? await guard.seal(protocol, request) : undefined
    await lp.write(enc.encode(JSON.stringify(sealed != null ? sealed.sealed : request)), { signal })
    const first = (await lp.read({ signal })).subarray()
    if (first.byteLength > MAX_RPC_FRAME) throw new RpcError(peer, protocol, `reply of ${first.byteLength} bytes exceeds ${MAX_RPC_FRAME}`)
    let header = JSON.parse(dec.decode(first)) as ReplyHeader
    if (guard != null && sealed != null) {
      // The reply must be sealed by the peer asked, and answer this very request
      // (a refusal made before the request was opened, such as too large, names none).
      header = (await guard.open(replyDomain(protocol), header, peer)).value as ReplyHeader
      if (header?.re !== sealed.nonce && !(header?.ok === false && header.re == null)) throw new RpcError(peer, protocol, 'the reply does not answer this request')
    }
    if (!header.ok) throw new RpcError(peer, protocol, header.error ?? 'unknown error')
    const blob = header.blob === true ? (await lp.read({ signal })).subarray() : undefined
    await stream.close({ signal }).catch(() => {})
    return { result: header.result, blob }
  } catch (err) {
    stream?.abort(err instanceof Error ? err : new Error(String(err)))
    if (err instanceof RpcError) throw err
    throw new RpcError(peer, protocol, describeError(err), { cause: err })
  }
}

/** The length prefix announced more than the reader's limit (it-length-prefixed's InvalidDataLengthError). */
export function isTooLong (err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'InvalidDataLengthError' || /max.*length|too long|InvalidDataLength/i.test(describeError(err))
}

/**
 * Token buckets keyed by peer. Only admitted members reach an RPC handler, so
 * the keys are members; the map is still bounded (full buckets of peers idle
 * for a while are dropped first).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (private readonly ratePerSecond: number, private readonly burst: number, private readonly maxPeers = 10_000) {}

  take (peer: string, now = Date.now()): boolean {
    let b = this.buckets.get(peer)
    if (b == null) {
      if (this.buckets.size >= this.maxPeers) this.evict(now)
      b = { tokens: this.burst, at: now }
      this.buckets.set(peer, b)
    }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.ratePerSecond / 1000)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  private evict (now: number): void {
    for (const [peer, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.ratePerSecond / 1000 >= this.burst) this.buckets.delete(peer)
    }
    // Still full: the least recently inserted go (each was refilled to a full bucket by now or soon).
    while (this.buckets.size >= this.maxPeers) this.buckets.delete(this.buckets.keys().next().value!)
  }
}
