/**
 * The inspector's acceptance with real processes: `beemesh inspect` relays
 * what nodes started with `--inspect` send, and a WebSocket client of the
 * relay (as the inspector page is) receives, for the turnstile's machine
 * running in a worker thread of its owner, exactly the events sent through
 * the CLI and the snapshots they led to; the node and scheduler actors show
 * under ids ending in their node's suffix. A node whose relay is not there
 * runs normally; a relay whose port is taken exits with a message naming it.
 * In process: a MachineSandbox with `onInspect` reports the machine and its
 * invoked child, and an `onInspect` that throws changes nothing.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createRequire } from 'node:module'
import { createServer, type Server } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type { MachineStateReport } from '../src/protocol/state.js'
import type { StatelyInspectionEvent } from '@statelyai/inspect'
import { bundleWorkload } from '../src/bundle/bundler.js'
import { inspection, nodeSuffix, type InspectionRecord } from '../src/actors/inspection.js'
import { MachineSandbox } from '../src/sandbox/machine-sandbox.js'
import { cli, ROOT, startCli, startMesh, startNode, tempDir, waitUntil, type NodeProcess, type Running } from './helpers/processes.js'

const TURNSTILE = 'examples/turnstile/turnstile.ts'
const COUNTER = 'test/fixtures/workloads/machines/counter.ts'
const FETCHER = 'test/fixtures/workloads/machines/fetcher.ts'

/** The part of `ws` (untyped here: no @types/ws) this test uses. */
interface WsClient {
  on: ((event: 'message', listener: (data: Buffer) => void) => void) & ((event: 'open' | 'close', listener: () => void) => void) & ((event: 'error', listener: (err: Error) => void) => void)
  close: () => void
}
const WebSocket = createRequire(import.meta.url)('ws') as new (url: string) => WsClient

/** A Stately inspection event as the relay forwards it. */
interface Received {
  type: string
  sessionId: string
  parentId?: string
  rootId?: string
  event?: { type: string }
  snapshot?: { value?: unknown, status?: string, context?: unknown }
}

/** A relay client that keeps every message and wakes waiters as they arrive. */
class Listener {
  readonly received: Received[] = []
  private readonly waiters = new Set<() => void>()

  constructor (private readonly ws: WsClient) {
    ws.on('message', data => {
      try {
        this.received.push(JSON.parse(data.toString()) as Received)
      } catch {
        return
      }
      for (const w of this.waiters) w()
    })
  }

  static async connect (url: string): Promise<Listener> {
    const ws = new WebSocket(url)
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => { resolve() })
      ws.on('error', reject)
    })
    return new Listener(ws)
  }

  /** Resolves with `check()`'s first truthy value, re-checked on each message; rejects after `timeoutMs`. */
  async until<T> (check: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const test = (): void => {
        const v = check()
        if (v != null && v !== false) { done(); resolve(v) }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${this.received.length} messages, actors: ${[...new Set(this.received.map(r => r.sessionId))].join(', ')}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(test) }
      this.waiters.add(test)
      test()
    })
  }

  close (): void {
    this.ws.close()
  }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

let relay: Running | undefined
let listener: Listener | undefined
let nodes: NodeProcess[] = []
let url = ''

test.before(async () => {
  const port = await freePort()
  url = `ws://127.0.0.1:${port}`
  relay = startCli(['inspect', '--port', String(port)])
  await relay.waitForOutput(new RegExp(`listening on ws://127\\.0\\.0\\.1:${port}`))
  listener = await Listener.connect(url)
  nodes = await startMesh(3, ['--inspect', url])
})

test.after(async () => {
  listener?.close()
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  relay?.child.kill('SIGTERM')
  if (relay != null) await relay.exited
})

