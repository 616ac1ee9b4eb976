/**
 * Feeds random and mutated inputs to every zero-trust decoder: sealed messages
 * (Trust.open), bearer tokens, credentials, signed policies, manifest
 * signatures, policy documents and the schemas the control API and the
 * send/state protocols feed request bodies into. None may throw anything but
 * its own typed rejection, none may hang (no single input may take over 2 s),
 * and only genuine inputs are accepted (a sealed message at most once).
 *
 * Seeded: FUZZ_SEED=<n> replays a run's mutations (keys are derived from fixed
 * seeds too; only nonces and clocks differ). A failure prints the decoder, the
 * seed, the input's index and the input itself.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import canonicalize from 'canonicalize'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { stringify as yamlStringify } from 'yaml'
import { WorkloadSpecSchema } from '../../src/workloads/records.js'
import { MachineEvent, SendRequest, StateRequest } from '../../src/protocol/state.js'
import { issueCredential, issueToken, keyId, signManifest, signPolicy, verifyCredential, verifyManifest, verifySignedPolicy, verifyToken, type SignedCredential, type SignedPolicy } from '../../src/policy/credentials.js'
import { defaultPolicyText } from '../../src/policy/defaults.js'
import { parsePolicy } from '../../src/policy/engine.js'
import { sealText } from '../../src/policy/envelope.js'
import { PolicyError, TrustError } from '../../src/policy/errors.js'
import { RefusedMessage, Trust, type WorkloadIdentity } from '../../src/policy/trust.js'
import { exampleRules, prng } from '../helpers/fuzz.js'
import { recordGuard } from '../../src/actors/record-writers.js'
import { decodeAdmissionFrame, MalformedProof } from '../../src/transport/admission.js'
import { InvalidRecordError } from '../../src/transport/errors.js'
import { decodeRecord, encodeRecord } from '../../src/transport/records.js'

/** Inputs per decoder; every decoder gets at least this many. */
const ROUNDS = 20_000
/** A single input taking longer than this is a hang. */
const HANG_MS = 5_000
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 0x7a57be)
const enc = new TextEncoder()
const dec = new TextDecoder()

type Rnd = () => number
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n)
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[int(rnd, xs.length)]!

// ---------------------------------------------------------------- bookkeeping

const counts = new Map<string, number>()
interface Failure { decoder: string, seed: number, index: number, error: string, input: string, times: number }
const failures = new Map<string, Failure>()

function show (input: unknown): string {
  let text: string
  if (input instanceof Uint8Array) text = `base64:${Buffer.from(input).toString('base64')}`
  else if (typeof input === 'string') text = JSON.stringify(input)
  else {
    try { text = JSON.stringify(input) ?? String(input) } catch { text = String(input) }
  }
  return text.length > 3000 ? `${text.slice(0, 3000)}… (${text.length} chars)` : text
}

function fail (decoder: string, seed: number, index: number, error: string, input: unknown): void {
  const key = `${decoder}: ${error.replace(/\d+/g, 'N').slice(0, 120)}`
  const seen = failures.get(key)
  if (seen != null) { seen.times++; return }
  failures.set(key, { decoder, seed, index, error, input: show(input), times: 1 })
}

function describe (err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : `non-Error thrown: ${String(err)}`
}

let lapStart = performance.now()
/** Seconds since the previous lap (each test's own time, for the log). */
function lap (): string {
  const now = performance.now()
  const s = ((now - lapStart) / 1000).toFixed(1)
  lapStart = now
  return `${s} s`
}

type Outcome<T> = { ok: true, value: T } | { ok: false, err: unknown }

/**
 * Runs one decode with a hang guard (a 2 s timer raced against it, and the
 * elapsed time measured); a rejection must be one `allowed` accepts.
 */
async function decode<T> (decoder: string, seed: number, index: number, input: unknown, run: () => Promise<T>, allowed: (err: unknown) => boolean): Promise<Outcome<T>> {
  counts.set(decoder, (counts.get(decoder) ?? 0) + 1)
  const hung = Symbol('hung')
  let timer: NodeJS.Timeout | undefined
  const start = performance.now()
  let outcome: Outcome<T>
  try {
    const value = await Promise.race([run(), new Promise<typeof hung>(resolve => { timer = setTimeout(() => resolve(hung), HANG_MS); timer.unref() })])
    outcome = value === hung ? { ok: false, err: new Error(`hang: no answer within ${HANG_MS} ms`) } : { ok: true, value: value as T }
  } catch (err) {
    outcome = { ok: false, err }
  } finally {
    clearTimeout(timer)
  }
  const ms = performance.now() - start
  if (ms > HANG_MS) fail(decoder, seed, index, `took ${ms.toFixed(0)} ms (hang)`, input)
  else if (!outcome.ok && !allowed(outcome.err)) fail(decoder, seed, index, describe(outcome.err), input)
  return outcome
}

/** The same for a synchronous decoder (which cannot be interrupted: only measured). */
function decodeSync<T> (decoder: string, seed: number, index: number, input: unknown, run: () => T, allowed: (err: unknown) => boolean): Outcome<T> {
  counts.set(decoder, (counts.get(decoder) ?? 0) + 1)
  const start = performance.now()
  let outcome: Outcome<T>
  try {
    outcome = { ok: true, value: run() }
  } catch (err) {
    outcome = { ok: false, err }
  }
  const ms = performance.now() - start
  if (ms > HANG_MS) fail(decoder, seed, index, `took ${ms.toFixed(0)} ms (hang)`, input)
  else if (!outcome.ok && !allowed(outcome.err)) fail(decoder, seed, index, describe(outcome.err), input)
  return outcome
}

function assertNoFailures (decoders: string[]): void {
  const mine = [...failures.values()].filter(f => decoders.includes(f.decoder))
  if (mine.length === 0) return
  const lines = mine.map(f => `  ${f.decoder} (seed ${f.seed}, input #${f.index}, ${f.times}×): ${f.error}\n    input: ${f.input}`)
  assert.unreachable(`${mine.length} distinct failure(s):\n${lines.join('\n')}`)
}

// ---------------------------------------------------------------- mutation

