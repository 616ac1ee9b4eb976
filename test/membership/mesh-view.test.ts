import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MeshView } from '../../src/membership/mesh-view.js'
import type { Heartbeat } from '../../src/protocol/messages.js'

const SELF = '12D3KooWSelfSelfSelfSelfSelfSelfSelfSelfSelfSelf'
const PEER = '12D3KooWPeerPeerPeerPeerPeerPeerPeerPeerPeerPeer'

function heartbeat (replicas: Heartbeat['replicas'], peerId = PEER): Heartbeat {
  return { type: 'heartbeat', peerId, ts: 0, labels: {}, capacity: { cpuMillis: 1000, memoryBytes: 1 }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 1, capabilities: [], replicas }
}

test('a stale heartbeat arriving after a started announcement does not downgrade the replica', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat(heartbeat([]))
  view.announce({ workloadId: 'default/a', peerId: PEER, replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 })
  now += 10
  view.onHeartbeat(heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'starting', handled: 0, failures: 0 }]))
  assert.equal(view.remoteReplicas('default/a').map(r => r.status), ['running'])
})

test('a higher epoch wins over a later status of an older epoch', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat(heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'running', handled: 5, failures: 0 }]))
  view.announce({ workloadId: 'default/a', peerId: PEER, replica: 0, epoch: 2, status: 'starting', handled: 0, failures: 0 })
  now += 10
  assert.equal(view.remoteReplicas('default/a').map(r => [r.epoch, r.status]), [[2, 'starting']])
})

test('liveness: a peer is dead after the heartbeat timeout or a disconnect, alive again on its next heartbeat', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat(heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]))
  assert.ok(view.isLive(PEER))
  now += 3_501
  assert.not.ok(view.isLive(PEER))
  assert.equal(view.remoteReplicas('default/a'), [], 'replicas of dead peers are not counted')
  view.onHeartbeat(heartbeat([]))
  assert.ok(view.isLive(PEER))
  view.onDisconnect(PEER)
  assert.not.ok(view.isLive(PEER))
  now += 1
  view.onHeartbeat(heartbeat([]))
  assert.ok(view.isLive(PEER))
  assert.equal(view.livePeerIds(), [SELF, PEER])
})

test('what was announced of a node dies with it: restarted under the same id, it does not count as running it', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat(heartbeat([]))
  view.announce({ workloadId: 'default/a', peerId: PEER, replica: 0, epoch: 4, status: 'running', handled: 0, failures: 0 })
  assert.equal(view.remoteReplicas('default/a').map(r => r.epoch), [4])
  // Killed: the connection dropped and the dial back was refused.
  now += 50
  view.onDisconnect(PEER)
  assert.equal(view.remoteReplicas('default/a'), [])
  // Back within the announcement's lifetime, running nothing: its guardians must see replica 0 missing.
  now += 1_000
  view.onHeartbeat(heartbeat([]))
  assert.ok(view.isLive(PEER))
  assert.equal(view.remoteReplicas('default/a'), [])
  assert.is(view.lastHost('default/a', 0), undefined)
})

test('announcements expire once heartbeats have had time to cover them', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat(heartbeat([]))
  view.announce({ workloadId: 'default/a', peerId: PEER, replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 })
  now += 3_600
  view.onHeartbeat(heartbeat([]))
  assert.equal(view.remoteReplicas('default/a'), [])
})

test('a replica missing from a peer\'s next heartbeat is gone from the view; other peers\' replicas stay', () => {
  const OTHER = '12D3KooWOtherOtherOtherOtherOtherOtherOtherOther'
  const view = new MeshView(SELF, 3_500, () => 1_000)
  view.onHeartbeat(heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }, { workloadId: 'default/b', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]))
  view.onHeartbeat(heartbeat([{ workloadId: 'default/a', replica: 1, epoch: 1, status: 'running', handled: 0, failures: 0 }], OTHER))
  assert.equal(view.remoteReplicas('default/a').map(r => r.peerId).sort(), [OTHER, PEER].sort())
  view.onHeartbeat(heartbeat([{ workloadId: 'default/b', replica: 0, epoch: 1, status: 'running', handled: 3, failures: 0 }]))
  assert.equal(view.remoteReplicas('default/a').map(r => [r.peerId, r.replica]), [[OTHER, 1]])
  assert.equal(view.remoteReplicas('default/b').map(r => r.handled), [3])
})

test('a peer\'s timeout is 3.5 of the heartbeat interval it announces, never less than this node\'s', () => {
  let now = 1_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat({ ...heartbeat([]), intervalMs: 10_000 })
  assert.is(view.timeoutOf(PEER), 35_000)
  now += 30_000
  assert.ok(view.isLive(PEER), 'a 50-node mesh heartbeats every ~17 s: silence shorter than 3.5 intervals is not death')
  now += 5_001
  assert.not.ok(view.isLive(PEER))
  assert.match(view.lossReason(PEER), /no heartbeat for 35000 ms/)
  view.onHeartbeat({ ...heartbeat([]), intervalMs: 500 })
  assert.is(view.timeoutOf(PEER), 3_500)
})

test('a peer-down report makes a peer dead until its next heartbeat, and says who reported it', () => {
  let now = 1_000
  const REPORTER = '12D3KooWRepoRepoRepoRepoRepoRepoRepoRepoRepoRepo'
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat({ ...heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]), intervalMs: 10_000 })
  assert.not.ok(view.reportedDown(PEER))
  now += 5
  view.onDisconnect(PEER, REPORTER)
  assert.not.ok(view.isLive(PEER))
  assert.ok(view.reportedDown(PEER))
  assert.is(view.lossReason(PEER), `reported down by ${REPORTER}`)
  assert.equal(view.remoteReplicas('default/a'), [])
  now += 5
  view.onHeartbeat({ ...heartbeat([]), ts: 1 })
  assert.ok(view.isLive(PEER), 'its own heartbeat refutes the report')
  assert.not.ok(view.reportedDown(PEER))
  view.onDisconnect(PEER)
  assert.is(view.lossReason(PEER), 'its connection dropped')
  view.onReconnect(PEER)
  assert.ok(view.isLive(PEER))
})

test('a relayed heartbeat older than the one held is ignored; a newer one is taken with its sealed bytes', () => {
  let now = 10_000
  const view = new MeshView(SELF, 3_500, () => now)
  view.onHeartbeat({ ...heartbeat([]), ts: 500 })
  view.onHeartbeat({ ...heartbeat([{ workloadId: 'default/a', replica: 0, epoch: 1, status: 'running', handled: 0, failures: 0 }]), ts: 400 }, { seenAt: now - 2_000 })
  assert.equal(view.remoteReplicas('default/a'), [], 'older (by the author\'s clock and by when it was heard) than what is held')
  const sealed = new Uint8Array([1, 2, 3])
  now += 100
  view.onHeartbeat({ ...heartbeat([]), ts: 600 }, { sealed, seenAt: now - 50 })
  assert.is(view.livePeers()[0]?.sealed, sealed)
  assert.is(view.lastSeen(PEER), now - 50)
})

test.run()
