/**
 * TLS on the nodes' HTTP API (control API and Kubernetes API on one port),
 * with certificates from the mesh's own CA: a `beemesh up` mesh is reached by
 * the real kubectl and the official @kubernetes/client-node through the
 * kubeconfig `beemesh kubeconfig` writes (https, certificate-authority-data,
 * never skipping verification); a client without the CA is refused; plain HTTP
 * is answered only on loopback and only when asked for; the CLI talks https.
 */
import { execFile } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { request as httpsRequest, type RequestOptions } from 'node:https'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { parse as parseYaml } from 'yaml'
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node'
import { cli, freePortRange, startCli, startNode, tempDir, testTrust, trustFlags, type Running } from './helpers/processes.js'

let up: Running | undefined
let base = 0
let dir = ''
let caFile = ''
let kubeconfig = ''

/** A base port whose next `count` ports are free right now. */

async function kubectl (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile('kubectl', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

/** One https GET with Node's own client: its status and body, or the TLS error code. */
async function httpsGet (url: string, opts: RequestOptions = {}): Promise<{ status?: number, body?: string, error?: string }> {
  return await new Promise(resolve => {
    const req = httpsRequest(url, { ...opts, timeout: 10_000 }, res => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode, body }) })
    })
    req.on('error', err => { resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }) })
    req.end()
  })
}

/** This machine's first non-loopback IPv4 address (where other machines would reach a node). */
function externalIp (): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  throw new Error('this machine has no non-loopback IPv4 address: the plain-HTTP refusal test needs one')
}

test.before(async () => {
  await testTrust()
  base = await freePortRange(2)
  dir = await tempDir('beemesh-tls-up-')
  up = startCli(['up', '--nodes', '2', '--api-port', String(base), '--data-dir', dir])
  await up.waitForOutput(/mesh ready: 2 nodes/, { timeoutMs: 30_000 })
  caFile = join(dir, 'trust', 'ca.crt')
  // The CLI runs below sign tokens with the test deployer's key (BEEMESH_KEY), which `up` made admin of its
  // mesh too: they are for that mesh, as a user would say with --mesh.
  process.env.BEEMESH_MESH = join(dir, 'trust', 'mesh.json')
  kubeconfig = join(dir, 'kubeconfig')
  // The CLI learns the CA from the node itself (GET /v1/ca, over loopback).
  const r = await cli(['kubeconfig', '--api', `http://127.0.0.1:${base}`, '--write', kubeconfig])
  assert.is(r.code, 0, r.stderr)
})

test.after(async () => {
  if (up != null) { up.child.kill('SIGINT'); await up.exited }
})

test('up makes a mesh CA beside the root key (key 0600) and its nodes serve certificates from it', async () => {
  assert.is((await stat(join(dir, 'trust', 'ca.key'))).mode & 0o777, 0o600)
  assert.is((await stat(join(dir, 'trust', 'api.key'))).mode & 0o777, 0o600)
  const ca = await readFile(caFile, 'utf8')
  const res = await httpsGet(`https://127.0.0.1:${base}/healthz`, { ca })
  assert.is(res.status, 200, JSON.stringify(res))
  const byName = await httpsGet(`https://localhost:${base + 1}/v1/ca`, { ca })
  assert.is(byName.status, 200, JSON.stringify(byName))
  assert.is(byName.body, ca)
})

test('kubeconfig: an https server and the mesh CA as certificate-authority-data, no skipping verification', async () => {
  const config = parseYaml(await readFile(kubeconfig, 'utf8')) as { clusters: Array<{ cluster: Record<string, unknown> }> }
  const cluster = config.clusters[0]!.cluster
  assert.is(cluster.server, `https://127.0.0.1:${base}`)
  assert.is(Buffer.from(cluster['certificate-authority-data'] as string, 'base64').toString(), await readFile(caFile, 'utf8'))
  assert.not.ok('insecure-skip-tls-verify' in cluster)
})

