// longer than 700 lines: the one facade over libp2p (setup, gossip validation, DHT records, streams) the rest of the node talks to
import '../polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, TopicValidatorResult, type GossipSub } from '@libp2p/gossipsub'
import type { TopicScoreParams } from '@libp2p/gossipsub/score'
import { identify, type Identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, type KadDHT, type SingleKadDHT } from '@libp2p/kad-dht'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { TypedEventEmitter, type PrivateKey, type Startable, type AbortOptions, type Connection, type Stream, type StreamHandler } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { MemoryDatastore } from 'datastore-core'
import { Key } from 'interface-datastore'
import { createLibp2p, type Libp2p } from 'libp2p'
import type { CID } from 'multiformats/cid'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describeError } from '../errors.js'
import { Admission, type MembershipGate } from './admission.js'
import { Bootstrapper, type BootstrapEvents } from './bootstrap.js'
import { AddressInUseError, InvalidMultiaddrError, NotStartedError, RecordNotFoundError } from './errors.js'
import { compareCodeUnits } from '../compare.js'
import { libp2pLoggerOff, type Logger, silentLogger } from './logger.js'
import { decodeRecord, encodeRecord, RECORD_NAMESPACE, recordValidator, selectRecord, type DecodedRecord, type RecordGuard } from './records.js'

export const KAD_PROTOCOL = '/beemesh/kad/1.0.0'
/** Below this many peers a node keeps looking for more through the DHT. */
export const DISCOVERY_TARGET = 16
/** The first periodic lookup comes this long after start; each that finds no new peer doubles the wait, up to the max. */
const DISCOVERY_INTERVAL_MS = 5_000
const DISCOVERY_MAX_INTERVAL_MS = 5 * 60_000

export interface MeshNodeInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. */
  listen: string[]
  /** Multiaddrs to announce instead of the listen addresses (NAT, namespaces). */
  announce?: string[]
  /** Multiaddrs of peers to join through, each ending in `/p2p/<peer id>`. */
  bootstrap?: string[]
  /** Addresses of peers seen before (from the node's store): dialled once at start, best effort. */
  knownPeers?: string[]
  /**
   * Keep loopback and private addresses in DHT peer records. Needed for meshes
   * on one machine or a private network; `undefined` means "if any listen
   * address is loopback or private".
   */
  privateAddresses?: boolean
  logger?: Logger
  /** Seals what this node publishes and validates what it receives (src/policy/trust.ts); without one, gossip is plain. */
  guard?: GossipGuard
  /** Topics on which gossipsub scores peers down for invalid messages. */
  scoredTopics?: string[]
  /** Send this node's own messages to every subscribed peer rather than its topic mesh (default false; see start()). */
  floodPublish?: boolean
  /**
   * Members only, at the connection (admission.ts): with a gate, a peer gets no
   * protocol but admission until it proved membership, and is disconnected if it
   * does not within 1.5 s. Without one, every authenticated peer is served.
   */
  membership?: MembershipGate
  /** Checks every record beyond its signature (member publisher, allowed writer) before it is stored or believed. */
  recordGuard?: RecordGuard
}

/** Who signed a delivered message, as the guard established it (opaque to the transport). */
export type MessageSender = unknown

/**
 * Gossip through a guard: `seal` wraps what this node publishes; `open` checks
 * a received message (as a gossipsub topic validator, before the message is
 * forwarded or delivered) and returns the payload. `open` throws an error with
 * `verdict` 'reject' (the relaying peer is scored down) or 'ignore'.
 */
export interface OpenedMessage {
  data: Uint8Array
  sender: MessageSender
  /** The node that published it (the signer, or the host of the signing workload). */
  author: string
  /** Unique per message and the same on every node (the signer and the envelope's nonce). */
  id: string
  /** When its signer sealed it (the signer's clock). */
  ts?: number
}

export interface GossipGuard {
  seal: (topic: string, data: Uint8Array, as?: unknown) => Promise<Uint8Array>
  /** `relayed`: a copy handed over by a peer (openSealed), checked without the replay window, since the same message may also arrive by gossip. */
  open: (topic: string, data: Uint8Array, options?: { relayed?: boolean, maxAgeMs?: number }) => Promise<OpenedMessage>
  /** Called when gossipsub's score of a peer fell below the graylist threshold and the node hung up on it. */
  onBanned?: (peerId: string, score: number) => void
}

/**
 * Gossip mesh degree: 4 peers per topic (3–6) rather than gossipsub's 6
 * (4–12). Every message reaches each node about D times, so this cuts the
 * duplicates a node decodes and forwards by a third; with 50 nodes a message
 * still crosses the mesh in about three hops.
 */
