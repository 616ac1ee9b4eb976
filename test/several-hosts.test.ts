/**
 * Several hosts, as separate machines would be: three `beemesh node start`
 * processes, each in its own network namespace with its own address on a
 * test bridge (test/helpers/netns.ts), each listening on every interface at
 * the same port (4001, as on real machines) and announcing only its own
 * address. The third node is given only the first as bootstrap: it must find
 * the second through the DHT, by its announced address, and the three must
 * form one mesh that runs work. Needs root and iproute2.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { MachineStateReport } from '../src/protocol/state.js'
import { createHosts, netnsUnsupported, type TestNetwork } from './helpers/netns.js'
import { cli, startNode, waitUntil, type NodeProcess } from './helpers/processes.js'

const PORT = 4001
let network: TestNetwork | undefined
let nodes: NodeProcess[] = []

test.before(async () => {
  const unsupported = netnsUnsupported()
  if (unsupported != null) throw new Error(`network namespaces are not available here: ${unsupported}`)
  network = await createHosts(3)
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await network?.destroy()
})

const announced = (ip: string): string => `/ip4/${ip}/tcp/${PORT}`

test('nodes on separate hosts form one mesh through their announced addresses, found through the DHT', async () => {
  const hosts = network!.hosts
  const start = async (i: number, bootstrap: string[]): Promise<NodeProcess> => await startNode({
    netns: hosts[i]!,
    listen: [`/ip4/0.0.0.0/tcp/${PORT}`],
    extra: ['--announce', announced(hosts[i]!.ip)],
    bootstrap
  })
  const first = await start(0, [])
  nodes.push(first)
  // The address a node prints, and gives to its peers, is the announced one: not 0.0.0.0, not loopback.
  assert.is(first.address, `${announced(hosts[0]!.ip)}/p2p/${first.peerId}`)
  nodes.push(await start(1, [first.address]))
  nodes.push(await start(2, [first.address]))
  const [, second, third] = nodes as [NodeProcess, NodeProcess, NodeProcess]

  // The third node knew only the first; it reaches the second at its announced address.
  const link = await waitUntil(async () => (await third.peers()).find(p => p.peerId === second.peerId), { timeoutMs: 20_000, what: 'the third node to connect to the second, found through the DHT' })
  const secondAddrs = [...link.addrs, ...(await second.peers()).find(p => p.peerId === third.peerId)?.addrs ?? []]
  assert.ok(secondAddrs.some(a => a.startsWith(`/ip4/${hosts[1]!.ip}/tcp/`) || a.startsWith(`/ip4/${hosts[2]!.ip}/tcp/`)), `the link runs between the two hosts' own addresses: ${secondAddrs.join(', ')}`)
  for (const [i, node] of nodes.entries()) {
    const status = await node.status()
    assert.equal(status.addresses.map(a => a.replace(/\/p2p\/.*$/, '')), [announced(hosts[i]!.ip)], `node ${i} announces only its own address`)
    const peers = await node.peers()
    assert.is(peers.length, 2, `node ${i} sees both others`)
    for (const p of peers) assert.ok(p.addrs.every(a => !a.startsWith('/ip4/127.')), `node ${i} reaches ${p.peerId} by its host address, not loopback: ${p.addrs.join(', ')}`)
  }

  // One mesh: every node sees the others ready, and a replicated stateful workload runs across the hosts.
  for (const node of nodes) {
    await waitUntil(async () => (await node.api.request<Array<{ ready: boolean }>>('/v1/nodes', { timeoutMs: 2_000 })).filter(n => n.ready).length === 3, { timeoutMs: 20_000, what: `${node.peerId} to see 3 nodes ready` })
  }
  const applied = await cli(['apply', 'test/fixtures/workloads/machines/counter.ts', '--api', third.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  const sent = await cli(['send', 'counter', 'inc', '--api', first.apiUrl])
  assert.is(sent.code, 0, sent.stderr)
  const state = await second.api.request<MachineStateReport>('/v1/workloads/default/counter/state', { timeoutMs: 10_000 })
  assert.equal(state.context, { count: 1, applied: [] })
  assert.is(state.holders.length, 2, 'replicated to the two other hosts')
})

test.run()
