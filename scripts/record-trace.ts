/**
 * Records the traces under test/traces/ from real runs: a local mesh of four
 * `beemesh node start` processes (as the multi-process tests start them, from
 * dist/, so build first), a workload applied with the real CLI, events sent
 * through the control API, the trace exported with `beemesh trace export`.
 *
 *   npm run build --silent
 *   node --import tsx --import ./src/polyfills.ts scripts/record-trace.ts [turnstile] [counter]
 *
 * With no name it records both. Each is written to
 * `test/traces/<workload>_<version>.jsonl`, where `<version>` is the first 12
 * hex digits of the sha256 of the workload's module source (the file
 * applied): a trace names the definition that produced it. A recording is checked before it is written: it must parse,
 * hold the steps the script drove, and replay against the machine.
 *
 * - turnstile (examples/turnstile): coin, push, coin, then 10 s without a push
 *   (its `after` timer locks it), coin, push.
 * - counter (test/fixtures/workloads/machines/counter.ts): three incs, its
 *   owner SIGKILLed, two more incs acknowledged by the new owner: the trace
 *   runs on at a higher epoch from another node.
 *
 * test/traces.test.ts replays every file there; docs/testing.md says when to
 * re-record.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AnyStateMachine } from 'xstate'
import type { Ack, MachineStateReport } from '../src/protocol/state.js'
import { ApiRequestError } from '../src/api/errors.js'
import { assertReplays, parseTrace, type TraceEntry } from '../src/testing/index.js'
import turnstile from '../examples/turnstile/turnstile.js'
import counter from '../test/fixtures/workloads/machines/counter.js'
import { cli, ROOT, startMesh, waitUntil, type NodeProcess } from '../test/helpers/processes.js'

const TRACES_DIR = join(ROOT, 'test/traces')
const TURNSTILE = 'examples/turnstile/turnstile.ts'
const COUNTER = 'test/fixtures/workloads/machines/counter.ts'

/** Runs of the mesh a recording drives. */
interface Mesh {
  nodes: NodeProcess[]
}

function alive (n: NodeProcess): boolean {
  return n.child.exitCode == null && n.child.signalCode == null
}

/** Sends an event through the live nodes, retrying with the same id while an owner fails over. */
async function send (mesh: Mesh, name: string, event: Record<string, unknown>, id: string): Promise<Ack> {
  return await waitUntil(async () => {
    for (const node of mesh.nodes.filter(alive)) {
      try {
        return await node.api.request<Ack>(`/v1/workloads/default/${name}/events`, { method: 'POST', body: { event, id }, timeoutMs: 20_000 })
      } catch (err) {
        if (err instanceof ApiRequestError && err.status < 500) throw err
      }
    }
    return undefined
  }, { timeoutMs: 60_000, intervalMs: 200, what: `${name}: ${String(event.type)} (${id}) to be acknowledged` })
}

/** Waits until the workload's state (read through a live node, not stale) passes `check`. */
async function until (mesh: Mesh, name: string, check: (s: MachineStateReport) => boolean, what: string, timeoutMs = 30_000): Promise<MachineStateReport> {
  return await waitUntil(async () => {
    const via = mesh.nodes.find(alive)
    if (via == null) throw new Error('no node is alive')
    const s = await via.api.request<MachineStateReport>(`/v1/workloads/default/${name}/state`, { timeoutMs: 20_000 }).catch(() => undefined)
    return s != null && s.stale !== true && check(s) ? s : undefined
  }, { timeoutMs, intervalMs: 100, what: `${name}: ${what}` })
}

