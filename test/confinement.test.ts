/**
 * Workload code confined by the OS, on real node processes: a stateless
 * workload tries to read the node's identity key, the mesh root key, the
 * node's LevelDB directory and environment, write outside its scratch dir,
 * spawn processes, signal the node and reach its API over TCP. Every attempt
 * fails (as its own log lines, read through the node's API, say), the node
 * stays healthy and the workload keeps handling events. A machine workload is
 * confined the same way. A host that cannot confine refuses workloads unless
 * the node is started with --allow-unconfined.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { LogLine } from '../src/protocol/messages.js'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import { cli, startNode, testTrust, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/workloads/confinement'
const SECRET_NAME = 'BEEMESH_TEST_NODE_SECRET'
const SECRET_VALUE = `s3cret-${process.pid}-${Date.now()}`
const nodes: NodeProcess[] = []

/** Starts a node with `env` added to its environment (the helpers pass the test process's environment on). */
async function startNodeWith (env: Record<string, string>, extra: string[] = []): Promise<NodeProcess> {
  const saved = Object.fromEntries(Object.keys(env).map(k => [k, process.env[k]]))
  Object.assign(process.env, env)
  try {
    const node = await startNode({ extra })
    nodes.push(node)
    return node
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v == null) delete process.env[k]
      else process.env[k] = v
    }
  }
}

async function logLines (node: NodeProcess, name: string): Promise<LogLine[]> {
  return await node.api.request<LogLine[]>(`/v1/workloads/default/${name}/logs`, { timeoutMs: 10_000 })
}

async function publish (node: NodeProcess, topic: string, data: unknown): Promise<void> {
  await node.api.request(`/v1/topics/${topic}/messages`, { method: 'POST', body: { data }, timeoutMs: 10_000 })
}

let node: NodeProcess

test.before(async () => {
  node = await startNodeWith({ [SECRET_NAME]: SECRET_VALUE })
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

test('the node reports that it confines workload code', async () => {
  const status = await node.status()
  assert.equal(status.sandbox, { host: 'confined', isolation: 'confined' })
  const r = await cli(['status', '--api', node.apiUrl])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, /sandbox:\s+confined/)
})

test('a stateless workload cannot reach the node: every attempt fails, the node stays healthy, the workload keeps working', async () => {
  const trust = await testTrust()
  const r = await cli(['apply', `${FIXTURES}/escape.ts`, '--api', node.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const before = await node.status()
  const apiPort = Number(new URL(node.apiUrl).port)
  await publish(node, 'escape', {
    identityKey: join(node.dataDir, 'identity.key'),
    rootKey: trust.rootKeyFile,
    dbDir: join(node.dataDir, 'db'),
    dataDir: node.dataDir,
    secretName: SECRET_NAME,
    secretValue: SECRET_VALUE,
    nodePid: before.pid,
    apiPort,
    n: 0
  })
  const lines = await waitUntil(async () => {
    const all = await logLines(node, 'escape')
    return all.some(l => l.message === 'attempt write-scratch') ? all : undefined
  }, { timeoutMs: 20_000, what: 'the escape workload to log its attempts' })
  const attempts = new Map(lines.filter(l => l.message.startsWith('attempt ')).map(l => [l.message.slice('attempt '.length), l.fields as { ok: boolean, detail: string }]))
  const refused = ['read-identity-key', 'read-root-key', 'list-leveldb', 'node-env', 'write-data-dir', 'write-root', 'spawn-shell', 'spawn-node', 'signal-node', 'tcp-api']
  for (const name of refused) {
    const a = attempts.get(name)
    assert.ok(a != null, `attempt ${name} was logged: ${JSON.stringify([...attempts.keys()])}`)
    assert.is(a.ok, false, `attempt ${name} must fail, got: ${a.detail}`)
  }
  assert.match(attempts.get('node-env')!.detail, /the secret is not visible/)
  assert.match(attempts.get('tcp-api')!.detail, /ECONNREFUSED|ENETUNREACH|timed out/)
  assert.equal(attempts.get('write-scratch'), { ok: true, detail: 'x' }, 'the scratch dir is writable')
  assert.not.ok(existsSync(join(node.dataDir, 'planted')), 'nothing was planted in the data dir')
  assert.not.ok(existsSync('/planted'), 'nothing was planted at /')

  // the node is healthy: same process, its API answers, the workload handles later events
  const after = await node.status()
  assert.is(after.pid, before.pid)
  assert.is(node.child.exitCode, null)
  await publish(node, 'escape', { n: 1 })
  await waitUntil(async () => (await logLines(node, 'escape')).some(l => l.message === 'still handling 1'), { timeoutMs: 10_000, what: 'the workload to handle a later event' })
})

test('a machine workload is confined the same way: it cannot read the node\'s identity key', async () => {
  const r = await cli(['apply', `${FIXTURES}/probe-machine.ts`, '--api', node.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const ack = await node.api.request<Ack>('/v1/workloads/default/probe-machine/events', { method: 'POST', body: { event: { type: 'probe', path: join(node.dataDir, 'identity.key') }, id: 'probe-1' }, timeoutMs: 20_000 })
  assert.ok(ack != null)
  const state = await node.api.request<MachineStateReport>('/v1/workloads/default/probe-machine/state', { timeoutMs: 20_000 })
  assert.match(String((state.context as { outcome: string }).outcome), /^refused: /)
})

test('a host that cannot confine refuses workload code without --allow-unconfined, and says so', async () => {
  // a mesh of its own, so the workload cannot be placed on the confining node
  const refusing = await startNodeWith({ BEEMESH_SANDBOX: 'unconfined' })
  const status = await refusing.status()
  assert.is(status.sandbox.host, 'unconfined')
  assert.is(status.sandbox.isolation, 'refused')
  assert.match(refusing.stderr(), /this host cannot confine workload code/)
  // it does not bid: the apply fails with its reason
  const r = await cli(['apply', `${FIXTURES}/escape.ts`, '--api', refusing.apiUrl], { timeoutMs: 60_000 })
  assert.is.not(r.code, 0, r.stdout)
  assert.match(r.stderr, /cannot be placed: 0\/1 nodes can host default\/escape: 1 × this node cannot confine workload code and was not started with --allow-unconfined/)
  const s = await cli(['status', '--api', refusing.apiUrl])
  assert.match(s.stdout, /sandbox:\s+refused \(host cannot confine: BEEMESH_SANDBOX=unconfined is set\)/)
})

test('--allow-unconfined runs workload code in worker threads, logged loudly', async () => {
  const allowing = await startNodeWith({ BEEMESH_SANDBOX: 'unconfined' }, ['--allow-unconfined'])
  const status = await allowing.status()
  assert.equal(status.sandbox, { host: 'unconfined', isolation: 'thread', reason: 'BEEMESH_SANDBOX=unconfined is set' })
  assert.match(allowing.stderr(), /WORKLOAD CODE IS NOT CONFINED/)
  const r = await cli(['apply', `${FIXTURES}/escape.ts`, '--api', allowing.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  await publish(allowing, 'escape', { n: 7 })
  await waitUntil(async () => (await logLines(allowing, 'escape')).some(l => l.message === 'still handling 7'), { timeoutMs: 10_000, what: 'the unconfined workload to handle an event' })
})

test.run()