test('kubectl get nodes over https, verified with the kubeconfig\'s CA', async () => {
  const r = await kubectl(['--kubeconfig', kubeconfig, 'get', 'nodes', '-o', 'json'])
  assert.is(r.code, 0, r.stderr)
  const nodes = JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string } }> }
  assert.is(nodes.items.length, 2, r.stdout)
})

test('@kubernetes/client-node lists the nodes with KubeConfig.loadFromFile, verification on', async () => {
  const kc = new KubeConfig()
  kc.loadFromFile(kubeconfig)
  assert.not.ok(kc.getCurrentCluster()?.skipTLSVerify)
  assert.ok(kc.getCurrentCluster()?.caData != null)
  const nodes = await kc.makeApiClient(CoreV1Api).listNode()
  assert.is(nodes.items.length, 2)
})

test('a client without the mesh CA is refused: the certificate is really verified', async () => {
  const plain = await httpsGet(`https://127.0.0.1:${base}/healthz`)
  assert.match(plain.error ?? '', /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/)
  // A CA of another mesh does not verify it either.
  const other = join(await tempDir('beemesh-tls-other-'), 'mesh')
  const init = await cli(['init', '--dir', other, '--deployer-key', join(other, '..', 'deployer.key')])
  assert.is(init.code, 0, init.stderr)
  const wrong = await httpsGet(`https://127.0.0.1:${base}/healthz`, { ca: await readFile(join(other, 'ca.crt'), 'utf8') })
  assert.ok(wrong.error != null, JSON.stringify(wrong))
  // kubectl with the cluster's CA taken out of the kubeconfig.
  const bare = join(dir, 'kubeconfig-no-ca')
  const config = parseYaml(await readFile(kubeconfig, 'utf8')) as { clusters: Array<{ cluster: Record<string, unknown> }> }
  delete config.clusters[0]!.cluster['certificate-authority-data']
  await writeFile(bare, JSON.stringify(config))
  const r = await kubectl(['--kubeconfig', bare, 'get', 'nodes'])
  assert.is.not(r.code, 0)
  assert.match(r.stderr, /x509|certificate/)
})

test('the CLI talks https to a node with --ca (or BEEMESH_CA), and says what to do without it', async () => {
  const ok = await cli(['status', '-o', 'json', '--api', `https://127.0.0.1:${base}`, '--ca', caFile])
  assert.is(ok.code, 0, ok.stderr)
  assert.match((JSON.parse(ok.stdout) as { peerId: string }).peerId, /^12D3KooW/)
  const env = await cli(['peers', '-o', 'json', '--api', `https://localhost:${base + 1}`], { env: { BEEMESH_CA: caFile } })
  assert.is(env.code, 0, env.stderr)
  const none = await cli(['status', '--api', `https://127.0.0.1:${base}`], { env: { BEEMESH_CA: '', HOME: await tempDir() } })
  assert.is.not(none.code, 0)
  assert.match(none.stderr, /TLS certificate was not accepted[^\n]*--ca <ca\.crt>/)
  // kubeconfig from an https URL: the CA is fetched over verified TLS, or there is no kubeconfig.
  const kc = await cli(['kubeconfig', '--api', `https://localhost:${base + 1}`, '--ca', caFile])
  assert.is(kc.code, 0, kc.stderr)
  assert.is((parseYaml(kc.stdout) as { clusters: Array<{ cluster: { server: string } }> }).clusters[0]!.cluster.server, `https://localhost:${base + 1}`)
  const unverified = await cli(['kubeconfig', '--api', `https://localhost:${base + 1}`], { env: { BEEMESH_CA: '', HOME: await tempDir() } })
  assert.is.not(unverified.code, 0)
  assert.is(unverified.stdout, '')
  assert.match(unverified.stderr, /TLS certificate was not accepted/)
})