test('--inspect: the relay receives the turnstile machine\'s events and snapshots, counted, under <workload>@<owner>', async () => {
  const l = listener!
  const api = nodes[0]!.apiUrl
  const applied = await cli(['apply', TURNSTILE, '--api', api], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  const sent = ['coin', 'push', 'coin']
  const expectedStates = ['unlocked', 'locked', 'unlocked']
  for (const [i, type] of sent.entries()) {
    const r = await cli(['send', 'turnstile', type, '--api', nodes[i % nodes.length]!.apiUrl])
    assert.is(r.code, 0, r.stderr)
    assert.is(r.stdout, `${expectedStates[i]}\n`)
  }
  const report = await nodes[0]!.api.request<MachineStateReport>('/v1/workloads/default/turnstile/state', { timeoutMs: 10_000 })
  const machineId = `default/turnstile@${nodeSuffix(report.owner)}`

  // the root actor: xstate.init, then the three sent events; its first snapshot, then one per event
  const ofMachine = (type: string): Received[] => l.received.filter(r => r.sessionId === machineId && r.type === type)
  await l.until(() => ofMachine('@xstate.snapshot').length >= 4 && ofMachine('@xstate.event').length >= 4, `4 events and 4 snapshots of ${machineId}`)
  const events = ofMachine('@xstate.event').map(r => r.event?.type)
  const snapshots = ofMachine('@xstate.snapshot')
  assert.equal(events, ['xstate.init', ...sent], 'the events the machine got, in order')
  assert.equal(snapshots.map(s => s.snapshot?.value), ['locked', 'unlocked', 'locked', 'unlocked'], 'its states, in order')
  assert.equal(snapshots.map(s => s.event?.type), ['xstate.init', ...sent], 'each snapshot says which event led to it')
  assert.equal(snapshots.at(-1)?.snapshot?.context, { coins: 2, passes: 1 })
  assert.is(ofMachine('@xstate.actor').length, 1, 'the machine registered once')
  // only the owner runs it: no other node's turnstile shows
  const turnstiles = new Set(l.received.filter(r => r.sessionId.startsWith('default/turnstile@')).map(r => r.sessionId))
  assert.equal([...turnstiles], [machineId])
  process.stdout.write(`\n    ${machineId}: ${events.length} events (${events.join(', ')}), ${snapshots.length} snapshots (${snapshots.map(s => String(s.snapshot?.value)).join(' → ')}); ${l.received.length} messages in all\n`)
})

test('--inspect: node and scheduler actors show with ids ending in their node\'s suffix, children under their parent', async () => {
  const l = listener!
  const actors = (): Set<string> => new Set(l.received.filter(r => r.type === '@xstate.actor').map(r => r.sessionId))
  for (const n of nodes) {
    await l.until(() => actors().has(`node@${nodeSuffix(n.peerId)}`), `node@${nodeSuffix(n.peerId)}`)
  }
  // the tender ran on the node the workload was applied through
  const scheduler = `scheduler:default/turnstile@${nodeSuffix(nodes[0]!.peerId)}`
  assert.ok(actors().has(scheduler), `${scheduler} among ${[...actors()].join(', ')}`)
  const snapshots = l.received.filter(r => r.sessionId === scheduler && r.type === '@xstate.snapshot')
  assert.ok(snapshots.length > 0, 'the scheduler\'s snapshots')
  assert.is(snapshots.at(-1)?.snapshot?.status, 'done')
  const children = l.received.filter(r => r.type === '@xstate.actor' && r.parentId === scheduler)
  assert.ok(children.length > 0, 'the scheduler\'s invoked actors show as its children')
  for (const c of children) {
    assert.ok(c.sessionId.startsWith(`${scheduler}/`), c.sessionId)
    assert.is(c.rootId, scheduler)
  }
  // every actor is a root named <name>@<node> or a descendant of one, <root>/<child id>…
  const suffixes = nodes.map(n => `@${nodeSuffix(n.peerId)}`)
  const registered = l.received.filter(r => r.type === '@xstate.actor')
  for (const a of registered) {
    if (a.parentId == null) assert.ok(suffixes.some(s => a.sessionId.endsWith(s)), `root ${a.sessionId} ends in its node's suffix`)
    else assert.ok(a.sessionId.startsWith(`${a.parentId}/`) && suffixes.some(s => a.parentId!.includes(s)), `child ${a.sessionId} of ${a.parentId}`)
  }
})

test('a node whose --inspect relay is not there starts, logs one warning and runs a stateful workload normally', async () => {
  const closed = `ws://127.0.0.1:${await freePort()}`
  const node = await startNode({ extra: ['--inspect', closed] })
  // alone, so `local` durability (replicated needs two other nodes)
  const dir = await tempDir()
  const manifest = join(dir, 'counter.yaml')
  await writeFile(manifest, `apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: ${relative(dir, join(ROOT, COUNTER))}\n  durability: local\n`)
  try {
    const applied = await cli(['apply', manifest, '--api', node.apiUrl], { timeoutMs: 60_000 })
    assert.is(applied.code, 0, applied.stderr)
    for (let i = 0; i < 3; i++) {
      const r = await cli(['send', 'counter', '{"type":"inc","by":2}', '-o', 'json', '--api', node.apiUrl])
      assert.is(r.code, 0, r.stderr)
    }
    const state = await node.api.request<MachineStateReport>('/v1/workloads/default/counter/state', { timeoutMs: 10_000 })
    assert.equal(state.context, { count: 6, applied: [] })
    const status = await node.status()
    assert.match(status.state, /^running/)
    await waitUntil(() => /inspector relay is not reachable/.test(node.stderr()), { what: 'the warning' })
    assert.is(node.stderr().match(/inspector relay is not reachable/g)?.length, 1, node.stderr())
    assert.ok(node.child.exitCode == null && node.child.signalCode == null, 'still running')
  } finally {
    await node.kill('SIGKILL')
  }
})

test('a sandbox with onInspect: the worker reports the machine and its invoked child; a throwing onInspect breaks nothing', async () => {
  const dir = await tempDir()
  const artifactPath = join(dir, 'fetcher.mjs')
  await writeFile(artifactPath, (await bundleWorkload(join(ROOT, FETCHER))).code)
  const records: InspectionRecord[] = []
  const sent: StatelyInspectionEvent[] = []
  const shown = inspection({ peerId: '12D3KooWAbcdefghijklmnopqrstuvwxyz', send: e => { sent.push(e) } })
  let onLoaded = (): void => {}
  const loaded = new Promise<void>(resolve => { onLoaded = resolve })
  const sandbox = new MachineSandbox({
    artifactPath,
    identity: { id: 'default/fetcher', name: 'fetcher', namespace: 'default', replica: 0, nodeId: 'n', epoch: 1 },
    memoryLimitMb: 64,
    timeoutMs: 5_000,
    onSpontaneous: (_event, t) => { if (t.value === 'loaded') onLoaded() },
    onLog: () => {},
    onInspect: record => {
      records.push(record)
      shown.forward('default/fetcher')(record)
      throw new Error('an inspector that fails')
    }
  })
  try {
    await sandbox.start()
    const loading = await sandbox.send({ type: 'fetch', ms: 10, value: 'x' })
    assert.is(loading.value, 'loading')
    await loaded
    assert.equal((await sandbox.current()).context, { result: 'X', error: null, loads: 1 })
    // the root: registered, init + fetch + the child's done event; the child: registered under it
    const root = records.filter(r => r.path === '')
    assert.equal(root.filter(r => r.type === 'event').map(r => (r as { event: { type: string } }).event.type), ['xstate.init', 'fetch', 'xstate.done.actor.load'])
    assert.equal(root.filter(r => r.type === 'snapshot').map(r => (r as { state: { value: unknown } }).state.value), ['idle', 'loading', 'loaded'])
    assert.ok(root.some(r => r.type === 'actor' && r.definition != null && (JSON.parse(r.definition) as { id: string }).id === 'fetcher'), 'the root comes with its definition')
    assert.ok(records.some(r => r.type === 'actor' && r.path === 'load' && r.parent === ''), 'the invoked child, under the root')
    const suffix = '12D3KooW…uvwxyz'
    assert.ok(sent.some(e => e.type === '@xstate.actor' && e.sessionId === `default/fetcher@${suffix}/load` && e.parentId === `default/fetcher@${suffix}` && e.rootId === `default/fetcher@${suffix}`))
  } finally {
    await sandbox.stop()
  }
})

test('beemesh inspect on a port in use exits non-zero, naming the port', async () => {
  const server: Server = createServer()
  await new Promise<void>(resolve => server.listen(0, resolve))
  const port = (server.address() as { port: number }).port
  try {
    const r = await cli(['inspect', '--port', String(port)], { timeoutMs: 10_000 })
    assert.is.not(r.code, 0)
    assert.match(r.stderr, new RegExp(`beemesh: error: port ${port} is in use`))
  } finally {
    server.close()
  }
})

test('a relay that restarts: the nodes reconnect by themselves and the next events reach it', async () => {
  const { port } = new URL(url)
  listener?.close()
  relay!.child.kill('SIGTERM')
  await relay!.exited
  relay = startCli(['inspect', '--port', port])
  await relay.waitForOutput(new RegExp(`listening on ws://127\\.0\\.0\\.1:${port}`))
  const l = await Listener.connect(url)
  listener = l
  const report = await nodes[0]!.api.request<MachineStateReport>('/v1/workloads/default/turnstile/state', { timeoutMs: 10_000 })
  const machineId = `default/turnstile@${nodeSuffix(report.owner)}`
  // the turnstile's 10 s timer may lock it at any moment: send what its state takes (again, if it just changed)
  let type = report.value === 'locked' ? 'coin' : 'push'
  let sent = await cli(['send', 'turnstile', type, '--api', nodes[1]!.apiUrl])
  if (sent.code !== 0 && /does not handle/.test(sent.stderr)) {
    type = type === 'coin' ? 'push' : 'coin'
    sent = await cli(['send', 'turnstile', type, '--api', nodes[1]!.apiUrl])
  }
  assert.is(sent.code, 0, sent.stderr)
  const got = await l.until(() => l.received.find(r => r.sessionId === machineId && r.type === '@xstate.event' && r.event?.type === type), `the ${type} on ${machineId} after the relay restarted`)
  assert.ok(got != null)
  // every node is back, not only the owner: their node machines report again as they change (heartbeats do not), so ask for a new actor
  const applied = await cli(['apply', COUNTER, '--api', nodes[2]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(applied.code, 0, applied.stderr)
  await l.until(() => l.received.some(r => r.sessionId === `scheduler:default/counter@${nodeSuffix(nodes[2]!.peerId)}`), 'the new scheduler of the node the counter was applied through')
})

test.run()
