/**
 * `npm run chaos`: fault injection with checks (docs/chaos.md).
 *
 * A 10-node mesh of real node processes, each in its own network namespace;
 * 3 replicated counters and a 3-replica queue group under steady load; a
 * seeded fault schedule of SIGKILLs, restarts and a partition, with the time
 * to recover after each; then checks over everything recorded: acknowledged
 * transitions lost, workloads with two owners, desired replicas restored,
 * queue events handled more than once, time to recover. Exit 0 only if every
 * check passes. Result JSON under bench/results/ (chaos-<stamp>.json,
 * chaos-latest.json).
 *
 * Env: CHAOS_SEED (default: random, printed), CHAOS_DURATION_S (load at
 * least this long, default 150), CHAOS_NODES (10), CHAOS_TIMEOUT_S (hard
 * limit for the whole run, 540), CHAOS_PACE (scales pauses and the partition
 * hold, 1), CHAOS_STRICT_QUEUE=1 (queue duplicates fail the run; by
 * default they are counted and printed: across a partition's healing the two
 * sides' views of who is alive differ, see docs/workloads.md),
 * CHAOS_KEEP_LOGS=1 (keep node logs even when every check passes),
 * CHAOS_LOG_LEVEL (node log level, default warn).
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Table from 'cli-table3'
import type { MachineStateReport } from '../src/protocol/state.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { writeResult } from '../bench/lib.js'
import { cli, testTrust, waitUntil } from '../test/helpers/processes.js'
import { checkLostAcks, checkQueueDuplicates, checkRecovery, checkReplicas, checkTwoOwners, replicaProblem, type CheckResult, type FaultRecord, type FinalMachine, type FinalView, type HandledRecord } from './checks.js'
import { OwnershipSampler, Publisher, Senders } from './load.js'
import { startChaosMesh, type ChaosMesh, type ChaosNode } from './mesh.js'
import { describeStep, makeSchedule, pick, type FaultStep } from './schedule.js'
import { seededRandom } from '../src/random.js'

const env = (name: string, fallback: number): number => { const v = process.env[name]; return v != null && v !== '' && Number.isFinite(Number(v)) ? Number(v) : fallback }
const SEED = env('CHAOS_SEED', Math.floor(Math.random() * 1_000_000))
const DURATION_MS = env('CHAOS_DURATION_S', 150) * 1000
const NODES = env('CHAOS_NODES', 10)
const HARD_TIMEOUT_MS = env('CHAOS_TIMEOUT_S', 540) * 1000
const PACE = env('CHAOS_PACE', 1)
const ALLOW_DUPLICATES = process.env.CHAOS_STRICT_QUEUE !== '1'
const KEEP_LOGS = process.env.CHAOS_KEEP_LOGS === '1'
const LOG_LEVEL = process.env.CHAOS_LOG_LEVEL

const COUNTERS = ['chaos-counter-a', 'chaos-counter-b', 'chaos-counter-c']
const CONSUMER = 'chaos-consumer'
const TOPIC = 'chaos.events'
const WORKLOADS = [...COUNTERS.map(workload => ({ workload, desired: 1 })), { workload: CONSUMER, desired: 3 }]
const KILL_BOUND_MS = 30_000
const HEAL_BOUND_MS = 60_000

const started = Date.now()
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s`
const say = (line: string): void => { process.stdout.write(`[${elapsed()}] ${line}\n`) }
const short = (peerId: string): string => `…${peerId.slice(-8)}`
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

// Everything this run makes lives under one temp dir, removed on exit, error or Ctrl-C.
const root = mkdtempSync(join(tmpdir(), 'beemesh-chaos-'))
const handledDir = join(root, 'handled')
mkdirSync(handledDir)
// The nodes (and the consumer's worker threads) inherit it: see chaos/workloads/consumer.ts.
process.env.CHAOS_HANDLED_DIR = handledDir
// The consumer records each handling in a host file (it must survive a SIGKILL of its node), which a
// confined sandbox cannot reach by design (test/confinement.test.ts): the chaos nodes run workload code in
// worker threads. Queue semantics, ownership and recovery are what this run tests, not confinement.
process.env.BEEMESH_SANDBOX = 'unconfined'
let trustDir: string | undefined
let mesh: ChaosMesh | undefined
process.on('exit', () => {
  // processes.ts SIGKILLs every child and netns.ts removes the namespaces in their own exit handlers.
  for (const dir of [root, trustDir]) if (dir != null) { try { rmSync(dir, { recursive: true, force: true }) } catch {} }
})
let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130)
    interrupted = true
    say(`${sig}: cleaning up`)
    void (mesh?.destroy() ?? Promise.resolve()).finally(() => { process.exit(sig === 'SIGINT' ? 130 : 143) })
    setTimeout(() => { process.exit(130) }, 10_000).unref()
  })
}
const hardTimer = setTimeout(() => {
  say(`hard timeout: the run took longer than ${HARD_TIMEOUT_MS / 1000} s; stopping`)
  dumpLogs('hard-timeout')
  void (mesh?.destroy() ?? Promise.resolve()).finally(() => { process.exit(4) })
  setTimeout(() => { process.exit(4) }, 10_000).unref()
}, HARD_TIMEOUT_MS)

/** Copies every node process's output (its log) out of the temp dir; returns the directory. */
function dumpLogs (why: string): string | undefined {
  if (mesh == null) return undefined
  const dir = join(tmpdir(), `beemesh-chaos-logs-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  mkdirSync(dir, { recursive: true })
  for (const node of mesh.nodes) {
    node.history.forEach((proc, gen) => {
      writeFileSync(join(dir, `node-${node.index}-run${gen}-${node.peerId.slice(-8)}.log`), `# ${why}\n# node ${node.index} ${node.peerId} run ${gen}\n--- stdout\n${proc.stdout()}\n--- stderr\n${proc.stderr()}\n`)
    })
  }
  try { cpSync(handledDir, join(dir, 'handled'), { recursive: true }) } catch {}
  return dir
}

