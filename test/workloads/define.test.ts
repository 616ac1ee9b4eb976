import { resolve } from 'node:path'
import { test } from 'uvu'
import { createMachine } from 'xstate'
import * as assert from 'uvu/assert'
import { DEFAULTS, defineWorkload, parseManifest, toWorkloadSpec, validateDefinition } from '../../src/workloads/define.js'
import { InvalidDefinitionError, InvalidManifestError } from '../../src/workloads/errors.js'
import type { StatelessDefinition } from '../../src/workloads/types.js'

const SOURCE = 'examples/orders.ts'
const handler = (): void => {}
const valid = (): StatelessDefinition => ({ name: 'orders', kind: 'stateless', topics: ['orders'], handler })
const artifact = { sha256: 'ab'.repeat(32), size: 1234 }

function definitionError (value: unknown, message: string | RegExp, options?: { requireHandler: boolean }): void {
  try {
    if (options == null) validateDefinition(value, SOURCE)
    else validateDefinition(value, SOURCE, options)
  } catch (err) {
    assert.instance(err, InvalidDefinitionError)
    assert.is((err as Error).name, 'InvalidDefinitionError')
    if (typeof message === 'string') assert.is((err as Error).message, message)
    else assert.match((err as Error).message, message)
    assert.not.match((err as Error).message, /\n/)
    return
  }
  assert.unreachable(`expected InvalidDefinitionError ${String(message)}`)
}

function manifestError (text: string, message: string | RegExp, source = 'deploy/orders.yaml'): void {
  try {
    parseManifest(text, source)
  } catch (err) {
    assert.instance(err, InvalidManifestError)
    assert.is((err as Error).name, 'InvalidManifestError')
    if (typeof message === 'string') assert.is((err as Error).message, message)
    else assert.match((err as Error).message, message)
    assert.not.match((err as Error).message, /\n/)
    return
  }
  assert.unreachable(`expected InvalidManifestError ${String(message)}`)
}

test('defineWorkload returns the very definition it is given', () => {
  const def = valid()
  assert.is(defineWorkload(def), def)
  assert.is((validateDefinition(def, SOURCE) as StatelessDefinition).handler, handler)
})

test('defineWorkload rejects a bad definition when the module loads', () => {
  try {
    defineWorkload({ ...valid(), topics: [] })
    assert.unreachable('should have thrown')
  } catch (err) {
    assert.instance(err, InvalidDefinitionError)
    assert.is((err as InvalidDefinitionError).detail, 'topics: expected a non-empty array of topic names')
  }
})

