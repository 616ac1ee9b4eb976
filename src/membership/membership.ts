/**
 * The membership plane of one node: who is alive, as every node decides it
 * for itself. It heartbeats this node (what it runs, what it has free, what
 * it can run), takes the heartbeats of others into its MeshView, notices a
 * lost peer by a dropped connection that cannot be dialled back (and tells
 * the mesh with a peer-down report) or by silence (then hangs up on it), and
 * lets a newcomer ask a peer for its whole view (VIEW_PROTOCOL) instead of
 * waiting a heartbeat interval.
 *
 * What it needs of the node comes in through MembershipInit: the transport
 * (an interface a MeshNode satisfies), what to put in a heartbeat, and what to
 * do with one. Time and randomness are inputs too, so a test drives it with a
 * fake mesh and its own clock (test/membership/membership.test.ts).
 */
import { describeError } from '../errors.js'
import { decodeMessage, encodeMessage, HEARTBEAT_TOPIC, HeartbeatTopicMessage, ViewReply, type Heartbeat, type PeerDown } from '../protocol/messages.js'
import type { Logger } from '../transport/logger.js'
import { MeshView, MISSED_HEARTBEATS } from './mesh-view.js'

/**
 * The heartbeat interval grows with the mesh: `heartbeatMs` up to this many
 * live nodes, then in proportion, so the mesh as a whole sends about this many
 * heartbeats per `heartbeatMs` (every node relays every heartbeat, so a fixed
 * interval costs each node O(n) and the mesh O(n²)). Losses are seen sooner
 * through dropped connections and peer-down reports than through timeouts.
 */
export const HEARTBEAT_NODES_PER_INTERVAL = 3
/**
 * Past this many live nodes the mesh-wide rate falls too, as (n / this)²…,
 * down to one heartbeat per MAX_HEARTBEAT_INTERVAL_MS per node: what every
 * node pays at rest is mostly relaying others' heartbeats (each one is
 * received about D times and forwarded D-1 times), and a large mesh learns
 * of crashed nodes from dropped connections and peer-down reports, not from
 * silence. At 100 nodes: one heartbeat every 120 s per node, 0.8 a second in
 * the whole mesh (3.3 at 10 nodes), and a node that hangs without dropping
 * its connections is timed out after 7 minutes.
 */
export const HEARTBEAT_SLOWDOWN_FROM_NODES = 10
export const MAX_HEARTBEAT_INTERVAL_MS = 120_000

/** The heartbeat interval of a node that sees `nodes` live peers: see HEARTBEAT_NODES_PER_INTERVAL. */
export function heartbeatIntervalFor (nodes: number, heartbeatMs: number): number {
  const linear = nodes / HEARTBEAT_NODES_PER_INTERVAL
  const slower = linear * Math.max(1, nodes / HEARTBEAT_SLOWDOWN_FROM_NODES)
  return Math.round(Math.max(heartbeatMs, Math.min(heartbeatMs * slower, MAX_HEARTBEAT_INTERVAL_MS)))
}
/** A node whose replicas changed heartbeats early, at most 4 times per interval. */
const EARLY_HEARTBEAT_GAP = 0.25
/** A newcomer asks a peer for its view of the mesh (VIEW_PROTOCOL) rather than waiting a heartbeat interval: again after this long if that failed. */
const VIEW_SYNC_RETRY_MS = 2_000
/**
 * A heartbeat in a peer's view reply is taken up to this old: the longest
 * any node stays live on one heartbeat (MISSED_HEARTBEATS of the longest
 * interval), not gossip's 30 s freshness window. It is state, not an action:
 * checked like gossip (author's signature and credential) but not entered in
 * the replay window, and heard no later than its author signed it, so a peer
 * relaying an old one cannot keep its author live for longer than it was.
 */
export const VIEW_HEARTBEAT_MAX_AGE_MS = MISSED_HEARTBEATS * MAX_HEARTBEAT_INTERVAL_MS
/** What one view reply may carry (a frame is at most 1 MiB). */
const VIEW_REPLY_MAX_BYTES = 900 * 1024
/** How long a node that lost its connection to a peer tries to dial it back (see checkDown). */
const PEER_DOWN_CHECK_MS = 3_000

/** What membership uses of the mesh transport (MeshNode has it all). */
export interface MembershipMesh {
  readonly peerId: string
  readonly started: boolean
  peers: () => Array<{ peerId: string }>
  topicPeers: (topic: string) => string[]
  isConnected: (peerId: string) => boolean
  /** Dials the peer back: `refused` when its host answers but nothing listens (the process is gone). */
  reachable: (peerId: string, timeoutMs: number) => Promise<'yes' | 'refused' | 'unknown'>
  hangUp: (peerId: string) => Promise<void>
  /** Publishes; resolves with what went out as sealed, and who it reached. */
  publish: (topic: string, data: Uint8Array) => Promise<{ sealed: Uint8Array, recipients: string[] }>
  /** Checks a sealed message as if it came by gossip on `topic` (up to `maxAgeMs` old); `ts`: when its author sealed it. */
  openSealed: (topic: string, sealed: Uint8Array, options?: { maxAgeMs?: number }) => Promise<{ data: Uint8Array, sender?: unknown, ts?: number }>
}

