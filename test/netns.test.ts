/**
 * A real network partition: four `beemesh node start` processes, each in its
 * own Linux network namespace on a test bridge (test/helpers/netns.ts), driven
 * through the CLI and the control API from the root namespace. Cutting the
 * network between {0,1} and {2,3} must mark the far side not ready and stop
 * gossip crossing; healing it must bring the mesh back together by itself.
 * Needs root and iproute2; prints how long detection and re-join took.
 */
import { readlinkSync, realpathSync, statSync } from 'node:fs'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createHosts, netnsUnsupported, startMeshInHosts, type TestNetwork } from './helpers/netns.js'
import { cli, recordRoundTrip, startCli, waitUntil, type NodeProcess, type Running } from './helpers/processes.js'

interface NodeEntry { peerId: string, self: boolean, ready: boolean }

const SIDE_A = [0, 1]
const SIDE_B = [2, 3]
const DETECT_BOUND_MS = 15_000
const REJOIN_BOUND_MS = 20_000

let network: TestNetwork | undefined
let nodes: NodeProcess[] = []
const listeners: Running[] = []

const sideOf = (i: number): number[] => SIDE_A.includes(i) ? SIDE_A : SIDE_B
const nodesView = async (node: NodeProcess): Promise<NodeEntry[]> => await node.api.request<NodeEntry[]>('/v1/nodes', { timeoutMs: 2_000 })
const peerIds = async (node: NodeProcess): Promise<string[]> => (await node.peers()).map(p => p.peerId).sort()
const othersOf = (i: number, among: number[] = nodes.map((_, j) => j)): string[] => among.filter(j => j !== i).map(j => nodes[j]!.peerId).sort()

/** Whether node i's `GET /v1/nodes` shows exactly the nodes `readyIdx` ready and every other one not ready (or absent). */
async function readyMatches (i: number, readyIdx: number[]): Promise<boolean> {
  const view = await nodesView(nodes[i]!)
  return nodes.every((n, j) => (view.find(e => e.peerId === n.peerId)?.ready ?? false) === readyIdx.includes(j))
}

/** Waits until every node satisfies `check`, returning ms from `since` until each did. */
async function timeEach (since: number, check: (i: number) => Promise<boolean>, timeoutMs: number, what: (i: number) => string): Promise<number[]> {
  return await Promise.all(nodes.map(async (_, i) => {
    await waitUntil(async () => await check(i), { timeoutMs: Math.max(1, since + timeoutMs - Date.now()), intervalMs: 100, what: what(i) })
    return Date.now() - since
  }))
}

const fmt = (ms: number[]): string => `${ms.map(m => (m / 1000).toFixed(1)).join(' / ')} s (max ${(Math.max(...ms) / 1000).toFixed(1)} s)`

/** A `beemesh subscribe` on node i, printing every message as a JSON line. */
async function listen (i: number, topic: string): Promise<Running> {
  const sub = startCli(['subscribe', topic, '--api', nodes[i]!.apiUrl])
  listeners.push(sub)
  await sub.waitForOutput(/subscribed/, { stream: 'stderr' })
  return sub
}

const received = (sub: Running, marker: string): boolean => sub.stdout().split('\n').some(l => l.includes(marker))

async function publish (i: number, topic: string, data: unknown): Promise<string[]> {
  const res = await cli(['publish', topic, JSON.stringify(data), '-o', 'json', '--api', nodes[i]!.apiUrl])
  assert.is(res.code, 0, `publish on node ${i}: ${res.stderr}`)
  return (JSON.parse(res.stdout) as { recipients: string[] }).recipients
}

// Network namespaces need root and iproute2 (CI runs as root); without them this file fails, naming why.
const it = test

test.before(async () => {
  const unsupported = netnsUnsupported()
  if (unsupported != null) throw new Error(`network namespaces are not available here: ${unsupported}`)
  network = await createHosts(4)
  nodes = await startMeshInHosts(network)
  // Readiness comes from heartbeats, which start flowing once gossipsub meshes.
  await timeEach(Date.now(), async i => await readyMatches(i, [0, 1, 2, 3]), 20_000, i => `node ${i} to see every node ready`)
})

test.after(async () => {
  for (const sub of listeners) sub.child.kill('SIGKILL')
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await network?.destroy()
})

