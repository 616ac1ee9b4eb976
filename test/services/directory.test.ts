/**
 * The service directory on its own (no network: the source of workloads and
 * replicas is a plain object, the DHT an in-memory map): names, addresses,
 * which replicas are endpoints, and the records a host publishes and empties.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { CallError } from '../../src/services/errors.js'
import { parseServiceRef, serviceAddresses, ServiceDirectory, serviceRecordKey, type KnownReplica, type ServiceSpec } from '../../src/services/directory.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { WorkloadSpec } from '../../src/workloads/types.js'

function spec (name: string, extra: Partial<WorkloadSpec> = {}): WorkloadSpec {
  return { id: `default/${name}`, name, namespace: 'default', kind: 'stateless', topics: [], replicas: 2, resources: { cpuMillis: 100, memoryBytes: 1 }, nodeSelector: {}, delivery: 'queue', retries: 0, timeoutMs: 1000, memoryLimitMb: 16, source: 'x', createdAt: 1, ...extra }
}

function directory (workloads: WorkloadSpec[], replicas: Record<string, KnownReplica[]>, kube: ServiceSpec[] = []): { dir: ServiceDirectory, store: Map<string, { publisher: string, ts: number, value: Uint8Array }> } {
  const store = new Map<string, { publisher: string, ts: number, value: Uint8Array }>()
  const dir = new ServiceDirectory({
    selfId: 'self',
    workloads: () => workloads,
    kubeServices: () => kube,
    replicas: id => replicas[id] ?? [],
    placedOn: id => (replicas[id] ?? []).map(r => r.peerId)
  }, {
    put: async (key, value) => { store.set(key, { publisher: key.split('/').at(-1)!, ts: Date.now(), value }) },
    get: async key => store.get(key)
  }, silentLogger)
  return { dir, store }
}

test('service references: a bare name is in the caller\'s namespace; ns/name and name.ns(.svc.cluster.local) name another', () => {
  assert.is(parseServiceRef('orders', 'shop'), 'shop/orders')
  assert.is(parseServiceRef('billing/orders', 'shop'), 'billing/orders')
  assert.is(parseServiceRef('orders.billing', 'shop'), 'billing/orders')
  assert.is(parseServiceRef('orders.billing.svc.cluster.local', 'shop'), 'billing/orders')
})

test('service addresses: in 198.18.0.0/16, stable, distinct even when hashes collide', () => {
  const ids = Array.from({ length: 2000 }, (_, i) => `default/svc-${i}`)
  const a = serviceAddresses(ids)
  const b = serviceAddresses([...ids].reverse())
  assert.equal([...a.entries()].sort(), [...b.entries()].sort())
  assert.is(new Set(a.values()).size, ids.length)
  for (const ip of a.values()) assert.match(ip, /^198\.18\.([1-9]\d{0,2})\.\d{1,3}$/)
})

test('endpoints are the running replicas that answer their probe; otherwise NO_HEALTHY_REPLICA says why', () => {
  const echo = spec('echo', { services: [{ name: 'echo' }] })
  const { dir } = directory([echo], {
    'default/echo': [
      { peerId: 'a', replica: 0, epoch: 1, status: 'running', ready: true },
      { peerId: 'b', replica: 1, epoch: 1, status: 'running', ready: false },
      { peerId: 'c', replica: 2, epoch: 1, status: 'starting' }
    ]
  })
  const service = dir.resolve('echo', 'default')
  assert.equal(dir.endpoints(service).map(e => e.peerId), ['a'])
  assert.equal(dir.replicas(service).map(r => [r.peerId, r.ready]), [['a', true], ['b', false], ['c', false]])
  try {
    dir.resolve('nosuch', 'default')
    assert.unreachable()
  } catch (err) {
    assert.instance(err, CallError)
    assert.is((err as CallError).code, 'UNKNOWN_SERVICE')
  }
  const { dir: none } = directory([echo], { 'default/echo': [{ peerId: 'b', replica: 1, epoch: 1, status: 'running', ready: false }] })
  try {
    none.endpoints(none.resolve('echo', 'default'))
    assert.unreachable()
  } catch (err) {
    assert.is((err as CallError).code, 'NO_HEALTHY_REPLICA')
    assert.match((err as Error).message, /none of its 1 replica\(s\) is ready/)
  }
})

test('a Kubernetes Service selects workloads by label, in its namespace, and wins a name clash', () => {
  const web = spec('web', { kind: 'container', labels: { app: 'web' }, services: [{ name: 'front', port: 80 }] })
  const other = spec('other', { kind: 'container', labels: { app: 'web' }, namespace: 'elsewhere', id: 'elsewhere/other' })
  const kube: ServiceSpec = { id: 'default/front', namespace: 'default', name: 'front', selector: { app: 'web' }, ports: [{ port: 8080, targetPort: 80 }], origin: 'kube', createdAt: 2 }
  const { dir } = directory([web, other], {}, [kube])
  const front = dir.resolve('front', 'default')
  assert.is(front.origin, 'kube')
  assert.equal(dir.workloadsOf(front).map(w => w.id), ['default/web'])
})

test('a host publishes a record per service it has ready replicas of, and empties it once it has none', async () => {
  const echo = spec('echo', { services: [{ name: 'echo' }] })
  const replicas: Record<string, KnownReplica[]> = { 'default/echo': [{ peerId: 'self', replica: 0, epoch: 3, status: 'running', ready: true }, { peerId: 'peer', replica: 1, epoch: 3, status: 'running', ready: true }] }
  const { dir, store } = directory([echo], replicas)
  await dir.publish()
  const key = serviceRecordKey('default/echo', 'self')
  assert.equal([...store.keys()], [key])
  const service = dir.resolve('echo', 'default')
  const records = await dir.publishedRecords(service, { maxAgeMs: 0 })
  assert.equal(records.map(r => [r.node, r.endpoints]), [['self', [{ workload: 'default/echo', replica: 0, epoch: 3, kind: 'stateless' }]]])
  assert.ok(records[0]!.expiresAt > Date.now())
  replicas['default/echo'] = [{ peerId: 'peer', replica: 1, epoch: 3, status: 'running', ready: true }]
  await dir.publish()
  assert.equal(await dir.publishedRecords(service, { maxAgeMs: 0 }), [])
  const emptied = JSON.parse(new TextDecoder().decode(store.get(key)!.value)) as { endpoints: unknown[] }
  assert.equal(emptied.endpoints, [])
})

test('a record stored under a host\'s key but published by another is ignored', async () => {
  const echo = spec('echo', { services: [{ name: 'echo' }] })
  const { dir, store } = directory([echo], { 'default/echo': [{ peerId: 'victim', replica: 0, epoch: 1, status: 'running', ready: true }] })
  const forged = { v: 1, service: 'default/echo', node: 'victim', protocol: '/beemesh/call/1.0.0', endpoints: [{ workload: 'default/echo', replica: 0, epoch: 1, kind: 'stateless' }], expiresAt: Date.now() + 60_000 }
  store.set(serviceRecordKey('default/echo', 'victim'), { publisher: 'mallory', ts: Date.now(), value: new TextEncoder().encode(JSON.stringify(forged)) })
  assert.equal(await dir.publishedRecords(dir.resolve('echo', 'default'), { maxAgeMs: 0 }), [])
})

test.run()
