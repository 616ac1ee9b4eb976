import { peerIdFromString } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { describeError } from '../errors.js'
import { InvalidRecordError } from './errors.js'

/** Every BeeMesh DHT key lives under this namespace: `/beemesh/<kind>/<id>`. */
export const RECORD_NAMESPACE = 'beemesh'
export const MAX_RECORD_BYTES = 256 * 1024
const SIGNING_DOMAIN = 'beemesh-record/v1\n'

/**
 * A signed, versioned DHT record. `seq` orders versions of one key; the selector
 * keeps the highest. The publisher is a peer id whose Ed25519 public key is
 * inlined, so any node can check the signature without another lookup.
 */
export interface SignedRecord {
  v: 1
  key: string
  seq: number
  ts: number
  publisher: string
  /** base64 of the payload bytes */
  value: string
  /** base64 Ed25519 signature over the signing domain and the fields above */
  sig: string
  /** The publisher's membership credential (self-authenticating: signed by the mesh root, naming the publisher). */
  cred?: unknown
}

export interface DecodedRecord {
  key: string
  seq: number
  ts: number
  publisher: string
  value: Uint8Array
  /** The publisher's membership credential, as the record carried it (checked by the node's record guard, not here). */
  cred?: unknown
}

/**
 * What a node checks of a record beyond its signature, before storing it for
 * the mesh or believing it on a get: that the publisher is a member and is the
 * writer this kind of record allows. Throws naming the reason.
 */
export type RecordGuard = (record: DecodedRecord) => Promise<void>

export function isBeeMeshKey (key: string): boolean {
  const parts = key.split('/')
  return parts.length >= 4 && parts[0] === '' && parts[1] === RECORD_NAMESPACE && parts.slice(2).every(p => p.length > 0)
}

function signingBytes (r: Omit<SignedRecord, 'sig' | 'v'>): Uint8Array {
  return uint8ArrayFromString(SIGNING_DOMAIN + JSON.stringify([r.key, r.seq, r.ts, r.publisher, r.value]))
}

export async function encodeRecord (privateKey: PrivateKey, publisher: string, key: string, value: Uint8Array, seq: number, ts = Date.now(), cred?: unknown): Promise<Uint8Array> {
  if (!isBeeMeshKey(key)) throw new InvalidRecordError(`key "${key}" is not of the form /${RECORD_NAMESPACE}/<kind>/<id>`)
  const body = { key, seq, ts, publisher, value: uint8ArrayToString(value, 'base64') }
  const sig = await privateKey.sign(signingBytes(body))
  const record: SignedRecord = { v: 1, ...body, sig: uint8ArrayToString(sig, 'base64'), ...(cred != null ? { cred } : {}) }
  const bytes = uint8ArrayFromString(JSON.stringify(record))
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new InvalidRecordError(`record of ${bytes.byteLength} bytes exceeds ${MAX_RECORD_BYTES}`)
  return bytes
}

function parseEnvelope (bytes: Uint8Array): SignedRecord {
  if (bytes.byteLength > MAX_RECORD_BYTES) throw new InvalidRecordError(`record of ${bytes.byteLength} bytes exceeds ${MAX_RECORD_BYTES}`)
  let r: unknown
  try {
    r = JSON.parse(uint8ArrayToString(bytes))
  } catch (err) {
    throw new InvalidRecordError(`not JSON: ${describeError(err)}`)
  }
  const o = r as Partial<SignedRecord> | null
  if (o == null || typeof o !== 'object') throw new InvalidRecordError('not an object')
  if (o.v !== 1) throw new InvalidRecordError(`unknown version ${String(o.v)}`)
  if (typeof o.key !== 'string') throw new InvalidRecordError('key is not a string')
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 0) throw new InvalidRecordError('seq is not a non-negative integer')
  if (typeof o.ts !== 'number' || !Number.isFinite(o.ts)) throw new InvalidRecordError('ts is not a number')
  if (typeof o.publisher !== 'string') throw new InvalidRecordError('publisher is not a string')
  if (typeof o.value !== 'string') throw new InvalidRecordError('value is not a string')
  if (typeof o.sig !== 'string') throw new InvalidRecordError('sig is not a string')
  return o as SignedRecord
}

/**
 * Decodes and verifies a record: well-formed, stored under its own key, and
 * signed by its publisher. Throws InvalidRecordError naming what is wrong.
 */
export async function decodeRecord (bytes: Uint8Array, expectedKey?: string): Promise<DecodedRecord> {
  const r = parseEnvelope(bytes)
  if (expectedKey != null && r.key !== expectedKey) throw new InvalidRecordError(`record for key "${r.key}" stored under "${expectedKey}"`)
  if (!isBeeMeshKey(r.key)) throw new InvalidRecordError(`key "${r.key}" is outside /${RECORD_NAMESPACE}/`)
  let publicKey
  try {
    publicKey = peerIdFromString(r.publisher).publicKey
  } catch (err) {
    throw new InvalidRecordError(`publisher "${r.publisher}" is not a peer id: ${describeError(err)}`)
  }
  if (publicKey == null) throw new InvalidRecordError(`publisher ${r.publisher} has no inlined public key`)
  let ok = false
  try {
    ok = await publicKey.verify(signingBytes(r), uint8ArrayFromString(r.sig, 'base64'))
  } catch {
    ok = false
  }
  if (!ok) throw new InvalidRecordError(`bad signature from ${r.publisher}`)
  return { key: r.key, seq: r.seq, ts: r.ts, publisher: r.publisher, value: uint8ArrayFromString(r.value, 'base64'), ...(r.cred != null ? { cred: r.cred } : {}) }
}

/** kad-dht validator for `/beemesh/...` keys: the signature, then the node's guard (membership, writer) when it has one. */
export function recordValidator (guard?: RecordGuard): (key: Uint8Array, value: Uint8Array) => Promise<void> {
  return async (key, value) => {
    const record = await decodeRecord(value, uint8ArrayToString(key))
    await guard?.(record)
  }
}

/** kad-dht validator for `/beemesh/...` keys, the signature alone. */
export const validateRecord = recordValidator()

/** kad-dht selector: the highest seq wins, then the newest ts, then the publisher id (a total order). */
export function selectRecord (_key: Uint8Array, records: Uint8Array[]): number {
  let best = -1
  let bestRecord: SignedRecord | undefined
  records.forEach((bytes, i) => {
    let r: SignedRecord
    try {
      r = parseEnvelope(bytes)
    } catch {
      return
    }
    if (bestRecord == null || compareRecords(r, bestRecord) > 0) {
      best = i
      bestRecord = r
    }
  })
  return best < 0 ? 0 : best
}

function compareRecords (a: Pick<SignedRecord, 'seq' | 'ts' | 'publisher'>, b: Pick<SignedRecord, 'seq' | 'ts' | 'publisher'>): number {
  if (a.seq !== b.seq) return a.seq - b.seq
  if (a.ts !== b.ts) return a.ts - b.ts
  return a.publisher < b.publisher ? -1 : a.publisher > b.publisher ? 1 : 0
}
