/**
 * The chaos mesh: N `beemesh node start` processes, each in its own network
 * namespace on a bridge (test/helpers/netns.ts), listening on and announcing
 * its namespace address. Nodes are SIGKILLed and restarted on their data dirs,
 * and a minority is cut off by routes, then healed.
 *
 * Without namespaces (not root, no iproute2) the nodes run on loopback. The
 * node has no flag to gate connections to chosen peers, so a partition is
 * then emulated by SIGSTOPping the minority and SIGCONTing it at the heal (a
 * frozen host rather than a cut link); the run says so.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createHosts, netnsUnsupported, type TestHost, type TestNetwork } from '../test/helpers/netns.js'
import { startNode, waitUntil, type NodeProcess } from '../test/helpers/processes.js'

export interface ChaosNode {
  index: number
  host?: TestHost
  dataDir: string
  peerId: string
  proc?: NodeProcess
  /** Every process this node has run as, oldest first (their output is the node's log). */
  history: NodeProcess[]
  /** Running and not stopped by us. */
  alive: boolean
}

export interface ChaosMesh {
  mode: 'netns' | 'loopback'
  /** Why namespaces were not used (loopback mode). */
  fallbackReason?: string
  nodes: ChaosNode[]
  live: () => ChaosNode[]
  kill: (node: ChaosNode) => Promise<void>
  restart: (node: ChaosNode) => Promise<void>
  /** Cuts `minority` off from the rest (routes, or SIGSTOP on loopback). */
  partition: (minority: ChaosNode[]) => Promise<void>
  heal: () => Promise<void>
  /** Kills every node and removes the namespaces. */
  destroy: () => Promise<void>
}

function running (proc: NodeProcess): boolean {
  return proc.child.exitCode == null && proc.child.signalCode == null
}

/** Starts `n` nodes (node 0 first, the rest bootstrapped to it) and waits until each sees n-1 peers. */
export async function startChaosMesh (n: number, root: string, { log = (_: string) => {}, extra = [] }: { log?: (line: string) => void, extra?: string[] } = {}): Promise<ChaosMesh> {
  const unsupported = netnsUnsupported()
  let network: TestNetwork | undefined
  let fallbackReason: string | undefined = unsupported
  if (unsupported == null) {
    try {
      network = await createHosts(n)
    } catch (err) {
      fallbackReason = `createHosts failed: ${String(err)}`
    }
  }
  const nodes: ChaosNode[] = []
  for (let i = 0; i < n; i++) {
    const dataDir = join(root, `node-${i}`)
    await mkdir(dataDir, { recursive: true })
    nodes.push({ index: i, ...(network != null ? { host: network.hosts[i]! } : {}), dataDir, peerId: '', alive: false, history: [] })
  }
  const paused = new Set<ChaosNode>()

  const start = async (node: ChaosNode, bootstrap: string[]): Promise<void> => {
    const proc = await startNode({ dataDir: node.dataDir, bootstrap, extra, ...(node.host != null ? { netns: { name: node.host.name, ip: node.host.ip } } : {}) })
    node.proc = proc
    node.history.push(proc)
    node.peerId = proc.peerId
    node.alive = true
    void proc.exited.then(code => { if (node.proc === proc && node.alive) { node.alive = false; log(`node ${node.index} exited by itself (code ${String(code)})`) } })
  }
  const live = (): ChaosNode[] => nodes.filter(x => x.alive && x.proc != null && running(x.proc))

  const mesh: ChaosMesh = {
    mode: network != null ? 'netns' : 'loopback',
    ...(fallbackReason != null ? { fallbackReason } : {}),
    nodes,
    live,
    async kill (node) {
      if (node.proc == null) return
      node.alive = false
      node.proc.child.kill('SIGKILL')
      await node.proc.exited
    },
    async restart (node) {
      const others = live().filter(x => x !== node && !paused.has(x))
      await start(node, others.slice(0, 2).map(x => x.proc!.address))
    },
    async partition (minority) {
      if (network != null) {
        const a = minority.map(x => x.index)
        await network.partition(a, nodes.map(x => x.index).filter(i => !a.includes(i)))
        return
      }
      for (const x of minority) { x.proc?.child.kill('SIGSTOP'); paused.add(x) }
    },
    async heal () {
      if (network != null) { await network.heal(); return }
      for (const x of paused) x.proc?.child.kill('SIGCONT')
      paused.clear()
    },
    async destroy () {
      for (const x of paused) x.proc?.child.kill('SIGCONT')
      await Promise.all(nodes.map(async x => {
        x.alive = false
        if (x.proc != null && running(x.proc)) { x.proc.child.kill('SIGKILL'); await x.proc.exited }
      }))
      await network?.destroy()
    }
  }

  try {
    await start(nodes[0]!, [])
    const results = await Promise.allSettled(nodes.slice(1).map(async x => { await start(x, [nodes[0]!.proc!.address]) }))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed != null) throw failed.reason
    await Promise.all(nodes.map(async x => await waitUntil(async () => (await x.proc!.peers()).length >= n - 1, { timeoutMs: 90_000, intervalMs: 250, what: `node ${x.index} to see ${n - 1} peers` })))
  } catch (err) {
    await mesh.destroy()
    throw err
  }
  return mesh
}
