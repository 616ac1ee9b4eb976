/**
 * Sandbox start and footprint: a confined sandbox (bubblewrap child process,
 * src/sandbox/confine.ts) beside a worker-thread sandbox, a bare worker
 * thread and a bare `node -e 0` child, in the same run. Start is the time from
 * spawn until the module has loaded and the sandbox serves; `warm` is a
 * confined start taken from a ready warm pool, as a node does (for the bare ones:
 * the thread is online, the child has exited; bwrapChild is `node -e 0` under
 * the same bubblewrap confinement). RSS per sandbox is measured with
 * N sandboxes alive: the process tree of each confined child, the growth of
 * this process for threads. Invoke is one trivial handler call round trip.
 */
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { confinementArgs, descendants, hostConfinement, warmPool } from '../src/sandbox/confine.js'
import { ReplicaSandbox } from '../src/sandbox/sandbox.js'
import type { Isolation } from '../src/sandbox/confine.js'
import { fmt, summary, writeResult } from './lib.js'

const STARTS = 30
const ALIVE = 10
const INVOKES = 1000

const identity = { id: 'default/bench', name: 'bench', namespace: 'default', replica: 0, nodeId: 'bench', epoch: 1 }

function sandboxFor (artifactPath: string, isolation: Isolation): ReplicaSandbox {
  return new ReplicaSandbox({ artifactPath, identity, timeoutMs: 5_000, memoryLimitMb: 64, isolation, onPublish: async () => {}, onLog: () => {} })
}

async function time (fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

/** VmRSS in MB of `pid` and all its descendants. */
function treeRssMb (pid: number): number {
  let kb = 0
  for (const p of [pid, ...descendants(pid)]) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0)
    } catch {}
  }
  return kb / 1024
}

function selfRssMb (): number {
  return process.memoryUsage().rss / 2 ** 20
}

async function bareThreadStart (): Promise<number> {
  return await time(async () => {
    const w = new Worker('require("node:worker_threads").parentPort.postMessage(1)', { eval: true })
    await new Promise(resolve => w.once('message', resolve))
    await w.terminate()
  })
}

/** `node -e 0` in the same bubblewrap confinement as a sandbox, without the worker, the artifact or the channel. */
async function bwrapChildStart (): Promise<number> {
  const host = hostConfinement()
  return await time(async () => {
    const c = spawn(host.bwrap!, [...confinementArgs(), process.execPath, '-e', '0'], { stdio: 'ignore', env: {}, ...(host.uid != null && host.uid !== process.getuid?.() ? { uid: host.uid, gid: host.uid } : {}) })
    await new Promise(resolve => c.once('exit', resolve))
  })
}

async function bareChildStart (): Promise<number> {
  return await time(async () => {
    const c = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore', env: {} })
    await new Promise(resolve => c.once('exit', resolve))
  })
}

