/**
 * What the benchmarks that run node processes share: cleanup of children and
 * temp dirs, a process's RSS and CPU time from /proc, and the plain libp2p
 * node (the baseline beside BeeMesh's node).
 */
import { spawn as spawnProcess, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT } from '../test/helpers/processes.js'
import { percentile } from './lib.js'

const CLK_TCK = 100

// ------------------------------------------------------------------ cleanup

/** Temp dirs and child processes of the run: removed and killed on exit, error or Ctrl-C (installCleanup). */
export const tempDirs = new Set<string>()
export const children = new Set<ChildProcess>()
let cleanupInstalled = false
export function installCleanup (): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL')
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: killing every node process and removing temp dirs\n`)
      process.exit(130)
    })
  }
}

// ------------------------------------------------------------------ /proc

/** VmRSS in MB; NaN for a process that is gone. */
export async function rssMb (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1])
  return kb / 1024
}

/**
 * A process's memory in MB from smaps_rollup: `rss` (what `ps` shows: every
 * page it has in memory, the Node.js binary's shared pages included), `pss`
 * (shared pages divided among the processes that map them) and `uss` (its own
 * pages alone: what it would free on exit). NaN for a process that is gone.
 */
export async function memoryMb (pid: number): Promise<{ rss: number, pss: number, uss: number }> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '')
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1])
  return { rss: kb('Rss') / 1024, pss: kb('Pss') / 1024, uss: (kb('Private_Clean') + kb('Private_Dirty')) / 1024 }
}

/** utime + stime of a process (all its threads), in seconds. */
export async function cpuSeconds (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ')  ')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields after the command: state is field 3, utime 14, stime 15.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** % of one core each process used over `windowMs` of doing nothing on our side. */
export async function cpuPercent (pids: number[], windowMs: number): Promise<number[]> {
  const before = await Promise.all(pids.map(cpuSeconds))
  const t0 = performance.now()
  await sleep(windowMs)
  const after = await Promise.all(pids.map(cpuSeconds))
  const seconds = (performance.now() - t0) / 1000
  return pids.map((_, i) => 100 * (after[i]! - before[i]!) / seconds)
}

export interface Spread { p50: number, max: number, min: number }
export function spread (values: number[]): Spread {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b)
  return { p50: percentile(s, 50), max: s.at(-1) ?? NaN, min: s[0] ?? NaN }
}

// ------------------------------------------------------------------ the plain libp2p node

/**
 * A plain MeshNode (libp2p: TCP, noise, yamux, identify, ping, kad-dht,
 * gossipsub; none of BeeMesh's runtime, API, heartbeats or trust) in its own
 * process, from the compiled dist/. It times DHT gets itself and answers over IPC.
 */
const RAW_NODE = `
const { MeshNode } = await import(process.env.RAW_MESH_NODE)
const { generateKeyPair } = await import('@libp2p/crypto/keys')
const node = new MeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: JSON.parse(process.env.RAW_BOOTSTRAP) })
await node.start()
process.on('disconnect', () => process.exit(0))
process.on('message', async m => {
  if (m.type === 'peers') { process.send({ id: m.id, peers: node.peers().length }); return }
  const t = performance.now()
  try {
    const r = await node.getRecord(m.key, { signal: AbortSignal.timeout(10000) })
    process.send({ id: m.id, ms: performance.now() - t, value: new TextDecoder().decode(r.value) })
  } catch (err) {
    process.send({ id: m.id, ms: performance.now() - t, error: String(err) })
  }
})
process.send({ id: 0, peerId: node.peerId })
`

export interface RawNode { child: ChildProcess, pid: number, ask: <T>(msg: Record<string, unknown>) => Promise<T>, stop: () => void }

export async function startRawNode (app: string, bootstrap: string[]): Promise<RawNode> {
  const child = spawnProcess(process.execPath, ['--input-type=module', '-e', RAW_NODE], {
    cwd: ROOT,
    env: { ...process.env, RAW_MESH_NODE: join(app, 'dist', 'transport', 'mesh-node.js'), RAW_BOOTSTRAP: JSON.stringify(bootstrap) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  children.add(child)
  child.once('exit', () => { children.delete(child) })
  const pending = new Map<number, (m: unknown) => void>()
  let next = 1
  child.on('message', (m: { id: number }) => { pending.get(m.id)?.(m); pending.delete(m.id) })
  const ready = new Promise<void>((resolve, reject) => {
    pending.set(0, () => { resolve() })
    child.once('exit', code => { reject(new Error(`the plain libp2p node exited (${String(code)}) before it was ready`)) })
  })
  await Promise.race([ready, sleep(20_000).then(() => { throw new Error('the plain libp2p node did not start in 20 s') })])
  const ask = async <T>(msg: Record<string, unknown>): Promise<T> => await new Promise<T>((resolve, reject) => {
    const id = next++
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`plain libp2p node: no answer to ${JSON.stringify(msg)}`)) }, 15_000)
    pending.set(id, m => { clearTimeout(timer); resolve(m as T) })
    child.send({ ...msg, id })
  })
  return { child, pid: child.pid!, ask, stop: () => { child.kill('SIGKILL') } }
}