const ODD_TIMES = [0, 1, -1, 1.5, NaN, Infinity, 2 ** 31, 8.64e15, 8.64e15 + 1, 8.7e15, 2 ** 53 - 1, 2 ** 53, 1e300, -8.7e15]
const ODD = [null, undefined, -1, 0, 2 ** 60, NaN, 1e309, '', 'x'.repeat(300), [], {}, true, false, '12D3KooW', '12D3KooWx', 'default/a', 1.5, '__proto__', 'anonymous', '\ud800', 'a\udfffb', ...ODD_TIMES.slice(6)]

/** Sets an own property, as JSON.parse does (`__proto__` too: no prototype is changed). */
function own (o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true })
}

/** A mutated variant of a JSON value: fields dropped, renamed, retyped, or set to odd values. */
function mutate (value: unknown, rnd: Rnd, depth = 0, swaps: readonly unknown[] = []): unknown {
  if (rnd() < 0.12 || depth > 6) return rnd() < 0.5 || swaps.length === 0 ? pick(rnd, ODD) : pick(rnd, swaps)
  if (Array.isArray(value)) {
    const out = value.map(v => mutate(v, rnd, depth + 1, swaps))
    if (rnd() < 0.15 && out.length > 0) out.splice(int(rnd, out.length), 1)
    if (rnd() < 0.15) out.push(mutate(value[0], rnd, depth + 1, swaps))
    return out
  }
  if (value != null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) {
      const r = rnd()
      if (r < 0.08) continue
      own(out, r < 0.12 ? k + 'x' : k, r < 0.6 ? v : mutate(v, rnd, depth + 1, swaps))
    }
    if (rnd() < 0.05) own(out, pick(rnd, ['extra', '__proto__', 'constructor', '']), mutate(value, rnd, depth + 1, swaps))
    return out
  }
  if (typeof value === 'string' && rnd() < 0.3) return mutateString(value, rnd)
  if (typeof value === 'number' && rnd() < 0.3) return pick(rnd, ODD_TIMES)
  return rnd() < 0.5 ? value : pick(rnd, ODD)
}

const CHARS = 'abcXYZ019-_+/=.:"\'{}[],\\ \n\t\u0000\u00e9\u2028\ud83d\ude00\ud800'
function mutateString (s: string, rnd: Rnd, alphabet = CHARS): string {
  let out = s
  const edits = 1 + int(rnd, 3)
  for (let e = 0; e < edits; e++) {
    const at = int(rnd, out.length + 1)
    const r = rnd()
    const c = alphabet[int(rnd, alphabet.length)]!
    if (r < 0.35) out = out.slice(0, at) + c + out.slice(at + 1)
    else if (r < 0.6) out = out.slice(0, at) + c + out.slice(at)
    else if (r < 0.85) out = out.slice(0, at) + out.slice(at + 1)
    else out = out.slice(0, at)
  }
  return out
}

function randomBytes (rnd: Rnd, max = 300): Uint8Array {
  const len = int(rnd, max)
  const out = new Uint8Array(len)
  for (let i = 0; i < len; i++) out[i] = int(rnd, 256)
  return out
}

function flipBytes (bytes: Uint8Array, rnd: Rnd): Uint8Array {
  const copy = Uint8Array.from(bytes)
  if (copy.length === 0) return copy
  for (let f = 0, n = 1 + int(rnd, 4); f < n; f++) copy[int(rnd, copy.length)] = rnd() < 0.5 ? int(rnd, 256) : copy[int(rnd, copy.length)]!
  return copy
}

function truncate (bytes: Uint8Array, rnd: Rnd): Uint8Array {
  return bytes.slice(0, int(rnd, bytes.length))
}

const JUNK = ['', 'null', '[]', '{}', '"x"', '1e309', '-0', 'true', '{"__proto__":{"polluted":1}}', '{"e":null,"c":[]}', '{"e":{},"c":[{},{},{},{},{}]}', '\u0000', '{'.repeat(5000), '['.repeat(5000), '[' .repeat(100_000) + ']'.repeat(100_000), '"' + 'x'.repeat(70_000) + '"', '{"e":' + '['.repeat(3000) + ']'.repeat(3000) + ',"c":[]}']

/** A JSON value from random bytes or junk (what JSON.parse of a network message or request body can yield), or undefined. */
function parsedJunk (rnd: Rnd, i: number): unknown {
  const text = rnd() < 0.5 ? dec.decode(randomBytes(rnd)) : JUNK[i % JUNK.length]!
  try { return JSON.parse(text) } catch { return text }
}

// ---------------------------------------------------------------- keys and seeds

async function keyFromSeed (n: number): Promise<PrivateKey> {
  return await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(n))
}
const rootKey = await keyFromSeed(1)
const nodeKey = await keyFromSeed(2)
const receiverKey = await keyFromSeed(3)
const deployerKey = await keyFromSeed(4)
const strangerKey = await keyFromSeed(5)
const workloadKey = await keyFromSeed(6)
const root = keyId(rootKey)
const nodeId = keyId(nodeKey)
const deployerId = keyId(deployerKey)
const strangerId = keyId(strangerKey)
const workloadId = keyId(workloadKey)
const IDS = [root, nodeId, keyId(receiverKey), deployerId, strangerId, workloadId]
const nodeCredential = await issueCredential(rootKey, nodeId, { labels: { zone: 'eu' } })