test('messages name the source, the field path and the problem', () => {
  definitionError({ ...valid(), topics: [] }, 'examples/orders.ts: topics: expected a non-empty array of topic names')
  definitionError({ ...valid(), topics: undefined }, 'examples/orders.ts: topics: missing; expected a non-empty array of topic names')
  definitionError({ ...valid(), topics: 'orders' }, /^examples\/orders\.ts: topics: expected a non-empty array of topic names, got "orders"$/)
  definitionError({ ...valid(), topics: ['ok', 'not ok'] }, /^examples\/orders\.ts: topics\[1\]: expected a topic name .*got "not ok"$/)
  definitionError({ ...valid(), topics: ['x'.repeat(201)] }, /topics\[0\]: expected a topic name/)
  definitionError({ ...valid(), name: 'Orders' }, /^examples\/orders\.ts: name: expected a DNS-1123 label .*got "Orders"$/)
  definitionError({ ...valid(), name: '-orders' }, /name: expected a DNS-1123 label/)
  definitionError({ ...valid(), name: 'a'.repeat(64) }, /name: expected a DNS-1123 label/)
  definitionError({ ...valid(), namespace: 'Prod' }, /namespace: expected a DNS-1123 label/)
  definitionError({ ...valid(), replicas: 0 }, 'examples/orders.ts: replicas: expected an integer from 1 to 100, got 0')
  definitionError({ ...valid(), replicas: 1.5 }, /replicas: expected an integer from 1 to 100, got 1\.5/)
  definitionError({ ...valid(), replicas: 101 }, /replicas: expected an integer from 1 to 100, got 101/)
  definitionError({ ...valid(), retries: 21 }, /retries: expected an integer from 0 to 20, got 21/)
  definitionError({ ...valid(), retries: -1 }, /retries: expected an integer from 0 to 20/)
  definitionError({ ...valid(), timeoutMs: 5 }, /timeoutMs: expected an integer from 10 to 600000, got 5/)
  definitionError({ ...valid(), timeoutMs: 600_001 }, /timeoutMs: expected an integer from 10 to 600000/)
  definitionError({ ...valid(), delivery: 'broadcast' }, /delivery: expected "queue" or "fanout", got "broadcast"/)
  definitionError({ ...valid(), resources: { cpu: 'lots' } }, /^examples\/orders\.ts: resources\.cpu: invalid CPU quantity "lots": expected/)
  definitionError({ ...valid(), resources: { memory: '10Mx' } }, /resources\.memory: invalid memory quantity "10Mx"/)
  definitionError({ ...valid(), nodeSelector: { 'kubernetes.io/arch': 1 } }, /nodeSelector\["kubernetes\.io\/arch"\]: expected a string label value/)
  definitionError({ ...valid(), handler: undefined }, 'examples/orders.ts: handler: missing; expected a function (event, ctx) => …')
  definitionError({ ...valid(), handler: 'run' }, /handler: expected a function .*got "run"/)
})

test('kind is stateless or stateful; container is announced as later', () => {
  definitionError({ ...valid(), kind: 'container' }, /kind: "container" workloads are not supported yet/)
  definitionError({ ...valid(), kind: 'lambda' }, /kind: expected "stateless" or "stateful", got "lambda"/)
  definitionError({ ...valid(), kind: undefined }, /kind: missing; expected "stateless" or "stateful"/)
})

const door = createMachine({ id: 'door', initial: 'closed', states: { closed: { on: { open: 'opened' } }, opened: { on: { close: 'closed' } } } })

test('a stateful definition needs an XState machine and takes durability and snapshotEvery', () => {
  const def = defineWorkload({ name: 'door', kind: 'stateful', machine: door })
  assert.is(def.machine, door)
  definitionError({ name: 'door', kind: 'stateful' }, /machine: missing; expected an XState v5 machine/)
  definitionError({ name: 'door', kind: 'stateful', machine: 'door' }, /machine: expected an XState v5 machine/)
  definitionError({ name: 'door', kind: 'stateful', machine: door, topics: ['t'] }, /topics: unknown field/)
  definitionError({ name: 'door', kind: 'stateful', machine: door, durability: 'eventual' }, /durability: expected "replicated" or "local", got "eventual"/)
  definitionError({ name: 'door', kind: 'stateful', machine: door, snapshotEvery: 0 }, /snapshotEvery: expected an integer from 1 to 100000, got 0/)
  const spec = toWorkloadSpec(def, { artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'door.ts', now: 5 })
  assert.is(spec.kind, 'stateful')
  assert.is(spec.replicas, 1)
  assert.equal(spec.topics, [])
  assert.is(spec.durability, 'replicated')
  assert.is(spec.snapshotEvery, 100)
  assert.is(spec.machineId, 'door')
  const local = toWorkloadSpec({ name: 'door', kind: 'stateful', durability: 'local', snapshotEvery: 10 }, { artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'door.ts', now: 5, machineId: 'door' })
  assert.is(local.durability, 'local')
  assert.is(local.snapshotEvery, 10)
})

