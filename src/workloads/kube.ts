/**
 * Kubernetes manifests BeeMesh runs as container workloads: a `v1 Pod` or an
 * `apps/v1 Deployment`, with one container per pod. parseKubeManifest turns
 * one into the ContainerDefinition that `defineWorkload({ kind: 'container' })`
 * would declare, so toWorkloadSpec treats both alike.
 *
 * Fields Kubernetes has but BeeMesh does not honour (probes, volumes,
 * security contexts…) are refused by name rather than dropped, so that a
 * manifest never means less here than it says; misspelt fields get a "did you
 * mean" hint. Every failure is an InvalidManifestError whose message is one
 * line: `<source>: <field path>: <problem>`.
 *
 * The schema helpers come from schema.ts; manifest.ts's parseAnyManifest
 * calls parseKubeManifest.
 */
import * as z from 'zod/mini'
import {
  atPath, containerFieldSchemas, DEFAULTS, describeIssues, expected, integer, label, MAX_BACKOFF_MS, normaliseEnv, normalisePorts,
  repeatedEnvVar, repeatedPort, requestAboveLimit, resourcesSchema, stringMap, suggestField
} from './schema.js'
import { InvalidManifestError } from './errors.js'
import type { ContainerDefinition, RestartBackoff } from './types.js'

export const KUBE_KINDS = ['Pod', 'Deployment'] as const
export type KubeKind = typeof KUBE_KINDS[number]

export const API_VERSIONS: Readonly<Record<KubeKind, string>> = { Pod: 'v1', Deployment: 'apps/v1' }

/** Annotation setting the first restart delay (`backoff.initialMs`): `"200ms"`, `"5s"`, `"1m"`. */
export const BACKOFF_ANNOTATION = 'beemesh.io/restart-backoff'
/** Annotation setting the longest restart delay (`backoff.maxMs`). */
export const BACKOFF_MAX_ANNOTATION = 'beemesh.io/restart-backoff-max'
const ANNOTATIONS = [BACKOFF_ANNOTATION, BACKOFF_MAX_ANNOTATION]
const ANNOTATION_PREFIX = 'beemesh.io/'

const NOT_SUPPORTED = 'not supported by BeeMesh; remove it'
const MAPPING_EXPECTED = 'a mapping with apiVersion, kind, metadata and spec'

/** The objects of a manifest whose fields are checked by name. */
type Context = 'manifest' | 'metadata' | 'templateMetadata' | 'deploymentSpec' | 'selector' | 'template' | 'podSpec' | 'container' | 'env' | 'port' | 'resources' | 'resourceList'

interface ContextFields {
  /** The fields BeeMesh reads: "did you mean" suggests these. */
  known: readonly string[]
  /** Kubernetes fields BeeMesh refuses, with the problem to report. */
  refused: Readonly<Record<string, string>>
  /** The problem for any other field (default: unknown field). */
  other?: string
}

function refuse (fields: readonly string[], problem = NOT_SUPPORTED): Record<string, string> {
  return Object.fromEntries(fields.map(f => [f, problem]))
}

/**
 * The fields of each object, built on first use (a process that reads no
 * Kubernetes manifest never builds them).
 */
