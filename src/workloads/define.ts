/**
 * What a user module imports as `beemesh`: `defineWorkload`, plus the
 * validation of definitions and manifests shared by the CLI and the bundler.
 * Every failure is an InvalidDefinitionError or InvalidManifestError whose
 * message is one line: `<source>: <field path>: <problem>`.
 */
import { dirname, resolve } from 'node:path'
import { parseDocument } from 'yaml'
import * as z from 'zod/mini'
import { InvalidDefinitionError, InvalidManifestError, InvalidQuantityError, NO_DEFAULT_EXPORT } from './errors.js'
import { isMachine } from './machine.js'
import { parseCpu, parseMemory } from './quantities.js'
import type { ArtifactRef, Delivery, Durability, MachineLogic, ResourceQuantities, StatefulDefinition, StatelessDefinition, StatelessHandler, WorkloadDefinition, WorkloadSpec } from './types.js'

// Workload bundles resolve `beemesh` to this module, so it offers what the
// package entry (src/index.ts) offers to user code.
export { deadLetterTopic } from './types.js'
export { isMachine } from './machine.js'
export type { Delivery, Durability, HandlerContext, MachineLogic, ResourceQuantities, StatefulDefinition, StatelessDefinition, StatelessHandler, TopicEvent, WorkloadDefinition, WorkloadIdentity } from './types.js'

export type StatelessFields = Omit<StatelessDefinition, 'handler'>
export type StatefulFields = Omit<StatefulDefinition, 'machine'>
/** A definition without its handler or machine: what survives serialisation. */
export type DefinitionFields = StatelessFields | StatefulFields

/** Fields a manifest may set on top of the module's definition. */
export type DefinitionOverrides = Partial<Pick<StatelessFields, 'name' | 'namespace' | 'topics' | 'replicas' | 'resources' | 'nodeSelector' | 'delivery' | 'retries' | 'timeoutMs'> & Pick<StatefulFields, 'durability' | 'snapshotEvery'>>

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
  minMemoryLimitMb: 16
}

const MEBIBYTE = 1024 * 1024
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const TOPIC_NAME = /^[A-Za-z0-9._~:-]{1,200}$/
const LABEL_DESCRIPTION = 'a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit)'

/** How a rejected value is shown after "got": only scalars, which fit on one line. */
function shown (value: unknown): string | undefined {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value === null) return String(value)
  return undefined
}

/** A zod error function: `expected <what>, got <value>`, or `missing; expected <what>`. */
function expected (what: string) {
  return (issue: { input?: unknown }): string => {
    if (issue.input === undefined) return `missing; expected ${what}`
    const got = shown(issue.input)
    return got == null ? `expected ${what}` : `expected ${what}, got ${got}`
  }
}

function integer (min: number, max: number) {
  const error = expected(`an integer from ${min} to ${max}`)
  return z.int({ error }).check(z.minimum(min, { error }), z.maximum(max, { error }))
}

function label () {
  const error = expected(LABEL_DESCRIPTION)
  return z.string({ error }).check(z.regex(DNS_LABEL, { error }))
}

