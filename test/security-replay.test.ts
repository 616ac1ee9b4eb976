/**
 * The replay window cannot be flushed: a real node, four member peers in their
 * own processes (test/fixtures/security/rogue.ts, compromised members), one of
 * which keeps a sealed RPC request it sent; then all four send the node other
 * genuine sealed messages, then the kept request is sent again, byte for byte.
 * The node refuses it as a replay, and its metrics show every other message in
 * its window (nothing was forgotten to make room).
 *
 * How many others: 200,000, as the zero-trust issue asks (REPLAY_OTHERS to
 * change it). Gossip is best effort, so the flooders send 5% more and the
 * node's window must hold at least that many besides the kept request. The
 * flood goes in rounds of CHUNK messages (REPLAY_PER_SECOND per flooder within
 * a round, 400 by default): before the next round the node's window must have
 * taken all but one round of what was sent, so a slower machine makes the
 * test slower, not wrong. The node's message window (`--message-max-age`) is
 * set to hold the whole flood. About 2½ minutes on 2 quiet cores.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, issueCredential, writeKeyFile } from '../src/policy/credentials.js'
import { metric, type NodeProcess, startNode, tempDir, testTrust, waitUntil } from './helpers/processes.js'
import { startRogue, type Rogue } from './helpers/rogue.js'

const OTHERS = Number(process.env.REPLAY_OTHERS ?? 200_000)
/** What the flooders send: gossip may drop a few under a flood. */
const SENT = Math.ceil(OTHERS * 1.05)
const FLOODERS = 4
/** Per flooder: together (1,600 a second) what one node opens on this 2-core machine beside four flooders, with its API still answering. */
const PER_SECOND = Number(process.env.REPLAY_PER_SECOND ?? 400)
/** The flood's duration at that pace, and a minute more: the node remembers messages this long. */
/** Messages per round, from all flooders together. */
const CHUNK = 10_000
/** The flood at that pace, with time for the rounds' waits, and two minutes more: the node remembers messages this long. */
const WINDOW_S = Math.ceil(SENT / (FLOODERS * PER_SECOND)) * 2 + 120

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
  // the first member keeps its request; then all four flood, round by round
  const keeper = startRogue([node.address, 'replay-flood', members[0]!.credFile, members[0]!.keyFile, String(PER_SECOND), node.peerId], { stdin: true })
  rogues.push(keeper)
  assert.equal((await keeper.event('first', 30_000)).answer, 'ok', 'the first request is answered')
  rogues.push(...members.slice(1).map(m => startRogue([node!.address, 'replay-flood', m.credFile, m.keyFile, String(PER_SECOND)], { stdin: true })))
  const window = async (): Promise<number> => await metric(node!, 'beemesh_replay_window_messages') - before
  const each = Math.ceil(CHUNK / FLOODERS)
  let sent = 0
  const t0 = Date.now()
  while (sent < SENT) {
    for (const r of rogues) r.child.stdin!.write(`flood ${each}\n`)
    sent += each * FLOODERS
    const total = sent / FLOODERS
    await Promise.all(rogues.map(async r => await r.waitForOutput(new RegExp(`"event":"sent","total":${total},`), { timeoutMs: 60_000 + (each * 2_000) / PER_SECOND })))
    // Backpressure: the node must have taken in all but one round before the next one goes out.
    await waitUntil(async () => await window() >= sent - CHUNK, { timeoutMs: 60_000, intervalMs: 500, what: `the node's window to take ${sent - CHUNK} of the ${sent} messages sent` })
  }
  // Gossip is best effort: a few messages may be dropped on the way (gossipsub's queues),
  // so the window is read once it has stopped growing, and what it took is what the replay comes after.
  let last = -1
  let steady = 0
  const inWindow = await waitUntil(async () => {
    const n = await window()
    if (process.env.REPLAY_VERBOSE != null) console.log(`  window ${n}`)
    steady = n === last ? steady + 1 : 0
    last = n
    return n >= sent + 1 || steady >= 4 ? n : undefined
  }, { timeoutMs: 60_000, intervalMs: 1_000, what: `the node's replay window to take the whole flood of ${sent}` })
  console.log(`  the node took ${inWindow} of the ${sent} messages sent into its replay window, in ${Date.now() - t0} ms`)
  assert.ok(inWindow >= OTHERS + 1, `the node took ${inWindow} of the ${sent} messages sent into its window: at least ${OTHERS} and the kept request must be there`)
  keeper.child.stdin!.write('replay\n')
  const replay = await keeper.event('replayed', 30_000)
  assert.match(String(replay.answer), /^refused: .*seen before \(replay\)/, `the replay is refused as one (${String(replay.answer)})`)
  assert.is(await metric(node, 'beemesh_security_refusals_total', { what: '/beemesh/view/1.0.0', reason: 'replayed' }), replayedBefore + 1)
  assert.match((await node.status()).state, /^running/)
})

test.run()
