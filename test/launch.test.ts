/**
 * How a node starts (src/cli/launch.ts, src/node/process-flags.ts): from the
 * single-file bundle through V8's code cache, with the V8 flags `beemesh up`
 * and the bin's #! line give it. The cache is bytecode the node runs, so the
 * tests also try to make a node run a cache it must not trust.
 */
import { createHash } from 'node:crypto'
import { chmod, chown, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { NODE_V8_FLAGS } from '../src/node/process-flags.js'
import { ROOT, startNode, tempDir } from './helpers/processes.js'

/** Starts a node with `env`, returns its `start` line, and stops it. */
async function startLine (env: Record<string, string>): Promise<string> {
  const node = await startNode({ env })
  try {
    assert.match((await node.status()).state, /^running/)
    return /\n {2}start +(.*)\n/.exec(node.stdout())![1]!
  } finally {
    await node.kill('SIGKILL')
  }
}

async function cacheFiles (dir: string): Promise<string[]> {
  return (await readdir(dir)).filter(f => f.endsWith('.v8cache'))
}

test('the bin\'s #! line carries the V8 flags a node is spawned with', async () => {
  const first = (await readFile(join(ROOT, 'bin', 'beemesh.js'), 'utf8')).split('\n')[0]!
  assert.equal(first, `#!/usr/bin/env -S node ${NODE_V8_FLAGS.join(' ')}`)
})

test('first start compiles and saves a private code cache; the next start runs from it', async () => {
  const dir = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: dir }
  assert.match(await startLine(env), /^\d+ ms of CPU; compiled from source; code cache saved in /)
  const files = await cacheFiles(dir)
  assert.is(files.length, 1, `one cache file, got ${files.join(', ')}`)
  assert.is((await stat(join(dir, files[0]!))).mode & 0o777, 0o600)
  assert.match(await startLine(env), /^\d+ ms of CPU; compiled from the code cache in /)
})

test('a cache directory others may write is not trusted: the node compiles from source and runs', async () => {
  const dir = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: dir }
  await startLine(env)
  await chmod(dir, 0o777)
  assert.match(await startLine(env), /compiled from source \(no code cache:/)
})

test('a cache file someone else owns, or others may write, is not read', async () => {
  const dir = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: dir }
  await startLine(env)
  const [file] = await cacheFiles(dir)
  await chmod(join(dir, file!), 0o666)
  assert.match(await startLine(env), /compiled from source; code cache saved in /, 'a group/other-writable cache is replaced, not used')
  if (process.getuid?.() === 0) {
    await chown(join(dir, file!), 65534, 65534)
    assert.match(await startLine(env), /compiled from source; /, 'a cache owned by another user is not used')
  }
})

test('a damaged cache (V8 would crash on it) is not used: the node compiles from source, runs, and writes a good one', async () => {
  const dir = await tempDir('beemesh-cache-')
  const env = { BEEMESH_CACHE_DIR: dir }
  await startLine(env)
  const [file] = await cacheFiles(dir)
  const good = await readFile(join(dir, file!))
  // V8's header (version, flags, source) left whole, the code after it flipped: a node handed this by V8 aborts
  const damaged = Buffer.from(good)
  for (let i = 32 + 64; i < damaged.length; i++) damaged[i] = damaged[i]! ^ 0x5a
  await writeFile(join(dir, file!), damaged, { mode: 0o600 })
  assert.match(await startLine(env), /compiled from source; code cache saved in /)
  assert.match(await startLine(env), /compiled from the code cache in /, 'the rewritten cache is used')
  // a cache whose V8 header is another build's (a stale or foreign cache with a valid checksum) is rejected by V8 itself
  const other = Buffer.from(good.subarray(32))
  other.writeUInt32LE(other.readUInt32LE(8) ^ 1, 8)
  await writeFile(join(dir, file!), Buffer.concat([createHash('sha256').update(other).digest(), other]), { mode: 0o600 })
  assert.match(await startLine(env), /compiled from source; code cache saved in /)
})

test('BEEMESH_CODE_CACHE=0: no cache read or written', async () => {
  const dir = await tempDir('beemesh-cache-')
  assert.match(await startLine({ BEEMESH_CACHE_DIR: dir, BEEMESH_CODE_CACHE: '0' }), /compiled from source \(no code cache:/)
  assert.equal(await cacheFiles(dir), [])
})

test.run()
