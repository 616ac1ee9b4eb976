import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { decodeRecord, encodeRecord, isBeeMeshKey, MAX_RECORD_BYTES, selectRecord, validateRecord } from '../../src/transport/records.js'
import { InvalidRecordError } from '../../src/transport/errors.js'

const enc = new TextEncoder()
const key = await generateKeyPair('Ed25519')
const publisher = peerIdFromPrivateKey(key).toString()

async function rejects (p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p
  } catch (err) {
    assert.instance(err, InvalidRecordError)
    assert.match((err as Error).message, pattern)
    return
  }
  assert.unreachable(`expected rejection matching ${String(pattern)}`)
}

function mutate (bytes: Uint8Array, f: (r: Record<string, unknown>) => void): Uint8Array {
  const r = JSON.parse(new TextDecoder().decode(bytes))
  f(r)
  return enc.encode(JSON.stringify(r))
}

test('keys must be /beemesh/<kind>/<id>', () => {
  assert.ok(isBeeMeshKey('/beemesh/workload/abc'))
  assert.not.ok(isBeeMeshKey('/beemesh/abc'))
  assert.not.ok(isBeeMeshKey('/pk/abc/def'))
  assert.not.ok(isBeeMeshKey('beemesh/a/b'))
  assert.not.ok(isBeeMeshKey('/beemesh//b'))
})

test('a record round-trips and names its publisher', async () => {
  const bytes = await encodeRecord(key, publisher, '/beemesh/test/a', enc.encode('v1'), 5)
  const r = await decodeRecord(bytes, '/beemesh/test/a')
  assert.is(new TextDecoder().decode(r.value), 'v1')
  assert.is(r.seq, 5)
  assert.is(r.publisher, publisher)
  await validateRecord(enc.encode('/beemesh/test/a'), bytes)
})

test('tampered value, seq or key, and a forged publisher, are rejected', async () => {
  const bytes = await encodeRecord(key, publisher, '/beemesh/test/a', enc.encode('v1'), 5)
  await rejects(decodeRecord(mutate(bytes, r => { r.value = Buffer.from('v2').toString('base64') })), /bad signature/)
  await rejects(decodeRecord(mutate(bytes, r => { r.seq = 6 })), /bad signature/)
  await rejects(decodeRecord(bytes, '/beemesh/test/b'), /stored under/)
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  await rejects(decodeRecord(mutate(bytes, r => { r.publisher = other })), /bad signature/)
  await rejects(decodeRecord(mutate(bytes, r => { r.publisher = 'not-a-peer' })), /not a peer id/)
})

test('malformed envelopes are rejected with the reason', async () => {
  await rejects(decodeRecord(enc.encode('{nope')), /not JSON/)
  await rejects(decodeRecord(enc.encode('null')), /not an object/)
  await rejects(decodeRecord(enc.encode('{"v":2}')), /unknown version/)
  await rejects(decodeRecord(enc.encode('{"v":1,"key":"/beemesh/a/b","seq":-1}')), /seq/)
  await rejects(decodeRecord(new Uint8Array(MAX_RECORD_BYTES + 1)), /exceeds/)
  await rejects(encodeRecord(key, publisher, '/other/a/b', enc.encode('x'), 1), /not of the form/)
})

test('the selector keeps the highest seq and ignores garbage', async () => {
  const a = await encodeRecord(key, publisher, '/beemesh/test/a', enc.encode('old'), 1)
  const b = await encodeRecord(key, publisher, '/beemesh/test/a', enc.encode('new'), 2)
  const k = enc.encode('/beemesh/test/a')
  assert.is(selectRecord(k, [a, b]), 1)
  assert.is(selectRecord(k, [b, a]), 0)
  assert.is(selectRecord(k, [enc.encode('junk'), a]), 1)
})

test.run()
