/**
 * The mesh issue's bad inputs, each through the real CLI: one clear line naming
 * the problem and a non-zero exit code, and a node that never crashes on a
 * malformed message from a peer.
 */
import { createServer, type Server } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MeshNode } from '../src/transport/mesh-node.js'
import { KAD_PROTOCOL } from '../src/transport/mesh-node.js'
import { presentingGate } from '../src/transport/admission.js'
import { issueCredential, keyId } from '../src/policy/credentials.js'
import { cli, startNode, tempDir, waitUntil, makeTrust, testTrust, trustFlags } from './helpers/processes.js'

/** A one-line error: exactly one `beemesh: error:` line on stderr. */
function assertOneLineError (stderr: string, pattern: RegExp): void {
  const lines = stderr.trim().split('\n').filter(l => !l.startsWith('{'))
  assert.is(lines.length, 1, `expected one error line, got:\n${stderr}`)
  assert.match(lines[0]!, /^beemesh: error: /)
  assert.match(lines[0]!, pattern)
}

async function occupiedPort (): Promise<{ port: number, server: Server }> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  if (addr == null || typeof addr === 'string') throw new Error('no port')
  return { port: addr.port, server }
}

test('a node without the mesh\'s trust file, or with a root key that is not the mesh\'s', async () => {
  const none = await cli(['node', 'start', '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'], { env: { BEEMESH_TRUST: '' } })
  assert.is(none.code, 2)
  assertOneLineError(none.stderr, /needs its mesh's trust file: pass --trust <mesh.json>/)
  const trust = await testTrust()
  const other = await makeTrust()
  const wrongRoot = await cli(['node', 'start', '--trust', trust.meshFile, '--issue-with', other.rootKeyFile, '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(wrongRoot.code, 2)
  assertOneLineError(wrongRoot.stderr, /--issue-with .*root\.key: that key is not the root of mesh test/)
  const corrupt = join(await tempDir(), 'mesh.json')
  await writeFile(corrupt, '{"apiVersion":"beemesh.io/v1","kind":"Mesh"}')
  const bad = await cli(['node', 'start', '--trust', corrupt, '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(bad.code, 1)
  assertOneLineError(bad.stderr, /mesh\.json: not a valid mesh trust file \(--trust\): name/)
})

test('invalid --listen multiaddr', async () => {
  const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--listen', 'tcp://localhost:4001', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(r.code, 2)
  assertOneLineError(r.stderr, /invalid multiaddr "tcp:\/\/localhost:4001"/)
})

test('--bootstrap without a peer id', async () => {
  const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', '/ip4/127.0.0.1/tcp/4001', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(r.code, 2)
  assertOneLineError(r.stderr, /invalid multiaddr "\/ip4\/127\.0\.0\.1\/tcp\/4001": it must end in \/p2p\/<peer id>/)
})

test('listen port in use', async () => {
  const { port, server } = await occupiedPort()
  try {
    const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--listen', `/ip4/127.0.0.1/tcp/${port}`, '--data-dir', await tempDir(), '--api-port', '0', '--log-level', 'silent'])
    assert.is(r.code, 1)
    assertOneLineError(r.stderr, new RegExp(`cannot listen on /ip4/127\\.0\\.0\\.1/tcp/${port}: address already in use`))
  } finally {
    server.close()
  }
})

test('API port in use', async () => {
  const { port, server } = await occupiedPort()
  try {
    const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', String(port)])
    assert.is(r.code, 1)
    assertOneLineError(r.stderr, new RegExp(`cannot serve the API on 127\\.0\\.0\\.1:${port}: address already in use`))
  } finally {
    server.close()
  }
})

test('invalid --api-port', async () => {
  const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--api-port', 'seventy'])
  assert.is(r.code, 2)
  assertOneLineError(r.stderr, /--api-port must be a port number/)
})

test('corrupt identity key file', async () => {
  const dir = await tempDir()
  await writeFile(join(dir, 'identity.key'), 'not a key')
  const r = await cli(['node', 'start', ...trustFlags(await testTrust()), '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', dir, '--api-port', '0'])
  assert.is(r.code, 1)
  assertOneLineError(r.stderr, /identity key file .*identity\.key: corrupt key/)
})

test('unknown flag', async () => {
  const r = await cli(['peers', '--frobnicate'])
  assert.is(r.code, 1)
  assert.match(r.stderr, /unknown option '--frobnicate'/)
})

test('unknown output format', async () => {
  const r = await cli(['peers', '-o', 'xml'])
  assert.ok(r.code !== 0)
  assert.match(r.stderr, /unknown output format "xml"/)
})

test('API of a node that is down', async () => {
  const { port, server } = await occupiedPort()
  await new Promise(resolve => server.close(resolve))
  const r = await cli(['status', '--api', `http://127.0.0.1:${port}`])
  assert.is(r.code, 1)
  assertOneLineError(r.stderr, new RegExp(`cannot reach the BeeMesh node API at http://127\\.0\\.0\\.1:${port}: connection refused`))
  const viaEnv = await cli(['peers'], { env: { BEEMESH_API: `http://127.0.0.1:${port}` } })
  assert.is(viaEnv.code, 1)
  assert.match(viaEnv.stderr, /cannot reach the BeeMesh node API/)
})

test('unreachable bootstrap peer: the node runs, says so and retries with growing backoff', async () => {
  const { port, server } = await occupiedPort()
  await new Promise(resolve => server.close(resolve))
  const ghost = '12D3KooWBmwqx7jZzZcYFxCG57maEEpvdGJduGe3csSjQwALiuVU'
  const node = await startNode({ bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${ghost}`], extra: ['--log-level', 'warn'] })
  try {
    await node.waitForOutput(/unreachable, retrying in[\s\S]*unreachable, retrying in[\s\S]*unreachable, retrying in/, { stream: 'stderr', timeoutMs: 10_000 })
    const delays = [...node.stderr().matchAll(/"retryInMs":(\d+)/g)].map(m => Number(m[1]))
    assert.ok(delays.length >= 3)
    assert.ok(delays[1]! > delays[0]! && delays[2]! > delays[1]!, `backoff should grow: ${delays.join(', ')}`)
    const health = await node.api.request<{ status: string, state: string }>('/healthz')
    assert.is(health.status, 'ok')
    assert.is(health.state, 'running.isolated')
  } finally {
    await node.kill()
  }
})

test('malformed messages from a member do not crash the node', async () => {
  const node = await startNode()
  // A compromised member (a genuine credential): only members get past admission to the protocol parsers.
  const key = await generateKeyPair('Ed25519')
  const credential = await issueCredential((await testTrust()).rootKey, keyId(key))
  const attacker = new MeshNode({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [node.address], membership: presentingGate(credential) })
  await attacker.start()
  try {
    await waitUntil(() => attacker.peers().some(p => p.peerId === node.peerId), { what: 'attacker to connect' })
    const junk = [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]), new Uint8Array(4096).fill(0x41), new Uint8Array([0x05, 0x01, 0x02])]
    for (const protocol of [KAD_PROTOCOL, '/meshsub/1.1.0', '/meshsub/1.2.0', '/ipfs/id/1.0.0']) {
      for (const bytes of junk) {
        const stream = await attacker.dialProtocol(node.peerId, protocol)
        stream.send(bytes)
        await stream.close().catch(() => {})
      }
    }
    // A DHT record whose signature does not match is refused by the node's validator.
    const stream = await attacker.dialProtocol(node.peerId, KAD_PROTOCOL)
    stream.send(new Uint8Array([0x03, 0x08, 0x00, 0x0a]))
    await stream.close().catch(() => {})

    const health = await node.api.request<{ status: string }>('/healthz')
    assert.is(health.status, 'ok')
    assert.is((await node.status()).peerId, node.peerId)
    assert.is(node.child.exitCode, null, 'node process still running')
  } finally {
    await attacker.stop()
    await node.kill()
  }
})

test.run()
