/**
 * The Services catalog within bounds: every entry is sealed by the member that
 * wrote it; unsigned, forged, wrongly attributed and far-future entries are
 * refused, and tombstones are dropped after their TTL.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, issueCredential, keyId } from '../../src/policy/credentials.js'
import { Trust } from '../../src/policy/trust.js'
import { MAX_AHEAD_MS, mergeEntries, openEntry, RefusedEntry, TOMBSTONE_MS, type SealedEntry } from '../../src/services/catalog.js'

const root = await generateKey()
async function member (): Promise<Trust> {
  const key = await generateKey()
  const trust = new Trust({ root: keyId(root), key, credential: await issueCredential(root, keyId(key)) })
  await trust.start()
  return trust
}
const writer = await member()
const reader = await member()
const outsiderKey = await generateKey()
const outsider = new Trust({ root: keyId(root), key: outsiderKey, credential: await issueCredential(outsiderKey, keyId(outsiderKey)) })
const DOMAIN = 'beemesh-service/v1'
const spec = { id: 'default/web', namespace: 'default', name: 'web', ports: [{ port: 80, targetPort: 8080 }], origin: 'kube', createdAt: Date.now() }

async function refused (value: unknown, reason: RefusedEntry['reason'], message: RegExp): Promise<void> {
  try {
    await openEntry(reader, value)
  } catch (err) {
    assert.instance(err, RefusedEntry)
    assert.is((err as RefusedEntry).reason, reason)
    assert.match((err as Error).message, message)
    return
  }
  assert.unreachable('entry was accepted')
}

test('an entry sealed by its writer, a member, is accepted', async () => {
  const own = { id: spec.id, updatedAt: Date.now(), by: (await writer.sealValue(DOMAIN, '{}')).e.signer, spec }
  const opened = await openEntry(reader, await writer.sealValue(DOMAIN, JSON.stringify(own)))
  assert.is(opened.id, spec.id)
  assert.is(opened.spec?.name, 'web')
})

test('unsigned, forged, non-member and wrongly attributed entries are refused', async () => {
  const by = (await writer.sealValue(DOMAIN, '{}')).e.signer
  const entry = { id: spec.id, updatedAt: Date.now(), by, spec }
  await refused(entry, 'unsigned', /not sealed by a member/)
  const sealed = await writer.sealValue(DOMAIN, JSON.stringify(entry))
  await refused({ ...sealed, e: { ...sealed.e, body: JSON.stringify({ ...entry, spec: { ...spec, ports: [{ port: 80, targetPort: 22 }] } }) } }, 'unsigned', /not sealed by a member/)
  await refused(await outsider.sealValue(DOMAIN, JSON.stringify({ ...entry, by: keyId(outsiderKey) })), 'unsigned', /not sealed by a member/)
  const other = await member()
  await refused(await other.sealValue(DOMAIN, JSON.stringify(entry)), 'wrong-writer', /names writer .* but is signed by/)
  await refused(await writer.sealValue('beemesh-other/v1', JSON.stringify(entry)), 'unsigned', /not sealed by a member/)
})

test('an entry dated more than 60 s ahead is refused, one slightly ahead is taken', async () => {
  const by = (await writer.sealValue(DOMAIN, '{}')).e.signer
  await refused(await writer.sealValue(DOMAIN, JSON.stringify({ id: spec.id, updatedAt: Date.now() + 10 * 365 * 24 * 3600_000, by })), 'future', /ahead \(limit 60000 ms\)/)
  const near = await openEntry(reader, await writer.sealValue(DOMAIN, JSON.stringify({ id: spec.id, updatedAt: Date.now() + MAX_AHEAD_MS / 2, by })))
  assert.is(near.spec, undefined)
})

test('newest wins; tombstones expire and are not taken in once expired', () => {
  const sealed = {} as SealedEntry
  const now = 1_800_000_000_000
  const map = new Map()
  assert.ok(mergeEntries(map, [{ entry: { id: 'a/b', updatedAt: now - 10, by: 'x', spec: { ...spec, id: 'a/b', namespace: 'a', name: 'b' } as never }, sealed }], now))
  assert.ok(mergeEntries(map, [{ entry: { id: 'a/b', updatedAt: now, by: 'x' }, sealed }], now))
  assert.not.ok(mergeEntries(map, [{ entry: { id: 'a/b', updatedAt: now - 5, by: 'x', spec: { ...spec, id: 'a/b', namespace: 'a', name: 'b' } as never }, sealed }], now), 'an older live entry must not revive a deletion')
  assert.is(map.size, 1)
  assert.not.ok(mergeEntries(map, [], now + TOMBSTONE_MS - 1))
  assert.is(map.size, 1)
  assert.ok(mergeEntries(map, [], now + TOMBSTONE_MS + 1))
  assert.is(map.size, 0, 'the tombstone is dropped after its TTL')
  assert.not.ok(mergeEntries(map, [{ entry: { id: 'c/d', updatedAt: now - TOMBSTONE_MS - 1, by: 'x' }, sealed }], now))
  assert.not.ok(mergeEntries(map, [{ entry: { id: 'c/d', updatedAt: now + MAX_AHEAD_MS + 1, by: 'x' }, sealed }], now), 'a far-future tombstone would never expire')
  assert.is(map.size, 0)
})

test.run()
