/**
 * Trust material: key files, membership credentials signed by the mesh's trust
 * root, deployer bearer tokens, root-signed policies, workload-instance
 * credentials and the signatures that prove who deployed a manifest.
 *
 * Every key is Ed25519 and every principal is named by a libp2p peer id
 * string, which inlines the public key: a signature can be checked without
 * looking anything up. Each kind of signature has its own domain prefix, so
 * one signed for a token can never pass as a credential or a manifest.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import canonicalize from 'canonicalize'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import * as z from 'zod'
import { describeError } from '../errors.js'
import { TrustError } from './errors.js'

export { TrustError, type TrustRefusal } from './errors.js'

const API_VERSION = 'beemesh.io/v1'
const DAY = 24 * 60 * 60 * 1000
/** How far a signer's clock may run ahead of ours before its credential or token is "not yet valid". */
const SKEW_MS = 5 * 60 * 1000

const id = z.string().min(10).max(128)
const sig = z.string().min(1).max(200)

// ---------------------------------------------------------------- keys

export function keyId (key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}

/** The public key inlined in a peer id; throws TrustError (malformed) for anything else. */
export function publicKeyOf (principal: string): PublicKey {
  let key: PublicKey | undefined
  try {
    key = peerIdFromString(principal).publicKey
  } catch {
    throw new TrustError('malformed', `"${principal.slice(0, 60)}" is not a key id`)
  }
  if (key == null) throw new TrustError('malformed', `key id ${principal} has no inlined public key`)
  return key
}

export async function generateKey (): Promise<PrivateKey> {
  return await generateKeyPair('Ed25519')
}

const KeyFileSchema = z.strictObject({ apiVersion: z.literal(API_VERSION), kind: z.literal('Key'), id, privateKey: z.string().min(1) })

/** Writes a key file (mode 0600): JSON with the key id and the base64 protobuf of the private key. Refuses to overwrite. */
export async function writeKeyFile (path: string, key: PrivateKey, { overwrite = false } = {}): Promise<string> {
  const keyIdValue = keyId(key)
  const body = { apiVersion: API_VERSION, kind: 'Key', id: keyIdValue, privateKey: uint8ArrayToString(privateKeyToProtobuf(key), 'base64') }
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 })
    await writeFile(path, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: overwrite ? 'w' : 'wx' })
    await chmod(path, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TrustError('key-file', `${path}: a key file is already there; refusing to overwrite it (pass --force to replace it)`)
    throw new TrustError('key-file', `${path}: cannot write: ${describeError(err)}`, { cause: err })
  }
  return keyIdValue
}

export async function readKeyFile (path: string): Promise<{ key: PrivateKey, id: string }> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
    throw new TrustError('key-file', `${path}: ${missing ? 'no such key file (create one with `beemesh keygen`)' : `cannot read: ${describeError(err)}`}`, { cause: err })
  }
  let parsed: z.infer<typeof KeyFileSchema>
  try {
    parsed = KeyFileSchema.parse(JSON.parse(text))
  } catch {
    throw new TrustError('key-file', `${path}: not a BeeMesh key file (expected JSON with apiVersion ${API_VERSION}, kind Key, id and privateKey)`)
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(uint8ArrayFromString(parsed.privateKey, 'base64'))
  } catch (err) {
    throw new TrustError('key-file', `${path}: corrupt private key: ${describeError(err)}`, { cause: err })
  }
  if (key.type !== 'Ed25519') throw new TrustError('key-file', `${path}: expected an Ed25519 key, found ${key.type}`)
  if (keyId(key) !== parsed.id) throw new TrustError('key-file', `${path}: the id ${parsed.id} does not belong to the private key in the file`)
  return { key, id: parsed.id }
}

async function signWith (key: PrivateKey, domain: string, payload: string): Promise<string> {
  return uint8ArrayToString(await key.sign(uint8ArrayFromString(`${domain}\n${payload}`)), 'base64')
}

async function verifyBy (principal: string, domain: string, payload: string, signature: string): Promise<boolean> {
  const key = publicKeyOf(principal)
  let bytes: Uint8Array
  try {
    bytes = uint8ArrayFromString(signature, 'base64')
  } catch {
    return false
  }
  try {
    return await key.verify(uint8ArrayFromString(`${domain}\n${payload}`), bytes)
  } catch {
    return false
  }
}

