/**
 * The CLI keeps the tokens it makes from a deployer key for their lifetime
 * (src/cli/api-client.ts, cachedToken), in the user's private cache: a loop
 * of CLI calls signs once. These tests run the real CLI against a real node,
 * and try to make it use a token it should not (another mesh's, a planted one).
 */
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { bearerFor, useCredentials } from '../src/cli/api-client.js'
import { verifyToken } from '../src/policy/credentials.js'
import { cli, startNode, tempDir, testTrust, type NodeProcess } from './helpers/processes.js'

let node: NodeProcess

test.before(async () => { node = await startNode() })
test.after(async () => { await node.kill('SIGKILL') })

async function tokenFiles (cache: string): Promise<string[]> {
  return (await readdir(join(cache, 'tokens')).catch(() => [])).filter(f => f.endsWith('.json'))
}

test('the second call uses the token the first made (one token file, unchanged), 0600 in a 0700 directory', async () => {
  const cache = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: cache }
  const first = await cli(['status', '-o', 'json', '--api', node.apiUrl], { env })
  assert.is(first.code, 0, first.stderr)
  const files = await tokenFiles(cache)
  assert.is(files.length, 1)
  const file = join(cache, 'tokens', files[0]!)
  assert.is((await stat(file)).mode & 0o777, 0o600)
  assert.is((await stat(join(cache, 'tokens'))).mode & 0o777, 0o700)
  const before = await readFile(file, 'utf8')
  const mtime = (await stat(file)).mtimeMs
  const second = await cli(['status', '-o', 'json', '--api', node.apiUrl], { env })
  assert.is(second.code, 0, second.stderr)
  assert.is(await readFile(file, 'utf8'), before)
  assert.is((await stat(file)).mtimeMs, mtime)
  assert.equal(await tokenFiles(cache), files)
})

test('a planted token is not read from a file others may write: the CLI makes its own', async () => {
  const cache = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: cache }
  assert.is((await cli(['status', '--api', node.apiUrl], { env })).code, 0)
  const [name] = await tokenFiles(cache)
  const file = join(cache, 'tokens', name!)
  // a token that would be refused (401) if the CLI sent it
  await writeFile(file, JSON.stringify({ token: 'bm1.planted.token', expiresAt: Date.now() + 3_600_000 }))
  await chmod(file, 0o666)
  const r = await cli(['status', '--api', node.apiUrl], { env })
  assert.is(r.code, 0, r.stderr)
  assert.not.match(await readFile(file, 'utf8'), /planted/)
})

test('a token for another mesh is not reused when the mesh file changes in place', async () => {
  const cache = await tempDir('beemesh-cache-')
  const trust = await testTrust()
  const dir = await tempDir()
  const meshFile = join(dir, 'mesh.json')
  await writeFile(meshFile, await readFile(trust.meshFile))
  const env = { BEEMESH_CACHE_DIR: cache, BEEMESH_MESH: meshFile }
  assert.is((await cli(['status', '--api', node.apiUrl], { env })).code, 0)
  // the same path now names another mesh (a re-made trust dir): the old token's audience is wrong
  const other = JSON.parse(await readFile(trust.meshFile, 'utf8')) as { root: string }
  await writeFile(meshFile, JSON.stringify({ ...other, name: 'other' }, null, 2) + '\n\n')
  assert.is((await cli(['status', '--api', node.apiUrl], { env })).code, 0)
  assert.is((await tokenFiles(cache)).length, 2, 'a second token, made for the mesh file as it is now')
})

test('BEEMESH_TOKEN_CACHE=0: no token kept', async () => {
  const cache = await tempDir('beemesh-cache-')
  assert.is((await cli(['status', '--api', node.apiUrl], { env: { BEEMESH_CACHE_DIR: cache, BEEMESH_TOKEN_CACHE: '0' } })).code, 0)
  assert.equal(await tokenFiles(cache), [])
})

test('a long-lived caller keeps a valid token: one near its end is made again, one with time left is reused', async () => {
  const trust = await testTrust()
  const previous = process.env.BEEMESH_TOKEN_CACHE
  process.env.BEEMESH_TOKEN_CACHE = '0'
  try {
    useCredentials({ keyPath: trust.deployerKeyFile, mesh: trust.meshFile })
    // 10 minutes: reused while more than 2 minutes are left
    const long = await bearerFor(node.apiUrl)
    assert.is(await bearerFor(node.apiUrl), long)
    // 50 s: less than the minute a token must have left, so every call makes a new one (the scale
    // bench's tokens ran out 10 minutes into a 13-minute run, when the first one was kept for good)
    const first = await bearerFor(node.apiUrl, { ttlMs: 50_000 })
    const firstClaims = await verifyToken(first!, { mesh: trust.root })
    let second = first
    for (let i = 0; second === first && i < 100; i++) second = await bearerFor(node.apiUrl, { ttlMs: 50_000 })
    assert.is.not(second, first, 'a token with less than a minute left is made again')
    const secondClaims = await verifyToken(second!, { mesh: trust.root })
    assert.ok(secondClaims.exp > firstClaims.exp, `the new token outlives the old (${secondClaims.exp} > ${firstClaims.exp})`)
  } finally {
    if (previous == null) delete process.env.BEEMESH_TOKEN_CACHE
    else process.env.BEEMESH_TOKEN_CACHE = previous
    useCredentials({ keyPath: trust.deployerKeyFile, mesh: trust.meshFile })
  }
})

test.run()
