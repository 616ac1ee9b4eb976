/**
 * A node's trust service: whom it believes (members credentialed by the mesh
 * root), what it lets them do (the policy in force), and the checks every
 * message, manifest and API call goes through before it is acted on.
 *
 * Messages between nodes travel sealed: `{e, c}`, where `e` is a signed, fresh
 * envelope (envelope.ts) and `c` the signer's credential chain: a node's
 * membership credential (signed by the root), or a workload instance's
 * credential (signed by its host node) followed by that node's. A message is
 * acted on only when the envelope verifies, is fresh and unseen, and the
 * chain ends at the mesh root.
 */
import type { PrivateKey } from '@libp2p/interface'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import * as z from 'zod'
import { describeError } from '../errors.js'
import { silentLogger, type Logger } from '../transport/logger.js'
import { generateKey, issueCredential, keyId, signManifest, SignedCredentialSchema, verifyCredential, verifyManifest, verifySignedPolicy, verifyToken, type Credential, type Provenance, type SignedCredential, type SignedPolicy } from './credentials.js'
import { type Action, type Decision, type Labels, PolicyStore, type PolicySet, type Principal, type Resource } from './engine.js'
import { MAX_ENVELOPE_BYTES, ReplayGuard, sealText, verifyEnvelope, type SignedEnvelope } from './envelope.js'
import { EnvelopeError, PolicyError, TrustError } from './errors.js'

/** How long a workload instance's credential lasts; its host re-issues it on restart. */
const WORKLOAD_CREDENTIAL_TTL_MS = 7 * 24 * 60 * 60 * 1000

const SealedSchema = z.strictObject({ e: z.unknown(), c: z.array(z.unknown()).max(4) })

/** Who signed an opened message, as the policy sees it. */
export interface Sender {
  /** The key that signed the envelope (a node's peer id or a workload instance's key id). */
  signer: string
  /** The member node that vouches for the signer (the signer itself for a node). */
  node: string
  principal: Principal
}

/** A refusal of a message: `verdict` is how gossipsub should score the peer that relayed it. */
export class RefusedMessage extends Error {
  constructor (readonly reason: string, message: string, readonly verdict: 'reject' | 'ignore') {
    super(message)
    this.name = 'RefusedMessage'
  }
}

export interface TrustMetrics {
  refused: (what: string, reason: string) => void
  decided: (action: string, allowed: boolean, rule: string) => void
}

export interface TrustInit {
  /** The mesh root's key id. */
  root: string
  key: PrivateKey
  /** This node's membership credential (absent: the node runs, but the mesh ignores it). */
  credential?: SignedCredential
  /** The policy to start with (the newest of the trust file's and the one persisted). */
  policies?: SignedPolicy[]
  log?: Logger
  metrics?: TrustMetrics
  /** Messages older than this are stale. */
  maxAgeMs?: number
}

/** A workload instance's own key and the credential its host issued for it. */
export interface WorkloadIdentity {
  key: PrivateKey
  id: string
  chain: SignedCredential[]
}

/**
 * Whether `value` is a WorkloadIdentity (what the mesh hands back as the
 * `as` of a publish: the transport does not know the policy's types).
 */
export function isWorkloadIdentity (value: unknown): value is WorkloadIdentity {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Partial<Record<keyof WorkloadIdentity, unknown>>
  return typeof v.id === 'string' && Array.isArray(v.chain) && typeof v.key === 'object' && v.key !== null
}

export class Trust {
  readonly root: string
  readonly selfId: string
  private readonly key: PrivateKey
  private readonly log: Logger
  private readonly metrics?: TrustMetrics
  private readonly replay: ReplayGuard
  private readonly maxAgeMs: number
  private readonly store: PolicyStore
  private signedPolicy?: SignedPolicy
  private readonly verified = new Map<string, Credential>()
  private readonly members = new Map<string, Credential>()
  private readonly policyListeners = new Set<(p: SignedPolicy) => void>()
  private own?: Credential
  private readonly ownCredential?: SignedCredential

