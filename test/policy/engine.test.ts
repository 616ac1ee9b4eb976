/**
 * The policy engine: default deny, allow, deny wins, globs, label conditions,
 * every principal kind; malformed documents name line, column and field; the
 * store keeps the old policy on a bad or replayed update and counts decisions.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ACTIONS, evaluate, parsePolicy, PolicyStore, type Action, type Labels, type Principal, type Request, type Resource } from '../../src/policy/engine.js'
import { PolicyError } from '../../src/policy/errors.js'
import { oneLineError } from '../helpers/expect.js'
import { exampleRules } from '../helpers/fuzz.js'

const SRC = 'policies/base.yaml'
const KEY = 'ed25519:AAAA'

function doc (version: number, rules: string): string {
  return `apiVersion: beemesh.io/v1
kind: Policy
metadata: { name: base, version: ${version} }
rules:${rules === '' ? ' []' : '\n' + rules}`
}

const BASE = doc(3, exampleRules(KEY))

const deployer: Principal = { kind: 'deployer', key: KEY }
const euNode: Principal = { kind: 'node', id: 'n1', labels: { zone: 'eu', class: 'small' } }
const usNode: Principal = { kind: 'node', id: 'n2', labels: { zone: 'us' } }
const shopCart: Principal = { kind: 'workload', namespace: 'shop', name: 'cart' }
const ns = (name: string): Resource => ({ kind: 'namespace', name })
const topic = (name: string): Resource => ({ kind: 'topic', name })
const set = parsePolicy(BASE, SRC)
const req = (principal: Principal, action: Action, resource: Resource): Request => ({ principal, action, resource })

function policyError (text: string, message: string | RegExp): void {
  oneLineError(() => parsePolicy(text, SRC), PolicyError, message)
}

test('a parsed policy carries name, version, source and one compiled rule per entry', () => {
  assert.is(set.name, 'base')
  assert.is(set.version, 3)
  assert.is(set.source, SRC)
  assert.equal(set.rules.map((r) => r.id), ['ops-deploy', 'eu-nodes-host', 'shop-publish', 'no-prod-for-eu'])
})

test('default deny names the action, principal and resource', () => {
  const d = evaluate(set, req(deployer, 'admin', ns('shop')))
  assert.equal(d, { allowed: false, reason: `no rule allows admin by deployer ${KEY} on namespace shop` })
})

test('a deployer key rule allows its actions on its namespace only', () => {
  assert.equal(evaluate(set, req(deployer, 'deploy', ns('shop'))), { allowed: true, rule: 'ops-deploy', reason: `rule ops-deploy allows deploy by deployer ${KEY} on namespace shop` })
  assert.ok(evaluate(set, req(deployer, 'delete', ns('shop'))).allowed)
  assert.not.ok(evaluate(set, req(deployer, 'deploy', ns('bank'))).allowed)
  assert.not.ok(evaluate(set, req({ kind: 'deployer', key: 'ed25519:BBBB' }, 'deploy', ns('shop'))).allowed)
})

test('a node rule matches on labels; a missing label does not match', () => {
  const wl: Resource = { kind: 'workload', namespace: 'shop', name: 'cart', labels: { tier: 'dev' } }
  assert.is(evaluate(set, req(euNode, 'host', wl)).rule, 'eu-nodes-host')
  assert.not.ok(evaluate(set, req(usNode, 'host', wl)).allowed)
  assert.not.ok(evaluate(set, req({ kind: 'node', id: 'n3' }, 'host', wl)).allowed)
})

test('an explicit deny wins over an allow and names its rule', () => {
  const prod: Resource = { kind: 'workload', namespace: 'shop', name: 'cart', labels: { tier: 'prod' } }
  const d = evaluate(set, req(euNode, 'host', prod))
  assert.is(d.allowed, false)
  assert.is(d.rule, 'no-prod-for-eu')
  assert.is(d.reason, 'rule no-prod-for-eu denies host by node n1 on workload shop/cart')
  // a deny listed before the allow wins too
  const reversed = parsePolicy(doc(1, `  - { id: d, effect: deny, principals: [{ kind: node }], actions: ["*"], resources: [{ kind: workload }] }
  - { id: a, effect: allow, principals: [{ kind: node }], actions: ["*"], resources: [{ kind: workload }] }
`), SRC)
  assert.is(evaluate(reversed, req(usNode, 'host', { kind: 'workload', name: 'x' })).rule, 'd')
})

test('when conditions need every label, on principal and resource', () => {
  const prod: Resource = { kind: 'workload', name: 'cart', labels: { tier: 'prod' } }
  // principal lacks class=small: the deny does not apply, the allow does
  assert.is(evaluate(set, req({ kind: 'node', id: 'n4', labels: { zone: 'eu', class: 'large' } }, 'host', prod)).rule, 'eu-nodes-host')
  // resource without labels: condition false
  assert.ok(evaluate(set, req(euNode, 'host', { kind: 'workload', name: 'cart' })).allowed)
})

test('a workload identity rule matches namespace and name glob; topic globs match under the prefix', () => {
  assert.is(evaluate(set, req(shopCart, 'publish', topic('orders.created'))).rule, 'shop-publish')
  assert.ok(evaluate(set, req(shopCart, 'subscribe', topic('orders.eu.paid'))).allowed)
  assert.not.ok(evaluate(set, req(shopCart, 'publish', topic('orders'))).allowed)
  assert.not.ok(evaluate(set, req(shopCart, 'publish', topic('ordersX.created'))).allowed)
  assert.not.ok(evaluate(set, req(shopCart, 'send', topic('orders.created'))).allowed)
  assert.not.ok(evaluate(set, req({ kind: 'workload', namespace: 'bank', name: 'cart' }, 'publish', topic('orders.created'))).allowed)
})

test('principal kinds do not cross: a node never matches a deployer or workload rule', () => {
  assert.not.ok(evaluate(set, req({ kind: 'node', id: KEY }, 'deploy', ns('shop'))).allowed)
  assert.not.ok(evaluate(set, req({ kind: 'node', id: 'n1', labels: { zone: 'eu' } }, 'publish', topic('orders.x'))).allowed)
  assert.not.ok(evaluate(set, req({ kind: 'deployer', key: KEY, labels: { zone: 'eu' } }, 'host', { kind: 'workload', name: 'x' })).allowed)
})

test('regex characters in names are literal; "*" in the middle matches any run', () => {
  const p = parsePolicy(doc(1, `  - { id: r, effect: allow, principals: [{ kind: node, id: "n(1)+" }], actions: [read], resources: [{ kind: topic, name: "a*z" }] }
`), SRC)
  assert.ok(evaluate(p, req({ kind: 'node', id: 'n(1)+' }, 'read', topic('abcz'))).allowed)
  assert.ok(evaluate(p, req({ kind: 'node', id: 'n(1)+' }, 'read', topic('az'))).allowed)
  assert.not.ok(evaluate(p, req({ kind: 'node', id: 'n11' }, 'read', topic('abcz'))).allowed)
})

test('JSON documents are accepted', () => {
  const p = parsePolicy(JSON.stringify({
    apiVersion: 'beemesh.io/v1', kind: 'Policy', metadata: { name: 'j', version: 1 },
    rules: [{ id: 'all', effect: 'allow', principals: [{ kind: 'node' }], actions: ['*'], resources: [{ kind: 'topic' }] }]
  }), 'p.json')
  assert.ok(evaluate(p, req(usNode, 'admin', topic('x'))).allowed)
})

test('malformed YAML is reported with line and column', () => {
  policyError('apiVersion: beemesh.io/v1\nkind: Policy\nmetadata: { name: base\n', /^policies\/base\.yaml:\d+:\d+: yaml: /)
  policyError('a: &a [1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n', /^policies\/base\.yaml:2:8: yaml: aliases .*not allowed/i)
  policyError('a: 1\na: 2\n', /^policies\/base\.yaml:2:1: yaml: /)
})

test('wrong fields are reported with line, column and field path', () => {
  policyError(BASE.replace('effect: allow', 'effect: permit'), /^policies\/base\.yaml:6:13: rules\.0\.effect: Invalid option: expected one of "allow"\|"deny"$/)
  policyError(BASE.replace('actions: [deploy, delete]', 'actions: [deploy, destroy]'), /^policies\/base\.yaml:8:23: rules\.0\.actions\.1: /)
  policyError(BASE.replace('    actions: [host]\n    resources: [{ kind: workload, name', '    actoins: [host]\n    resources: [{ kind: workload, name'), 'policies/base.yaml:13:5: rules.1.actoins: unknown field')
  policyError(BASE.replace('version: 3', 'version: "3"'), /^policies\/base\.yaml:3:34: metadata\.version: /)
  policyError(BASE.replace('resource.labels.tier', 'resource.tier'), /^policies\/base\.yaml:25:13: rules\.3\.when\.resource\.tier: expected principal\.labels\.<key> or resource\.labels\.<key>$/)
  policyError(BASE.replace('kind: node, labels: { zone: eu } }]\n    actions: [host]\n    resources: [{ kind: workload, name', 'kind: robot }]\n    actions: [host]\n    resources: [{ kind: workload, name'), /^policies\/base\.yaml:12:\d+: rules\.1\.principals\.0\.kind: /)
  policyError(BASE.replace('id: shop-publish', 'id: ops-deploy'), /^policies\/base\.yaml:15:9: rules\.2\.id: duplicate rule id "ops-deploy"$/)
  policyError(BASE.replace('    effect: allow\n    principals: [{ kind: deployer', '    principals: [{ kind: deployer'), /^policies\/base\.yaml:5:5: rules\.0\.effect: required field is missing/)
  policyError('[]', /^policies\/base\.yaml:1:1: \(document\): /)
  policyError('', /^policies\/base\.yaml:1:1: \(document\): /)
})

test('the store refuses a malformed update and keeps the old policy in force', () => {
  const store = new PolicyStore()
  assert.not.ok(store.decide(req(deployer, 'deploy', ns('shop'))).allowed)
  store.update(BASE, SRC)
  oneLineError(() => store.update(doc(4, '  - { id: x }\n'), 'next.yaml'), PolicyError, /^next\.yaml:5:\d+: rules\.0\.effect: /)
  assert.is(store.current.version, 3)
  assert.ok(store.decide(req(deployer, 'deploy', ns('shop'))).allowed)
})

test('the store refuses an older or equal version (replay) and accepts a newer one', () => {
  const store = new PolicyStore()
  store.update(BASE, SRC)
  oneLineError(() => store.update(doc(3, ''), 'old.yaml'), PolicyError, 'old.yaml:1:1: metadata.version: version 3 is not newer than 3 in force (replay refused)')
  oneLineError(() => store.update(doc(2, ''), 'old.yaml'), PolicyError, /version 2 is not newer than 3/)
  assert.is(store.current.version, 3)
  store.update(doc(4, ''), 'new.yaml')
  assert.is(store.current.version, 4)
  assert.not.ok(store.decide(req(deployer, 'deploy', ns('shop'))).allowed)
})

test('the store counts decisions per action and effect and reports each denial with its rule', () => {
  const denied: string[] = []
  const store = new PolicyStore({ initial: set, onDenied: (_r, d) => denied.push(`${d.rule ?? '(default)'}: ${d.reason}`) })
  store.decide(req(deployer, 'deploy', ns('shop')))
  store.decide(req(deployer, 'deploy', ns('bank')))
  store.decide(req(deployer, 'deploy', ns('bank')))
  store.decide(req(shopCart, 'publish', topic('orders.a')))
  store.decide(req(euNode, 'host', { kind: 'workload', name: 'db', labels: { tier: 'prod' } }))
  assert.equal(store.counters, { deploy: { allow: 1, deny: 2 }, publish: { allow: 1, deny: 0 }, host: { allow: 0, deny: 1 } })
  assert.equal(denied, [
    `(default): no rule allows deploy by deployer ${KEY} on namespace bank`,
    `(default): no rule allows deploy by deployer ${KEY} on namespace bank`,
    'no-prod-for-eu: rule no-prod-for-eu denies host by node n1 on workload db'
  ])
})

// a tiny seeded generator: property tests are reproducible
function rng (seed: number): () => number {
  return () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 }
}

test('property: random requests never throw, and a set with no rules denies everything', () => {
  const r = rng(7)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
  const names = ['', '*', 'shop', 'orders', 'orders.x', 'a.b.c', 'n1', KEY, '.*', '\\']
  const lbls: Array<Labels | undefined> = [undefined, {}, { zone: 'eu' }, { zone: 'eu', class: 'small' }, { tier: 'prod' }]
  const empty = parsePolicy(doc(1, ''), SRC)
  for (let i = 0; i < 2000; i++) {
    const kind = pick(['deployer', 'node', 'workload'] as const)
    const principal: Principal = kind === 'deployer'
      ? { kind, key: pick(names), labels: pick(lbls) }
      : kind === 'node' ? { kind, id: pick(names), labels: pick(lbls) } : { kind, namespace: pick(names), name: pick(names), labels: pick(lbls) }
    const resource: Resource = { kind: pick(['namespace', 'workload', 'topic'] as const), name: pick(names), namespace: pick([undefined, 'shop']), labels: pick(lbls) }
    const request = req(principal, pick(ACTIONS), resource)
    const d = evaluate(set, request)
    assert.type(d.reason, 'string')
    if (d.allowed) assert.type(d.rule, 'string')
    const e = evaluate(empty, request)
    assert.is(e.allowed, false)
    assert.is(e.rule, undefined)
    assert.match(e.reason, /^no rule allows /)
  }
})

test.run()
