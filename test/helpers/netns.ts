/**
 * Linux network namespaces as test hosts, so multi-host tests can cut the
 * network between nodes for real (needs root and iproute2; uses `ip` only).
 *
 * `createHosts(n)` makes, in the root namespace, a bridge `bmbr-<pid>` with
 * address 10.213.<k>.254/24, and n namespaces `bm-<pid>-<i>`, each joined to the
 * bridge by a veth pair (`bmv-<pid>-<i>` in the root namespace, `eth0` inside)
 * with address 10.213.<k>.<i+1>/24, `lo` up and a default route via the bridge.
 * The root namespace (the test process) reaches every host through the bridge;
 * IP forwarding is not touched, so nothing leaves the bridge.
 *
 * k starts from the pid and skips a /24 that the root namespace already uses or
 * that another live test process holds (a lock file per subnet, taken with
 * O_EXCL), so concurrent runs do not collide. Everything is removed by
 * `destroy()`, and synchronously on process exit; leftovers of a crashed run
 * (this pid's names, or those of any dead pid) are removed before creating.
 */
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startNode, waitUntil, type NodeProcess } from './processes.js'

const execFileAsync = promisify(execFile)

export interface TestHost {
  /** Index in `network.hosts`. */
  index: number
  /** Network namespace name (for `ip netns exec`). */
  name: string
  /** The host's address on the test bridge. */
  ip: string
}

/**
 * How a partition drops traffic: a route of this type for each address on the
 * other side, inside each namespace. Measured with 4 nodes partitioned 2|2
 * (test/netns.test.ts prints its own figures each run):
 *
 * - All three fail a new connect() at once in the sender (the route lookup
 *   fails: unreachable → EHOSTUNREACH, prohibit → EACCES, blackhole → EINVAL),
 *   so re-dials during the partition never hang.
 * - None of them errors an established TCP connection: the kernel drops the
 *   segment at route lookup and TCP keeps retransmitting quietly. libp2p notices
 *   only through its connection monitor (a ping every 10 s, ≥ 5 s timeout), so
 *   libp2p drops the connection 10-15 s after the cut, whatever the type; our
 *   heartbeats (1 s, 3.5 s timeout) mark the far side not ready in ~3-4 s.
 *
 * `unreachable` is used: as fast as the others, and its error (EHOSTUNREACH,
 * "No route to host") says what happened in the nodes' logs.
 */
export type PartitionRoute = 'unreachable' | 'prohibit' | 'blackhole'

export interface TestNetwork {
  /** `10.213.<k>.0/24` */
  subnet: string
  /** The bridge in the root namespace and its address (each host's default gateway). */
  bridge: string
  gateway: string
  hosts: TestHost[]
  /** Cuts traffic between every host of sideA and every host of sideB, both ways; each stays reachable from the root namespace. Idempotent. */
  partition: (sideA: number[], sideB: number[], opts?: { route?: PartitionRoute }) => Promise<void>
  /** Removes every partition route. Idempotent. */
  heal: () => Promise<void>
  /** Kills whatever still runs in the namespaces and removes namespaces, veths and bridge. Idempotent. */
  destroy: () => Promise<void>
}

export class IpCommandError extends Error {
  constructor (readonly args: string[], readonly code: number | string | null, readonly stderr: string) {
    super(`\`ip ${args.join(' ')}\` failed (exit ${String(code)}): ${stderr.trim() || '(no stderr)'}`)
    this.name = 'IpCommandError'
  }
}

/** Runs `ip <args>`; rejects with the command and its stderr. */
export async function ip (...args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync('ip', args, { encoding: 'utf8', timeout: 10_000 })
    return stdout
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string, code?: number | string }
    throw new IpCommandError(args, e.code ?? null, e.stderr ?? e.message)
  }
}

function ipSync (...args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { status?: number | null, stderr?: string, message: string }
    throw new IpCommandError(args, e.status ?? null, e.stderr ?? e.message)
  }
}

/** "Already gone" errors, for removals that must be idempotent. */
const GONE = /Cannot find device|No such file or directory|does not exist|No such process|Cannot open network namespace|Invalid namespace/i

const NAME_PREFIX = { netns: 'bm-', veth: 'bmv-', bridge: 'bmbr-' }