function buildFields (): Readonly<Record<Context, ContextFields>> {
  const objectMetaRefused = refuse(['generateName', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'ownerReferences', 'finalizers', 'managedFields', 'selfLink'])
  return {
    manifest: {
      known: ['apiVersion', 'kind', 'metadata', 'spec'],
      refused: { status: 'not accepted in a manifest (Kubernetes reports it); remove it' }
    },
    metadata: { known: ['name', 'namespace', 'labels', 'annotations'], refused: objectMetaRefused },
    templateMetadata: {
      known: ['name', 'labels', 'annotations'],
      refused: { ...objectMetaRefused, namespace: 'not supported in a pod template; set metadata.namespace of the Deployment' }
    },
    deploymentSpec: {
      known: ['replicas', 'selector', 'template'],
      refused: refuse(['strategy', 'minReadySeconds', 'revisionHistoryLimit', 'progressDeadlineSeconds', 'paused'])
    },
    selector: { known: ['matchLabels'], refused: { matchExpressions: 'not supported by BeeMesh; select with matchLabels' } },
    template: { known: ['metadata', 'spec'], refused: {} },
    podSpec: {
      known: ['containers', 'restartPolicy', 'nodeSelector', 'terminationGracePeriodSeconds'],
      refused: {
        ...refuse([
          'activeDeadlineSeconds', 'dnsPolicy', 'dnsConfig', 'serviceAccountName', 'serviceAccount', 'automountServiceAccountToken', 'nodeName',
          'hostNetwork', 'hostPID', 'hostIPC', 'shareProcessNamespace', 'securityContext', 'imagePullSecrets', 'hostname', 'subdomain', 'affinity',
          'schedulerName', 'tolerations', 'hostAliases', 'priorityClassName', 'priority', 'readinessGates', 'runtimeClassName', 'enableServiceLinks',
          'preemptionPolicy', 'overhead', 'topologySpreadConstraints', 'setHostnameAsFQDN', 'os', 'hostUsers', 'schedulingGates', 'resourceClaims', 'resources'
        ]),
        ...refuse(['volumes'], 'not supported by BeeMesh (containers get no volumes yet); remove it'),
        ...refuse(['initContainers', 'ephemeralContainers'], 'not supported by BeeMesh (one container per pod for now); remove it')
      }
    },
    container: {
      known: ['name', 'image', 'command', 'args', 'env', 'ports', 'workingDir', 'imagePullPolicy', 'resources'],
      refused: {
        ...refuse([
          'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'terminationMessagePath', 'terminationMessagePolicy', 'securityContext',
          'stdin', 'stdinOnce', 'tty', 'resizePolicy', 'restartPolicyRules'
        ]),
        ...refuse(['volumeMounts', 'volumeDevices'], 'not supported by BeeMesh (containers get no volumes yet); remove it'),
        envFrom: 'not supported by BeeMesh; list the variables in env',
        restartPolicy: 'not supported on a container; set the pod\'s spec.restartPolicy'
      }
    },
    env: { known: ['name', 'value'], refused: { valueFrom: 'not supported by BeeMesh (no secrets, config maps or field references); give the value itself' } },
    port: { known: ['containerPort', 'hostPort', 'protocol', 'name'], refused: refuse(['hostIP']) },
    resources: { known: ['requests', 'limits'], refused: refuse(['claims']) },
    resourceList: { known: ['cpu', 'memory'], refused: {}, other: 'not supported by BeeMesh (only cpu and memory); remove it' }
  }
}

let fieldTables: ReturnType<typeof buildFields> | undefined

/** Which object of a `kind` manifest `path` leads to. */
function contextOf (kind: KubeKind, path: ReadonlyArray<PropertyKey>): Context | undefined {
  const last = path[path.length - 1]
  const parent = path[path.length - 2]
  if (last === undefined) return 'manifest'
  if (typeof last === 'number') return parent === 'containers' ? 'container' : parent === 'env' ? 'env' : parent === 'ports' ? 'port' : undefined
  switch (last) {
    case 'metadata': return path.length === 1 ? 'metadata' : 'templateMetadata'
    case 'spec': return path.length === 1 && kind === 'Deployment' ? 'deploymentSpec' : 'podSpec'
    case 'selector': return 'selector'
    case 'template': return 'template'
    case 'resources': return 'resources'
    case 'requests': case 'limits': return 'resourceList'
    default: return undefined
  }
}

/** How describeIssues words the unknown fields of a `kind` manifest. */
function unknownFieldsIn (kind: KubeKind) {
  return (keys: readonly string[], path: ReadonlyArray<PropertyKey>): string => {
    const context = contextOf(kind, path)
    fieldTables ??= buildFields()
    const own: ContextFields = context != null ? fieldTables[context] : { known: [], refused: {} }
    const key = keys[0] ?? ''
    const hint = suggestField(key, own.known)
    const problem = Object.hasOwn(own.refused, key)
      ? own.refused[key] ?? NOT_SUPPORTED
      : hint != null ? `unknown field (did you mean "${hint}"?)` : own.other ?? 'unknown field'
    const line = atPath([...path, key], problem)
    return keys.length > 1 ? `${line}; also not accepted: ${keys.slice(1).join(', ')}` : line
  }
}

