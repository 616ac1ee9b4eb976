/**
 * Service meshing between actors (issue 10) on a mesh of real node processes:
 * a caller actor on one node calls a 2-replica service on others 1,000 times;
 * a replica's node is SIGKILLed mid-run and idempotent calls all succeed
 * while its service record leaves the DHT; a caller without the grant is
 * refused at its own node and, when it skips that check, at the callee's;
 * the bad inputs of the issue get their codes; egress goes through policy.
 */
import { spawn } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parse, stringify } from 'yaml'
import type { LogLine } from '../src/protocol/messages.js'
import { defaultPolicyText } from '../src/policy/defaults.js'
import { generateKey, issueCredential, writeKeyFile } from '../src/policy/credentials.js'
import { bearerFor } from '../src/cli/api-client.js'
import { cli, makeTrust, metric, type NodeProcess, ROOT, type Running, startNode, type TestTrust, trustFlags, waitUntil } from './helpers/processes.js'

const FIXTURES = 'test/fixtures/services'
let trust: TestTrust
let nodes: NodeProcess[] = []
const extra: Running[] = []
let site: Server
let siteUrl = ''

/** The default policy, with `echo` forbidden to the intruder and egress granted to the fetcher for 127.0.0.1 only. */
function policy (deployer: string): string {
  const doc = parse(defaultPolicyText({ admins: [deployer], name: 'services-test' })) as { rules: unknown[] }
  doc.rules.push(
    { id: 'no-intruders', effect: 'deny', principals: [{ kind: 'workload', name: 'intruder' }], actions: ['call'], resources: [{ kind: 'service', name: 'echo' }] },
    { id: 'fetcher-loopback', effect: 'allow', principals: [{ kind: 'workload', name: 'fetcher' }], actions: ['egress'], resources: [{ kind: 'host', name: '127.0.0.1' }] }
  )
  return stringify(doc)
}


async function logLines (node: NodeProcess, name: string): Promise<LogLine[]> {
  return await node.api.request<LogLine[]>(`/v1/workloads/default/${name}/logs`, { timeoutMs: 10_000 })
}

/** The `calls done` summary the caller logs after `since`. */
async function summary (node: NodeProcess, since: number): Promise<{ issued: number, ok: number, failed: number, codes: Record<string, number>, byNode: Record<string, number>, errors: string[] } | undefined> {
  const line = (await logLines(node, 'caller')).find(l => l.ts > since && l.message === 'calls done')
  return line?.fields as never
}

async function publish (node: NodeProcess, topic: string, data: unknown): Promise<void> {
  await node.api.request(`/v1/topics/${topic}/messages`, { method: 'POST', body: { data }, timeoutMs: 10_000 })
}

interface ServiceView { replicas: Array<{ peerId: string, ready: boolean, workloadId: string, replica: number }>, records: Array<{ node: string, endpoints: unknown[] }>, address?: string }

async function service (node: NodeProcess, name: string): Promise<ServiceView> {
  const r = await cli(['services', name, '-o', 'json', '--api', node.apiUrl])
  assert.is(r.code, 0, r.stderr)
  return JSON.parse(r.stdout) as ServiceView
}

function live (): NodeProcess[] {
  return nodes.filter(n => n.child.exitCode == null && n.child.signalCode == null)
}

