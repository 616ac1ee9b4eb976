/**
 * Real OS processes for tests: the `beemesh` CLI and `beemesh node start`
 * daemons, each a separate Node process talking over TCP loopback.
 * Every spawned process is killed when the test process exits.
 * With `netns`, a process runs inside a network namespace (test/helpers/netns.ts)
 * through `ip netns exec`, which execs in place: the child's pid is node's own,
 * so signals reach node itself.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { NODE_V8_FLAGS } from '../../src/node/process-flags.js'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { PrivateKey } from '@libp2p/interface'
import { generateKey, keyId, signPolicy, writeKeyFile } from '../../src/policy/credentials.js'
import { defaultPolicyText } from '../../src/policy/defaults.js'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as assert from 'uvu/assert'
import { ApiClient, useCa, useCredentials } from '../../src/cli/api-client.js'
import { ensureMeshCa, issueServingCert, writePemPair } from '../../src/policy/tls-issue.js'
import type { NodeStatus } from '../../src/workloads/views.js'
import type { MeshPeer } from '../../src/transport/mesh-node.js'

export const ROOT = new URL('../..', import.meta.url).pathname
export const BIN = join(ROOT, 'bin/beemesh.js')

const children = new Set<ChildProcess>()
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

/** A network namespace to run a process in, and the node's address there. */
export interface NetnsHost { name: string, ip: string }

/**
 * The command and arguments that run the CLI with `args`, inside `netns` when given.
 * TEST_NODE_ARGS adds Node flags to every process (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a test's nodes).
 */
function command (args: string[], netns?: string, nodeFlags: readonly string[] = NODE_V8_FLAGS): [string, string[]] {
  // a node runs with the flags `beemesh up` and the bin's #! line give it (`nodeFlags`: others, to measure them)
  const extra = [...(args[0] === 'node' && args[1] === 'start' ? nodeFlags : []), ...(process.env.TEST_NODE_ARGS ?? '').split(' ').filter(Boolean)]
  return netns == null ? [process.execPath, [...extra, BIN, ...args]] : ['ip', ['netns', 'exec', netns, process.execPath, ...extra, BIN, ...args]]
}

