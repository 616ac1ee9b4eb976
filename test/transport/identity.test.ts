import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { IdentityKeyError } from '../../src/transport/errors.js'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../src/transport/identity.js'
import { tempDir } from '../helpers/processes.js'

test('creates an Ed25519 key with mode 0600 and reloads the same peer id', async () => {
  const dir = join(await tempDir(), 'nested')
  const first = await loadOrCreateIdentity(dir)
  assert.ok(first.created)
  assert.is(first.privateKey.type, 'Ed25519')
  assert.is((await stat(first.path)).mode & 0o777, 0o600)
  assert.is((await stat(dir)).mode & 0o777, 0o700)
  const again = await loadOrCreateIdentity(dir)
  assert.not.ok(again.created)
  assert.is(peerIdFromPrivateKey(again.privateKey).toString(), peerIdFromPrivateKey(first.privateKey).toString())
})

test('a corrupt key file is an error, never silently replaced', async () => {
  const dir = await tempDir()
  await writeFile(join(dir, IDENTITY_FILE), 'garbage that is not a protobuf key')
  try {
    await loadOrCreateIdentity(dir)
    assert.unreachable('should have thrown')
  } catch (err) {
    assert.instance(err, IdentityKeyError)
    assert.match((err as Error).message, /identity key file .*identity\.key: corrupt key/)
  }
})

test('an unreadable key path is an error naming the path', async () => {
  const dir = await tempDir()
  await mkdir(join(dir, IDENTITY_FILE))
  try {
    await loadOrCreateIdentity(dir)
    assert.unreachable('should have thrown')
  } catch (err) {
    assert.instance(err, IdentityKeyError)
    assert.match((err as Error).message, /identity\.key: cannot read: .*EISDIR/)
  }
})

test.run()