test.before(async () => {
  trust = await makeTrust(policy)
  process.env.BEEMESH_KEY = trust.deployerKeyFile
  process.env.BEEMESH_MESH = trust.meshFile
  const flags = trustFlags(trust)
  // node 0 is the client; 1-3 may host the service (3 is the spare a killed replica moves to).
  nodes.push(await startNode({ trust: flags, extra: ['--label', 'role=client'] }))
  nodes.push(...await Promise.all([1, 2, 3].map(async () => await startNode({ trust: flags, bootstrap: [nodes[0]!.address], extra: ['--label', 'role=server'] }))))
  await Promise.all(nodes.map(async n => await waitUntil(async () => (await n.peers()).length === 3, { what: `${n.peerId} to see 3 peers` })))
  site = createServer((_req, res) => { res.end('hello from outside') })
  await new Promise<void>(resolve => site.listen(0, '127.0.0.1', resolve))
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`
})

test.after(async () => {
  for (const r of extra) r.child.kill('SIGKILL')
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
  site?.close()
})

test('a 2-replica service: ready on 2 server nodes, listed with its address, answered through the CLI', async () => {
  for (const file of ['echo.ts', 'caller.ts']) {
    const r = await cli(['apply', `${FIXTURES}/${file}`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
    assert.is(r.code, 0, r.stderr)
  }
  const view = await waitUntil(async () => {
    const v = await service(nodes[0]!, 'echo')
    return v.replicas.filter(r => r.ready).length === 2 ? v : undefined
  }, { what: 'echo ready on 2 nodes', timeoutMs: 30_000 })
  assert.ok(view.replicas.every(r => r.peerId !== nodes[0]!.peerId), 'the replicas run on server nodes')
  assert.match(view.address ?? '', /^198\.18\.\d+\.\d+$/)
  const list = await cli(['services', '--api', nodes[0]!.apiUrl])
  assert.is(list.code, 0, list.stderr)
  assert.match(list.stdout, /NAMESPACE\s+NAME\s+ADDRESS\s+PORTS\s+READY/)
  assert.match(list.stdout, /default\s+echo\s+198\.18\.\S+\s+<call>\s+2\/2\s+default\/echo/)

  const r = await cli(['call', 'echo', '{"i":7}', '--api', nodes[0]!.apiUrl])
  assert.is(r.code, 0, r.stderr)
  const reply = JSON.parse(r.stdout) as { echo: { i: number }, node: string, caller: string }
  assert.equal(reply.echo, { i: 7 })
  assert.ok(view.replicas.some(x => x.peerId === reply.node))
  assert.is(reply.caller, `deployer:${trust.deployer}`)
})

test('an actor calls the service 1,000 times: every call is answered, by both replicas', async () => {
  const since = Date.now()
  await publish(nodes[0]!, 'calls.go', { service: 'echo', n: 1000, concurrency: 8 })
  const s = await waitUntil(async () => await summary(nodes[0]!, since), { what: 'the caller\'s summary', timeoutMs: 120_000, intervalMs: 250 })
  assert.equal({ issued: s.issued, ok: s.ok, failed: s.failed }, { issued: 1000, ok: 1000, failed: 0 }, JSON.stringify(s))
  const servers = Object.keys(s.byNode)
  assert.is(servers.length, 2, `answered by ${JSON.stringify(s.byNode)}`)
  // Power of two choices on in-flight calls spreads the load: neither replica takes almost all of it.
  assert.ok(Object.values(s.byNode).every(n => n >= 150), JSON.stringify(s.byNode))
  console.log(`  1,000 calls answered: ${JSON.stringify(Object.values(s.byNode))} per replica`)
  const callerSide = await metric(nodes[0]!, 'beemesh_calls_total', { service: 'default/echo', side: 'caller', outcome: 'ok' })
  assert.ok(callerSide >= 1000, `caller-side ok calls counted: ${callerSide}`)
})

test('a replica\'s node SIGKILLed mid-run: idempotent calls all succeed, and its service record leaves the DHT', async () => {
  const before = await service(nodes[0]!, 'echo')
  const records = await waitUntil(async () => {
    const v = await service(nodes[0]!, 'echo')
    return v.records.length === 2 ? v.records : undefined
  }, { what: 'both hosts\' service records in the DHT', timeoutMs: 20_000 })
  const victimId = before.replicas.find(r => r.ready)!.peerId
  assert.ok(records.some(r => r.node === victimId))
  const victim = nodes.find(n => n.peerId === victimId)!
  const since = Date.now()
  await publish(nodes[0]!, 'calls.go', { service: 'echo', durationMs: 8_000, concurrency: 4, idempotent: true, timeout: 5_000 })
  // Kill once calls are flowing.
  await waitUntil(async () => (await logLines(nodes[0]!, 'caller')).some(l => l.ts > since && l.message === 'progress 200'), { what: 'calls flowing', timeoutMs: 20_000, intervalMs: 50 })
  await victim.kill('SIGKILL')
  const s = await waitUntil(async () => await summary(nodes[0]!, since), { what: 'the caller\'s summary', timeoutMs: 60_000, intervalMs: 250 })
  assert.is(s.failed, 0, JSON.stringify(s))
  assert.ok(s.ok > 200, JSON.stringify(s))
  console.log(`  ${s.ok} idempotent calls across the kill, ${s.failed} failed; answered by ${JSON.stringify(s.byNode)}`)
  // The dead host's record expires (it cannot refresh it) and is no longer listed.
  const started = Date.now()
  await waitUntil(async () => {
    const v = await service(live()[0]!, 'echo')
    return !v.records.some(r => r.node === victimId) && !v.replicas.some(r => r.peerId === victimId)
  }, { what: 'the dead replica\'s record gone', timeoutMs: 30_000, intervalMs: 500 })
  console.log(`  the dead replica's record was gone ${Date.now() - started} ms after the run`)
  // The guardian re-placed it: 2 ready replicas again, on live nodes.
  await waitUntil(async () => (await service(nodes[0]!, 'echo')).replicas.filter(r => r.ready && r.peerId !== victimId).length === 2, { what: 'echo back to 2 ready replicas', timeoutMs: 30_000 })
})

