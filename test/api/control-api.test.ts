/** The control API's answers to bad requests, against a real node process. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { startNode, type NodeProcess } from '../helpers/processes.js'

let node: NodeProcess

test.before(async () => { node = await startNode() })
test.after(async () => { await node.kill() })

async function call (path: string, init: RequestInit = {}): Promise<{ status: number, body: any }> {
  const res = await fetch(node.apiUrl + path, init)
  return { status: res.status, body: await res.json() }
}

test('GET /healthz is 200 with the node state', async () => {
  const r = await call('/healthz')
  assert.is(r.status, 200)
  assert.is(r.body.status, 'ok')
  assert.is(r.body.peerId, node.peerId)
})

test('GET /metrics is Prometheus text with the node\'s gauges and process metrics', async () => {
  const res = await fetch(`${node.apiUrl}/metrics`)
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

test.run()