const spec = { id: 'default/a', name: 'a', namespace: 'default', kind: 'stateless', topics: ['t'], replicas: 1, resources: { cpuMillis: 100, memoryBytes: 1024 }, nodeSelector: {}, delivery: 'queue', retries: 0, timeoutMs: 100, memoryLimitMb: 16, artifact: { sha256: 'a'.repeat(64), size: 1 }, source: 'a.ts', createdAt: 1 }
const containerSpec = { id: 'shop/web', name: 'web', namespace: 'shop', kind: 'container', topics: [], replicas: 2, resources: { cpuMillis: 100, memoryBytes: 1024 }, nodeSelector: { zone: 'eu' }, delivery: 'queue', retries: 0, timeoutMs: 100, memoryLimitMb: 16, source: 'web.yaml', createdAt: 1, labels: { app: 'web' }, kubeKind: 'Deployment', container: { image: 'nginx:1', env: [{ name: 'A', value: 'b' }], ports: [{ containerPort: 80, protocol: 'TCP' }], restartPolicy: 'Always', imagePullPolicy: 'IfNotPresent', limits: {}, backoff: { initialMs: 100, maxMs: 1000, resetAfterMs: 0 }, terminationGracePeriodSeconds: 30 } }
const MESSAGE_BODIES: unknown[] = [
  { type: 'tender', tenderId: 't', tenderer: nodeId, epoch: 1, attempt: 1, spec, ordinals: [0], exclude: [] },
  { type: 'started', tenderId: 't', workloadId: 'default/a', epoch: 1, peerId: nodeId, replica: 0 },
  { type: 'heartbeat', peerId: nodeId, ts: 1, labels: {}, capacity: { cpuMillis: 1, memoryBytes: 1 }, allocated: { cpuMillis: 0, memoryBytes: 0 }, uptimeMs: 1, replicas: [] },
  { op: 'send', workloadId: 'default/a', id: 'e1', event: { type: 'go' } },
  { op: 'claim', workloadId: 'default/a', epoch: 2, owner: nodeId }
]
const ODD_LABELS: unknown[] = [{}, { zone: 'eu' }, { '': 'x' }, { ['k'.repeat(400)]: 'v' }, { k: 'v'.repeat(100) }, { __proto__: 'x' }, { constructor: 'y' }]
const ODD_WORKLOADS = ['default/a', '', '/', 'a/', '/b', 'a/b/c', 'x'.repeat(250), '__proto__/constructor', 'a/b\u0000']

/** A credential genuinely signed by `issuer`, with odd contents: what a buggy or hostile issuer can make. */
async function oddCredential (rnd: Rnd, issuer: PrivateKey, subject: string, kind: 'node' | 'workload'): Promise<SignedCredential | undefined> {
  try {
    return await issueCredential(issuer, subject, {
      kind,
      ...(rnd() < 0.5 ? { now: rnd() < 0.5 ? Date.now() - int(rnd, 1e9) : pick(rnd, ODD_TIMES) } : {}),
      ...(rnd() < 0.4 ? { ttlMs: pick(rnd, [-1, 0, 1, 1e12, 1.5, NaN, 8.7e15, 2 ** 53]) } : {}),
      ...(rnd() < 0.3 ? { labels: pick(rnd, ODD_LABELS) as Record<string, string> } : {}),
      ...(kind === 'workload' || rnd() < 0.1 ? { workload: pick(rnd, ODD_WORKLOADS) } : {}),
      ...(rnd() < 0.3 ? { replica: pick(rnd, [0, -1, 1.5, 1001, 2 ** 60]) } : {})
    })
  } catch {
    return undefined // refused to issue (a subject that is not a key id): nothing to send
  }
}

// ---------------------------------------------------------------- 1. sealed messages

test.before(() => { lapStart = performance.now() })

