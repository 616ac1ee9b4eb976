/**
 * Signed, fresh messages: the envelope every scheduler, heartbeat and state
 * message will travel in (the zero-trust issue). The sender signs a domain
 * (what kind of message this is), its id, a timestamp, a random nonce and the
 * body; a receiver checks the signature against the key inlined in the
 * sender's id, that the domain is the one it expects, that the message is
 * neither stale nor from the future, and that it has not seen the nonce before.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import * as z from 'zod'
import { EnvelopeError } from './errors.js'

export { EnvelopeError, type EnvelopeRefusal } from './errors.js'

const SIGNING_PREFIX = 'beemesh-envelope/v1\n'
/** Largest envelope accepted, before parsing. */
export const MAX_ENVELOPE_BYTES = 1024 * 1024

export interface SignedEnvelope {
  v: 1
  /** What the message is (`scheduler`, `heartbeat`, `state` …): a signature for one domain is no good in another. */
  domain: string
  /** The signer's peer id (an Ed25519 key inlined: no lookup needed to check the signature). */
  signer: string
  /** Sender's clock, ms since the epoch. */
  ts: number
  /** 16 random bytes, hex: with `signer`, what makes a replay recognisable. */
  nonce: string
  /** The message, as JSON text (signed as is, so no canonical form is needed). */
  body: string
  /** base64 Ed25519 signature over the prefix and the fields above. */
  sig: string
}

const EnvelopeSchema = z.object({
  v: z.literal(1),
  domain: z.string().min(1).max(64),
  signer: z.string().min(10).max(128),
  ts: z.number().int().min(0),
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  body: z.string().max(MAX_ENVELOPE_BYTES),
  sig: z.string().min(1).max(200)
}).strict()

function signingBytes (e: Omit<SignedEnvelope, 'v' | 'sig'>): Uint8Array {
  return uint8ArrayFromString(SIGNING_PREFIX + JSON.stringify([e.domain, e.signer, e.ts, e.nonce, e.body]))
}

/** Signs `body` for `domain` as `signer` (the peer id of `privateKey`). */
export async function seal (privateKey: PrivateKey, signer: string, domain: string, body: unknown, options: { now?: number, nonce?: string } = {}): Promise<SignedEnvelope> {
  return await sealText(privateKey, signer, domain, JSON.stringify(body), options)
}

/** Signs a body that is JSON text already, as is. */
export async function sealText (privateKey: PrivateKey, signer: string, domain: string, text: string, { now = Date.now(), nonce = randomBytes(16).toString('hex') }: { now?: number, nonce?: string } = {}): Promise<SignedEnvelope> {
  const unsigned = { domain, signer, ts: now, nonce, body: text }
  const sig = await signBytes(privateKey, signingBytes(unsigned))
  return { v: 1, ...unsigned, sig: uint8ArrayToString(sig, 'base64') }
}

/**
 * Remembers (signer, nonce) pairs for `windowMs`: anything older is refused as
 * stale anyway, so memory stays bounded by the message rate times the window
 * (and by `maxEntries`).
 */
export type ReplayVerdict = 'new' | 'replayed' | 'full'

export class ReplayGuard {
  /** `signer|nonce` → the message's timestamp. */
  private readonly seen = new Map<string, number>()
  private readonly perSigner = new Map<string, number>()
  private lastFullPrune = 0

  /**
   * Remembers every message for `windowMs`: at most `maxEntries` in all and
   * `maxPerSigner` of one signer (so one busy or hostile signer cannot crowd
   * the others out). When full, it refuses a new message ('full') rather than
   * forget one still inside its window, which would let that one be replayed.
   */
  constructor (private readonly windowMs: number, private readonly maxEntries = 250_000, private readonly maxPerSigner = Math.max(1, Math.floor(maxEntries / 4))) {}

  /** 'new' the first time a (signer, nonce) is offered within the window; 'replayed' after; 'full' when it cannot be remembered. */
  check (signer: string, nonce: string, ts: number, now: number): ReplayVerdict {
    this.prune(now)
    const key = `${signer}|${nonce}`
    if (this.seen.has(key)) return 'replayed'
    if (this.seen.size >= this.maxEntries || (this.perSigner.get(signer) ?? 0) >= this.maxPerSigner) {
      // Entries arrive roughly in timestamp order, not exactly: look at all of them, at most once a second.
      if (now - this.lastFullPrune >= 1_000) { this.lastFullPrune = now; this.prune(now, true) }
      if (this.seen.size >= this.maxEntries || (this.perSigner.get(signer) ?? 0) >= this.maxPerSigner) return 'full'
    }
    this.seen.set(key, ts)
    this.perSigner.set(signer, (this.perSigner.get(signer) ?? 0) + 1)
    return 'new'
  }

  get size (): number {
    return this.seen.size
  }

  private prune (now: number, all = false): void {
    for (const [key, ts] of this.seen) {
      if (ts >= now - this.windowMs) {
        if (all) continue
        break // insertion order is close to timestamp order: the cheap prune stops at the first fresh entry
      }
      this.seen.delete(key)
      const signer = key.slice(0, key.indexOf('|'))
      const n = (this.perSigner.get(signer) ?? 1) - 1
      if (n <= 0) this.perSigner.delete(signer)
      else this.perSigner.set(signer, n)
    }
  }
}