test('a node reachable from other machines serves TLS only: plain HTTP refused, even from loopback; --api-insecure-http refused there', async () => {
  const ip = externalIp()
  const trust = await testTrust()
  const certDir = await tempDir('beemesh-tls-cert-')
  const issued = await cli(['cert', 'issue', '--ca-dir', trust.dir, '--host', ip, '--host', '127.0.0.1', '--out', join(certDir, 'api')])
  assert.is(issued.code, 0, issued.stderr)
  const tls = ['--tls-cert', join(certDir, 'api.crt'), '--tls-key', join(certDir, 'api.key')]

  const refused = await cli(['node', 'start', ...trustFlags(trust), '--api-host', '0.0.0.0', ...tls, '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(refused.code, 2, refused.stderr)
  assert.match(refused.stderr, /--api-insecure-http: plain HTTP is only served on loopback, but --api-host is 0\.0\.0\.0/)

  const node = await startNode({ trust: trustFlags(trust, { insecureHttp: false }), extra: ['--api-host', '0.0.0.0', ...tls] })
  try {
    const port = new URL(node.apiUrl).port
    assert.match(node.apiUrl, /^https:/)
    const ca = await readFile(trust.caFile, 'utf8')
    const overTls = await httpsGet(`https://${ip}:${port}/healthz`, { ca })
    assert.is(overTls.status, 200, JSON.stringify(overTls))
    for (const host of [ip, '127.0.0.1']) {
      const res = await fetch(`http://${host}:${port}/v1/status`, { signal: AbortSignal.timeout(10_000) })
      assert.is(res.status, 400, host)
      assert.match(await res.text(), /this API speaks TLS/)
    }
  } finally {
    await node.kill('SIGKILL')
  }
})

test('broken and hostile connections leave the API serving: a cut handshake, garbage after a TLS byte, silence, plain bytes', async () => {
  const { connect } = await import('node:net')
  const send = async (bytes: Buffer | null, { end = true } = {}): Promise<void> => {
    await new Promise<void>(resolve => {
      const s = connect(base, '127.0.0.1', () => {
        if (bytes != null) s.write(bytes)
        if (end) s.end(); else s.destroy()
      })
      s.on('error', () => {})
      s.on('close', () => { resolve() })
      s.resume()
    })
  }
  await send(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7]))
  await send(Buffer.from([0x16]), { end: false })
  await send(Buffer.concat([Buffer.from([0x16, 0x03, 0x03, 0xff, 0xff]), Buffer.alloc(4096, 0x41)]))
  await send(null, { end: false })
  await send(Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))
  await send(Buffer.alloc(3000, 0x00))
  const ca = await readFile(caFile, 'utf8')
  const res = await httpsGet(`https://127.0.0.1:${base}/healthz`, { ca })
  assert.is(res.status, 200, JSON.stringify(res))
  assert.is(up!.child.exitCode, null)
})

test('node start without a certificate needs --api-insecure-http, and a certificate needs its key', async () => {
  const trust = await testTrust()
  const none = await cli(['node', 'start', ...trustFlags(trust, { insecureHttp: false }), '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(none.code, 2, none.stderr)
  assert.match(none.stderr, /the API needs a TLS certificate: pass --tls-cert and --tls-key/)
  const half = await cli(['node', 'start', ...trustFlags(trust), '--tls-cert', trust.caFile, '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(half.code, 2, half.stderr)
  assert.match(half.stderr, /--tls-cert and --tls-key go together/)
  const mismatched = await cli(['node', 'start', ...trustFlags(trust), '--tls-cert', trust.caFile, '--tls-key', join(dir, 'trust', 'api.key'), '--listen', '/ip4/127.0.0.1/tcp/0', '--data-dir', await tempDir(), '--api-port', '0'])
  assert.is(mismatched.code, 2, mismatched.stderr)
  assert.match(mismatched.stderr, /not a usable certificate and key pair/)
  const badHost = await cli(['cert', 'issue', '--ca-dir', trust.dir, '--host', 'not a host!', '--out', join(await tempDir(), 'x')])
  assert.is(badHost.code, 2, badHost.stderr)
  assert.match(badHost.stderr, /--host must be an IP address or a DNS name/)
})

test.run()