test('unknown fields are refused, with a hint for near misses; extra problems are counted', () => {
  definitionError({ ...valid(), replica: 2 }, 'examples/orders.ts: replica: unknown field (did you mean "replicas"?)')
  definitionError({ ...valid(), colour: 'blue' }, 'examples/orders.ts: colour: unknown field')
  definitionError({ ...valid(), replicas: 0, retries: 99 }, /replicas: .* \(and 1 more problem\)$/)
})

test('a missing or non-object default export is named as such', () => {
  definitionError(undefined, 'examples/orders.ts: the module has no default export; export default defineWorkload({...})')
  definitionError(42, 'examples/orders.ts: the default export is a number; export default defineWorkload({...})')
  definitionError(null, /the default export is null/)
  definitionError([valid()], /the default export is an array/)
})

test('without requireHandler the fields alone validate', () => {
  const { handler: _h, ...fields } = valid()
  const out = validateDefinition(fields, SOURCE, { requireHandler: false })
  assert.equal(out, fields)
  definitionError({ ...fields, topics: [] }, /topics: expected a non-empty array/, { requireHandler: false })
})

test('toWorkloadSpec applies the defaults and drops the handler', () => {
  const spec = toWorkloadSpec(valid(), { artifact, source: SOURCE, now: 1700 })
  assert.equal(spec, {
    id: 'default/orders',
    name: 'orders',
    namespace: 'default',
    kind: 'stateless',
    topics: ['orders'],
    replicas: 1,
    resources: { cpuMillis: 100, memoryBytes: 64 * 1024 * 1024 },
    nodeSelector: {},
    delivery: 'queue',
    retries: 2,
    timeoutMs: 5000,
    memoryLimitMb: 64,
    artifact,
    source: SOURCE,
    createdAt: 1700
  })
  assert.equal(JSON.parse(JSON.stringify(spec)), spec)
  assert.is(DEFAULTS.retries, spec.retries)
})

test('toWorkloadSpec keeps given values and derives the heap limit from memory', () => {
  const spec = toWorkloadSpec({
    name: 'billing',
    kind: 'stateless',
    namespace: 'shop',
    topics: ['a', 'b', 'a'],
    replicas: 3,
    resources: { cpu: '1.5', memory: '100M' },
    nodeSelector: { zone: 'eu' },
    delivery: 'fanout',
    retries: 0,
    timeoutMs: 250
  }, { artifact, source: 'x.ts', now: 0 })
  assert.is(spec.id, 'shop/billing')
  assert.equal(spec.topics, ['a', 'b'])
  assert.equal(spec.resources, { cpuMillis: 1500, memoryBytes: 100_000_000 })
  assert.is(spec.memoryLimitMb, 96)
  assert.equal(spec.nodeSelector, { zone: 'eu' })
  assert.is(spec.delivery, 'fanout')
  assert.is(spec.retries, 0)
  assert.is(spec.timeoutMs, 250)
  assert.is(toWorkloadSpec({ ...valid(), resources: { memory: '1Mi' } }, { artifact, source: 'x.ts', now: 0 }).memoryLimitMb, 16)
  assert.throws(() => toWorkloadSpec({ ...valid(), replicas: 0 }, { artifact, source: 'x.ts', now: 0 }), (err: Error) => err instanceof InvalidDefinitionError && /^x\.ts: replicas:/.test(err.message))
})

const MANIFEST = `apiVersion: beemesh.io/v1
kind: Actor
metadata:
  name: orders-eu
  namespace: shop
spec:
  module: ./orders.ts
  replicas: 2
  resources:
    memory: 128Mi
  nodeSelector:
    zone: eu
  delivery: fanout
`

test('a manifest resolves its module next to itself and carries the overrides', () => {
  const m = parseManifest(MANIFEST, 'deploy/orders.yaml')
  assert.is(m.module, resolve('deploy/orders.ts'))
  assert.equal(m.overrides, { name: 'orders-eu', namespace: 'shop', replicas: 2, resources: { memory: '128Mi' }, nodeSelector: { zone: 'eu' }, delivery: 'fanout' })
  assert.is(parseManifest(MANIFEST, '/srv/app/orders.yaml').module, '/srv/app/orders.ts')
  const minimal = parseManifest('apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: ../src/w.js\n', '/srv/app/orders.yml')
  assert.equal(minimal, { module: '/srv/src/w.js', overrides: {} })
})

