import { packagePath } from '../../paths.js'
import { NODE_V8_FLAGS } from '../../node/process-flags.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { NodeStatus } from '../../workloads/views.js'
import { BeeMeshError, InvalidArgumentError, describeError } from '../../errors.js'
import type { PrivateKey } from '@libp2p/interface'
import { ApiClient, deployerKey, upRegistryDir, upRegistryFile } from '../api-client.js'
import { generateKey, issueCredential, issueToken, keyId, MAX_TOKEN_TTL_MS, readKeyFile, signPolicy, writeKeyFile } from '../../policy/credentials.js'
import { loadOrCreateIdentity } from '../../transport/identity.js'
import { defaultPolicyText } from '../../policy/defaults.js'
import { DEFAULT_DATA_DIR, parsePort } from '../defaults.js'

export interface UpOptions {
  nodes: string
  apiPort: string
  dataDir?: string
  timeout: string
  logLevel: string
}

export class MeshStartError extends BeeMeshError {
  constructor (message: string) {
    super(message)
    this.name = 'MeshStartError'
  }
}

interface LocalNode {
  name: string
  child: ChildProcess
  api: ApiClient
  logFile: string
  exited?: string
}

const BIN = packagePath('bin', 'beemesh.js')

/**
 * `beemesh up`: an embedded mesh of N node processes on loopback, node i
 * serving its API on BASE+i, each bootstrapped to node 0. Prints a ready line
 * once every node hears the N-1 others (their heartbeats are in its view), and stops every child on SIGINT/SIGTERM.
 */
export async function up (opts: UpOptions, onReady?: (nodes: Array<{ name: string, url: string, peerId: string, token: string }>) => Promise<void>): Promise<void> {
  const count = Number(opts.nodes)
  if (!Number.isInteger(count) || count < 1 || count > 200) throw new InvalidArgumentError(`--nodes must be a whole number from 1 to 200, got "${opts.nodes}"`)
  const basePort = parsePort(opts.apiPort, '--api-port')
  if (basePort + count - 1 > 65535) throw new InvalidArgumentError(`--api-port ${basePort} leaves no room for ${count} nodes`)
  const timeoutMs = Number(opts.timeout) * 1000
  if (!(timeoutMs > 0)) throw new InvalidArgumentError(`--timeout must be a positive number of seconds, got "${opts.timeout}"`)
  const baseDir = resolve(opts.dataDir ?? join(DEFAULT_DATA_DIR, 'local'))
  const started = Date.now()
  const deadline = started + timeoutMs
  const nodes: LocalNode[] = []
  let shuttingDown = false
  let registered: string[] = []
  let tokenFile = ''

  const shutdown = async (): Promise<void> => {
    if (shuttingDown) return
    shuttingDown = true
    await stopAll(nodes)
    await unregister(registered, tokenFile)
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping ${nodes.filter(n => n.exited == null).length} node(s)…\n`)
    shutdown().then(() => {
      process.stderr.write('all nodes stopped\n')
      process.exit(0)
    }, () => { process.exit(1) })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    process.stderr.write(`starting ${count} node(s) on loopback; data in ${baseDir}\n`)
    const trust = await devTrust(baseDir)
    tokenFile = trust.tokenFile
    registered = await register(trust, baseDir, Array.from({ length: count }, (_, i) => `http://127.0.0.1:${basePort + i}`))
    process.stderr.write(`mesh trust root ${trust.root} in ${trust.dir}; API callers need a token: deployer ${trust.deployer} (admin) has one in ${trust.tokenFile}, which the CLI, \`beemesh kubeconfig\` and \`beemesh ui\` use for these nodes${trust.admin != null ? `; your deployer ${trust.admin} is admin too` : ''}\n`)
    const first = await startNode(0, [], basePort, baseDir, opts.logLevel, nodes, trust)
    const firstStatus = await waitFor(nodes[0]!, deadline, s => s.addresses.length > 0)
    const bootstrap = firstStatus.addresses.find(a => a.startsWith('/ip4/127.0.0.1/')) ?? firstStatus.addresses[0]!
    process.stderr.write(`  ${first.name} up: ${firstStatus.peerId}\n`)
    for (let i = 1; i < count; i++) await startNode(i, [bootstrap], basePort, baseDir, opts.logLevel, nodes, trust)
    const statuses = await Promise.all(nodes.map(async node => {
      const status = await waitFor(node, deadline, s => (s.members ?? 0) >= count - 1, pollGapMs(count))
      if (node !== nodes[0]) process.stderr.write(`  ${node.name} up: ${status.peerId}\n`)
      return status
    }))

    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    process.stdout.write(`mesh ready: ${count} nodes in ${seconds}s\n`)
    const ready = nodes.map((n, i) => ({ name: n.name, url: n.api.baseUrl, peerId: statuses[i]!.peerId, token: trust.token }))
    for (const n of ready) process.stdout.write(`  ${n.name}  ${n.peerId}  ${n.url}\n`)
    process.stdout.write(`web view: ${ready[0]!.url}/ui/   (or: beemesh ui)\n`)
    process.stdout.write(`kubectl: beemesh kubeconfig --api ${ready[0]!.url} --write kubeconfig   (https, verified with the mesh CA ${join(baseDir, 'trust', 'ca.crt')})\n`)
    process.stdout.write(`try: beemesh peers --api ${ready[0]!.url}   (Ctrl-C stops the mesh)\n`)

    for (const node of nodes) {
      node.child.once('exit', () => {
        if (!shuttingDown) process.stderr.write(`${node.name} exited unexpectedly (${node.exited ?? 'unknown'}); log: ${node.logFile}\n`)
      })
    }
    await onReady?.(ready)
  } catch (err) {
    await shutdown()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    throw err
  }
  // Keep running until a signal arrives.
  await new Promise<never>(() => {})
}