function buildSchemas () {
  const c = containerFieldSchemas()
  const resources = resourcesSchema()
  const container = z.strictObject({
    name: label(),
    image: c.image,
    command: z.optional(c.command),
    args: z.optional(c.args),
    env: z.optional(z.array(c.envVar, { error: expected('a list of { name, value }') })),
    ports: z.optional(z.array(c.port, { error: expected('a list of { containerPort, hostPort?, protocol?, name? }') })),
    workingDir: z.optional(c.workingDir),
    imagePullPolicy: z.optional(c.imagePullPolicy),
    resources: z.optional(z.strictObject({
      requests: z.optional(resources),
      limits: z.optional(resources)
    }, { error: expected('an object with requests and/or limits') }))
  }, { error: expected('a container: an object with name, image and optional command, args, env, ports, resources') })
  // The count is checked first, so that a second container is refused as
  // such rather than for its fields.
  const containers = z.pipe(
    z.array(z.unknown(), { error: expected('a list of one container') }).check(
      z.minLength(1, { error: 'expected one container, got an empty list' }),
      z.maxLength(1, { error: issue => `BeeMesh runs one container per pod for now; got ${Array.isArray(issue.input) ? issue.input.length : 'more'}` })
    ),
    z.array(container)
  )
  const podSpec = z.strictObject({
    containers,
    restartPolicy: z.optional(c.restartPolicy),
    nodeSelector: z.optional(stringMap('label')),
    terminationGracePeriodSeconds: z.optional(c.terminationGracePeriodSeconds)
  }, { error: expected('a pod spec: an object with containers') })
  const labels = z.optional(stringMap('label'))
  const annotations = z.optional(stringMap('annotation'))
  const metadata = z.strictObject({ name: label(), namespace: z.optional(label()), labels, annotations }, {
    error: expected('an object with name and optional namespace, labels and annotations')
  })
  const pod = z.strictObject({
    apiVersion: z.literal(API_VERSIONS.Pod, { error: expected(`"${API_VERSIONS.Pod}" for a Pod`) }),
    kind: z.literal('Pod'),
    metadata,
    spec: podSpec
  }, { error: expected(MAPPING_EXPECTED) })
  const deployment = z.strictObject({
    apiVersion: z.literal(API_VERSIONS.Deployment, { error: expected(`"${API_VERSIONS.Deployment}" for a Deployment`) }),
    kind: z.literal('Deployment'),
    metadata,
    spec: z.strictObject({
      replicas: z.optional(integer(1, 100)),
      selector: z.strictObject({ matchLabels: stringMap('label') }, { error: expected('an object with matchLabels matching spec.template.metadata.labels') }),
      template: z.strictObject({
        metadata: z.optional(z.strictObject({ name: z.optional(label()), labels, annotations }, { error: expected('an object with labels and optional name and annotations') })),
        spec: podSpec
      }, { error: expected('a pod template: an object with metadata and spec') })
    }, { error: expected('an object with replicas, selector and template') })
  }, { error: expected(MAPPING_EXPECTED) })
  return { pod, deployment }
}

let schemas: ReturnType<typeof buildSchemas> | undefined

type PodManifest = z.output<ReturnType<typeof buildSchemas>['pod']>
type DeploymentManifest = z.output<ReturnType<typeof buildSchemas>['deployment']>
type PodSpec = PodManifest['spec']
type Path = ReadonlyArray<PropertyKey>

/** Refuses the manifest `source` for the field at `path`. */
function invalid (source: string, path: Path, problem: string): InvalidManifestError {
  return new InvalidManifestError(source, atPath(path, problem))
}

