/**
 * Members within bounds, the pure parts: a signed manifest can be applied only
 * until its expiry (a captured one is not replayed later), and member
 * credentials live days, with a warning before they run out.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKey, issueCredential, keyId, signManifest, verifyManifest, checkApplyWindow, credentialExpiryWarning, DEFAULT_CREDENTIAL_TTL_MS, MANIFEST_APPLY_TTL_MS } from '../../src/policy/credentials.js'
import { TrustError } from '../../src/policy/errors.js'

const DAY = 24 * 3600_000
const NOW = 1_800_000_000_000
const deployer = await generateKey()
const spec = { id: 'default/web', namespace: 'default', name: 'web', kind: 'container', replicas: 1 }

function refusedWith (fn: () => void, reason: string, message: RegExp): void {
  try {
    fn()
  } catch (err) {
    assert.instance(err, TrustError)
    assert.is((err as TrustError).reason, reason)
    assert.match((err as Error).message, message)
    return
  }
  assert.unreachable('was accepted')
}

test('a fresh signed manifest may be applied; the same manifest replayed after its expiry is refused', async () => {
  const provenance = await signManifest(deployer, spec, { now: NOW })
  assert.is(provenance.expiresAt, NOW + MANIFEST_APPLY_TTL_MS)
  const verified = await verifyManifest(spec, provenance)
  checkApplyWindow(spec.id, verified, NOW + 60_000)
  refusedWith(() => { checkApplyWindow(spec.id, verified, NOW + MANIFEST_APPLY_TTL_MS + 1) }, 'expired', /default\/web could be applied until .*replay/)
})

test('the expiry is signed: moving it later breaks the signature', async () => {
  const provenance = await signManifest(deployer, spec, { now: NOW })
  try {
    await verifyManifest(spec, { ...provenance, expiresAt: NOW + 20 * DAY })
    assert.unreachable('a stretched expiry verified')
  } catch (err) {
    assert.is((err as TrustError).reason, 'bad-signature')
  }
})

test('a manifest without an expiry, dated ahead or with an overlong lifetime is refused at apply', async () => {
  const { expiresAt: _drop, ...legacy } = await signManifest(deployer, spec, { now: NOW })
  refusedWith(() => { checkApplyWindow(spec.id, legacy, NOW) }, 'expired', /carries no expiry/)
  const ahead = await signManifest(deployer, spec, { now: NOW + 3600_000 })
  refusedWith(() => { checkApplyWindow(spec.id, ahead, NOW) }, 'not-yet-valid', /in the future/)
  refusedWith(() => { checkApplyWindow(spec.id, { ...ahead, signedAt: NOW, expiresAt: NOW + 365 * DAY }, NOW) }, 'malformed', /apply lifetime over 30 days/)
  try {
    await signManifest(deployer, spec, { now: NOW, ttlMs: 365 * DAY })
    assert.unreachable('signed a year-long manifest')
  } catch (err) {
    assert.is((err as TrustError).reason, 'malformed')
  }
})

test('a member credential lives 30 days unless told otherwise, and the node is warned in its last 7', async () => {
  const root = await generateKey()
  const node = await generateKey()
  const { credential } = await issueCredential(root, keyId(node), { now: NOW })
  assert.is(credential.expiresAt - credential.issuedAt, 30 * DAY)
  assert.is(DEFAULT_CREDENTIAL_TTL_MS, 30 * DAY)
  assert.is(credentialExpiryWarning(credential, NOW + 22 * DAY), undefined)
  assert.match(credentialExpiryWarning(credential, NOW + 25 * DAY) ?? '', /expires at .* \(in 5d 0h\).*beemesh credential issue/)
  assert.match(credentialExpiryWarning(credential, NOW + 31 * DAY) ?? '', /expired at .*peers refuse it/)
})

test.run()
