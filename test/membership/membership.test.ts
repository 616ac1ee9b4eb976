/**
 * The membership plane on its own (src/membership/membership.ts), with an
 * in-memory fake of the mesh transport and a clock the test moves: no
 * process, no socket. What a real mesh does with the same code is covered by
 * the multi-process tests (test/mesh-view-sync.test.ts, test/failover*.test.ts,
 * the chaos run).
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeMessage, encodeMessage, HEARTBEAT_TOPIC, HeartbeatTopicMessage, type Heartbeat } from '../../src/protocol/messages.js'
import { heartbeatIntervalFor, MAX_HEARTBEAT_INTERVAL_MS, Membership, VIEW_HEARTBEAT_MAX_AGE_MS, type HeartbeatContent, type MembershipMesh } from '../../src/membership/membership.js'
import { silentLogger } from '../../src/transport/logger.js'

const SELF = '12D3KooWSelfSelfSelfSelf'
const A = '12D3KooWAaaaAaaaAaaaAaaa'
const B = '12D3KooWBbbbBbbbBbbbBbbb'

/** A mesh in memory: who is connected, what redialling a peer answers, and everything published. */
class FakeMesh implements MembershipMesh {
  readonly peerId = SELF
  started = true
  connected = new Set<string>()
  redial: 'yes' | 'refused' | 'unknown' = 'unknown'
  readonly published: Array<{ topic: string, value: unknown }> = []
  readonly hungUp: string[] = []
  /** What a sealed message opens to: here the "seal" is the plain bytes, sealed at the heartbeat's own time; `maxAgeMs` is checked as the trust service does. */
  readonly openedWithMaxAge: Array<number | undefined> = []
  openSealed = async (_topic: string, sealed: Uint8Array, options?: { maxAgeMs?: number }): Promise<{ data: Uint8Array, sender?: unknown, ts?: number }> => {
    const hb = decodeMessage(HeartbeatTopicMessage, sealed)
    this.openedWithMaxAge.push(options?.maxAgeMs)
    if (hb?.type === 'heartbeat' && options?.maxAgeMs != null && hb.ts < this.now() - options.maxAgeMs) throw new Error('stale')
    return { data: sealed, sender: { node: hb?.peerId }, ...(hb?.type === 'heartbeat' ? { ts: hb.ts } : {}) }
  }

  constructor (private readonly now: () => number) {}

  peers (): Array<{ peerId: string }> { return [...this.connected].map(peerId => ({ peerId })) }
  topicPeers (): string[] { return [...this.connected] }
  isConnected (peerId: string): boolean { return this.connected.has(peerId) }
  async reachable (): Promise<'yes' | 'refused' | 'unknown'> { return this.redial }
  async hangUp (peerId: string): Promise<void> { this.hungUp.push(peerId); this.connected.delete(peerId) }
  async publish (topic: string, data: Uint8Array): Promise<{ sealed: Uint8Array, recipients: string[] }> {
    this.published.push({ topic, value: JSON.parse(new TextDecoder().decode(data)) })
    return { sealed: data, recipients: [...this.connected] }
  }

  heartbeats (): Heartbeat[] {
    return this.published.filter(p => (p.value as { type: string }).type === 'heartbeat').map(p => p.value as Heartbeat)
  }
}

interface Harness { mesh: FakeMesh, membership: Membership, clock: { t: number }, content: HeartbeatContent, taken: Heartbeat[], lost: number[], asked: string[] }

function harness ({ view }: { view?: unknown } = {}): Harness {
  const clock = { t: 1_000_000 }
  const mesh = new FakeMesh(() => clock.t)
  const content: HeartbeatContent = { replicas: [], allocated: { cpuMillis: 0, memoryBytes: 0 }, capabilities: ['code'], labels: { zone: 'a' }, capacity: { cpuMillis: 1000, memoryBytes: 1 << 30 }, policy: 1 }
  const taken: Heartbeat[] = []
  const lost: number[] = []
  const asked: string[] = []
  const membership = new Membership({
    mesh,
    log: silentLogger,
    heartbeatMs: 1_000,
    heartbeatTimeoutMs: 3_500,
    content: () => content,
    onHeartbeat: hb => { taken.push(hb) },
    onPeerLost: () => { lost.push(clock.t) },
    askView: async peer => { asked.push(peer); return view ?? { heartbeats: [] } },
    now: () => clock.t,
    random: () => 0
  })
  return { mesh, membership, clock, content, taken, lost, asked }
}

function heartbeatOf (peerId: string, t: number): Heartbeat {
  return { type: 'heartbeat', peerId, ts: t, labels: {}, capacity: { cpuMillis: 1000, memoryBytes: 1 << 30 }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 5, capabilities: [], replicas: [], intervalMs: 1_000 }
}

