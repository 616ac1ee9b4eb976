/**
 * The scheduler issue's bad inputs, through the CLI and API of a real 2-node
 * mesh: each a clear error naming the problem and a non-zero exit.
 */
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { bearerFor } from '../src/cli/api-client.js'
import { cli, startNode, tempDir, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/workloads'
let nodes: NodeProcess[] = []

test.before(async () => {
  const a = await startNode({ extra: ['--cpu', '2', '--memory', '2Gi'] })
  const b = await startNode({ bootstrap: [a.address], extra: ['--cpu', '2', '--memory', '2Gi', '--label', 'zone=eu'] })
  nodes = [a, b]
  await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === 1, { what: 'the two nodes to connect' })))
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

function errorLine (stderr: string): string {
  return stderr.trim().split('\n').filter(l => l.startsWith('beemesh: error:')).join('\n')
}

test('a module without a default export: the file and what to do', async () => {
  const r = await cli(['apply', `${FIXTURES}/no-default.ts`, '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /no-default\.ts: the module has no default export/)
})

test('a definition with a wrong field: the file and the field', async () => {
  const r = await cli(['apply', `${FIXTURES}/bad-topics.ts`, '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /bad-topics\.ts: topics: /)
})

test('a bundle that does not build: file, line and column', async () => {
  const dir = await tempDir()
  await copyFile(`${FIXTURES}/broken.ts.txt`, join(dir, 'broken.ts'))
  const r = await cli(['apply', join(dir, 'broken.ts'), '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /broken\.ts:8:\d+: /)
})

test('a file that does not exist', async () => {
  const r = await cli(['apply', 'nope/missing.ts', '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /missing\.ts/)
})

test('a workload no node can host: which constraint ruled out which nodes', async () => {
  const r = await cli(['apply', `${FIXTURES}/huge.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /workload default\/huge cannot be placed: 0\/2 nodes can host default\/huge: 2 × insufficient memory \(node \S+: needs 1Ti, [\d.]+\w+ free of 2Gi/)
  const d = await cli(['describe', 'workload', 'huge', '-o', 'json', '--api', nodes[1]!.apiUrl])
  assert.is(d.code, 0, d.stderr)
  const described = JSON.parse(d.stdout)
  assert.is(described.status, 'Unschedulable')
  assert.ok(described.events.some((e: { reason: string }) => e.reason === 'FailedScheduling'))
})

test('node selectors: a label only one node has decides where it lands', async () => {
  const r = await cli(['apply', `${FIXTURES}/eu-only.ts`, '-o', 'json', '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const status = JSON.parse(r.stdout) as WorkloadStatus
  assert.equal(status.placement.map(p => p.peerId), [nodes[1]!.peerId])
})

test('get nodes: every node with its capacity, allocation, labels and replicas, from any node', async () => {
  const b = nodes[1]!
  const seen = await waitUntil(async () => {
    const r = await cli(['get', 'nodes', '-o', 'json', '--api', nodes[0]!.apiUrl])
    assert.is(r.code, 0, r.stderr)
    const list = JSON.parse(r.stdout) as Array<{ peerId: string, ready: boolean, labels: Record<string, string>, capacity: { cpuMillis: number, memoryBytes: number }, allocated: { cpuMillis: number }, replicas: number, capabilities: string[] }>
    const other = list.find(n => n.peerId === b.peerId)
    return list.length === 2 && other?.replicas === 1 ? other : undefined
  }, { what: 'node b to report the eu-only replica in its heartbeat' })
  assert.ok(seen.ready)
  assert.equal(seen.labels, { zone: 'eu' })
  assert.equal(seen.capacity, { cpuMillis: 2000, memoryBytes: 2 * 1024 ** 3 })
  assert.is(seen.allocated.cpuMillis, 100)
  assert.ok(seen.capabilities.includes('code') && seen.capabilities.includes('confined'), String(seen.capabilities))
  const table = await cli(['get', 'nodes', '-o', 'wide', '--api', nodes[0]!.apiUrl])
  // SANDBOX: how each node runs workload code (confined by bubblewrap on this machine)
  assert.match(table.stdout, /NAME\s+STATUS\s+CPU\s+MEMORY\s+REPLICAS\s+SANDBOX\s+AGE\s+LABELS/)
  assert.match(table.stdout, new RegExp(`${b.peerId}\\s+Ready\\s+100m/2 \\(5%\\)\\s+64Mi/2Gi \\(3%\\)\\s+1\\s+confined\\s+\\S+\\s+zone=eu`))
})

test('an artifact whose bytes do not match its hash is refused (422)', async () => {
  const res = await fetch(`${nodes[0]!.apiUrl}/v1/workloads`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${(await bearerFor(nodes[0]!.apiUrl))!}` },
    body: JSON.stringify({
      spec: { id: 'default/forged', name: 'forged', namespace: 'default', kind: 'stateless', topics: ['t'], replicas: 1, resources: { cpuMillis: 100, memoryBytes: 67108864 }, nodeSelector: {}, delivery: 'queue', retries: 0, timeoutMs: 1000, memoryLimitMb: 64, artifact: { sha256: 'a'.repeat(64), size: 5 }, source: 'forged.ts', createdAt: Date.now() },
      artifact: Buffer.from('hello').toString('base64')
    })
  })
  assert.is(res.status, 422)
  assert.match(((await res.json()) as { error: string }).error, /content hash mismatch/)
  const list = await cli(['get', 'workloads', '-o', 'json', '--api', nodes[0]!.apiUrl])
  assert.not.ok((JSON.parse(list.stdout) as WorkloadStatus[]).some(w => w.name === 'forged'), 'nothing half-created')
})

test('a publish to a topic with no actors is reported, not silently lost', async () => {
  const r = await cli(['publish', 'nobody-listens', '{"a":1}', '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 1)
  assert.match(errorLine(r.stderr), /no actor or subscriber listens on topic "nobody-listens"/)
})

test('delete, describe and logs of an unknown workload', async () => {
  for (const args of [['delete', 'workload', 'ghost'], ['describe', 'workload', 'ghost'], ['logs', 'ghost']]) {
    const r = await cli([...args, '--api', nodes[0]!.apiUrl])
    assert.is(r.code, 1, args.join(' '))
    assert.match(errorLine(r.stderr), /workload default\/ghost not found/)
  }
  const bad = await cli(['get', 'pods', '--api', nodes[0]!.apiUrl])
  assert.is(bad.code, 2)
  assert.match(errorLine(bad.stderr), /unknown resource type "pods"/)
})

test('delete of a running workload stops its replicas everywhere', async () => {
  const r = await cli(['delete', 'workload', 'eu-only', '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 0, r.stderr)
  await waitUntil(async () => (await nodes[1]!.status()).replicas === 0, { what: 'the replica on node 2 to stop' })
  const list = await cli(['get', 'workloads', '-o', 'json', '--api', nodes[1]!.apiUrl])
  assert.not.ok((JSON.parse(list.stdout) as WorkloadStatus[]).some(w => w.name === 'eu-only'))
})

test.run()