async function apply (mesh: Mesh, file: string): Promise<void> {
  const result = await cli(['apply', file, '--api', mesh.nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  if (result.code !== 0) throw new Error(`beemesh apply ${file} failed: ${result.stderr}`)
}

/**
 * The workload's version: the first 12 hex digits of the sha256 of its
 * module's source (the file applied). Not the artifact's hash: the bundle
 * carries the paths of its dependencies, so it differs between checkouts.
 */
async function versionOf (file: string): Promise<string> {
  return createHash('sha256').update(await readFile(join(ROOT, file))).digest('hex').slice(0, 12)
}

/** Exports the trace with the real CLI through `via`, checks it against `machine`, and writes it. */
async function exportTrace (name: string, source: string, machine: AnyStateMachine, via: NodeProcess, check: (trace: TraceEntry[]) => void): Promise<string> {
  const result = await cli(['trace', 'export', name, '--api', via.apiUrl], { timeoutMs: 30_000 })
  if (result.code !== 0) throw new Error(`beemesh trace export ${name} failed: ${result.stderr}`)
  const trace = parseTrace(result.stdout, `${name} (exported)`)
  check(trace)
  await assertReplays(machine, trace, `the recorded trace of ${name} does not replay`)
  const file = join(TRACES_DIR, `${name}_${await versionOf(source)}.jsonl`)
  await mkdir(TRACES_DIR, { recursive: true })
  await writeFile(file, result.stdout)
  process.stdout.write(`${file.slice(ROOT.length)}: ${result.stderr.trim()}\n`)
  return file
}

function expectTypes (name: string, trace: TraceEntry[], types: string[]): void {
  const got = trace.map(e => e.event.type)
  if (JSON.stringify(got) !== JSON.stringify(types)) throw new Error(`${name}: recorded events ${JSON.stringify(got)}, expected ${JSON.stringify(types)}`)
}

async function recordTurnstile (mesh: Mesh): Promise<string> {
  await apply(mesh, TURNSTILE)
  await until(mesh, 'turnstile', s => s.value === 'locked', 'to start locked')
  await send(mesh, 'turnstile', { type: 'coin' }, 'coin-1')
  await send(mesh, 'turnstile', { type: 'push' }, 'push-1')
  await send(mesh, 'turnstile', { type: 'coin' }, 'coin-2')
  // no push: its 10 s timer locks it again
  await until(mesh, 'turnstile', s => s.value === 'locked' && s.seq === 4, 'to lock itself after 10 s unlocked', 20_000)
  await send(mesh, 'turnstile', { type: 'coin' }, 'coin-3')
  await send(mesh, 'turnstile', { type: 'push' }, 'push-2')
  await until(mesh, 'turnstile', s => s.seq === 6, 'to take the last push')
  return await exportTrace('turnstile', TURNSTILE, turnstile.machine, mesh.nodes[0]!, trace => {
    expectTypes('turnstile', trace, ['xstate.init', 'coin', 'push', 'coin', 'xstate.after.10000.turnstile.unlocked', 'coin', 'push'])
  })
}

async function recordCounter (mesh: Mesh): Promise<string> {
  await apply(mesh, COUNTER)
  await until(mesh, 'counter', s => s.value === 'counting', 'to start')
  await send(mesh, 'counter', { type: 'inc', tag: 'a' }, 'inc-a')
  await send(mesh, 'counter', { type: 'inc', by: 2, tag: 'b' }, 'inc-b')
  const before = await send(mesh, 'counter', { type: 'inc', tag: 'c' }, 'inc-c')
  const owner = mesh.nodes.find(n => n.peerId === before.owner)
  if (owner == null) throw new Error(`counter: its owner ${before.owner} is not one of the mesh's nodes`)
  owner.child.kill('SIGKILL')
  await owner.exited
  const after = await send(mesh, 'counter', { type: 'inc', by: 3, tag: 'd' }, 'inc-d')
  if (after.epoch <= before.epoch || after.owner === before.owner) throw new Error(`counter: inc-d was acknowledged by ${after.owner} at epoch ${after.epoch}, not after a failover`)
  await send(mesh, 'counter', { type: 'inc', tag: 'e' }, 'inc-e')
  await until(mesh, 'counter', s => (s.context as { count: number }).count === 8, 'to count 8')
  const via = mesh.nodes.filter(alive).find(n => n.peerId !== after.owner)!
  return await exportTrace('counter', COUNTER, counter.machine, via, trace => {
    expectTypes('counter', trace, ['xstate.init', 'inc', 'inc', 'inc', 'inc', 'inc'])
    const epochs = trace.map(e => e.epoch)
    if (epochs.slice(0, 4).some(e => e !== before.epoch) || epochs.slice(4).some(e => e !== after.epoch)) throw new Error(`counter: epochs ${JSON.stringify(epochs)} do not show the failover at seq 4`)
    if (trace.slice(4).some(e => e.owner !== after.owner)) throw new Error('counter: the steps after the failover are not the new owner\'s')
  })
}

const RECORDERS: Record<string, (mesh: Mesh) => Promise<string>> = { turnstile: recordTurnstile, counter: recordCounter }

async function main (): Promise<void> {
  const names = process.argv.slice(2)
  for (const name of names) if (RECORDERS[name] == null) throw new Error(`no recorder for ${name}; known: ${Object.keys(RECORDERS).join(', ')}`)
  const mesh: Mesh = { nodes: await startMesh(4) }
  try {
    for (const name of names.length > 0 ? names : Object.keys(RECORDERS)) await RECORDERS[name]!(mesh)
  } finally {
    await Promise.all(mesh.nodes.map(async n => await n.kill('SIGKILL')))
  }
}

await main()
