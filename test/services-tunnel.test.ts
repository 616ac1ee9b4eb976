/**
 * The container tunnel (issue 10, docs/services.md "Containers: the service
 * proxy"), against the real engine and two node processes on this host: a
 * busybox httpd `web` pinned to node B offers service `web`. The two nodes
 * share this host, so B takes its service addresses from another block
 * (`--service-cidr 198.19.0.0/16`), as nodes on two hosts each have their
 * own: a container created by A resolves `web` to A's address, and only A's
 * proxy serves it, so its connections cross to B over libp2p. While another
 * process holds A's address, A's proxy waits, and takes it over once it is
 * free. A container on node A reaches `http://web:8080/` (and its
 * cluster-local name) through A's proxy and a tunnel stream to B, with no
 * overlay network; so does a process of the host (as its node). A workload the policy forbids to
 * call `web` is refused at the proxy; a member node that skips its own check
 * and opens a raw tunnel stream on behalf of that workload is refused by B.
 * Both refusals are counted in the metrics. The engine is required (no skip).
 */
import { execFile, spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parse, stringify } from 'yaml'
import type { ContainerEngine } from '../src/containers/container-engine.js'
import type { LogLine } from '../src/protocol/messages.js'
import { generateKey, issueCredential, writeKeyFile } from '../src/policy/credentials.js'
import { defaultPolicyText } from '../src/policy/defaults.js'
import { serviceAddresses } from '../src/services/directory.js'
import { removeContainersOf, requireEngine } from './helpers/engine.js'
import { cli, makeTrust, metric, type NodeProcess, ROOT, startNode, type TestTrust, trustFlags, waitUntil } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/services'
let trust: TestTrust
let engine: ContainerEngine
let nodes: NodeProcess[] = []
let a: NodeProcess
let b: NodeProcess
let squatter: Server | undefined
/** Service `web`'s address on node A: the only service of this mesh, so its address is a function of its id alone. */
const webAddress = serviceAddresses(['default/web']).get('default/web')!
/** And on node B, whose block is 198.19.0.0/16. */
const webAddressOnB = serviceAddresses(['default/web'], { base: [198, 19], bits: 16 }).get('default/web')!

/** The default policy, with service `web` forbidden to the workload `tunnel-intruder` and granted to nodes (the hosts' own processes). */
function policy (deployer: string): string {
  const doc = parse(defaultPolicyText({ admins: [deployer], name: 'tunnel-test' })) as { rules: unknown[] }
  doc.rules.push(
    { id: 'no-tunnel-intruders', effect: 'deny', principals: [{ kind: 'workload', name: 'tunnel-intruder' }], actions: ['call'], resources: [{ kind: 'service', name: 'web' }] },
    { id: 'hosts-call-web', effect: 'allow', principals: [{ kind: 'node' }], actions: ['call'], resources: [{ kind: 'service', name: 'web' }] }
  )
  return stringify(doc)
}

async function ip (args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('ip', args, (err, _stdout, stderr) => { if (err != null && !/File exists|already assigned/i.test(stderr)) reject(new Error(stderr)); else resolve() })
  })
}

/** The body of GET http://<address>/ from this (host) process, or the error. */
async function get (address: string): Promise<string> {
  try {
    return await (await fetch(`http://${address}/`, { signal: AbortSignal.timeout(5_000) })).text()
  } catch (err) {
    return `error: ${String((err as Error).cause ?? err)}`
  }
}


/** A metric summed over both nodes: on one host, whichever node's proxy bound the service address first serves it. */
async function metricOfAll (name: string, labels: Record<string, string>): Promise<number> {
  return (await Promise.all(nodes.map(async n => await metric(n, name, labels)))).reduce((x, y) => x + y, 0)
}

async function logs (name: string): Promise<string[]> {
  const lines = await a.api.request<LogLine[]>(`/v1/workloads/default/${name}/logs`, { timeoutMs: 10_000 })
  return lines.map(l => l.message)
}

async function apply (file: string): Promise<void> {
  const r = await cli(['apply', `${FIXTURES}/${file}`, '--api', a.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, `apply ${file}: ${r.stderr}`)
}

interface ServiceView { address?: string, replicas: Array<{ peerId: string, ready: boolean, workloadId: string, replica: number }> }

async function service (node: NodeProcess, name: string): Promise<ServiceView> {
  const r = await cli(['services', name, '-o', 'json', '--api', node.apiUrl])
  assert.is(r.code, 0, r.stderr)
  return JSON.parse(r.stdout) as ServiceView
}

/** Runs the rogue member (test/fixtures/services/tunnel-rogue.ts) to completion and returns its JSON lines. */
async function rogue (args: string[]): Promise<Array<Record<string, unknown>>> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './src/polyfills.ts', join(ROOT, FIXTURES, 'tunnel-rogue.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)
  const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  clearTimeout(timer)
  assert.is(code, 0, `the rogue failed: ${err.slice(-1000)}`)
  return out.trim().split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)
}

