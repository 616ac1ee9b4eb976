/**
 * Signed, fresh messages: a sealed envelope opens for the expected domain and
 * is refused when forged, tampered, for another domain, stale, from the
 * future, replayed or malformed; random and mutated inputs are all refused
 * with an EnvelopeError, never a crash.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { EnvelopeError, open, ReplayGuard, seal, type EnvelopeRefusal, type SignedEnvelope } from '../../src/policy/envelope.js'

const NOW = 1_800_000_000_000
const key = await generateKeyPair('Ed25519')
const signer = peerIdFromPrivateKey(key).toString()
const other = await generateKeyPair('Ed25519')

async function refused (input: unknown, reason: EnvelopeRefusal, message: RegExp, options: Partial<Parameters<typeof open>[1]> = {}): Promise<void> {
  try {
    await open(input, { domain: 'scheduler', now: NOW, ...options })
  } catch (err) {
    assert.instance(err, EnvelopeError)
    assert.is((err as EnvelopeError).reason, reason, (err as Error).message)
    assert.match((err as Error).message, message)
    return
  }
  assert.unreachable(`expected a ${reason} refusal`)
}

test('a sealed message opens for its domain, with signer, time and body', async () => {
  const e = await seal(key, signer, 'scheduler', { type: 'award', epoch: 3 }, { now: NOW })
  const opened = await open<{ type: string, epoch: number }>(e, { domain: 'scheduler', now: NOW + 100 })
  assert.equal(opened, { signer, ts: NOW, body: { type: 'award', epoch: 3 } })
  // As bytes too (what gossip carries).
  const bytes = uint8ArrayFromString(JSON.stringify(e))
  assert.equal((await open(bytes, { domain: 'scheduler', now: NOW })).body, { type: 'award', epoch: 3 })
})

test('forged and tampered messages are refused', async () => {
  const e = await seal(key, signer, 'scheduler', { type: 'award', epoch: 3 }, { now: NOW })
  await refused({ ...e, body: JSON.stringify({ type: 'award', epoch: 4 }) }, 'bad-signature', /does not verify/)
  await refused({ ...e, ts: NOW + 1 }, 'bad-signature', /forged or tampered/)
  await refused({ ...e, nonce: 'f'.repeat(32) }, 'bad-signature', /does not verify/)
  // Signed by another key but claiming to be `signer`.
  const forged = await seal(other, signer, 'scheduler', { type: 'award', epoch: 3 }, { now: NOW })
  await refused(forged, 'bad-signature', new RegExp(signer))
  // A signature for one domain is no good in another.
  await refused(e, 'wrong-domain', /signed for "scheduler", expected "heartbeat"/, { domain: 'heartbeat' })
})

test('stale and future messages are refused; the limits are the options', async () => {
  const old = await seal(key, signer, 'scheduler', {}, { now: NOW - 31_000 })
  await refused(old, 'stale', /31000 ms old \(limit 30000 ms\)/)
  assert.ok(await open(old, { domain: 'scheduler', now: NOW, maxAgeMs: 60_000 }))
  const ahead = await seal(key, signer, 'scheduler', {}, { now: NOW + 6_000 })
  await refused(ahead, 'future', /6000 ms in the future/)
  assert.ok(await open(ahead, { domain: 'scheduler', now: NOW, maxSkewMs: 10_000 }))
})

test('a replayed message is refused; the guard forgets what has gone stale anyway', async () => {
  const replay = new ReplayGuard(30_000)
  const e = await seal(key, signer, 'scheduler', { type: 'award' }, { now: NOW })
  await open(e, { domain: 'scheduler', now: NOW, replay })
  await refused(e, 'replayed', /seen before/, { replay })
  // Another nonce from the same signer is fine.
  await open(await seal(key, signer, 'scheduler', { type: 'award' }, { now: NOW }), { domain: 'scheduler', now: NOW, replay })
  assert.is(replay.size, 2)
  // Later than the window: both entries are pruned, and the old message is stale, not replayed.
  await refused(e, 'stale', /old/, { replay, now: NOW + 40_000 })
  assert.is(replay.check('x', 'y', NOW + 40_000, NOW + 40_000), 'new')
  assert.is(replay.size, 1)
})

test('the replay guard is bounded: when full it refuses new messages rather than forget one still inside its window', () => {
  const guard = new ReplayGuard(60_000, 100, 40)
  // One signer gets at most its share: the 41st of its messages is refused, others still get in.
  for (let i = 0; i < 40; i++) assert.is(guard.check('busy', String(i), NOW, NOW), 'new')
  assert.is(guard.check('busy', '40', NOW, NOW), 'full')
  for (let s = 0; s < 3; s++) for (let i = 0; i < 20; i++) assert.is(guard.check(`s${s}`, String(i), NOW, NOW), 'new')
  assert.is(guard.size, 100)
  assert.is(guard.check('late', '0', NOW, NOW), 'full', 'full: refused')
  // Nothing inside the window was forgotten: every one of them is still a replay.
  assert.is(guard.check('busy', '0', NOW, NOW), 'replayed')
  assert.is(guard.check('s0', '0', NOW, NOW), 'replayed')
  // Once the window has passed, room again.
  assert.is(guard.check('late', '0', NOW + 61_000, NOW + 61_000), 'new')
  assert.is(guard.size, 1)
})

test('a replayed request is refused even after 200,000 others', () => {
  const guard = new ReplayGuard(40_000)
  assert.is(guard.check('member-a', 'first', NOW, NOW), 'new')
  let refusedFull = 0
  for (let i = 0; i < 200_000; i++) {
    const v = guard.check(`member-${i % 50}`, `n${i}`, NOW, NOW + Math.floor(i / 10_000))
    if (v === 'full') refusedFull++
    else assert.is(v, 'new')
  }
  assert.is(refusedFull, 0, '200,000 messages from 50 signers fit the window')
  assert.is(guard.check('member-a', 'first', NOW, NOW + 20), 'replayed')
})

test('malformed envelopes are refused with the field named', async () => {
  const e: SignedEnvelope = await seal(key, signer, 'scheduler', {}, { now: NOW })
  await refused(uint8ArrayFromString('{not json'), 'malformed', /not JSON/)
  await refused({ ...e, v: 2 }, 'malformed', /^envelope v:/)
  await refused({ ...e, extra: 1 }, 'malformed', /envelope/)
  await refused({ ...e, nonce: 'short' }, 'malformed', /nonce/)
  await refused({ ...e, signer: 'not-a-peer-id-at-all' }, 'malformed', /is not a peer id/)
  await refused(null, 'malformed', /envelope/)
  await refused(new Uint8Array(1024 * 1024 + 1), 'malformed', /exceeds/)
})

test('random and mutated inputs are all refused with an EnvelopeError, never a crash', async () => {
  const good = JSON.stringify(await seal(key, signer, 'scheduler', { type: 'award', epoch: 3 }, { now: NOW }))
  let seed = 42
  const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  let refusedCount = 0
  for (let i = 0; i < 2_000; i++) {
    const chars = good.split('')
    for (let m = 0; m < 1 + rand(4); m++) chars[rand(chars.length)] = String.fromCharCode(32 + rand(95))
    const input = i % 10 === 0 ? uint8ArrayFromString(String.fromCharCode(...Array.from({ length: rand(200) }, () => rand(256)))) : uint8ArrayFromString(chars.join(''))
    try {
      await open(input, { domain: 'scheduler', now: NOW })
    } catch (err) {
      assert.instance(err, EnvelopeError, String(err))
      refusedCount++
    }
  }
  // A mutation may land where it changes nothing that is signed (JSON whitespace): such inputs open; all others are refused.
  assert.ok(refusedCount > 1_900, `refused ${refusedCount} of 2000`)
})

test.run()
