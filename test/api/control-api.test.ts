/** The control API's answers to bad requests, against a real node process. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bearerFor } from '../../src/cli/api-client.js'
import { generateKey, issueCredential, issueToken, keyId, signPolicy } from '../../src/policy/credentials.js'
import { defaultPolicyText } from '../../src/policy/defaults.js'
import { startNode, testTrust, type NodeProcess, type TestTrust } from '../helpers/processes.js'

let node: NodeProcess
let trust: TestTrust
let token: string

test.before(async () => {
  node = await startNode()
  trust = await testTrust()
  token = (await bearerFor(node.apiUrl))!
})
test.after(async () => { await node.kill() })

/** A request as the test's admin deployer, its body JSON unless told otherwise. */
async function call (path: string, init: RequestInit = {}): Promise<{ status: number, body: any }> {
  const headers = { authorization: `Bearer ${token}`, ...(init.body != null ? { 'content-type': 'application/json' } : {}), ...init.headers as Record<string, string> }
  const res = await fetch(node.apiUrl + path, { ...init, headers })
  return { status: res.status, body: await res.json() }
}

test('GET /healthz is 200 with the node state', async () => {
  const r = await call('/healthz')
  assert.is(r.status, 200)
  assert.is(r.body.status, 'ok')
  assert.is(r.body.peerId, node.peerId)
})