test(`Trust.open: ${ROUNDS} random, mutated and re-signed sealed messages are refused with RefusedMessage; only genuine ones open, each once`, async () => {
  const seed = BASE_SEED ^ 0x0e11
  const rnd = prng(seed)
  const DOMAIN = 'beemesh.scheduler.v1'
  const sender = new Trust({ root, key: nodeKey, credential: nodeCredential })
  const receiver = new Trust({ root, key: receiverKey, credential: await issueCredential(rootKey, keyId(receiverKey)) })
  await sender.start()
  await receiver.start()
  const identity: WorkloadIdentity = { key: workloadKey, id: workloadId, chain: [await issueCredential(nodeKey, workloadId, { kind: 'workload', workload: 'default/a', replica: 0 }), nodeCredential] }
  const bodies = new Map<string, string>()
  const valid: Uint8Array[] = []
  for (let j = 0; j < 60; j++) {
    const body = JSON.stringify(MESSAGE_BODIES[j % MESSAGE_BODIES.length])
    const value = await sender.sealValue(DOMAIN, body, j % 4 === 3 ? identity : undefined)
    bodies.set(`${value.e.signer}|${value.e.nonce}`, body)
    valid.push(enc.encode(JSON.stringify(value)))
  }
  const opened = new Set<string>()
  let accepted = 0
  const refusals = new Map<string, number>()
  const froms = [undefined, undefined, undefined, nodeId, workloadId, strangerId, '', 'x'.repeat(200)]

  for (let i = 0; i < ROUNDS; i++) {
    const kind = i % 10
    const base = valid[int(rnd, valid.length)]!
    let input: unknown
    let genuine = false // signed by a key the fuzzer holds: opening it is fine (once)
    if (i < valid.length) { input = valid[i]; genuine = true } else if (kind === 0) input = randomBytes(rnd, 600)
    else if (kind === 1) input = enc.encode(JUNK[int(rnd, JUNK.length)]!)
    else if (kind === 2) input = enc.encode(JSON.stringify(mutate(JSON.parse(dec.decode(base)), rnd, 0, IDS)) ?? 'null')
    else if (kind === 3) input = mutate(JSON.parse(dec.decode(base)), rnd, 0, IDS) // already-parsed JSON (the stream path)
    else if (kind === 4) input = flipBytes(base, rnd)
    else if (kind === 5) input = truncate(base, rnd)
    else if (kind === 6) input = base // a replay
    else if (kind === 7) {
      // a chain of a different message, or credentials moved around
      const a = JSON.parse(dec.decode(base)) as { e: unknown, c: unknown[] }
      const b = JSON.parse(dec.decode(valid[int(rnd, valid.length)]!)) as { e: unknown, c: unknown[] }
      const oddLabels = { sig: 'A' + nodeCredential.sig.slice(1), credential: { ...nodeCredential.credential, labels: { zone: pick(rnd, ['\ud800', 'eu\udfff', 'x'.repeat(63), '']) } } }
      const c = [...a.c, ...b.c, nodeCredential, identity.chain[0], oddLabels]
      input = { e: a.e, c: Array.from({ length: int(rnd, 5) }, () => pick(rnd, c)) }
    } else {
      // genuinely signed, with odd contents: envelope fields, node or workload credentials
      genuine = true
      const r = rnd()
      if (r < 0.35) {
        const signer = pick(rnd, [nodeKey, nodeKey, workloadKey, strangerKey])
        const signerId = rnd() < 0.9 ? keyId(signer) : pick(rnd, IDS)
        const nonce = rnd() < 0.8 ? Buffer.from(Array.from({ length: 16 }, () => int(rnd, 256))).toString('hex') : pick(rnd, ['', 'x', 'A'.repeat(32), '0'.repeat(31)])
        const now = rnd() < 0.5 ? Date.now() + pick(rnd, [0, -29_000, -31_000, 4_000, 6_000]) : pick(rnd, ODD_TIMES)
        const domain = rnd() < 0.8 ? DOMAIN : pick(rnd, ['', 'beemesh.heartbeat.v1', 'x'.repeat(100), DOMAIN + '\n'])
        const body = rnd() < 0.7 ? JSON.stringify(mutate(pick(rnd, MESSAGE_BODIES), rnd)) ?? 'null' : mutateString('{"a":1}', rnd)
        let e: unknown
        try { e = await sealText(signer, signerId, domain, body, { now, nonce }) } catch { e = { v: 1 } }
        const chain = signer === workloadKey ? identity.chain : signer === strangerKey ? [await issueCredential(strangerKey, strangerId)] : [nodeCredential]
        input = enc.encode(JSON.stringify({ e, c: rnd() < 0.2 ? mutate(chain, rnd, 0, IDS) : chain }) ?? 'null')
      } else if (r < 0.7) {
        const w = await oddCredential(rnd, rnd() < 0.85 ? nodeKey : pick(rnd, [rootKey, strangerKey, workloadKey]), workloadId, 'workload')
        const hostCred = rnd() < 0.8 ? nodeCredential : await oddCredential(rnd, rootKey, nodeId, 'node')
        input = await sender.seal(DOMAIN, pick(rnd, [...bodies.values()]), { key: workloadKey, id: workloadId, chain: [w, hostCred].filter(x => x != null) as SignedCredential[] })
      } else {
        const n = await oddCredential(rnd, rnd() < 0.85 ? rootKey : pick(rnd, [nodeKey, strangerKey]), nodeId, rnd() < 0.9 ? 'node' : 'workload')
        input = enc.encode(JSON.stringify({ e: await sealText(nodeKey, nodeId, DOMAIN, '{}'), c: n == null ? [] : [n] }))
      }
    }
    const from = pick(rnd, froms)
    const out = await decode('Trust.open', seed, i, input, async () => await receiver.open(DOMAIN, input, from == null ? {} : { from }), err => err instanceof RefusedMessage)
    if (out.ok) {
      accepted++
      // What opened must be genuine: a valid message or one the fuzzer signed, and only once.
      const value = (input instanceof Uint8Array ? JSON.parse(dec.decode(input)) : input) as { e: { signer: string, nonce: string, body: string } }
      const id = `${value.e.signer}|${value.e.nonce}`
      if (opened.has(id)) fail('Trust.open', seed, i, 'a message opened twice (replay accepted)', input)
      opened.add(id)
      if (!genuine && bodies.get(id) !== out.value.body) fail('Trust.open', seed, i, 'a tampered message opened', input)
    } else if (out.err instanceof RefusedMessage) {
      refusals.set(out.err.reason, (refusals.get(out.err.reason) ?? 0) + 1)
    }
  }
  console.log(`  Trust.open: ${counts.get('Trust.open')} inputs, ${accepted} opened, refusals ${JSON.stringify(Object.fromEntries(refusals))}, ${lap()}`)
  assertNoFailures(['Trust.open'])
  assert.ok(accepted >= valid.length, 'every genuine message opened once')
  assert.ok((refusals.get('replayed') ?? 0) > 0, 'replays are refused')
  assert.ok((refusals.get('bad-signature') ?? 0) > 0, 'tampered signatures reach the signature check')
})

// ---------------------------------------------------------------- 2. bearer tokens

test(`verifyToken: ${ROUNDS} mutated and random tokens are refused with TrustError; only genuine ones verify`, async () => {
  const seed = BASE_SEED ^ 0x70c4
  const rnd = prng(seed)
  const tokens: string[] = []
  for (let j = 0; j < 10; j++) tokens.push(await issueToken(j % 5 === 4 ? strangerKey : deployerKey, { mesh: root, ttlMs: 1 + j * 3_600_000 }))
  // genuinely signed, odd clocks: expired, from the future, over-long
  for (const now of [0, 1, Date.now() - 40 * 86_400_000, Date.now() + 86_400_000, 8.64e15, 8.7e15, 2 ** 53 - 40 * 86_400_000, 1.5]) tokens.push(await issueToken(deployerKey, { mesh: root, now }))
  const genuineClaims = new Set(tokens.map(t => t.split('.')[1]!))
  const B64URL = 'ABCxyz0189-_'
  let accepted = 0
  const reasons = new Map<string, number>()
  for (let i = 0; i < ROUNDS; i++) {
    const base = pick(rnd, tokens)
    const parts = base.split('.')
    const kind = i % 8
    let token: string
    if (i < tokens.length) token = tokens[i]!
    else if (kind === 0) token = mutateString(base, rnd, B64URL + '.=+/ \u00e9')
    else if (kind === 1) token = mutateString(base, rnd)
    else if (kind === 2) {
      // claims re-encoded after a JSON mutation, signature kept
      const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown
      token = `bm1.${Buffer.from(JSON.stringify(mutate(claims, rnd, 0, IDS)) ?? '').toString(rnd() < 0.8 ? 'base64url' : 'base64')}.${parts[2]!}`
    } else if (kind === 3) {
      const pool = [...parts, ...pick(rnd, tokens).split('.'), '', 'bm0', 'bm1', '==', parts[2]!.slice(0, 10)]
      token = Array.from({ length: int(rnd, 6) }, () => pick(rnd, pool)).join('.')
    } else if (kind === 4) token = dec.decode(randomBytes(rnd))
    else if (kind === 5) token = pick(rnd, ['', '.', '..', 'bm1..', 'bm1.e30.', 'Bearer ' + base, base + ' ', base + '.', base.repeat(12), 'bm1.' + 'A'.repeat(2100) + '.x', 'bm1.' + 'A'.repeat(2040) + '.x', `bm1.${Buffer.from('{"sub":"' + deployerId + '","iat":0,"exp":1e400,"aud":"beemesh"}').toString('base64url')}.${parts[2]!}`])
    else if (kind === 6) token = `${parts[0]!}.${parts[1]!}.${mutateString(parts[2]!, rnd, B64URL)}` // signature tampered only
    else token = base // a genuine token again
    const out = await decode('verifyToken', seed, i, token, async () => await verifyToken(token, { mesh: root }), err => err instanceof TrustError)
    if (out.ok) {
      accepted++
      const p = token.split('.')
      if (p.length !== 3 || p[0] !== 'bm1' || !genuineClaims.has(p[1]!)) fail('verifyToken', seed, i, 'a token with tampered claims verified', token)
    } else if (out.err instanceof TrustError) reasons.set(out.err.reason, (reasons.get(out.err.reason) ?? 0) + 1)
  }
  console.log(`  verifyToken: ${counts.get('verifyToken')} inputs, ${accepted} verified, refusals ${JSON.stringify(Object.fromEntries(reasons))}, ${lap()}`)
  assertNoFailures(['verifyToken'])
  assert.ok(accepted > 0)
  assert.ok((reasons.get('bad-signature') ?? 0) > 0 && (reasons.get('expired') ?? 0) > 0)
})