/** Latest timestamp a Date can show (ms): anything later is malformed. */
const MAX_TIME = 8.64e15
const time = z.number().int().min(0).max(MAX_TIME)

function canonical (value: unknown): string {
  let text: string | undefined
  try {
    text = canonicalize(value)
  } catch (err) {
    // e.g. a lone surrogate in a string: not representable in canonical JSON.
    throw new TrustError('malformed', `value cannot be put in canonical JSON: ${describeError(err)}`)
  }
  if (text == null) throw new TrustError('malformed', 'value cannot be put in canonical JSON')
  return text
}

function zodProblem (err: z.ZodError): string {
  const issue = err.issues[0]
  return `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`
}

// ---------------------------------------------------------------- membership credentials

const labels = z.record(z.string().min(1).max(317), z.string().max(63))
export const CredentialSchema = z.strictObject({
  v: z.literal(1),
  /**
   * `node`: a member of the mesh, signed by the root. `workload`: one workload
   * instance, signed by the node hosting it. `deployer`: an API caller the root
   * vouches for (its tokens carry it), whom no policy rule needs to name.
   */
  kind: z.enum(['node', 'workload', 'deployer']),
  subject: id,
  issuer: id,
  labels: labels.optional(),
  /** For workload credentials: `<namespace>/<name>` and the replica it runs. */
  workload: z.string().max(200).optional(),
  replica: z.number().int().min(0).max(1000).optional(),
  issuedAt: time,
  expiresAt: time
})
export type Credential = z.infer<typeof CredentialSchema>
export const SignedCredentialSchema = z.strictObject({ credential: CredentialSchema, sig })
export type SignedCredential = z.infer<typeof SignedCredentialSchema>
const CREDENTIAL_DOMAIN = 'beemesh-credential/v1'

export interface IssueOptions {
  kind?: Credential['kind']
  labels?: Record<string, string>
  ttlMs?: number
  now?: number
  workload?: string
  replica?: number
}

/** The issuer (the mesh root for nodes, a node for its workloads) vouches for `subject` until the credential expires. */
export async function issueCredential (issuerKey: PrivateKey, subject: string, options: IssueOptions = {}): Promise<SignedCredential> {
  const now = options.now ?? Date.now()
  publicKeyOf(subject)
  const credential: Credential = {
    v: 1,
    kind: options.kind ?? 'node',
    subject,
    issuer: keyId(issuerKey),
    ...(options.labels != null && Object.keys(options.labels).length > 0 ? { labels: options.labels } : {}),
    ...(options.workload != null ? { workload: options.workload } : {}),
    ...(options.replica != null ? { replica: options.replica } : {}),
    issuedAt: now,
    expiresAt: now + (options.ttlMs ?? DEFAULT_CREDENTIAL_TTL_MS)
  }
  return { credential, sig: await signWith(issuerKey, CREDENTIAL_DOMAIN, canonical(credential)) }
}

/** How long a member credential lives unless the issuer says otherwise: days, not a year (renew with `beemesh credential issue`). */
export const DEFAULT_CREDENTIAL_TTL_MS = 30 * DAY
/** A node warns at start when its credential runs out within this long. */
export const CREDENTIAL_RENEW_WARNING_MS = 7 * DAY

/** The warning a node logs when its own credential is close to expiry (undefined: not yet). */
export function credentialExpiryWarning (credential: Credential, now = Date.now(), within = CREDENTIAL_RENEW_WARNING_MS): string | undefined {
  const left = credential.expiresAt - now
  if (left > within) return undefined
  if (left <= 0) return `this node's membership credential expired at ${new Date(credential.expiresAt).toISOString()}: peers refuse it; issue a new one with \`beemesh credential issue\` and restart the node with it`
  const days = Math.floor(left / DAY)
  const hours = Math.floor((left % DAY) / 3600_000)
  return `this node's membership credential expires at ${new Date(credential.expiresAt).toISOString()} (in ${days}d ${hours}h): peers will refuse it then; issue a new one with \`beemesh credential issue\` and restart the node with it`
}

export interface VerifyCredentialOptions {
  /** Who must have signed it. */
  issuer: string
  /** Whom it must be for (omit: anyone). */
  subject?: string
  kind?: Credential['kind']
  now?: number
}