export async function tempDir (prefix = 'beemesh-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

/** A mesh trust root for tests: its files, the root key, an admin deployer key, and the mesh CA (ca.crt, ca.key). */
export interface TestTrust { dir: string, meshFile: string, rootKeyFile: string, root: string, rootKey: PrivateKey, deployerKeyFile: string, deployer: string, caFile: string }

let sharedTrust: Promise<TestTrust> | undefined

/**
 * Makes a trust root as `beemesh init` does, with an admin deployer key. The
 * policy is `policy(deployer)` (default: the deployer may do anything).
 */
export async function makeTrust (policy: (deployer: string) => string = deployer => defaultPolicyText({ admins: [deployer], name: 'test' })): Promise<TestTrust> {
  const dir = await tempDir('beemesh-trust-')
  const rootKey = await generateKey()
  const rootKeyFile = join(dir, 'root.key')
  await writeKeyFile(rootKeyFile, rootKey)
  const deployerKeyFile = join(dir, 'deployer.key')
  const deployer = await writeKeyFile(deployerKeyFile, await generateKey())
  const meshFile = join(dir, 'mesh.json')
  const root = keyId(rootKey)
  await writeFile(meshFile, JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Mesh', name: 'test', root, policy: await signPolicy(rootKey, policy(deployer)) }))
  await ensureMeshCa(dir, 'test')
  return { dir, meshFile, rootKeyFile, root, rootKey, deployerKeyFile, deployer, caFile: join(dir, 'ca.crt') }
}

/**
 * The trust root every test node joins unless told otherwise (one per test
 * process). The test's API clients and CLI runs speak as its admin deployer
 * (a bearer token from its key), as a user with `beemesh keygen` would.
 */
export async function testTrust (): Promise<TestTrust> {
  sharedTrust ??= makeTrust().then(t => {
    process.env.BEEMESH_KEY = t.deployerKeyFile
    process.env.BEEMESH_MESH = t.meshFile
    useCredentials({ keyPath: t.deployerKeyFile, mesh: t.meshFile })
    // https APIs (nodes in network namespaces) are verified with the test mesh's CA.
    process.env.BEEMESH_CA = t.caFile
    useCa(t.caFile)
    return t
  })
  return await sharedTrust
}

/** `node start` flags joining `trust` as a member that issues its own credential (tests only: `up` issues them itself), over plain HTTP (loopback only). */
export function trustFlags (trust: TestTrust, { member = true, insecureHttp = true } = {}): string[] {
  return ['--trust', trust.meshFile, ...(member ? ['--issue-with', trust.rootKeyFile] : []), ...(insecureHttp ? ['--api-insecure-http'] : [])]
}

/** An API certificate for `hosts` from the test mesh's CA, as `beemesh cert issue` makes one: `node start` flags. */
export async function tlsFlags (hosts: string[], dir?: string): Promise<string[]> {
  const trust = await testTrust()
  const out = dir ?? await tempDir('beemesh-tls-')
  const ca = await ensureMeshCa(trust.dir, 'test')
  await writePemPair(join(out, 'api.crt'), join(out, 'api.key'), await issueServingCert(ca, hosts))
  return ['--tls-cert', join(out, 'api.crt'), '--tls-key', join(out, 'api.key')]
}

/** Resolves when `check` returns a truthy value; rejects after `timeoutMs` with `what` and the last value. */
export async function waitUntil<T> (check: () => T | Promise<T>, { timeoutMs = 15_000, intervalMs = 50, what = 'condition' } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  let lastError: unknown
  while (Date.now() < deadline) {
    try {
      last = await check()
      if (last != null && last !== false) return last as NonNullable<T>
    } catch (err) {
      lastError = err
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last value: ${JSON.stringify(last)}${lastError != null ? `, last error: ${String(lastError)}` : ''})`)
}

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** Runs the CLI to completion (bounded) and returns its exit code and output. */
export async function cli (args: string[], { env = {}, timeoutMs = 30_000, netns }: { env?: Record<string, string>, timeoutMs?: number, netns?: string } = {}): Promise<CliResult> {
  const child = spawn(...command(args, netns), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number | null>(resolve => child.on('exit', c => { resolve(c) }))
  clearTimeout(timer)
  children.delete(child)
  return { code, stdout, stderr }
}

/** A CLI process left running (e.g. `subscribe`, `up`), with its output so far. */
export interface Running {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  exited: Promise<number | null>
  waitForOutput: (pattern: RegExp, opts?: { timeoutMs?: number, stream?: 'stdout' | 'stderr' }) => Promise<RegExpExecArray>
}

export function startCli (args: string[], { env = {}, netns, nodeFlags }: { env?: Record<string, string>, netns?: string, nodeFlags?: readonly string[] } = {}): Running {
  const child = spawn(...command(args, netns, nodeFlags), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  const notify = (): void => { for (const w of waiters) w() }
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); notify() })
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); notify() })
  const exited = new Promise<number | null>(resolve => child.on('exit', c => { children.delete(child); notify(); resolve(c) }))
  let done = false
  void exited.then(() => { done = true })
  const waitForOutput = async (pattern: RegExp, { timeoutMs = 20_000, stream = 'stdout' }: { timeoutMs?: number, stream?: 'stdout' | 'stderr' } = {}): Promise<RegExpExecArray> => {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const m = pattern.exec(stream === 'stdout' ? out : err)
        if (m != null) { cleanup(); resolve(m); return }
        if (done) { cleanup(); reject(new Error(`process exited before printing ${String(pattern)}\nstdout: ${out}\nstderr: ${err}`)) }
      }
      const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${String(pattern)}\nstdout: ${out}\nstderr: ${err}`)) }, timeoutMs)
      const cleanup = (): void => { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
  }
  return { child, stdout: () => out, stderr: () => err, exited, waitForOutput }
}

export interface NodeProcess extends Running {
  peerId: string
  apiUrl: string
  address: string
  dataDir: string
  api: ApiClient
  status: () => Promise<NodeStatus>
  peers: () => Promise<MeshPeer[]>
  kill: (signal?: NodeJS.Signals) => Promise<number | null>
  /** The CPU the node reported having used from spawn until it was up (its `start` line). */
  startCpuMs: number
}

/**
 * Starts `beemesh node start` on loopback with an ephemeral API port; resolves once it runs.
 * With `netns`, the node runs in that namespace, listening and serving its API
 * on the namespace's address (reachable from the root namespace through the
 * test bridge), with private addresses kept so peers may dial them. `listen`
 * replaces the listen addresses (announce others through `extra`).
 */