// ---------------------------------------------------------------- 3. credentials, signed policies, manifests

/** Inputs for a decoder of parsed JSON values: seeds, JSON mutations, byte-flipped and truncated JSON, junk. */
function valueInput (rnd: Rnd, i: number, seeds: readonly unknown[]): unknown {
  const base = pick(rnd, seeds)
  const kind = i % 6
  if (kind === 0) return parsedJunk(rnd, i)
  if (kind === 1 || kind === 2) return mutate(base, rnd, 0, IDS)
  if (kind === 3 || kind === 4) {
    const bytes = enc.encode(JSON.stringify(base))
    const text = dec.decode(kind === 3 ? flipBytes(bytes, rnd) : truncate(bytes, rnd))
    try { return JSON.parse(text) } catch { return text }
  }
  return base
}

test(`verifyCredential: ${ROUNDS} mutated, random and oddly signed credentials are refused with TrustError`, async () => {
  const seed = BASE_SEED ^ 0xc4ed
  const rnd = prng(seed)
  const seeds: unknown[] = [nodeCredential, await issueCredential(rootKey, deployerId, { labels: { a: 'b', c: '' } }), await issueCredential(nodeKey, workloadId, { kind: 'workload', workload: 'default/a', replica: 0 }), await issueCredential(strangerKey, nodeId)]
  const genuine = new Set(seeds.map(s => canonicalize(s)))
  let accepted = 0
  const reasons = new Map<string, number>()
  for (let i = 0; i < ROUNDS; i++) {
    let value: unknown
    let signed = false
    if (i % 12 === 11) { value = await oddCredential(rnd, pick(rnd, [rootKey, rootKey, nodeKey]), pick(rnd, [nodeId, deployerId, workloadId]), rnd() < 0.7 ? 'node' : 'workload'); signed = true } else value = valueInput(rnd, i, seeds)
    const options = pick(rnd, [{ issuer: root }, { issuer: root }, { issuer: root, subject: nodeId }, { issuer: root, kind: 'node' as const }, { issuer: nodeId, kind: 'workload' as const }, { issuer: 'x' }])
    const out = await decode('verifyCredential', seed, i, { value, options }, async () => await verifyCredential(value, options), err => err instanceof TrustError)
    if (out.ok) {
      accepted++
      if (!signed && !genuine.has(canonicalize(value))) fail('verifyCredential', seed, i, 'a tampered credential verified', value)
    } else if (out.err instanceof TrustError) reasons.set(out.err.reason, (reasons.get(out.err.reason) ?? 0) + 1)
  }
  console.log(`  verifyCredential: ${counts.get('verifyCredential')} inputs, ${accepted} verified, refusals ${JSON.stringify(Object.fromEntries(reasons))}, ${lap()}`)
  assertNoFailures(['verifyCredential'])
  assert.ok(accepted > 0)
})

const POLICY_ENGINE_BASE = `apiVersion: beemesh.io/v1
kind: Policy
metadata: { name: base, version: 3 }
rules:
${exampleRules('ed25519:AAAA')}`
const POLICY_TEXTS = [
  defaultPolicyText({ admins: [deployerId] }),
  defaultPolicyText({ admins: [], version: 7, name: 'strict' }),
  POLICY_ENGINE_BASE,
  JSON.stringify({ apiVersion: 'beemesh.io/v1', kind: 'Policy', metadata: { name: 'j', version: 2 }, rules: [{ id: 'r', effect: 'allow', principals: [{ kind: 'deployer' }], actions: ['*'], resources: [{ kind: 'namespace' }] }] }, null, 2)
]

const laughs = (levels: number, width: number): string => {
  const lines = ['a0: &a0 [lol]']
  for (let l = 1; l <= levels; l++) lines.push(`a${l}: &a${l} [${Array.from({ length: width }, () => `*a${l - 1}`).join(', ')}]`)
  return lines.join('\n') + `\nrules: *a${levels}\n`
}
const YAML_JUNK = [
  '---', '...', '%YAML 1.1', '%TAG ! tag:x,2000:', '? [a, b]\n: c', '!!binary aGVsbG8=', '!!set { a, b }', '!!omap [ a: 1 ]', '!!timestamp 2001-12-14', '!!int 0x1F', '!!float .nan', '!!str', '!!map', '!!seq', '!custom x',
  '&x a', '*x', '<<: *x', '<<: {a: 1}', 'x: &y [*y]', 'version: 1e400', 'version: 99999999999999999999', 'version: -1', 'version: 1.5', 'version: .inf', 'version: 0x10', 'version: "3"', 'id: Admins', 'id: admins', 'effect: maybe', 'kind: node', 'kind: Policy',
  'actions: [deploy, "*", admin, nope]', 'when: { resource.labels.: x }', 'when: { principal.labels.a.b: "*" }', 'name: "' + '*a'.repeat(40) + 'b"', 'labels: { "": x }', '- ', '- - -', '  ', '\t', ':', '|', '>-', '"unterminated', "'", '#', '{', '[', '}', ']', '~', 'null', '__proto__: { polluted: 1 }', 'constructor: { prototype: { polluted: 1 } }',
  laughs(9, 9), laughs(3, 40), '['.repeat(50) + ']'.repeat(50), '{a: '.repeat(50) + '1' + '}'.repeat(50), 'x: ' + '"' + 'y'.repeat(100_000) + '"'
]
/** Costly to parse (10-500 ms): fed now and then, not mixed into every document. */
const YAML_HEAVY = [
  () => '['.repeat(3000) + ']'.repeat(3000), () => '{a: '.repeat(2000) + '1' + '}'.repeat(2000), () => Array.from({ length: 2000 }, (_, d) => ' '.repeat(d) + '- a').join('\n'),
  () => '['.repeat(100_000), () => '{a: '.repeat(50_000), () => '- '.repeat(100_000), () => '#'.repeat(400_000), () => 'x: &a [1]\nb: [' + '*a, '.repeat(5000) + ']'
]
const YAML_CHARS = ':-[]{}#&*!|>\'"%@`,? \t\n\r\\abczAZ09.\u00e9\u2028\ufeff\u0000'

