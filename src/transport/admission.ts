/**
 * Members only, at the connection. A libp2p connection is encrypted and
 * authenticated by noise (each side proves its key), but that says nothing
 * about membership: any key can connect. Admission closes that gap.
 *
 * - On every new outbound connection the dialer opens `/beemesh/admit/1.0.0`
 *   and sends its membership proof (a root-signed credential naming its peer
 *   id: noise already proved it holds that key); the listener checks it and
 *   answers with its own, which the dialer checks in turn.
 * - Until a peer is admitted, no other protocol is served to it or opened
 *   towards it: a stream middleware on every protocol (gossipsub, kad-dht,
 *   identify, ping, every `/beemesh/*`) waits for the peer's admission and
 *   aborts the stream if it does not come by the deadline. identify runs only
 *   after admission, so gossipsub and the DHT never learn of (and never add to
 *   their meshes and routing tables) a peer that was not admitted.
 * - A connection whose peer is not admitted within the deadline is closed;
 *   a peer whose proof is refused is closed, removed from the peer store and
 *   refused by the connection gater for 10 minutes; one that keeps timing out,
 *   for 30 s (it may be a member on a busy host).
 *
 * The membership check itself (what a proof is, whom the mesh trusts) is the
 * gate's, injected by the node (src/policy/trust.ts): the transport only
 * enforces that it passed.
 */
import { lpStream } from '@libp2p/utils'
import type { Connection, Libp2p, Stream, StreamMiddleware } from '@libp2p/interface'
import { describeError } from '../errors.js'
import type { Logger } from './logger.js'

export const ADMIT_PROTOCOL = '/beemesh/admit/1.0.0'
/** A peer must be admitted within this long of its connection opening, or the connection is closed (so it is gone within 2 s). */
export const ADMISSION_DEADLINE_MS = 1_500
/** A membership proof is a credential: a few hundred bytes. Anything larger is refused unread. */
export const MAX_PROOF_BYTES = 16 * 1024
/**
 * A peer that let this many connections time out within STRIKE_WINDOW_MS is
 * refused for a short while (SLOW_PEER_BAN_MS): it may be a member on a host
 * too busy to answer in time (a hundred nodes on two cores did), so it is
 * neither banned for long nor forgotten, unlike a peer with a bad proof.
 */
const MAX_STRIKES = 3
const STRIKE_WINDOW_MS = 60_000
/** At most this many peers are remembered as admitted (each with an open connection, or recently). */
const MAX_ADMITTED = 10_000

/** What decides membership: the node's trust service. */
export interface MembershipGate {
  /** This node's own proof of membership, sent to every peer it connects to (undefined: it has none). */
  proof: () => unknown
  /** Checks a peer's proof (null: it sent none); resolves with when it expires, throws naming the reason it is refused. */
  admit: (peerId: string, proof: unknown) => Promise<{ expiresAt: number }>
}

export interface AdmissionEvents {
  /** The first connection to a peer was admitted. */
  admitted: (peerId: string, connection: Connection) => void
  /** A peer's proof was refused (`ban` 'refused'), or it timed out too often ('slow'): the owner bans it for long or for a while. */
  refused: (peerId: string, reason: string, ban: 'refused' | 'slow' | false) => void
}

interface Waiter { resolve: (ok: boolean) => void }

const enc = new TextEncoder()
const dec = new TextDecoder()

export class Admission {
  private readonly admitted = new Map<string, number>()
  private readonly waiters = new Map<string, Set<Waiter>>()
  private readonly strikes = new Map<string, number[]>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private node?: Libp2p

  constructor (private readonly gate: MembershipGate, private readonly events: AdmissionEvents, private readonly log: Logger, private readonly deadlineMs = ADMISSION_DEADLINE_MS) {}

  /** Is the peer admitted now (and its proof unexpired)? */
  isAdmitted (peerId: string): boolean {
    const until = this.admitted.get(peerId)
    if (until == null) return false
    if (until > Date.now()) return true
    this.admitted.delete(peerId)
    return false
  }