export const GOSSIP_DEGREES = { D: 4, Dlo: 3, Dhi: 6, Dscore: 2, Dout: 1, Dlazy: 4 }

/** Peer scoring: invalid messages (P4, squared, weight -100) on BeeMesh topics drive a peer below the graylist threshold after 4 of them. */
export const SCORE_THRESHOLDS = { gossipThreshold: -100, publishThreshold: -500, graylistThreshold: -1_000, acceptPXThreshold: 10, opportunisticGraftThreshold: 1 }
/** How long a peer hung up on for its score stays refused by the connection gater. */
export const BAN_MS = 10 * 60 * 1000
/** How long a peer that kept failing to prove membership in time is refused (admission.ts: MAX_STRIKES). */
export const SLOW_PEER_BAN_MS = 30_000

function topicScore (): TopicScoreParams {
  // Only invalid deliveries count: quiet topics must not score honest peers down.
  return {
    topicWeight: 1,
    timeInMeshWeight: 0,
    timeInMeshQuantum: 1_000,
    timeInMeshCap: 1,
    firstMessageDeliveriesWeight: 0,
    firstMessageDeliveriesDecay: 0.5,
    firstMessageDeliveriesCap: 1,
    meshMessageDeliveriesWeight: 0,
    meshMessageDeliveriesDecay: 0.5,
    meshMessageDeliveriesCap: 1,
    meshMessageDeliveriesThreshold: 1,
    meshMessageDeliveriesWindow: 10,
    meshMessageDeliveriesActivation: 5_000,
    meshFailurePenaltyWeight: 0,
    meshFailurePenaltyDecay: 0.5,
    invalidMessageDeliveriesWeight: -100,
    invalidMessageDeliveriesDecay: 0.9
  }
}

export interface MeshPeer {
  peerId: string
  addrs: string[]
  direction: 'inbound' | 'outbound'
  openedAt: number
}

export interface MeshMessage {
  topic: string
  /**
   * With a guard: the node that published the message, as its seal proves.
   * Without one: the peer that handed it over (unsigned gossip names no author).
   */
  from: string
  data: Uint8Array
  /** The same on every node: with a guard the signer and nonce, without one gossipsub's id (a hash of the bytes). */
  id: string
  /** With a guard: who signed the message (the guard's Sender). */
  sender?: MessageSender
  /** With a guard: the message as sealed by its author, which a peer can check again (`openSealed`) if relayed. */
  sealed?: Uint8Array
}

export interface MeshNodeEvents extends BootstrapEvents {
  'peer:connect': CustomEvent<string>
  'peer:disconnect': CustomEvent<string>
  /** A peer told us (through identify) where it listens. */
  'peer:identified': CustomEvent<{ peerId: string, addrs: string[] }>
  message: CustomEvent<MeshMessage>
}

export interface PutResult {
  key: string
  seq: number
  /** How many remote peers accepted the record. */
  replicas: number
}

export interface PublishResult {
  topic: string
  recipients: string[]
  /** What went out: the payload as the guard sealed it (the payload itself without a guard). */
  sealed: Uint8Array
}

type Services = { identify: Identify, ping: Ping, dht: KadDHT, pubsub: GossipSub }

/** Parses a multiaddr, naming the input and the reason when it is not one. */
export function parseMultiaddr (address: string, { requirePeerId = false } = {}): Multiaddr {
  let ma: Multiaddr
  try {
    ma = multiaddr(address)
  } catch (err) {
    throw new InvalidMultiaddrError(address, describeError(err))
  }
  if (requirePeerId && ma.getComponents().find(c => c.name === 'p2p') == null) {
    throw new InvalidMultiaddrError(address, 'it must end in /p2p/<peer id>')
  }
  return ma
}

function isPrivateAddress (ma: Multiaddr): boolean {
  const ip = ma.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value ?? ''
  return /^(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|169\.254\.|0\.0\.0\.0$)/.test(ip) || ip === '::1' || ip === '::' || /^f[cd]/i.test(ip)
}

/**
 * One BeeMesh peer on the libp2p mesh: TCP + noise + yamux, identify, ping,
 * Kademlia DHT on `/beemesh/kad/1.0.0` (with signed-record validation for
 * `/beemesh/...` keys) and gossipsub (messages signed by their authors' envelopes, not by gossipsub).
 */