/** Checks a credential; throws TrustError with the reason (malformed, unknown-issuer, bad-signature, expired, not-yet-valid, wrong-subject). */
export async function verifyCredential (value: unknown, options: VerifyCredentialOptions): Promise<Credential> {
  const parsed = SignedCredentialSchema.safeParse(value)
  if (!parsed.success) throw new TrustError('malformed', `credential ${zodProblem(parsed.error)}`)
  const { credential, sig: signature } = parsed.data
  const now = options.now ?? Date.now()
  if (options.kind != null && credential.kind !== options.kind) throw new TrustError('malformed', `a ${credential.kind} credential where a ${options.kind} credential is needed`)
  if (credential.issuer !== options.issuer) throw new TrustError('unknown-issuer', `credential of ${credential.subject} is issued by ${credential.issuer}, not by the trusted ${credential.kind === 'node' ? 'mesh root' : 'node'} ${options.issuer}`)
  if (options.subject != null && credential.subject !== options.subject) throw new TrustError('wrong-subject', `credential is for ${credential.subject}, presented by ${options.subject}`)
  if (!await verifyBy(credential.issuer, CREDENTIAL_DOMAIN, canonical(credential), signature)) throw new TrustError('bad-signature', `credential of ${credential.subject} does not verify against ${credential.issuer} (forged or tampered)`)
  if (credential.expiresAt <= now) throw new TrustError('expired', `credential of ${credential.subject} expired at ${new Date(credential.expiresAt).toISOString()}`)
  if (credential.issuedAt > now + SKEW_MS) throw new TrustError('not-yet-valid', `credential of ${credential.subject} is issued in the future (${new Date(credential.issuedAt).toISOString()})`)
  return credential
}

// ---------------------------------------------------------------- bearer tokens

const TOKEN_PREFIX = 'bm1'
const TOKEN_DOMAIN = 'beemesh-token/v1'
/** `aud` is the mesh id: the key id of the mesh's root, so a token made for one mesh is refused by every other. */
const TokenClaims = z.strictObject({ sub: id, iat: time, exp: time, aud: id, cred: SignedCredentialSchema.optional() })
export type TokenClaims = z.infer<typeof TokenClaims>
/** Longest lifetime a token may claim: a leaked token expires. */
export const MAX_TOKEN_TTL_MS = 30 * DAY

/**
 * `bm1.<claims>.<signature>`, base64url: a bearer token that proves the holder
 * of the deployer key made it, for the mesh whose root key id is `mesh` (its `aud`).
 */
export async function issueToken (deployerKey: PrivateKey, { mesh, ttlMs = 60 * 60 * 1000, now = Date.now(), credential }: { mesh: string, ttlMs?: number, now?: number, credential?: SignedCredential }): Promise<string> {
  if (ttlMs <= 0 || ttlMs > MAX_TOKEN_TTL_MS) throw new TrustError('malformed', `token lifetime must be between 1 ms and ${MAX_TOKEN_TTL_MS / DAY} days`)
  publicKeyOf(mesh)
  const sub = keyId(deployerKey)
  if (credential != null && (credential.credential.kind !== 'deployer' || credential.credential.subject !== sub)) {
    throw new TrustError('wrong-subject', `the credential is a ${credential.credential.kind} credential of ${credential.credential.subject}, not a deployer credential of ${sub}`)
  }
  const claims: TokenClaims = { sub, iat: now, exp: now + ttlMs, aud: mesh, ...(credential != null ? { cred: credential } : {}) }
  const body = uint8ArrayToString(uint8ArrayFromString(canonical(claims)), 'base64url')
  const signature = uint8ArrayToString(uint8ArrayFromString(await signWith(deployerKey, TOKEN_DOMAIN, body), 'base64'), 'base64url')
  return `${TOKEN_PREFIX}.${body}.${signature}`
}