  /**
   * Wires admission into a libp2p node before it starts: the admission
   * protocol, the connection hook, and the gate in front of every other
   * protocol. The gate is installed in the registrar's middleware lookup, so
   * it covers every protocol, inbound and outbound, from the first connection
   * (libp2p 3.3's registrar also hands out its stored array, onto which the
   * connection pushes the handler for every inbound stream: a fresh array each
   * time keeps that chain from growing).
   */
  async attach (node: Libp2p): Promise<void> {
    this.node = node
    const registrar = (node as unknown as { components?: { registrar?: { getMiddleware?: (p: string) => StreamMiddleware[] } } }).components?.registrar
    const original = registrar?.getMiddleware?.bind(registrar)
    if (registrar == null || original == null) throw new Error('libp2p registrar not found: cannot install the admission gate')
    registrar.getMiddleware = (protocol: string) => protocol === ADMIT_PROTOCOL ? [...original(protocol)] : [this.middleware, ...original(protocol)]
    await node.handle(ADMIT_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    node.addEventListener('connection:open', evt => { this.onConnection(evt.detail) })
    node.addEventListener('peer:disconnect', evt => {
      const id = evt.detail.toString()
      this.wake(id, false)
    })
  }

  private readonly middleware: StreamMiddleware = async (stream, connection, next) => {
    const peer = connection.remotePeer.toString()
    if (!this.isAdmitted(peer) && !await this.waitFor(peer, connection)) {
      throw new Error(`peer ${peer} is not an admitted member: ${stream.protocol ?? 'stream'} refused`)
    }
    next(stream, connection)
  }

  stop (): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    for (const id of [...this.waiters.keys()]) this.wake(id, false)
  }

  private async waitFor (peer: string, connection: Connection): Promise<boolean> {
    if (connection.status !== 'open') return false
    return await new Promise<boolean>(resolve => {
      const waiter: Waiter = { resolve: ok => { clearTimeout(timer); this.timers.delete(timer); resolve(ok) } }
      const timer = setTimeout(() => { this.waiters.get(peer)?.delete(waiter); waiter.resolve(false) }, this.deadlineMs)
      this.timers.add(timer)
      let set = this.waiters.get(peer)
      if (set == null) { set = new Set(); this.waiters.set(peer, set) }
      set.add(waiter)
    })
  }

  private wake (peer: string, ok: boolean): void {
    const set = this.waiters.get(peer)
    if (set == null) return
    this.waiters.delete(peer)
    for (const w of set) w.resolve(ok)
  }

