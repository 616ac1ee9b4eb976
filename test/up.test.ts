/**
 * `beemesh up`, the embedded default that `npm start` runs: N node processes on
 * loopback, a ready line once each hears the N-1 others, none left behind on Ctrl-C.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { get as httpGet } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parse as parseYaml } from 'yaml'
import { generateKey, issueToken, MeshTrustSchema, readKeyFile, verifySignedPolicy } from '../src/policy/credentials.js'
import { cli, freePortRange, startCli, tempDir, waitUntil } from './helpers/processes.js'


function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('up --nodes 3: ready line, 2 peers each, and Ctrl-C (SIGINT) stops every node', async () => {
  const base = await freePortRange(3)
  const up = startCli(['up', '--nodes', '3', '--api-port', String(base), '--data-dir', await tempDir()])
  const ready = await up.waitForOutput(/mesh ready: 3 nodes in [\d.]+s\n((?:\s+node-\d+\s+\S+\s+\S+\n){3})/, { timeoutMs: 15_000 })
  const urls = [...ready[1]!.matchAll(/(http:\/\/\S+)/g)].map(m => m[1])
  assert.equal(urls, [0, 1, 2].map(i => `http://127.0.0.1:${base + i}`))

  const peers = await cli(['peers', '-o', 'json', '--api', `http://127.0.0.1:${base}`])
  assert.is(peers.code, 0, peers.stderr)
  assert.is(JSON.parse(peers.stdout).length, 2)

  const pids: number[] = []
  for (const url of urls) {
    const s = await cli(['status', '-o', 'json', '--api', url!])
    assert.is(s.code, 0, s.stderr)
    pids.push(JSON.parse(s.stdout).pid)
  }
  assert.ok(pids.every(isAlive))

  up.child.kill('SIGINT')
  assert.is(await up.exited, 0)
  assert.match(up.stderr(), /all nodes stopped/)
  for (const pid of pids) assert.not.ok(isAlive(pid), `node process ${pid} should be gone`)
})

test('up reports a node that cannot start (API port taken) and leaves nothing running', async () => {
  const base = await freePortRange(2)
  const blocker = createServer()
  await new Promise<void>(resolve => blocker.listen(base + 1, '127.0.0.1', resolve))
  try {
    const dir = await tempDir()
    const r = await cli(['up', '--nodes', '2', '--api-port', String(base), '--data-dir', dir], { timeoutMs: 30_000 })
    assert.is(r.code, 1)
    assert.match(r.stderr, new RegExp(`node-1 exited \\(exit code 1\\) before it was ready: beemesh: error: cannot serve the API on 127\\.0\\.0\\.1:${base + 1}: address already in use`))
    const after = await cli(['status', '--api', `http://127.0.0.1:${base}`])
    assert.is(after.code, 1, 'node-0 must have been stopped')
  } finally {
    blocker.close()
  }
})

test('up --example (what npm start runs): the pipeline runs on 3 nodes and events flow through both actors', async () => {
  const base = await freePortRange(3)
  const up = startCli(['up', '--nodes', '3', '--api-port', String(base), '--data-dir', await tempDir(), '--example', 'examples/pipeline'])
  await up.waitForOutput(/mesh ready: 3 nodes/, { timeoutMs: 15_000 })
  const applied = await up.waitForOutput(/applied \S*fulfil\.ts as default\/fulfil[^\n]*\n[^\n]*applied \S*ingest\.ts as default\/ingest[^\n]*replica 0 → node-\d, replica 1 → node-\d/, { timeoutMs: 30_000 })
  assert.ok(applied != null)
  // The same order shows up in both actors' logs (printed workload by workload, so in either order).
  const order = await waitUntil(() => {
    const out = up.stdout()
    const priced = [...out.matchAll(/ingest\s+replica \d on node-\d\s+priced order (\d+)/g)].map(m => m[1])
    return priced.find(n => new RegExp(`fulfil\\s+replica \\d on node-\\d\\s+fulfilled order ${n ?? ''} `).test(out))
  }, { timeoutMs: 30_000, what: 'an order priced by ingest and fulfilled by fulfil' })
  assert.ok(Number(order) >= 1)
  const list = await cli(['get', 'workloads', '-o', 'json', '--api', `http://127.0.0.1:${base + 2}`])
  const workloads = JSON.parse(list.stdout) as Array<{ name: string, ready: number }>
  assert.equal(workloads.map(w => [w.name, w.ready]), [['fulfil', 2], ['ingest', 2]])
  up.child.kill('SIGINT')
  assert.is(await up.exited, 0)
})

/** The status of a GET sent with this Host header (fetch does not let a caller set Host). */
async function statusWithHost (url: string, host: string, token: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = httpGet(url, { headers: { host, authorization: `Bearer ${token}` } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
  })
}