export async function startNode ({ dataDir, bootstrap = [], extra = [], netns, trust, listen, nodeFlags, env, logLevel = 'warn' }: { dataDir?: string, bootstrap?: string[], extra?: string[], netns?: NetnsHost, trust?: string[], listen?: string[], nodeFlags?: readonly string[], env?: Record<string, string>, logLevel?: string } = {}): Promise<NodeProcess> {
  const dir = dataDir ?? await tempDir()
  // Default: a member of the test process's mesh; the test's clients speak as its admin deployer.
  const trustArgs = trust ?? trustFlags(await testTrust())
  const listenArgs = (fallback: string): string[] => (listen ?? [fallback]).flatMap(a => ['--listen', a])
  // In a namespace the API is reached from another address: TLS with the test mesh's CA, never plain HTTP.
  const where = netns == null ? listenArgs('/ip4/127.0.0.1/tcp/0') : [...listenArgs(`/ip4/${netns.ip}/tcp/0`), '--api-host', netns.ip, '--private-addresses', ...await tlsFlags([netns.ip], dir)]
  if (netns != null) extra = extra.filter(a => a !== '--api-insecure-http')
  const args = ['node', 'start', ...where, '--data-dir', dir, '--api-port', '0', '--log-level', logLevel, ...(netns != null ? trustArgs.filter(a => a !== '--api-insecure-http') : trustArgs), ...extra]
  for (const b of bootstrap) args.push('--bootstrap', b)
  const running = startCli(args, { netns: netns?.name, ...(nodeFlags != null ? { nodeFlags } : {}), ...(env != null ? { env } : {}) })
  const m = await running.waitForOutput(/node (\S+) running\n\s+listening\s+(\S+)[\s\S]*?api\s+(\S+)\n[\s\S]*?\n {2}start +(\d+) ms of CPU/)
  const api = new ApiClient(m[3]!)
  return {
    ...running,
    peerId: m[1]!,
    address: m[2]!,
    apiUrl: m[3]!,
    dataDir: dir,
    api,
    status: async () => await api.request<NodeStatus>('/v1/status', { timeoutMs: 5_000 }),
    peers: async () => await api.request<MeshPeer[]>('/v1/peers', { timeoutMs: 5_000 }),
    kill: async (signal = 'SIGTERM') => { running.child.kill(signal); return await running.exited },
    startCpuMs: Number(m[4])
  }
}

/** A Prometheus metric of a node (`GET /metrics`), summed over the series whose labels include `labels`. */
export async function metric (node: NodeProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await node.api.fetch('/metrics', { timeoutMs: 5_000 })).text()
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.split(' ').at(-1))
  }
  return total
}

/** Starts n nodes, all bootstrapped to the first, and waits until each sees n-1 peers. */
export async function startMesh (n: number, extra: string[] = [], { logLevel }: { logLevel?: string } = {}): Promise<NodeProcess[]> {
  const nodes: NodeProcess[] = []
  try {
    nodes.push(await startNode({ extra, ...(logLevel != null ? { logLevel } : {}) }))
    const rest = await Promise.all(Array.from({ length: n - 1 }, async () => await startNode({ bootstrap: [nodes[0]!.address], extra, ...(logLevel != null ? { logLevel } : {}) })))
    nodes.push(...rest)
    await Promise.all(nodes.map(async node => await waitUntil(async () => (await node.peers()).length === n - 1, { what: `${node.peerId} to see ${n - 1} peers` })))
    return nodes
  } catch (err) {
    await Promise.all(nodes.map(async node => await node.kill('SIGKILL')))
    throw err
  }
}

/** Puts a DHT record through `from`'s CLI and reads it back through `to`'s; checks value and publisher. */
export async function recordRoundTrip (from: NodeProcess, to: NodeProcess, key: string, value: string): Promise<void> {
  const put = await cli(['record', 'put', key, value, '-o', 'json', '--api', from.apiUrl])
  assert.is(put.code, 0, put.stderr)
  assert.ok((JSON.parse(put.stdout) as { replicas: number }).replicas >= 1, `record should reach a peer: ${put.stdout}`)
  const get = await cli(['record', 'get', key, '-o', 'json', '--api', to.apiUrl])
  assert.is(get.code, 0, get.stderr)
  const record = JSON.parse(get.stdout) as { value: string, publisher: string }
  assert.is(record.value, value)
  assert.is(record.publisher, from.peerId)
}

/**
 * The lowest ephemeral port. A range picked for the API must lie below it:
 * the nodes' own outgoing connections and `/tcp/0` listeners take ephemeral
 * ports, and one once took node-2's API port between this check and its start.
 */
async function ephemeralLow (): Promise<number> {
  try {
    return Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0]) || 32_768
  } catch {
    return 32_768
  }
}

/** A base port whose next `count` ports are free right now, below the ephemeral range. */
export async function freePortRange (count: number): Promise<number> {
  const low = 20_000
  const high = Math.max(low + 1_000, (await ephemeralLow()) - count)
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low))
    const servers = []
    let ok = true
    for (let i = 0; i < count && ok; i++) {
      const server = createServer()
      ok = await new Promise<boolean>(resolve => {
        server.once('error', () => { resolve(false) })
        server.listen(base + i, '127.0.0.1', () => { resolve(true) })
      })
      if (ok) servers.push(server)
    }
    await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
    if (ok) return base
  }
  throw new Error('no free port range')
}
