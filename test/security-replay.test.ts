/**
 * The replay window cannot be flushed: a real node, four member peers in their
 * own processes (test/fixtures/security/rogue.ts, compromised members), one of
 * which keeps a sealed RPC request it sent; then all four send the node other
 * genuine sealed messages, then the kept request is sent again, byte for byte.
 * The node refuses it as a replay, and its metrics show every other message in
 * its window (nothing was forgotten to make room).
 *
 * How many others: 20,000 (REPLAY_OTHERS to change it; REPLAY_PER_SECOND sets
 * each flooder's pace). The issue names 200,000: that run does not finish on
 * this 2-core machine. The four flooder processes then take about a core and a
 * half between them (2 ms of CPU per message sealed and published, and their
 * memory grows to 400 MB each as the node falls behind), the node about 1 ms
 * per message it opens, and after some 5 minutes of flooding the node's API
 * stops answering within the test's deadline (docs/security.md, "The replay
 * window"). `test/policy/envelope.test.ts` checks the same guard with 200,000
 * entries directly. The flood is paced, and the node's message window
 * (`--message-max-age`) is set to hold the whole flood.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, issueCredential, writeKeyFile } from '../src/policy/credentials.js'
import { metric, type NodeProcess, startNode, tempDir, testTrust, waitUntil } from './helpers/processes.js'
import { startRogue, type Rogue } from './helpers/rogue.js'

const OTHERS = Number(process.env.REPLAY_OTHERS ?? 20_000)
const FLOODERS = 4
/** Per flooder: together what one node verifies a second on this 2-core machine beside four flooders, with its API still answering. */
const PER_SECOND = Number(process.env.REPLAY_PER_SECOND ?? 150)
/** The flood's duration at that pace, and a minute more: the node remembers messages this long. */
const WINDOW_S = Math.ceil(OTHERS / (FLOODERS * PER_SECOND)) + 60

let node: NodeProcess | undefined
const rogues: Rogue[] = []

test.after(async () => {
  for (const r of rogues) r.child.kill('SIGKILL')
  await node?.kill()
})

test(`a replayed request is refused after ${OTHERS.toLocaleString('en')} other messages from four members`, async () => {
  const trust = await testTrust()
  node = await startNode({ extra: ['--message-max-age', String(WINDOW_S)] })
  const dir = await tempDir('beemesh-replay-')
  const members = await Promise.all(Array.from({ length: FLOODERS }, async (_, i) => {
    const keyFile = join(dir, `m${i}.key`)
    const id = await writeKeyFile(keyFile, await generateKey())
    const credFile = join(dir, `m${i}.cred.json`)
    await writeFile(credFile, JSON.stringify(await issueCredential(trust.rootKey, id)))
    return { keyFile, credFile }
  }))
  const before = await metric(node, 'beemesh_replay_window_messages')
  const replayedBefore = await metric(node, 'beemesh_security_refusals_total', { what: '/beemesh/view/1.0.0', reason: 'replayed' })
  const each = OTHERS / FLOODERS
  // the first member keeps its request, then floods; the others only flood
  const keeper = startRogue([node.address, 'replay-flood', members[0]!.credFile, members[0]!.keyFile, String(each), String(PER_SECOND), node.peerId], { stdin: true })
  rogues.push(keeper)
  assert.equal((await keeper.event('first', 30_000)).answer, 'ok', 'the first request is answered')
  rogues.push(...members.slice(1).map(m => startRogue([node!.address, 'replay-flood', m.credFile, m.keyFile, String(each), String(PER_SECOND)])))
  const flooded = await Promise.all(rogues.map(async r => await r.event('flooded', WINDOW_S * 1000)))
  // Gossip is best effort: under a flood a few messages may be dropped on the way (gossipsub's queues),
  // so the window is read once it has stopped growing, and what it took is what the replay comes after.
  let last = -1
  let steady = 0
  const inWindow = await waitUntil(async () => {
    const n = await metric(node!, 'beemesh_replay_window_messages')
    steady = n === last ? steady + 1 : 0
    last = n
    return n - before >= OTHERS + 1 || steady >= 4 ? n : undefined
  }, { timeoutMs: 60_000 + OTHERS / 2, intervalMs: 1_000, what: `the node's replay window to take the flood (flooded in ${flooded.map(f => String(f.ms)).join(', ')} ms)` })
  assert.ok(inWindow - before >= OTHERS / 2, `the node took ${inWindow - before} of the ${OTHERS} messages into its window (gossip drops some under a flood on a busy machine; at least half must arrive)`)
  keeper.child.stdin?.write('go\n')
  const replay = await keeper.event('replayed', 30_000)
  assert.match(String(replay.answer), /^refused: .*seen before \(replay\)/, `the replay is refused as one (${String(replay.answer)})`)
  assert.is(await metric(node, 'beemesh_security_refusals_total', { what: '/beemesh/view/1.0.0', reason: 'replayed' }), replayedBefore + 1)
  assert.match((await node.status()).state, /^running/)
})

test.run()