test('a caller without the grant is refused at its own node, and at the callee\'s when it skips that check', async () => {
  const r = await cli(['apply', `${FIXTURES}/intruder.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const deniedBefore = await metric(nodes[0]!, 'beemesh_calls_denied_total', { service: 'default/echo', side: 'caller' })
  const since = Date.now()
  await publish(nodes[0]!, 'intrude', {})
  const line = await waitUntil(async () => (await logLines(nodes[0]!, 'intruder')).find(l => l.ts > since && l.message.startsWith('intrusion')), { what: 'the intruder\'s outcome', timeoutMs: 20_000 })
  assert.is(line.message, 'intrusion refused')
  assert.is((line.fields as { code: string }).code, 'DENIED')
  assert.match((line.fields as { message: string }).message, /forbidden.*no-intruders|deny/i)
  assert.is(await metric(nodes[0]!, 'beemesh_calls_denied_total', { service: 'default/echo', side: 'caller' }), deniedBefore + 1)

  // A member whose node would refuse this call sends it straight to a replica's node: refused there too.
  const view = await service(nodes[0]!, 'echo')
  const target = view.replicas.find(x => x.ready)!
  const callee = nodes.find(n => n.peerId === target.peerId)!
  const calleeBefore = await metric(callee, 'beemesh_calls_denied_total', { service: 'default/echo', side: 'callee' })
  const rogueKey = join(trust.dir, 'rogue-caller.key')
  const rogueId = await writeKeyFile(rogueKey, await generateKey())
  const credFile = join(trust.dir, 'rogue-caller.cred.json')
  await writeFile(credFile, JSON.stringify(await issueCredential(trust.rootKey, rogueId)))
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/security/rogue.ts'), nodes[0]!.address, 'call', credFile, rogueKey, callee.peerId, 'default/echo', target.workloadId, String(target.replica), 'workload:default/intruder'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  extra.push({ child, stdout: () => out, stderr: () => err, exited: new Promise(resolve => child.on('exit', resolve)), waitForOutput: async () => { throw new Error('unused') } })
  const called = await waitUntil(() => /"event":"called","reply":(\{.*\})\}/.exec(out), { what: `the rogue's call (stdout: ${out.slice(-500)}, stderr: ${err.slice(-300)})`, timeoutMs: 30_000 })
  const reply = JSON.parse(called[1]!) as { ok: boolean, code: string, message: string }
  assert.is(reply.ok, false)
  assert.is(reply.code, 'DENIED')
  assert.match(reply.message, new RegExp(`forbidden by ${callee.peerId}`))
  assert.is(await metric(callee, 'beemesh_calls_denied_total', { service: 'default/echo', side: 'callee' }), calleeBefore + 1)
  child.kill('SIGKILL')

  // Another member claims to call for the admin deployer, without the deployer's token: refused by the callee.
  const claimKey = join(trust.dir, 'rogue-claimer.key')
  const claimId = await writeKeyFile(claimKey, await generateKey())
  const claimCred = join(trust.dir, 'rogue-claimer.cred.json')
  await writeFile(claimCred, JSON.stringify(await issueCredential(trust.rootKey, claimId)))
  const claim = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/security/rogue.ts'), callee.address, 'call', claimCred, claimKey, callee.peerId, 'default/echo', target.workloadId, String(target.replica), `deployer:${trust.deployer}`], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let claimOut = ''
  let claimErr = ''
  claim.stdout.on('data', (d: Buffer) => { claimOut += d.toString() })
  claim.stderr.on('data', (d: Buffer) => { claimErr += d.toString() })
  extra.push({ child: claim, stdout: () => claimOut, stderr: () => claimErr, exited: new Promise(resolve => claim.on('exit', resolve)), waitForOutput: async () => { throw new Error('unused') } })
  const claimed = await waitUntil(() => /"event":"called","reply":(\{.*\})\}/.exec(claimOut), { what: `the rogue's deployer call (stdout: ${claimOut.slice(-500)}, stderr: ${claimErr.slice(-300)})`, timeoutMs: 30_000 })
  const claimReply = JSON.parse(claimed[1]!) as { ok: boolean, code: string, message: string }
  assert.is(claimReply.ok, false, `a member called as deployer ${trust.deployer} without proof: ${JSON.stringify(claimReply)}`)
  assert.is(claimReply.code, 'DENIED')
  assert.match(claimReply.message, new RegExp(`forbidden by ${callee.peerId}: .*claims to act for deployer ${trust.deployer} without the deployer's token`))
  assert.is(await metric(callee, 'beemesh_calls_denied_total', { service: 'default/echo', side: 'callee' }), calleeBefore + 2)
  claim.kill('SIGKILL')
})

test('a stateful service: a call is an event for the machine, the reply the state it led to', async () => {
  const r = await cli(['apply', `${FIXTURES}/tally.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  await waitUntil(async () => (await service(nodes[0]!, 'tally')).replicas.some(x => x.ready) || undefined, { what: 'tally ready', timeoutMs: 30_000 })
  const first = await cli(['call', 'tally', '{"type":"inc","by":2}', '--api', nodes[0]!.apiUrl])
  assert.is(first.code, 0, first.stderr)
  const second = await cli(['call', 'tally', '{"type":"inc"}', '-o', 'json', '--api', nodes[0]!.apiUrl])
  assert.is(second.code, 0, second.stderr)
  const reply = JSON.parse(second.stdout) as { state: string, status: string, seq: number }
  assert.equal({ state: reply.state, status: reply.status, seq: reply.seq }, { state: 'counting', status: 'active', seq: 2 })
  const state = await nodes[0]!.api.request<{ context: { count: number } }>('/v1/workloads/default/tally/state')
  assert.is(state.context.count, 3)
  const bad = await cli(['call', 'tally', '{"nope":1}', '--api', nodes[0]!.apiUrl])
  assert.is(bad.code, 1)
  assert.match(bad.stderr, /an event needs a string "type"/)
})

test('bad input: unknown service, no healthy replica, timeout, handler failure, oversized request', async () => {
  const api = nodes[0]!.apiUrl
  const unknown = await cli(['call', 'nosuch', '{}', '--api', api])
  assert.is(unknown.code, 1)
  assert.match(unknown.stderr, /no workload offers service "default\/nosuch"/)

  const lonely = await cli(['apply', `${FIXTURES}/lonely.ts`, '--no-wait', '--api', api], { timeoutMs: 60_000 })
  assert.is(lonely.code, 0, lonely.stderr)
  const none = await waitUntil(async () => {
    const r = await cli(['call', 'lonely', '{}', '--api', api])
    return /no healthy replica/.test(r.stderr) ? r : undefined
  }, { what: 'lonely known to the node', timeoutMs: 15_000, intervalMs: 250 })
  assert.is(none.code, 1)
  assert.match(none.stderr, /no replica of default\/lonely is running/)

  const slow = await cli(['call', 'echo', '{"i":1,"sleepMs":3000}', '--timeout', '500', '--api', api])
  assert.is(slow.code, 1)
  assert.match(slow.stderr, /call to default\/echo: timed out/)
  const failing = await cli(['call', 'echo', '{"i":1,"fail":true}', '--api', api])
  assert.is(failing.code, 1)
  assert.match(failing.stderr, /echo was asked to fail/)

  const big = await fetch(`${api}/v1/services/default/echo/call`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${(await bearerFor(api))!}` }, body: JSON.stringify({ data: { blob: 'x'.repeat(1024 * 1024 + 10) } }) })
  assert.is(big.status, 413)
  assert.match(await big.text(), /the limit is 1048576/)
  // Nothing is left hanging: the service still answers at once.
  const after = await cli(['call', 'echo', '{"i":2}', '--api', api])
  assert.is(after.code, 0, after.stderr)
})