  constructor (init: TrustInit) {
    this.root = init.root
    this.key = init.key
    this.selfId = keyId(init.key)
    this.log = init.log ?? silentLogger
    this.metrics = init.metrics
    this.maxAgeMs = init.maxAgeMs ?? 30_000
    this.replay = new ReplayGuard(this.maxAgeMs + 10_000)
    this.ownCredential = init.credential
    this.store = new PolicyStore({
      onDenied: (request, decision) => {
        this.log.warn({ action: request.action, rule: decision.rule ?? '(default deny)', reason: decision.reason }, 'policy denied')
      }
    })
    this.initialPolicies = init.policies ?? []
  }

  private readonly initialPolicies: SignedPolicy[]

  /** Verifies this node's own credential and loads the newest valid starting policy. */
  async start (): Promise<void> {
    if (this.ownCredential != null) {
      this.own = await verifyCredential(this.ownCredential, { issuer: this.root, subject: this.selfId, kind: 'node' })
      this.members.set(this.selfId, this.own)
    } else {
      this.log.warn({ peerId: this.selfId }, 'no membership credential: the mesh will ignore this node (issue one with `beemesh credential issue`)')
    }
    for (const p of this.initialPolicies) {
      try {
        await this.applyPolicy(p, 'start')
      } catch (err) {
        if (!(err instanceof PolicyError && /not newer/.test(err.message))) this.log.warn({ err: describeError(err) }, 'starting policy refused')
      }
    }
  }

  get isMember (): boolean {
    return this.own != null
  }

  get credential (): SignedCredential | undefined {
    return this.ownCredential
  }

  get labels (): Labels {
    return this.own?.labels ?? {}
  }

  // ---------------------------------------------------------------- membership

  /** Verifies a node credential for `subject` (cached by signature) and remembers the subject as a member. */
  async admit (value: unknown, subject: string): Promise<Credential> {
    const sig = (value as { sig?: unknown } | null)?.sig
    const cached = typeof sig === 'string' ? this.verified.get(sig) : undefined
    let credential: Credential
    if (cached != null && cached.subject === subject && cached.expiresAt > Date.now()) credential = cached
    else {
      credential = await verifyCredential(value, { issuer: this.root, subject, kind: 'node' })
      if (typeof sig === 'string') {
        if (this.verified.size > 10_000) this.verified.clear()
        this.verified.set(sig, credential)
      }
    }
    this.members.set(subject, credential)
    return credential
  }

  memberOf (peerId: string): Credential | undefined {
    const c = this.members.get(peerId)
    if (c != null && c.expiresAt <= Date.now()) { this.members.delete(peerId); return undefined }
    return c
  }

  nodePrincipal (peerId: string): Principal {
    return { kind: 'node', id: peerId, labels: this.memberOf(peerId)?.labels ?? {} }
  }

  // ---------------------------------------------------------------- sealed messages

  /** Seals `body` (JSON text) for `domain`, signed by this node or by a workload identity: `{e, c}`. */
  async sealValue (domain: string, body: string, as?: WorkloadIdentity): Promise<{ e: SignedEnvelope, c: SignedCredential[] }> {
    const e = await sealText(as?.key ?? this.key, as?.id ?? this.selfId, domain, body)
    // Our own messages never pass through our validators: remember them, so a replay of one is recognised here too.
    this.replay.check(e.signer, e.nonce, e.ts, Date.now())
    return { e, c: as?.chain ?? (this.ownCredential != null ? [this.ownCredential] : []) }
  }

  /** Messages the replay window remembers now. */
  get replayWindowSize (): number {
    return this.replay.size
  }

  async seal (domain: string, body: string, as?: WorkloadIdentity): Promise<Uint8Array> {
    return uint8ArrayFromString(JSON.stringify(await this.sealValue(domain, body, as)))
  }

