/**
 * The policy engine: declarative allow/deny rules over principals, actions and
 * resources, default deny, explicit deny wins.
 *
 * Decision: our own small evaluator, not `@cedar-policy/cedar-wasm`. Checked
 * 4.13.0 on Node 20.20: the package's default ESM entry fails
 * (ERR_UNKNOWN_FILE_EXTENSION on the .wasm import; it targets bundlers or
 * --experimental-wasm-modules); the `/nodejs` subpath works and evaluated a
 * policy with entity tags and attributes correctly (first call ~60 ms). But it
 * is 13 MB unpacked (a 4.3 MB wasm per target), scripts/build.mjs would have to
 * ship the wasm beside the esbuild bundle, and Cedar's errors point into Cedar
 * text, not the operator's YAML line. Our format (globs on names and topics,
 * label equality conditions) is small enough to precompile into pure matchers
 * here and test thoroughly; its semantics (default deny, deny wins) match
 * Cedar's so a later switch stays possible.
 */
import { LineCounter, parseDocument, isNode } from 'yaml'
import { firstAlias } from '../yaml.js'
import * as z from 'zod'
import { PolicyError } from './errors.js'

export const ACTIONS = ['deploy', 'host', 'delete', 'publish', 'subscribe', 'send', 'call', 'egress', 'read', 'admin'] as const
export type Action = typeof ACTIONS[number]
export type Labels = Readonly<Record<string, string>>

export type Principal =
  | { kind: 'deployer', key: string, labels?: Labels }
  | { kind: 'node', id: string, labels?: Labels }
  | { kind: 'workload', namespace: string, name: string, labels?: Labels }
/** `service`: a service by name (calls, tunnels); `host`: a host outside the mesh, `name` its DNS name or IP (egress). */
export type Resource =
  | { kind: 'namespace' | 'workload' | 'topic' | 'service' | 'host', name: string, namespace?: string, labels?: Labels }

export interface Request { principal: Principal, action: Action, resource: Resource }
export interface Decision { allowed: boolean, rule?: string, reason: string }

const name = z.string().min(1)
const labels = z.record(z.string().min(1), z.string())
const principalSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('deployer'), key: name.optional(), labels: labels.optional() }),
  z.strictObject({ kind: z.literal('node'), id: name.optional(), labels: labels.optional() }),
  z.strictObject({ kind: z.literal('workload'), namespace: name.optional(), name: name.optional(), labels: labels.optional() })
])
const resourceSchema = z.strictObject({
  kind: z.enum(['namespace', 'workload', 'topic', 'service', 'host']),
  name: name.optional(),
  namespace: name.optional(),
  labels: labels.optional()
})
const conditionKey = z.string().regex(/^(principal|resource)\.labels\.[^.].*$/, 'expected principal.labels.<key> or resource.labels.<key>')
const ruleSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'expected a lower-case rule id'),
  effect: z.enum(['allow', 'deny']),
  principals: z.array(principalSchema).min(1),
  actions: z.array(z.union([z.enum(ACTIONS), z.literal('*')])).min(1),
  resources: z.array(resourceSchema).min(1),
  when: z.record(conditionKey, z.string()).optional()
})
const policySchema = z.strictObject({
  apiVersion: z.literal('beemesh.io/v1'),
  kind: z.literal('Policy'),
  metadata: z.strictObject({ name, version: z.number().int().nonnegative() }),
  rules: z.array(ruleSchema),
  /** Deployer key ids whose API tokens are refused (the list spreads with the root-signed policy). */
  revoked: z.array(name).max(10_000).optional()
}).superRefine((p, ctx) => {
  const seen = new Set<string>()
  p.rules.forEach((r, i) => {
    if (seen.has(r.id)) ctx.addIssue({ code: 'custom', path: ['rules', i, 'id'], message: `duplicate rule id ${JSON.stringify(r.id)}` })
    seen.add(r.id)
  })
})
export type PolicyDocument = z.infer<typeof policySchema>
type RuleDoc = z.infer<typeof ruleSchema>

type Match<T> = (value: T) => boolean
export interface CompiledRule {
  readonly id: string
  readonly effect: 'allow' | 'deny'
  readonly actions: ReadonlySet<string>
  readonly principal: Match<Principal>
  readonly resource: Match<Resource>
  readonly when: Match<Request>
}