  private onConnection (connection: Connection): void {
    const peer = connection.remotePeer.toString()
    if (this.isAdmitted(peer)) { this.afterAdmission(peer, connection, false); return }
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (this.isAdmitted(peer) || connection.status !== 'open') return
      this.strike(peer)
      this.log.debug({ peer }, `peer not admitted within ${this.deadlineMs} ms: connection closed`)
      connection.abort(new Error('not admitted in time'))
    }, this.deadlineMs)
    this.timers.add(timer)
    if (connection.direction === 'outbound') void this.propose(connection)
  }

  /** The dialer's side: send our proof, check theirs. */
  private async propose (connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(this.deadlineMs)
      stream = await connection.newStream(ADMIT_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_PROOF_BYTES })
      await lp.write(enc.encode(JSON.stringify({ proof: this.gate.proof() ?? null })), { signal })
      const reply = decodeAdmissionFrame((await lp.read({ signal })).subarray())
      await stream.close({ signal }).catch(() => {})
      if (reply.ok !== true) {
        // They refused us: nothing more to say on this connection.
        this.log.warn({ peer, reason: typeof reply.error === 'string' ? reply.error.slice(0, 300) : 'refused' }, 'a peer refused this node\'s membership proof')
        connection.abort(new Error('membership refused by peer'))
        return
      }
      await this.check(peer, reply.proof, connection)
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      if (connection.status === 'open' && !this.isAdmitted(peer)) this.log.debug({ peer, err: describeError(err) }, 'admission exchange failed')
    }
  }

  /** The listener's side: check their proof, answer with ours. */
  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(this.deadlineMs)
    const lp = lpStream(stream, { maxDataLength: MAX_PROOF_BYTES })
    try {
      const request = decodeAdmissionFrame((await lp.read({ signal })).subarray())
      try {
        await this.verify(peer, request.proof)
      } catch (err) {
        await lp.write(enc.encode(JSON.stringify({ ok: false, error: describeError(err) })), { signal }).catch(() => {})
        await stream.close({ signal }).catch(() => {})
        this.refuse(peer, connection, describeError(err), 'refused')
        return
      }
      await lp.write(enc.encode(JSON.stringify({ ok: true, proof: this.gate.proof() ?? null })), { signal })
      await stream.close({ signal }).catch(() => {})
      this.markAdmitted(peer, connection)
    } catch (err) {
      // A malformed or oversized frame is a refusal; a reset or timeout only loses this attempt.
      const refused = err instanceof MalformedProof || /max.*length|too long/i.test(describeError(err))
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      if (refused) this.refuse(peer, connection, describeError(err), 'refused')
    }
  }

  private async check (peer: string, proof: unknown, connection: Connection): Promise<void> {
    try {
      await this.verify(peer, proof)
    } catch (err) {
      this.refuse(peer, connection, describeError(err), 'refused')
      return
    }
    this.markAdmitted(peer, connection)
  }

  private async verify (peer: string, proof: unknown): Promise<void> {
    const { expiresAt } = await this.gate.admit(peer, proof)
    if (this.admitted.size >= MAX_ADMITTED && !this.admitted.has(peer)) this.evict()
    this.admitted.set(peer, expiresAt)
  }

  private evict (): void {
    const connected = new Set(this.node?.getConnections().map(c => c.remotePeer.toString()) ?? [])
    for (const id of this.admitted.keys()) {
      if (!connected.has(id)) this.admitted.delete(id)
      if (this.admitted.size < MAX_ADMITTED) return
    }
  }

  private markAdmitted (peer: string, connection: Connection): void {
    this.strikes.delete(peer)
    this.wake(peer, true)
    this.afterAdmission(peer, connection, true)
  }

  /** identify (and with it gossipsub's and the DHT's topologies) runs only on admitted connections. */
  private afterAdmission (peer: string, connection: Connection, first: boolean): void {
    const node = this.node
    if (node == null) return
    if (first) {
      try { this.events.admitted(peer, connection) } catch (err) { this.log.error({ err: describeError(err) }, 'admission listener failed') }
    }
    const identify = (node.services as { identify?: { identify: (c: Connection) => Promise<unknown> } }).identify
    identify?.identify(connection).catch(err => { this.log.debug({ peer, err: describeError(err) }, 'identify after admission failed') })
  }

  private strike (peer: string): void {
    const now = Date.now()
    const recent = (this.strikes.get(peer) ?? []).filter(t => t > now - STRIKE_WINDOW_MS)
    recent.push(now)
    if (this.strikes.size > MAX_ADMITTED) this.strikes.clear()
    this.strikes.set(peer, recent)
    if (recent.length >= MAX_STRIKES) {
      this.strikes.delete(peer)
      this.events.refused(peer, `not admitted within ${this.deadlineMs} ms ${recent.length} times in a minute`, 'slow')
    }
  }

  private refuse (peer: string, connection: Connection, reason: string, ban: 'refused' | false): void {
    this.wake(peer, false)
    connection.abort(new Error(`not a member: ${reason}`))
    this.events.refused(peer, reason, ban)
  }
}

/** An admission frame that is not what the protocol sends: refused (and the peer with it). */
export class MalformedProof extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MalformedProof'
  }
}

/** Decodes one admission frame (at most MAX_PROOF_BYTES, which the stream reader enforces): throws MalformedProof. */
export function decodeAdmissionFrame (bytes: Uint8Array): { ok?: unknown, proof?: unknown, error?: unknown } {
  let value: unknown
  try {
    value = JSON.parse(dec.decode(bytes))
  } catch {
    throw new MalformedProof('admission frame is not JSON')
  }
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw new MalformedProof('admission frame is not an object')
  return value as { ok?: unknown, proof?: unknown, error?: unknown }
}


/**
 * A gate that presents `proof` and admits every peer that presents anything:
 * for processes that connect as a member without judging others (a benchmark's
 * load generator, a test's compromised member). A node never uses it.
 */
export function presentingGate (proof: unknown): MembershipGate {
  return { proof: () => proof, admit: async () => ({ expiresAt: Number.MAX_SAFE_INTEGER }) }
}