function quantity (parse: (q: string | number) => number, what: string) {
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

function topicsSchema () {
  const error = expected('a non-empty array of topic names')
  const topic = expected('a topic name (1 to 200 letters, digits or . _ ~ : -)')
  return z.array(z.string({ error: topic }).check(z.regex(TOPIC_NAME, { error: topic })), { error }).check(z.minLength(1, { error }))
}

/** The optional fields a definition and a manifest's spec share. */
function sharedShape () {
  return {
    topics: topicsSchema(),
    replicas: integer(1, 100),
    resources: z.strictObject({
      cpu: z.optional(quantity(parseCpu, 'CPU')),
      memory: z.optional(quantity(parseMemory, 'memory'))
    }, { error: expected('an object with cpu and/or memory') }),
    nodeSelector: z.record(
      z.string(),
      z.string({ error: expected('a string label value (quote numbers and booleans in YAML)') }),
      { error: expected('an object mapping label names to values') }
    ),
    delivery: z.enum(['queue', 'fanout'], { error: expected('"queue" or "fanout"') }),
    retries: integer(0, 20),
    timeoutMs: integer(10, 600_000),
    durability: z.enum(['replicated', 'local'], { error: expected('"replicated" or "local"') }),
    snapshotEvery: integer(1, 100_000)
  }
}

function kindSchema () {
  return z.literal('stateless', {
    error: issue => issue.input === 'container'
      ? `"${issue.input}" workloads are not supported yet (they come in a later version); use "stateless" or "stateful"`
      : expected('"stateless" or "stateful"')(issue)
  })
}

const HANDLER_EXPECTED = 'a function (event, ctx) => …'
const MACHINE_EXPECTED = 'an XState v5 machine (setup({...}).createMachine({...}))'

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
    timeoutMs: z.optional(shared.timeoutMs)
  })
}

function definitionSchema (requireHandler: boolean) {
  const shared = sharedShape()
  const handler = z.custom<StatelessHandler>(value => typeof value === 'function', { error: expected(HANDLER_EXPECTED) })
  return z.strictObject({
    name: label(),
    kind: kindSchema(),
    namespace: z.optional(label()),
    topics: shared.topics,
    replicas: z.optional(shared.replicas),
    resources: z.optional(shared.resources),
    nodeSelector: z.optional(shared.nodeSelector),
    delivery: z.optional(shared.delivery),
    retries: z.optional(shared.retries),
    timeoutMs: z.optional(shared.timeoutMs),
    handler: requireHandler ? handler : z.optional(handler)
  })
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

let definitionSchemas: { strict: ReturnType<typeof definitionSchema>, loose: ReturnType<typeof definitionSchema>, statefulStrict: ReturnType<typeof statefulSchema>, statefulLoose: ReturnType<typeof statefulSchema> } | undefined

/** `topics[0]`, `spec.module`, `nodeSelector["kubernetes.io/arch"]` */
function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out === '' ? key : `.${key}`
    else out += `[${JSON.stringify(String(key))}]`
  }
  return out
}

const FIELD_NAMES = ['name', 'kind', 'namespace', 'topics', 'replicas', 'resources', 'cpu', 'memory', 'nodeSelector', 'delivery', 'retries', 'timeoutMs', 'handler', 'machine', 'durability', 'snapshotEvery', 'apiVersion', 'metadata', 'spec', 'module']

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

function suggestField (key: string): string | undefined {
  const lower = key.toLowerCase()
  const tolerance = key.length >= 5 ? 2 : 1
  return FIELD_NAMES.find(f => f.toLowerCase() === lower) ?? FIELD_NAMES.find(f => distance(f.toLowerCase(), lower) <= tolerance)
}

/** One line for the first zod issue, `path: problem`, noting how many more there are. */
function describeIssues (issues: z.core.$ZodIssue[]): string {
  const first = issues[0]
  if (first == null) return 'invalid value'
  let line: string
  if (first.code === 'unrecognized_keys') {
    const key = first.keys[0] ?? ''
    const hint = suggestField(key)
    line = `${formatPath([...first.path, key])}: unknown field${hint != null ? ` (did you mean "${hint}"?)` : ''}${first.keys.length > 1 ? `; also unknown: ${first.keys.slice(1).join(', ')}` : ''}`
  } else {
    const path = formatPath(first.path)
    line = path === '' ? first.message : `${path}: ${first.message}`
  }
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
  definitionSchemas ??= { strict: definitionSchema(true), loose: definitionSchema(false), statefulStrict: statefulSchema(true), statefulLoose: statefulSchema(false) }
  const stateful = (value as { kind?: unknown }).kind === 'stateful'
  const schema = stateful
    ? (requireHandler ? definitionSchemas.statefulStrict : definitionSchemas.statefulLoose)
    : (requireHandler ? definitionSchemas.strict : definitionSchemas.loose)
  const result = schema.safeParse(value)
  if (!result.success) throw new InvalidDefinitionError(source, describeIssues(result.error.issues))
  return result.data as DefinitionFields & { handler?: StatelessHandler, machine?: unknown }
}