/** A validated, precompiled policy. */
export interface PolicySet {
  readonly name: string
  readonly version: number
  readonly source: string
  readonly rules: readonly CompiledRule[]
  /** Deployer key ids some rule names (`kind: deployer, key: <id>`): the only keys whose API tokens are accepted. */
  readonly deployers: ReadonlySet<string>
  /** Deployer key ids whose API tokens are refused, whatever the rules say. */
  readonly revoked: ReadonlySet<string>
}

/** `*` matches anything, `prefix.*` anything under the prefix (and the prefix itself not), other `*` any run of characters. */
export function globMatcher (pattern: string | undefined): Match<string | undefined> {
  if (pattern == null || pattern === '*') return () => true
  if (!pattern.includes('*')) return (v) => v === pattern
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$')
  return (v) => v != null && re.test(v)
}

function labelsMatcher (want: Record<string, string> | undefined): Match<Labels | undefined> {
  const entries = Object.entries(want ?? {}).map(([k, v]) => [k, globMatcher(v)] as const)
  return (have) => entries.every(([k, m]) => have?.[k] !== undefined && m(have[k]))
}

function any<T> (matchers: Array<Match<T>>): Match<T> {
  return (v) => matchers.some((m) => m(v))
}

function compilePrincipal (p: RuleDoc['principals'][number]): Match<Principal> {
  const lab = labelsMatcher(p.labels)
  switch (p.kind) {
    case 'deployer': { const key = globMatcher(p.key); return (q) => q.kind === 'deployer' && key(q.key) && lab(q.labels) }
    case 'node': { const id = globMatcher(p.id); return (q) => q.kind === 'node' && id(q.id) && lab(q.labels) }
    case 'workload': {
      const ns = globMatcher(p.namespace); const n = globMatcher(p.name)
      return (q) => q.kind === 'workload' && ns(q.namespace) && n(q.name) && lab(q.labels)
    }
  }
}

function compileResource (r: RuleDoc['resources'][number]): Match<Resource> {
  const n = globMatcher(r.name); const ns = globMatcher(r.namespace); const lab = labelsMatcher(r.labels)
  return (q) => q.kind === r.kind && n(q.name) && (r.namespace == null || ns(q.namespace)) && lab(q.labels)
}

function compileWhen (when: Record<string, string> | undefined): Match<Request> {
  const conds = Object.entries(when ?? {}).map(([path, want]) => {
    const [who, , ...rest] = path.split('.')
    const key = rest.join('.'); const m = globMatcher(want)
    return (q: Request) => {
      const l = (who === 'principal' ? q.principal.labels : q.resource.labels)?.[key]
      return l !== undefined && m(l)
    }
  })
  return (q) => conds.every((c) => c(q))
}

function compileRule (r: RuleDoc): CompiledRule {
  return {
    id: r.id,
    effect: r.effect,
    actions: new Set(r.actions.includes('*') ? ACTIONS : r.actions),
    principal: any(r.principals.map(compilePrincipal)),
    resource: any(r.resources.map(compileResource)),
    when: compileWhen(r.when)
  }
}