/** Every live node's view of the watched workloads (running replicas). */
async function collectViews (live: ChaosNode[]): Promise<FinalView[]> {
  const views: FinalView[] = []
  await Promise.all(live.map(async node => {
    let list: WorkloadStatus[] = []
    try { list = await node.proc!.api.request<WorkloadStatus[]>('/v1/workloads', { timeoutMs: 3_000 }) } catch { return }
    for (const { workload, desired } of WORKLOADS) {
      const w = list.find(x => x.name === workload)
      views.push({ workload, observer: node.peerId, desired, running: (w?.placement ?? []).filter(p => p.status === 'running').map(p => ({ replica: p.replica, peerId: p.peerId, epoch: p.epoch })) })
    }
  }))
  return views
}

/** Undefined when every workload has its desired replicas on live nodes and every live node agrees; else what is missing. */
async function restoredProblem (m: ChaosMesh): Promise<string | undefined> {
  const live = m.live()
  const views = await collectViews(live)
  if (new Set(views.map(v => v.observer)).size < live.length) return 'a live node did not answer'
  for (const { workload, desired } of WORKLOADS) {
    const p = replicaProblem(views.filter(v => v.workload === workload), live.map(n => n.peerId), desired)
    if (p != null) return `${workload}: ${p}`
  }
  return undefined
}

/** Waits (bounded) until restored; resolves to the ms it took from `since`, or null. */
async function waitRestored (m: ChaosMesh, since: number, boundMs: number): Promise<{ ms: number | null, last?: string }> {
  let last: string | undefined
  while (Date.now() - since < boundMs) {
    last = await restoredProblem(m)
    if (last == null) return { ms: Date.now() - since }
    await sleep(250)
  }
  return { ms: null, ...(last != null ? { last } : {}) }
}

async function machineState (node: ChaosNode, workload: string): Promise<MachineStateReport> {
  return await node.proc!.api.request<MachineStateReport>(`/v1/workloads/default/${workload}/state`, { timeoutMs: 10_000 })
}