/**
 * Starts node i with a membership credential `up` issued it with the root key
 * (the node's identity key is made here first, so its peer id is known): the
 * node never sees the root key.
 */
async function startNode (i: number, bootstrap: string[], basePort: number, baseDir: string, logLevel: string, nodes: LocalNode[], trust: LocalTrust): Promise<LocalNode> {
  const name = `node-${i}`
  const dataDir = join(baseDir, name)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const identity = await loadOrCreateIdentity(dataDir)
  const credentialFile = join(dataDir, 'credential.json')
  const credential = await issueCredential(trust.rootKey, keyId(identity.privateKey), { ttlMs: LOCAL_TTL_MS })
  await writeFile(credentialFile, JSON.stringify(credential, null, 2) + '\n', { mode: 0o600 })
  const logFile = join(dataDir, 'node.log')
  const log = await open(logFile, 'a')
  const apiPort = basePort + i
  const trustDir = join(baseDir, 'trust')
  // TLS with the loopback certificate from the local mesh's CA (kubectl, client libraries), and
  // plain HTTP for loopback callers (the CLI's default URL, the web view in a browser).
  const tlsCert = join(trustDir, 'api.crt')
  const tlsKey = join(trustDir, 'api.key')
  const args = [...NODE_V8_FLAGS, BIN, 'node', 'start', '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', dataDir, '--api-port', String(apiPort), '--log-level', logLevel, '--trust', join(trustDir, 'mesh.json'), '--credential', credentialFile, '--tls-cert', tlsCert, '--tls-key', tlsKey, '--api-insecure-http']
  for (const b of bootstrap) args.push('--bootstrap', b)
  const child = spawn(process.execPath, args, { stdio: ['ignore', log.fd, log.fd, 'ipc'] })
  await log.close()
  // `up` speaks to its own nodes with the run token, whatever credentials the environment names.
  const node: LocalNode = { name, child, api: new ApiClient(`http://127.0.0.1:${apiPort}`, trust.token), logFile }
  child.once('exit', (code, signal) => { node.exited = signal != null ? `signal ${signal}` : `exit code ${code ?? '?'}` })
  nodes.push(node)
  return node
}

/** Polls a node's status until `done` holds; fails with the node's own last error line if it exits. */
/** How often `up` asks each node for its status: every node at once, so less often in a large mesh (200 nodes: every 2 s). */
function pollGapMs (count: number): number {
  return Math.max(100, count * 10)
}

async function waitFor (node: LocalNode, deadline: number, done: (s: NodeStatus) => boolean, gapMs = 100): Promise<NodeStatus> {
  let last: NodeStatus | undefined
  let lastError = ''
  while (Date.now() < deadline) {
    if (node.exited != null) {
      throw new MeshStartError(`${node.name} exited (${node.exited}) before it was ready: ${await lastLogLine(node.logFile)}`)
    }
    try {
      last = await node.api.request<NodeStatus>('/v1/status', { timeoutMs: 1_000 })
      if (done(last)) return last
    } catch (err) {
      lastError = describeError(err)
    }
    await new Promise(resolve => setTimeout(resolve, gapMs))
  }
  const what = last != null ? `it hears ${last.members ?? 0} other node(s) and is connected to ${last.peerCount}` : `its API never answered (${lastError})`
  throw new MeshStartError(`${node.name} was not ready in time: ${what}; log: ${node.logFile}`)
}