/**
 * Declares a workload: `export default defineWorkload({ ... })`, stateless
 * (`handler` woken by `topics`) or stateful (an XState `machine`). Returns the
 * definition unchanged, typed, after validating it (so a module with a bad
 * definition fails when it loads, with the field named).
 */
export function defineWorkload<T = any> (def: StatelessDefinition<T>): StatelessDefinition<T>
export function defineWorkload<D extends StatefulDefinition> (def: D): D
export function defineWorkload (def: WorkloadDefinition): WorkloadDefinition {
  validateDefinition(def, 'defineWorkload')
  return def
}

function uniqueTopics (topics: string[]): string[] {
  return [...new Set(topics)]
}

/**
 * The serialisable spec of a definition (its handler, if any, is dropped),
 * with defaults applied: namespace `default`, 1 replica, `100m` CPU, `64Mi`
 * memory, `queue` delivery, 2 retries, 5000 ms timeout, and a worker heap of
 * the memory request in MiB (at least 16).
 */
export function toWorkloadSpec (def: DefinitionFields | WorkloadDefinition, { artifact, source, now, machineId }: { artifact: ArtifactRef, source: string, now: number, machineId?: string }): WorkloadSpec {
  const { handler: _handler, machine, ...fields } = def as DefinitionFields & { handler?: unknown, machine?: unknown }
  const d = validateDefinition(fields, source, { requireHandler: false })
  const namespace = d.namespace ?? DEFAULTS.namespace
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
      memoryLimitMb: Math.max(DEFAULTS.minMemoryLimitMb, Math.ceil(memoryBytes / MEBIBYTE)),
      durability: d.durability ?? DEFAULTS.durability,
      snapshotEvery: d.snapshotEvery ?? DEFAULTS.snapshotEvery,
      ...(id != null ? { machineId: id } : {}),
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
    topics: uniqueTopics(d.topics),
    replicas: d.replicas ?? DEFAULTS.replicas,
    resources: { cpuMillis: parseCpu(resources.cpu ?? DEFAULTS.cpu), memoryBytes },
    nodeSelector: { ...(d.nodeSelector ?? {}) },
    delivery: d.delivery ?? DEFAULTS.delivery,
    retries: d.retries ?? DEFAULTS.retries,
    timeoutMs: d.timeoutMs ?? DEFAULTS.timeoutMs,
    memoryLimitMb: Math.max(DEFAULTS.minMemoryLimitMb, Math.ceil(memoryBytes / MEBIBYTE)),
    artifact: { sha256: artifact.sha256, size: artifact.size },
    source,
    createdAt: now
  }
}

/** First line of a yaml parse error, without its trailing position. */
function yamlReason (code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document; put one Actor per file'
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '')
}

/**
 * Parses a YAML (or JSON) `apiVersion: beemesh.io/v1, kind: Actor` manifest.
 * `source` is the manifest's path: errors name it, and `spec.module` is
 * resolved against its directory. Throws InvalidManifestError.
 */
export function parseManifest (text: string, source: string): Manifest {
  const doc = parseDocument(text, { prettyErrors: true })
  const syntax = doc.errors[0]
  if (syntax != null) {
    const pos = syntax.linePos?.[0]
    const where = pos != null ? ` at line ${pos.line}, column ${pos.col}` : ''
    throw new InvalidManifestError(source, `invalid YAML${where}: ${yamlReason(syntax.code, syntax.message)}`)
  }
  let value: unknown
  try {
    value = doc.toJS()
  } catch (err) {
    throw new InvalidManifestError(source, `invalid YAML: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (value == null) throw new InvalidManifestError(source, `the manifest is empty; expected apiVersion: ${MANIFEST_API_VERSION}, kind: ${MANIFEST_KIND}, metadata and spec`)
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
