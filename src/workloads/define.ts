/**
 * What a user module imports as `beemesh`: `defineWorkload`, plus the
 * validation of definitions and manifests shared by the CLI and the bundler.
 * Every failure is an InvalidDefinitionError or InvalidManifestError whose
 * message is one line: `<source>: <field path>: <problem>`.
 *
 * The schema helpers marked "shared with kube.ts" are exported for the
 * Kubernetes manifest parser; `beemesh` (src/index.ts) does not offer them.
 */
import { dirname, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import * as z from 'zod/mini'
import { InvalidDefinitionError, InvalidManifestError, InvalidQuantityError, NO_DEFAULT_EXPORT } from './errors.js'
import { KUBE_KINDS, parseKubeManifest } from './kube.js'
import { isMachine } from './machine.js'
import { parseCpu, parseMemory } from './quantities.js'
import type { ArtifactRef, CallHandler, ContainerDefinition, ContainerPort, ContainerSpec, Delivery, Durability, EnvVar, ImagePullPolicy, MachineLogic, ResourceQuantities, RestartBackoff, RestartPolicy, StatefulDefinition, StatelessDefinition, StatelessHandler, WorkloadDefinition, WorkloadSpec } from './types.js'

// Workload bundles resolve `beemesh` to this module, so it offers what the
// package entry (src/index.ts) offers to user code.
export { deadLetterTopic } from './types.js'
export { isMachine } from './machine.js'
export type { CallHandler, CallOptions, CallRequest, ContainerDefinition, ContainerPort, FetchResponse, ServiceDeclaration, Delivery, Durability, EnvVar, HandlerContext, ImagePullPolicy, MachineLogic, ResourceQuantities, RestartBackoff, RestartPolicy, StatefulDefinition, StatelessDefinition, StatelessHandler, TopicEvent, WorkloadDefinition, WorkloadIdentity } from './types.js'

export type StatelessFields = Omit<StatelessDefinition, 'handler' | 'onCall'>
export type StatefulFields = Omit<StatefulDefinition, 'machine'>
/** A definition without its handler or machine: what survives serialisation. */
export type DefinitionFields = StatelessFields | StatefulFields | ContainerDefinition

/** Fields a manifest may set on top of the module's definition. */
export type DefinitionOverrides = Partial<Pick<StatelessFields, 'name' | 'namespace' | 'topics' | 'replicas' | 'resources' | 'nodeSelector' | 'delivery' | 'retries' | 'timeoutMs'> & Pick<StatefulFields, 'durability' | 'snapshotEvery'>>

/** What parseAnyManifest finds in a manifest file: an Actor (naming a module) or a container workload (a Kubernetes Pod or Deployment). */
export type AnyManifest =
  | { type: 'actor', manifest: Manifest }
  | { type: 'container', definition: ContainerDefinition }

/** A parsed `apiVersion: beemesh.io/v1, kind: Actor` manifest. */
export interface Manifest {
  /** Absolute path of the workload module (spec.module, resolved against the manifest's directory). */
  module: string
  overrides: DefinitionOverrides
}

export const MANIFEST_API_VERSION = 'beemesh.io/v1'
export const MANIFEST_KIND = 'Actor'

/** Values `toWorkloadSpec` uses for fields a definition leaves out. */
export const DEFAULTS = {
  namespace: 'default',
  replicas: 1,
  cpu: '100m',
  memory: '64Mi',
  delivery: 'queue' as Delivery,
  retries: 2,
  timeoutMs: 5000,
  durability: 'replicated' as Durability,
  snapshotEvery: 100,
  /** Smallest worker heap a replica gets, whatever its memory request. */
  minMemoryLimitMb: 16,
  /** Container workloads: Kubernetes' default, start it again whenever it exits. */
  restartPolicy: 'Always' as RestartPolicy,
  /**
   * Container workloads. Kubernetes pulls `:latest` (or untagged) images
   * `Always`; BeeMesh nodes usually reach no registry and have their images
   * imported locally (`docker load`), where `Always` could only fail, so
   * every image is pulled only when the node lacks it.
   */
  imagePullPolicy: 'IfNotPresent' as ImagePullPolicy,
  /** Container workloads: seconds from SIGTERM to SIGKILL, as in Kubernetes. */
  terminationGracePeriodSeconds: 30,
  /**
   * Container workloads: restart delays. Kubernetes waits 10 s, doubling up to
   * 5 min, reset after 10 min of running; BeeMesh starts at 1 s so that a
   * container that fails once comes back quickly.
   */
  backoff: { initialMs: 1000, maxMs: 300_000, resetAfterMs: 600_000 } as Readonly<RestartBackoff>
}

const MEBIBYTE = 1024 * 1024
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const TOPIC_NAME = /^[A-Za-z0-9._~:-]{1,200}$/
const LABEL_DESCRIPTION = 'a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit)'
const STRING_IN_YAML = 'a string (quote numbers and booleans in YAML)'

/** An image reference as the engine takes it: `[registry[:port]/]path[:tag][@digest]`. */
const DOMAIN_COMPONENT = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?'
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const IMAGE_REFERENCE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*` +
  '(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$'
)
const IMAGE_MAX_LENGTH = 512
const IMAGE_DESCRIPTION = 'an image reference such as "busybox:1.36" or "registry.example.com/team/app@sha256:…" (lowercase repository, no spaces)'
/** Kubernetes' environment variable names (C identifiers, plus "-" and "."). */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/
const ENV_NAME_DESCRIPTION = 'an environment variable name (letters, digits, "_", "-" or ".", not starting with a digit)'
/** Kubernetes' port names (IANA service names). */
const PORT_NAME = /^(?=.{1,15}$)(?=[^a-z]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*$/
const PORT_NAME_DESCRIPTION = 'a port name (at most 15 lowercase letters, digits or "-", with at least one letter)'
const PORT_OBJECT_DESCRIPTION = '{ containerPort, hostPort?, protocol?, name? }'
/** Shared with kube.ts: the longest restart delay, 60 min. */
export const MAX_BACKOFF_MS = 3_600_000
const MAX_RESET_AFTER_MS = 86_400_000
const MAX_GRACE_PERIOD_SECONDS = 3600

/** How a rejected value is shown after "got": only scalars, which fit on one line. */
function shown (value: unknown): string | undefined {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value === null) return String(value)
  return undefined
}

/** Shared with kube.ts. A zod error function: `expected <what>, got <value>`, or `missing; expected <what>`. */
export function expected (what: string) {
  return (issue: { input?: unknown }): string => {
    if (issue.input === undefined) return `missing; expected ${what}`
    const got = shown(issue.input)
    return got == null ? `expected ${what}` : `expected ${what}, got ${got}`
  }
}

/** Shared with kube.ts. An integer from `min` to `max`; `what` names it in errors (default "an integer"). */
export function integer (min: number, max: number, what = 'an integer') {
  const error = expected(`${what} from ${min} to ${max}`)
  return z.int({ error }).check(z.minimum(min, { error }), z.maximum(max, { error }))
}

/** Shared with kube.ts. A DNS-1123 label: names and namespaces. */
export function label () {
  const error = expected(LABEL_DESCRIPTION)
  return z.string({ error }).check(z.regex(DNS_LABEL, { error }))
}

/** Shared with kube.ts. A CPU or memory quantity, with the message of the InvalidQuantityError it would throw. */
export function quantity (parse: (q: string | number) => number, what: string) {
  const problem = (value: unknown): string | undefined => {
    if (typeof value !== 'string' && typeof value !== 'number') return `expected a ${what} quantity (string or number)`
    try {
      parse(value)
      return undefined
    } catch (err) {
      if (err instanceof InvalidQuantityError) return err.message
      throw err
    }
  }
  return z.custom<string | number>(value => problem(value) == null, { error: issue => problem(issue.input) ?? `invalid ${what} quantity` })
}

/** Shared with kube.ts. An object of string values: node selectors, labels, annotations. */
export function stringMap (what: string) {
  return z.record(
    z.string(),
    z.string({ error: expected(`a string ${what} value (quote numbers and booleans in YAML)`) }),
    { error: expected(`an object mapping ${what} names to values`) }
  )
}

function topicsSchema () {
  const error = expected('a non-empty array of topic names')
  const topic = expected('a topic name (1 to 200 letters, digits or . _ ~ : -)')
  return z.array(z.string({ error: topic }).check(z.regex(TOPIC_NAME, { error: topic })), { error }).check(z.minLength(1, { error }))
}

/** Shared with kube.ts. CPU and/or memory, as requests or limits. */
export function resourcesSchema () {
  return z.strictObject({
    cpu: z.optional(quantity(parseCpu, 'CPU')),
    memory: z.optional(quantity(parseMemory, 'memory'))
  }, { error: expected('an object with cpu and/or memory') })
}

/** The optional fields a definition and a manifest's spec share. */
function sharedShape () {
  return {
    topics: topicsSchema(),
    replicas: integer(1, 100),
    resources: resourcesSchema(),
    nodeSelector: stringMap('label'),
    delivery: z.enum(['queue', 'fanout'], { error: expected('"queue" or "fanout"') }),
    retries: integer(0, 20),
    timeoutMs: integer(10, 600_000),
    durability: z.enum(['replicated', 'local'], { error: expected('"replicated" or "local"') }),
    snapshotEvery: integer(1, 100_000)
  }
}

/**
 * Shared with kube.ts: the container fields a definition and a Pod's
 * container (or pod spec) have in common, with the same checks.
 */
export function containerFieldSchemas () {
  const string = z.string({ error: expected(STRING_IN_YAML) })
  const stringList = z.array(string, { error: expected('a list of strings') })
  const imageError = expected(IMAGE_DESCRIPTION)
  const envNameError = expected(ENV_NAME_DESCRIPTION)
  const envName = z.string({ error: envNameError }).check(z.regex(ENV_NAME, { error: envNameError }))
  const portNameError = expected(PORT_NAME_DESCRIPTION)
  const workingDirError = expected('an absolute path such as "/app"')
  return {
    image: z.string({ error: imageError }).check(z.maxLength(IMAGE_MAX_LENGTH, { error: imageError }), z.regex(IMAGE_REFERENCE, { error: imageError })),
    command: stringList,
    args: stringList,
    envName,
    envValue: string,
    envVar: z.strictObject({ name: envName, value: z.optional(string) }, { error: expected('{ name, value }') }),
    portNumber: integer(1, 65535, 'a port number'),
    port: z.strictObject({
      containerPort: integer(1, 65535, 'a port number'),
      hostPort: z.optional(integer(1, 65535, 'a port number')),
      protocol: z.optional(z.enum(['TCP', 'UDP'], { error: expected('"TCP" or "UDP"') })),
      name: z.optional(z.string({ error: portNameError }).check(z.regex(PORT_NAME, { error: portNameError })))
    }, { error: expected(PORT_OBJECT_DESCRIPTION) }),
    workingDir: z.string({ error: workingDirError }).check(z.regex(/^\/[^\0]*$/, { error: workingDirError })),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never'], { error: expected('"Always", "OnFailure" or "Never"') }),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never'], { error: expected('"Always", "IfNotPresent" or "Never"') }),
    terminationGracePeriodSeconds: integer(0, MAX_GRACE_PERIOD_SECONDS)
  }
}

/** Shared with kube.ts. `services: [{ name, port? }]`; actors (`withPort: false`) name no port. */
export function servicesSchema (withPort: boolean) {
  const error = expected('a list of { name' + (withPort ? ', port? }' : ' }'))
  return z.array(z.strictObject({
    name: label(),
    ...(withPort ? { port: z.optional(integer(1, 65535, 'a port number')) } : {})
  }, { error: expected(withPort ? '{ name, port? }' : '{ name } (actors serve calls on no port)') }), { error }).check(z.maxLength(16, { error: expected('at most 16 services') }))
}

/** The first service that repeats an earlier name. */
function repeatedService (services: ReadonlyArray<{ name: string }> = []): { index: number, problem: string } | undefined {
  const seen = new Map<string, number>()
  for (const [index, { name }] of services.entries()) {
    const earlier = seen.get(name)
    if (earlier != null) return { index, problem: `service "${name}" is declared twice (also in services[${earlier}])` }
    seen.set(name, index)
  }
  return undefined
}

const HANDLER_EXPECTED = 'a function (event, ctx) => …'
const ON_CALL_EXPECTED = 'a function (request, ctx) => reply'
const MACHINE_EXPECTED = 'an XState v5 machine (setup({...}).createMachine({...}))'
const KIND_EXPECTED = '"stateless", "stateful" or "container"'

function statefulSchema (requireMachine: boolean) {
  const shared = sharedShape()
  const machine = z.custom<MachineLogic>(isMachine, { error: issue => issue.input === undefined ? `missing; expected ${MACHINE_EXPECTED}` : `expected ${MACHINE_EXPECTED}` })
  return z.strictObject({
    name: label(),
    kind: z.literal('stateful'),
    namespace: z.optional(label()),
    machine: requireMachine ? machine : z.optional(z.unknown()),
    durability: z.optional(shared.durability),
    snapshotEvery: z.optional(shared.snapshotEvery),
    resources: z.optional(shared.resources),
    nodeSelector: z.optional(shared.nodeSelector),
    timeoutMs: z.optional(shared.timeoutMs),
    services: z.optional(servicesSchema(false))
  })
}

function containerSchema () {
  const shared = sharedShape()
  const c = containerFieldSchemas()
  return z.strictObject({
    name: label(),
    kind: z.literal('container'),
    namespace: z.optional(label()),
    image: c.image,
    command: z.optional(c.command),
    args: z.optional(c.args),
    env: z.optional(z.union([z.array(c.envVar), z.record(c.envName, c.envValue)], { error: expected('an object mapping names to values, or a list of { name, value }') })),
    ports: z.optional(z.array(
      z.union([c.portNumber, c.port], { error: expected(`a port number or ${PORT_OBJECT_DESCRIPTION}`) }),
      { error: expected(`a list of port numbers or ${PORT_OBJECT_DESCRIPTION}`) }
    )),
    workingDir: z.optional(c.workingDir),
    restartPolicy: z.optional(c.restartPolicy),
    imagePullPolicy: z.optional(c.imagePullPolicy),
    limits: z.optional(shared.resources),
    resources: z.optional(shared.resources),
    replicas: z.optional(shared.replicas),
    nodeSelector: z.optional(shared.nodeSelector),
    backoff: z.optional(z.strictObject({
      initialMs: z.optional(integer(1, MAX_BACKOFF_MS)),
      maxMs: z.optional(integer(1, MAX_BACKOFF_MS)),
      resetAfterMs: z.optional(integer(1, MAX_RESET_AFTER_MS))
    }, { error: expected('an object with initialMs, maxMs and/or resetAfterMs') })),
    terminationGracePeriodSeconds: z.optional(c.terminationGracePeriodSeconds),
    services: z.optional(servicesSchema(true))
  })
}

function definitionSchema (requireHandler: boolean) {
  const shared = sharedShape()
  const handler = z.custom<StatelessHandler>(value => typeof value === 'function', { error: expected(HANDLER_EXPECTED) })
  const onCall = z.custom<CallHandler>(value => typeof value === 'function', { error: expected(ON_CALL_EXPECTED) })
  return z.strictObject({
    name: label(),
    kind: z.literal('stateless', { error: expected(KIND_EXPECTED) }),
    namespace: z.optional(label()),
    topics: z.optional(shared.topics),
    replicas: z.optional(shared.replicas),
    resources: z.optional(shared.resources),
    nodeSelector: z.optional(shared.nodeSelector),
    delivery: z.optional(shared.delivery),
    retries: z.optional(shared.retries),
    timeoutMs: z.optional(shared.timeoutMs),
    handler: z.optional(handler),
    services: z.optional(servicesSchema(false)),
    onCall: z.optional(onCall)
  })
}

/** What a stateless definition lacks: topics or services to wake it, a handler for its topics, an onCall for its services. */
function statelessProblem (d: { topics?: string[] | undefined, services?: unknown[] | undefined, handler?: unknown, onCall?: unknown }, requireHandler: boolean): string | undefined {
  const hasTopics = d.topics != null
  const hasServices = d.services != null && d.services.length > 0
  if (!hasTopics && !hasServices) return 'topics: missing; expected a non-empty array of topic names (or services, for a workload that only serves calls)'
  if (requireHandler && hasTopics && d.handler == null) return `handler: missing; expected ${HANDLER_EXPECTED}`
  if (requireHandler && hasServices && d.onCall == null) return `onCall: missing; expected ${ON_CALL_EXPECTED} to serve services`
  if (d.onCall != null && !hasServices) return 'onCall: given, but services declares no service for it to serve'
  return undefined
}

function manifestSchema () {
  const shared = sharedShape()
  const moduleError = expected('the path of the workload module, relative to the manifest')
  return z.strictObject({
    apiVersion: z.literal(MANIFEST_API_VERSION, { error: expected(`"${MANIFEST_API_VERSION}"`) }),
    kind: z.literal(MANIFEST_KIND, { error: expected(`"${MANIFEST_KIND}"`) }),
    metadata: z.optional(z.strictObject({
      name: z.optional(label()),
      namespace: z.optional(label())
    }, { error: expected('an object with name and/or namespace') })),
    spec: z.strictObject({
      module: z.string({ error: moduleError }).check(z.minLength(1, { error: moduleError })),
      topics: z.optional(shared.topics),
      replicas: z.optional(shared.replicas),
      resources: z.optional(shared.resources),
      nodeSelector: z.optional(shared.nodeSelector),
      delivery: z.optional(shared.delivery),
      retries: z.optional(shared.retries),
      timeoutMs: z.optional(shared.timeoutMs),
      durability: z.optional(shared.durability),
      snapshotEvery: z.optional(shared.snapshotEvery)
    }, { error: expected('an object with module and optional overrides') })
  }, { error: expected('a mapping with apiVersion, kind, metadata and spec') })
}

let definitionSchemas: {
  strict: ReturnType<typeof definitionSchema>
  loose: ReturnType<typeof definitionSchema>
  statefulStrict: ReturnType<typeof statefulSchema>
  statefulLoose: ReturnType<typeof statefulSchema>
  container: ReturnType<typeof containerSchema>
} | undefined

/** Shared with kube.ts. `topics[0]`, `spec.module`, `nodeSelector["kubernetes.io/arch"]` */
export function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out === '' ? key : `.${key}`
    else out += `[${JSON.stringify(String(key))}]`
  }
  return out
}

/** Shared with kube.ts. `path: problem`, or the problem alone at the top. */
export function atPath (path: ReadonlyArray<PropertyKey>, problem: string): string {
  const where = formatPath(path)
  return where === '' ? problem : `${where}: ${problem}`
}

const FIELD_NAMES = [
  'name', 'kind', 'namespace', 'topics', 'replicas', 'resources', 'cpu', 'memory', 'nodeSelector', 'delivery', 'retries', 'timeoutMs', 'handler', 'machine',
  'durability', 'snapshotEvery', 'apiVersion', 'metadata', 'spec', 'module',
  'image', 'command', 'args', 'env', 'value', 'ports', 'containerPort', 'hostPort', 'protocol', 'workingDir', 'restartPolicy', 'imagePullPolicy', 'limits',
  'backoff', 'initialMs', 'maxMs', 'resetAfterMs', 'terminationGracePeriodSeconds', 'services', 'onCall', 'port'
]

/** Levenshtein distance, for "did you mean" hints on unknown fields. */
function distance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = row
  }
  return prev[b.length] ?? 0
}

/**
 * Shared with kube.ts. The name among `names` that `key` most likely
 * misspells; never `key` itself (a field of another kind is not a typo).
 */
export function suggestField (key: string, names: readonly string[] = FIELD_NAMES): string | undefined {
  const lower = key.toLowerCase()
  const tolerance = key.length >= 5 ? 2 : 1
  const others = names.filter(f => f !== key)
  return others.find(f => f.toLowerCase() === lower) ?? others.find(f => distance(f.toLowerCase(), lower) <= tolerance)
}

/** `colour: unknown field`, `replica: unknown field (did you mean "replicas"?)` */
function describeUnknownFields (keys: readonly string[], path: ReadonlyArray<PropertyKey>): string {
  const key = keys[0] ?? ''
  const hint = suggestField(key)
  return `${formatPath([...path, key])}: unknown field${hint != null ? ` (did you mean "${hint}"?)` : ''}${keys.length > 1 ? `; also unknown: ${keys.slice(1).join(', ')}` : ''}`
}

/**
 * The issue to report for a union that matched no branch: the first issue of
 * the branch that accepted the value's type (an array for a list, an object
 * for a map), with its full path; the union itself when no branch did.
 */
function innermost (issue: z.core.$ZodIssue): { issue: z.core.$ZodIssue, path: PropertyKey[] } {
  let current = issue
  let path: PropertyKey[] = [...issue.path]
  while (current.code === 'invalid_union') {
    const branch = current.errors.find(issues => issues.length > 0 && !issues.some(i => i.code === 'invalid_type' && i.path.length === 0))
    const next = branch?.[0]
    if (next == null) break
    current = next
    path = [...path, ...next.path]
  }
  return { issue: current, path }
}

/** Shared with kube.ts: how describeIssues words unknown fields. */
export interface IssueWording {
  /** The line for the unknown `keys` of the object at `path`. Default: `<path>.<key>: unknown field`, with a "did you mean" hint. */
  unknownFields?: (keys: readonly string[], path: ReadonlyArray<PropertyKey>) => string
}

/** Shared with kube.ts. One line for the first zod issue, `path: problem`, noting how many more there are. */
export function describeIssues (issues: z.core.$ZodIssue[], { unknownFields = describeUnknownFields }: IssueWording = {}): string {
  const first = issues[0]
  if (first == null) return 'invalid value'
  const { issue, path } = innermost(first)
  let line: string
  if (issue.code === 'unrecognized_keys') line = unknownFields(issue.keys, path)
  else if (issue.code === 'invalid_key') line = atPath(path, issue.issues[0]?.message ?? issue.message)
  else line = atPath(path, issue.message)
  const more = issues.length - 1
  return more > 0 ? `${line} (and ${more} more problem${more === 1 ? '' : 's'})` : line
}

/** The default export's kind, for the message when it is not an object. */
function describeExport (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  return `a ${typeof value}`
}

/** Ports as a container spec holds them: objects, protocol `TCP` unless given. */
export function normalisePorts (ports: ContainerDefinition['ports'] = []): ContainerPort[] {
  return ports.map(p => {
    if (typeof p === 'number') return { containerPort: p, protocol: 'TCP' }
    return {
      containerPort: p.containerPort,
      ...(p.hostPort != null ? { hostPort: p.hostPort } : {}),
      protocol: p.protocol ?? 'TCP',
      ...(p.name != null ? { name: p.name } : {})
    }
  })
}

/** Environment variables as a container spec holds them: a list, in the order given. */
export function normaliseEnv (env: Record<string, string> | ReadonlyArray<{ name: string, value?: string }> = []): EnvVar[] {
  if (isList(env)) return env.map(({ name, value }) => ({ name, value: value ?? '' }))
  return Object.entries(env).map(([name, value]) => ({ name, value }))
}

function isList<T> (value: ReadonlyArray<T> | object): value is ReadonlyArray<T> {
  return Array.isArray(value)
}

/**
 * Shared with kube.ts: the first port that repeats an earlier one (the same
 * containerPort or hostPort and protocol, or the same name). `problem` refers
 * to the earlier one as `ports[i]`.
 */
export function repeatedPort (ports: readonly ContainerPort[]): { index: number, problem: string } | undefined {
  const seen = new Map<string, number>()
  for (const [index, p] of ports.entries()) {
    const keys: Array<[string, string]> = [[`container ${p.containerPort}/${p.protocol}`, `containerPort ${p.containerPort}/${p.protocol}`]]
    if (p.hostPort != null) keys.push([`host ${p.hostPort}/${p.protocol}`, `hostPort ${p.hostPort}/${p.protocol}`])
    if (p.name != null) keys.push([`name ${p.name}`, `port name "${p.name}"`])
    for (const [key, what] of keys) {
      const earlier = seen.get(key)
      if (earlier != null) return { index, problem: `${what} is declared twice (also in ports[${earlier}])` }
      seen.set(key, index)
    }
  }
  return undefined
}

/** Shared with kube.ts: the first variable that repeats an earlier name. */
export function repeatedEnvVar (env: readonly EnvVar[]): { index: number, problem: string } | undefined {
  const seen = new Map<string, number>()
  for (const [index, { name }] of env.entries()) {
    const earlier = seen.get(name)
    if (earlier != null) return { index, problem: `${JSON.stringify(name)} is set twice (also in env[${earlier}])` }
    seen.set(name, index)
  }
  return undefined
}

/** Shared with kube.ts: the first resource whose request exceeds its limit (Kubernetes refuses those). */
export function requestAboveLimit (requests: ResourceQuantities = {}, limits: ResourceQuantities = {}): { resource: 'cpu' | 'memory', request: string, limit: string } | undefined {
  for (const [resource, parse] of [['cpu', parseCpu], ['memory', parseMemory]] as const) {
    const request = requests[resource]
    const limit = limits[resource]
    if (request != null && limit != null && parse(request) > parse(limit)) return { resource, request: shown(request) ?? '', limit: shown(limit) ?? '' }
  }
  return undefined
}

/**
 * Shared with kube.ts: restart delays with the defaults filled in. When only
 * `maxMs` is given and it is below the default first delay, the first delay
 * is `maxMs`.
 */
export function restartBackoff (backoff: Partial<RestartBackoff> = {}): RestartBackoff {
  const maxMs = backoff.maxMs ?? DEFAULTS.backoff.maxMs
  return {
    initialMs: backoff.initialMs ?? Math.min(DEFAULTS.backoff.initialMs, maxMs),
    maxMs,
    resetAfterMs: backoff.resetAfterMs ?? DEFAULTS.backoff.resetAfterMs
  }
}

/** The first problem across a container definition's fields, `path: problem`. */
function containerProblem (d: z.output<ReturnType<typeof containerSchema>>): string | undefined {
  if (d.env != null && isList(d.env)) {
    const env = repeatedEnvVar(normaliseEnv(d.env))
    if (env != null) return atPath(['env', env.index, 'name'], env.problem)
  }
  const port = repeatedPort(normalisePorts(d.ports))
  if (port != null) return atPath(['ports', port.index], port.problem)
  const declared = normalisePorts(d.ports).filter(p => p.protocol === 'TCP').map(p => p.containerPort)
  for (const [index, service] of ((d.services ?? []) as Array<{ name: string, port?: number }>).entries()) {
    if (declared.length === 0) return atPath(['services', index], `service "${service.name}" needs a TCP container port to reach; declare one in ports`)
    if (service.port != null && !declared.includes(service.port)) return atPath(['services', index, 'port'], `${service.port} is not a TCP port of the container (ports: ${declared.join(', ')})`)
  }
  const over = requestAboveLimit(d.resources, d.limits)
  if (over != null) return atPath(['resources', over.resource], `the request ${over.request} is more than the limit ${over.limit} (limits.${over.resource}); a request cannot exceed its limit`)
  const { initialMs, maxMs } = d.backoff ?? {}
  if (initialMs != null && initialMs > (maxMs ?? DEFAULTS.backoff.maxMs)) {
    return atPath(['backoff', 'initialMs'], `${initialMs} is more than backoff.maxMs (${maxMs ?? `${DEFAULTS.backoff.maxMs} by default`})`)
  }
  return undefined
}

/**
 * Validates a module's default export (or a plain object of definition
 * fields). Throws InvalidDefinitionError `<source>: <field>: <problem>`.
 * With `requireHandler: false` (definitions read back from a sandbox, where
 * functions do not survive) the handler is not required.
 */
export function validateDefinition (value: unknown, source: string): WorkloadDefinition
export function validateDefinition (value: unknown, source: string, options: { requireHandler: boolean }): DefinitionFields & { handler?: StatelessHandler, machine?: unknown }
export function validateDefinition (value: unknown, source: string, { requireHandler = true }: { requireHandler?: boolean } = {}): DefinitionFields & { handler?: StatelessHandler, machine?: unknown } {
  if (value === undefined) throw new InvalidDefinitionError(source, NO_DEFAULT_EXPORT)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidDefinitionError(source, `the default export is ${describeExport(value)}; export default defineWorkload({...})`)
  }
  definitionSchemas ??= { strict: definitionSchema(true), loose: definitionSchema(false), statefulStrict: statefulSchema(true), statefulLoose: statefulSchema(false), container: containerSchema() }
  const kind = (value as { kind?: unknown }).kind
  const schema = kind === 'container'
    ? definitionSchemas.container
    : kind === 'stateful'
      ? (requireHandler ? definitionSchemas.statefulStrict : definitionSchemas.statefulLoose)
      : (requireHandler ? definitionSchemas.strict : definitionSchemas.loose)
  const result = schema.safeParse(value)
  if (!result.success) throw new InvalidDefinitionError(source, describeIssues(result.error.issues))
  if (result.data.kind === 'container') {
    const problem = containerProblem(result.data)
    if (problem != null) throw new InvalidDefinitionError(source, problem)
  }
  if (result.data.kind === 'stateless') {
    const problem = statelessProblem(result.data, requireHandler)
    if (problem != null) throw new InvalidDefinitionError(source, problem)
  }
  const repeated = repeatedService(result.data.services)
  if (repeated != null) throw new InvalidDefinitionError(source, atPath(['services', repeated.index, 'name'], repeated.problem))
  return result.data as DefinitionFields & { handler?: StatelessHandler, machine?: unknown }
}

/**
 * Declares a workload: `export default defineWorkload({ ... })`, stateless
 * (`handler` woken by `topics`), stateful (an XState `machine`) or a
 * container (an `image` run like a one-container Kubernetes pod). Returns the
 * definition unchanged, typed, after validating it (so a module with a bad
 * definition fails when it loads, with the field named).
 */
export function defineWorkload<T = any> (def: StatelessDefinition<T>): StatelessDefinition<T>
export function defineWorkload<D extends StatefulDefinition> (def: D): D
export function defineWorkload (def: ContainerDefinition): ContainerDefinition
export function defineWorkload (def: WorkloadDefinition): WorkloadDefinition {
  validateDefinition(def, 'defineWorkload')
  return def
}

function uniqueTopics (topics: string[]): string[] {
  return [...new Set(topics)]
}

function memoryLimitMb (memoryBytes: number): number {
  return Math.max(DEFAULTS.minMemoryLimitMb, Math.ceil(memoryBytes / MEBIBYTE))
}

/** The container part of a container workload's spec, defaults applied. */
function toContainerSpec (d: ContainerDefinition): ContainerSpec {
  const limits = d.limits ?? {}
  return {
    image: d.image,
    // Empty lists mean "the image's own", as in Kubernetes.
    ...(d.command != null && d.command.length > 0 ? { command: [...d.command] } : {}),
    ...(d.args != null && d.args.length > 0 ? { args: [...d.args] } : {}),
    env: normaliseEnv(d.env),
    ports: normalisePorts(d.ports),
    ...(d.workingDir != null ? { workingDir: d.workingDir } : {}),
    restartPolicy: d.restartPolicy ?? DEFAULTS.restartPolicy,
    imagePullPolicy: d.imagePullPolicy ?? DEFAULTS.imagePullPolicy,
    limits: {
      ...(limits.cpu != null ? { cpuMillis: parseCpu(limits.cpu) } : {}),
      ...(limits.memory != null ? { memoryBytes: parseMemory(limits.memory) } : {})
    },
    backoff: restartBackoff(d.backoff),
    terminationGracePeriodSeconds: d.terminationGracePeriodSeconds ?? DEFAULTS.terminationGracePeriodSeconds
  }
}

/**
 * The serialisable spec of a definition (its handler, if any, is dropped),
 * with defaults applied: namespace `default`, 1 replica, `100m` CPU, `64Mi`
 * memory, `queue` delivery, 2 retries, 5000 ms timeout, and a worker heap of
 * the memory request in MiB (at least 16).
 *
 * A container workload has no artifact (an `artifact` given for one is
 * ignored), no topics and no retries; its requests default to its limits,
 * resource by resource, as in Kubernetes, and its `container` gets restart
 * policy `Always`, pull policy `IfNotPresent`, a 30 s grace period and restart
 * delays from 1 s doubling to 5 min (see DEFAULTS).
 */
export function toWorkloadSpec (def: ContainerDefinition, options: { source: string, now: number }): WorkloadSpec
export function toWorkloadSpec (def: DefinitionFields | WorkloadDefinition, options: { artifact: ArtifactRef, source: string, now: number, machineId?: string }): WorkloadSpec
export function toWorkloadSpec (def: DefinitionFields | WorkloadDefinition, { artifact, source, now, machineId }: { artifact?: ArtifactRef, source: string, now: number, machineId?: string }): WorkloadSpec {
  const { handler: _handler, onCall: _onCall, machine, ...fields } = def as DefinitionFields & { handler?: unknown, onCall?: unknown, machine?: unknown }
  const d = validateDefinition(fields, source, { requireHandler: false })
  const namespace = d.namespace ?? DEFAULTS.namespace
  if (d.kind === 'container') {
    const requests = d.resources ?? {}
    const limits = d.limits ?? {}
    const memoryBytes = parseMemory(requests.memory ?? limits.memory ?? DEFAULTS.memory)
    return {
      id: `${namespace}/${d.name}`,
      name: d.name,
      namespace,
      kind: 'container',
      topics: [],
      replicas: d.replicas ?? DEFAULTS.replicas,
      resources: { cpuMillis: parseCpu(requests.cpu ?? limits.cpu ?? DEFAULTS.cpu), memoryBytes },
      nodeSelector: { ...(d.nodeSelector ?? {}) },
      delivery: DEFAULTS.delivery,
      retries: 0,
      timeoutMs: DEFAULTS.timeoutMs,
      memoryLimitMb: memoryLimitMb(memoryBytes),
      container: toContainerSpec(d),
      ...servicesOf(d.services, normalisePorts(d.ports).find(p => p.protocol === 'TCP')?.containerPort),
      source,
      createdAt: now
    }
  }
  if (artifact == null) throw new TypeError(`toWorkloadSpec: a ${d.kind} workload needs the artifact of its bundled module`)
  const resources: ResourceQuantities = d.resources ?? {}
  const memoryBytes = parseMemory(resources.memory ?? DEFAULTS.memory)
  if (d.kind === 'stateful') {
    const id = machineId ?? (isMachine(machine) ? machine.id : undefined)
    return {
      id: `${namespace}/${d.name}`,
      name: d.name,
      namespace,
      kind: 'stateful',
      topics: [],
      replicas: 1,
      resources: { cpuMillis: parseCpu(resources.cpu ?? DEFAULTS.cpu), memoryBytes },
      nodeSelector: { ...(d.nodeSelector ?? {}) },
      delivery: DEFAULTS.delivery,
      retries: 0,
      timeoutMs: d.timeoutMs ?? DEFAULTS.timeoutMs,
      memoryLimitMb: memoryLimitMb(memoryBytes),
      durability: d.durability ?? DEFAULTS.durability,
      snapshotEvery: d.snapshotEvery ?? DEFAULTS.snapshotEvery,
      ...(id != null ? { machineId: id } : {}),
      ...servicesOf(d.services),
      artifact: { sha256: artifact.sha256, size: artifact.size },
      source,
      createdAt: now
    }
  }
  return {
    id: `${namespace}/${d.name}`,
    name: d.name,
    namespace,
    kind: d.kind,
    topics: uniqueTopics(d.topics ?? []),
    replicas: d.replicas ?? DEFAULTS.replicas,
    resources: { cpuMillis: parseCpu(resources.cpu ?? DEFAULTS.cpu), memoryBytes },
    nodeSelector: { ...(d.nodeSelector ?? {}) },
    delivery: d.delivery ?? DEFAULTS.delivery,
    retries: d.retries ?? DEFAULTS.retries,
    timeoutMs: d.timeoutMs ?? DEFAULTS.timeoutMs,
    memoryLimitMb: memoryLimitMb(memoryBytes),
    ...servicesOf(d.services),
    artifact: { sha256: artifact.sha256, size: artifact.size },
    source,
    createdAt: now
  }
}

/** `{ services }` for a spec (none when the definition declares none); a container's service port defaults to its first TCP port. */
function servicesOf (services: ReadonlyArray<{ name: string, port?: number | undefined }> | undefined, defaultPort?: number): Pick<WorkloadSpec, 'services'> {
  if (services == null || services.length === 0) return {}
  return { services: services.map(s => ({ name: s.name, ...(s.port ?? defaultPort) != null ? { port: (s.port ?? defaultPort) as number } : {} })) }
}

/** First line of a yaml parse error, without its trailing position. */
function yamlReason (code: string, message: string, onePerFile: string): string {
  if (code === 'MULTIPLE_DOCS') return `the file holds more than one YAML document; ${onePerFile}`
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '')
}

/**
 * Shared with kube.ts. The value of a YAML (or JSON) text holding one
 * document (`null` when it is empty); InvalidManifestError naming the line
 * otherwise. `onePerFile` ends the message for a file of several documents.
 */
export function readYaml (text: string, source: string, onePerFile = 'put one Actor per file'): unknown {
  const doc = parseDocument(text, { prettyErrors: true })
  const syntax = doc.errors[0]
  if (syntax != null) {
    const pos = syntax.linePos?.[0]
    const where = pos != null ? ` at line ${pos.line}, column ${pos.col}` : ''
    throw new InvalidManifestError(source, `invalid YAML${where}: ${yamlReason(syntax.code, syntax.message, onePerFile)}`)
  }
  try {
    return doc.toJS()
  } catch (err) {
    throw new InvalidManifestError(source, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** Shared with kube.ts. Validates the parsed value of an Actor manifest; see parseManifest. */
export function actorManifest (value: unknown, source: string): Manifest {
  const result = manifestSchema().safeParse(value)
  if (!result.success) throw new InvalidManifestError(source, describeIssues(result.error.issues))
  const { metadata, spec } = result.data
  const { module, ...specOverrides } = spec
  const overrides: DefinitionOverrides = {}
  if (metadata?.name != null) overrides.name = metadata.name
  if (metadata?.namespace != null) overrides.namespace = metadata.namespace
  for (const [key, v] of Object.entries(specOverrides)) {
    if (v !== undefined) (overrides as Record<string, unknown>)[key] = v
  }
  return { module: resolve(dirname(source), module), overrides }
}

/**
 * Parses a YAML (or JSON) `apiVersion: beemesh.io/v1, kind: Actor` manifest.
 * `source` is the manifest's path: errors name it, and `spec.module` is
 * resolved against its directory. Throws InvalidManifestError. (parseAnyManifest
 * in kube.ts also takes Kubernetes Pods and Deployments.)
 */
export function parseManifest (text: string, source: string): Manifest {
  const value = readYaml(text, source)
  if (value == null) throw new InvalidManifestError(source, `the manifest is empty; expected apiVersion: ${MANIFEST_API_VERSION}, kind: ${MANIFEST_KIND}, metadata and spec`)
  return actorManifest(value, source)
}

const ANY_KIND_EXPECTED = '"Actor", "Pod" or "Deployment"'

/**
 * Parses any manifest `beemesh apply` takes (YAML or JSON, one document): a
 * `beemesh.io/v1 Actor` (as parseManifest), or a Kubernetes `v1 Pod` or
 * `apps/v1 Deployment`, which becomes a container definition (see kube.ts).
 * Throws InvalidManifestError `<source>: <field path>: <problem>`.
 */
export function parseAnyManifest (text: string, source: string): AnyManifest {
  const value = readYaml(text, source, 'put one Actor, Pod or Deployment per file')
  if (value == null) throw new InvalidManifestError(source, `the manifest is empty; expected an Actor (apiVersion: ${MANIFEST_API_VERSION}), a Pod (v1) or a Deployment (apps/v1)`)
  const { apiVersion, kind } = typeof value === 'object' && !Array.isArray(value) ? value as { apiVersion?: unknown, kind?: unknown } : {}
  if ((KUBE_KINDS as readonly unknown[]).includes(kind)) return { type: 'container', definition: parseKubeManifest(value, source) }
  if (kind === MANIFEST_KIND || apiVersion === MANIFEST_API_VERSION || typeof value !== 'object' || Array.isArray(value)) {
    return { type: 'actor', manifest: actorManifest(value, source) }
  }
  throw new InvalidManifestError(source, atPath(['kind'], expected(ANY_KIND_EXPECTED)({ input: kind })))
}