/** What this node's heartbeat says of it, read when one is due. */
export interface HeartbeatContent {
  replicas: Heartbeat['replicas']
  allocated: Heartbeat['allocated']
  capabilities: string[]
  labels: Heartbeat['labels']
  capacity: Heartbeat['capacity']
  /** The version of the policy in force here. */
  policy: number
}

export interface MembershipInit {
  mesh: MembershipMesh
  log: Logger
  /** The shortest heartbeat interval (a small mesh's). */
  heartbeatMs: number
  /** A peer unheard for this long is no longer live. */
  heartbeatTimeoutMs: number
  /** What to heartbeat now. */
  content: () => HeartbeatContent
  /** Another node's heartbeat was taken into the view (by gossip or from a peer's view). */
  onHeartbeat: (hb: Heartbeat) => void
  /** A peer was found gone (refused redial, or reported down): the guardians should look now. */
  onPeerLost: () => void
  /** Asks a peer for its view (VIEW_PROTOCOL); resolves with the raw reply. */
  askView: (peer: string) => Promise<unknown>
  now?: () => number
  random?: () => number
}

export class Membership {
  readonly view: MeshView
  private readonly mesh: MembershipMesh
  private readonly log: Logger
  private readonly now: () => number
  private readonly random: () => number
  private readonly startedAt: number
  private stopped = false
  private lastHeartbeatAt = 0
  /** The interval announced in the last heartbeat: peers time this node out by it. */
  private announcedInterval = Infinity
  /** The last heartbeat reached no one (the topic mesh was still forming): send the next one early. */
  private lastHeartbeatUnheard = true
  /** What the last heartbeat said (replicas, resources, capabilities, policy): a change heartbeats early. */
  private lastFingerprint = ''
  /** This node's last heartbeat as it went out, sealed (served to newcomers in view replies). */
  private lastSealedHeartbeat?: Uint8Array
  /** The view was taken from a peer (or given up on): until then, asked again every VIEW_SYNC_RETRY_MS. */
  private viewSynced = false
  private nextViewSyncAt = 0
  private viewSyncAttempts = 0
  /** Peers being dialled back after a dropped connection. */
  private readonly checkingDown = new Set<string>()

  constructor (private readonly init: MembershipInit) {
    this.mesh = init.mesh
    this.log = init.log
    this.now = init.now ?? Date.now
    this.random = init.random ?? Math.random
    this.startedAt = this.now()
    this.view = new MeshView(this.mesh.peerId, init.heartbeatTimeoutMs, this.now)
  }

  get selfId (): string {
    return this.mesh.peerId
  }

  /** Ends every duty: no more heartbeats, checks or reports. */
  stop (): void {
    this.stopped = true
  }

  /** Peer ids this node has an open connection to, sorted. */
  links (): string[] {
    return [...new Set(this.mesh.peers().map(p => p.peerId))].sort()
  }

  /** This node's heartbeat interval now: see HEARTBEAT_NODES_PER_INTERVAL. */
  heartbeatInterval (): number {
    return heartbeatIntervalFor(this.view.livePeerIds().length, this.init.heartbeatMs)
  }

  /**
   * Called often (every 250 ms at most): heartbeats when the interval is up,
   * when the last one reached no one, or early (at most 4 times an interval)
   * when what this node reports changed; asks for a view until it has one.
   */
  tick (): void {
    if (this.stopped || !this.mesh.started) return
    const now = this.now()
    if (!this.viewSynced && now >= this.nextViewSyncAt) void this.syncView()
    const since = now - this.lastHeartbeatAt
    const next = this.heartbeatInterval()
    const interval = Math.min(next, this.announcedInterval)
    if (since >= interval) { this.heartbeat(undefined, next); return }
    if (this.lastHeartbeatUnheard && this.mesh.topicPeers(HEARTBEAT_TOPIC).length > 0) { this.heartbeat(undefined, next); return }
    if (since < EARLY_HEARTBEAT_GAP * interval) return
    const content = this.read()
    if (content.fingerprint !== this.lastFingerprint) this.heartbeat(content, next)
  }