/** Networks of this process not yet destroyed (what the exit handler removes). */
interface LiveNetwork { bridge: string, netns: string[], veths: string[], k: number }
const liveNetworks = new Set<LiveNetwork>()

const LOCK_DIR = join(tmpdir(), 'beemesh-netns')
const lockPath = (k: number): string => join(LOCK_DIR, `10.213.${k}.lock`)

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A lock of this pid is ours only if a live network of this process holds it (else it is left by an earlier run with the same pid). */
const ownLock = (k: number, owner: number): boolean => owner === process.pid && [...liveNetworks].some(n => n.k === k)

/** Takes the lock for subnet k (stale locks of dead pids are taken over). */
function tryLock (k: number): boolean {
  mkdirSync(LOCK_DIR, { recursive: true })
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lockPath(k), String(process.pid), { flag: 'wx' })
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      let owner = NaN
      try { owner = Number(readFileSync(lockPath(k), 'utf8')) } catch {}
      if (ownLock(k, owner)) return false // held by another network of this process
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) return false
      rmSync(lockPath(k), { force: true })
    }
  }
  return false
}

function unlock (k: number): void {
  try {
    if (Number(readFileSync(lockPath(k), 'utf8')) === process.pid) rmSync(lockPath(k), { force: true })
  } catch {}
}

/** IPv4 networks (address/prefix) the root namespace uses: its addresses and route destinations. */
function rootNetworks (): Array<{ base: number, bits: number }> {
  const out: Array<{ base: number, bits: number }> = []
  const add = (cidr: string): void => {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidr)
    if (m == null) return
    const bits = m[5] != null ? Number(m[5]) : 32
    const addr = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0
    out.push({ base: bits === 0 ? 0 : (addr & (~0 << (32 - bits))) >>> 0, bits })
  }
  for (const line of ipSync('-4', '-o', 'addr', 'show').split('\n')) {
    const m = /\sinet\s+(\S+)/.exec(line)
    if (m != null) add(m[1]!)
  }
  for (const table of ['main', 'local']) {
    for (const line of ipSync('-4', 'route', 'show', 'table', table).split('\n')) {
      const first = line.trim().split(/\s+/)
      const dest = /^\d/.test(first[0] ?? '') ? first[0] : first[1]
      if (dest != null) add(dest)
    }
  }
  return out
}

/**
 * Whether 10.213.k.0/24 overlaps something the root namespace already has.
 * Broad routes (shorter than /16, e.g. the default route or a 10/8 VPN route)
 * do not count: our connected /24 is more specific and wins.
 */
function subnetInUse (k: number, used: Array<{ base: number, bits: number }>): boolean {
  const ours = ((10 << 24) | (213 << 16) | (k << 8)) >>> 0
  return used.some(({ base, bits }) => {
    if (bits >= 24) return ((base & 0xffffff00) >>> 0) === ours
    if (bits < 16) return false
    return ((ours & (~0 << (32 - bits))) >>> 0) === base
  })
}

function listNetns (): string[] {
  return ipSync('netns', 'list').split('\n').map(l => l.trim().split(/\s+/)[0] ?? '').filter(s => s.length > 0)
}

function listLinks (): string[] {
  return ipSync('-o', 'link', 'show').split('\n').map(l => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1]).filter((s): s is string => s != null)
}

/** Synchronous, best-effort, idempotent removal (exit handler and stale cleanup): kills what runs inside, then the links and namespaces. */
function removeSync (netns: string[], links: string[]): void {
  const present = new Set(listNetns())
  for (const ns of netns) {
    if (!present.has(ns)) continue
    try {
      for (const pid of ipSync('netns', 'pids', ns).split(/\s+/).filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL') } catch {}
      }
    } catch {}
  }
  const existing = new Set(listLinks())
  for (const link of links) {
    if (!existing.has(link)) continue
    try { ipSync('link', 'del', link) } catch (err) { if (!GONE.test(String(err))) process.stderr.write(`netns cleanup: ${String(err)}\n`) }
  }
  for (const ns of netns) {
    if (!present.has(ns)) continue
    try { ipSync('netns', 'del', ns) } catch (err) { if (!GONE.test(String(err))) process.stderr.write(`netns cleanup: ${String(err)}\n`) }
  }
}

