/** The pure parts of the Kubernetes API: Tables, ages, selectors, patches, Status mapping, objects of workloads. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { WorkloadNotFoundError, InvalidWorkloadError } from '../../src/actors/errors.js'
import type { WorkloadStatus } from '../../src/workloads/views.js'
import { HttpError } from '../../src/api/http.js'
import { invalid, notFound } from '../../src/api/kube/errors.js'
import { applyPatch, patchType } from '../../src/api/kube/patch.js'
import { causeOf, specFromObject } from '../../src/api/kube/resources/create.js'
import { POD_COLUMNS, toDeployment, toPods, toScale } from '../../src/api/kube/resources/workloads.js'
import { matches, parseSelector } from '../../src/api/kube/selectors.js'
import { toStatus } from '../../src/api/kube/status.js'
import { age, buildTable, tableVersion, wantsTable } from '../../src/api/kube/table.js'
import { KubeStatusError } from '../../src/api/kube/errors.js'
import { actorSpecFromObject, type ReadArtifact } from '../../src/api/kube/resources/actors.js'
import { ArtifactError } from '../../src/store/errors.js'

const NOW = Date.parse('2026-01-01T12:00:00Z')

function workload (over: Partial<WorkloadStatus> = {}): WorkloadStatus {
  return {
    id: 'default/web', name: 'web', namespace: 'default', kind: 'container', status: 'Running', replicas: 2, ready: 1, epoch: 3,
    placement: [
      { replica: 0, peerId: '12D3KooWA', epoch: 3, status: 'running', handled: 0, failures: 0, pod: { phase: 'Running', restarts: 2 } },
      { replica: 1, peerId: '12D3KooWB', epoch: 3, status: 'running', handled: 0, failures: 0, pod: { phase: 'CrashLoopBackOff', restarts: 5 } }
    ],
    topics: [], delivery: 'queue', artifact: undefined, createdAt: NOW - 90_000, updatedAt: NOW - 1_000,
    labels: { app: 'web' },
    ...over
  }
}

test('wantsTable and tableVersion read kubectl\'s Accept header', () => {
  const accept = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json'
  assert.ok(wantsTable(accept))
  assert.is(tableVersion(accept), 'v1')
  assert.is(tableVersion('application/json;as=Table;v=v1beta1;g=meta.k8s.io'), 'v1beta1')
  assert.not.ok(wantsTable('application/json'))
  assert.not.ok(wantsTable(undefined))
})

test('age follows kubectl\'s HumanDuration', () => {
  const at = (ms: number): string => age(new Date(NOW - ms).toISOString(), NOW)
  assert.is(at(45_000), '45s')
  assert.is(at(5 * 60_000 + 12_000), '5m12s')
  assert.is(at(42 * 60_000), '42m')
  assert.is(at(2 * 3_600_000 + 5 * 60_000), '125m')
  assert.is(at(5 * 3_600_000 + 5 * 60_000), '5h5m')
  assert.is(at(30 * 3_600_000), '30h')
  assert.is(at(4 * 86_400_000 + 5 * 3_600_000), '4d5h')
  assert.is(age(undefined, NOW), '<unknown>')
})

test('pods of a workload: <name>-<ordinal>, template labels, container state, and their Table row', () => {
  const pods = toPods(workload())
  assert.equal(pods.map(p => p.metadata.name), ['web-0', 'web-1'])
  assert.equal(pods[0]!.metadata.labels, { app: 'web' })
  assert.is((pods[1]!.spec as { nodeName: string }).nodeName, '12D3KooWB')
  const table = buildTable(pods, POD_COLUMNS, { now: NOW })
  assert.equal(table.columnDefinitions.map(c => c.name), ['Name', 'Ready', 'Status', 'Restarts', 'Age', 'IP', 'Node'])
  assert.equal(table.columnDefinitions.map(c => c.priority), [0, 0, 0, 0, 0, 1, 1])
  assert.equal(table.rows[0]!.cells, ['web-0', '1/1', 'Running', 2, '90s', '<none>', '12D3KooWA'])
  assert.equal(table.rows[1]!.cells, ['web-1', '0/1', 'CrashLoopBackOff', 5, '90s', '<none>', '12D3KooWB'])
  assert.equal((table.rows[0]!.object as { kind: string }).kind, 'PartialObjectMetadata')
  assert.equal(toPods(workload({ kubeKind: 'Pod', replicas: 1, placement: [workload().placement[0]!] })).map(p => p.metadata.name), ['web'])
  assert.equal(toPods(workload({ kind: 'stateless' })), [])
})

test('a workload as a Deployment: status counts and generation for rollout status; its Scale', () => {
  const d = toDeployment(workload())
  assert.is(d.metadata.generation, 3)
  assert.equal(d.status, { ...(d.status as object), observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1, unavailableReplicas: 1 })
  const exited = toDeployment(workload({ placement: [workload().placement[0]!, { ...workload().placement[1]!, status: 'starting', pod: undefined }] }))
  assert.is((exited.status as { availableReplicas: number }).availableReplicas, 1)
  assert.is((exited.status as { conditions: Array<{ type: string, status: string }> }).conditions.find(c => c.type === 'Available')?.status, 'False')
  assert.equal(toScale(d).spec, { replicas: 2 })
  assert.is((toScale(d).status as { selector: string }).selector, 'app=web')
})

test('label selectors: equality, sets, existence; bad keys are a 400', () => {
  const labels = { app: 'web', tier: 'front' }
  assert.ok(matches(parseSelector('app=web'), labels))
  assert.ok(matches(parseSelector('app==web,tier'), labels))
  assert.not.ok(matches(parseSelector('app!=web'), labels))
  assert.ok(matches(parseSelector('tier in (front, back),!canary'), labels))
  assert.not.ok(matches(parseSelector('tier notin (front)'), labels))
  assert.ok(matches(parseSelector(''), labels))
  try {
    parseSelector('bad key!=x')
    assert.unreachable()
  } catch (err) {
    assert.instance(err, KubeStatusError)
    assert.is((err as KubeStatusError).code, 400)
  }
})

test('patches: merge patch replaces lists, strategic merge merges containers by name', () => {
  const target = { spec: { replicas: 2, template: { spec: { containers: [{ name: 'a', image: 'x' }, { name: 'b', image: 'y' }] } } }, metadata: { labels: { a: '1', b: '2' } } }
  assert.equal(applyPatch(target, { spec: { replicas: 3 }, metadata: { labels: { b: null } } }, 'merge'), { ...target, spec: { ...target.spec, replicas: 3 }, metadata: { labels: { a: '1' } } })
  const strategic = applyPatch(target, { spec: { template: { spec: { '$setElementOrder/containers': [{ name: 'b' }, { name: 'a' }], containers: [{ name: 'a', image: 'z' }] } } } }, 'strategic') as typeof target
  assert.equal(strategic.spec.template.spec.containers, [{ name: 'b', image: 'y' }, { name: 'a', image: 'z' }])
  const merged = applyPatch(target, { spec: { template: { spec: { containers: [{ name: 'a', image: 'z' }] } } } }, 'merge') as typeof target
  assert.equal(merged.spec.template.spec.containers, [{ name: 'a', image: 'z' }])
  const deleted = applyPatch(target, { spec: { template: { spec: { containers: [{ name: 'b', $patch: 'delete' }] } } } }, 'strategic') as typeof target
  assert.equal(deleted.spec.template.spec.containers, [{ name: 'a', image: 'x' }])
  assert.is(patchType('application/strategic-merge-patch+json; charset=utf-8'), 'strategic')
  assert.throws(() => patchType('application/json-patch+json'), (err: KubeStatusError) => err.code === 415)
})

test('Status objects: codes and reasons of each failure, with field causes', () => {
  assert.equal(toStatus(notFound('deployments', 'web', 'apps')), { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'deployments.apps "web" not found', reason: 'NotFound', details: { group: 'apps', kind: 'deployments', name: 'web' }, code: 404 })
  const bad = toStatus(invalid('Deployment', 'web', [causeOf('spec.replicas: expected an integer from 1 to 100, got "two"')]))
  assert.is(bad.code, 422)
  assert.is(bad.message, 'Deployment "web" is invalid: spec.replicas: expected an integer from 1 to 100, got "two"')
  assert.equal(bad.details?.causes, [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message: 'expected an integer from 1 to 100, got "two"' }])
  assert.is(toStatus(new WorkloadNotFoundError('default/x')).code, 404)
  assert.is(toStatus(new InvalidWorkloadError('replicas: no')).code, 422)
  assert.is(toStatus(new HttpError(413, 'too big', 'RequestEntityTooLarge')).reason, 'RequestEntityTooLarge')
  assert.is(toStatus(new Error('boom')).code, 500)
})

test('specFromObject: a Deployment becomes a container spec with its labels and manifest; the wrong kind, namespace or fields are refused', () => {
  const body = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' } }, spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'busybox' }] } } } }
  const spec = specFromObject(body, 'Deployment', 'default', NOW)
  assert.is(spec.id, 'default/web')
  assert.is(spec.kind, 'container')
  assert.is(spec.replicas, 2)
  assert.equal(spec.labels, { app: 'web' })
  assert.is(spec.kubeKind, 'Deployment')
  assert.match(spec.manifest ?? '', 'last-applied-configuration')
  const code = (f: () => unknown): number => { try { f(); return 0 } catch (err) { return (err as KubeStatusError).code } }
  assert.is(code(() => specFromObject({ ...body, kind: 'Pod' }, 'Deployment', 'default', NOW)), 400)
  assert.is(code(() => specFromObject({ ...body, metadata: { name: 'web', namespace: 'other' } }, 'Deployment', 'default', NOW)), 400)
  assert.is(code(() => specFromObject({ ...body, spec: { ...body.spec, strategy: { type: 'Recreate' } } }, 'Deployment', 'default', NOW)), 422)
  // kubectl create … --dry-run=client -o yaml writes an empty strategy: dropped, not refused.
  assert.is(specFromObject({ ...body, spec: { ...body.spec, strategy: {} } }, 'Deployment', 'default', NOW).replicas, 2)
  assert.is(code(() => specFromObject([], 'Deployment', 'default', NOW)), 400)
})

test('an Actor or Machine names an uploaded artifact: a spec.module path is refused unread, a bad or unknown reference names spec.artifact', async () => {
  const sha = 'ab'.repeat(32)
  const reads: string[] = []
  const readArtifact: ReadArtifact = async (sha256, { overrides, source }) => {
    reads.push(sha256)
    if (sha256 !== sha) throw new ArtifactError(sha256, 'could not fetch from any provider (none found)')
    return { code: new Uint8Array([1]), spec: { id: 'default/t', name: 't', namespace: 'default', kind: 'stateful', topics: [], replicas: 1, resources: { cpuMillis: 0, memoryBytes: 0 }, nodeSelector: {}, delivery: 'queue', retries: 0, timeoutMs: 1000, memoryLimitMb: 64, source, artifact: { sha256, size: 1 }, ...overrides } as never }
  }
  const machine = (spec: unknown, kind: 'Machine' | 'Actor' = 'Machine'): unknown => ({ apiVersion: 'beemesh.io/v1', kind, metadata: { name: 't', labels: { app: 't' } }, spec })
  const refusal = async (body: unknown, kind: 'Machine' | 'Actor' = 'Machine'): Promise<{ code: number, field: string, message: string }> => {
    try {
      await actorSpecFromObject(body, kind, 'default', NOW, readArtifact)
    } catch (err) {
      const s = toStatus(err)
      return { code: s.code, field: s.details?.causes?.[0]?.field ?? '', message: s.message }
    }
    throw new Error('expected a refusal')
  }
  const byPath = await refusal(machine({ module: '/etc/passwd' }))
  assert.equal([byPath.code, byPath.field], [422, 'spec.module'])
  assert.match(byPath.message, 'a path on the API node is not accepted')
  assert.match(byPath.message, 'beemesh upload')
  assert.equal(reads, [], 'nothing is read for a spec.module')
  assert.equal((await refusal(machine({}))).field, 'spec.artifact')
  const bad = await refusal(machine({ artifact: 'sha256:nothex' }))
  assert.equal([bad.code, bad.field], [422, 'spec.artifact'])
  const unknown = await refusal(machine({ artifact: `sha256:${'cd'.repeat(32)}` }))
  assert.equal([unknown.code, unknown.field], [422, 'spec.artifact'])
  assert.match(unknown.message, 'is not in the mesh')
  const wrongKind = await refusal(machine({ artifact: `sha256:${sha}` }, 'Actor'), 'Actor')
  assert.equal([wrongKind.code, wrongKind.field], [422, 'spec.artifact'])
  assert.match(wrongKind.message, 'defines a stateful workload')
  const badOverride = await refusal(machine({ artifact: `sha256:${sha}`, replicas: 'two' }))
  assert.equal([badOverride.code, badOverride.field], [422, 'spec.replicas'])
  const { spec, artifact } = await actorSpecFromObject(machine({ artifact: sha, snapshotEvery: 5 }), 'Machine', 'default', NOW, readArtifact)
  assert.equal([spec.kubeKind, spec.source, spec.labels, spec.createdAt, (spec as { snapshotEvery?: number }).snapshotEvery, artifact.byteLength], ['Machine', `sha256:${sha}`, { app: 't' }, NOW, 5, 1])
})

test.run()