  /** Publishes a heartbeat: of `content` when the caller has just read it, announcing `intervalMs` until the next. */
  heartbeat (content: HeartbeatContent & { fingerprint: string } = this.read(), intervalMs = this.heartbeatInterval()): void {
    if (this.stopped || !this.mesh.started) return
    const now = this.now()
    this.lastHeartbeatAt = now
    this.lastFingerprint = content.fingerprint
    this.announcedInterval = intervalMs
    const hb: Heartbeat = {
      type: 'heartbeat',
      peerId: this.selfId,
      ts: now,
      labels: content.labels,
      capacity: content.capacity,
      allocated: content.allocated,
      uptimeMs: now - this.startedAt,
      capabilities: content.capabilities,
      replicas: content.replicas,
      policy: content.policy,
      links: this.links(),
      intervalMs
    }
    this.mesh.publish(HEARTBEAT_TOPIC, encodeMessage(hb)).then(r => {
      this.lastSealedHeartbeat = r.sealed
      this.lastHeartbeatUnheard = r.recipients.length === 0
    }, err => { this.log.debug({ err: describeError(err) }, 'heartbeat publish failed') })
  }

  /** The content with its fingerprint: what peers must hear of soon (replicas, not their counters, resources, capabilities, policy). */
  private read (): HeartbeatContent & { fingerprint: string } {
    const c = this.init.content()
    const fingerprint = JSON.stringify([c.replicas.map(r => [r.workloadId, r.replica, r.epoch, r.status, r.pod?.phase, r.pod?.restarts, r.ready]), c.allocated, c.capabilities, c.policy])
    return { ...c, fingerprint }
  }

  /** A heartbeat of another node (by gossip, or from a peer's view with when it was heard). */
  /** A message on the heartbeat topic, as gossip delivered it: a heartbeat (from its own author only) or a peer-down report. */
  receive (msg: { data: Uint8Array, from: string, sealed?: Uint8Array }): void {
    const m = decodeMessage(HeartbeatTopicMessage, msg.data)
    if (m?.type === 'peer-down') { this.onPeerDown(m, msg.from); return }
    if (m == null || m.peerId !== msg.from) { this.log.debug({ from: msg.from }, 'dropped a malformed heartbeat'); return }
    this.take(m, msg.sealed)
  }

  take (hb: Heartbeat, sealed?: Uint8Array, seenAt?: number): void {
    this.view.onHeartbeat(hb, { ...(sealed != null ? { sealed } : {}), ...(seenAt != null ? { seenAt } : {}) })
    this.init.onHeartbeat(hb)
  }

  /** A connection closed: if the peer was live, dial it back (checkDown). */
  onDisconnect (peer: string): void {
    if (this.view.isLive(peer)) void this.checkDown(peer)
  }

  /**
   * After a dropped connection, dial the peer back. Refused (its host is up but
   * nothing listens: the process is gone): it counts as gone here at once, and
   * the mesh is told, since peers not connected to it would otherwise wait out
   * its heartbeat timeout, which grows with the mesh. Anything else proves
   * nothing (a busy peer, a pruned connection, a partition): its heartbeats
   * decide. Of the peers that saw the drop, one report is enough: each waits a
   * random moment and stays quiet if another reported it first.
   */
  async checkDown (peer: string): Promise<void> {
    if (this.checkingDown.has(peer)) return
    this.checkingDown.add(peer)
    try {
      const reachable = await this.mesh.reachable(peer, PEER_DOWN_CHECK_MS)
      if (this.stopped || reachable !== 'refused' || !this.view.isLive(peer)) return
      this.view.onDisconnect(peer)
      // A lost owner of a machine is re-tendered at once, not at the next guard round.
      setImmediate(() => { try { this.init.onPeerLost() } catch {} })
      await new Promise(resolve => setTimeout(resolve, this.random() * 300).unref())
      if (this.stopped || !this.view.hasDisconnected(peer) || this.view.reportedDown(peer)) return
      const down: PeerDown = { type: 'peer-down', peerId: peer, reporter: this.selfId, ts: this.now() }
      this.log.warn({ peer }, 'connection dropped and dialling the peer back was refused: reporting it down')
      await this.mesh.publish(HEARTBEAT_TOPIC, encodeMessage(down))
    } catch (err) {
      this.log.debug({ peer, err: describeError(err) }, 'peer-down report failed')
    } finally {
      this.checkingDown.delete(peer)
    }
  }

  /**
   * Connections to peers whose heartbeats stopped (3.5 of their intervals) are
   * closed: across a partition a TCP connection stays open until libp2p's ping
   * (every 2 min) fails, and gossipsub would keep it in its topic meshes. A
   * peer that is alive after all is dialled again (discovery, bootstrap, or
   * the next request to it) and heard at its next heartbeat.
   */
  hangUpSilent (): void {
    if (this.stopped || !this.mesh.started) return
    for (const { peerId } of this.mesh.peers()) {
      if (this.view.lastSeen(peerId) == null || this.view.isLive(peerId) || this.view.hasDisconnected(peerId)) continue
      this.log.info({ peer: peerId, reason: this.view.lossReason(peerId) }, 'hanging up on a silent peer')
      this.view.onDisconnect(peerId)
      this.mesh.hangUp(peerId).catch(err => { this.log.debug({ peer: peerId, err: describeError(err) }, 'hang-up failed') })
    }
  }