  /**
   * Opens a sealed message (bytes or parsed JSON): checks the envelope
   * (signature, domain, freshness), the signer's chain to the root, and that
   * it was not seen before. `from` is the authenticated peer that delivered it
   * on a stream (which must be the signing node, or the host of the signing
   * workload); on gossip, relays are fine: the signer is what counts.
   * Throws RefusedMessage with the reason.
   */
  async open (domain: string, input: Uint8Array | unknown, { from, replay = true, maxAgeMs = this.maxAgeMs }: { from?: string, replay?: boolean, maxAgeMs?: number } = {}): Promise<{ body: string, sender: Sender, nonce: string, ts: number }> {
    let value = input
    if (input instanceof Uint8Array) {
      if (input.byteLength > MAX_ENVELOPE_BYTES + 64 * 1024) throw this.refuse(domain, 'malformed', `message of ${input.byteLength} bytes is too large`, 'reject')
      try {
        value = JSON.parse(uint8ArrayToString(input))
      } catch {
        throw this.refuse(domain, 'malformed', 'message is not a sealed BeeMesh message', 'reject')
      }
    }
    const sealed = SealedSchema.safeParse(value)
    if (!sealed.success) throw this.refuse(domain, 'malformed', 'message is not a sealed BeeMesh message', 'reject')
    let e: SignedEnvelope
    try {
      e = await verifyEnvelope(sealed.data.e, { domain, maxAgeMs })
    } catch (err) {
      throw this.refuseEnvelope(domain, err)
    }
    // Envelope checks first (cheap to fail), then the chain, then the replay window:
    // a message is remembered as seen only once it is known to be genuine.
    const sender = await this.checkChain(domain, e.signer, sealed.data.c, from)
    const verdict = replay ? this.replay.check(e.signer, e.nonce, e.ts, Date.now()) : 'new'
    if (verdict === 'replayed') throw this.refuse(domain, 'replayed', `message ${e.nonce} from ${e.signer} was seen before (replay)`, 'ignore')
    if (verdict === 'full') throw this.refuse(domain, 'overloaded', `message ${e.nonce} from ${e.signer} refused: the replay window is full (refused rather than forget a message still inside it)`, 'ignore')
    return { body: e.body, sender, nonce: e.nonce, ts: e.ts }
  }

  private async checkChain (domain: string, signer: string, chain: unknown[], from?: string): Promise<Sender> {
    if (chain.length === 0) throw this.refuse(domain, 'not-a-member', `${signer} presented no membership credential`, 'reject')
    const first = SignedCredentialSchema.safeParse(chain[0])
    if (!first.success) throw this.refuse(domain, 'malformed', `credential of ${signer} is malformed`, 'reject')
    try {
      if (first.data.credential.kind === 'node') {
        if (from != null && from !== signer) throw new TrustError('wrong-subject', `message signed by ${signer} arrived from ${from}`)
        const c = await this.admit(first.data, signer)
        return { signer, node: signer, principal: { kind: 'node', id: signer, labels: c.labels ?? {} } }
      }
      // A workload instance: its credential is issued by its host node, whose own credential follows.
      const host = first.data.credential.issuer
      if (from != null && from !== host) throw new TrustError('wrong-subject', `workload message vouched for by ${host} arrived from ${from}`)
      await this.admit(chain[1], host)
      const c = await this.verifyCached(first.data, { issuer: host, subject: signer, kind: 'workload' })
      const [namespace, name] = (c.workload ?? '/').split('/')
      if (namespace == null || name == null || namespace === '' || name === '') throw new TrustError('malformed', `workload credential of ${signer} names no workload`)
      return { signer, node: host, principal: { kind: 'workload', namespace, name, labels: c.labels ?? {} } }
    } catch (err) {
      if (err instanceof TrustError) throw this.refuse(domain, err.reason === 'bad-signature' || err.reason === 'malformed' || err.reason === 'wrong-subject' ? err.reason : 'not-a-member', err.message, 'reject')
      throw err
    }
  }

