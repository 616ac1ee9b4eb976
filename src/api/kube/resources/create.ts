/**
 * A Pod or Deployment posted to the Kubernetes API, turned into the
 * WorkloadSpec of a container workload with the checks `beemesh apply` makes
 * (src/workloads/kube.ts): a field it refuses is a 422 Invalid naming the
 * field. Pure apart from reading `now`.
 */
import { parseKubeManifest } from '../../../workloads/kube.js'
import { toWorkloadSpec } from '../../../workloads/spec.js'
import { InvalidDefinitionError, InvalidManifestError, InvalidQuantityError } from '../../../workloads/errors.js'
import type { WorkloadSpec } from '../../../workloads/types.js'
import { badRequest, invalid, type StatusCause } from '../errors.js'

export type CreatableKind = 'Pod' | 'Deployment'
const API_VERSION: Record<CreatableKind, string> = { Pod: 'v1', Deployment: 'apps/v1' }

/** What kubectl adds that carries no meaning here: dropped before validation. */
function withoutClientNoise (o: Record<string, unknown>): Record<string, unknown> {
  const { status: _status, ...rest } = o
  const metadata = { ...(rest.metadata as Record<string, unknown> | undefined) }
  if (metadata.creationTimestamp === null) delete metadata.creationTimestamp
  const annotations = { ...(metadata.annotations as Record<string, string> | undefined) }
  for (const key of Object.keys(annotations)) if (key.startsWith('kubectl.kubernetes.io/') || key.startsWith('deployment.kubernetes.io/')) delete annotations[key]
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations
  else delete metadata.annotations
  // kubectl create deployment … -o yaml writes `strategy: {}` and a null template creationTimestamp.
  const spec = rest.spec
  if (typeof spec === 'object' && spec != null && !Array.isArray(spec)) {
    const copy = { ...(spec as Record<string, unknown>) }
    if (isEmptyObject(copy.strategy)) delete copy.strategy
    const template = copy.template as { metadata?: Record<string, unknown> } | undefined
    if (template?.metadata?.creationTimestamp === null) {
      const { creationTimestamp: _c, ...templateMeta } = template.metadata
      copy.template = { ...template, metadata: templateMeta }
    }
    return { ...rest, metadata, spec: copy }
  }
  return { ...rest, metadata }
}

function isEmptyObject (v: unknown): boolean {
  return typeof v === 'object' && v != null && !Array.isArray(v) && Object.keys(v).length === 0
}

/** Fields the server sets: not kept in the manifest (a PATCH works on a GET's output). */
const SERVER_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'ownerReferences']

function stripServerFields (o: Record<string, unknown>): Record<string, unknown> {
  const metadata = { ...(o.metadata as Record<string, unknown>) }
  for (const key of SERVER_METADATA) delete metadata[key]
  return { ...o, metadata }
}

/** The object's name, for messages (before it is validated). */
export function nameOf (body: unknown): string {
  const name = (body as { metadata?: { name?: unknown } } | null)?.metadata?.name
  return typeof name === 'string' ? name : ''
}

/**
 * Validates `body` as a `kind` in `namespace` (the request path's) and returns
 * its spec. 400 for a body of another kind or namespace, 422 for invalid fields.
 */
export function specFromObject (body: unknown, kind: CreatableKind, namespace: string, now: number): WorkloadSpec {
  if (typeof body !== 'object' || body == null || Array.isArray(body)) throw badRequest(`the request body must be a ${kind} object`)
  const o = body as Record<string, unknown>
  if (o.kind !== kind) throw badRequest(`kind: the object's kind ${JSON.stringify(o.kind ?? '')} does not match the resource (expected "${kind}")`)
  if (o.apiVersion !== API_VERSION[kind]) throw badRequest(`apiVersion: ${JSON.stringify(o.apiVersion ?? '')} is not served for ${kind}; expected "${API_VERSION[kind]}"`)
  const metadata = o.metadata
  if (typeof metadata !== 'object' || metadata == null || Array.isArray(metadata)) throw invalid(kind, '', [{ reason: 'FieldValueRequired', field: 'metadata.name', message: 'Required value: name is required' }])
  const ns = (metadata as { namespace?: unknown }).namespace
  if (ns != null && ns !== namespace) throw badRequest(`metadata.namespace: the namespace of the provided object (${JSON.stringify(ns)}) does not match the namespace sent on the request (${JSON.stringify(namespace)})`)
  const cleaned = withoutClientNoise(stripServerFields({ ...o, metadata: { ...metadata, namespace } }))
  const name = nameOf(o)
  try {
    const def = parseKubeManifest(cleaned, kind)
    const spec = toWorkloadSpec(def, { source: `kubernetes API (${kind})`, now })
    const m = cleaned.metadata as { labels?: Record<string, string> }
    const template = (cleaned.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template
    const labels = kind === 'Deployment' ? template?.metadata?.labels : m.labels
    const { status: _status, ...manifest } = o
    const kept = { ...manifest, metadata: { ...(manifest.metadata as Record<string, unknown>), namespace } }
    // GET shows spec.replicas from the workload (kubectl scale changes only that), the rest from this text.
    return { ...spec, ...(labels != null && Object.keys(labels).length > 0 ? { labels } : {}), kubeKind: kind, manifest: JSON.stringify(stripServerFields(kept)) }
  } catch (err) {
    if (err instanceof InvalidManifestError || err instanceof InvalidDefinitionError) throw invalid(kind, name, [causeOf(err.detail)])
    if (err instanceof InvalidQuantityError) throw invalid(kind, name, [{ reason: 'FieldValueInvalid', field: 'spec', message: err.message }])
    throw err
  }
}

/** `spec.replicas: expected …` → field spec.replicas, message `expected …`. */
export function causeOf (detail: string): StatusCause {
  const m = /^([A-Za-z0-9_.[\]/"'-]+): (.*)$/s.exec(detail)
  if (m == null) return { reason: 'FieldValueInvalid', field: '', message: detail }
  const message = m[2]!
  const reason = /required|missing/i.test(message) ? 'FieldValueRequired' : /not supported|unknown field/i.test(message) ? 'FieldValueNotSupported' : 'FieldValueInvalid'
  return { reason, field: m[1]!, message }
}