test.before(async () => {
  engine = (await requireEngine()).engine
  trust = await makeTrust(policy)
  process.env.BEEMESH_KEY = trust.deployerKeyFile
  process.env.BEEMESH_MESH = trust.meshFile
  const flags = trustFlags(trust)
  a = await startNode({ trust: flags, extra: ['--label', 'role=client'] })
  b = await startNode({ trust: flags, bootstrap: [a.address], extra: ['--label', 'role=web', '--service-cidr', '198.19.0.0/16'] })
  nodes = [a, b]
  await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === 1, { what: `${n.peerId} to see its peer` })))
  await waitUntil(async () => {
    const status = await Promise.all(nodes.map(async n => await n.status()))
    return status.every(s => (s as { containers?: { available: boolean } }).containers?.available === true) || undefined
  }, { what: 'both nodes to reach the container engine', timeoutMs: 15_000 })
})

test.after(async () => {
  squatter?.close()
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  if (engine != null) await removeContainersOf(engine, nodes.map(n => n.peerId))
  // Killed nodes leave the service address on lo (so a host's other node processes keep serving it): nobody else here needs it.
  await ip(['addr', 'del', `${webAddress}/32`, 'dev', 'lo']).catch(() => {})
  await ip(['addr', 'del', `${webAddressOnB}/32`, 'dev', 'lo']).catch(() => {})
  await ip(['route', 'del', 'unreachable', '198.19.0.0/16']).catch(() => {})
})

test('while another process holds web\'s address node A\'s proxy waits; once it is free, it takes it over', async () => {
  // As a node process that got there first would: the address exists, the port is bound.
  await ip(['addr', 'add', `${webAddress}/32`, 'dev', 'lo'])
  const server = createServer(socket => { socket.on('error', () => {}); socket.end('HTTP/1.0 200 OK\r\nconnection: close\r\ncontent-length: 8\r\n\r\nsquatter') })
  squatter = server
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(8080, webAddress, resolve) })
  await apply('tunnel-web.ts')
  // Ready means Running and its port accepting a TCP connection (the tcpSocket probe), as both nodes see it.
  const view = await waitUntil(async () => {
    const v = await service(a, 'web')
    return v.replicas.some(r => r.ready && r.peerId === b.peerId) ? v : undefined
  }, { what: 'web ready on node B', timeoutMs: 60_000 })
  assert.is(view.address, webAddress)
  assert.is((await service(b, 'web')).address, webAddressOnB)
  assert.is(await get(`${webAddress}:8080`), 'squatter')
  // Unbound at once (close() alone would wait for a keep-alive connection of fetch's).
  server.close()
  squatter = undefined
  // A process of the host speaks as its node (granted by hosts-call-web).
  const body = await waitUntil(async () => { const t = await get(`${webAddress}:8080`); return t.includes('hello-from-web') ? t : undefined }, { what: 'node A\'s proxy to take the address over', timeoutMs: 10_000, intervalMs: 200 })
  assert.is(body, 'hello-from-web\n')
  // Node B's proxy serves its own block meanwhile (to its local replica).
  assert.is(await get(`${webAddressOnB}:8080`), 'hello-from-web\n')
})