function mutatePolicyText (text: string, rnd: Rnd): string {
  const r = rnd()
  if (r < 0.08) return dec.decode(randomBytes(rnd, 500))
  if (r < 0.18) {
    // a structural mutation of the document, written back as YAML
    const doc = JSON.parse(JSON.stringify(parsePolicyObject(text))) as unknown
    try { return yamlStringify(mutate(doc, rnd, 0, ['*', 'deploy', 'node', 'workload', 'allow', 'deny', 'beemesh.io/v1', 'Policy', 'principal.labels.x'])) ?? '' } catch { return text }
  }
  let lines = text.split('\n')
  for (let e = 0, n = 1 + int(rnd, 4); e < n; e++) {
    const at = int(rnd, lines.length)
    const op = rnd()
    if (op < 0.2) lines.splice(at, 1)
    else if (op < 0.35) lines.splice(at, 0, lines[at] ?? '')
    else if (op < 0.5) lines.splice(at, 0, pick(rnd, YAML_JUNK))
    else if (op < 0.6) lines[at] = (rnd() < 0.5 ? '  ' : '\t') + (lines[at] ?? '')
    else if (op < 0.7) lines[at] = (lines[at] ?? '').replace(/^ {1,2}/, '')
    else if (op < 0.8) { const b = int(rnd, lines.length); [lines[at], lines[b]] = [lines[b] ?? '', lines[at] ?? ''] } else lines[at] = mutateString(lines[at] ?? '', rnd, YAML_CHARS)
  }
  if (rnd() < 0.03) lines = [pick(rnd, YAML_JUNK)]
  return lines.join(rnd() < 0.05 ? '\r\n' : '\n')
}

const policyObjects = new Map<string, unknown>()
function parsePolicyObject (text: string): unknown {
  let o = policyObjects.get(text)
  if (o == null) {
    const set = parsePolicy(text, 'seed.yaml')
    o = { apiVersion: 'beemesh.io/v1', kind: 'Policy', metadata: { name: set.name, version: set.version }, rules: [{ id: 'r', effect: 'allow', principals: [{ kind: 'node', labels: { zone: 'eu' } }], actions: ['host', '*'], resources: [{ kind: 'workload', name: 'a*' }], when: { 'resource.labels.tier': 'prod' } }] }
    policyObjects.set(text, o)
  }
  return o
}

test(`verifySignedPolicy and Trust.applyPolicy: ${ROUNDS} mutated, random and re-signed policies are refused with TrustError (or PolicyError)`, async () => {
  const seed = BASE_SEED ^ 0x9011
  const rnd = prng(seed)
  const seeds: SignedPolicy[] = []
  for (const text of POLICY_TEXTS) seeds.push(await signPolicy(rootKey, text))
  seeds.push(await signPolicy(strangerKey, POLICY_TEXTS[0]!))
  const genuine = new Set(seeds.slice(0, POLICY_TEXTS.length).map(s => canonicalize(s)))
  const receiver = new Trust({ root, key: receiverKey })
  await receiver.start()
  let accepted = 0
  let applied = 0
  for (let i = 0; i < ROUNDS; i++) {
    let value: unknown
    let signed = false
    if (i % 8 === 7) {
      // root-signed, with a mutated document and odd times: the verifier passes it, the store must refuse it cleanly
      const text = mutatePolicyText(pick(rnd, POLICY_TEXTS), rnd)
      try {
        value = await signPolicy(rootKey, text.length > 0 ? text : ' ', rnd() < 0.7 ? Date.now() : pick(rnd, ODD_TIMES))
        signed = true
      } catch {
        value = text // cannot be signed (canonical JSON refuses NaN, lone surrogates): fed unsigned
      }
    } else value = valueInput(rnd, i, seeds)
    const out = await decode('verifySignedPolicy', seed, i, value, async () => await verifySignedPolicy(value, root), err => err instanceof TrustError)
    if (out.ok) {
      accepted++
      if (!signed && !genuine.has(canonicalize(value))) fail('verifySignedPolicy', seed, i, 'a tampered policy verified', value)
    }
    if (signed || i % 50 === 0) {
      const res = await decode('Trust.applyPolicy', seed, i, value, async () => await receiver.applyPolicy(value, 'fuzz'), err => err instanceof TrustError || err instanceof PolicyError)
      if (res.ok) applied++
    }
  }
  console.log(`  verifySignedPolicy: ${counts.get('verifySignedPolicy')} inputs, ${accepted} verified; Trust.applyPolicy: ${counts.get('Trust.applyPolicy')} inputs, ${applied} applied, ${lap()}`)
  assertNoFailures(['verifySignedPolicy', 'Trust.applyPolicy'])
  assert.ok(accepted > 0)
})