const DURATION = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m)$/
const UNIT_MS = { ms: 1, s: 1000, m: 60_000 } as const
const DURATION_EXPECTED = 'a duration such as "200ms", "5s" or "1m"'

/** `"200ms"` → 200, `"1.5s"` → 1500, `"1m"` → 60000. */
function durationMs (text: string, path: Path, source: string): number {
  const m = DURATION.exec(text.trim())
  if (m == null) throw invalid(source, path, expected(DURATION_EXPECTED)({ input: text }))
  const ms = Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS])
  if (ms < 1 || ms > MAX_BACKOFF_MS) throw invalid(source, path, expected(`a duration from 1ms to ${MAX_BACKOFF_MS / 60_000}m`)({ input: text }))
  return ms
}

/**
 * The restart delays the `beemesh.io/` annotations set, from the manifest's
 * annotations and then its pod template's (which win). Other `beemesh.io/`
 * annotations are refused, as likely typos; the rest are left alone.
 */
function backoffFrom (sources: ReadonlyArray<[Path, Record<string, string> | undefined]>, source: string): Partial<RestartBackoff> | undefined {
  const found = new Map<string, { path: Path, text: string, ms: number }>()
  for (const [base, annotations] of sources) {
    for (const [key, text] of Object.entries(annotations ?? {})) {
      if (!key.startsWith(ANNOTATION_PREFIX)) continue
      const path = [...base, key]
      if (!ANNOTATIONS.includes(key)) {
        const hint = suggestField(key, ANNOTATIONS)
        throw invalid(source, path, `unknown BeeMesh annotation${hint != null ? ` (did you mean "${hint}"?)` : `; expected ${ANNOTATIONS.map(a => `"${a}"`).join(' or ')}`}`)
      }
      found.set(key, { path, text, ms: durationMs(text, path, source) })
    }
  }
  const initial = found.get(BACKOFF_ANNOTATION)
  const max = found.get(BACKOFF_MAX_ANNOTATION)
  if (initial == null && max == null) return undefined
  if (initial != null && initial.ms > (max?.ms ?? DEFAULTS.backoff.maxMs)) {
    const limit = max != null ? `${BACKOFF_MAX_ANNOTATION} (${JSON.stringify(max.text)})` : `the longest delay (${DEFAULTS.backoff.maxMs / 60_000}m by default; raise it with ${BACKOFF_MAX_ANNOTATION})`
    throw invalid(source, initial.path, `${JSON.stringify(initial.text)} is more than ${limit}`)
  }
  return { ...(initial != null ? { initialMs: initial.ms } : {}), ...(max != null ? { maxMs: max.ms } : {}) }
}