export async function run (): Promise<void> {
  const host = hostConfinement()
  if (host.mode !== 'confined') throw new Error(`this host cannot confine (${host.reason ?? 'unknown'}): the sandbox benchmark needs bubblewrap`)
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-bench-sandbox-'))
  const artifact = join(dir, 'noop.mjs')
  await writeFile(artifact, "export default { name: 'bench', kind: 'stateless', topics: ['t'], handler () {} }\n")
  try {
    const starts: Record<string, number[]> = { confined: [], warm: [], thread: [], bareThread: [], bareChild: [], bwrapChild: [] }
    // warm: the worker bundle is built once per process, the first thread loads tsx
    for (const isolation of ['confined', 'thread'] as const) {
      const s = sandboxFor(artifact, isolation)
      await s.start()
      await s.stop()
    }
    for (let i = 0; i < STARTS; i++) {
      for (const isolation of ['confined', 'thread'] as const) {
        const s = sandboxFor(artifact, isolation)
        starts[isolation]!.push(await time(async () => { await s.start() }))
        await s.stop()
      }
      starts.bareThread!.push(await bareThreadStart())
      starts.bareChild!.push(await bareChildStart())
      starts.bwrapChild!.push(await bwrapChildStart())
    }
    // warm: what a node does (--warm-sandboxes 1): a blank confined child is
    // booted before the replica is known; start is then loading the artifact
    warmPool.retain({ size: 1 })
    try {
      const first = sandboxFor(artifact, 'confined')
      await first.start()
      await first.stop()
      for (let i = 0; i < STARTS; i++) {
        await warmPool.ready('worker', 64)
        const s = sandboxFor(artifact, 'confined')
        starts.warm!.push(await time(async () => { await s.start() }))
        await s.stop()
      }
    } finally {
      await warmPool.release()
    }

    const invokes: Record<string, number[]> = {}
    for (const isolation of ['confined', 'thread'] as const) {
      const s = sandboxFor(artifact, isolation)
      await s.start()
      const samples: number[] = []
      for (let i = 0; i < INVOKES; i++) {
        const t0 = performance.now()
        const r = await s.invoke({ topic: 't', data: { i }, from: 'bench', id: `e-${i}`, attempt: 1 })
        samples.push(performance.now() - t0)
        if (!r.ok) throw new Error(`invoke failed in the ${isolation} sandbox: ${r.error}`)
      }
      invokes[isolation] = samples
      await s.stop()
    }

    // RSS with ALIVE sandboxes of each kind
    const confined = Array.from({ length: ALIVE }, () => sandboxFor(artifact, 'confined'))
    await Promise.all(confined.map(async s => { await s.start() }))
    const pids = childPids()
    const confinedRss = pids.reduce((a, p) => a + treeRssMb(p), 0) / Math.max(1, pids.length)
    await Promise.all(confined.map(async s => { await s.stop() }))

    const before = selfRssMb()
    const threads = Array.from({ length: ALIVE }, () => sandboxFor(artifact, 'thread'))
    await Promise.all(threads.map(async s => { await s.start() }))
    const threadRss = (selfRssMb() - before) / ALIVE
    await Promise.all(threads.map(async s => { await s.stop() }))

    const idle = Array.from({ length: ALIVE }, () => spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', env: {} }))
    await new Promise(resolve => setTimeout(resolve, 500))
    const childRss = idle.reduce((a, c) => a + treeRssMb(c.pid!), 0) / ALIVE
    for (const c of idle) c.kill('SIGKILL')

    const rows = {
      confined: { start: summary(starts.confined!), rssMb: confinedRss, invoke: summary(invokes.confined!) },
      warm: { start: summary(starts.warm!) },
      thread: { start: summary(starts.thread!), rssMb: threadRss, invoke: summary(invokes.thread!) },
      bareThread: { start: summary(starts.bareThread!) },
      bareChild: { start: summary(starts.bareChild!), rssMb: childRss },
      bwrapChild: { start: summary(starts.bwrapChild!) }
    }
    process.stdout.write(`sandbox start (ms, ${STARTS} each), RSS per sandbox with ${ALIVE} alive, invoke round trip (ms, ${INVOKES} each):\n`)
    for (const [name, r] of Object.entries(rows)) {
      const rss = 'rssMb' in r ? `  rss ${fmt(r.rssMb)} MB` : ''
      const inv = 'invoke' in r ? `  invoke p50 ${fmt(r.invoke.p50, 3)} p99 ${fmt(r.invoke.p99, 3)}` : ''
      process.stdout.write(`  ${name.padEnd(11)} start p50 ${fmt(r.start.p50)} p99 ${fmt(r.start.p99)}${rss}${inv}\n`)
    }
    const path = await writeResult('sandbox', { host, starts: STARTS, alive: ALIVE, invokes: INVOKES, results: rows })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** This process's direct children (the confined sandboxes' prlimit/bwrap processes). */
function childPids (): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(entry))
    } catch {}
  }
  return out
}