it('four nodes in four namespaces form a mesh over the bridge', async () => {
  const net = network!
  for (const [i, node] of nodes.entries()) {
    const host = net.hosts[i]!
    // `ip netns exec` execs in place: the spawned pid is node itself, inside the host's namespace.
    const pid = node.child.pid!
    assert.is(realpathSync(readlinkSync(`/proc/${pid}/exe`)), realpathSync(process.execPath), `pid ${pid} is node`)
    assert.is(statSync(`/proc/${pid}/ns/net`).ino, statSync(`/run/netns/${host.name}`).ino, `node ${i} runs in ${host.name}`)
    assert.ok(node.address.startsWith(`/ip4/${host.ip}/tcp/`), node.address)
    assert.ok(node.apiUrl.startsWith(`https://${host.ip}:`), node.apiUrl) // reached from another namespace: TLS only
    const peers = await node.peers()
    assert.equal(peers.map(p => p.peerId).sort(), othersOf(i))
    for (const p of peers) for (const a of p.addrs) assert.ok(a.startsWith(`/ip4/${net.subnet.replace(/\.0\/24$/, '.')}`), `peer address ${a} is on the test subnet`)
  }
})

it('a DHT record put on host 0 is read on host 3', async () => {
  await recordRoundTrip(nodes[0]!, nodes[3]!, `/beemesh/test/netns-${Date.now()}`, 'hello from host 0')
})

it('partition {0,1} | {2,3}: each side sees the other not ready, and gossip does not cross', async () => {
  const net = network!
  const topic = `partition-${Date.now()}`
  const subs = await Promise.all(nodes.map(async (_, i) => await listen(i, topic)))
  await waitUntil(async () => (await nodes[0]!.api.request<string[]>(`/v1/topics/${topic}/peers`)).length === 3, { what: 'node 0 to learn every subscription' })

  const cut = Date.now()
  await net.partition(SIDE_A, SIDE_B)
  const detected = await timeEach(cut, async i => await readyMatches(i, sideOf(i)), DETECT_BOUND_MS, i => `node ${i} to see only its own side ready`)
  console.log(`  partition: far side not ready (heartbeats) after ${fmt(detected)}`)

  // Gossip published on side A reaches side A only; side B's own gossip still flows within B.
  await publish(0, topic, { marker: 'a-during-partition' })
  await waitUntil(() => received(subs[1]!, 'a-during-partition'), { what: 'node 1 (same side) to get the message' })
  await publish(3, topic, { marker: 'b-during-partition' })
  await waitUntil(() => received(subs[2]!, 'b-during-partition'), { what: 'node 2 (same side) to get side B\'s message' })
  assert.not.ok(received(subs[2]!, 'a-during-partition'), 'node 2 got a message published on side A')
  assert.not.ok(received(subs[3]!, 'a-during-partition'), 'node 3 got a message published on side A')
  assert.not.ok(received(subs[0]!, 'b-during-partition'), 'node 0 got a message published on side B')

  // A node hangs up on a peer whose heartbeats stopped (3.5 of its intervals; libp2p's own
  // ping comes every 2 min). Waiting for that makes the heal below a real re-join, not a TCP retransmit.
  const dropped = await timeEach(cut, async i => JSON.stringify(await peerIds(nodes[i]!)) === JSON.stringify(othersOf(i, sideOf(i))), 30_000, i => `node ${i} to drop its connections to the far side`)
  console.log(`  partition: libp2p connections to the far side closed after ${fmt(dropped)}`)
  for (const i of nodes.keys()) assert.ok(await readyMatches(i, sideOf(i)), `node ${i} still sees its own side ready`)
  assert.not.ok(received(subs[2]!, 'a-during-partition') || received(subs[3]!, 'a-during-partition'), 'side B never got side A\'s message')
})

it('heal: every node sees all others ready again, and gossip crosses', async () => {
  const net = network!
  const healed = Date.now()
  await net.heal()
  const ready = await timeEach(healed, async i => await readyMatches(i, [0, 1, 2, 3]), REJOIN_BOUND_MS, i => `node ${i} to see every node ready again`)
  const connected = await timeEach(healed, async i => JSON.stringify(await peerIds(nodes[i]!)) === JSON.stringify(othersOf(i)), REJOIN_BOUND_MS, i => `node ${i} to reconnect to every peer`)
  console.log(`  heal: every node connected to all others after ${fmt(connected)}, all ready after ${fmt(ready)}`)

  const topic = `healed-${Date.now()}`
  const subs = await Promise.all([2, 3].map(async i => await listen(i, topic)))
  await waitUntil(async () => (await nodes[0]!.api.request<string[]>(`/v1/topics/${topic}/peers`)).length === 2, { what: 'node 0 to learn side B\'s subscriptions' })
  const recipients = await publish(0, topic, { marker: 'a-after-heal' })
  assert.ok(recipients.length >= 1, `published to ${JSON.stringify(recipients)}`)
  for (const sub of subs) await waitUntil(() => received(sub, 'a-after-heal'), { what: 'side B to get side A\'s message after heal' })
})

it('SIGTERM reaches the node itself (ip netns exec execs in place): it stops gracefully', async () => {
  const started = Date.now()
  assert.is(await nodes[3]!.kill('SIGTERM'), 0)
  assert.ok(Date.now() - started < 2_000, `stopped in ${Date.now() - started} ms`)
})

test.run()
