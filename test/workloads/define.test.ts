import { resolve } from 'node:path'
import { test } from 'uvu'
import { createMachine } from 'xstate'
import * as assert from 'uvu/assert'
import { defineWorkload } from '../../src/workloads/define.js'
import { parseManifest } from '../../src/workloads/manifest.js'
import { DEFAULTS, validateDefinition } from '../../src/workloads/schema.js'
import { toWorkloadSpec } from '../../src/workloads/spec.js'
import { InvalidDefinitionError, InvalidManifestError } from '../../src/workloads/errors.js'
import type { ContainerDefinition, StatelessDefinition } from '../../src/workloads/types.js'
import { defaultContainerSpec, oneLineError } from '../helpers/expect.js'

const SOURCE = 'examples/orders.ts'
const handler = (): void => {}
const valid = (): StatelessDefinition => ({ name: 'orders', kind: 'stateless', topics: ['orders'], handler })
const artifact = { sha256: 'ab'.repeat(32), size: 1234 }

function definitionError (value: unknown, message: string | RegExp, options?: { requireHandler: boolean }): void {
  oneLineError(() => options == null ? validateDefinition(value, SOURCE) : validateDefinition(value, SOURCE, options), InvalidDefinitionError, message)
}

function manifestError (text: string, message: string | RegExp, source = 'deploy/orders.yaml'): void {
  oneLineError(() => parseManifest(text, source), InvalidManifestError, message)
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
  definitionError({ ...valid(), topics: undefined }, 'examples/orders.ts: topics: missing; expected a non-empty array of topic names (or services, for a workload that only serves calls)')
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

test('kind is stateless, stateful or container', () => {
  definitionError({ ...valid(), kind: 'lambda' }, 'examples/orders.ts: kind: expected "stateless", "stateful" or "container", got "lambda"')
  definitionError({ ...valid(), kind: undefined }, /kind: missing; expected "stateless", "stateful" or "container"/)
  definitionError({ ...valid(), kind: 'container' }, /^examples\/orders\.ts: image: missing; expected an image reference/)
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

test('services: a stateless service needs onCall and no topics; a container service needs a TCP port of its own', () => {
  const onCall = (): string => 'pong'
  const served = { name: 'echo', kind: 'stateless', services: [{ name: 'echo' }], onCall }
  assert.is((validateDefinition(served, SOURCE) as StatelessDefinition).onCall, onCall)
  assert.equal(toWorkloadSpec(served as StatelessDefinition, { artifact, source: SOURCE, now: 1 }).services, [{ name: 'echo' }])
  assert.equal(toWorkloadSpec(served as StatelessDefinition, { artifact, source: SOURCE, now: 1 }).topics, [])
  definitionError({ name: 'echo', kind: 'stateless', handler }, /topics: missing; expected a non-empty array of topic names \(or services/)
  definitionError({ name: 'echo', kind: 'stateless', services: [{ name: 'echo' }] }, 'examples/orders.ts: onCall: missing; expected a function (request, ctx) => reply to serve services')
  definitionError({ ...valid(), onCall }, 'examples/orders.ts: onCall: given, but services declares no service for it to serve')
  definitionError({ ...served, services: [{ name: 'echo' }, { name: 'echo' }] }, 'examples/orders.ts: services[1].name: service "echo" is declared twice (also in services[0])')
  definitionError({ ...served, services: [{ name: 'Echo' }] }, /services\[0\]\.name: expected a DNS-1123 label/)
  definitionError({ ...served, services: [{ name: 'echo', port: 80 }] }, /services\[0\]: unknown field|port/)
  const web: ContainerDefinition = { name: 'web', kind: 'container', image: 'busybox', ports: [8080, { containerPort: 53, protocol: 'UDP' }], services: [{ name: 'web' }] }
  assert.equal(toWorkloadSpec(web, { source: SOURCE, now: 1 }).services, [{ name: 'web', port: 8080 }])
  definitionError({ ...web, services: [{ name: 'web', port: 53 }] }, 'examples/orders.ts: services[0].port: 53 is not a TCP port of the container (ports: 8080)')
  definitionError({ ...web, ports: undefined }, 'examples/orders.ts: services[0]: service "web" needs a TCP container port to reach; declare one in ports')
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

const box = (): ContainerDefinition => ({ name: 'hello', kind: 'container', image: 'busybox:1.36' })

test('defineWorkload takes a container definition and returns it unchanged', () => {
  const def = box()
  assert.is(defineWorkload(def), def)
  const full = defineWorkload({
    name: 'web',
    kind: 'container',
    namespace: 'shop',
    image: 'registry.example.com:5000/team/web@sha256:' + 'ab'.repeat(32),
    command: ['httpd'],
    args: ['-f', '-p', '8080'],
    env: [{ name: 'MODE', value: 'prod' }],
    ports: [8080, { containerPort: 53, protocol: 'UDP', name: 'dns' }],
    workingDir: '/srv',
    restartPolicy: 'OnFailure',
    imagePullPolicy: 'Never',
    limits: { cpu: '1', memory: '256Mi' },
    resources: { cpu: '250m' },
    replicas: 3,
    nodeSelector: { zone: 'eu' },
    backoff: { initialMs: 200, maxMs: 5000 },
    terminationGracePeriodSeconds: 5
  })
  assert.is(full.name, 'web')
})

test('container fields are validated, each error naming its field', () => {
  definitionError({ ...box(), image: undefined }, /^examples\/orders\.ts: image: missing; expected an image reference such as "busybox:1\.36"/)
  definitionError({ ...box(), image: 'Busybox' }, /^examples\/orders\.ts: image: expected an image reference .*got "Busybox"$/)
  definitionError({ ...box(), image: 'busy box' }, /image: expected an image reference .*got "busy box"/)
  definitionError({ ...box(), image: '' }, /image: expected an image reference/)
  definitionError({ ...box(), command: 'sh -c echo' }, 'examples/orders.ts: command: expected a list of strings, got "sh -c echo"')
  definitionError({ ...box(), args: ['-p', 8080] }, 'examples/orders.ts: args[1]: expected a string (quote numbers and booleans in YAML), got 8080')
  definitionError({ ...box(), env: { PORT: 8080 } }, 'examples/orders.ts: env.PORT: expected a string (quote numbers and booleans in YAML), got 8080')
  definitionError({ ...box(), env: { '1ST': 'x' } }, /^examples\/orders\.ts: env\["1ST"\]: expected an environment variable name .*got "1ST"$/)
  definitionError({ ...box(), env: [{ name: 'A' }, { name: 'B', value: true }] }, /^examples\/orders\.ts: env\[1\]\.value: expected a string .*got true$/)
  definitionError({ ...box(), env: [{ name: 'A', value: '1' }, { name: 'A', value: '2' }] }, 'examples/orders.ts: env[1].name: "A" is set twice (also in env[0])')
  definitionError({ ...box(), env: 'A=1' }, 'examples/orders.ts: env: expected an object mapping names to values, or a list of { name, value }, got "A=1"')
  definitionError({ ...box(), env: [{ name: 'A', valueFrom: {} }] }, 'examples/orders.ts: env[0].valueFrom: unknown field')
  definitionError({ ...box(), ports: [0] }, 'examples/orders.ts: ports[0]: expected a port number from 1 to 65535, got 0')
  definitionError({ ...box(), ports: [{ containerPort: 70000 }] }, 'examples/orders.ts: ports[0].containerPort: expected a port number from 1 to 65535, got 70000')
  definitionError({ ...box(), ports: [{ containerPort: 80, protocol: 'SCTP' }] }, 'examples/orders.ts: ports[0].protocol: expected "TCP" or "UDP", got "SCTP"')
  definitionError({ ...box(), ports: [{ containerPort: 80, name: 'Web_Port' }] }, /ports\[0\]\.name: expected a port name .*got "Web_Port"/)
  definitionError({ ...box(), ports: ['80'] }, /^examples\/orders\.ts: ports\[0\]: expected a port number or \{ containerPort, hostPort\?, protocol\?, name\? \}, got "80"$/)
  definitionError({ ...box(), ports: [{ port: 80 }] }, 'examples/orders.ts: ports[0].containerPort: missing; expected a port number from 1 to 65535')
  definitionError({ ...box(), ports: 8080 }, /^examples\/orders\.ts: ports: expected a list of port numbers or .*got 8080$/)
  definitionError({ ...box(), ports: [8080, { containerPort: 8080 }] }, 'examples/orders.ts: ports[1]: containerPort 8080/TCP is declared twice (also in ports[0])')
  definitionError({ ...box(), ports: [{ containerPort: 80, hostPort: 8080 }, { containerPort: 81, hostPort: 8080 }] }, 'examples/orders.ts: ports[1]: hostPort 8080/TCP is declared twice (also in ports[0])')
  definitionError({ ...box(), ports: [{ containerPort: 80, name: 'web' }, { containerPort: 81, name: 'web' }] }, /ports\[1\]: port name "web" is declared twice/)
  definitionError({ ...box(), workingDir: 'app' }, 'examples/orders.ts: workingDir: expected an absolute path such as "/app", got "app"')
  definitionError({ ...box(), restartPolicy: 'always' }, 'examples/orders.ts: restartPolicy: expected "Always", "OnFailure" or "Never", got "always"')
  definitionError({ ...box(), imagePullPolicy: 'Sometimes' }, 'examples/orders.ts: imagePullPolicy: expected "Always", "IfNotPresent" or "Never", got "Sometimes"')
  definitionError({ ...box(), limits: { memory: '64MB' } }, /^examples\/orders\.ts: limits\.memory: invalid memory quantity "64MB"/)
  definitionError({ ...box(), limits: { disk: '1Gi' } }, 'examples/orders.ts: limits.disk: unknown field')
  definitionError({ ...box(), resources: { cpu: '2' }, limits: { cpu: '1' } }, 'examples/orders.ts: resources.cpu: the request "2" is more than the limit "1" (limits.cpu); a request cannot exceed its limit')
  definitionError({ ...box(), backoff: { initialMs: 0 } }, 'examples/orders.ts: backoff.initialMs: expected an integer from 1 to 3600000, got 0')
  definitionError({ ...box(), backoff: { initialMs: 600_000 } }, 'examples/orders.ts: backoff.initialMs: 600000 is more than backoff.maxMs (300000 by default)')
  definitionError({ ...box(), backoff: { initialMs: 2000, maxMs: 1000 } }, 'examples/orders.ts: backoff.initialMs: 2000 is more than backoff.maxMs (1000)')
  definitionError({ ...box(), backoff: { initial: 10 } }, /backoff\.initial: unknown field \(did you mean "initialMs"\?\)/)
  definitionError({ ...box(), terminationGracePeriodSeconds: -1 }, 'examples/orders.ts: terminationGracePeriodSeconds: expected an integer from 0 to 3600, got -1')
  definitionError({ ...box(), replicas: 0 }, /replicas: expected an integer from 1 to 100, got 0/)
  definitionError({ ...box(), topics: ['t'] }, 'examples/orders.ts: topics: unknown field')
  definitionError({ ...box(), imagePullpolicy: 'Never' }, 'examples/orders.ts: imagePullpolicy: unknown field (did you mean "imagePullPolicy"?)')
})

test('toWorkloadSpec gives a container workload its defaults and no artifact', () => {
  const spec = toWorkloadSpec(box(), { source: 'hello.ts', now: 7 })
  assert.equal(spec, defaultContainerSpec('hello', 'busybox:1.36', 'hello.ts', 7))
  assert.equal(JSON.parse(JSON.stringify(spec)), spec)
  assert.is(toWorkloadSpec(box(), { artifact, source: 'hello.ts', now: 7 }).artifact, undefined)
  assert.equal(DEFAULTS.backoff, spec.container?.backoff)
})

test('toWorkloadSpec normalises env and ports of a container', () => {
  const fromMap = toWorkloadSpec({ ...box(), env: { A: '1', B: '' }, ports: [8080, { containerPort: 53, protocol: 'UDP', hostPort: 5353, name: 'dns' }] }, { source: 's', now: 0 })
  assert.equal(fromMap.container?.env, [{ name: 'A', value: '1' }, { name: 'B', value: '' }])
  assert.equal(fromMap.container?.ports, [{ containerPort: 8080, protocol: 'TCP' }, { containerPort: 53, hostPort: 5353, protocol: 'UDP', name: 'dns' }])
  const fromList = toWorkloadSpec({ ...box(), env: [{ name: 'A', value: '1' }] }, { source: 's', now: 0 })
  assert.equal(fromList.container?.env, [{ name: 'A', value: '1' }])
  // The same port number over TCP and UDP is two ports.
  const both = toWorkloadSpec({ ...box(), ports: [53, { containerPort: 53, protocol: 'UDP' }] }, { source: 's', now: 0 })
  assert.is(both.container?.ports.length, 2)
  // Empty command and args mean the image's own, as in Kubernetes.
  const empty = toWorkloadSpec({ ...box(), command: [], args: [] }, { source: 's', now: 0 })
  assert.is('command' in (empty.container ?? {}), false)
  assert.is('args' in (empty.container ?? {}), false)
})

test('requests default to the limits, resource by resource, then to the defaults', () => {
  const limited = toWorkloadSpec({ ...box(), limits: { cpu: '500m', memory: '256Mi' } }, { source: 's', now: 0 })
  assert.equal(limited.resources, { cpuMillis: 500, memoryBytes: 256 * 1024 * 1024 })
  assert.equal(limited.container?.limits, { cpuMillis: 500, memoryBytes: 256 * 1024 * 1024 })
  assert.is(limited.memoryLimitMb, 256)
  const mixed = toWorkloadSpec({ ...box(), limits: { memory: '128Mi' }, resources: { cpu: '250m' } }, { source: 's', now: 0 })
  assert.equal(mixed.resources, { cpuMillis: 250, memoryBytes: 128 * 1024 * 1024 })
  assert.equal(mixed.container?.limits, { memoryBytes: 128 * 1024 * 1024 })
  const cpuOnly = toWorkloadSpec({ ...box(), limits: { cpu: '2' } }, { source: 's', now: 0 })
  assert.equal(cpuOnly.resources, { cpuMillis: 2000, memoryBytes: 64 * 1024 * 1024 })
  const requested = toWorkloadSpec({ ...box(), resources: { cpu: '1', memory: '1Gi' }, limits: { cpu: '2', memory: '2Gi' } }, { source: 's', now: 0 })
  assert.equal(requested.resources, { cpuMillis: 1000, memoryBytes: 1024 ** 3 })
})

test('toWorkloadSpec keeps the given container fields', () => {
  const spec = toWorkloadSpec({
    ...box(),
    namespace: 'shop',
    replicas: 4,
    command: ['sh', '-c'],
    args: ['echo hi'],
    workingDir: '/srv',
    restartPolicy: 'OnFailure',
    imagePullPolicy: 'Never',
    nodeSelector: { zone: 'eu' },
    backoff: { maxMs: 500 },
    terminationGracePeriodSeconds: 0
  }, { source: 's', now: 0 })
  assert.is(spec.id, 'shop/hello')
  assert.is(spec.replicas, 4)
  assert.equal(spec.nodeSelector, { zone: 'eu' })
  const c = spec.container
  assert.equal(c?.command, ['sh', '-c'])
  assert.equal(c?.args, ['echo hi'])
  assert.is(c?.workingDir, '/srv')
  assert.is(c?.restartPolicy, 'OnFailure')
  assert.is(c?.imagePullPolicy, 'Never')
  assert.is(c?.terminationGracePeriodSeconds, 0)
  // A ceiling below the default first delay lowers the first delay too.
  assert.equal(c?.backoff, { initialMs: 500, maxMs: 500, resetAfterMs: 600_000 })
  assert.throws(() => toWorkloadSpec({ ...box(), image: 'Bad Image' }, { source: 'x.yaml', now: 0 }), (err: Error) => err instanceof InvalidDefinitionError && /^x\.yaml: image:/.test(err.message))
})

test.run()