test('egress: ctx.fetch reaches a granted host, is refused for another, and the global fetch is withheld', async () => {
  const r = await cli(['apply', `${FIXTURES}/fetcher.ts`, '--api', nodes[0]!.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  const since = Date.now()
  await publish(nodes[0]!, 'fetch.go', { url: siteUrl })
  await waitUntil(async () => (await logLines(nodes[0]!, 'fetcher')).filter(l => l.ts > since && /fetch/.test(l.message)).length >= 2, { what: 'the fetcher\'s outcome', timeoutMs: 20_000 })
  const lines = (await logLines(nodes[0]!, 'fetcher')).filter(l => l.ts > since).map(l => l.message)
  assert.ok(lines.includes('fetched 200 hello from outside'), lines.join('\n'))
  assert.ok(lines.some(l => /^global fetch refused: fetch is not available to BeeMesh actors/.test(l)), lines.join('\n'))

  const since2 = Date.now()
  await publish(nodes[0]!, 'fetch.go', { url: siteUrl.replace('127.0.0.1', 'localhost') })
  const refused = await waitUntil(async () => (await logLines(nodes[0]!, 'fetcher')).find(l => l.ts > since2 && l.message.startsWith('fetch refused')), { what: 'the refused fetch', timeoutMs: 20_000 })
  assert.match(refused.message, /forbidden: workload:default\/fetcher may not reach localhost/)
  // Counted where the decision was made: the node hosting the fetcher.
  const placed = await nodes[0]!.api.request<{ placement: Array<{ peerId: string }> }>('/v1/workloads/default/fetcher')
  const host = live().find(n => n.peerId === placed.placement[0]?.peerId)!
  assert.is(await metric(host, 'beemesh_egress_total', { host: 'localhost', outcome: 'denied' }), 1)
  assert.is(await metric(host, 'beemesh_egress_total', { host: '127.0.0.1', outcome: 'allowed' }), 1)
})

test.run()