/**
 * Removes leftovers of our naming scheme whose owning process is gone (or is
 * this pid, from an earlier crashed run with the same pid), killing what still
 * runs inside them (nodes orphaned by a SIGKILLed test). Assumes every test run
 * shares this pid namespace, as it does on one machine or container.
 */
function removeStale (): void {
  const ownerOf = (name: string, prefix: string): number | undefined => {
    if (!name.startsWith(prefix)) return undefined
    const pid = Number(/^(\d+)/.exec(name.slice(prefix.length))?.[1])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  }
  const stale = (pid: number | undefined): boolean => pid != null && (pid === process.pid || !pidAlive(pid))
  const netns = listNetns().filter(ns => stale(ownerOf(ns, NAME_PREFIX.netns)))
  const links = listLinks().filter(l => stale(ownerOf(l, NAME_PREFIX.veth)) || stale(ownerOf(l, NAME_PREFIX.bridge)))
  // Bridges of this pid from a network still alive in this process are not stale.
  const live = new Set([...liveNetworks].flatMap(n => [n.bridge, ...n.netns, ...n.veths]))
  removeSync(netns.filter(n => !live.has(n)), links.filter(l => !live.has(l)))
  // Subnet locks of dead processes.
  try {
    for (const file of readdirSync(LOCK_DIR)) {
      if (!file.endsWith('.lock')) continue
      let owner = NaN
      try { owner = Number(readFileSync(join(LOCK_DIR, file), 'utf8')) } catch {}
      const k = Number(/^10\.213\.(\d+)\.lock$/.exec(file)?.[1])
      if (Number.isInteger(owner) && owner > 0 && (owner === process.pid ? !ownLock(k, owner) : !pidAlive(owner))) rmSync(join(LOCK_DIR, file), { force: true })
    }
  } catch {}
}

let exitHandlerInstalled = false

function installExitHandler (): void {
  if (exitHandlerInstalled) return
  exitHandlerInstalled = true
  process.on('exit', () => {
    for (const net of liveNetworks) {
      try { removeSync(net.netns, [...net.veths, net.bridge]) } catch (err) { process.stderr.write(`netns cleanup failed: ${String(err)}\n`) }
      unlock(net.k)
    }
    liveNetworks.clear()
  })
  // Without a handler, SIGINT/SIGTERM end the process without running 'exit' handlers.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    if (process.listenerCount(sig) === 0) process.once(sig, () => { process.exit(sig === 'SIGINT' ? 130 : 143) })
  }
}

let networksMade = 0

/** Why network-namespace hosts cannot be made here (not root, no iproute2), or undefined when they can. */
export function netnsUnsupported (): string | undefined {
  if (process.platform !== 'linux') return `needs Linux, not ${process.platform}`
  if (process.getuid?.() !== 0) return 'needs root (ip netns add)'
  try {
    ipSync('netns', 'list')
  } catch (err) {
    return `\`ip netns\` does not work: ${String(err)}`
  }
  return undefined
}

