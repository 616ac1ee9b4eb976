/**
 * The trust commands run as real CLI processes: keygen/identity, init, credential
 * issue, token, policy sign and node id. BEEMESH_KEY points into a temp dir, so
 * nothing touches the real home. (`policy apply|get` need a node's API.)
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, keyId, MeshTrustSchema, verifyCredential, verifySignedPolicy, verifyToken } from '../src/policy/credentials.js'
import { cli, tempDir, type CliResult } from './helpers/processes.js'

/** A fresh temp dir and the env that puts the deployer key in it. */
async function sandbox (): Promise<{ dir: string, env: Record<string, string>, key: string }> {
  const dir = await tempDir('beemesh-trust-')
  const key = join(dir, 'deployer.key')
  return { dir, env: { BEEMESH_KEY: key }, key }
}

function ok (r: CliResult): string {
  assert.is(r.code, 0, `exit ${String(r.code)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  return r.stdout
}

test('keygen creates a 0600 key file and identity prints the same id', async () => {
  const { env, key } = await sandbox()
  const out = ok(await cli(['keygen'], { env }))
  const m = /^created deployer key (\S+)\n {2}file (\S+)\n$/.exec(out)
  assert.ok(m, out)
  assert.is(m[2], key)
  assert.is((await stat(key)).mode & 0o777, 0o600)
  assert.is(ok(await cli(['identity'], { env })), `${m[1]}\n`)
  const json = JSON.parse(ok(await cli(['identity', '-o', 'json'], { env }))) as { id: string, path: string }
  assert.equal(json, { id: m[1], path: key })
})

test('keygen refuses to overwrite a key file without --force', async () => {
  const { dir, env } = await sandbox()
  const out = join(dir, 'other.key')
  const first = JSON.parse(ok(await cli(['keygen', '--out', out, '-o', 'json'], { env }))) as { id: string }
  const again = await cli(['keygen', '--out', out], { env })
  assert.is(again.code, 1)
  assert.is(again.stdout, '')
  assert.match(again.stderr, /^beemesh: error: .*already there.*--force/)
  assert.is(ok(await cli(['identity', '--key', out], { env })), `${first.id}\n`)
  const forced = JSON.parse(ok(await cli(['keygen', '--out', out, '--force', '-o', 'json'], { env }))) as { id: string }
  assert.is.not(forced.id, first.id)
})

test('identity without a key file exits 1 naming `beemesh keygen`', async () => {
  const { env } = await sandbox()
  const r = await cli(['identity'], { env })
  assert.is(r.code, 1)
  assert.is(r.stdout, '')
  assert.match(r.stderr, /^beemesh: error: .*no such key file.*beemesh keygen/)
})

test('init creates root.key, policy.yaml and mesh.json with a policy signed by the root', async () => {
  const { dir, env, key } = await sandbox()
  const trustDir = join(dir, 'trust')
  const out = ok(await cli(['init', '--dir', trustDir, '--name', 'shop'], { env }))
  assert.match(out, /beemesh credential issue --root /)
  assert.match(out, /--trust /)
  assert.match(out, /beemesh token/)
  assert.is((await stat(join(trustDir, 'root.key'))).mode & 0o777, 0o600)
  assert.is((await stat(join(trustDir, 'mesh.json'))).mode & 0o777, 0o644)
  const deployer = ok(await cli(['identity'], { env })).trim()
  assert.is((await stat(key)).mode & 0o777, 0o600)
  const mesh = MeshTrustSchema.parse(JSON.parse(await readFile(join(trustDir, 'mesh.json'), 'utf8')))
  assert.is(mesh.name, 'shop')
  const root = ok(await cli(['identity', '--key', join(trustDir, 'root.key')], { env })).trim()
  assert.is(mesh.root, root)
  const signed = await verifySignedPolicy(mesh.policy, mesh.root)
  const policyText = await readFile(join(trustDir, 'policy.yaml'), 'utf8')
  assert.is(signed.text, policyText)
  assert.ok(policyText.includes(deployer), 'the deployer is the admin')
  assert.not.ok(policyText.includes('anonymous'), 'no anonymous access')

  const again = await cli(['init', '--dir', trustDir], { env })
  assert.is(again.code, 1)
  assert.match(again.stderr, /root\.key: a mesh trust root is already there.*--force/)
  const forced = JSON.parse(ok(await cli(['init', '--dir', trustDir, '--force', '-o', 'json'], { env }))) as { root: string, deployer: string }
  assert.is.not(forced.root, root)
  assert.is(forced.deployer, deployer)
  // --dev (which let anonymous loopback callers in) is gone.
  const dev = await cli(['init', '--dir', trustDir, '--force', '--dev'], { env })
  assert.is.not(dev.code, 0)
  assert.match(dev.stderr, /unknown option '--dev'/)
})

test('credential issue: the credential verifies against the root and carries the labels', async () => {
  const { dir, env } = await sandbox()
  const trustDir = join(dir, 'trust')
  const { root } = JSON.parse(ok(await cli(['init', '--dir', trustDir, '-o', 'json'], { env }))) as { root: string }
  const subject = ok(await cli(['node', 'id', '--data-dir', join(dir, 'node')], { env })).trim()
  const rootKey = join(trustDir, 'root.key')
  const printed = ok(await cli(['credential', 'issue', '--root', rootKey, '--node', subject, '--label', 'zone=eu', '--label', 'tier=gold', '--ttl', '12h'], { env }))
  const credential = await verifyCredential(JSON.parse(printed), { issuer: root, subject })
  assert.equal(credential.labels, { zone: 'eu', tier: 'gold' })
  assert.is(credential.expiresAt - credential.issuedAt, 12 * 3600_000)

  const file = join(dir, 'node.cred')
  ok(await cli(['credential', 'issue', '--root', rootKey, '--node', subject, '--out', file], { env }))
  const fromFile = await verifyCredential(JSON.parse(await readFile(file, 'utf8')), { issuer: root, subject })
  assert.is(fromFile.expiresAt - fromFile.issuedAt, 30 * 24 * 3600_000)

  const notPeer = await cli(['credential', 'issue', '--root', rootKey, '--node', 'not-a-peer-id'], { env })
  assert.is(notPeer.code, 2)
  assert.is(notPeer.stdout, '')
  assert.match(notPeer.stderr, /--node must be a node's peer id.*"not-a-peer-id"/)
})

test('a bad --ttl exits 2 naming the value', async () => {
  const { dir, env } = await sandbox()
  const trustDir = join(dir, 'trust')
  ok(await cli(['init', '--dir', trustDir], { env }))
  const subject = ok(await cli(['node', 'id', '--data-dir', join(dir, 'node')], { env })).trim()
  for (const ttl of ['5w', '1.5h', '0d', 'forever']) {
    const r = await cli(['credential', 'issue', '--root', join(trustDir, 'root.key'), '--node', subject, '--ttl', ttl], { env })
    assert.is(r.code, 2, `--ttl ${ttl}: ${r.stderr}`)
    assert.is(r.stdout, '')
    assert.ok(r.stderr.includes(`"${ttl}"`), r.stderr)
  }
  const token = await cli(['token', '--ttl', '3x'], { env })
  assert.is(token.code, 2)
  assert.match(token.stderr, /--ttl.*"3x"/)
})

test('token prints only a token that verifies and names the deployer', async () => {
  const { dir, env: keyEnv } = await sandbox()
  const mesh = keyId(await generateKey())
  const env = { ...keyEnv, BEEMESH_MESH: mesh }
  ok(await cli(['keygen'], { env }))
  const id = ok(await cli(['identity'], { env })).trim()
  const out = ok(await cli(['token'], { env }))
  assert.match(out, /^bm1\.[^\s]+\n$/)
  const claims = await verifyToken(out.trim(), { mesh })
  assert.is(claims.sub, id)
  assert.is(claims.exp - claims.iat, 3600_000)
  const long = await verifyToken(ok(await cli(['token', '--ttl', '30d'], { env })).trim(), { mesh })
  assert.is(long.exp - long.iat, 30 * 24 * 3600_000)
  const other = JSON.parse(ok(await cli(['keygen', '--out', join(dir, 'other.key'), '-o', 'json'], { env }))) as { id: string }
  assert.is((await verifyToken(ok(await cli(['token', '--key', join(dir, 'other.key')], { env })).trim(), { mesh })).sub, other.id)
  assert.is((await verifyToken(ok(await cli(['token', '--mesh', other.id], { env: keyEnv })).trim(), { mesh: other.id })).aud, other.id)
  const noMesh = await cli(['token'], { env: keyEnv })
  assert.is(noMesh.code, 2)
  assert.match(noMesh.stderr, /which mesh is the token for\? pass --mesh/)
})

test('credential issue --deployer: a root-issued deployer credential that `token --credential` carries', async () => {
  const { dir, env } = await sandbox()
  const trustDir = join(dir, 'trust')
  const { root } = JSON.parse(ok(await cli(['init', '--dir', trustDir, '-o', 'json'], { env }))) as { root: string }
  const other = JSON.parse(ok(await cli(['keygen', '--out', join(dir, 'ci.key'), '-o', 'json'], { env }))) as { id: string }
  const file = join(dir, 'ci.cred.json')
  ok(await cli(['credential', 'issue', '--root', join(trustDir, 'root.key'), '--deployer', other.id, '--label', 'team=ci', '--out', file], { env }))
  const cred = await verifyCredential(JSON.parse(await readFile(file, 'utf8')), { issuer: root, subject: other.id, kind: 'deployer' })
  assert.equal(cred.labels, { team: 'ci' })
  assert.is(cred.expiresAt - cred.issuedAt, 30 * 24 * 3600_000)
  const t = ok(await cli(['token', '--key', join(dir, 'ci.key'), '--credential', file, '--mesh', join(trustDir, 'mesh.json')], { env })).trim()
  const claims = await verifyToken(t, { mesh: root })
  assert.is(claims.cred?.credential.subject, other.id)
  const both = await cli(['credential', 'issue', '--root', join(trustDir, 'root.key'), '--deployer', other.id, '--node', other.id], { env })
  assert.is.not(both.code, 0)
  assert.match(both.stderr, /--node <peer id> .* or --deployer <key id> .*, one of them/)
})

test('policy sign: a bad field exits 1 with file:line:col and signs nothing; a good one verifies', async () => {
  const { dir, env } = await sandbox()
  const trustDir = join(dir, 'trust')
  const { root } = JSON.parse(ok(await cli(['init', '--dir', trustDir, '-o', 'json'], { env }))) as { root: string }
  const text = await readFile(join(trustDir, 'policy.yaml'), 'utf8')
  const lines = text.split('\n')
  const line = lines.findIndex(l => l.includes('effect: allow'))
  assert.ok(line >= 0)
  lines[line] = lines[line]!.replace('effect:', 'effekt:')
  const bad = join(dir, 'bad.yaml')
  await writeFile(bad, lines.join('\n'))
  const col = lines[line]!.indexOf('effekt') + 1
  const r = await cli(['policy', 'sign', bad, '--root', join(trustDir, 'root.key')], { env })
  assert.is(r.code, 1)
  assert.is(r.stdout, '')
  assert.ok(r.stderr.includes(`${bad}:${line + 1}:${col}: `), r.stderr)
  assert.match(r.stderr, /effekt: unknown field/)

  const signed = JSON.parse(ok(await cli(['policy', 'sign', join(trustDir, 'policy.yaml'), '--root', join(trustDir, 'root.key')], { env })))
  assert.is((await verifySignedPolicy(signed, root)).text, text)
})

test('node id prints the same peer id twice for the same data dir', async () => {
  const { dir, env } = await sandbox()
  const dataDir = join(dir, 'node')
  const first = await cli(['node', 'id', '--data-dir', dataDir], { env })
  assert.match(ok(first), /^12D3KooW\S+\n$/)
  assert.match(first.stderr, /created node identity key/)
  const second = await cli(['node', 'id', '--data-dir', dataDir], { env })
  assert.is(ok(second), first.stdout)
  assert.is(second.stderr, '')
  assert.is.not(ok(await cli(['node', 'id', '--data-dir', join(dir, 'other')], { env })), first.stdout)
})

test.run()