/** All files under `dir` (recursively), as paths. */
async function filesUnder (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await filesUnder(p))
    else out.push(p)
  }
  return out
}

test('up: no anonymous callers; the run deployer\'s token works for the CLI, kubeconfig and ui with no flags; foreign keys, wrong aud, cross-site and revoked tokens are refused', async () => {
  const base = await freePortRange(2)
  const dir = await tempDir()
  // No deployer key or token of the test's own: only what `up` wrote is used.
  const env = { BEEMESH_KEY: '', BEEMESH_TOKEN: '', BEEMESH_MESH: '' }
  const up = startCli(['up', '--nodes', '2', '--api-port', String(base), '--data-dir', dir], { env })
  try {
    await up.waitForOutput(/mesh ready: 2 nodes/, { timeoutMs: 60_000 })
    const urls = [0, 1].map(i => `http://127.0.0.1:${base + i}`)
    const api = urls[0]!

    // The run deployer's key and token: mode 0600, in the mesh's dir, outside every node's data dir.
    for (const f of ['deployer.key', 'deployer.token', 'trust/root.key']) assert.is((await stat(join(dir, f))).mode & 0o777, 0o600, f)
    const token = (await readFile(join(dir, 'deployer.token'), 'utf8')).trim()
    const deployer = await readKeyFile(join(dir, 'deployer.key'))
    const mesh = MeshTrustSchema.parse(JSON.parse(await readFile(join(dir, 'trust/mesh.json'), 'utf8')))
    // The root key reaches no node: not in its data dir, not on its command line.
    for (const node of ['node-0', 'node-1']) {
      const files = await filesUnder(join(dir, node))
      assert.not.ok(files.some(f => f.endsWith('root.key')), `${node} holds no root key`)
      assert.ok(files.some(f => f.endsWith('credential.json')), `${node} got its credential from up`)
    }
    const pids: number[] = []
    for (const url of urls) {
      const s = await cli(['status', '-o', 'json', '--api', url], { env })
      assert.is(s.code, 0, s.stderr)
      const status = JSON.parse(s.stdout) as { pid: number, trust: { member: boolean } }
      assert.ok(status.trust.member)
      pids.push(status.pid)
    }
    for (const pid of pids) {
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
      assert.not.ok(argv.some(a => a.includes('root.key') || a === '--issue-with' || a === '--dev'), argv.join(' '))
    }

    // Anonymous: 401 on every data route, /metrics included.
    for (const path of ['/v1/status', '/v1/policy', '/metrics', '/v1/peers', '/v1/nodes', '/v1/workloads', '/api/v1/nodes', '/api/v1/namespaces']) {
      assert.is((await fetch(api + path)).status, 401, `anonymous ${path}`)
    }
    const authed = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })
    // A token of a freshly generated key (for the right mesh): 401, on every route.
    const stranger = await issueToken(await generateKey(), { mesh: mesh.root })
    for (const path of ['/v1/status', '/v1/policy', '/metrics', '/v1/peers', '/v1/nodes', '/api/v1/nodes', '/api/v1/namespaces']) {
      const r = await fetch(api + path, { headers: authed(stranger) })
      assert.is(r.status, 401, `stranger ${path}`)
    }
    assert.match(await (await fetch(api + '/v1/status', { headers: authed(stranger) })).text(), /is not named by policy/)
    // The run deployer's key with the wrong aud: 401.
    const wrongAud = await issueToken(deployer.key, { mesh: deployer.id })
    const aud = await fetch(api + '/v1/status', { headers: authed(wrongAud) })
    assert.is(aud.status, 401)
    assert.match(await aud.text(), /is for mesh .*, not this mesh/)
    // The run deployer's token reads everything, Prometheus' /metrics included.
    for (const path of ['/v1/status', '/v1/policy', '/metrics', '/v1/peers', '/v1/nodes', '/api/v1/nodes', '/api/v1/namespaces']) {
      assert.is((await fetch(api + path, { headers: authed(token) })).status, 200, `deployer ${path}`)
    }

    // What any web page can send: a cross-site text/plain POST (403), even with a token; the same
    // POST from the API's own origin is still refused for its type (415); a foreign Host (DNS rebinding): 403.
    const spec = JSON.stringify({ spec: { name: 'x' } })
    const crossSite = await fetch(api + '/v1/workloads', { method: 'POST', headers: { 'content-type': 'text/plain', origin: 'http://evil.example' }, body: spec })
    assert.is(crossSite.status, 403)
    assert.is((await fetch(api + '/v1/workloads', { method: 'POST', headers: { ...authed(token), 'content-type': 'text/plain', origin: 'http://evil.example' }, body: spec })).status, 403)
    assert.is((await fetch(api + '/v1/workloads', { method: 'POST', headers: { ...authed(token), 'content-type': 'text/plain', origin: api }, body: spec })).status, 415)
    assert.is((await fetch(api + '/v1/workloads', { method: 'POST', headers: { ...authed(token), 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' })).status, 415)
    assert.is(await statusWithHost(`${api}/v1/status`, `evil.example:${base}`, token), 403)
    assert.is(await statusWithHost(`${api}/v1/status`, `localhost:${base}`, token), 200)
    assert.is((await fetch(api + '/v1/status', { headers: { ...authed(token), origin: api } })).status, 200)

    // The CLI with no flags but --api, `beemesh kubeconfig` (its user's token) and `beemesh ui` (#token=) use the run token.
    const peers = await cli(['peers', '-o', 'json', '--api', urls[1]!], { env })
    assert.is(peers.code, 0, peers.stderr)
    assert.is((JSON.parse(peers.stdout) as unknown[]).length, 1)
    const kc = await cli(['kubeconfig', '--api', api], { env })
    assert.is(kc.code, 0, kc.stderr)
    const config = parseYaml(kc.stdout) as { users: Array<{ user: { token?: string } }> }
    const kubeToken = config.users[0]!.user.token
    assert.is(kubeToken, token)
    const nodes = await fetch(api + '/api/v1/nodes', { headers: authed(kubeToken!) })
    assert.is(nodes.status, 200)
    assert.is((await nodes.json() as { items: unknown[] }).items.length, 2)
    const ui = await cli(['ui', '--no-open', '--api', api], { env })
    assert.is(ui.code, 0, ui.stderr)
    assert.is(ui.stdout.trim(), `${api}/ui/#token=${encodeURIComponent(token)}`)

    // Revocation spreads like a policy: once a policy listing the deployer as revoked is applied
    // on one node, its token gets 401 on every node.
    const current = await verifySignedPolicy(mesh.policy, mesh.root)
    const doc = parseYaml(current.text) as { metadata: { version: number }, revoked?: string[] }
    doc.metadata.version += 1
    doc.revoked = [deployer.id]
    const file = join(dir, 'revoke.yaml')
    await writeFile(file, JSON.stringify(doc))
    const applied = await cli(['policy', 'apply', file, '--root', join(dir, 'trust/root.key'), '--api', api], { env })
    assert.is(applied.code, 0, applied.stderr)
    for (const url of urls) {
      await waitUntil(async () => (await fetch(url + '/v1/status', { headers: authed(token) })).status === 401, { what: `the revoked token refused by ${url}`, timeoutMs: 10_000 })
    }
    assert.match(await (await fetch(urls[1]! + '/v1/status', { headers: authed(token) })).text(), /is revoked by policy/)
  } finally {
    up.child.kill('SIGINT')
    assert.is(await up.exited, 0)
  }
})

test('up rejects a bad --nodes value', async () => {
  const r = await cli(['up', '--nodes', 'three'])
  assert.is(r.code, 2)
  assert.match(r.stderr, /--nodes must be a whole number/)
})

test.run()