test(`verifyManifest: ${ROUNDS} mutated specs and provenances are refused with TrustError; only the signed spec verifies`, async () => {
  const seed = BASE_SEED ^ 0x3a41
  const rnd = prng(seed)
  const pairs: Array<{ spec: Record<string, unknown>, provenance: unknown }> = [
    { spec, provenance: await signManifest(deployerKey, spec) },
    { spec: containerSpec, provenance: await signManifest(nodeKey, containerSpec, { deployer: 'anonymous' }) },
    { spec: { ...spec, provenance: { stale: true } }, provenance: await signManifest(deployerKey, spec, { now: 0 }) }
  ]
  const genuine = new Set(pairs.map(p => canonicalize({ spec: { ...p.spec, provenance: undefined }, provenance: p.provenance })))
  let accepted = 0
  for (let i = 0; i < ROUNDS; i++) {
    const base = pick(rnd, pairs)
    const r = i % 4
    const provenance = r === 1 ? base.provenance : valueInput(rnd, i, pairs.map(p => p.provenance))
    let s = r === 0 || r === 1 ? mutate(base.spec, rnd, 0, IDS) : base.spec
    if (s == null || typeof s !== 'object' || Array.isArray(s)) s = { value: s } // callers always pass a spec object
    s = JSON.parse(JSON.stringify(s)) as unknown // as it arrives: from JSON (no NaN, no undefined)
    const specValue = s as Record<string, unknown>
    const out = await decode('verifyManifest', seed, i, { spec: specValue, provenance }, async () => await verifyManifest(specValue, provenance), err => err instanceof TrustError)
    if (out.ok) {
      accepted++
      if (!genuine.has(canonicalize({ spec: { ...specValue, provenance: undefined }, provenance }))) fail('verifyManifest', seed, i, 'a tampered manifest verified', { spec: specValue, provenance })
    }
  }
  console.log(`  verifyManifest: ${counts.get('verifyManifest')} inputs, ${accepted} verified, ${lap()}`)
  assertNoFailures(['verifyManifest'])
  assert.ok(accepted > 0)
})

// ---------------------------------------------------------------- 4. policy documents

test(`parsePolicy: ${ROUNDS} mutated and junk YAML documents are refused with PolicyError, alias bombs fast`, () => {
  const seed = BASE_SEED ^ 0x9a45
  const rnd = prng(seed)
  let accepted = 0
  let slowest = 0
  for (let i = 0; i < ROUNDS; i++) {
    let text: string
    if (i < POLICY_TEXTS.length) text = POLICY_TEXTS[i]!
    else if (i % 1000 === 500) text = pick(rnd, [laughs(9, 9), laughs(20, 2), laughs(4, 100)]) // alias bombs
    else if (i === 1000) text = 'a: &a [' + '*a, '.repeat(400) + ']' // a sequence anchor aliased inside itself (1.6 KB)
    else if (i % 500 === 250) text = pick(rnd, YAML_HEAVY)() // deep nesting, huge documents
    else text = mutatePolicyText(pick(rnd, POLICY_TEXTS), rnd)
    const start = performance.now()
    const out = decodeSync('parsePolicy', seed, i, text, () => parsePolicy(text, 'fuzz.yaml'), err => err instanceof PolicyError)
    slowest = Math.max(slowest, performance.now() - start)
    if (out.ok) accepted++
    else if (out.err instanceof PolicyError && !/^fuzz\.yaml:\d+:\d+: /.test(out.err.message)) fail('parsePolicy', seed, i, `PolicyError without line and column: ${out.err.message}`, text)
  }
  console.log(`  parsePolicy: ${counts.get('parsePolicy')} inputs, ${accepted} valid, slowest ${slowest.toFixed(0)} ms, ${lap()}`)
  assertNoFailures(['parsePolicy'])
  assert.ok(accepted >= POLICY_TEXTS.length)
})

// ---------------------------------------------------------------- 5. API and protocol bodies

test(`API and state-protocol bodies: ${ROUNDS} random and mutated bodies each through WorkloadSpecSchema, SendRequest, StateRequest and MachineEvent: safeParse never throws`, () => {
  const seed = BASE_SEED ^ 0xa91b
  const rnd = prng(seed)
  const bodies: unknown[] = [
    spec, containerSpec, { ...spec, provenance: { deployer: deployerId, signer: deployerId, signedAt: 1, sig: 'AAAA' } },
    { spec, artifact: 'aGVsbG8=' }, // Apply
    { event: { type: 'go', n: 1 }, id: 'e1', timeoutMs: 1000 }, // SendEvent
    { data: { n: 1 } }, // Publish
    { key: '/beemesh/test/a', value: 'dmFsdWU=', encoding: 'base64' }, // RecordPut
    { op: 'send', workloadId: 'default/a', id: 'e1', event: { type: 'go' }, sender: nodeId },
    { op: 'state', workloadId: 'default/a' },
    { op: 'claim', workloadId: 'default/a', epoch: 1, owner: nodeId },
    { op: 'append', workloadId: 'default/a', epoch: 1, owner: nodeId, entries: [{ seq: 1, epoch: 1, ts: 1, event: { type: 'go' }, state: {} }], snapshot: { seq: 0, epoch: 1, ts: 1, snapshot: {} } },
    { op: 'install', workloadId: 'default/a', epoch: 1, owner: nodeId, entries: [] },
    { op: 'fetch', workloadId: 'default/a' },
    { op: 'erase', workloadId: 'default/a', epoch: 1 }
  ]
  const schemas = { WorkloadSpecSchema, SendRequest, StateRequest, MachineEvent } as const
  const valid = new Map<string, number>()
  for (let i = 0; i < ROUNDS; i++) {
    let body = i < bodies.length ? bodies[i] : valueInput(rnd, i, bodies)
    if (i % 7 === 0 && body != null && typeof body === 'object' && !Array.isArray(body) && rnd() < 0.5) body = { ...body, spec: mutate(pick(rnd, [spec, containerSpec]), rnd, 0, IDS) }
    for (const [name, schema] of Object.entries(schemas)) {
      // The API feeds an Apply body's `spec` and a SendEvent body's `event` on; a protocol message is fed whole.
      const nested = body != null && typeof body === 'object' ? (body as Record<string, unknown>)[name === 'WorkloadSpecSchema' ? 'spec' : 'event'] : undefined
      const value = nested !== undefined && rnd() < 0.5 ? nested : body
      const out = decodeSync(name, seed, i, value, () => (schema as { safeParse: (v: unknown) => { success: boolean } }).safeParse(value), () => false)
      if (out.ok && typeof out.value.success !== 'boolean') fail(name, seed, i, 'safeParse returned no verdict', value)
      if (out.ok && out.value.success) valid.set(name, (valid.get(name) ?? 0) + 1)
    }
  }
  console.log(`  API bodies: ${ROUNDS} bodies × ${Object.keys(schemas).length} schemas, valid ${JSON.stringify(Object.fromEntries(valid))}, ${lap()}`)
  assertNoFailures(Object.keys(schemas))
  for (const name of Object.keys(schemas)) assert.ok((valid.get(name) ?? 0) > 0, `${name}: the valid path is exercised too`)
})