test('a JSON manifest is read the same way', () => {
  const m = parseManifest(JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Actor', spec: { module: 'w.mjs', topics: ['t1'], retries: 5, timeoutMs: 900 } }), '/srv/w.json')
  assert.equal(m, { module: '/srv/w.mjs', overrides: { topics: ['t1'], retries: 5, timeoutMs: 900 } })
})

test('malformed YAML names the file and the line', () => {
  manifestError('apiVersion: beemesh.io/v1\nkind: Actor\nspec:\n  module: ./o.ts\n  replicas: [1, 2\n', /^deploy\/orders\.yaml: invalid YAML at line 6, column 1: /)
  manifestError('apiVersion: beemesh.io/v1\nkind: Actor\nkind: Actor\n', /^deploy\/orders\.yaml: invalid YAML at line 3, column 1: Map keys must be unique$/)
  manifestError('a: 1\n---\nb: 2\n', /invalid YAML at line 2, column 1: the file holds more than one YAML document/)
  manifestError('spec: *nowhere\n', /^deploy\/orders\.yaml: invalid YAML: .*nowhere/)
})

test('apiVersion and kind are checked, naming the accepted values', () => {
  manifestError(MANIFEST.replace('beemesh.io/v1', 'apps/v1'), 'deploy/orders.yaml: apiVersion: expected "beemesh.io/v1", got "apps/v1"')
  manifestError(MANIFEST.replace('kind: Actor', 'kind: Deployment'), 'deploy/orders.yaml: kind: expected "Actor", got "Deployment"')
  manifestError(MANIFEST.replace('apiVersion: beemesh.io/v1\n', ''), 'deploy/orders.yaml: apiVersion: missing; expected "beemesh.io/v1"')
})

test('spec.module is required; overrides and unknown fields are validated', () => {
  manifestError(MANIFEST.replace('  module: ./orders.ts\n', ''), /^deploy\/orders\.yaml: spec\.module: missing; expected the path of the workload module/)
  manifestError(MANIFEST.replace('module: ./orders.ts', 'module: ""'), /spec\.module: expected the path of the workload module/)
  manifestError('apiVersion: beemesh.io/v1\nkind: Actor\n', /^deploy\/orders\.yaml: spec: missing; expected an object/)
  manifestError(MANIFEST.replace('replicas: 2', 'replicas: 0'), 'deploy/orders.yaml: spec.replicas: expected an integer from 1 to 100, got 0')
  manifestError(MANIFEST.replace('replicas: 2', 'replica: 2'), 'deploy/orders.yaml: spec.replica: unknown field (did you mean "replicas"?)')
  manifestError(MANIFEST.replace('zone: eu', 'gpu: true'), /spec\.nodeSelector\.gpu: expected a string label value \(quote numbers and booleans in YAML\), got true/)
  manifestError(MANIFEST.replace('name: orders-eu', 'name: Orders'), /metadata\.name: expected a DNS-1123 label/)
  manifestError(MANIFEST.replace('memory: 128Mi', 'memory: 128MB'), /spec\.resources\.memory: invalid memory quantity "128MB"/)
})

test('an empty manifest or a non-mapping is refused', () => {
  manifestError('', /^deploy\/orders\.yaml: the manifest is empty; expected apiVersion: beemesh\.io\/v1, kind: Actor/)
  manifestError('# only a comment\n', /the manifest is empty/)
  manifestError('- a\n- b\n', 'deploy/orders.yaml: expected a mapping with apiVersion, kind, metadata and spec')
})

test.run()
