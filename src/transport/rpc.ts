import { lpStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { describeError } from '../errors.js'
import type { MeshNode } from './mesh-node.js'
import { RpcError } from './errors.js'
import type { Logger } from './logger.js'

/** Largest JSON frame accepted on an RPC stream. */
export const MAX_RPC_FRAME = 1024 * 1024
/** Largest binary frame (artifacts). */
export const MAX_BLOB_FRAME = 32 * 1024 * 1024

export interface RpcReply {
  /** JSON result. */
  result?: unknown
  /** An optional binary payload sent as a second frame. */
  blob?: Uint8Array
}

export type RpcHandler = (request: unknown, from: string, options: AbortOptions) => Promise<RpcReply>

/**
 * Seals requests and opens them again on the far side (src/policy/trust.ts):
 * with a guard set on a mesh node, every RPC request it sends is signed,
 * fresh and carries the sender's membership credential, and every request it
 * serves is refused unless it opens. `open` throws with the reason.
 */
export interface RpcGuard {
  seal: (protocol: string, request: unknown) => Promise<unknown>
  open: (protocol: string, request: unknown, from: string) => Promise<unknown>
}

const guards = new WeakMap<MeshNode, RpcGuard>()

export function setRpcGuard (mesh: MeshNode, guard: RpcGuard): void {
  guards.set(mesh, guard)
}

const enc = new TextEncoder()
const dec = new TextDecoder()

/**
 * Serves a request/response protocol: one length-prefixed JSON request frame,
 * then a JSON reply frame `{ok, result}` or `{ok: false, error}`, optionally
 * followed by one binary frame. Malformed requests get an error reply; nothing
 * a peer sends can throw out of the handler.
 */
export async function serveRpc (mesh: MeshNode, protocol: string, handler: RpcHandler, log: Logger, timeoutMs = 30_000): Promise<void> {
  await mesh.handle(protocol, async (stream: Stream, connection) => {
    const signal = AbortSignal.timeout(timeoutMs)
    const lp = lpStream(stream, { maxDataLength: MAX_BLOB_FRAME })
    const from = connection.remotePeer.toString()
    try {
      let request: unknown
      try {
        request = JSON.parse(dec.decode((await lp.read({ signal })).subarray()))
      } catch (err) {
        await lp.write(enc.encode(JSON.stringify({ ok: false, error: `malformed request: ${describeError(err)}` })), { signal })
        await stream.close({ signal })
        return
      }
      let reply: RpcReply
      try {
        const guard = guards.get(mesh)
        if (guard != null) request = await guard.open(protocol, request, from)
        reply = await handler(request, from, { signal })
      } catch (err) {
        await lp.write(enc.encode(JSON.stringify({ ok: false, error: describeError(err) })), { signal })
        await stream.close({ signal })
        return
      }
      await lp.write(enc.encode(JSON.stringify({ ok: true, result: reply.result ?? null, blob: reply.blob != null })), { signal })
      if (reply.blob != null) await lp.write(reply.blob, { signal })
      await stream.close({ signal })
    } catch (err) {
      log.debug({ protocol, from, err: describeError(err) }, 'rpc stream failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  })
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
    await lp.write(enc.encode(JSON.stringify(guard != null ? await guard.seal(protocol, request) : request)), { signal })
    const header = JSON.parse(dec.decode((await lp.read({ signal })).subarray())) as { ok: boolean, result?: unknown, error?: string, blob?: boolean }
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
