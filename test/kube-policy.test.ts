/**
 * The Kubernetes API under a policy that denies by labels, on 2 real nodes
 * (serving TLS with the test mesh's CA) and the test container engine: a
 * guest deployer may do anything except read, delete or deploy workloads
 * labelled `tier: guarded`; the admin deployer may do everything. Both send
 * bearer tokens; kubectl speaks as the guest, over TLS.
 * Every request on a guarded workload's Deployment, its pods (get, logs,
 * delete, through the real kubectl too), its scale, and a create or patch
 * that gives a workload the label, is refused; lists leave it out.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { stringify } from 'yaml'
import type { ContainerEngine } from '../src/containers/container-engine.js'
import { generateKey, issueToken, keyId, readKeyFile } from '../src/policy/credentials.js'
import type { PrivateKey } from '@libp2p/interface'
import { readFile, writeFile } from 'node:fs/promises'
import { stringify as toYaml } from 'yaml'
import { kubeconfig as makeKubeconfig } from '../src/cli/commands/kubeconfig.js'
import { removeContainersOf, requireEngine } from './helpers/engine.js'
import { makeTrust, type NodeProcess, startNode, tempDir, type TestTrust, trustFlags, waitUntil } from './helpers/processes.js'
import { ensureMeshCa, issueServingCert, writePemPair } from '../src/policy/tls-issue.js'
import { useCa } from '../src/cli/api-client.js'

let trust: TestTrust
let nodes: NodeProcess[] = []
let engine: ContainerEngine
let adminToken = ''
let guestToken = ''
let kubeconfig = ''
const guestKey: PrivateKey = await generateKey()
const GUEST = keyId(guestKey)

const GUARDED = { tier: 'guarded' }

function policy (deployer: string): string {
  const everything = [{ kind: 'namespace' }, { kind: 'workload' }, { kind: 'topic' }, { kind: 'service' }, { kind: 'host' }]
  return stringify({
    apiVersion: 'beemesh.io/v1',
    kind: 'Policy',
    metadata: { name: 'kube-labels', version: 1 },
    rules: [
      { id: 'admins', effect: 'allow', principals: [{ kind: 'deployer', key: deployer }, { kind: 'deployer', key: GUEST }], actions: ['*'], resources: everything },
      { id: 'locked', effect: 'deny', principals: [{ kind: 'deployer', key: GUEST }], actions: ['deploy'], resources: [{ kind: 'namespace', name: 'locked' }] },
      { id: 'guarded', effect: 'deny', principals: [{ kind: 'deployer', key: GUEST }], actions: ['read', 'delete', 'deploy'], resources: [{ kind: 'workload', labels: GUARDED }] },
      { id: 'members-host', effect: 'allow', principals: [{ kind: 'node' }], actions: ['host'], resources: [{ kind: 'workload' }] }
    ]
  })
}

const DEPLOYMENTS = '/apis/apps/v1/namespaces/default/deployments'
const PODS = '/api/v1/namespaces/default/pods'

function deployment (name: string, labels: Record<string, string>): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: { replicas: 1, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: 'busybox', command: ['sh', '-c', 'echo hello from $HOSTNAME; sleep 3600'] }] } } }
  })
}

interface Answer { code: number, body: { kind?: string, reason?: string, message?: string, items?: Array<{ metadata: { name: string } }> } }

/** A request to node 1's API: as the admin with `admin`, else as the guest. */
async function request (method: string, path: string, { body, admin = false, contentType = 'application/json' }: { body?: string, admin?: boolean, contentType?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...(body != null ? { 'content-type': contentType } : {}), authorization: `Bearer ${admin ? adminToken : guestToken}` }
  // Plain HTTP on loopback (the nodes answer it there, --api-insecure-http); kubectl uses TLS.
  const res = await fetch(`${nodes[1]!.apiUrl.replace(/^https:/, 'http:')}${path}`, { method, headers, ...(body != null ? { body } : {}), signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  let parsed: Answer['body'] = {}
  try { parsed = JSON.parse(text) as Answer['body'] } catch { parsed = { message: text } }
  return { code: res.status, body: parsed }
}

function forbidden (a: Answer, what: string): void {
  assert.is(a.code, 403, `${what}: expected 403, got ${a.code} ${JSON.stringify(a.body)}`)
  assert.is(a.body.reason, 'Forbidden', what)
  assert.match(a.body.message ?? '', /guarded|denied|deny/, what)
}

async function kubectl (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile('kubectl', ['--kubeconfig', kubeconfig, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

test.before(async () => {
  engine = (await requireEngine()).engine
  trust = await makeTrust(policy)
  adminToken = await issueToken((await readKeyFile(trust.deployerKeyFile)).key, { mesh: trust.root })
  guestToken = await issueToken(guestKey, { mesh: trust.root })
  // The API serves TLS with a certificate from this mesh's CA, so kubectl sends the guest's token.
  // The certificate comes from this mesh's CA, which this process's API clients trust (as the CLI would with --ca).
  const dir = await tempDir('beemesh-kube-policy-')
  await writePemPair(join(dir, 'api.crt'), join(dir, 'api.key'), await issueServingCert(await ensureMeshCa(trust.dir, 'test'), ['127.0.0.1']))
  process.env.BEEMESH_KEY = trust.deployerKeyFile
  process.env.BEEMESH_MESH = trust.meshFile
  process.env.BEEMESH_CA = trust.caFile
  useCa(trust.caFile)
  const flags = [...trustFlags(trust), '--tls-cert', join(dir, 'api.crt'), '--tls-key', join(dir, 'api.key')]
  nodes.push(await startNode({ trust: flags }))
  nodes.push(await startNode({ trust: flags, bootstrap: [nodes[0]!.address] }))
  await waitUntil(async () => (await Promise.all(nodes.map(async n => (await n.peers()).length))).every(c => c >= 1), { what: 'two members connected' })
  kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, toYaml(makeKubeconfig(nodes[1]!.apiUrl, { ca: await readFile(trust.caFile, 'utf8'), token: guestToken })), { mode: 0o600 })
  // The admin deploys the guarded workload, the guest an open one.
  const vault = await request('POST', DEPLOYMENTS, { body: deployment('vault', GUARDED), admin: true })
  assert.is(vault.code, 201, JSON.stringify(vault.body))
  const open = await request('POST', DEPLOYMENTS, { body: deployment('open', { app: 'open' }) })
  assert.is(open.code, 201, JSON.stringify(open.body))
  await waitUntil(async () => {
    const pods = await request('GET', PODS, { admin: true })
    const running = (pods.body.items as Array<{ metadata: { name: string }, status: { phase: string } }> | undefined ?? []).filter(p => p.status.phase === 'Running').map(p => p.metadata.name)
    return (running.includes('vault-0') && running.includes('open-0')) || undefined
  }, { what: 'pods vault-0 and open-0 to run', timeoutMs: 60_000 })
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  if (engine != null) await removeContainersOf(engine, nodes.map(n => n.peerId))
})

test('a guarded workload\'s Deployment, pod, logs and scale are refused to a caller its labels deny; the admin reads them', async () => {
  forbidden(await request('GET', `${DEPLOYMENTS}/vault`), 'get deployment')
  forbidden(await request('GET', `${PODS}/vault-0`), 'get pod')
  forbidden(await request('GET', `${PODS}/vault-0/log`), 'pod logs')
  forbidden(await request('GET', `${DEPLOYMENTS}/vault/scale`), 'get scale')
  forbidden(await request('PATCH', `${DEPLOYMENTS}/vault/scale`, { body: JSON.stringify({ spec: { replicas: 2 } }), contentType: 'application/merge-patch+json' }), 'scale')
  assert.is((await request('GET', `${PODS}/vault-0`, { admin: true })).code, 200)
  assert.is((await request('GET', `${PODS}/open-0`)).code, 200)
  const logs = await waitUntil(async () => { const a = await request('GET', `${PODS}/vault-0/log`, { admin: true }); return a.code === 200 && /hello/.test(a.body.message ?? '') ? a : undefined }, { what: 'the admin to read vault-0\'s log' })
  assert.match(logs.body.message ?? '', 'hello from')
})

test('lists and events leave out what the caller may not read', async () => {
  const pods = await request('GET', PODS)
  assert.is(pods.code, 200)
  assert.equal(pods.body.items?.map(p => p.metadata.name).sort(), ['open-0'])
  const deployments = await request('GET', DEPLOYMENTS)
  assert.equal(deployments.body.items?.map(p => p.metadata.name).sort(), ['open'])
  const admin = await request('GET', PODS, { admin: true })
  assert.equal(admin.body.items?.map(p => p.metadata.name).sort(), ['open-0', 'vault-0'])
  const events = await request('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dvault-0')
  assert.is(events.code, 200)
  assert.equal(events.body.items, [])
  const kubectlPods = await kubectl(['get', 'pods', '-o', 'name'])
  assert.is(kubectlPods.code, 0, kubectlPods.stderr)
  assert.is(kubectlPods.stdout.trim(), 'pod/open-0')
})

test('deleting a guarded pod or Deployment (kubectl too) is refused, and nothing stops', async () => {
  const before = await request('GET', `${PODS}/vault-0`, { admin: true })
  const viaKubectl = await kubectl(['delete', 'pod', 'vault-0', '--wait=false'])
  assert.is.not(viaKubectl.code, 0)
  assert.match(viaKubectl.stderr, /Forbidden|forbidden/)
  forbidden(await request('DELETE', `${PODS}/vault-0`), 'delete pod')
  forbidden(await request('DELETE', `${DEPLOYMENTS}/vault`), 'delete deployment')
  assert.is((await request('GET', `${DEPLOYMENTS}/vault`, { admin: true })).code, 200)
  const after = await request('GET', `${PODS}/vault-0`, { admin: true })
  assert.is(after.code, 200)
  // The same replica, still running: neither stopped nor replaced.
  assert.equal(after.body, before.body)
})

test('a create or patch that gives a workload the denied labels is refused', async () => {
  forbidden(await request('POST', DEPLOYMENTS, { body: deployment('sneak', GUARDED) }), 'create with guarded labels')
  assert.is((await request('GET', `${DEPLOYMENTS}/sneak`, { admin: true })).code, 404)
  const patch = { spec: { selector: { matchLabels: GUARDED }, template: { metadata: { labels: GUARDED } } } }
  forbidden(await request('PATCH', `${DEPLOYMENTS}/open`, { body: JSON.stringify(patch), contentType: 'application/merge-patch+json' }), 'patch to guarded labels')
  const open = await request('GET', `${DEPLOYMENTS}/open`)
  assert.is(open.code, 200)
  assert.equal((open.body as { spec?: { template?: { metadata?: { labels?: unknown } } } }).spec?.template?.metadata?.labels, { app: 'open' })
})

test('a bundle upload (POST /v1/artifacts) needs deploy on its namespace and answers its sha256', async () => {
  const bytes = Buffer.from('export default {}\n')
  const body = JSON.stringify({ artifact: bytes.toString('base64') })
  const locked = await request('POST', '/v1/artifacts?namespace=locked', { body })
  assert.is(locked.code, 403, JSON.stringify(locked.body))
  const admin = await request('POST', '/v1/artifacts?namespace=locked', { body, admin: true })
  assert.is(admin.code, 201, JSON.stringify(admin.body))
  assert.equal(admin.body, { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.byteLength })
  assert.is((await request('POST', '/v1/artifacts', { body })).code, 201)
  assert.is((await request('POST', '/v1/artifacts', { body: '{}' })).code, 400)
  assert.is((await request('GET', '/v1/artifacts')).code, 405)
})

test.run()