export class MeshNode extends TypedEventEmitter<MeshNodeEvents> implements Startable {
  readonly peerId: string
  private readonly init: MeshNodeInit
  private readonly log: Logger
  private readonly listen: Multiaddr[]
  private readonly announce: Multiaddr[]
  private readonly bootstrapAddrs: Multiaddr[]
  private libp2p?: Libp2p<Services>
  private bootstrapper?: Bootstrapper
  private lastSeq = 0
  /** The libp2p datastore (DHT records and provider records this node stores for the mesh). */
  private readonly datastore = new MemoryDatastore()
  private startedAt = 0
  private discoveryTimer?: NodeJS.Timeout
  private discoveryInterval?: NodeJS.Timeout
  private discoveryWaitMs = DISCOVERY_INTERVAL_MS
  private discovering = false
  /** Payloads opened by the topic validator, delivered with the message event. */
  private readonly opened = new WeakMap<Uint8Array, OpenedMessage>()
  /** Peers hung up on for their gossip score, until when. */
  private readonly banned = new Map<string, number>()
  private scoreTimer?: NodeJS.Timeout
  private admission?: Admission
  /** Peers announced with peer:connect (admitted ones, with a membership gate), for a matching peer:disconnect. */
  private readonly announced = new Set<string>()

  constructor (init: MeshNodeInit) {
    super()
    this.init = init
    this.log = init.logger ?? silentLogger
    this.listen = init.listen.map(a => parseMultiaddr(a))
    this.announce = (init.announce ?? []).map(a => parseMultiaddr(a))
    this.bootstrapAddrs = (init.bootstrap ?? []).map(a => parseMultiaddr(a, { requirePeerId: true }))
    this.peerId = peerIdOf(init.privateKey)
  }

  get started (): boolean {
    return this.libp2p != null
  }

  get uptimeMs (): number {
    return this.startedAt === 0 ? 0 : Date.now() - this.startedAt
  }