/** Resolves once the event loop has run what is queued (timers of 0 ms, setImmediate, promises). */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise(resolve => setTimeout(resolve, 0))
}

test('heartbeats say what the node reports, when the interval is up, and early (at most every quarter interval) when it changed', async () => {
  const { mesh, membership, clock, content } = harness()
  mesh.connected.add(A)
  membership.heartbeat()
  await settle() // the publish resolves: it reached A
  const first = mesh.heartbeats()[0]!
  assert.equal([first.peerId, first.labels, first.capabilities, first.policy, first.intervalMs, first.links], [SELF, { zone: 'a' }, ['code'], 1, 1_000, [A]])
  clock.t += 100
  membership.tick()
  assert.is(mesh.heartbeats().length, 1, 'nothing new and not due: no heartbeat')
  content.replicas = [{ workloadId: 'default/w', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]
  membership.tick()
  assert.is(mesh.heartbeats().length, 1, 'a change within the first quarter interval waits')
  clock.t += 200
  membership.tick()
  assert.is(mesh.heartbeats().length, 2, 'a change after a quarter interval goes out early')
  assert.is(mesh.heartbeats()[1]!.replicas.length, 1)
  await settle()
  clock.t += 999
  membership.tick()
  assert.is(mesh.heartbeats().length, 2)
  clock.t += 1
  membership.tick()
  assert.is(mesh.heartbeats().length, 3, 'due after the interval')
})

test('a heartbeat that reached no one is sent again as soon as a peer is there', async () => {
  const { mesh, membership, clock } = harness()
  membership.heartbeat()
  await settle()
  clock.t += 10
  membership.tick()
  assert.is(mesh.heartbeats().length, 1, 'still no peer: wait')
  mesh.connected.add(A)
  membership.tick()
  assert.is(mesh.heartbeats().length, 2)
})

test('the interval grows with the live mesh: three nodes per interval', () => {
  const { membership, clock } = harness()
  assert.is(membership.heartbeatInterval(), 1_000)
  // eight peers and this node
  for (let i = 0; i < 8; i++) membership.take(heartbeatOf(`12D3KooWPeer${i}Peer${i}Peer${i}`, clock.t))
  assert.is(membership.heartbeatInterval(), 3_000)
})

test('past ten nodes the mesh-wide heartbeat rate falls, until each node heartbeats every 120 s', () => {
  // mesh-wide heartbeats a second: n / interval
  const rate = (n: number): number => n / (heartbeatIntervalFor(n, 1_000) / 1_000)
  assert.is(heartbeatIntervalFor(10, 1_000), 3_333)
  assert.ok(Math.abs(rate(10) - 3) < 0.01)
  assert.is(heartbeatIntervalFor(30, 1_000), 30_000)
  assert.is(rate(30), 1)
  assert.is(heartbeatIntervalFor(100, 1_000), MAX_HEARTBEAT_INTERVAL_MS)
  assert.ok(rate(100) < 1)
  // it falls until every node is at the cap (about 60 nodes), and from there grows with n alone
  for (let n = 11; heartbeatIntervalFor(n, 1_000) < MAX_HEARTBEAT_INTERVAL_MS; n++) assert.ok(rate(n) <= rate(n - 1) + 1e-9, `the rate does not rise from ${n - 1} to ${n} nodes`)
  assert.ok(Math.abs(rate(1_000) - 1_000 / 120) < 1e-9)
})

test('a taken heartbeat makes its peer live and reaches the node; silence ends it, and the connection is hung up', () => {
  const { mesh, membership, clock, taken } = harness()
  mesh.connected.add(A)
  membership.take(heartbeatOf(A, clock.t))
  assert.ok(membership.view.isLive(A))
  assert.equal(taken.map(h => h.peerId), [A])
  membership.hangUpSilent()
  assert.equal(mesh.hungUp, [], 'a live peer is kept')
  clock.t += 3_600
  assert.not.ok(membership.view.isLive(A))
  membership.hangUpSilent()
  assert.equal(mesh.hungUp, [A])
})

test('a message on the heartbeat topic: a heartbeat is taken only from its author, junk is dropped', () => {
  const { membership, taken } = harness()
  const bytes = (v: unknown): Uint8Array => encodeMessage(v)
  membership.receive({ data: bytes(heartbeatOf(A, 1)), from: B })
  membership.receive({ data: new TextEncoder().encode('not json'), from: A })
  assert.is(taken.length, 0, 'a heartbeat relayed as someone else, or junk, was taken')
  membership.receive({ data: bytes(heartbeatOf(A, 1)), from: A })
  assert.equal(taken.map(hb => hb.peerId), [A])
  assert.ok(membership.view.isLive(A))
})

test('a dropped connection that cannot be dialled back: the peer is gone here, the guardians are told, the mesh gets one report', async () => {
  const { mesh, membership, clock, lost } = harness()
  membership.take(heartbeatOf(A, clock.t))
  mesh.redial = 'unknown'
  membership.onDisconnect(A)
  await settle()
  assert.ok(membership.view.isLive(A), 'a redial that proves nothing changes nothing')
  assert.equal(lost, [])
  mesh.redial = 'refused'
  membership.onDisconnect(A)
  await settle()
  assert.not.ok(membership.view.isLive(A))
  assert.is(lost.length, 1)
  const reports = mesh.published.filter(p => (p.value as { type: string }).type === 'peer-down')
  assert.equal(reports.map(r => [r.topic, (r.value as { peerId: string, reporter: string }).peerId, (r.value as { reporter: string }).reporter]), [[HEARTBEAT_TOPIC, A, SELF]])
})

test('peer-down reports: about this node, answered with a heartbeat; forged ones ignored; about a connected peer, noted only', async () => {
  const { mesh, membership, clock, lost } = harness()
  membership.heartbeat()
  clock.t += 1_000
  membership.onPeerDown({ type: 'peer-down', peerId: SELF, reporter: A, ts: clock.t }, A)
  assert.is(mesh.heartbeats().length, 2, 'alive: says so at once')
  membership.take(heartbeatOf(B, clock.t))
  membership.onPeerDown({ type: 'peer-down', peerId: B, reporter: A, ts: clock.t }, '12D3KooWMallory00000000')
  assert.ok(membership.view.isLive(B), 'a report relayed under another signer is not the reporter\'s')
  mesh.connected.add(B)
  membership.onPeerDown({ type: 'peer-down', peerId: B, reporter: A, ts: clock.t }, A)
  assert.ok(membership.view.isLive(B), 'this node still has a connection to it')
  mesh.connected.delete(B)
  membership.onPeerDown({ type: 'peer-down', peerId: B, reporter: A, ts: clock.t }, A)
  await settle()
  assert.not.ok(membership.view.isLive(B))
  assert.is(lost.length, 1)
})

test('a newcomer takes a peer\'s view at once; it serves its own view, itself first', async () => {
  const seenByPeer = heartbeatOf(B, 1_000_000)
  const { mesh, membership, clock, taken, asked } = harness({ view: { heartbeats: [{ sealed: Buffer.from(encodeMessage(seenByPeer)).toString('base64'), ageMs: 500 }] } })
  mesh.connected.add(A)
  clock.t += 500
  membership.tick()
  await settle()
  assert.equal(asked, [A])
  assert.equal(taken.map(h => h.peerId), [B])
  assert.is(membership.view.lastSeen(B), clock.t - 500, 'heard when the peer heard it, not now')
  await settle()
  const reply = membership.viewReply()
  const peers = reply.heartbeats.map(h => (JSON.parse(Buffer.from(h.sealed, 'base64').toString()) as Heartbeat).peerId)
  assert.equal(peers, [SELF, B])
})

test('a view reply is taken up to a slow heartbeat\'s lifetime, heard no later than its author sealed it', async () => {
  const t0 = 1_000_000
  // A large mesh: its nodes heartbeat every 120 s, so a peer's view holds heartbeats minutes old.
  const slow = (peerId: string, ts: number): Heartbeat => ({ ...heartbeatOf(peerId, ts), intervalMs: MAX_HEARTBEAT_INTERVAL_MS })
  const C = '12D3KooWCcccCcccCcccCccc'
  const honest = slow(A, t0 - 100_000)
  // A relayer that says it heard an old heartbeat just now, to keep its author live longer.
  const misdated = slow(B, t0 - 300_000)
  const tooOld = slow(C, t0 - VIEW_HEARTBEAT_MAX_AGE_MS - 1_000)
  const entry = (hb: Heartbeat, ageMs: number): { sealed: string, ageMs: number } => ({ sealed: Buffer.from(encodeMessage(hb)).toString('base64'), ageMs })
  const { mesh, membership, taken } = harness({ view: { heartbeats: [entry(honest, 100_000), entry(misdated, 0), entry(tooOld, 0)] } })
  mesh.connected.add(A)
  membership.tick()
  await settle()
  assert.equal(taken.map(h => h.peerId), [A, B], 'the heartbeats of the last 7 minutes are taken, not older ones')
  assert.ok(mesh.openedWithMaxAge.every(m => m === VIEW_HEARTBEAT_MAX_AGE_MS), 'opened with the longer age limit, not gossip\'s 30 s')
  assert.is(membership.view.lastSeen(A), t0 - 100_000)
  assert.is(membership.view.lastSeen(B), t0 - 300_000, 'heard when its author sealed it, whatever the relayer says')
  assert.ok(membership.view.isLive(A) && membership.view.isLive(B), 'both within 3.5 intervals of 120 s')
  assert.not.ok(membership.view.isLive(C))
})

test.run()
