/**
 * Warm sandboxes (confine.ts): blank confined children started before their
 * workload is known. What must hold: a replica started from a warm child runs
 * its own code, confined as a cold one; a child is never handed to a second
 * workload (no file a first workload wrote reaches the next); a released pool
 * ends its idle children.
 */
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { descendants, hostConfinement, warmPool } from '../../src/sandbox/confine.js'
import { ReplicaSandbox } from '../../src/sandbox/sandbox.js'
import type { TopicEvent, WorkloadIdentity } from '../../src/workloads/types.js'
import { waitUntil } from '../helpers/processes.js'

const identity = (replica: number): WorkloadIdentity => ({ id: 'default/warm', name: 'warm', namespace: 'default', replica, nodeId: 'node-a', epoch: 1 })

/** Each handler call reports what it sees of /tmp, then leaves a file there. */
const WARM = `
import { readdirSync, writeFileSync } from 'node:fs'
export default {
  name: 'warm',
  kind: 'stateless',
  topics: ['t'],
  async handler (event, ctx) {
    const seen = readdirSync('/tmp').filter(f => !f.startsWith('.beemesh'))
    writeFileSync('/tmp/left-by-' + event.data.n, 'x')
    await ctx.publish('seen', { n: event.data.n, seen, uid: process.getuid(), replica: ctx.workload.replica })
  }
}
`

let artifact = ''

test.before(async () => {
  assert.is(hostConfinement().mode, 'confined', hostConfinement().reason)
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-warm-'))
  artifact = join(dir, 'warm.mjs')
  await writeFile(artifact, WARM)
})

test.after(async () => { await warmPool.release() })

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function event (n: number): TopicEvent {
  return { id: `e${n}`, topic: 't', data: { n }, from: 'peer-x', attempt: 1 }
}

async function runOnce (replica: number, n: number): Promise<{ seen: string[], uid: number, replica: number }> {
  const published: unknown[] = []
  const sandbox = new ReplicaSandbox({
    artifactPath: artifact,
    identity: identity(replica),
    timeoutMs: 5000,
    memoryLimitMb: 64,
    isolation: 'confined',
    onPublish: async (_topic, data) => { published.push(data) },
    onLog: () => {}
  })
  try {
    await sandbox.start()
    const r = await sandbox.invoke(event(n))
    assert.ok(r.ok, JSON.stringify(r))
    assert.is(published.length, 1)
    return published[0] as { seen: string[], uid: number, replica: number }
  } finally {
    await sandbox.stop()
  }
}

test('a retained pool hands out warm children: each replica runs its own code, confined, in a fresh tmpfs', async () => {
  warmPool.retain({ size: 1 })
  const taken = warmPool.counts.taken
  // the first take of a kind is cold and warms the kind
  const first = await runOnce(1, 1)
  assert.equal(first, { n: 1, seen: [], uid: 65534, replica: 1 } as unknown)
  assert.is(warmPool.warm()['worker:64']?.length, 1, 'the kind was warmed after its first take')
  // the next replicas start from warm children, each never used before
  for (let i = 2; i <= 4; i++) {
    const r = await runOnce(i, i)
    assert.equal(r, { n: i, seen: [], uid: 65534, replica: i } as unknown, `replica ${i} saw another workload's files`)
  }
  assert.is(warmPool.counts.taken - taken, 3, 'replicas 2 to 4 started from warm children')
})

test('a released pool ends its idle children, and hands out no more', async () => {
  const pids = warmPool.warm()['worker:64'] ?? []
  assert.is(pids.length, 1, 'a warm child is idle')
  const pid = pids[0] as number
  assert.not.throws(() => process.kill(pid, 0), 'the idle child runs')
  // bubblewrap's own child and the confined node below it, which outlived a kill of bwrap alone once
  const tree = [pid, ...descendants(pid)]
  assert.ok(tree.length >= 2, `bwrap and what it started: ${tree.join(', ')}`)
  await warmPool.release()
  assert.equal(warmPool.warm(), {})
  await waitUntil(() => tree.every(p => !alive(p)), { timeoutMs: 5_000, what: `every process of the sandbox (${tree.join(', ')}) to be gone` })
  assert.is(warmPool.take('worker', 64), undefined, 'a released pool hands out nothing')
  warmPool.retain({ size: 1 }) // test.after releases it again
})

test.run()