/** Checks a bearer token made for the mesh `mesh` (its root key id) and returns its claims; throws TrustError naming the problem. */
export async function verifyToken (token: string, { mesh, now = Date.now() }: { mesh: string, now?: number }): Promise<TokenClaims> {
  if (token.length > 4096) throw new TrustError('malformed', 'bearer token is too long')
  const parts = token.split('.')
  if (parts.length !== 3 || parts[0] !== TOKEN_PREFIX) throw new TrustError('malformed', 'bearer token is not a BeeMesh token (expected bm1.<claims>.<signature>; make one with `beemesh token`)')
  let claims: TokenClaims
  try {
    claims = TokenClaims.parse(JSON.parse(uint8ArrayToString(uint8ArrayFromString(parts[1]!, 'base64url'))))
  } catch {
    throw new TrustError('malformed', 'bearer token claims are not valid')
  }
  let signature: string
  try {
    signature = uint8ArrayToString(uint8ArrayFromString(parts[2]!, 'base64url'), 'base64')
  } catch {
    throw new TrustError('malformed', 'bearer token signature is not base64url')
  }
  if (!await verifyBy(claims.sub, TOKEN_DOMAIN, parts[1]!, signature)) throw new TrustError('bad-signature', `bearer token of ${claims.sub} does not verify (forged or tampered)`)
  if (claims.exp <= now) throw new TrustError('expired', `bearer token of ${claims.sub} expired at ${new Date(claims.exp).toISOString()}`)
  if (claims.iat > now + SKEW_MS) throw new TrustError('not-yet-valid', `bearer token of ${claims.sub} is issued in the future`)
  if (claims.exp - claims.iat > MAX_TOKEN_TTL_MS) throw new TrustError('malformed', `bearer token of ${claims.sub} claims a lifetime over ${MAX_TOKEN_TTL_MS / DAY} days`)
  if (claims.aud !== mesh) throw new TrustError('wrong-audience', `bearer token of ${claims.sub} is for mesh ${claims.aud}, not this mesh (${mesh})`)
  return claims
}

// ---------------------------------------------------------------- root-signed policies

export const SignedPolicySchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('SignedPolicy'),
  /** The policy document as the operator wrote it (YAML or JSON): errors point into it. */
  text: z.string().min(1).max(512 * 1024),
  signer: id,
  signedAt: time,
  sig
})
export type SignedPolicy = z.infer<typeof SignedPolicySchema>
const POLICY_DOMAIN = 'beemesh-policy/v1'

export async function signPolicy (rootKey: PrivateKey, text: string, now = Date.now()): Promise<SignedPolicy> {
  const unsigned = { apiVersion: API_VERSION, kind: 'SignedPolicy' as const, text, signer: keyId(rootKey), signedAt: now }
  return { ...unsigned, apiVersion: API_VERSION, sig: await signWith(rootKey, POLICY_DOMAIN, canonical(unsigned)) }
}

/** Checks that a policy is signed by the mesh root; parsing and versioning are the PolicyStore's. */
export async function verifySignedPolicy (value: unknown, root: string): Promise<SignedPolicy> {
  const parsed = SignedPolicySchema.safeParse(value)
  if (!parsed.success) throw new TrustError('malformed', `signed policy ${zodProblem(parsed.error)}`)
  const { sig: signature, ...unsigned } = parsed.data
  if (unsigned.signer !== root) throw new TrustError('unknown-issuer', `policy is signed by ${unsigned.signer}, not by the mesh root ${root}`)
  if (!await verifyBy(unsigned.signer, POLICY_DOMAIN, canonical(unsigned), signature)) throw new TrustError('bad-signature', 'policy signature does not verify (forged or tampered)')
  return parsed.data
}

// ---------------------------------------------------------------- who deployed a manifest

export const ProvenanceSchema = z.strictObject({
  /** The deployer the manifest is deployed for. */
  deployer: z.string().min(1).max(128),
  /** Who signed: the deployer's own key, or a member node that authenticated the deployer's bearer token. */
  signer: id,
  signedAt: time,
  /**
   * Until when the signature may be used to apply the spec (accepted as a new
   * spec by an API). It binds the apply, not the running workload: a record keeps
   * its manifest for the workload's life. Absent only on manifests signed before it existed.
   */
  expiresAt: time.optional(),
  sig
})
export type Provenance = z.infer<typeof ProvenanceSchema>