/** Creates n hosts (network namespaces) on a fresh bridge; see the file comment. */
export async function createHosts (n: number): Promise<TestNetwork> {
  if (!Number.isInteger(n) || n < 1 || n > 253) throw new Error(`createHosts: n must be 1..253, got ${n}`)
  installExitHandler()
  removeStale()

  // One network per process at a time keeps names pid-derived; a second one gets a suffix.
  const seq = networksMade++
  const tag = seq === 0 ? String(process.pid) : `${process.pid}x${seq}`
  const net: LiveNetwork = {
    bridge: `${NAME_PREFIX.bridge}${tag}`,
    netns: Array.from({ length: n }, (_, i) => `${NAME_PREFIX.netns}${tag}-${i}`),
    veths: Array.from({ length: n }, (_, i) => `${NAME_PREFIX.veth}${tag}-${i}`),
    k: -1
  }
  for (const name of [net.bridge, ...net.veths]) if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 characters`)

  const used = rootNetworks()
  for (let probe = 0; probe < 254 && net.k < 0; probe++) {
    const k = ((process.pid + seq + probe) % 254) + 1
    if (subnetInUse(k, used)) continue
    if (tryLock(k)) net.k = k
  }
  if (net.k < 0) throw new Error('createHosts: no free 10.213.<k>.0/24 subnet')
  liveNetworks.add(net)

  const prefix = `10.213.${net.k}`
  const gateway = `${prefix}.254`
  const hosts: TestHost[] = net.netns.map((name, index) => ({ index, name, ip: `${prefix}.${index + 1}` }))

  try {
    await ip('link', 'add', 'name', net.bridge, 'type', 'bridge')
    await ip('addr', 'add', `${gateway}/24`, 'dev', net.bridge)
    await ip('link', 'set', net.bridge, 'up')
    await Promise.all(hosts.map(async (host, i) => {
      const veth = net.veths[i]!
      await ip('netns', 'add', host.name)
      await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name)
      await ip('link', 'set', veth, 'master', net.bridge, 'up')
      await ip('-n', host.name, 'link', 'set', 'lo', 'up')
      await ip('-n', host.name, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0')
      await ip('-n', host.name, 'link', 'set', 'eth0', 'up')
      await ip('-n', host.name, 'route', 'add', 'default', 'via', gateway)
    }))
  } catch (err) {
    removeSync(net.netns, [...net.veths, net.bridge])
    liveNetworks.delete(net)
    unlock(net.k)
    throw err
  }

  const byIndex = (i: number): TestHost => {
    const h = hosts[i]
    if (h == null) throw new Error(`no host ${i} (network has ${hosts.length})`)
    return h
  }
  const ROUTE_TYPES: PartitionRoute[] = ['unreachable', 'prohibit', 'blackhole']

  return {
    subnet: `${prefix}.0/24`,
    bridge: net.bridge,
    gateway,
    hosts,
    async partition (sideA, sideB, { route = 'unreachable' } = {}) {
      const a = sideA.map(byIndex)
      const b = sideB.map(byIndex)
      const overlap = a.filter(h => b.includes(h))
      if (overlap.length > 0) throw new Error(`partition: host ${overlap.map(h => h.index).join(', ')} is on both sides`)
      // `replace` makes it idempotent (and lets a second partition change the route type).
      await Promise.all([...a.map(h => [h, b] as const), ...b.map(h => [h, a] as const)].map(async ([host, others]) => {
        for (const o of others) await ip('-n', host.name, 'route', 'replace', route, `${o.ip}/32`)
      }))
    },
    async heal () {
      await Promise.all(hosts.map(async host => {
        // Every /32 partition route in the namespace, whoever added it.
        const lines = (await ip('-n', host.name, '-4', 'route', 'show')).split('\n')
        for (const line of lines) {
          const m = /^(unreachable|prohibit|blackhole)\s+(\d+\.\d+\.\d+\.\d+)(?:\/32)?\b/.exec(line.trim())
          if (m == null || !ROUTE_TYPES.includes(m[1] as PartitionRoute)) continue
          try {
            await ip('-n', host.name, 'route', 'del', m[1]!, `${m[2]!}/32`)
          } catch (err) {
            if (!GONE.test(String(err))) throw err
          }
        }
      }))
    },
    async destroy () {
      if (!liveNetworks.has(net)) return
      removeSync(net.netns, [...net.veths, net.bridge])
      const left = [...listNetns().filter(ns => net.netns.includes(ns)), ...listLinks().filter(l => l === net.bridge || net.veths.includes(l))]
      liveNetworks.delete(net)
      unlock(net.k)
      if (left.length > 0) throw new Error(`destroy: could not remove ${left.join(', ')}`)
    }
  }
}

/**
 * Starts one node per host, each bootstrapped to host 0's node, and waits until
 * each sees the other n-1 as peers. On failure every node started is killed.
 */
export async function startMeshInHosts (network: TestNetwork, extra: string[] = [], { timeoutMs = 20_000 } = {}): Promise<NodeProcess[]> {
  const n = network.hosts.length
  const nodes: NodeProcess[] = []
  try {
    nodes.push(await startNode({ netns: network.hosts[0]!, extra }))
    const rest = await Promise.allSettled(network.hosts.slice(1).map(async host => await startNode({ netns: host, bootstrap: [nodes[0]!.address], extra })))
    for (const r of rest) if (r.status === 'fulfilled') nodes.push(r.value)
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed != null) throw failed.reason
    await Promise.all(nodes.map(async node => await waitUntil(async () => (await node.peers()).length === n - 1, { timeoutMs, what: `${node.peerId} to see ${n - 1} peers` })))
    return nodes
  } catch (err) {
    await Promise.all(nodes.map(async node => await node.kill('SIGKILL')))
    throw err
  }
}
