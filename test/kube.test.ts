/**
 * The Kubernetes-compatible API driven by the real kubectl (on PATH; CI
 * installs Debian's kubernetes-client) against 3 node processes (a node runs one replica of a workload) and the test
 * container engine: discovery, nodes and namespaces; a busybox Deployment
 * applied, rolled out, listed, logged, re-applied unchanged, scaled and
 * deleted; and each class of bad input answered with the right Status.
 */
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ContainerEngine } from '../src/containers/container-engine.js'
import { removeContainersOf, requireEngine } from './helpers/engine.js'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { bearerFor } from '../src/cli/api-client.js'
import { authProxy, type AuthProxy } from './helpers/auth-proxy.js'
import { cli, startMesh, tempDir, waitUntil, type NodeProcess } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/kube'
let nodes: NodeProcess[] = []
let engine: ContainerEngine
let kubeconfig = ''
let proxy: AuthProxy | undefined

/** The test admin's bearer token, for the raw requests. */
async function auth (url: string): Promise<Record<string, string>> {
  return { authorization: `Bearer ${(await bearerFor(url))!}` }
}

interface Run { code: number, stdout: string, stderr: string }

async function kubectl (args: string[], timeoutMs = 60_000): Promise<Run> {
  return await new Promise(resolve => {
    execFile('kubectl', ['--kubeconfig', kubeconfig, ...args], { timeout: timeoutMs, cwd: process.cwd() }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

async function ok (args: string[], timeoutMs?: number): Promise<string> {
  const r = await kubectl(args, timeoutMs)
  assert.is(r.code, 0, `kubectl ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

/** A raw request to the API, for the Status objects kubectl only summarises. */
async function request (method: string, path: string, body?: string, contentType = 'application/json'): Promise<{ code: number, status: { kind: string, code: number, reason: string, message: string, details?: { causes?: Array<{ field: string }> } } }> {
  const res = await fetch(`${nodes[1]!.apiUrl}${path}`, { method, headers: { ...await auth(nodes[1]!.apiUrl), ...(body != null ? { 'content-type': contentType } : {}) }, ...(body != null ? { body } : {}), signal: AbortSignal.timeout(10_000) })
  return { code: res.status, status: await res.json() as never }
}

const DEPLOYMENTS = '/apis/apps/v1/namespaces/default/deployments'
const deployment = (name: string, spec: Record<string, unknown>): string => JSON.stringify({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name }, spec })
const good = (replicas: unknown = 1): Record<string, unknown> => ({ replicas, selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'busybox', command: ['sleep', '3600'] }] } } })

async function runningPods (): Promise<string[]> {
  const pods = JSON.parse(await ok(['get', 'pods', '-o', 'json'])) as { items: Array<{ metadata: { name: string }, status: { phase: string } }> }
  return pods.items.filter(p => p.status.phase === 'Running').map(p => p.metadata.name).sort()
}

test.before(async () => {
  const which = await new Promise<string>(resolve => { execFile('sh', ['-c', 'command -v kubectl'], (_e, out) => { resolve(out.trim()) }) })
  if (which === '') throw new Error('kubectl is not on PATH: the Kubernetes API tests need the real kubectl (apt-get install kubernetes-client)')
  engine = (await requireEngine()).engine
  nodes = await startMesh(3)
  await waitUntil(async () => {
    const status = await Promise.all(nodes.map(async n => await n.status()))
    return status.every(s => (s as { containers?: { available: boolean } }).containers?.available === true) || undefined
  }, { what: 'every node to reach its container engine', timeoutMs: 15_000 })
  kubeconfig = join(await tempDir('beemesh-kube-'), 'kubeconfig')
  const r = await cli(['kubeconfig', '--api', nodes[0]!.apiUrl, '--write', kubeconfig])
  assert.is(r.code, 0, r.stderr)
  // The kubeconfig's user carries the token; kubectl sends it only over TLS, so until the API
  // speaks TLS kubectl reaches the node through a loopback proxy that adds that same token.
  const config = parseYaml(await readFile(kubeconfig, 'utf8')) as { clusters: Array<{ cluster: { server: string } }>, users: Array<{ user: { token?: string } }> }
  const token = config.users[0]!.user.token
  assert.ok(token != null, 'the kubeconfig carries a token')
  proxy = await authProxy(nodes[0]!.apiUrl, token)
  config.clusters[0]!.cluster.server = proxy.url
  await writeFile(kubeconfig, toYaml(config), { mode: 0o600 })
})

test.after(async () => {
  await proxy?.close()
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  await removeContainersOf(engine, nodes.map(n => n.peerId))
})

test('beemesh kubeconfig prints a kubeconfig for the node with context beemesh', async () => {
  const r = await cli(['kubeconfig', '--api', nodes[1]!.apiUrl])
  assert.is(r.code, 0, r.stderr)
  assert.match(r.stdout, `server: ${nodes[1]!.apiUrl}`)
  assert.match(r.stdout, 'current-context: beemesh')
  const bad = await cli(['kubeconfig', '--api', 'not a url'])
  assert.is.not(bad.code, 0)
  assert.match(bad.stderr, '--api must be a URL')
})

test('kubectl version, api-resources, get nodes (-o wide|json|yaml) and get namespaces', async () => {
  // kubectl 1.32 prints "Server Version: v1.32.0-beemesh…"; Debian's 1.20 prints the whole version.Info struct.
  assert.match(await ok(['version']), /Server Version: .*v1\.32\.0-beemesh/)
  const resources = await ok(['api-resources'])
  for (const r of ['nodes', 'namespaces', 'pods', 'deployments']) assert.match(resources, new RegExp(`^${r}\\s`, 'm'))
  const table = await ok(['get', 'nodes'])
  assert.match(table, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION/)
  for (const n of nodes) assert.match(table, new RegExp(`^${n.peerId}\\s+Ready\\s`, 'm'))
  assert.match(await ok(['get', 'nodes', '-o', 'wide']), /\sCPU\s+MEMORY/)
  const list = JSON.parse(await ok(['get', 'nodes', '-o', 'json'])) as { kind: string, items: Array<{ metadata: { name: string }, status: { capacity: { cpu: string, memory: string }, conditions: Array<{ type: string, status: string }> } }> }
  assert.is(list.kind, 'List')
  assert.equal(list.items.map(i => i.metadata.name).sort(), nodes.map(n => n.peerId).sort())
  for (const i of list.items) {
    assert.ok(i.status.conditions.some(c => c.type === 'Ready' && c.status === 'True'))
    assert.match(i.status.capacity.cpu, /^\d+m$/)
  }
  assert.match(await ok(['get', 'node', nodes[0]!.peerId, '-o', 'yaml']), `name: ${nodes[0]!.peerId}`)
  assert.match(await ok(['get', 'namespaces']), /^default\s+Active\s/m)
  const missing = await kubectl(['get', 'node', 'no-such-node'])
  assert.is.not(missing.code, 0)
  assert.match(missing.stderr, /NotFound.*nodes "no-such-node" not found/)
})

test('a busybox Deployment: apply, rollout status, 2 Running pods, logs, events, watch, unchanged re-apply, scale to 3, delete of one pod (replaced), scale to 1, delete -f', async () => {
  assert.match(await ok(['apply', '-f', `${FIXTURES}/ticker.yaml`]), 'deployment.apps/ticker created')
  await ok(['rollout', 'status', 'deployment/ticker', '--timeout=90s'], 100_000)
  await waitUntil(async () => { const p = await runningPods(); return p.length === 2 ? p : undefined }, { what: '2 Running pods', timeoutMs: 30_000 })
  const pods = await ok(['get', 'pods', '-l', 'app=ticker', '-o', 'wide'])
  assert.match(pods, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE/)
  assert.match(pods, /^ticker-0\s+1\/1\s+Running\s+0\s/m)
  assert.match(pods, /^ticker-1\s+1\/1\s+Running\s+0\s/m)
  assert.match(await kubectl(['get', 'pods', '-l', 'app=other']).then(r => r.stdout + r.stderr), 'No resources found')
  assert.match(await ok(['get', 'deployments']), /^ticker\s+2\/2\s+2\s+2\s/m)
  // Every node shows the same mesh-wide state.
  const other = await (await fetch(`${nodes[1]!.apiUrl}/api/v1/namespaces/default/pods`, { headers: await auth(nodes[1]!.apiUrl) })).json() as { items: unknown[] }
  assert.is(other.items.length, 2)
  await waitUntil(async () => (await kubectl(['logs', 'ticker-0'])).stdout.includes('hello from ticker') || undefined, { what: 'the logs of ticker-0', timeoutMs: 15_000 })
  assert.match(await ok(['apply', '-f', `${FIXTURES}/ticker.yaml`]), 'deployment.apps/ticker unchanged')
  // Events: the scheduler's on the Deployment, the node's on each pod.
  assert.match(await ok(['describe', 'deployment', 'ticker']), /Normal\s+Scheduled\s+.*beemesh-scheduler\s+replica 0 →/)
  assert.match(await ok(['describe', 'pod', 'ticker-0']), /Normal\s+Started\s/)
  assert.match(await ok(['get', 'events']), /Scheduled\s+deployment\/ticker/)
  // A watch streams the current objects as ADDED.
  const watch = await kubectl(['get', 'pods', '--watch', '--output-watch-events', '--request-timeout=2s'], 10_000)
  assert.match(watch.stdout, /ADDED\s+ticker-0\s/)

  const before = JSON.parse(await ok(['get', 'pod', 'ticker-0', '-o', 'json'])) as { spec: { nodeName: string } }
  assert.match(await ok(['scale', 'deployment', 'ticker', '--replicas=3']), 'deployment.apps/ticker scaled')
  await ok(['rollout', 'status', 'deployment/ticker', '--timeout=90s'], 100_000)
  await waitUntil(async () => { const p = await runningPods(); return p.length === 3 ? p : undefined }, { what: '3 Running pods', timeoutMs: 30_000 })
  // Scaling does not restart the pods that ran.
  const after = JSON.parse(await ok(['get', 'pod', 'ticker-0', '-o', 'json'])) as { spec: { nodeName: string }, status: { containerStatuses: Array<{ restartCount: number }> } }
  assert.is(after.spec.nodeName, before.spec.nodeName)
  assert.is(after.status.containerStatuses[0]!.restartCount, 0)
  assert.match(await ok(['get', 'deployment', 'ticker', '-o', 'jsonpath={.spec.replicas}']), '3')
  // Deleting one pod of the Deployment: its replica stops and the mesh replaces it under the same name.
  const replica2 = async (): Promise<Array<{ id: string, running: boolean, labels: Record<string, string> }>> => await engine.list({ 'beemesh.workload': 'default/ticker', 'beemesh.replica': '2' })
  const old = (await replica2()).find(c => c.running)!
  assert.match(await ok(['delete', 'pod', 'ticker-2']), 'pod "ticker-2" deleted')
  const fresh = await waitUntil(async () => (await replica2()).find(c => c.running && c.id !== old.id), { what: 'a new container for ticker-2', timeoutMs: 40_000 })
  assert.ok(Number(fresh.labels['beemesh.epoch']) > Number(old.labels['beemesh.epoch']), 'replaced at a higher epoch')
  assert.ok((await replica2()).every(c => c.id !== old.id), 'the deleted pod\'s container is removed')
  await waitUntil(async () => { const p = await runningPods(); return p.length === 3 ? p : undefined }, { what: '3 Running pods again', timeoutMs: 30_000 })
  // Scaling down stops the highest ordinals only.
  await ok(['scale', 'deployment', 'ticker', '--replicas=1'])
  await waitUntil(async () => { const p = await runningPods(); return p.length === 1 && p[0] === 'ticker-0' ? p : undefined }, { what: 'only ticker-0 to run', timeoutMs: 30_000 })
  const last = JSON.parse(await ok(['get', 'pod', 'ticker-0', '-o', 'json'])) as { spec: { nodeName: string } }
  assert.is(last.spec.nodeName, before.spec.nodeName)

  assert.match(await ok(['delete', '-f', `${FIXTURES}/ticker.yaml`]), 'deployment.apps "ticker" deleted')
  await waitUntil(async () => (await runningPods()).length === 0 || undefined, { what: 'the pods to go', timeoutMs: 30_000 })
  assert.match((await kubectl(['get', 'deployments'])).stderr, 'No resources found')
})

test('a beemesh.io/v1 Machine: beemesh upload stores its bundle, kubectl apply starts it, get -o yaml shows its state, an event moves it, delete stops it', async () => {
  // The bundle goes to node 0 as beemesh apply sends it; the object names it by sha256.
  const uploaded = await cli(['upload', 'examples/turnstile/turnstile.ts', '--api', nodes[0]!.apiUrl])
  assert.is(uploaded.code, 0, uploaded.stderr)
  const sha256 = /artifact: sha256:([0-9a-f]{64})/.exec(uploaded.stdout)?.[1]
  assert.ok(sha256 != null, `beemesh upload prints the object naming the artifact: ${uploaded.stdout}`)
  assert.match(uploaded.stdout, /^kind: Machine$/m)
  const machineFile = join(await tempDir('beemesh-kube-machine-'), 'turnstile.yaml')
  await writeFile(machineFile, uploaded.stdout)
  assert.match(await ok(['apply', '-f', machineFile]), 'machine.beemesh.io/turnstile created')
  const running = await waitUntil(async () => {
    const r = await kubectl(['get', 'machine', 'turnstile', '-o', 'yaml'])
    return /state: locked/.test(r.stdout) && /phase: Running/.test(r.stdout) ? r.stdout : undefined
  }, { what: 'the turnstile to run', timeoutMs: 30_000 })
  assert.match(running, /owner: 12D3KooW/)
  assert.match(await ok(['get', 'machines']), /^turnstile\s+1\/1\s+Running\s/m)
  const sent = await cli(['send', 'turnstile', 'coin', '--api', nodes[2]!.apiUrl])
  assert.is(sent.code, 0, sent.stderr)
  await waitUntil(async () => (await ok(['get', 'machine', 'turnstile', '-o', 'jsonpath={.status.state}'])) === 'unlocked' || undefined, { what: 'the state to be unlocked', timeoutMs: 10_000 })
  // Node 1 never had the bundle: it fetches it from the mesh, reads the definition, and refuses a stateful one as an Actor.
  const asActor = await request('POST', '/apis/beemesh.io/v1/namespaces/default/actors', JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Actor', metadata: { name: 'wrong-kind' }, spec: { artifact: `sha256:${sha256!}` } }))
  assert.is(asActor.code, 422)
  assert.equal(asActor.status.details?.causes?.map(c => c.field), ['spec.artifact'])
  assert.match(asActor.status.message, 'defines a stateful workload')
  const unknown = await request('POST', '/apis/beemesh.io/v1/namespaces/default/machines', JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Machine', metadata: { name: 'unknown' }, spec: { artifact: `sha256:${'0'.repeat(64)}` } }))
  assert.is(unknown.code, 422)
  assert.equal(unknown.status.details?.causes?.map(c => c.field), ['spec.artifact'])
  assert.match(unknown.status.message, 'is not in the mesh')
  assert.match(unknown.status.message, 'beemesh upload')
  assert.match(await ok(['delete', 'machine', 'turnstile']), 'machine.beemesh.io "turnstile" deleted')
  assert.match((await kubectl(['get', 'machines'])).stderr, 'No resources found')
})

test('an Actor or Machine naming a file of the API node (spec.module) is refused without reading it', async () => {
  for (const module of [join(process.cwd(), FIXTURES, 'not-a-module.ts'), 'no/such/module.ts', '/etc/passwd']) {
    const r = await request('POST', '/apis/beemesh.io/v1/namespaces/default/machines', JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Machine', metadata: { name: 'nosy' }, spec: { module } }))
    assert.is(r.code, 422, `${module}: ${JSON.stringify(r.status)}`)
    assert.equal(r.status.details?.causes?.map(c => c.field), ['spec.module'])
    assert.match(r.status.message, 'a path on the API node is not accepted')
    assert.not.match(JSON.stringify(r.status), /kube-secret|root:/)
  }
  const actor = await request('POST', '/apis/beemesh.io/v1/namespaces/default/actors', JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Actor', metadata: { name: 'nosy' }, spec: { module: join(process.cwd(), FIXTURES, 'not-a-module.ts') } }))
  assert.is(actor.code, 422)
  assert.not.match(JSON.stringify(actor.status), 'kube-secret')
  assert.match((await kubectl(['get', 'machines,actors'])).stderr, 'No resources found')
})

test('a Deployment and its Service: get svc shows the ClusterIP, endpoints the ready replicas; describe, re-apply, patch and delete', async () => {
  const applied = await ok(['apply', '-f', `${FIXTURES}/web-svc.yaml`])
  assert.match(applied, 'deployment.apps/web created')
  assert.match(applied, 'service/web created')
  const svc = await ok(['get', 'svc', 'web'])
  assert.match(svc, /^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE/, svc)
  assert.match(svc, /^web\s+ClusterIP\s+198\.18\.\d+\.\d+\s+<none>\s+80\/TCP\s/m, svc)
  const object = JSON.parse(await ok(['get', 'service', 'web', '-o', 'json'])) as { spec: { clusterIP: string, selector: Record<string, string>, ports: Array<{ port: number, targetPort: number | string }> }, metadata: { labels: Record<string, string> } }
  assert.equal(object.spec.selector, { app: 'web' })
  assert.equal(object.spec.ports.map(p => [p.port, p.targetPort]), [[80, 'http']])
  assert.equal(object.metadata.labels, { tier: 'front' })
  // Every node gives the Service the same address.
  const elsewhere = await (await fetch(`${nodes[2]!.apiUrl}/api/v1/namespaces/default/services/web`, { headers: await auth(nodes[2]!.apiUrl) })).json() as { spec: { clusterIP: string } }
  assert.is(elsewhere.spec.clusterIP, object.spec.clusterIP)
  // Endpoints: the 2 replicas once they run, each at its host's address and the target port.
  const endpoints = await waitUntil(async () => {
    const out = await ok(['get', 'endpoints', 'web'])
    return (out.match(/\d+\.\d+\.\d+\.\d+:8080/g) ?? []).length === 2 ? out : undefined
  }, { what: 'web\'s 2 endpoints', timeoutMs: 60_000, intervalMs: 500 })
  assert.match(endpoints, /^NAME\s+ENDPOINTS\s+AGE/)
  const ep = JSON.parse(await ok(['get', 'endpoints', 'web', '-o', 'json'])) as { subsets: Array<{ addresses: Array<{ nodeName: string, targetRef: { name: string } }> }> }
  assert.equal(ep.subsets[0]!.addresses.map(a => a.targetRef.name).sort(), ['web-0', 'web-1'])
  const pods = JSON.parse(await ok(['get', 'pods', '-l', 'app=web', '-o', 'json'])) as { items: Array<{ spec: { nodeName: string } }> }
  assert.equal(ep.subsets[0]!.addresses.map(a => a.nodeName).sort(), pods.items.map(p => p.spec.nodeName).sort())
  const described = await ok(['describe', 'svc', 'web'])
  assert.match(described, /IP:\s+198\.18\.[\s\S]*Endpoints:\s+\S+:8080/, described)
  assert.match(await ok(['apply', '-f', `${FIXTURES}/web-svc.yaml`]), 'service/web unchanged')
  // A Pod created after the Service reaches it by name, on the Service's port, through its node's service proxy.
  assert.match(await ok(['apply', '-f', `${FIXTURES}/web-client-pod.yaml`]), 'pod/web-client created')
  await waitUntil(async () => (await kubectl(['logs', 'web-client'])).stdout.includes('hello-from-web') || undefined, { what: 'web-client to fetch http://web/', timeoutMs: 60_000, intervalMs: 500 })
  assert.match(await ok(['delete', '-f', `${FIXTURES}/web-client-pod.yaml`]), 'pod "web-client" deleted')
  // A patch changes the port everywhere.
  assert.match(await ok(['patch', 'svc', 'web', '--type=merge', '-p', '{"spec":{"ports":[{"name":"http","port":8081,"targetPort":8080}]}}']), 'service/web patched')
  await waitUntil(async () => (await (await fetch(`${nodes[1]!.apiUrl}/api/v1/namespaces/default/services/web`, { headers: await auth(nodes[1]!.apiUrl) })).json() as { spec: { ports: Array<{ port: number }> } }).spec.ports[0]?.port === 8081 || undefined, { what: 'the patched port on another node', timeoutMs: 20_000 })
  assert.match(await ok(['get', 'svc']), /^web\s+ClusterIP\s+\S+\s+<none>\s+8081\/TCP/m)
  // Bad Services: 422 naming the field; nothing is created.
  const nodePort = await request('POST', '/api/v1/namespaces/default/services', JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'np' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80 }] } }))
  assert.is(nodePort.code, 422)
  assert.match(nodePort.status.message, /spec\.type: Unsupported value: "NodePort"/)
  const noSelector = await request('POST', '/api/v1/namespaces/default/services', JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'nosel' }, spec: { ports: [{ port: 80 }] } }))
  assert.is(noSelector.code, 422)
  assert.match(noSelector.status.message, /spec\.selector: Required value/)
  const badTarget = await request('POST', '/api/v1/namespaces/default/services', JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'badport' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'nosuch' }] } }))
  assert.is(badTarget.code, 422)
  assert.match(badTarget.status.message, /spec\.ports\[0\]\.targetPort: Invalid value: "nosuch"/)
  assert.match((await kubectl(['get', 'svc', 'np'])).stderr, /NotFound|not found/)

  assert.match(await ok(['delete', '-f', `${FIXTURES}/web-svc.yaml`]), 'service "web" deleted')
  await waitUntil(async () => (await fetch(`${nodes[2]!.apiUrl}/api/v1/namespaces/default/services/web`, { headers: await auth(nodes[2]!.apiUrl) })).status === 404 || undefined, { what: 'the service gone on every node', timeoutMs: 20_000 })
  await waitUntil(async () => (await runningPods()).length === 0 || undefined, { what: 'the pods to go', timeoutMs: 30_000 })
})

test('bad input: each class gets its Status code and names the field; nothing is created', async () => {
  const malformed = await request('POST', DEPLOYMENTS, '{"apiVersion": ')
  assert.is(malformed.code, 400)
  assert.is(malformed.status.kind, 'Status')
  assert.is(malformed.status.reason, 'BadRequest')
  assert.match(malformed.status.message, 'not valid JSON')

  const wrongVersion = await request('POST', DEPLOYMENTS, JSON.stringify({ apiVersion: 'apps/v9', kind: 'Deployment', metadata: { name: 'v' }, spec: good() }))
  assert.is(wrongVersion.code, 400)
  assert.match(wrongVersion.status.message, 'apiVersion')

  const wrongKind = await request('POST', DEPLOYMENTS, JSON.stringify({ apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'k' }, spec: good() }))
  assert.is(wrongKind.code, 400)
  assert.match(wrongKind.status.message, 'kind')

  const wrongType = await request('POST', DEPLOYMENTS, deployment('typed', good('two')))
  assert.is(wrongType.code, 422)
  assert.is(wrongType.status.reason, 'Invalid')
  assert.equal(wrongType.status.details?.causes?.map(c => c.field), ['spec.replicas'])

  const missing = await request('POST', DEPLOYMENTS, deployment('missing', { selector: { matchLabels: { app: 'x' } }, template: { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c' }] } } }))
  assert.is(missing.code, 422)
  assert.match(missing.status.message, 'spec.template.spec.containers[0].image')

  const badName = await request('POST', DEPLOYMENTS, deployment('Not_DNS', good()))
  assert.is(badName.code, 422)
  assert.match(badName.status.message, 'metadata.name')

  const huge = await request('POST', DEPLOYMENTS, deployment('huge', { ...good(), pad: 'x'.repeat(4 * 1024 * 1024) }))
  assert.is(huge.code, 413)

  // YAML bodies: no aliases (an alias bomb is refused unparsed, and the node answers on).
  const levels = Array.from({ length: 9 }, (_, i) => i === 0 ? 'l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]' : `l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`)
  const bomb = await request('POST', DEPLOYMENTS, `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bomb\n${levels.join('\n')}\n`, 'application/yaml')
  assert.is(bomb.code, 400)
  assert.is(bomb.status.reason, 'BadRequest')
  assert.match(bomb.status.message, 'YAML aliases (*name) are not allowed')
  assert.is((await request('GET', '/version')).code, 200)
  const yamlBody = await request('POST', DEPLOYMENTS, `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: yamly\nspec:\n  replicas: x\n`, 'application/yaml')
  assert.is(yamlBody.code, 422, 'a YAML body without aliases is read (and then validated)')

  // A malformed % escape in the path is the client's error, on the Kubernetes and the control API alike.
  const badEscape = await request('GET', '/api/v1/namespaces/default/pods/web%E0%A4%A')
  assert.is(badEscape.code, 400)
  assert.is(badEscape.status.reason, 'BadRequest')
  assert.match(badEscape.status.message, 'malformed % escape')
  const controlEscape = await nodes[1]!.api.fetch('/v1/topics/a%ZZb/peers', { timeoutMs: 10_000 })
  assert.is(controlEscape.status, 400)
  assert.match(await controlEscape.text(), 'malformed % escape')

  const notFound = await request('GET', `${DEPLOYMENTS}/nothing`)
  assert.is(notFound.code, 404)
  assert.is(notFound.status.reason, 'NotFound')
  assert.is((await request('GET', '/apis/example.com/v1/widgets')).code, 404)

  // Through kubectl: its stderr names the field.
  const applied = await kubectl(['apply', '-f', `${FIXTURES}/bad-replicas.yaml`])
  assert.is.not(applied.code, 0)
  assert.match(applied.stderr, /is invalid: spec\.replicas/)

  // Nothing was half-created.
  assert.match((await kubectl(['get', 'deployments'])).stderr, 'No resources found')

  // Duplicates and stale updates are conflicts.
  assert.is((await request('POST', DEPLOYMENTS, deployment('once', good()))).code, 201)
  const twice = await request('POST', DEPLOYMENTS, deployment('once', good()))
  assert.is(twice.code, 409)
  assert.is(twice.status.reason, 'AlreadyExists')
  const stale = await request('PUT', `${DEPLOYMENTS}/once`, JSON.stringify({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'once', resourceVersion: '1' }, spec: good(2) }))
  assert.is(stale.code, 409)
  assert.is(stale.status.reason, 'Conflict')
  const scaleZero = await request('PATCH', `${DEPLOYMENTS}/once/scale`, JSON.stringify({ spec: { replicas: -1 } }), 'application/merge-patch+json')
  assert.is(scaleZero.code, 422)
  assert.equal(scaleZero.status.details?.causes?.map(c => c.field), ['spec.replicas'])
  const dryRun = await request('POST', `${DEPLOYMENTS}?dryRun=All`, deployment('dry', good()))
  assert.is(dryRun.code, 400)
  assert.match(dryRun.status.message, 'dryRun')
  const protobuf = await request('POST', DEPLOYMENTS, 'k8s\u0000', 'application/vnd.kubernetes.protobuf')
  assert.is(protobuf.code, 415)
  const jsonPatch = await request('PATCH', `${DEPLOYMENTS}/once`, '[]', 'application/json-patch+json')
  assert.is(jsonPatch.code, 415)
  assert.is((await request('DELETE', `${DEPLOYMENTS}/once`)).code, 200)
  assert.is((await request('DELETE', `${DEPLOYMENTS}/once`)).code, 404)
})

test.run()
