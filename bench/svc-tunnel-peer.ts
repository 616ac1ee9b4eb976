/**
 * One side of the services bench's tunnel figure (bench/services.ts): a plain
 * libp2p peer that is a member of the bench's mesh (its own key, a credential
 * issued by the mesh root, the mesh policy) and runs the node's service proxy,
 * ServiceTunnel (src/services/tunnel.ts), for the container service
 * `svc-sink` (bench/workloads/svc-sink.ts). Run inside a network namespace:
 * as root the proxy adds the service address to that namespace's `lo`.
 * One JSON line per event on stdout.
 *
 *   callee <mesh.json> <root.key> <sink port>
 *        hosts replica 0 of svc-sink: its "container port" is the TCP sink on
 *        127.0.0.1:<sink port>; prints {"event":"listening","address"}.
 *   caller <mesh.json> <root.key> <callee address>
 *        knows that replica on the callee and serves the service address;
 *        prints {"event":"ready","host","port"} once its proxy listens there.
 */
import { readFile } from 'node:fs/promises'
import { ServiceDirectory, type KnownReplica } from '../src/services/directory.js'
import { ServiceTunnel } from '../src/services/tunnel.js'
import { generateKey, issueCredential, keyId, readKeyFile, type SignedPolicy } from '../src/policy/credentials.js'
import { Trust } from '../src/policy/trust.js'
import { pino } from 'pino'
import type { Logger } from '../src/transport/logger.js'
import { MeshNode } from '../src/transport/mesh-node.js'
import { toWorkloadSpec } from '../src/workloads/spec.js'
import sink from './workloads/svc-sink.js'

const READY_TIMEOUT_MS = 20_000
/**
 * The callee's own proxy never listens: both peers share the namespace's lo, and
 * the first to bind the service address would serve it, so a callee that won would
 * carry connections to its local replica without a stream, unlike two hosts. It
 * manages no addresses and its one reconcile round runs at start, before the
 * caller added the address (the next would come after the bench).
 */
const CALLEE_RECONCILE_MS = 24 * 60 * 60 * 1000
/** Warnings (a proxy that cannot listen, a refused tunnel) go to stderr, which the bench shows when a step fails. */
const log: Logger = pino({ level: process.env.BENCH_DEBUG != null ? 'debug' : 'warn' }, pino.destination(2))

function say (event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(event) + '\n')
}

async function run (side: string, meshFile: string, rootKeyFile: string, arg: string): Promise<void> {
  if (side !== 'caller' && side !== 'callee') throw new Error(`usage: svc-tunnel-peer.ts callee <mesh.json> <root.key> <sink port> | caller <mesh.json> <root.key> <callee address> (got ${side})`)
  const mesh = JSON.parse(await readFile(meshFile, 'utf8')) as { root: string, policy: SignedPolicy }
  const rootKey = (await readKeyFile(rootKeyFile)).key
  const key = await generateKey()
  const trust = new Trust({ root: mesh.root, key, credential: await issueCredential(rootKey, keyId(key)), policies: [mesh.policy] })
  await trust.start()
  const node = new MeshNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: side === 'caller' ? [arg] : [] })
  await node.start()

  const spec = toWorkloadSpec(sink, { source: 'bench/workloads/svc-sink.ts', now: Date.now() })
  const host = side === 'callee' ? node.peerId : arg.split('/p2p/')[1]!
  const replicas: KnownReplica[] = [{ peerId: host, replica: 0, epoch: 1, status: 'running', ready: true }]
  const directory = new ServiceDirectory({
    selfId: node.peerId,
    workloads: () => [spec],
    kubeServices: () => [],
    replicas: id => id === spec.id ? replicas : [],
    placedOn: () => [host]
  }, { put: async () => {}, get: async () => undefined }, log)
  const sinkPort = Number(arg)
  const tunnel = new ServiceTunnel({
    mesh: node,
    trust,
    log,
    directory,
    containers: {
      target: (workloadId, replica) => side === 'callee' && workloadId === spec.id && replica === 0 ? { host: '127.0.0.1', port: sinkPort } : undefined,
      principalOf: async () => undefined
    },
    ...(side === 'callee' ? { manageAddresses: false, reconcileMs: CALLEE_RECONCILE_MS } : {})
  })
  await tunnel.start()
  process.once('SIGTERM', () => { void tunnel.stop().then(async () => { await node.stop() }).finally(() => process.exit(0)) })

  if (side === 'callee') {
    say({ event: 'listening', address: node.addresses()[0] })
    return
  }
  const service = directory.services()[0]!
  const address = tunnel.address(service.id)!
  const port = service.ports[0]!.port
  const deadline = Date.now() + READY_TIMEOUT_MS
  // The proxy's reconcile round adds the address to lo and listens (on its own 2 s timer); the bootstrap dials the callee.
  while (!tunnel.stats().listening.includes(`${address}:${port}`) || !node.isConnected(host)) {
    if (Date.now() > deadline) throw new Error(`within ${READY_TIMEOUT_MS} ms: proxy listening on ${tunnel.stats().listening.join(', ') || 'nothing'} (want ${address}:${port}), connected to the callee: ${node.isConnected(host)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  say({ event: 'ready', host: address, port })
}

const [side, meshFile, rootKeyFile, arg] = process.argv.slice(2)
try {
  await run(String(side), meshFile!, rootKeyFile!, arg!)
} catch (err) {
  process.stderr.write(`svc-tunnel-peer ${String(side)}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
}