export interface OpenOptions {
  /** The domain this receiver expects. */
  domain: string
  now?: number
  /** Older than this is stale. Default 30 s. */
  maxAgeMs?: number
  /** Further in the future than this is refused (clock skew). Default 5 s. */
  maxSkewMs?: number
  /** Shared by every message of the domain; omit to skip replay checks (tests of signatures alone). */
  replay?: ReplayGuard
}

export interface Opened<T> {
  signer: string
  ts: number
  body: T
}

/** Checks a signature over some bytes. */
type Verifier = (data: Uint8Array, sig: Uint8Array) => boolean | Promise<boolean>

/**
 * Signers' keys as parsed from their peer ids, as Node key objects: a few
 * members send most messages, and parsing a peer id and importing its key
 * cost more than the signature check itself. Bounded: the oldest is forgotten.
 */
const signerKeys = new Map<string, Verifier>()
const SIGNER_KEYS_MAX = 4_096

function signerKey (signer: string): Verifier {
  const hit = signerKeys.get(signer)
  if (hit != null) return hit
  let publicKey
  try {
    publicKey = peerIdFromString(signer).publicKey
  } catch {
    throw new EnvelopeError('malformed', `signer "${signer.slice(0, 60)}" is not a peer id`)
  }
  if (publicKey == null) throw new EnvelopeError('malformed', `signer ${signer} has no inlined public key`)
  let verifier: Verifier
  if (publicKey.type === 'Ed25519') {
    const key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey.raw).toString('base64url') } })
    verifier = (data, sig) => sig.byteLength === 64 && cryptoVerify(null, data, key, sig)
  } else {
    verifier = async (data, sig) => await publicKey.verify(data, sig)
  }
  if (signerKeys.size >= SIGNER_KEYS_MAX) signerKeys.delete(signerKeys.keys().next().value!)
  signerKeys.set(signer, verifier)
  return verifier
}

/** Our own Ed25519 keys as Node key objects, imported once rather than per signature. */
const signingKeys = new WeakMap<PrivateKey, KeyObject>()

async function signBytes (privateKey: PrivateKey, data: Uint8Array): Promise<Uint8Array> {
  if (privateKey.type !== 'Ed25519') return await privateKey.sign(data)
  let key = signingKeys.get(privateKey)
  if (key == null) {
    const raw = privateKey.raw // seed, then public key
    key = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(raw.subarray(0, 32)).toString('base64url'), x: Buffer.from(raw.subarray(32)).toString('base64url') } })
    signingKeys.set(privateKey, key)
  }
  return cryptoSign(null, data, key)
}

/**
 * Checks an envelope (bytes or parsed JSON) and returns it, body still JSON
 * text. Throws EnvelopeError with a `reason` of malformed, wrong-domain,
 * bad-signature, stale, future or replayed, and a message naming the problem.
 */
export async function verifyEnvelope (input: Uint8Array | unknown, options: OpenOptions): Promise<SignedEnvelope> {
  const { domain, now = Date.now(), maxAgeMs = 30_000, maxSkewMs = 5_000, replay } = options
  let value = input
  if (input instanceof Uint8Array) {
    if (input.byteLength > MAX_ENVELOPE_BYTES) throw new EnvelopeError('malformed', `envelope of ${input.byteLength} bytes exceeds ${MAX_ENVELOPE_BYTES}`)
    try {
      value = JSON.parse(uint8ArrayToString(input))
    } catch {
      throw new EnvelopeError('malformed', 'envelope is not JSON')
    }
  }
  const parsed = EnvelopeSchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new EnvelopeError('malformed', `envelope ${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`.replace(/ :/, ':'))
  }
  const e = parsed.data as SignedEnvelope
  if (e.domain !== domain) throw new EnvelopeError('wrong-domain', `envelope signed for "${e.domain}", expected "${domain}"`)
  const verify = signerKey(e.signer)
  let sig: Uint8Array
  try {
    sig = uint8ArrayFromString(e.sig, 'base64')
  } catch {
    throw new EnvelopeError('malformed', 'signature is not base64')
  }
  let good = false
  try {
    good = await verify(signingBytes(e), sig)
  } catch {
    good = false
  }
  if (!good) throw new EnvelopeError('bad-signature', `signature of ${e.signer} does not verify (forged or tampered)`)
  if (e.ts < now - maxAgeMs) throw new EnvelopeError('stale', `message from ${e.signer} is ${now - e.ts} ms old (limit ${maxAgeMs} ms)`)
  if (e.ts > now + maxSkewMs) throw new EnvelopeError('future', `message from ${e.signer} is ${e.ts - now} ms in the future (limit ${maxSkewMs} ms)`)
  const verdict = replay?.check(e.signer, e.nonce, e.ts, now)
  if (verdict === 'replayed') throw new EnvelopeError('replayed', `message ${e.nonce} from ${e.signer} was seen before (replay)`)
  if (verdict === 'full') throw new EnvelopeError('overloaded', `message ${e.nonce} from ${e.signer} refused: the replay window is full (refused rather than forget a message still inside it)`)
  return e
}

/** Checks an envelope like `verifyEnvelope` and returns its parsed body. */
export async function open<T = unknown> (input: Uint8Array | unknown, options: OpenOptions): Promise<Opened<T>> {
  const e = await verifyEnvelope(input, options)
  let body: T
  try {
    body = JSON.parse(e.body) as T
  } catch {
    throw new EnvelopeError('malformed', `body signed by ${e.signer} is not JSON`)
  }
  return { signer: e.signer, ts: e.ts, body }
}