test('GET /metrics is Prometheus text with the node\'s gauges and process metrics', async () => {
  assert.is((await fetch(`${node.apiUrl}/metrics`)).status, 401, 'no token, no metrics')
  const res = await fetch(`${node.apiUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } })
  assert.is(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/)
  const body = await res.text()
  assert.match(body, /^beemesh_peers 0$/m)
  assert.match(body, /^beemesh_replicas 0$/m)
  assert.match(body, /^# TYPE beemesh_tender_duration_seconds histogram$/m)
  assert.match(body, /^beemesh_process_resident_memory_bytes \d+/m)
})

test('unknown endpoint → 404, wrong method → 405', async () => {
  assert.is((await call('/v1/nope')).status, 404)
  const r = await call('/v1/records', { method: 'DELETE' })
  assert.is(r.status, 405)
  assert.match(r.body.error, /method DELETE not allowed/)
})

test('malformed JSON, missing fields and bad keys → 400 naming the problem', async () => {
  let r = await call('/v1/records', { method: 'PUT', body: '{bad', headers: { 'content-type': 'application/json' } })
  assert.is(r.status, 400)
  assert.match(r.body.error, /not valid JSON/)
  r = await call('/v1/records', { method: 'PUT', body: JSON.stringify({ key: '/beemesh/a/b' }) })
  assert.is(r.status, 400)
  assert.match(r.body.error, /value/)
  r = await call('/v1/records', { method: 'PUT', body: JSON.stringify({ key: '/etc/passwd', value: 'x' }) })
  assert.is(r.status, 400)
  assert.match(r.body.error, /\/beemesh\/<kind>\/<id>/)
  r = await call('/v1/topics/bad%20topic!/messages', { method: 'POST', body: JSON.stringify({ data: 1 }) })
  assert.is(r.status, 400)
})

test('oversized body → 413', async () => {
  const r = await call('/v1/records', { method: 'PUT', body: JSON.stringify({ key: '/beemesh/a/b', value: 'x'.repeat(2 * 1024 * 1024) }) })
  assert.is(r.status, 413)
})

test('a record nobody stored → 404', async () => {
  const r = await call(`/v1/records?key=${encodeURIComponent('/beemesh/test/never-written')}`)
  assert.is(r.status, 404)
  assert.match(r.body.error, /no record found for key \/beemesh\/test\/never-written/)
})

test('publish to a topic nobody listens on → 404 NoSubscribers, nothing sent', async () => {
  const r = await call('/v1/topics/lonely/messages', { method: 'POST', body: JSON.stringify({ data: { a: 1 } }) })
  assert.is(r.status, 404)
  assert.is(r.body.reason, 'NoSubscribers')
  assert.match(r.body.error, /no actor or subscriber listens on topic "lonely"/)
})

test('--metrics-listen: a separate listener serves /metrics without a token, and nothing else', async () => {
  const other = await startNode({ extra: ['--metrics-listen', '127.0.0.1:0'] })
  try {
    const url = (await other.waitForOutput(/metrics\s+(http:\/\/\S+\/metrics) \(no token/))[1]!
    const res = await fetch(url)
    assert.is(res.status, 200)
    assert.match(await res.text(), /^beemesh_peers \d+$/m)
    assert.is((await fetch(url.replace(/\/metrics$/, '/v1/status'))).status, 404)
    assert.is((await fetch(url, { method: 'POST', body: '' })).status, 404)
    // The API's own /metrics still needs a token.
    assert.is((await fetch(`${other.apiUrl}/metrics`)).status, 401)
  } finally {
    await other.kill()
  }
})

test('no anonymous callers: no token, a stranger\'s token, a token for another mesh, a malformed header → 401', async () => {
  const plain = await fetch(`${node.apiUrl}/v1/status`)
  assert.is(plain.status, 401)
  assert.match((await plain.json() as { error: string }).error, /bearer token is required/)
  const stranger = await issueToken(await generateKey(), { mesh: trust.root })
  let r = await call('/v1/status', { headers: { authorization: `Bearer ${stranger}` } })
  assert.is(r.status, 401)
  assert.match(r.body.error, /is not named by policy/)
  r = await call('/v1/peers', { headers: { authorization: `Bearer ${await issueToken(trust.rootKey, { mesh: keyId(await generateKey()) })}` } })
  assert.is(r.status, 401)
  assert.match(r.body.error, /is for mesh/)
  r = await call('/v1/nodes', { headers: { authorization: 'Basic YTpi' } })
  assert.is(r.status, 401)
})

test('a key no rule names authenticates with a deployer credential the root issued (its labels reach the policy), not with another issuer\'s or a node credential', async () => {
  const key = await generateKey()
  const id = keyId(key)
  const vouched = await issueToken(key, { mesh: trust.root, credential: await issueCredential(trust.rootKey, id, { kind: 'deployer', labels: { team: 'ops' }, ttlMs: 3_600_000 }) })
  // Authenticated (not 401), and the default policy grants this deployer nothing: 403.
  let r = await call('/v1/status', { headers: { authorization: `Bearer ${vouched}` } })
  assert.is(r.status, 403)
  assert.match(r.body.error, new RegExp(`read by deployer ${id}`))
  const stranger = await generateKey()
  const forged = await issueToken(key, { mesh: trust.root, credential: await issueCredential(stranger, id, { kind: 'deployer' }) })
  r = await call('/v1/status', { headers: { authorization: `Bearer ${forged}` } })
  assert.is(r.status, 401)
  assert.match(r.body.error, /not by the trusted/)
  const asNode = await issueCredential(trust.rootKey, id, { kind: 'node' })
  const refused = await issueToken(key, { mesh: trust.root, credential: asNode }).then(() => '', (err: Error) => err.message)
  assert.match(refused, /not a deployer credential/)
})

test('writes need a JSON (or Kubernetes patch/YAML) body type: text/plain, forms and untyped bodies → 415', async () => {
  for (const type of ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await call('/v1/topics/t/messages', { method: 'POST', body: '{"data":1}', headers: { 'content-type': type } })
    assert.is(r.status, 415, type)
    assert.is(r.body.reason, 'UnsupportedMediaType')
  }
  const untyped = await fetch(`${node.apiUrl}/v1/topics/t/messages`, { method: 'POST', body: new Uint8Array(Buffer.from('{"data":1}')), headers: { authorization: `Bearer ${token}` } })
  assert.is(untyped.status, 415)
  const patch = await call('/api/v1/namespaces/default/pods/none', { method: 'PATCH', body: '{}', headers: { 'content-type': 'application/merge-patch+json' } })
  assert.is.not(patch.status, 415)
})

test('a foreign Origin is refused (403) before anything else; the API\'s own origin is fine', async () => {
  const r = await call('/v1/topics/t/messages', { method: 'POST', body: '{"data":1}', headers: { origin: 'http://evil.example', 'content-type': 'text/plain' } })
  assert.is(r.status, 403)
  assert.match(r.body.error, /not this API's own origin/)
  assert.is((await call('/v1/status', { headers: { origin: 'http://127.0.0.1:1' } })).status, 403, 'another port is another origin')
  assert.is((await call('/v1/status', { headers: { origin: node.apiUrl } })).status, 200)
})

test('a revoked deployer\'s token is refused (401) once a policy revoking it is in force', async () => {
  const second = await generateKey()
  const secondToken = await issueToken(second, { mesh: trust.root })
  const apply = async (version: number, revoked: string[]): Promise<void> => {
    const text = defaultPolicyText({ admins: [trust.deployer, keyId(second)], name: 'test', version }) + (revoked.length > 0 ? `revoked: [${revoked.join(', ')}]\n` : '')
    const r = await call('/v1/policy', { method: 'PUT', body: JSON.stringify(await signPolicy(trust.rootKey, text)) })
    assert.is(r.status, 200, JSON.stringify(r.body))
  }
  await apply(100, [])
  assert.is((await call('/v1/status', { headers: { authorization: `Bearer ${secondToken}` } })).status, 200)
  await apply(101, [keyId(second)])
  const r = await call('/v1/status', { headers: { authorization: `Bearer ${secondToken}` } })
  assert.is(r.status, 401)
  assert.match(r.body.error, /is revoked by policy test v101/)
  assert.is((await call('/v1/status')).status, 200, 'the admin is not revoked')
})

test.run()
