/**
 * The mesh issue's acceptance, with three real `beemesh node start` processes
 * on TCP loopback, driven through the CLI like a user would.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { cli, recordRoundTrip, startCli, startMesh, startNode, waitUntil, type NodeProcess } from './helpers/processes.js'

let nodes: NodeProcess[] = []

test.before(async () => {
  nodes = await startMesh(3)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

test('each node sees the other two as peers (beemesh peers -o json)', async () => {
  for (const node of nodes) {
    const { code, stdout, stderr } = await cli(['peers', '-o', 'json', '--api', node.apiUrl])
    assert.is(code, 0, stderr)
    const peers = JSON.parse(stdout) as Array<{ peerId: string }>
    const expected = nodes.filter(n => n !== node).map(n => n.peerId).sort()
    assert.equal(peers.map(p => p.peerId).sort(), expected)
  }
})

test('a DHT record put on node 1 is read on node 3', async () => {
  await recordRoundTrip(nodes[0]!, nodes[2]!, `/beemesh/test/${Date.now()}`, 'hello from node 1')
})

test('a gossip message published on node 3 arrives on node 1', async () => {
  const topic = `greetings-${Date.now()}`
  const sub = startCli(['subscribe', topic, '--count', '1', '--api', nodes[0]!.apiUrl])
  await sub.waitForOutput(/subscribed/, { stream: 'stderr' })
  await waitUntil(async () => (await nodes[2]!.api.request<string[]>(`/v1/topics/${topic}/peers`)).includes(nodes[0]!.peerId), { what: 'node 3 to learn that node 1 subscribed' })
  const pub = await cli(['publish', topic, '{"hello":"from node 3","n":42}', '--api', nodes[2]!.apiUrl])
  assert.is(pub.code, 0, pub.stderr)
  const line = await sub.waitForOutput(/^\{.*\}$/m)
  const msg = JSON.parse(line[0])
  assert.equal(msg.data, { hello: 'from node 3', n: 42 })
  assert.is(msg.from, nodes[2]!.peerId)
  assert.is(await sub.exited, 0)
})

test('after SIGKILL of node 2 the others drop it; restarted on its data dir it has the same peer id and rejoins', async () => {
  const victim = nodes[1]!
  await victim.kill('SIGKILL')
  const others = [nodes[0]!, nodes[2]!]
  for (const node of others) {
    await waitUntil(async () => !(await node.peers()).some(p => p.peerId === victim.peerId), { timeoutMs: 10_000, what: `${node.peerId} to drop the killed peer` })
  }
  // The whole mesh's bootstrap list, its own address included (one list for every node): it skips itself.
  const restarted = await startNode({ dataDir: victim.dataDir, bootstrap: nodes.map(n => n.address) })
  nodes[1] = restarted
  assert.is(restarted.peerId, victim.peerId)
  for (const node of nodes) {
    await waitUntil(async () => (await node.peers()).length === 2, { timeoutMs: 15_000, what: `${node.peerId} to see 2 peers again` })
  }
  assert.not.match(restarted.stderr(), /unreachable, retrying|dial self/i, 'it never dials itself')
  const seen = (await nodes[2]!.peers()).map(p => p.peerId)
  assert.ok(seen.includes(victim.peerId), 'node 3 sees the restarted node 2')
})

test.run()