/** `value` without its undefined fields, so that definitions compare and serialise cleanly. */
function defined<T extends object> (value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

/** The definition of a pod spec at `specPath`, after the checks that span fields. */
function fromPodSpec (spec: PodSpec, specPath: Path, fields: { name: string, namespace?: string, replicas?: number, backoff?: Partial<RestartBackoff> }, source: string): ContainerDefinition {
  const container = spec.containers[0]
  if (container == null) throw invalid(source, [...specPath, 'containers'], 'expected one container, got an empty list')
  const containerPath = [...specPath, 'containers', 0]
  const env = container.env != null ? normaliseEnv(container.env) : undefined
  const repeatedEnv = repeatedEnvVar(env ?? [])
  if (repeatedEnv != null) throw invalid(source, [...containerPath, 'env', repeatedEnv.index, 'name'], repeatedEnv.problem)
  const port = repeatedPort(normalisePorts(container.ports))
  if (port != null) throw invalid(source, [...containerPath, 'ports', port.index], port.problem)
  const { requests, limits } = container.resources ?? {}
  const over = requestAboveLimit(requests, limits)
  if (over != null) {
    throw invalid(source, [...containerPath, 'resources', 'requests', over.resource], `the request ${over.request} is more than the limit ${over.limit}; a request cannot exceed its limit`)
  }
  return defined<ContainerDefinition>({
    name: fields.name,
    kind: 'container',
    namespace: fields.namespace,
    replicas: fields.replicas,
    image: container.image,
    command: container.command,
    args: container.args,
    env,
    ports: container.ports?.map(p => defined(p)),
    workingDir: container.workingDir,
    restartPolicy: spec.restartPolicy,
    imagePullPolicy: container.imagePullPolicy,
    limits: limits != null ? defined(limits) : undefined,
    resources: requests != null ? defined(requests) : undefined,
    nodeSelector: spec.nodeSelector,
    backoff: fields.backoff,
    terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds
  })
}

function fromPod ({ metadata, spec }: PodManifest, source: string): ContainerDefinition {
  const backoff = backoffFrom([[['metadata', 'annotations'], metadata.annotations]], source)
  return fromPodSpec(spec, ['spec'], { name: metadata.name, namespace: metadata.namespace, backoff }, source)
}

function fromDeployment ({ metadata, spec }: DeploymentManifest, source: string): ContainerDefinition {
  const { matchLabels } = spec.selector
  const templateLabels = spec.template.metadata?.labels ?? {}
  if (Object.keys(matchLabels).length === 0) throw invalid(source, ['spec', 'selector', 'matchLabels'], 'empty selector is invalid for a Deployment; expected at least one label')
  const missing = Object.entries(matchLabels).find(([key, value]) => templateLabels[key] !== value)
  if (missing != null) {
    const [key, value] = missing
    throw invalid(source, ['spec', 'selector'], `selector does not match template labels (spec.template.metadata.labels has no ${key}: ${JSON.stringify(value)})`)
  }
  const { restartPolicy } = spec.template.spec
  if (restartPolicy != null && restartPolicy !== 'Always') {
    throw invalid(source, ['spec', 'template', 'spec', 'restartPolicy'], expected('"Always" (the only restart policy a Deployment allows)')({ input: restartPolicy }))
  }
  const backoff = backoffFrom([
    [['metadata', 'annotations'], metadata.annotations],
    [['spec', 'template', 'metadata', 'annotations'], spec.template.metadata?.annotations]
  ], source)
  return fromPodSpec(spec.template.spec, ['spec', 'template', 'spec'], { name: metadata.name, namespace: metadata.namespace, replicas: spec.replicas ?? 1, backoff }, source)
}

/**
 * Validates a parsed Kubernetes manifest, `apiVersion: v1, kind: Pod` or
 * `apiVersion: apps/v1, kind: Deployment`, and returns the container
 * definition it declares: metadata.name and namespace; the one container's
 * image, command, args, env, ports, workingDir, imagePullPolicy and resources
 * (requests → `resources`, limits → `limits`); the pod's restartPolicy,
 * nodeSelector and terminationGracePeriodSeconds; a Deployment's replicas
 * (default 1); restart delays from the `beemesh.io/restart-backoff` and
 * `beemesh.io/restart-backoff-max` annotations. A Deployment's
 * selector.matchLabels must match its template's labels, and its restart
 * policy must be Always, as Kubernetes requires. `source` names the manifest
 * in errors. Throws InvalidManifestError.
 */
export function parseKubeManifest (value: unknown, source: string): ContainerDefinition {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidManifestError(source, `expected ${MAPPING_EXPECTED}`)
  const kind = (value as { kind?: unknown }).kind
  if (kind !== 'Pod' && kind !== 'Deployment') throw new InvalidManifestError(source, atPath(['kind'], expected('"Pod" or "Deployment"')({ input: kind })))
  schemas ??= buildSchemas()
  const wording = { unknownFields: unknownFieldsIn(kind) }
  if (kind === 'Pod') {
    const result = schemas.pod.safeParse(value)
    if (!result.success) throw new InvalidManifestError(source, describeIssues(result.error.issues, wording))
    return fromPod(result.data, source)
  }
  const result = schemas.deployment.safeParse(value)
  if (!result.success) throw new InvalidManifestError(source, describeIssues(result.error.issues, wording))
  return fromDeployment(result.data, source)
}
