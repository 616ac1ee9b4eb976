/**
 * Feeds random and mutated inputs to every decoder of network messages: none
 * may throw anything but its own typed rejection, and none may hang. Seeded,
 * so a failure reproduces; the seed and the input are printed when one fails.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { BidRequest, decodeEnvelope, decodeMessage, Heartbeat, LogsRequest, SchedulerMessage } from '../../src/protocol/messages.js'
import { WorkloadRecordSchema } from '../../src/workloads/records.js'
import { InvalidRecordError } from '../../src/transport/errors.js'
import { decodeRecord, encodeRecord, selectRecord } from '../../src/transport/records.js'
import { prng } from '../helpers/fuzz.js'

const ROUNDS = 20_000
const enc = new TextEncoder()


const key = await generateKeyPair('Ed25519')
const publisher = peerIdFromPrivateKey(key).toString()
const spec = { id: 'default/a', name: 'a', namespace: 'default', kind: 'stateless', topics: ['t'], replicas: 1, resources: { cpuMillis: 100, memoryBytes: 1024 }, nodeSelector: {}, delivery: 'queue', retries: 0, timeoutMs: 100, memoryLimitMb: 16, artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'a.ts', createdAt: 1 }
const seeds: unknown[] = [
  { type: 'tender', tenderId: 't', tenderer: publisher, epoch: 1, attempt: 1, spec, ordinals: [0], exclude: [] },
  { type: 'award', tenderId: 't', tenderer: publisher, workloadId: 'default/a', epoch: 1, spec, awards: [{ peerId: publisher, replica: 0 }] },
  { type: 'started', tenderId: 't', workloadId: 'default/a', epoch: 1, peerId: publisher, replica: 0 },
  { type: 'heartbeat', peerId: publisher, ts: 1, labels: {}, capacity: { cpuMillis: 1, memoryBytes: 1 }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 1, replicas: [] },
  { type: 'bid', tenderId: 't', attempt: 1, peerId: publisher, score: 50 },
  { id: 'x', data: { n: 1 }, ts: 1 },
  { workloadId: 'default/a', tail: 10 }
]
const JUNK = ['', 'null', '[]', '{}', '"x"', '1e309', '-0', '{"__proto__":{"polluted":1}}', '{"type":"tender"}', '\u0000', '{'.repeat(5000), '[' .repeat(5000)]

/** A mutated variant of a JSON value: fields dropped, retyped, or set to odd values. */
function mutate (value: unknown, rnd: () => number, depth = 0): unknown {
  const odd = [null, undefined, -1, 2 ** 60, NaN, '', 'x'.repeat(300), [], {}, true, '12D3KooW', 'default/a', 1.5]
  if (rnd() < 0.15 || depth > 6) return odd[Math.floor(rnd() * odd.length)]
  if (Array.isArray(value)) return value.map(v => mutate(v, rnd, depth + 1)).concat(rnd() < 0.2 ? [mutate(value[0], rnd, depth + 1)] : [])
  if (value != null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      const r = rnd()
      if (r < 0.1) continue
      out[r < 0.15 ? k + 'x' : k] = r < 0.6 ? v : mutate(v, rnd, depth + 1)
    }
    return out
  }
  return rnd() < 0.5 ? value : odd[Math.floor(rnd() * odd.length)]
}

function randomBytes (rnd: () => number): Uint8Array {
  const len = Math.floor(rnd() * 300)
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = Math.floor(rnd() * 256)
  return out
}

/** Inputs: raw random bytes, junk strings, mutated valid messages, and byte-flipped valid messages. */
function* inputs (seed: number): Generator<Uint8Array> {
  const rnd = prng(seed)
  for (let i = 0; i < ROUNDS; i++) {
    const kind = i % 4
    if (kind === 0) yield randomBytes(rnd)
    else if (kind === 1) yield enc.encode(JUNK[i % JUNK.length]!)
    else {
      const base = enc.encode(JSON.stringify(mutate(seeds[i % seeds.length], rnd)) ?? 'null')
      if (kind === 3 && base.length > 0) for (let f = 0; f < 3; f++) base[Math.floor(rnd() * base.length)] = Math.floor(rnd() * 256)
      yield base
    }
  }
}

test('gossip and RPC message decoders reject or accept every input without throwing', () => {
  const seed = 0xbee5
  let accepted = 0
  for (const bytes of inputs(seed)) {
    for (const schema of [SchedulerMessage, Heartbeat, BidRequest, LogsRequest, WorkloadRecordSchema]) {
      try {
        if (decodeMessage(schema as never, bytes) !== undefined) accepted++
      } catch (err) {
        assert.unreachable(`decoder threw on ${Buffer.from(bytes).toString('base64')} (seed ${seed}): ${String(err)}`)
      }
    }
    const env = decodeEnvelope({ topic: 't', from: publisher, data: bytes, id: `${publisher}:1` })
    assert.type(env.id, 'string')
  }
  assert.ok(accepted > 0, 'some mutated messages are still valid, so the valid path is exercised too')
  assert.is(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

test('DHT record decoding rejects every corrupted or random record with InvalidRecordError, and the selector never throws', async () => {
  const seed = 0x5eed
  const valid = await encodeRecord(key, publisher, '/beemesh/test/a', enc.encode('value'), 7)
  const rnd = prng(seed)
  const corpus: Uint8Array[] = [...inputs(seed)].slice(0, 5_000)
  for (let i = 0; i < 5_000; i++) {
    const copy = Uint8Array.from(valid)
    for (let f = 0; f < 1 + Math.floor(rnd() * 4); f++) copy[Math.floor(rnd() * copy.length)] = Math.floor(rnd() * 256)
    corpus.push(copy)
  }
  let rejected = 0
  for (const bytes of corpus) {
    try {
      await decodeRecord(bytes, '/beemesh/test/a')
    } catch (err) {
      if (!(err instanceof InvalidRecordError)) assert.unreachable(`unexpected ${String(err)} for ${Buffer.from(bytes).toString('base64')} (seed ${seed})`)
      rejected++
    }
    const i = selectRecord(enc.encode('/beemesh/test/a'), [bytes, valid])
    assert.ok(i === 0 || i === 1)
  }
  assert.ok(rejected >= corpus.length - 50, `nearly every corrupted record is rejected (${rejected}/${corpus.length})`)
})

test.run()
