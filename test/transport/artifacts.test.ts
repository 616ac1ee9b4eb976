/**
 * Artifact distribution between real libp2p nodes (in this process, over TCP
 * loopback): fetch by hash from a hint or from DHT providers, and a provider
 * serving bytes that do not match the hash is rejected in favour of another.
 */
import { readFile } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ArtifactStore, sha256Hex } from '../../src/store/artifact-store.js'
import { ARTIFACT_PROTOCOL, ArtifactService } from '../../src/transport/artifacts.js'
import { ArtifactError } from '../../src/store/errors.js'
import { silentLogger } from '../../src/transport/logger.js'
import { MeshNode } from '../../src/transport/mesh-node.js'
import { serveRpc } from '../../src/transport/rpc.js'
import { tempDir, waitUntil } from '../helpers/processes.js'

const bytes = new TextEncoder().encode('export default { name: "a", kind: "stateless" }\n'.repeat(100))
const sha = sha256Hex(bytes)
const nodes: MeshNode[] = []

async function node (bootstrap: string[] = []): Promise<MeshNode> {
  const n = new MeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap })
  await n.start()
  nodes.push(n)
  return n
}

let fetcher: ArtifactService
let good: MeshNode
let liar: MeshNode

test.before(async () => {
  good = await node()
  liar = await node([good.addresses()[0]!])
  const a = await node([good.addresses()[0]!])
  await waitUntil(() => nodes.every(n => n.peers().length === 2), { what: 'a full mesh of 3' })
  const goodService = new ArtifactService(good, new ArtifactStore(await tempDir()), silentLogger)
  await goodService.start()
  await goodService.publish(bytes, sha)
  // The liar answers every request with other bytes.
  await serveRpc(liar, ARTIFACT_PROTOCOL, async () => ({ result: { sha256: sha }, blob: new TextEncoder().encode('tampered') }), silentLogger)
  fetcher = new ArtifactService(a, new ArtifactStore(await tempDir()), silentLogger)
  await fetcher.start()
})

test.after(async () => {
  await Promise.all(nodes.map(async n => await n.stop()))
})

test('a provider whose bytes do not match is rejected and the artifact is fetched elsewhere', async () => {
  const path = await fetcher.ensure(sha, [liar.peerId, good.peerId])
  assert.is(sha256Hex(await readFile(path)), sha)
})

test('only a lying provider: a clear error naming the mismatch, nothing stored', async () => {
  const other = new TextEncoder().encode('another bundle')
  const otherSha = sha256Hex(other)
  try {
    await fetcher.ensure(otherSha, [liar.peerId])
    assert.unreachable('should fail')
  } catch (err) {
    assert.instance(err, ArtifactError)
    assert.match((err as Error).message, /could not fetch from any provider \(.*hash mismatch/)
  }
  assert.not.ok(await fetcher.store.has(otherSha))
})

test('without hints, providers are found through the DHT', async () => {
  const third = await node([good.addresses()[0]!])
  await waitUntil(() => third.peers().length >= 2, { what: 'the new node to join' })
  const service = new ArtifactService(third, new ArtifactStore(await tempDir()), silentLogger)
  const path = await waitUntil(async () => await service.ensure(sha, []), { timeoutMs: 10_000, what: 'a provider to be found in the DHT' })
  assert.is(sha256Hex(await readFile(path)), sha)
})

test('the store refuses bytes under the wrong hash', async () => {
  const store = new ArtifactStore(await tempDir())
  try {
    await store.put(bytes, 'b'.repeat(64))
    assert.unreachable('should fail')
  } catch (err) {
    assert.match((err as Error).message, /content hash mismatch/)
  }
  assert.is(await store.put(bytes), sha)
  assert.ok(await store.has(sha))
})

test('the same bundle stored many times at once: every store succeeds (each write has a temp file of its own)', async () => {
  const store = new ArtifactStore(await tempDir())
  const results = await Promise.all(Array.from({ length: 32 }, async () => await store.put(bytes)))
  assert.equal(new Set(results), new Set([sha]))
  assert.is(sha256Hex(await store.get(sha)), sha)
})

test.run()