/** A value as JSON bytes; a value too deep to stringify stands as deeply nested JSON text, which is an input too. */
function jsonBytes (value: unknown): Uint8Array {
  try {
    return enc.encode(JSON.stringify(value) ?? 'null')
  } catch {
    return enc.encode('['.repeat(50_000) + ']'.repeat(50_000))
  }
}

test(`admission frames: ${ROUNDS} random and mutated /beemesh/admit frames are refused (MalformedProof or TrustError); only the genuine proof admits`, async () => {
  const seed = BASE_SEED ^ 0xad417
  const rnd = prng(seed)
  const trust = new Trust({ root, key: receiverKey })
  await trust.start()
  const genuine = enc.encode(JSON.stringify({ proof: nodeCredential }))
  const seeds: unknown[] = [{ proof: nodeCredential }, { ok: true, proof: nodeCredential }, { proof: null }, { ok: false, error: 'x' }, { proof: await issueCredential(strangerKey, nodeId) }]
  let admitted = 0
  for (let i = 0; i < ROUNDS; i++) {
    const kind = i % 5
    const bytes = kind === 0 ? randomBytes(rnd) : kind === 1 ? flipBytes(genuine, rnd) : kind === 2 ? truncate(genuine, rnd) : jsonBytes(valueInput(rnd, i, seeds))
    const out = await decode('admission', seed, i, bytes, async () => {
      // What a node does with a frame: decode it, then its gate checks the proof for the connected peer.
      const frame = decodeAdmissionFrame(bytes)
      if (frame.proof == null) throw new TrustError('not-a-member', 'no credential')
      return await trust.admit(frame.proof, nodeId)
    }, err => err instanceof MalformedProof || err instanceof TrustError)
    if (out.ok) {
      admitted++
      if (canonicalize(out.value) !== canonicalize((await verifyCredential(nodeCredential, { issuer: root, subject: nodeId, kind: 'node' })))) fail('admission', seed, i, 'admitted with a credential that is not the genuine one', bytes)
    }
  }
  console.log(`  admission: ${counts.get('admission')} frames, ${admitted} admitted, ${lap()}`)
  assertNoFailures(['admission'])
  assert.ok(admitted > 0, 'the genuine path is exercised too')
})

test(`DHT records: ${ROUNDS} random and mutated records are refused by decodeRecord and the record guard (InvalidRecordError or TrustError); only genuine ones pass`, async () => {
  const seed = BASE_SEED ^ 0xd47
  const rnd = prng(seed)
  const trust = new Trust({ root, key: receiverKey })
  await trust.start()
  const guard = recordGuard(trust)
  const provenance = await signManifest(deployerKey, spec)
  const key = '/beemesh/workload/default/a'
  const good = [
    await encodeRecord(nodeKey, nodeId, key, enc.encode(JSON.stringify({ spec: { ...spec, provenance }, epoch: 1, status: 'Running', placement: [], events: [], updatedAt: 1, updatedBy: nodeId })), Date.now(), Date.now(), nodeCredential),
    await encodeRecord(nodeKey, nodeId, '/beemesh/location/default/a', enc.encode(JSON.stringify({ workloadId: 'default/a', owner: nodeId, epoch: 1, holders: [], seq: 1, ts: 1 })), Date.now(), Date.now(), nodeCredential),
    await encodeRecord(nodeKey, nodeId, `/beemesh/svc/default/a/${nodeId}`, enc.encode('{}'), Date.now(), Date.now(), nodeCredential)
  ]
  const goodText = new Set(good.map(b => dec.decode(b)))
  const goodDecoded = await Promise.all(good.map(async b => await decodeRecord(b)))
  const seeds = good.map(b => JSON.parse(dec.decode(b)) as unknown)
  let passed = 0
  for (let i = 0; i < ROUNDS; i++) {
    const base = pick(rnd, good)
    const kind = i % 5
    const bytes = kind === 0 ? randomBytes(rnd) : kind === 1 ? flipBytes(base, rnd) : kind === 2 ? truncate(base, rnd) : kind === 3 ? jsonBytes(valueInput(rnd, i, seeds)) : base
    const expectedKey = (JSON.parse(dec.decode(base)) as { key: string }).key
    const out = await decode('DHT record', seed, i, bytes, async () => { await guard(await decodeRecord(bytes, expectedKey)) }, err => err instanceof InvalidRecordError || err instanceof TrustError)
    if (out.ok) {
      passed++
      // Bytes may differ where the meaning cannot (base64's unused trailing bits, the credential's encoding); the signed fields may not.
      const r = await decodeRecord(bytes, expectedKey)
      if (!goodText.has(dec.decode(bytes)) && !goodDecoded.some(g => g.key === r.key && g.seq === r.seq && g.ts === r.ts && g.publisher === r.publisher && Buffer.from(g.value).equals(r.value))) fail('DHT record', seed, i, 'a tampered record passed', bytes)
    }
  }
  console.log(`  DHT records: ${counts.get('DHT record')} records, ${passed} passed, ${lap()}`)
  assertNoFailures(['DHT record'])
  assert.ok(passed > 0, 'the genuine path is exercised too')
})

test('every decoder got at least 20,000 inputs, over 100,000 in all, without a crash or a hang', () => {
  const total = [...counts.values()].reduce((a, b) => a + b, 0)
  const crashes = [...failures.values()].reduce((a, f) => a + f.times, 0)
  console.log(`  fuzz: ${total} inputs, ${crashes} crashes (seed ${BASE_SEED}): ${JSON.stringify(Object.fromEntries(counts))}`)
  for (const [name, n] of counts) if (name !== 'Trust.applyPolicy') assert.ok(n >= ROUNDS, `${name}: ${n} inputs`)
  assert.ok(total >= 100_000, `${total} inputs in all`)
  assert.is(crashes, 0, 'no decoder crashed or hung')
  assert.is(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

test.run()