async function lastLogLine (file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const lines = text.trim().split('\n').filter(l => l.length > 0)
  const plain = lines.filter(l => !l.startsWith('{'))
  return plain.at(-1) ?? lines.at(-1) ?? '(no output)'
}

async function stopAll (nodes: LocalNode[]): Promise<void> {
  const alive = nodes.filter(n => n.exited == null)
  await Promise.all(alive.map(async node => {
    const exited = new Promise<void>(resolve => {
      if (node.exited != null) { resolve(); return }
      node.child.once('exit', () => { resolve() })
    })
    node.child.kill('SIGTERM')
    const timer = setTimeout(() => { node.child.kill('SIGKILL') }, 3_000)
    await exited
    clearTimeout(timer)
  }))
}

/** The local mesh's trust: its root key (never given to a node), the run deployer and its token. */
interface LocalTrust { root: string, rootKey: PrivateKey, dir: string, deployer: string, tokenFile: string, token: string, admin?: string }

/** How long the run deployer's token and the nodes' credentials last (`up` makes new ones on every start). */
const LOCAL_TTL_MS = MAX_TOKEN_TTL_MS

/**
 * The local mesh's trust, in <data dir> beside (never inside) the nodes' data
 * dirs: `trust/root.key` (reused; only `up` reads it: it issues each node's
 * credential itself), `deployer.key` (the run deployer, reused) and
 * `deployer.token` (a fresh token for this mesh, 30 days), all mode 0600.
 * The policy, newer on each start than what the nodes persisted, makes the
 * run deployer admin, and the CLI's own deployer key too if there is one.
 */
/** The key in `file`, or a new one written there (mode 0600) when it has none: `up` keeps its root and run deployer across starts. */
async function keptKey (file: string): Promise<PrivateKey> {
  try {
    return (await readKeyFile(file)).key
  } catch {
    const key = await generateKey()
    await writeKeyFile(file, key, { overwrite: true })
    return key
  }
}

async function devTrust (baseDir: string): Promise<LocalTrust> {
  const dir = join(baseDir, 'trust')
  const rootKey = await keptKey(join(dir, 'root.key'))
  const root = keyId(rootKey)
  const deployerKeyValue = await keptKey(join(baseDir, 'deployer.key'))
  const deployer = keyId(deployerKeyValue)
  const tokenFile = join(baseDir, 'deployer.token')
  const token = await issueToken(deployerKeyValue, { mesh: root, ttlMs: LOCAL_TTL_MS })
  await writeFile(tokenFile, token + '\n', { mode: 0o600 })
  await chmod(tokenFile, 0o600)
  const admin = await deployerKey().then(k => k?.id, () => undefined)
  const admins = [deployer, ...(admin != null && admin !== deployer ? [admin] : [])]
  const policy = await signPolicy(rootKey, defaultPolicyText({ admins, name: 'local', version: Math.floor(Date.now() / 1000) }))
  const mesh = { apiVersion: 'beemesh.io/v1', kind: 'Mesh', name: 'local', root, policy }
  await writeFile(join(dir, 'mesh.json'), JSON.stringify(mesh, null, 2) + '\n', { mode: 0o600 })
  // Every node of the local mesh serves its API on loopback: one certificate (127.0.0.1, localhost, ::1) for all, fresh on each start.
  const { ensureMeshCa, issueServingCert, writePemPair } = await import('../../policy/tls-issue.js')
  const ca = await ensureMeshCa(dir, mesh.name)
  await writePemPair(join(dir, 'api.crt'), join(dir, 'api.key'), await issueServingCert(ca, ['127.0.0.1', 'localhost', '::1'], { commonName: 'beemesh local mesh API' }))
  return { root, rootKey, dir, deployer, tokenFile, token, ...(admin != null && admin !== deployer ? { admin } : {}) }
}

/** Notes, for each node's API URL, that this mesh serves it and where its token lies: how the CLI, kubeconfig and ui find it. */
async function register (trust: LocalTrust, baseDir: string, urls: string[]): Promise<string[]> {
  await mkdir(upRegistryDir(), { recursive: true, mode: 0o700 })
  const files = urls.map(upRegistryFile)
  const entry = JSON.stringify({ mesh: trust.root, dir: baseDir, tokenFile: trust.tokenFile, apis: urls }, null, 2) + '\n'
  for (const f of files) await writeFile(f, entry, { mode: 0o600 })
  return files
}

/** Removes this mesh's registry entries (those still naming it: another `up` may have taken a port since). */
async function unregister (files: string[], tokenFile: string): Promise<void> {
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => '')
    if (text.includes(JSON.stringify(tokenFile))) await rm(f, { force: true }).catch(() => {})
  }
}
