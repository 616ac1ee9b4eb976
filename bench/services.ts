/**
 * Calls between actors (issue 10, docs/services.md) on two node processes:
 *  - our layer: an actor on node A (role=client, bench/workloads/svc-caller.ts)
 *    calls a service whose replica runs on node B (role=server,
 *    bench/workloads/svc-echo.ts) with `ctx.call`, timing each call inside the
 *    actor with performance.now(); it logs the percentiles and the rate, read
 *    back through A's `/v1/workloads/default/svc-caller/logs`;
 *  - the raw substrate: a libp2p stream round trip between two plain libp2p
 *    processes on loopback (bench/svc-raw-peer.ts), one new stream per
 *    request with a length-prefixed JSON echo, as a call is carried;
 *  - both sequentially (latency) and with CONCURRENT.concurrency in flight
 *    (throughput), each raw run right before the matching run of ours, after
 *    a warm-up; ratios ours/raw for p50 and p99, raw/ours for the rate;
 *  - tunnel throughput: 256 MiB over TCP through the service proxy
 *    (ServiceTunnel, src/services/tunnel.ts: two member peers running it,
 *    bench/svc-tunnel-peer.ts) into a TCP sink, beside the same stream
 *    straight into the same sink on loopback, alternating, in one network
 *    namespace. Without src/services/tunnel.ts (or without root for the
 *    namespace) only the direct figure is measured, and the run says why.
 *
 * The tunnel part alone, no JSON written: BENCH_SERVICES_ONLY=tunnel.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parse, stringify } from 'yaml'
import { loadApplyFile } from '../src/bundle/bundler.js'
import type { LogLine } from '../src/protocol/messages.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import { defaultPolicyText } from '../src/policy/defaults.js'
import { createHosts, netnsUnsupported } from '../test/helpers/netns.js'
import { makeTrust, ROOT, startNode, waitUntil, type NodeProcess } from '../test/helpers/processes.js'
import { fmt, writeResult } from './lib.js'
import type { RawRun } from './svc-raw-peer.js'

const SEQUENTIAL = { n: 2_000, concurrency: 1, warmup: 200 }
const CONCURRENT = { n: 5_000, concurrency: 16, warmup: 500 }
const TUNNEL_BYTES = 256 * 2 ** 20
const WARMUP_BYTES = 8 * 2 ** 20
/** 256 MiB each way, alternating direct and tunnel; the median of each is reported. */
const TUNNEL_ROUNDS = 5
const TUNNEL_SERVICE = 'svc-sink'
const RAW_PEER = 'bench/svc-raw-peer.ts'
const TUNNEL_PEER = 'bench/svc-tunnel-peer.ts'
const CALLER = 'svc-caller'
const SERVICE = 'svc-echo'
/** Bounds on every wait: a process to start, a run to finish, the tunnel's stream to arrive. */
const START_TIMEOUT_MS = 30_000
const RUN_TIMEOUT_MS = 300_000

/** Latency (ms) and rate of one run, as the caller or the raw client measured it. */
export interface RunFigures { n: number, concurrency: number, ms: number, perSecond: number, p50: number, p90: number, p99: number, max: number, mean: number }
export interface Comparison { ours: RunFigures, raw: RunFigures, ratio: { p50: number, p99: number, rate: number } }
export type TunnelFigures =
  | { measured: true, bytes: number, direct: Throughput, tunnel: Throughput, ratio: number, failures: string[] }
  | { measured: false, reason: string, bytes: number, direct?: Throughput, failures?: string[] }

// ------------------------------------------------------------ child processes

/** A bench/svc-raw-peer.ts or bench/svc-tunnel-peer.ts process, with the JSON lines it printed. */
interface Peer {
  name: string
  child: ChildProcess
  /** The next line with this `event` not yet taken; rejects on exit or after `timeoutMs`. */
  next: <T = Record<string, unknown>>(event: string, timeoutMs: number) => Promise<T>
  stop: () => Promise<void>
  /** What it wrote to stderr (and any stdout line that was not JSON). */
  stderr: () => string
}