test('a container on node A reaches web:8080 on node B through the service proxy', async () => {
  const callerBefore = await Promise.all(nodes.map(async n => await metric(n, 'beemesh_tunnel_connections_total', { service: 'default/web', side: 'caller', outcome: 'ok' })))
  const calleeBefore = await metric(b, 'beemesh_tunnel_connections_total', { service: 'default/web', side: 'callee', outcome: 'ok' })
  await apply('tunnel-client.ts')
  const lines = await waitUntil(async () => { const l = await logs('tunnel-client'); return l.includes('client-done') ? l : undefined }, { what: 'the client to reach web', timeoutMs: 60_000, intervalMs: 500 })
  assert.ok(lines.includes('hello-from-web'), `the client got web's page: ${JSON.stringify(lines)}`)
  assert.ok(lines.includes('fqdn: hello-from-web'), `web.default.svc.cluster.local resolves too: ${JSON.stringify(lines)}`)
  // A's proxy accepted them and B delivered them to its container: the bytes crossed over a libp2p stream.
  const callee = await metric(b, 'beemesh_tunnel_connections_total', { service: 'default/web', side: 'callee', outcome: 'ok' })
  assert.ok(callee - calleeBefore >= 2, `node B counts its callee tunnels: ${calleeBefore} → ${callee}`)
  const callerAfter = await Promise.all(nodes.map(async n => await metric(n, 'beemesh_tunnel_connections_total', { service: 'default/web', side: 'caller', outcome: 'ok' })))
  const byProxy = callerAfter.map((n, i) => n - callerBefore[i]!)
  assert.ok(byProxy[0]! >= 2, `node A's proxy counts its caller tunnels: ${JSON.stringify(byProxy)}`)
  assert.is(byProxy[1], 0, 'node B\'s proxy took no part: the client resolved web to A\'s address')
  console.log(`  caller tunnels by node A's proxy: ${byProxy[0]!}, delivered by node B: ${callee - calleeBefore}`)
})

test('a workload the policy forbids is refused at the proxy, and at B when a member skips that check', async () => {
  const deniedBefore = await metricOfAll('beemesh_calls_denied_total', { service: 'default/web', side: 'caller' })
  await apply('tunnel-intruder.ts')
  const lines = await waitUntil(async () => { const l = await logs('tunnel-intruder'); return l.includes('intruder-done') ? l : undefined }, { what: 'the intruder to finish its tries', timeoutMs: 60_000, intervalMs: 500 })
  assert.is(lines.filter(l => l === 'intruder-refused').length, 3, JSON.stringify(lines))
  assert.not.ok(lines.some(l => l.includes('hello-from-web') || l === 'intruder-got-through'), JSON.stringify(lines))
  const denied = await metricOfAll('beemesh_calls_denied_total', { service: 'default/web', side: 'caller' })
  assert.ok(denied - deniedBefore >= 3, `the proxy's node counts its refusals: ${deniedBefore} → ${denied}`)
  assert.ok(await metricOfAll('beemesh_tunnel_connections_total', { service: 'default/web', side: 'caller', outcome: 'denied' }) >= 3)

  // A genuine member that skips its own check: B opens the header, decides again, refuses.
  const rogueKey = join(trust.dir, 'tunnel-rogue.key')
  const rogueId = await writeKeyFile(rogueKey, await generateKey())
  const credFile = join(trust.dir, 'tunnel-rogue.cred.json')
  await writeFile(credFile, JSON.stringify(await issueCredential(trust.rootKey, rogueId)))
  const calleeDeniedBefore = await metric(b, 'beemesh_calls_denied_total', { service: 'default/web', side: 'callee' })
  const refused = await rogue([b.address, credFile, rogueKey, 'default/web', 'default/web', '0', '8080', 'workload:default/tunnel-intruder'])
  const reply = refused.find(o => o.event === 'reply')?.reply as { ok: boolean, code?: string, message?: string } | undefined
  assert.is(reply?.ok, false, JSON.stringify(refused))
  assert.is(reply?.code, 'DENIED')
  assert.match(reply?.message ?? '', /no-tunnel-intruders|forbidden/)
  assert.not.ok(refused.some(o => o.event === 'answer'))
  assert.is(await metric(b, 'beemesh_calls_denied_total', { service: 'default/web', side: 'callee' }), calleeDeniedBefore + 1)
  assert.ok(await metric(b, 'beemesh_tunnel_connections_total', { service: 'default/web', side: 'callee', outcome: 'denied' }) >= 1)
  await b.waitForOutput(/tunnel denied at the callee's node/, { stream: 'stderr', timeoutMs: 5_000 })

  // The same member on behalf of a permitted workload: the raw stream carries HTTP both ways, half-close included.
  const allowed = await rogue([b.address, credFile, rogueKey, 'default/web', 'default/web', '0', '8080', 'workload:default/tunnel-client'])
  const granted = allowed.find(o => o.event === 'reply')?.reply as { ok?: boolean, re?: unknown } | undefined
  assert.is(granted?.ok, true)
  assert.type(granted?.re, 'string', 'the sealed reply names the request it answers')
  const body = String(allowed.find(o => o.event === 'answer')?.body ?? '')
  assert.match(body, /^HTTP\/1\.[01] 200/)
  assert.match(body, /hello-from-web/)
})

test.run()