/** Parses YAML (or JSON, a YAML subset) and validates it; throws PolicyError naming `source:line:column: field: problem`. */
export function parsePolicy (text: string, source: string): PolicySet {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number | undefined): string => {
    const { line, col } = lineCounter.linePos(offset ?? 0)
    return `${line}:${col}`
  }
  const e = doc.errors[0]
  if (e != null) {
    throw new PolicyError(source, `${at(e.pos[0])}: yaml: ${e.message.split('\n')[0]}`)
  }
  // Policies need no anchors: refusing aliases outright also rules out alias bombs
  // (a self-referencing anchor makes yaml's toJS take cubic time despite maxAliasCount).
  const alias = firstAlias(doc)
  if (alias != null) throw new PolicyError(source, `${at(alias)}: yaml: aliases (*name) are not allowed in a policy`)
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw new PolicyError(source, `1:1: yaml: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
  }
  const result = policySchema.safeParse(value)
  // a misspelt key also makes its correct spelling missing: report the unknown key first
  const issues = result.error?.issues ?? []
  const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]
  if (!result.success && issue != null) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol')
    // the deepest node that exists in the document, for the line and column
    let node: unknown
    for (let n = path.length; n >= 0 && node == null; n--) {
      const found = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)
      if (isNode(found)) node = found
    }
    let offset = isNode(node) ? node.range?.[0] : 0
    let field = path.length > 0 ? path.join('.') : '(document)'
    // for an unknown or invalid key, point at the key itself
    const badKey = issue.code === 'unrecognized_keys' ? issue.keys[0] : issue.code === 'invalid_key' ? String(path.at(-1)) : undefined
    if (badKey != null) {
      const parentPath = issue.code === 'unrecognized_keys' ? path : path.slice(0, -1)
      field = [...parentPath, badKey].join('.')
      const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true)
      const pair = isNode(parent) && 'items' in parent ? (parent.items as Array<{ key: unknown }>).find((it) => isNode(it.key) && (it.key as { value?: unknown }).value === badKey) : undefined
      if (pair != null && isNode(pair.key)) offset = pair.key.range?.[0]
    }
    const missing = badKey == null && path.length > 0 && isNode(doc.contents) && !doc.hasIn(path)
    throw new PolicyError(source, `${at(offset)}: ${field}: ${missing ? 'required field is missing' : problem(issue)}`)
  }
  if (!result.success) throw new PolicyError(source, '1:1: (document): invalid policy')
  return compilePolicy(result.data, source)
}

function problem (issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return 'unknown field'
  if (issue.code === 'invalid_key') return issue.issues[0]?.message ?? issue.message
  return issue.message
}

export function compilePolicy (p: PolicyDocument, source: string): PolicySet {
  const deployers = new Set<string>()
  for (const r of p.rules) for (const q of r.principals) if (q.kind === 'deployer' && q.key != null && !q.key.includes('*')) deployers.add(q.key)
  return { name: p.metadata.name, version: p.metadata.version, source, rules: p.rules.map(compileRule), deployers, revoked: new Set(p.revoked ?? []) }
}

function describe (q: Request): string {
  const p = q.principal
  const who = p.kind === 'deployer' ? `deployer ${p.key}` : p.kind === 'node' ? `node ${p.id}` : `workload ${p.namespace}/${p.name}`
  const what = q.resource.namespace != null ? `${q.resource.namespace}/${q.resource.name}` : q.resource.name
  return `${q.action} by ${who} on ${q.resource.kind} ${what}`
}

/** Pure: default deny, an explicit deny wins over any allow. */
export function evaluate (set: PolicySet, request: Request): Decision {
  let allow: string | undefined
  for (const r of set.rules) {
    if (!r.actions.has(request.action) || !r.principal(request.principal) || !r.resource(request.resource) || !r.when(request)) continue
    if (r.effect === 'deny') return { allowed: false, rule: r.id, reason: `rule ${r.id} denies ${describe(request)}` }
    allow ??= r.id
  }
  if (allow != null) return { allowed: true, rule: allow, reason: `rule ${allow} allows ${describe(request)}` }
  return { allowed: false, reason: `no rule allows ${describe(request)}` }
}

export type DecisionCounters = Record<string, { allow: number, deny: number }>

/** Holds the policy in force; a malformed or replayed update throws and leaves it in force. */
export class PolicyStore {
  #current: PolicySet
  readonly counters: DecisionCounters = {}
  readonly #onDenied: ((request: Request, decision: Decision) => void) | undefined

  /** `onDenied` receives every denial with the deciding rule, for the (injected) logger. */
  constructor (init: { initial?: PolicySet, onDenied?: (request: Request, decision: Decision) => void } = {}) {
    this.#current = init.initial ?? { name: 'empty', version: -1, source: '(none)', rules: [], deployers: new Set(), revoked: new Set() }
    this.#onDenied = init.onDenied
  }

  get current (): PolicySet { return this.#current }

  update (text: string, source: string): PolicySet {
    const next = parsePolicy(text, source)
    if (next.version <= this.#current.version) {
      throw new PolicyError(source, `1:1: metadata.version: version ${next.version} is not newer than ${this.#current.version} in force (replay refused)`)
    }
    this.#current = next
    return next
  }

  decide (request: Request): Decision {
    const d = evaluate(this.#current, request)
    const c = (this.counters[request.action] ??= { allow: 0, deny: 0 })
    if (d.allowed) c.allow++
    else {
      c.deny++
      this.#onDenied?.(request, d)
    }
    return d
  }
}