  /** A peer-down report, from `from` (the authenticated signer of the gossip). */
  onPeerDown (m: PeerDown, from: string): void {
    if (m.reporter !== from) return
    if (m.peerId === this.selfId) {
      // Reported down but alive: say so at once (at most one such heartbeat per early gap).
      if (this.now() - this.lastHeartbeatAt >= EARLY_HEARTBEAT_GAP * this.init.heartbeatMs) this.heartbeat()
      return
    }
    if (this.mesh.isConnected(m.peerId) || !this.view.isLive(m.peerId)) {
      this.view.noteReport(m.peerId)
      return
    }
    this.log.info({ peer: m.peerId, reporter: m.reporter }, 'a peer reported another down')
    this.view.onDisconnect(m.peerId, m.reporter)
    setImmediate(() => { try { this.init.onPeerLost() } catch {} })
  }

  /** VIEW_PROTOCOL, answering: this node's heartbeat and every live peer's, newest first, as sealed by their authors. */
  viewReply (): ViewReply {
    const now = this.now()
    const entries = [
      ...(this.lastSealedHeartbeat != null ? [{ sealed: this.lastSealedHeartbeat, ageMs: now - this.lastHeartbeatAt }] : []),
      ...this.view.livePeers().filter(p => p.sealed != null).map(p => ({ sealed: p.sealed!, ageMs: Math.max(0, now - p.seenAt) })).sort((a, b) => a.ageMs - b.ageMs)
    ]
    const heartbeats: ViewReply['heartbeats'] = []
    let bytes = 0
    for (const e of entries) {
      const sealed = Buffer.from(e.sealed).toString('base64')
      bytes += sealed.length + 32
      if (bytes > VIEW_REPLY_MAX_BYTES) break
      heartbeats.push({ sealed, ageMs: Math.round(e.ageMs) })
    }
    return { heartbeats }
  }

  /**
   * A newcomer (or a restarted node) asks one connected peer for its view: the
   * heartbeats it holds, each checked here as if it came by gossip (author's
   * signature and credential; up to VIEW_HEARTBEAT_MAX_AGE_MS old), instead of
   * waiting for every peer's next heartbeat,
   * which grows with the mesh; this makes a new node see the mesh at once.
   */
  private async syncView (): Promise<void> {
    const peers = this.mesh.peers().map(p => p.peerId)
    if (peers.length === 0) return
    this.nextViewSyncAt = this.now() + VIEW_SYNC_RETRY_MS
    // Two peers, in case one joined just before this node and knows little yet.
    const asked = peers.sort(() => this.random() - 0.5).slice(0, 2)
    await Promise.all(asked.map(async peer => { await this.syncViewFrom(peer) }))
    // Done once every peer this node is connected to is in its view (they are alive, so some
    // peer has their heartbeats); asked again otherwise, at most five rounds.
    const unknown = this.mesh.peers().filter(p => !this.view.isLive(p.peerId)).length
    if (unknown === 0 || ++this.viewSyncAttempts >= 5) this.viewSynced = true
  }

  private async syncViewFrom (peer: string): Promise<void> {
    try {
      const reply = ViewReply.safeParse(await this.init.askView(peer))
      if (!reply.success) throw new Error('malformed view reply')
      const received = this.now()
      let taken = 0
      for (const { sealed, ageMs } of reply.data.heartbeats) {
        if (ageMs > VIEW_HEARTBEAT_MAX_AGE_MS) continue
        const bytes = new Uint8Array(Buffer.from(sealed, 'base64'))
        let opened: { data: Uint8Array, sender?: unknown, ts?: number }
        try {
          opened = await this.mesh.openSealed(HEARTBEAT_TOPIC, bytes, { maxAgeMs: VIEW_HEARTBEAT_MAX_AGE_MS })
        } catch {
          continue // too old, or not genuine: its author's next heartbeat will do
        }
        const hb = decodeMessage(HeartbeatTopicMessage, opened.data)
        const signer = (opened.sender as { node?: string } | undefined)?.node
        if (hb?.type !== 'heartbeat' || (signer != null && signer !== hb.peerId) || hb.peerId === this.selfId) continue
        // Heard when the peer heard it, and never later than its author sealed it.
        this.take(hb, bytes, Math.min(received - ageMs, opened.ts ?? received - ageMs))
        taken++
      }
      this.log.debug({ peer, offered: reply.data.heartbeats.length, taken }, 'took a peer\'s view of the mesh')
    } catch (err) {
      this.log.debug({ peer, err: describeError(err) }, 'view sync failed; asking again shortly')
    }
  }
}
