/**
 * BeeMesh's own kinds in group beemesh.io/v1: `Actor` (a stateless workload)
 * and `Machine` (a stateful one). Their `spec` is the Actor manifest's with
 * `artifact: sha256:<hex>` in place of `module`: the bundle, uploaded to the
 * mesh as `beemesh apply` sends it (`beemesh upload <module>`), read by its
 * hash. Nothing is read from the disk of the node that serves the request: a
 * `spec.module` path is refused.
 */
import type { WorkloadStatus } from '../../../workloads/views.js'
import type { MachineStateReport } from '../../../protocol/state.js'
import { actorManifest, MANIFEST_API_VERSION, MANIFEST_KIND } from '../../../workloads/manifest.js'
import { InvalidDefinitionError, InvalidManifestError } from '../../../workloads/errors.js'
import { ArtifactError } from '../../../store/errors.js'
import type { WorkloadSpec } from '../../../workloads/types.js'
import { badRequest, invalid } from '../errors.js'
import { age, type KubeObject, type TableColumn } from '../table.js'
import { causeOf } from './create.js'

export type ActorKind = 'Actor' | 'Machine'
export const GROUP = 'beemesh.io'

/**
 * The spec of an uploaded bundle, by its hex sha256, with `overrides` applied
 * (injected: the node reads it from its artifact store, fetching it from the
 * mesh when it is not stored there, and reads its definition back in a sandbox).
 * Throws ArtifactError when no member has it, InvalidDefinitionError for a bad definition.
 */
export type ReadArtifact = (sha256: string, opts: { overrides: Record<string, unknown>, source: string }) => Promise<{ spec: Omit<WorkloadSpec, 'createdAt'>, code: Uint8Array }>

const ARTIFACT_REF = /^(?:sha256:)?([0-9a-f]{64})$/
const UPLOAD_HINT = 'upload the module with `beemesh upload <module>` (it prints the object) and name its artifact in spec.artifact'

/** Validates a posted Actor or Machine and reads its uploaded bundle; 400 for another kind or namespace, 422 naming the field. */
export async function actorSpecFromObject (body: unknown, kind: ActorKind, namespace: string, now: number, readArtifact: ReadArtifact): Promise<{ spec: WorkloadSpec, artifact: Uint8Array }> {
  if (typeof body !== 'object' || body == null || Array.isArray(body)) throw badRequest(`the request body must be a ${kind} object`)
  const o = body as Record<string, unknown>
  if (o.kind !== kind) throw badRequest(`kind: the object's kind ${JSON.stringify(o.kind ?? '')} does not match the resource (expected "${kind}")`)
  if (o.apiVersion !== MANIFEST_API_VERSION) throw badRequest(`apiVersion: ${JSON.stringify(o.apiVersion ?? '')} is not served for ${kind}; expected "${MANIFEST_API_VERSION}"`)
  const meta = (typeof o.metadata === 'object' && o.metadata != null ? o.metadata : {}) as Record<string, unknown>
  const name = typeof meta.name === 'string' ? meta.name : ''
  if (meta.namespace != null && meta.namespace !== namespace) throw badRequest(`metadata.namespace: the namespace of the provided object (${JSON.stringify(meta.namespace)}) does not match the namespace sent on the request (${JSON.stringify(namespace)})`)
  if (name === '') throw invalid(kind, '', [{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name is required' }], GROUP)
  const fieldInvalid = (field: string, message: string): never => { throw invalid(kind, name, [{ reason: 'FieldValueInvalid', field, message }], GROUP) }
  const { status: _s, ...rest } = o
  const spec = typeof rest.spec === 'object' && rest.spec != null && !Array.isArray(rest.spec) ? rest.spec as Record<string, unknown> : undefined
  // The node serving the request bundles nothing of its own disk.
  if (spec != null && 'module' in spec) fieldInvalid('spec.module', `a path on the API node is not accepted; ${UPLOAD_HINT}`)
  const { artifact: ref, ...overrideFields } = spec ?? {}
  const sha256 = typeof ref === 'string' ? ARTIFACT_REF.exec(ref)?.[1] : undefined
  if (sha256 == null) {
    throw invalid(kind, name, [{ reason: ref == null ? 'FieldValueRequired' : 'FieldValueInvalid', field: 'spec.artifact', message: `${ref == null ? 'Required value' : `Invalid value: ${JSON.stringify(ref)}`}: expected sha256:<64 hex digits>; ${UPLOAD_HINT}` }], GROUP)
  }
  const source = `sha256:${sha256}`
  try {
    // The Actor manifest's checks on its overrides (its module field is not used: the code is the artifact).
    const value = { apiVersion: MANIFEST_API_VERSION, kind: MANIFEST_KIND, metadata: { name, namespace }, spec: { ...overrideFields, module: source } }
    const manifest = actorManifest(value, `${kind.toLowerCase()}.yaml`)
    const read = await readArtifact(sha256, { overrides: manifest.overrides as Record<string, unknown>, source })
    const want = kind === 'Machine' ? 'stateful' : 'stateless'
    if (read.spec.kind !== want) fieldInvalid('spec.artifact', `the artifact defines a ${read.spec.kind} workload; a ${kind} needs a ${want} one (use kind ${kind === 'Machine' ? 'Actor' : 'Machine'})`)
    const stored = { ...rest, metadata: { ...meta, namespace } }
    for (const key of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields']) delete (stored.metadata as Record<string, unknown>)[key]
    const labels = meta.labels as Record<string, string> | undefined
    return {
      spec: { ...read.spec, createdAt: now, kubeKind: kind, manifest: JSON.stringify(stored), ...(labels != null && Object.keys(labels).length > 0 ? { labels } : {}) },
      artifact: read.code
    }
  } catch (err) {
    if (err instanceof InvalidManifestError || err instanceof InvalidDefinitionError) throw invalid(kind, name, [causeOf(err.detail)], GROUP)
    if (err instanceof ArtifactError) fieldInvalid('spec.artifact', `${source} is not in the mesh (${err.message}); ${UPLOAD_HINT}`)
    throw err
  }
}

function manifestOf (w: WorkloadStatus): { metadata?: Record<string, unknown>, spec?: unknown } {
  try { return w.manifest != null ? JSON.parse(w.manifest) as { metadata?: Record<string, unknown>, spec?: unknown } : {} } catch { return {} }
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
