/**
 * The validation of workload definitions: the zod schemas, their one-line
 * error wording, and the defaults a spec fills in. Every failure is an
 * InvalidDefinitionError whose message is one line: `<source>: <field path>: <problem>`.
 *
 * `defineWorkload` (define.ts, bundled into every workload) validates with
 * this module, so it imports nothing a workload does not need: no YAML, no
 * Kubernetes parser. The helpers marked "shared with kube.ts" are exported
 * for the Kubernetes manifest parser and manifest.ts; `beemesh`
 * (src/index.ts) does not offer them.
 */
import * as z from 'zod/mini'
import { InvalidDefinitionError, InvalidQuantityError, NO_DEFAULT_EXPORT } from './errors.js'
import { isMachine } from './machine.js'
import { parseCpu, parseMemory } from './quantities.js'
import type { CallHandler, ContainerDefinition, ContainerPort, Delivery, Durability, EnvVar, ImagePullPolicy, MachineLogic, ResourceQuantities, RestartBackoff, RestartPolicy, StatefulDefinition, StatelessDefinition, StatelessHandler, WorkloadDefinition } from './types.js'

export type StatelessFields = Omit<StatelessDefinition, 'handler' | 'onCall'>
export type StatefulFields = Omit<StatefulDefinition, 'machine'>
/** A definition without its handler or machine: what survives serialisation. */
export type DefinitionFields = StatelessFields | StatefulFields | ContainerDefinition

/** Fields a manifest may set on top of the module's definition. */
export type DefinitionOverrides = Partial<Pick<StatelessFields, 'name' | 'namespace' | 'topics' | 'replicas' | 'resources' | 'nodeSelector' | 'delivery' | 'retries' | 'timeoutMs'> & Pick<StatefulFields, 'durability' | 'snapshotEvery'>>

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

/** Shared with manifest.ts: the optional fields a definition and a manifest's spec share. */
export function sharedShape () {
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

/** The fields a stateless definition and an Actor manifest's spec both take to place a stateless workload, each optional. */
export function optionalPlacementFields (shared = sharedShape()) {
  return {
    topics: z.optional(shared.topics),
    replicas: z.optional(shared.replicas),
    resources: z.optional(shared.resources),
    nodeSelector: z.optional(shared.nodeSelector),
    delivery: z.optional(shared.delivery),
    retries: z.optional(shared.retries),
    timeoutMs: z.optional(shared.timeoutMs)
  }
}

function definitionSchema (requireHandler: boolean) {
  const shared = sharedShape()
  const handler = z.custom<StatelessHandler>(value => typeof value === 'function', { error: expected(HANDLER_EXPECTED) })
  const onCall = z.custom<CallHandler>(value => typeof value === 'function', { error: expected(ON_CALL_EXPECTED) })
  return z.strictObject({
    name: label(),
    kind: z.literal('stateless', { error: expected(KIND_EXPECTED) }),
    namespace: z.optional(label()),
    ...optionalPlacementFields(shared),
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