  private async verifyCached (value: SignedCredential, options: Parameters<typeof verifyCredential>[1]): Promise<Credential> {
    const hit = this.verified.get(value.sig)
    if (hit != null && hit.subject === options.subject && hit.issuer === options.issuer && (options.kind == null || hit.kind === options.kind) && hit.expiresAt > Date.now()) return hit
    const c = await verifyCredential(value, options)
    this.verified.set(value.sig, c)
    return c
  }

  private refuseEnvelope (domain: string, err: unknown): RefusedMessage {
    if (err instanceof EnvelopeError) {
      const verdict = err.reason === 'stale' || err.reason === 'future' || err.reason === 'replayed' || err.reason === 'overloaded' ? 'ignore' : 'reject'
      return this.refuse(domain, err.reason, err.message, verdict)
    }
    return this.refuse(domain, 'malformed', describeError(err), 'reject')
  }

  private refuse (domain: string, reason: string, message: string, verdict: 'reject' | 'ignore'): RefusedMessage {
    this.metrics?.refused(domain, reason)
    return new RefusedMessage(reason, `${domain}: ${message}`, verdict)
  }

  /** Counts and logs a refusal decided outside `open` (a manifest, an API call). */
  noteRefusal (what: string, reason: string, message: string): void {
    this.metrics?.refused(what, reason)
    this.log.warn({ what, reason }, message)
  }

  // ---------------------------------------------------------------- workload identities

  /** A fresh key for one workload instance, with a credential this node issues for it. */
  async workloadIdentity (workloadId: string, replica: number, labels: Record<string, string> = {}): Promise<WorkloadIdentity> {
    const key = await generateKey()
    const id = keyId(key)
    const credential = await issueCredential(this.key, id, { kind: 'workload', workload: workloadId, replica, labels, ttlMs: WORKLOAD_CREDENTIAL_TTL_MS })
    return { key, id, chain: [credential, ...(this.ownCredential != null ? [this.ownCredential] : [])] }
  }

  // ---------------------------------------------------------------- policy

  get policy (): PolicySet {
    return this.store.current
  }

  get currentSignedPolicy (): SignedPolicy | undefined {
    return this.signedPolicy
  }

  onPolicy (listener: (p: SignedPolicy) => void): () => void {
    this.policyListeners.add(listener)
    return () => { this.policyListeners.delete(listener) }
  }

  /**
   * Puts a root-signed policy in force if it is newer; throws TrustError (not
   * signed by the root) or PolicyError (malformed, with the line; or not newer),
   * and the policy in force stays.
   */
  async applyPolicy (value: unknown, source: string): Promise<PolicySet> {
    const signed = await verifySignedPolicy(value, this.root)
    const set = this.store.update(signed.text, source)
    this.signedPolicy = signed
    this.log.info({ policy: set.name, version: set.version, source }, 'policy in force')
    for (const l of this.policyListeners) {
      try { l(signed) } catch (err) { this.log.error({ err: describeError(err) }, 'policy listener failed') }
    }
    return set
  }

  decide (principal: Principal, action: Action, resource: Resource): Decision {
    const d = this.store.decide({ principal, action, resource })
    this.metrics?.decided(action, d.allowed, d.rule ?? 'default-deny')
    return d
  }

  /** Throws TrustError('denied') with the deciding rule when the policy does not allow it. */
  authorize (principal: Principal, action: Action, resource: Resource): void {
    const d = this.decide(principal, action, resource)
    if (!d.allowed) throw new TrustError('denied', `forbidden: ${d.reason}${d.rule == null ? ' (default deny)' : ''} under policy ${this.policy.name} v${this.policy.version}`)
  }

  // ---------------------------------------------------------------- manifests

