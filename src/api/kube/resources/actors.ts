/**
 * BeeMesh's own kinds in group beemesh.io/v1: `Actor` (a stateless workload)
 * and `Machine` (a stateful one). Their `spec` is the Actor manifest's
 * (`module` plus optional overrides); `spec.module` is a path on the node that
 * serves the request, resolved against its working directory, and bundled there.
 */
import { join } from 'node:path'
import type { WorkloadStatus } from '../../../actors/workload-runtime.js'
import type { MachineStateReport } from '../../../actors/state-protocol.js'
import { actorManifest, MANIFEST_API_VERSION, MANIFEST_KIND } from '../../../workloads/define.js'
import { BundleError, InvalidDefinitionError, InvalidManifestError, WorkloadFileNotFoundError } from '../../../workloads/errors.js'
import type { WorkloadSpec } from '../../../workloads/types.js'
import { badRequest, invalid } from '../errors.js'
import { age, type KubeObject, type TableColumn } from '../table.js'
import { causeOf } from './create.js'

export type ActorKind = 'Actor' | 'Machine'
export const GROUP = 'beemesh.io'

/** What bundling a module gives: a spec and its artifact (bundleWorkload, injected). */
export type Bundle = (entry: string, opts: { overrides: Record<string, unknown>, source: string }) => Promise<{ spec: Omit<WorkloadSpec, 'createdAt'>, code: Uint8Array }>

/** Validates and bundles a posted Actor or Machine; 400 for another kind or namespace, 422 naming the field. */
export async function actorSpecFromObject (body: unknown, kind: ActorKind, namespace: string, now: number, bundle: Bundle, cwd = process.cwd()): Promise<{ spec: WorkloadSpec, artifact: Uint8Array }> {
  if (typeof body !== 'object' || body == null || Array.isArray(body)) throw badRequest(`the request body must be a ${kind} object`)
  const o = body as Record<string, unknown>
  if (o.kind !== kind) throw badRequest(`kind: the object's kind ${JSON.stringify(o.kind ?? '')} does not match the resource (expected "${kind}")`)
  if (o.apiVersion !== MANIFEST_API_VERSION) throw badRequest(`apiVersion: ${JSON.stringify(o.apiVersion ?? '')} is not served for ${kind}; expected "${MANIFEST_API_VERSION}"`)
  const meta = (typeof o.metadata === 'object' && o.metadata != null ? o.metadata : {}) as Record<string, unknown>
  const name = typeof meta.name === 'string' ? meta.name : ''
  if (meta.namespace != null && meta.namespace !== namespace) throw badRequest(`metadata.namespace: the namespace of the provided object (${JSON.stringify(meta.namespace)}) does not match the namespace sent on the request (${JSON.stringify(namespace)})`)
  if (name === '') throw invalid(kind, '', [{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name is required' }], GROUP)
  // The Actor manifest's checks, on its fields (labels and annotations are kept aside).
  const { status: _s, ...rest } = o
  const value = { apiVersion: MANIFEST_API_VERSION, kind: MANIFEST_KIND, metadata: { name, namespace }, spec: rest.spec }
  try {
    const manifest = actorManifest(value, join(cwd, `${kind.toLowerCase()}.yaml`))
    const bundled = await bundle(manifest.module, { overrides: manifest.overrides as Record<string, unknown>, source: manifest.module })
    const want = kind === 'Machine' ? 'stateful' : 'stateless'
    if (bundled.spec.kind !== want) {
      throw invalid(kind, name, [{ reason: 'FieldValueInvalid', field: 'spec.module', message: `the module defines a ${bundled.spec.kind} workload; a ${kind} needs a ${want} one (use kind ${kind === 'Machine' ? 'Actor' : 'Machine'})` }], GROUP)
    }
    const stored = { ...rest, metadata: { ...meta, namespace } }
    for (const key of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields']) delete (stored.metadata as Record<string, unknown>)[key]
    const labels = meta.labels as Record<string, string> | undefined
    return {
      spec: { ...bundled.spec, createdAt: now, kubeKind: kind, manifest: JSON.stringify(stored), ...(labels != null && Object.keys(labels).length > 0 ? { labels } : {}) },
      artifact: bundled.code
    }
  } catch (err) {
    if (err instanceof InvalidManifestError || err instanceof InvalidDefinitionError) throw invalid(kind, name, [causeOf(err.detail)], GROUP)
    if (err instanceof WorkloadFileNotFoundError || err instanceof BundleError) throw invalid(kind, name, [{ reason: 'FieldValueInvalid', field: 'spec.module', message: err.message }], GROUP)
    throw err
  }
}

function manifestOf (w: WorkloadStatus): { metadata?: Record<string, unknown>, spec?: unknown } {
  try { return w.manifest != null ? JSON.parse(w.manifest) as never : {} } catch { return {} }
}

/** A stateless workload as an Actor, a stateful one as a Machine (with `state` when it was read). */
export function toActor (w: WorkloadStatus, state?: MachineStateReport): KubeObject {
  const m = manifestOf(w)
  const kind: ActorKind = w.kind === 'stateful' ? 'Machine' : 'Actor'
  return {
    apiVersion: `${GROUP}/v1`,
    kind,
    metadata: { ...m.metadata, name: w.name, namespace: w.namespace, uid: w.id, resourceVersion: '', generation: w.epoch, creationTimestamp: new Date(w.createdAt).toISOString(), ...(w.labels != null ? { labels: w.labels } : {}) },
    spec: m.spec ?? { replicas: w.replicas, topics: w.topics },
    status: {
      phase: w.status,
      replicas: w.replicas,
      readyReplicas: w.ready,
      epoch: w.epoch,
      nodes: [...new Set(w.placement.map(p => p.peerId))],
      ...(w.output !== undefined ? { output: w.output } : {}),
      ...(state != null ? { state: state.value, context: state.context, owner: state.owner, seq: state.seq, machineStatus: state.status, ...(state.error != null ? { error: state.error } : {}) } : {})
    }
  }
}

type ActorStatus = { phase: string, replicas: number, readyReplicas: number, epoch: number }

export const ACTOR_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Ready', type: 'string', priority: 0, description: 'Running of desired replicas.', cell: o => { const s = o.status as ActorStatus; return `${s.readyReplicas}/${s.replicas}` } },
  { name: 'Status', type: 'string', priority: 0, description: 'Workload status.', cell: o => (o.status as ActorStatus).phase },
  { name: 'Epoch', type: 'integer', priority: 0, description: 'Placement epoch.', cell: o => (o.status as ActorStatus).epoch },
  { name: 'Age', type: 'string', priority: 0, description: 'Time since creation.', cell: (o, now) => age(o.metadata.creationTimestamp, now) }
]