const peers = new Set<ChildProcess>()
process.on('exit', () => { for (const c of peers) c.kill('SIGKILL') })

/** Starts `node --import tsx <script> …args`, inside network namespace `netns` when given (`ip netns exec` execs in place: signals reach node). */
function startPeer (script: string, args: string[], netns?: string): Peer {
  const argv = [process.execPath, '--import', 'tsx', join(ROOT, script), ...args]
  const [command, ...rest] = netns == null ? argv : ['ip', 'netns', 'exec', netns, ...argv]
  const child = spawn(command!, rest, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const name = `${script} ${args[0] ?? ''}`
  peers.add(child)
  const lines: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let exited = false
  const notify = (): void => { for (const w of [...waiters]) w() }
  createInterface({ input: child.stdout! }).on('line', line => {
    try { lines.push(JSON.parse(line) as Record<string, unknown>) } catch { stderr += `(stdout) ${line}\n` }
    notify()
  })
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
  const gone = new Promise<void>(resolve => child.on('exit', () => { exited = true; peers.delete(child); notify(); resolve() }))
  const next = async <T>(event: string, timeoutMs: number): Promise<T> => await new Promise<T>((resolve, reject) => {
    const check = (): void => {
      const i = lines.findIndex(l => l.event === event)
      if (i >= 0) { done(); resolve(lines.splice(i, 1)[0] as T); return }
      if (exited) { done(); reject(new Error(`${name} exited before "${event}": ${stderr.slice(-2000)}`)) }
    }
    const timer = setTimeout(() => { done(); reject(new Error(`${name}: no "${event}" within ${timeoutMs} ms: ${stderr.slice(-2000)}`)) }, timeoutMs)
    const done = (): void => { clearTimeout(timer); waiters.delete(check) }
    waiters.add(check)
    check()
  })
  const stop = async (): Promise<void> => {
    if (exited) return
    child.kill('SIGTERM')
    const killer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await gone
    clearTimeout(killer)
  }
  return { name, child, next, stop, stderr: () => stderr }
}

// ------------------------------------------------------------------ calls

async function apply (node: NodeProcess, file: string): Promise<WorkloadStatus> {
  const bundle = await loadApplyFile(file)
  return await node.api.request<WorkloadStatus>('/v1/workloads', { method: 'POST', body: { spec: { ...bundle.spec, createdAt: Date.now() }, artifact: Buffer.from(bundle.code).toString('base64') }, timeoutMs: 60_000 })
}

/** One run of the caller actor on `client`: publishes its go event, then reads its summary line from the logs. */
async function oursRun (client: NodeProcess, run: string, mode: typeof SEQUENTIAL): Promise<RunFigures> {
  const since = Date.now()
  await client.api.request('/v1/topics/svc-bench.go/messages', { method: 'POST', body: { data: { run, service: SERVICE, ...mode } }, timeoutMs: 10_000 })
  // A slow poll: every request to the client node takes CPU from the run it measures.
  const line = await waitUntil(async () => (await client.api.request<LogLine[]>(`/v1/workloads/default/${CALLER}/logs?since=${since}`, { timeoutMs: 10_000 }))
    .find(l => l.message === 'svc bench done' && (l.fields as { run?: string } | undefined)?.run === run), { what: `the caller's summary of ${run}`, timeoutMs: RUN_TIMEOUT_MS, intervalMs: 500 })
  const f = line.fields as unknown as RunFigures & { ok: number, failed: number, errors: string[] }
  if (f.failed > 0 || f.ok !== mode.n) throw new Error(`${run}: ${f.ok} of ${mode.n} calls answered, ${f.failed} failed: ${f.errors.join('; ')}`)
  return figures(f)
}

/** The figures of a run, from the caller's log line or the raw client's JSON line. */
function figures (f: RunFigures): RunFigures {
  return { n: f.n, concurrency: f.concurrency, ms: f.ms, perSecond: f.perSecond, p50: f.p50, p90: f.p90, p99: f.p99, max: f.max, mean: f.mean }
}

/** One run of a raw client process against the raw server. */
async function rawRun (address: string, run: string, mode: typeof SEQUENTIAL): Promise<RunFigures> {
  const client = startPeer(RAW_PEER, ['client', address, JSON.stringify([{ run, ...mode } satisfies RawRun])])
  try {
    return figures(await client.next<RunFigures>('done', RUN_TIMEOUT_MS))
  } finally {
    await client.stop()
  }
}

function compare (ours: RunFigures, raw: RunFigures): Comparison {
  return { ours, raw, ratio: { p50: ours.p50 / raw.p50, p99: ours.p99 / raw.p99, rate: raw.perSecond / ours.perSecond } }
}

function report (label: string, c: Comparison): void {
  const line = (who: string, f: RunFigures): string => `  ${who.padEnd(30)} p50 ${fmt(f.p50, 2)} ms, p99 ${fmt(f.p99, 2)} ms, ${fmt(f.perSecond, 0)} /s\n`
  process.stdout.write(`${label}:\n`)
  process.stdout.write(line('raw libp2p stream round trip', c.raw))
  process.stdout.write(line('ctx.call, actor → actor', c.ours))
  process.stdout.write(`  ratio: p50 ${fmt(c.ratio.p50, 2)}× raw, p99 ${fmt(c.ratio.p99, 2)}× raw; raw rate ${fmt(c.ratio.rate, 2)}× ours\n`)
}

// ------------------------------------------------------------------ tunnel

interface Throughput { seconds: number, bytesPerSecond: number, samples: number[] }

/** The policy of the tunnel's mesh: the default, and node principals (a host's own processes) may call svc-sink. */
function tunnelPolicy (deployer: string): string {
  const doc = parse(defaultPolicyText({ admins: [deployer], name: 'services-bench' })) as { rules: unknown[] }
  doc.rules.push({ id: 'bench-host-calls-sink', effect: 'allow', principals: [{ kind: 'node' }], actions: ['call'], resources: [{ kind: 'service', name: TUNNEL_SERVICE }] })
  return stringify(doc)
}

/**
 * Streams `bytes` from a sender process to host:port (the sink, or a proxy in
 * front of it): seconds from the sender's connect to the sink's seeing the
 * end of the stream. Waits for the sink's line of this connection even when
 * the send failed, so the next stream reads its own.
 */
async function stream (sink: Peer, host: string, port: number, bytes: number, netns?: string): Promise<number> {
  const sender = startPeer(RAW_PEER, ['send', host, String(port), String(bytes)], netns)
  try {
    const [sent, got] = await Promise.allSettled([
      sender.next<{ startedAt: number }>('sent', RUN_TIMEOUT_MS),
      sink.next<{ bytes: number, ended: boolean, endAt: number }>('received', RUN_TIMEOUT_MS)
    ])
    if (sent.status === 'rejected') throw sent.reason
    if (got.status === 'rejected') throw got.reason
    if (!got.value.ended || got.value.bytes !== bytes) throw new Error(`the sink received ${got.value.bytes} of ${bytes} bytes${got.value.ended ? '' : ', and no end'}`)
    return (got.value.endAt - sent.value.startedAt) / 1000
  } catch (err) {
    throw new Error(`streaming ${bytes} bytes to ${host}:${port}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  } finally {
    await sender.stop()
  }
}

function firstLine (err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!
}

/** The median (the slower middle one for an even count). */
function throughput (samples: number[]): Throughput {
  const seconds = [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!
  return { seconds, bytesPerSecond: TUNNEL_BYTES / seconds, samples }
}

function mib (t: Throughput): string {
  return `${fmt(t.bytesPerSecond / 2 ** 20, 0)} MiB/s (median of ${t.samples.length}: ${TUNNEL_BYTES / 2 ** 20} MiB in ${fmt(t.seconds, 2)} s)`
}

/** Direct loopback TCP into the sink, in `netns` or here: the baseline of the tunnel figure. */
async function directTcp (sink: Peer, port: number, netns?: string): Promise<Throughput> {
  await stream(sink, '127.0.0.1', port, WARMUP_BYTES, netns)
  const samples: number[] = []
  for (let i = 0; i < TUNNEL_ROUNDS; i++) samples.push(await stream(sink, '127.0.0.1', port, TUNNEL_BYTES, netns))
  return throughput(samples)
}

/**
 * TCP through the service proxy (two ServiceTunnel peers, bench/svc-tunnel-peer.ts)
 * beside direct loopback TCP into the same sink, alternating, all in one network
 * namespace (the proxy adds the service address to that namespace's lo, not the host's).
 */
async function tunnelThroughput (): Promise<TunnelFigures> {
  const unsupported = !existsSync(join(ROOT, 'src/services/tunnel.ts')) ? 'src/services/tunnel.ts not present' : netnsUnsupported()
  if (unsupported != null) {
    const sink = startPeer(RAW_PEER, ['sink'])
    try {
      const { port } = await sink.next<{ port: number }>('listening', START_TIMEOUT_MS)
      const direct = await directTcp(sink, port)
      process.stdout.write(`direct loopback TCP into the sink: ${mib(direct)}\n`)
      process.stdout.write(`tunnel: not measured — ${unsupported}\n`)
      return { measured: false, reason: unsupported, bytes: TUNNEL_BYTES, direct }
    } finally {
      await sink.stop()
    }
  }
  const network = await createHosts(1)
  const netns = network.hosts[0]!.name
  const trust = await makeTrust(tunnelPolicy)
  const started: Peer[] = []
  const start = (script: string, args: string[]): Peer => { const p = startPeer(script, args, netns); started.push(p); return p }
  try {
    const sink = start(RAW_PEER, ['sink'])
    const { port: sinkPort } = await sink.next<{ port: number }>('listening', START_TIMEOUT_MS)
    const callee = start(TUNNEL_PEER, ['callee', trust.meshFile, trust.rootKeyFile, String(sinkPort)])
    const { address } = await callee.next<{ address: string }>('listening', START_TIMEOUT_MS)
    const caller = start(TUNNEL_PEER, ['caller', trust.meshFile, trust.rootKeyFile, address])
    const proxy = await caller.next<{ host: string, port: number }>('ready', START_TIMEOUT_MS)
    await stream(sink, '127.0.0.1', sinkPort, WARMUP_BYTES, netns)
    const directSamples: number[] = []
    const tunnelSamples: number[] = []
    const failures: string[] = []
    await stream(sink, proxy.host, proxy.port, WARMUP_BYTES, netns).catch(err => { failures.push(`warm-up: ${firstLine(err)}`) })
    for (let i = 0; i < TUNNEL_ROUNDS; i++) {
      directSamples.push(await stream(sink, '127.0.0.1', sinkPort, TUNNEL_BYTES, netns))
      // A tunnel that drops a stream is a finding, not the end of the run: counted and reported.
      try {
        tunnelSamples.push(await stream(sink, proxy.host, proxy.port, TUNNEL_BYTES, netns))
      } catch (err) {
        failures.push(firstLine(err))
      }
    }
    const direct = throughput(directSamples)
    process.stdout.write(`direct loopback TCP into the sink:            ${mib(direct)}\n`)
    if (failures.length > 0) process.stdout.write(`through the service proxy: ${failures.length} of ${TUNNEL_ROUNDS + 1} streams failed (warm-up included); first: ${failures[0]}\n`)
    if (tunnelSamples.length === 0) {
      const reason = `every stream through the tunnel failed (${failures.length}); first: ${failures[0]}`
      process.stdout.write(`tunnel: not measured — ${reason}\n`)
      return { measured: false, reason, bytes: TUNNEL_BYTES, direct, failures }
    }
    const tunnel = throughput(tunnelSamples)
    const ratio = tunnel.bytesPerSecond / direct.bytesPerSecond
    process.stdout.write(`through the service proxy (${proxy.host}:${proxy.port}): ${mib(tunnel)}\n`)
    process.stdout.write(`  ratio: tunnel ${fmt(100 * ratio)}% of direct\n`)
    return { measured: true, bytes: TUNNEL_BYTES, direct, tunnel, ratio, failures }
  } catch (err) {
    // Which side refused or reset is in the peers' logs.
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${started.map(p => `--- ${p.name}\n${p.stderr().slice(-3000)}`).join('\n')}`, { cause: err })
  } finally {
    await Promise.all(started.map(async p => await p.stop()))
    await network.destroy()
    await rm(trust.dir, { recursive: true, force: true })
  }
}

// ------------------------------------------------------------------ run

export async function run (): Promise<void> {
  if (process.env.BENCH_SERVICES_ONLY === 'tunnel') {
    await tunnelThroughput()
    return
  }
  const rawServer = startPeer(RAW_PEER, ['server'])
  const nodes: NodeProcess[] = []
  try {
    const { address } = await rawServer.next<{ address: string }>('listening', START_TIMEOUT_MS)
    const client = await startNode({ extra: ['--label', 'role=client'] })
    nodes.push(client)
    const server = await startNode({ bootstrap: [client.address], extra: ['--label', 'role=server'] })
    nodes.push(server)
    await waitUntil(async () => (await client.peers()).some(p => p.peerId === server.peerId), { what: 'the client node to see the server node', timeoutMs: START_TIMEOUT_MS })
    await apply(client, 'bench/workloads/svc-echo.ts')
    await apply(client, 'bench/workloads/svc-caller.ts')
    // Ready as the client's node sees it: B's heartbeat carries the replica's probe result.
    await waitUntil(async () => (await client.api.request<{ replicas: Array<{ peerId: string, ready: boolean }> }>(`/v1/services/default/${SERVICE}`, { timeoutMs: 10_000 }))
      .replicas.some(r => r.ready && r.peerId === server.peerId), { what: `${SERVICE} ready on the server node, seen from the client node`, timeoutMs: START_TIMEOUT_MS, intervalMs: 200 })

    // Each raw run right before the matching run of ours, so the two see the same machine.
    const rawSequential = await rawRun(address, 'raw-sequential', SEQUENTIAL)
    const sequential = compare(await oursRun(client, 'sequential', SEQUENTIAL), rawSequential)
    report(`sequential (${SEQUENTIAL.n} calls, 1 at a time, after ${SEQUENTIAL.warmup} warm-up)`, sequential)
    const rawConcurrent = await rawRun(address, 'raw-concurrent', CONCURRENT)
    const concurrent = compare(await oursRun(client, 'concurrent', CONCURRENT), rawConcurrent)
    report(`concurrent (${CONCURRENT.n} calls, ${CONCURRENT.concurrency} in flight, after ${CONCURRENT.warmup} warm-up)`, concurrent)

    await rawServer.stop()
    await Promise.all(nodes.splice(0).map(async n => await n.kill('SIGKILL')))
    // The tunnel part is younger than the calls: its failure is reported with the call figures, not instead of them.
    const tunnel = await tunnelThroughput().catch((err): TunnelFigures => {
      process.stdout.write(`tunnel: not measured — failed: ${err instanceof Error ? err.message : String(err)}\n`)
      return { measured: false, reason: `failed: ${firstLine(err)}`, bytes: TUNNEL_BYTES }
    })

    const path = await writeResult('services', {
      nodes: 2,
      calls: { sequential, concurrent },
      tunnel,
      settings: { sequential: SEQUENTIAL, concurrent: CONCURRENT, tunnelBytes: TUNNEL_BYTES, tunnelRounds: TUNNEL_ROUNDS }
    })
    process.stdout.write(`wrote ${path}\n`)
  } finally {
    await rawServer.stop()
    await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  }
}
