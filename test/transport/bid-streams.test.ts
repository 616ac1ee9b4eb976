/**
 * A tenderer hears every bidder's answer to each of its open tenders at once:
 * a hundred sealed bids in flight on one connection to a real node process are
 * all answered (libp2p's default of 32 streams a protocol per connection
 * refused some with "Cannot write to a stream that is closed").
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { issueCredential, keyId } from '../../src/policy/credentials.js'
import { Trust } from '../../src/policy/trust.js'
import { BID_PROTOCOL, BID_STREAMS } from '../../src/protocol/messages.js'
import { presentingGate } from '../../src/transport/admission.js'
import { MeshNode } from '../../src/transport/mesh-node.js'
import { silentLogger } from '../../src/transport/logger.js'
import { callRpc, sealingGuard, serveRpc, setRpcGuard } from '../../src/transport/rpc.js'
import { startNode, testTrust, waitUntil, type NodeProcess } from '../helpers/processes.js'

let node: NodeProcess | undefined
let caller: MeshNode | undefined

test.after(async () => {
  await caller?.stop()
  await node?.kill('SIGKILL')
})

test('100 sealed bids in flight on one connection are all answered', async () => {
  node = await startNode()
  const root = await testTrust()
  const key = await generateKeyPair('Ed25519')
  const credential = await issueCredential(root.rootKey, keyId(key))
  const trust = new Trust({ root: root.root, key, credential })
  await trust.start()
  caller = new MeshNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [node.address], membership: presentingGate(credential) })
  await caller.start()
  setRpcGuard(caller, sealingGuard(trust))
  // Every node serves the bid protocol as the node does, which is also what sets its outbound limit.
  await serveRpc(caller, BID_PROTOCOL, async () => ({}), silentLogger, { maxInboundStreams: BID_STREAMS })
  const bid = (i: number): unknown => ({ type: 'bid', tenderId: `no-such-tender-${i}`, attempt: 1, peerId: caller!.peerId, score: 1 })
  await waitUntil(async () => { await callRpc(caller!, node!.peerId, BID_PROTOCOL, bid(0), { timeoutMs: 2_000 }); return true }, { timeoutMs: 30_000, what: 'the node to answer a signed bid' })
  for (let round = 0; round < 3; round++) {
    const results = await Promise.allSettled(Array.from({ length: 100 }, async (_, i) => await callRpc(caller!, node!.peerId, BID_PROTOCOL, bid(round * 100 + i), { timeoutMs: 20_000 })))
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map(r => String(r.reason))
    assert.equal(refused, [], `round ${round}: ${refused.length} of 100 refused`)
  }
  assert.equal(caller.peers().find(p => p.peerId === node!.peerId)?.addrs.length, 1, 'all on one connection')
})

test.run()
