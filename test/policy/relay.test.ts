/**
 * A node acting for someone else (src/policy/relay.ts): a deployer only with
 * that deployer's token, a workload only where allowed, never another node;
 * no claim at all is the node itself.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, issueToken as issue, keyId, verifyToken } from '../../src/policy/credentials.js'
import type { Principal } from '../../src/policy/engine.js'
import { TrustError } from '../../src/policy/errors.js'
import { relayedPrincipal, relayOfCurrentRequest } from '../../src/policy/relay.js'
import { asPrincipal, attachBearer } from '../../src/policy/request-context.js'

const node: Principal = { kind: 'node', id: '12D3KooWnode', labels: {} }
const deployerKey = await generateKey()
const deployer = keyId(deployerKey)
const otherKey = await generateKey()
const MESH = keyId(await generateKey())
const issueToken = async (key: Awaited<ReturnType<typeof generateKey>>, options: { now?: number, ttlMs?: number } = {}): Promise<string> => await issue(key, { mesh: MESH, ...options })
/** Stands in for Trust.authenticate (tested with the API): the token's signature, mesh and expiry. */
const trust = {
  authenticate: async (authorization: string | undefined): Promise<Principal> => ({ kind: 'deployer', key: (await verifyToken((authorization ?? '').replace(/^Bearer /, ''), { mesh: MESH })).sub })
}

async function refused (sender: Principal, relay: Parameters<typeof relayedPrincipal>[2], reason: string, message: RegExp, options?: Parameters<typeof relayedPrincipal>[3]): Promise<void> {
  try {
    await relayedPrincipal(trust, sender, relay, options)
  } catch (err) {
    assert.instance(err, TrustError)
    assert.is((err as TrustError).reason, reason)
    assert.match((err as Error).message, message)
    return
  }
  assert.unreachable(`${JSON.stringify(relay)} was believed`)
}

test('no claim: the node itself', async () => {
  assert.equal(await relayedPrincipal(trust, node, {}), node)
})

test('a deployer only with that deployer\'s own valid token', async () => {
  assert.equal(await relayedPrincipal(trust, node, { onBehalfOf: `deployer:${deployer}`, token: await issueToken(deployerKey) }), { kind: 'deployer', key: deployer })
  await refused(node, { onBehalfOf: `deployer:${deployer}` }, 'unsigned', /without the deployer's token/)
  await refused(node, { onBehalfOf: `deployer:${deployer}`, token: await issueToken(otherKey) }, 'wrong-subject', /with a token of/)
  await refused(node, { onBehalfOf: `deployer:${deployer}`, token: 'not-a-token' }, 'malformed', /does not verify/)
  const expired = await issueToken(deployerKey, { now: Date.now() - 2 * 3600_000, ttlMs: 3600_000 })
  await refused(node, { onBehalfOf: `deployer:${deployer}`, token: expired }, 'expired', /does not verify.*expired/)
  await refused(node, { onBehalfOf: `deployer:${deployer}`, token: await issue(deployerKey, { mesh: keyId(otherKey) }) }, 'wrong-audience', /does not verify.*not this mesh/)
})

test('a workload only where the protocol allows it; never another node; only a node relays', async () => {
  assert.equal(await relayedPrincipal(trust, node, { onBehalfOf: 'workload:default/web' }, { workloads: true }), { kind: 'workload', namespace: 'default', name: 'web' })
  await refused(node, { onBehalfOf: 'workload:default/web' }, 'denied', /may not act on behalf of workload:default\/web here/)
  await refused(node, { onBehalfOf: '12D3KooWother' }, 'denied', /another node/)
  await refused({ kind: 'workload', namespace: 'default', name: 'web', labels: {} }, { onBehalfOf: `deployer:${deployer}`, token: await issueToken(deployerKey) }, 'denied', /only a node may relay/)
})

test('an API request\'s relay carries its deployer and bearer token', async () => {
  assert.equal(relayOfCurrentRequest(), {})
  const token = await issueToken(deployerKey)
  const relay = await asPrincipal({ kind: 'deployer', key: deployer }, async () => {
    attachBearer(`Bearer ${token}`)
    await new Promise(resolve => setImmediate(resolve))
    return relayOfCurrentRequest()
  })
  assert.equal(relay, { onBehalfOf: `deployer:${deployer}`, token })
  assert.equal(await relayedPrincipal(trust, node, relay), { kind: 'deployer', key: deployer })
})

test.run()