  /**
   * Checks who deployed a workload spec: the signature over it, that the signer
   * is the deployer or a member node vouching for it, and that the policy lets
   * the deployer deploy it. Returns the deployer; throws TrustError naming the problem.
   */
  async checkManifest (spec: Record<string, unknown> & { id: string, namespace: string, name: string, labels?: Record<string, string>, provenance?: unknown }): Promise<Provenance> {
    const p = await verifyManifest(spec, spec.provenance)
    if (p.signer !== p.deployer && this.memberOf(p.signer) == null) {
      throw new TrustError('not-a-member', `manifest of ${spec.id} is signed by ${p.signer}, which is neither its deployer ${p.deployer} nor a member node`)
    }
    if (this.policy.revoked.has(p.deployer)) throw new TrustError('revoked', `manifest of ${spec.id} is deployed by ${p.deployer}, revoked by policy ${this.policy.name} v${this.policy.version}`)
    const d = this.decide({ kind: 'deployer', key: p.deployer }, 'deploy', { kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} })
    if (!d.allowed) throw new TrustError('denied', `manifest of ${spec.id} signed by ${p.signer} for deployer ${p.deployer} is not trusted: ${d.reason}`)
    return p
  }

  /** Signs a spec as this node, vouching that it authenticated `deployer` (an API caller with a valid token). */
  async attest (spec: Record<string, unknown>, deployer: string): Promise<Provenance> {
    return await signManifest(this.key, spec, { deployer })
  }

  // ---------------------------------------------------------------- API callers

  /**
   * The deployer behind an API request: a bearer token made for this mesh
   * (`aud` = the root's key id), unexpired, by a deployer key the policy in
   * force names in some rule, or one whose token carries a deployer
   * credential the root issued, and that the policy does not list as `revoked`. There is no
   * anonymous caller. Throws TrustError (the API answers 401).
   */
  async authenticate (authorization: string | undefined): Promise<Principal> {
    if (authorization == null || authorization === '') {
      throw new TrustError('unsigned', 'a bearer token is required (the CLI, `beemesh kubeconfig` and `beemesh ui` pick up the one `beemesh up` writes; else make one with `beemesh token --key <deployer.key> --mesh <mesh.json>`)')
    }
    const m = /^Bearer\s+(\S+)$/i.exec(authorization)
    if (m == null) throw new TrustError('malformed', 'Authorization header must be "Bearer <token>"')
    const claims = await verifyToken(m[1]!, { mesh: this.root })
    const policy = this.policy
    if (policy.revoked.has(claims.sub)) throw new TrustError('revoked', `deployer key ${claims.sub} is revoked by policy ${policy.name} v${policy.version}`)
    // A root-issued deployer credential in the token vouches for the key (and gives it labels the policy can match).
    const vouched = claims.cred != null ? await this.verifyCached(claims.cred, { issuer: this.root, subject: claims.sub, kind: 'deployer' }) : undefined
    if (vouched == null && !policy.deployers.has(claims.sub)) {
      throw new TrustError('unknown-key', `deployer key ${claims.sub} is not named by policy ${policy.name} v${policy.version}: tokens are accepted only from deployers a rule names or the root issued a deployer credential`)
    }
    return { kind: 'deployer', key: claims.sub, ...(vouched?.labels != null ? { labels: vouched.labels } : {}) }
  }
}

/** A principal as the `sender` string of a machine event: `deployer:<key>`, `workload:<ns>/<name>`, or a node's peer id. */
export function senderOf (principal: Principal): string {
  if (principal.kind === 'deployer') return `deployer:${principal.key}`
  if (principal.kind === 'workload') return `workload:${principal.namespace}/${principal.name}`
  return principal.id
}

export function principalOfSender (sender: string): Principal {
  if (sender.startsWith('deployer:')) return { kind: 'deployer', key: sender.slice('deployer:'.length) }
  if (sender.startsWith('workload:')) {
    const [namespace = '', name = ''] = sender.slice('workload:'.length).split('/')
    return { kind: 'workload', namespace, name }
  }
  return { kind: 'node', id: sender }
}
