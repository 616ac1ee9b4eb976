import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MeshView } from '../../src/actors/mesh-view.js'
import type { Heartbeat } from '../../src/actors/protocol.js'

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

test.run()