/** How long a signed manifest may be applied after signing unless the signer says otherwise. */
export const MANIFEST_APPLY_TTL_MS = DAY
/** The longest apply lifetime a node accepts on a manifest. */
export const MAX_MANIFEST_APPLY_TTL_MS = 30 * DAY
const MANIFEST_DOMAIN = 'beemesh-manifest/v1'

function manifestPayload (spec: object, p: Omit<Provenance, 'sig'>): string {
  const rest: Record<string, unknown> = { ...spec }
  delete rest.provenance
  return canonical({ spec: rest, deployer: p.deployer, signer: p.signer, signedAt: p.signedAt, ...(p.expiresAt != null ? { expiresAt: p.expiresAt } : {}) })
}

/** Signs a (schema-parsed) workload spec: the artifact's sha256 is in it, so the bundle is signed too. */
export async function signManifest (key: PrivateKey, spec: object, { deployer, now = Date.now(), ttlMs = MANIFEST_APPLY_TTL_MS }: { deployer?: string, now?: number, ttlMs?: number } = {}): Promise<Provenance> {
  if (!(ttlMs > 0) || ttlMs > MAX_MANIFEST_APPLY_TTL_MS) throw new TrustError('malformed', `a manifest's apply lifetime must be between 1 ms and ${MAX_MANIFEST_APPLY_TTL_MS / DAY} days, got ${ttlMs} ms`)
  const unsigned = { deployer: deployer ?? keyId(key), signer: keyId(key), signedAt: now, expiresAt: now + ttlMs }
  return { ...unsigned, sig: await signWith(key, MANIFEST_DOMAIN, manifestPayload(spec, unsigned)) }
}

/** Checks the signature over a spec; who may sign and deploy is for the caller (trust.ts) to decide. */
export async function verifyManifest (spec: object, provenance: unknown): Promise<Provenance> {
  const parsed = ProvenanceSchema.safeParse(provenance)
  if (!parsed.success) throw new TrustError('unsigned', `manifest is not signed (${zodProblem(parsed.error)})`)
  if (!await verifyBy(parsed.data.signer, MANIFEST_DOMAIN, manifestPayload(spec, parsed.data), parsed.data.sig)) {
    throw new TrustError('bad-signature', `manifest signature of ${parsed.data.signer} does not verify (forged or tampered manifest or artifact)`)
  }
  return parsed.data
}

/**
 * Whether a (verified) manifest may still be applied: signed with an expiry
 * that has not passed, and not dated ahead of the clock. A captured manifest
 * cannot be replayed later, e.g. to re-create a deleted workload. Throws TrustError.
 */
export function checkApplyWindow (id: string, p: Provenance, now = Date.now()): void {
  if (p.expiresAt == null) throw new TrustError('expired', `manifest of ${id} carries no expiry (signed by an older beemesh): sign it again to apply it`)
  if (p.signedAt > now + SKEW_MS) throw new TrustError('not-yet-valid', `manifest of ${id} is signed ${p.signedAt - now} ms in the future (clock skew over ${SKEW_MS} ms)`)
  if (p.expiresAt - p.signedAt > MAX_MANIFEST_APPLY_TTL_MS) throw new TrustError('malformed', `manifest of ${id} claims an apply lifetime over ${MAX_MANIFEST_APPLY_TTL_MS / DAY} days`)
  if (p.expiresAt <= now) throw new TrustError('expired', `manifest of ${id} could be applied until ${new Date(p.expiresAt).toISOString()}, signed ${new Date(p.signedAt).toISOString()}: an old signed manifest cannot be applied again (replay); sign it again`)
}

// ---------------------------------------------------------------- the mesh's trust file

export const MeshTrustSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Mesh'),
  name: z.string().min(1).max(63),
  /** The trust root's key id: it signs node credentials and policies. */
  root: id,
  /** The policy nodes start with (newer ones arrive through the mesh). */
  policy: SignedPolicySchema.optional()
})
export type MeshTrust = z.infer<typeof MeshTrustSchema>

export async function readJsonFile<T> (path: string, schema: z.ZodType<T>, what: string): Promise<T> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new TrustError('key-file', `${path}: cannot read ${what}: ${describeError(err)}`, { cause: err })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    throw new TrustError('malformed', `${path}: ${what} is not JSON`)
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new TrustError('malformed', `${path}: not a valid ${what}: ${zodProblem(parsed.error)}`)
  return parsed.data
}