/** The owner and holders of a stateful workload, as a live node reports them. */
async function ownerOf (m: ChaosMesh, workload: string): Promise<{ owner: ChaosNode, holders: ChaosNode[], epoch: number }> {
  return await waitUntil(async () => {
    const s = await machineState(pick(Math.random, m.live()), workload)
    const owner = m.nodes.find(n => n.peerId === s.owner && n.alive)
    if (owner == null || s.stale === true) return undefined
    return { owner, holders: m.nodes.filter(n => s.holders.includes(n.peerId)), epoch: s.epoch }
  }, { timeoutMs: 30_000, intervalMs: 250, what: `the owner of ${workload}` })
}

async function main (): Promise<number> {
  const schedule = makeSchedule(SEED, COUNTERS, CONSUMER, { pace: PACE })
  const random = seededRandom(SEED ^ 0x5eed)
  const loadRandom = seededRandom(SEED + 1)
  say(`chaos: seed ${SEED}, ${NODES} nodes, load for at least ${DURATION_MS / 1000} s, hard limit ${HARD_TIMEOUT_MS / 1000} s`)
  say('fault schedule:')
  schedule.steps.forEach((s, i) => { say(`  ${i + 1}. ${describeStep(s)} (then ${(schedule.gapsMs[i]! / 1000).toFixed(1)} s pause)`) })

  trustDir = (await testTrust()).dir
  const m = mesh = await startChaosMesh(NODES, root, { log: say, extra: ['--allow-unconfined', ...(LOG_LEVEL != null ? ['--log-level', LOG_LEVEL] : [])] })
  if (m.mode === 'netns') say(`mesh: ${NODES} nodes up, each in its own network namespace (${m.nodes.map(n => n.host!.ip).join(', ')})`)
  else say(`mesh: ${NODES} nodes up ON LOOPBACK: network namespaces are not available (${m.fallbackReason ?? '?'}); a partition is emulated by SIGSTOPping the minority`)

  for (const file of ['counter-a', 'counter-b', 'counter-c', 'consumer']) {
    const via = m.nodes[Math.floor(random() * m.nodes.length)]!
    // Applying again is a no-op once it runs; a retry covers dist/ being rebuilt under us by a concurrent build.
    for (let attempt = 1; ; attempt++) {
      const res = await cli(['apply', `chaos/workloads/${file}.ts`, '--api', via.proc!.apiUrl], { timeoutMs: 90_000 })
      if (res.code === 0) break
      if (attempt >= 3) throw new Error(`apply ${file} failed: ${res.stderr}`)
      say(`apply ${file} failed (attempt ${attempt}), retrying: ${res.stderr.trim().split('\n').at(-1) ?? ''}`)
      await sleep(2_000)
    }
  }
  const ready = await waitRestored(m, Date.now(), 60_000)
  if (ready.ms == null) throw new Error(`the workloads did not start: ${ready.last ?? ''}`)
  say(`applied ${COUNTERS.join(', ')} (replicated) and ${CONSUMER} (3 replicas, queue group on ${TOPIC}); all running`)

  const init = { nodes: () => m.live(), random: loadRandom }
  const senders = new Senders(init, { workloads: COUNTERS, perWorkload: 2, intervalMs: 150, retryForMs: 60_000 })
  const publisher = new Publisher(init, { topic: TOPIC, intervalMs: 100 })
  const sampler = new OwnershipSampler(init, { intervalMs: 250, workloads: WORKLOADS.map(w => w.workload) })
  sampler.start()
  senders.start()
  publisher.start()
  const loadStart = Date.now()
  say('load: 2 senders per counter (each waits for its ack, then 150 ms), 10 publishes/s on the queue topic, ownership sampled every 250 ms')
  await sleep(5_000 * PACE)

  const faults: FaultRecord[] = []
  const restarts: Array<{ node: number, ms: number | null }> = []
  const killed: ChaosNode[] = []
  let partitioned: { nodes: ChaosNode[], step: number, at: number, workload: string, note: string } | undefined
  const ownsMachine = async (): Promise<Set<ChaosNode>> => new Set(await Promise.all(COUNTERS.map(async w => (await ownerOf(m, w)).owner)))
  const hostsReplica = async (workload: string): Promise<ChaosNode[]> => {
    const views = await collectViews(m.live())
    const peers = new Set(views.filter(v => v.workload === workload).flatMap(v => v.running.map(r => r.peerId)))
    return m.live().filter(n => peers.has(n.peerId))
  }
  const firstAckAfter = async (workload: string, since: number, notOwners: string[], boundMs: number): Promise<number | null> => {
    while (Date.now() - since < boundMs) {
      const a = senders.acks.find(x => x.workload === workload && !x.duplicate && x.ackAt > since && !notOwners.includes(x.owner))
      if (a != null) return a.ackAt - since
      await sleep(100)
    }
    return null
  }

  for (const [i, step] of schedule.steps.entries()) {
    const n = i + 1
    await runStep(n, step)
    const gap = schedule.gapsMs[i]!
    await sleep(gap)
  }

  async function runStep (n: number, step: FaultStep): Promise<void> {
    switch (step.kind) {
      case 'kill-owner': {
        const { owner, epoch } = await ownerOf(m, step.workload)
        const at = Date.now()
        await m.kill(owner)
        killed.push(owner)
        say(`#${n} SIGKILL node ${owner.index} (${short(owner.peerId)}), owner of ${step.workload} at epoch ${epoch}`)
        const ms = await firstAckAfter(step.workload, at, [owner.peerId], KILL_BOUND_MS)
        const after = await waitRestored(m, at, KILL_BOUND_MS + 15_000)
        faults.push({ index: n, kind: 'kill-owner', target: `node ${owner.index} (owner of ${step.workload})`, at, measure: 'kill → first ack from the new owner', recoveredMs: ms, boundMs: KILL_BOUND_MS, note: `all replicas restored after ${after.ms != null ? `${after.ms} ms` : `— (not within bound: ${after.last ?? ''})`}` })
        say(`   first ack from the new owner after ${ms ?? '—'} ms; all replicas restored after ${after.ms ?? '—'} ms`)
        return
      }
      case 'kill-replica':
      case 'kill-any': {
        const owners = await ownsMachine()
        const pool = step.kind === 'kill-replica' ? await hostsReplica(step.workload) : m.live()
        const candidates = pool.filter(x => !owners.has(x)).sort((a, b) => a.index - b.index)
        const target = pick(random, candidates.length > 0 ? candidates : m.live().filter(x => !owners.has(x)))
        const at = Date.now()
        await m.kill(target)
        killed.push(target)
        say(`#${n} SIGKILL node ${target.index} (${short(target.peerId)})${step.kind === 'kill-replica' ? `, hosting a ${step.workload} replica` : ''}`)
        const r = await waitRestored(m, at, KILL_BOUND_MS)
        faults.push({ index: n, kind: step.kind, target: `node ${target.index}`, at, measure: 'kill → desired replicas running again', recoveredMs: r.ms, boundMs: KILL_BOUND_MS, ...(r.last != null && r.ms == null ? { note: r.last } : {}) })
        say(`   desired replicas running again after ${r.ms ?? `— (${r.last ?? ''})`} ms`)
        return
      }
      case 'restart': {
        const list = killed.splice(0)
        const at = Date.now()
        await Promise.all(list.map(async node => { await m.restart(node) }))
        say(`#${n} restarted node ${list.map(x => x.index).join(', ')} on their data dirs`)
        const r = await waitRestored(m, at, KILL_BOUND_MS)
        for (const node of list) restarts.push({ node: node.index, ms: r.ms })
        say(`   mesh settled (every node agreeing on every placement) after ${r.ms ?? `— (${r.last ?? ''})`} ms`)
        return
      }
      case 'partition': {
        const { owner, holders, epoch } = await ownerOf(m, step.workload)
        const others = m.live().filter(x => x !== owner && !holders.includes(x)).sort((a, b) => a.index - b.index)
        const minority = [owner, pick(random, holders.filter(h => h.alive)), ...[pick(random, others)]].slice(0, step.size)
        const at = Date.now()
        await m.partition(minority)
        say(`#${n} partition: nodes ${minority.map(x => x.index).join(', ')} (owner of ${step.workload} at epoch ${epoch}, a holder, one more) cut off from the other ${NODES - minority.length}`)
        const ms = await firstAckAfter(step.workload, at, minority.map(x => x.peerId), step.holdMs + 20_000)
        const note = `majority side acknowledged ${step.workload} under a new owner ${ms != null ? `${ms} ms after the cut` : 'not at all while cut'}`
        say(`   ${note}`)
        partitioned = { nodes: minority, step: n, at, workload: step.workload, note }
        await sleep(Math.max(0, at + step.holdMs - Date.now()))
        return
      }
      case 'heal': {
        if (partitioned == null) return
        const at = Date.now()
        await m.heal()
        say(`#${n} healed the partition after ${((at - partitioned.at) / 1000).toFixed(1)} s`)
        const r = await waitRestored(m, at, HEAL_BOUND_MS)
        faults.push({ index: partitioned.step, kind: 'partition', target: `nodes ${partitioned.nodes.map(x => x.index).join(', ')}`, at, measure: 'heal → one owner per workload, all replicas restored', recoveredMs: r.ms, boundMs: HEAL_BOUND_MS, note: partitioned.note + (r.ms == null ? `; last: ${r.last ?? ''}` : '') })
        say(`   one owner per workload and all replicas restored after ${r.ms ?? `— (${r.last ?? ''})`} ms`)
        partitioned = undefined
      }
    }
  }

  const rest = DURATION_MS - (Date.now() - loadStart)
  if (rest > 0) { say(`schedule done; load goes on for ${(rest / 1000).toFixed(0)} s more`); await sleep(rest) }

  // The end: load stopped, mesh healed, every node running.
  say('stopping the load')
  await publisher.stop()
  await senders.stop()
  await m.heal()
  for (const node of m.nodes.filter(x => !x.alive)) await m.restart(node)
  const settled = await waitRestored(m, Date.now(), 60_000)
  say(`all ${m.live().length} nodes running; mesh settled ${settled.ms != null ? `after ${settled.ms} ms` : `NOT within 60 s (${settled.last ?? ''})`}`)
  if (senders.unresolved.length > 0) {
    say(`retrying ${senders.unresolved.length} unacknowledged sends with their ids`)
    await senders.resolve(Date.now() + 30_000)
  }
  await sleep(3_000) // queue events still in a worker's backlog
  await sampler.stop()
  await sampler.sampleOnce()

  const live = m.live()
  const finalViews = await collectViews(live)
  const finals: FinalMachine[] = []
  for (const w of COUNTERS) {
    const reports: string[] = []
    let count = NaN
    for (const node of live) {
      try {
        const s = await machineState(node, w)
        reports.push(`${s.owner}@${s.epoch}#${s.seq}${s.stale === true ? ' stale' : ''}`)
        count = (s.context as { count: number }).count
      } catch (err) { reports.push(`error: ${String(err)}`) }
    }
    let trace: FinalMachine['trace']
    try {
      const res = await live[0]!.proc!.api.fetch(`/v1/workloads/default/${w}/trace/export`, { timeoutMs: 30_000 })
      if (res.ok) trace = (await res.text()).split('\n').filter(l => l.trim() !== '').map(l => JSON.parse(l) as { seq: number, id?: string }).map(r => ({ seq: r.seq, ...(r.id != null ? { id: r.id } : {}) }))
    } catch {}
    finals.push({ workload: w, count, reports, ...(trace != null ? { trace } : {}) })
  }
  const handled: HandledRecord[] = []
  for (const f of readdirSync(handledDir)) {
    for (const line of readFileSync(join(handledDir, f), 'utf8').split('\n')) {
      if (line.trim() === '') continue
      try { handled.push(JSON.parse(line) as HandledRecord) } catch {} // a line torn by a SIGKILL mid-write
    }
  }

  const checks: CheckResult[] = [
    checkLostAcks(senders.acks, finals, { unresolved: senders.unresolved }),
    checkTwoOwners(senders.acks, sampler.samples, finalViews, COUNTERS),
    checkReplicas(finalViews, live.map(x => x.peerId), WORKLOADS),
    checkQueueDuplicates(handled, publisher.published, { allowDuplicates: ALLOW_DUPLICATES }),
    checkRecovery(faults)
  ]
  const kills = faults.filter(f => f.kind.startsWith('kill')).length
  const ownerKills = faults.filter(f => f.kind === 'kill-owner').length
  const wallMs = Date.now() - started

  const table = new Table({ head: ['check', 'result', 'figures'], wordWrap: true, colWidths: [30, 8, 90] })
  for (const c of checks) table.push([c.name, c.pass ? 'PASS' : 'FAIL', c.summary])
  const faultTable = new Table({ head: ['#', 'fault', 'target', 'time to recover', 'measured as', 'note'], wordWrap: true, colWidths: [4, 14, 26, 16, 40, 50] })
  for (const f of faults) faultTable.push([String(f.index), f.kind, f.target, f.recoveredMs != null ? `${(f.recoveredMs / 1000).toFixed(2)} s` : 'NOT RECOVERED', f.measure, f.note ?? ''])
  const load = {
    acks: senders.acks.length,
    duplicateAcks: senders.acks.filter(a => a.duplicate).length,
    perCounter: Object.fromEntries(COUNTERS.map(w => [w, new Set(senders.acks.filter(a => a.workload === w).map(a => a.id)).size])),
    sendErrors: Object.fromEntries([...senders.errors.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)),
    published: publisher.published.length,
    handlings: handled.length,
    samplingRounds: sampler.rounds
  }
  process.stdout.write(`\nfaults (seed ${SEED}: ${kills} SIGKILLs, ${ownerKills} of owners, 1 partition, ${restarts.length} restarts; ${m.mode === 'netns' ? 'network namespaces' : 'LOOPBACK fallback'})\n${faultTable.toString()}\n`)
  process.stdout.write(`\nload: ${load.acks} acks (${load.duplicateAcks} duplicate: a retry of an applied id), ${load.published} queue events published, ${load.handlings} handlings; send errors retried: ${Object.values(load.sendErrors).reduce((a, b) => a + b, 0)}\n`)
  process.stdout.write(`\nsummary\n${table.toString()}\n`)
  for (const c of checks.filter(x => !x.pass)) process.stdout.write(`\n${c.name} FAILED: ${JSON.stringify(c.details, null, 1).slice(0, 4000)}\n`)

  const failing = checks.filter(c => !c.pass).map(c => c.name)
  let logs: string | undefined
  if (failing.length > 0 || KEEP_LOGS) {
    logs = dumpLogs(failing.length > 0 ? `failing: ${failing.join(', ')}` : 'kept')
    if (logs != null) {
      // The evidence: every acknowledgement and every node's report of the final machines.
      writeFileSync(join(logs, 'acks.jsonl'), senders.acks.map(a => JSON.stringify(a)).join('\n') + '\n')
      writeFileSync(join(logs, 'finals.json'), JSON.stringify(finals, null, 1))
    }
  }
  const path = await writeResult('chaos', {
    seed: SEED,
    mode: m.mode,
    ...(m.fallbackReason != null ? { fallbackReason: m.fallbackReason } : {}),
    nodes: NODES,
    wallMs,
    loadMs: DURATION_MS,
    schedule: schedule.steps.map(describeStep),
    faults,
    restarts,
    load,
    checks: checks.map(c => ({ name: c.name, pass: c.pass, summary: c.summary, details: c.details })),
    pass: failing.length === 0,
    failing,
    ...(logs != null ? { logs } : {})
  })
  say(`result: ${path}${logs != null ? `; node logs kept in ${logs}` : ''}`)
  say(`wall time ${(wallMs / 1000).toFixed(0)} s`)
  if (failing.length > 0) say(`FAILED: ${failing.join(', ')}`)
  else say('every check passed')
  return failing.length > 0 ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (err) {
  say(`chaos run aborted: ${(err as Error).stack ?? String(err)}`)
  const logs = dumpLogs(`aborted: ${String(err)}`)
  if (logs != null) say(`node logs kept in ${logs}`)
  code = 2
} finally {
  clearTimeout(hardTimer)
  await mesh?.destroy().catch((err: unknown) => { say(`cleanup: ${String(err)}`) })
}
process.exit(code)