  async start (): Promise<void> {
    if (this.libp2p != null) return
    const keepPrivate = this.init.privateAddresses ?? [...this.listen, ...this.announce].some(isPrivateAddress)
    const node = await createLibp2p<Services>({
      privateKey: this.init.privateKey,
      datastore: this.datastore,
      ...(process.env.DEBUG == null || process.env.DEBUG === '' ? { logger: libp2pLoggerOff } : {}),
      start: false,
      addresses: {
        listen: this.listen.map(String),
        announce: this.announce.map(String)
      },
      // Every connection is pinged both ways: at libp2p's 10 s that is 10 ping streams a second
      // per node at rest with 50 peers. Dead peers are found by refused dials and heartbeats;
      // this only clears out connections that went silent without a reset.
      connectionMonitor: { pingInterval: 120_000 },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      // yamux grants a stream up to 16 MiB of window by default, but a stream's read buffer holds 4 MiB:
      // a reader that pauses (a tunnel whose TCP socket is full) got its stream reset by data already
      // granted. A 4 MiB window with an 8 MiB buffer keeps what may arrive after a pause inside the buffer.
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: 4 * 1024 * 1024, maxReadBufferLength: 8 * 1024 * 1024 } })],
      connectionGater: {
        ...(keepPrivate ? { denyDialMultiaddr: () => false } : {}),
        denyDialPeer: peerId => this.isBanned(peerId.toString()),
        denyInboundEncryptedConnection: peerId => this.isBanned(peerId.toString()),
        denyOutboundEncryptedConnection: peerId => this.isBanned(peerId.toString())
      },
      services: {
        // With admission, identify runs once a peer is admitted (admission.ts), not on connection open.
        identify: identify({ runOnConnectionOpen: this.init.membership == null }),
        ping: ping(),
        dht: kadDHT({
          protocol: KAD_PROTOCOL,
          clientMode: false,
          validators: { [RECORD_NAMESPACE]: recordValidator(this.init.recordGuard) },
          selectors: { [RECORD_NAMESPACE]: selectRecord },
          peerInfoMapper: keepPrivate ? passthroughMapper : removePrivateAddressesMapper,
          initialQuerySelfInterval: 200,
          allowQueryWithZeroPeers: true
        }),
        pubsub: gossipsub({
          ...GOSSIP_DEGREES,
          // What a message costs each node is mostly per frame (noise, yamux, a syscall),
          // not per byte: a node's own messages go to its topic mesh like any other
          // (not flooded to every subscribed peer), and no IDONTWANT is sent for
          // BeeMesh's small messages (docs/benchmarks.md#scale).
          floodPublish: this.init.floodPublish ?? false,
          idontwantMinDataSize: 64 * 1024,
          // IHAVE gossip each gossipsub heartbeat goes to max(Dlazy, gossipFactor × non-mesh peers):
          // at 0.25, 12 peers a second with 50 connections; 0.1 keeps it at about 5.
          gossipFactor: 0.1,
          // Gossip carries no signature of gossipsub's own: every message a guarded node
          // delivers is an envelope its author signed (policy/envelope.ts), checked by the
          // topic validator before it is forwarded. Signing it a second time cost every
          // node a second Ed25519 verification per message (more than half the CPU a
          // node spent on a flood of sealed messages), and the publisher a second signature.
          // Messages are told apart by a hash of their bytes; sealed ones carry a nonce.
          globalSignaturePolicy: 'StrictNoSign',
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          scoreParams: {
            // Meshes on one host (tests, `beemesh up`, the scale bench) share an IP:
            // membership credentials, not IP diversity, keep Sybils out.
            IPColocationFactorWeight: 0,
            topics: Object.fromEntries((this.init.scoredTopics ?? []).map(t => [t, topicScore()]))
          },
          scoreThresholds: SCORE_THRESHOLDS
        })
      }
    })

    const connected = (peerId: string): void => {
      if (this.announced.has(peerId)) return
      this.announced.add(peerId)
      this.safeDispatch('peer:connect', peerId)
      this.scheduleDiscovery(250)
    }
    if (this.init.membership != null) {
      const admission = new Admission(this.init.membership, {
        admitted: peerId => { connected(peerId) },
        refused: (peerId, reason, ban) => { this.refuse(node, peerId, reason, ban) }
      }, this.log)
      await admission.attach(node)
      this.admission = admission
    } else {
      node.addEventListener('peer:connect', evt => { connected(evt.detail.toString()) })
    }
    node.addEventListener('peer:disconnect', evt => {
      if (!this.announced.delete(evt.detail.toString())) return
      this.safeDispatch('peer:disconnect', evt.detail.toString())
      // Fewer peers than wanted again: look soon, not after a long backoff.
      if (this.peerCount() < DISCOVERY_TARGET && this.discoveryWaitMs > DISCOVERY_INTERVAL_MS) {
        this.discoveryWaitMs = DISCOVERY_INTERVAL_MS
        this.schedulePeriodicDiscovery()
      }
    })
    node.addEventListener('peer:identify', evt => {
      const peerId = evt.detail.peerId.toString()
      this.safeDispatch('peer:identified', { peerId, addrs: evt.detail.listenAddrs.map(a => `${a.toString()}/p2p/${peerId}`) })
    })
    node.services.pubsub.addEventListener('gossipsub:message', evt => {
      const { msg, msgId, propagationSource } = evt.detail
      if (this.init.guard == null) {
        this.safeDispatch('message', { topic: msg.topic, from: propagationSource.toString(), data: msg.data, id: msgId })
        return
      }
      const opened = this.opened.get(msg.data)
      if (opened == null) return // not validated (a topic subscribed without the guard's validator): never delivered
      this.opened.delete(msg.data)
      this.safeDispatch('message', { topic: msg.topic, from: opened.author, data: opened.data, id: opened.id, sender: opened.sender, sealed: msg.data })
    })

    try {
      await node.start()
    } catch (err) {
      await Promise.resolve(node.stop()).catch(() => {})
      if (/EADDRINUSE/.test(describeError(err)) || (err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new AddressInUseError(this.listen.map(String).join(', '), { cause: err })
      }
      throw err
    }
    this.libp2p = node
    this.startedAt = Date.now()
    this.schedulePeriodicDiscovery()
    if (this.init.guard != null || this.admission != null) {
      this.scoreTimer = setInterval(() => { this.dropLowScorers(); this.dropExpired() }, 1_000)
      this.scoreTimer.unref()
    }
    this.log.info({ peerId: this.peerId, addrs: this.addresses() }, 'mesh node started')

    for (const address of this.init.knownPeers ?? []) {
      let ma: Multiaddr
      try {
        ma = parseMultiaddr(address, { requirePeerId: true })
      } catch {
        continue
      }
      node.dial(ma, { signal: AbortSignal.timeout(5_000) }).catch(err => {
        this.log.debug({ address, err: describeError(err) }, 'known peer unreachable')
      })
    }

    // One bootstrap list for every node of a mesh (seeds included) is the easy way to deploy: a node skips itself in it.
    const self = node.peerId.toString()
    const bootstrapAddrs = this.bootstrapAddrs.filter(ma => ma.getComponents().findLast(c => c.name === 'p2p')?.value !== self)
    if (bootstrapAddrs.length < this.bootstrapAddrs.length) this.log.info({ peerId: self }, 'this node is in its own bootstrap list: skipping that entry')
    if (bootstrapAddrs.length > 0) {
      this.bootstrapper = new Bootstrapper({
        addrs: bootstrapAddrs,
        dial: async (ma, options) => { await node.dial(ma, options) },
        connectedTo: peerId => this.isConnected(peerId),
        peerCount: () => this.peerCount(),
        logger: this.log
      })
      this.bootstrapper.addEventListener('bootstrap:connected', evt => { this.safeDispatch('bootstrap:connected', evt.detail) })
      this.bootstrapper.addEventListener('bootstrap:retry', evt => { this.safeDispatch('bootstrap:retry', evt.detail) })
      node.addEventListener('peer:disconnect', () => { this.bootstrapper?.onPeerLost() })
      this.bootstrapper.start()
    }
  }

  async stop (): Promise<void> {
    const node = this.libp2p
    if (node == null) return
    this.bootstrapper?.stop()
    this.bootstrapper = undefined
    clearTimeout(this.discoveryTimer)
    clearTimeout(this.discoveryInterval)
    clearInterval(this.scoreTimer)
    this.admission?.stop()
    this.libp2p = undefined
    await node.stop()
    this.log.info({ peerId: this.peerId }, 'mesh node stopped')
  }

  private get node (): Libp2p<Services> {
    if (this.libp2p == null) throw new NotStartedError()
    return this.libp2p
  }

  /**
   * Peer discovery beyond the bootstrap list: a DHT lookup of this node's own
   * id dials the peers closest to it. kad-dht runs such a self-query once at
   * start, often before the rest of the mesh has joined; this repeats it
   * (debounced) whenever a peer connects and periodically, while the node has
   * fewer than DISCOVERY_TARGET peers. A periodic lookup that finds no new
   * peer doubles the wait for the next (5 s up to 5 min): a small mesh where
   * everyone knows everyone stops asking; losing a peer starts over at 5 s.
   */
  private schedulePeriodicDiscovery (): void {
    clearTimeout(this.discoveryInterval)
    if (this.libp2p == null) return
    this.discoveryInterval = setTimeout(() => {
      void (async () => {
        const before = this.peerCount()
        await this.discover()
        const after = this.peerCount()
        this.discoveryWaitMs = after > before ? DISCOVERY_INTERVAL_MS : Math.min(DISCOVERY_MAX_INTERVAL_MS, this.discoveryWaitMs * 2)
        this.schedulePeriodicDiscovery()
      })()
    }, this.discoveryWaitMs)
    this.discoveryInterval.unref()
  }

  private scheduleDiscovery (delayMs: number): void {
    if (this.libp2p == null || this.discoveryTimer != null) return
    this.discoveryTimer = setTimeout(() => {
      this.discoveryTimer = undefined
      void this.discover()
    }, delayMs)
    this.discoveryTimer.unref()
  }

  private async discover (): Promise<void> {
    const node = this.libp2p
    if (node == null || this.discovering || this.peerCount() >= DISCOVERY_TARGET) return
    this.discovering = true
    try {
      for await (const _ of node.services.dht.getClosestPeers(node.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(5_000) })) {
        // Draining the query is what dials the closest peers.
      }
    } catch (err) {
      this.log.debug({ err: describeError(err) }, 'peer discovery lookup ended early')
    } finally {
      this.discovering = false
    }
  }

  /** Closes every connection to the peer (it may dial back, or be dialled again later). */
  async hangUp (peerId: string): Promise<void> {
    await this.libp2p?.hangUp(peerIdFromString(peerId))
  }

  /** An open connection to the peer exists now (and, with a membership gate, the peer is admitted). */
  isConnected (peerId: string): boolean {
    if (this.admission != null && !this.admission.isAdmitted(peerId)) return false
    return this.libp2p?.getConnections().some(c => c.status === 'open' && c.remotePeer.toString() === peerId) ?? false
  }

  /** Connected peers (admitted ones, with a membership gate). */
  private peerCount (): number {
    const peers = this.libp2p?.getPeers() ?? []
    return this.admission == null ? peers.length : peers.filter(p => this.admission!.isAdmitted(p.toString())).length
  }

  /** Whether a peer passed admission (always true without a membership gate). */
  isAdmitted (peerId: string): boolean {
    return this.admission?.isAdmitted(peerId) ?? true
  }

  /** Peers this node's store knows (the libp2p address book): for tests and diagnostics. */
  async knowsPeer (peerId: string): Promise<boolean> {
    return await this.node.peerStore.has(peerIdFromString(peerId))
  }

  /**
   * Dials the peer (an open connection counts): `yes`; `refused` when every
   * address it is known by refused the connection (its host is up and nothing
   * listens there: the process is gone); `unknown` for a timeout or anything
   * else (a slow or busy peer, or a partition, looks the same).
   */
  async reachable (peerId: string, timeoutMs: number): Promise<'yes' | 'refused' | 'unknown'> {
    if (this.isConnected(peerId)) return 'yes'
    const node = this.libp2p
    if (node == null) return 'unknown'
    try {
      await node.dial(peerIdFromString(peerId), { signal: AbortSignal.timeout(timeoutMs) })
      return 'yes'
    } catch (err) {
      const causes = flattenErrors(err)
      return causes.length > 0 && causes.every(e => /ECONNREFUSED/.test(`${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`)) ? 'refused' : 'unknown'
    }
  }

  /** What the node's DHT and gossip look like from here (for status and the scale bench). */
  stats (): { routingTable: number, topicMesh: Record<string, number> } {
    const node = this.node
    const pubsub = node.services.pubsub
    return {
      routingTable: (node.services.dht as KadDHT & Partial<Pick<SingleKadDHT, 'routingTable'>>).routingTable?.size ?? 0,
      // The implementation has getMeshPeers; @libp2p/gossipsub's GossipSub interface does not declare it.
      topicMesh: Object.fromEntries(pubsub.getTopics().map(t => [t, (pubsub as GossipSub & { getMeshPeers?: (topic: string) => string[] }).getMeshPeers?.(t).length ?? 0]))
    }
  }

  /** Full multiaddrs (ending in /p2p/<peer id>) this node can be dialled on. */
  addresses (): string[] {
    return this.node.getMultiaddrs().map(String)
  }

  peers (): MeshPeer[] {
    const byPeer = new Map<string, Connection[]>()
    for (const c of this.node.getConnections()) {
      if (c.status !== 'open' || !this.isAdmitted(c.remotePeer.toString())) continue
      const id = c.remotePeer.toString()
      byPeer.set(id, [...(byPeer.get(id) ?? []), c])
    }
    return [...byPeer.entries()].map(([peerId, conns]) => ({
      peerId,
      addrs: [...new Set(conns.map(c => c.remoteAddr.toString()))],
      direction: conns[0]?.direction ?? 'outbound',
      openedAt: Math.min(...conns.map(c => c.timeline.open))
    })).sort((a, b) => compareCodeUnits(a.peerId, b.peerId))
  }

  /** Stores a signed record under a `/beemesh/<kind>/<id>` key on this node and the closest peers. */
  async putRecord (key: string, value: Uint8Array, options: AbortOptions & { seq?: number } = {}): Promise<PutResult> {
    const seq = options.seq ?? Math.max(Date.now(), this.lastSeq + 1)
    this.lastSeq = Math.max(this.lastSeq, seq)
    // Records carry the publisher's membership credential, so any member can check who wrote them.
    const record = await encodeRecord(this.init.privateKey, this.peerId, key, value, seq, Date.now(), this.init.membership?.proof() ?? undefined)
    const stored = new Set<string>()
    for await (const event of this.node.services.dht.put(uint8ArrayFromString(key), record, { signal: options.signal })) {
      if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE') stored.add(event.from.toString())
    }
    return { key, seq, replicas: stored.size }
  }

  /** Reads the newest valid record for a key from this node and the closest peers. */
  async getRecord (key: string, options: AbortOptions = {}): Promise<DecodedRecord> {
    const candidates: Uint8Array[] = []
    try {
      for await (const event of this.node.services.dht.get(uint8ArrayFromString(key), { signal: options.signal })) {
        if (event.name === 'VALUE') candidates.push(event.value)
      }
    } catch (err) {
      if (candidates.length === 0) throw new RecordNotFoundError(key, { cause: err })
    }
    const valid: Array<{ bytes: Uint8Array, record: DecodedRecord }> = []
    for (const bytes of candidates) {
      try {
        const record = await decodeRecord(bytes, key)
        await this.init.recordGuard?.(record)
        valid.push({ bytes, record })
      } catch (err) {
        this.log.warn({ key, err: describeError(err) }, 'discarded an invalid DHT record')
      }
    }
    if (valid.length === 0) throw new RecordNotFoundError(key)
    const best = valid[selectRecord(uint8ArrayFromString(key), valid.map(v => v.bytes))]
    return best!.record
  }

  /** Whether this node's own DHT store holds a record for `key` (what it stores for the mesh, not a network lookup). */
  async hasLocalRecord (key: string): Promise<boolean> {
    return await this.datastore.has(dhtRecordKey(key))
  }

  /**
   * Removes a record from this node's own DHT store. Kademlia has no delete:
   * a workload's state records are erased by every node dropping its copy.
   */
  async deleteLocalRecord (key: string): Promise<void> {
    await this.datastore.delete(dhtRecordKey(key))
  }

  /** Announces on the DHT that this node can serve the content `cid`. */
  async provide (cid: CID, options: AbortOptions = {}): Promise<number> {
    // kad-dht 16's provide is a lazy query: nothing is sent until it is iterated.
    let sent = 0
    for await (const event of this.node.services.dht.provide(cid, options)) {
      if (event.name === 'PEER_RESPONSE' && event.messageName === 'ADD_PROVIDER') sent++
    }
    return sent
  }

  /** Peer ids the DHT names as providers of `cid` (this node excluded). */
  async findProviders (cid: CID, options: AbortOptions & { limit?: number } = {}): Promise<string[]> {
    const found = new Set<string>()
    const limit = options.limit ?? 5
    try {
      for await (const event of this.node.services.dht.findProviders(cid, options)) {
        if (event.name !== 'PROVIDER') continue
        for (const p of event.providers) {
          const id = p.id.toString()
          if (id !== this.peerId) found.add(id)
        }
        if (found.size >= limit) break
      }
    } catch (err) {
      if (found.size === 0) throw err
    }
    return [...found]
  }

  private readonly subscriptions = new Map<string, number>()

  isBanned (peerId: string): boolean {
    const until = this.banned.get(peerId)
    if (until == null) return false
    if (until > Date.now()) return true
    this.banned.delete(peerId)
    return false
  }

  /** Hangs up on a peer refused at admission, forgets it, and (when `ban`) refuses it for BAN_MS. */
  private refuse (node: Libp2p<Services>, peerId: string, reason: string, ban: 'refused' | 'slow' | false): void {
    const id = peerIdFromString(peerId)
    if (ban === 'slow') {
      // not proven a non-member: kept in the peer store, refused for a short while
      this.ban(peerId, SLOW_PEER_BAN_MS)
      this.log.warn({ peer: peerId, reason }, `peer did not prove membership in time; refused for ${SLOW_PEER_BAN_MS / 1000} s`)
      node.hangUp(id).catch(() => {})
      return
    }
    if (ban === 'refused') this.ban(peerId)
    this.log.warn({ peer: peerId, reason }, `peer refused at the connection: not a member${ban === 'refused' ? '; refused for 10 minutes' : ''}`)
    node.hangUp(id).catch(() => {}).finally(() => { node.peerStore.delete(id).catch(() => {}) })
  }

  /** At most this many banned peers are remembered; the oldest bans go first (each new key costs an attacker nothing, memory must not). */
  private ban (peerId: string, forMs = BAN_MS): void {
    if (this.banned.size >= 10_000) {
      const now = Date.now()
      for (const [id, until] of this.banned) if (until <= now) this.banned.delete(id)
      while (this.banned.size >= 10_000) this.banned.delete(this.banned.keys().next().value!)
    }
    this.banned.set(peerId, Math.max(this.banned.get(peerId) ?? 0, Date.now() + forMs))
  }

  /** Admitted peers whose credentials have expired since are hung up on (they may come back with a renewed one). */
  private dropExpired (): void {
    const node = this.libp2p
    if (node == null || this.admission == null) return
    for (const id of node.getPeers().map(String).filter(p => this.announced.has(p) && !this.admission!.isAdmitted(p))) {
      this.log.warn({ peer: id }, 'peer\'s membership credential expired: disconnected')
      node.hangUp(peerIdFromString(id)).catch(() => {})
    }
  }

  /** gossipsub only stops listening to a graylisted peer; this also hangs up on it and refuses it for BAN_MS. */
  private dropLowScorers (): void {
    const node = this.libp2p
    if (node == null) return
    for (const peer of node.getPeers()) {
      // The implementation scores peers; the service's interface type does not show it.
      const score = (node.services.pubsub as unknown as { getScore: (id: string) => number }).getScore(peer.toString())
      if (score >= SCORE_THRESHOLDS.graylistThreshold) continue
      const id = peer.toString()
      this.ban(id)
      this.log.warn({ peer: id, score: Math.round(score) }, 'peer sent invalid gossip: scored below the graylist threshold, disconnected and refused for 10 minutes')
      this.init.guard?.onBanned?.(id, score)
      node.hangUp(peer).catch(() => {})
    }
  }

  /** Subscribes to a topic; subscriptions are reference counted, so each subscribe needs one unsubscribe. */
  subscribe (topic: string): void {
    const count = (this.subscriptions.get(topic) ?? 0) + 1
    this.subscriptions.set(topic, count)
    if (count !== 1) return
    const guard = this.init.guard
    const pubsub = this.node.services.pubsub
    if (guard != null) {
      pubsub.topicValidators.set(topic, async (_from, msg) => {
        try {
          this.opened.set(msg.data, await guard.open(topic, msg.data))
          return TopicValidatorResult.Accept
        } catch (err) {
          this.log.debug({ topic, from: _from.toString(), err: describeError(err) }, 'gossip refused')
          return (err as { verdict?: string }).verdict === 'ignore' ? TopicValidatorResult.Ignore : TopicValidatorResult.Reject
        }
      })
    }
    pubsub.subscribe(topic)
  }

  unsubscribe (topic: string): void {
    const count = (this.subscriptions.get(topic) ?? 0) - 1
    if (count > 0) { this.subscriptions.set(topic, count); return }
    if (!this.subscriptions.delete(topic)) return
    if (this.started) {
      this.node.services.pubsub.unsubscribe(topic)
      this.node.services.pubsub.topicValidators.delete(topic)
    }
  }

  /** Peers known to be subscribed to a topic. */
  topicPeers (topic: string): string[] {
    return this.node.services.pubsub.getSubscribers(topic).map(String)
  }

  /** Publishes `data` (sealed by the guard, as this node or as `as`, a workload identity). */
  async publish (topic: string, data: Uint8Array, { as }: { as?: unknown } = {}): Promise<PublishResult> {
    const payload = this.init.guard != null ? await this.init.guard.seal(topic, data, as) : data
    const { recipients } = await this.node.services.pubsub.publish(topic, payload)
    return { topic, recipients: recipients.map(String), sealed: payload }
  }

  /**
   * Checks a message sealed for `topic` that reached this node some other way
   * than gossip (relayed by a peer), as the topic validator would: the guard
   * verifies the author's signature, credential and freshness (`maxAgeMs`,
   * else the gossip window). It is not entered in the replay window (the same
   * message may still come by gossip): only idempotent state (heartbeats) may
   * be taken this way. `ts` is when the author signed it.
   */
  async openSealed (topic: string, sealed: Uint8Array, { maxAgeMs }: { maxAgeMs?: number } = {}): Promise<{ data: Uint8Array, sender?: MessageSender, ts?: number }> {
    if (this.init.guard == null) return { data: sealed }
    return await this.init.guard.open(topic, sealed, { relayed: true, ...(maxAgeMs != null ? { maxAgeMs } : {}) })
  }

  /** Serves a `/beemesh/<name>/1.0.0` stream protocol. */
  async handle (protocol: string, handler: StreamHandler, options?: { maxInboundStreams?: number, maxOutboundStreams?: number }): Promise<void> {
    await this.node.handle(protocol, handler, options)
  }

  /** Opens a stream to a peer (peer id or full multiaddr) on a protocol. */
  async dialProtocol (peer: string, protocol: string, options: AbortOptions & { negotiateFully?: boolean } = {}): Promise<Stream> {
    const target = peer.startsWith('/') ? parseMultiaddr(peer, { requirePeerId: true }) : peerIdFromString(peer)
    return await this.node.dialProtocol(target, protocol, options)
  }

  /** A dispatch that never lets a listener's exception reach libp2p's internals. */
  private safeDispatch<K extends keyof MeshNodeEvents> (type: K, detail: MeshNodeEvents[K] extends CustomEvent<infer D> ? D : never): void {
    try {
      this.safeDispatchEvent(type, { detail })
    } catch (err) {
      this.log.error({ type, err: describeError(err) }, 'mesh event listener failed')
    }
  }
}

/** The leaf errors under an error (AggregateError members, causes). */
function flattenErrors (err: unknown, depth = 0): Error[] {
  if (!(err instanceof Error) || depth > 4) return []
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.flatMap(e => flattenErrors(e, depth + 1))
  if (err.cause instanceof Error) return flattenErrors(err.cause, depth + 1)
  return [err]
}

function peerIdOf (privateKey: PrivateKey): string {
  return peerIdFromPrivateKey(privateKey).toString()
}

/** Where kad-dht 16 keeps a record in the libp2p datastore: `/dht/record/<base32 of the key>`. */
function dhtRecordKey (key: string): Key {
  return new Key(`/dht/record/${uint8ArrayToString(uint8ArrayFromString(key), 'base32')}`, false)
}
