/**
 * Who may deploy a workload and whether this node may run it: an applied
 * spec is signed (by the deployer's own key, or here, vouching for the
 * deployer the API authenticated) and checked under the policy in force; a
 * tendered spec is checked again by every bidder before it bids, and once
 * more before it starts an award.
 */
import { describeError } from '../errors.js'
import { checkApplyWindow } from '../policy/credentials.js'
import type { Principal, Resource } from '../policy/engine.js'
import { TrustError } from '../policy/errors.js'
import { currentPrincipal } from '../policy/request-context.js'
import type { Trust } from '../policy/trust.js'
import { InvalidWorkloadError } from '../actors/errors.js'
import { WorkloadSpecSchema } from '../workloads/records.js'
import type { WorkloadSpec } from '../workloads/types.js'

/** The fields of a spec that name it to the policy. */
export interface NamedWorkload {
  namespace: string
  name: string
  labels?: Record<string, string> | undefined
}

/** The principal a replica acts as: its workload. */
export function workloadPrincipal (spec: NamedWorkload): Principal {
  return { kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }
}

/** A workload as a policy resource. */
export function workloadResource (spec: NamedWorkload): Resource {
  return { kind: 'workload', namespace: spec.namespace, name: spec.name, labels: spec.labels ?? {} }
}

/**
 * A spec as the signing code reads it: a plain record of its fields (the
 * signature covers the canonical JSON of the whole object).
 */
export function manifestOf (spec: WorkloadSpec): Record<string, unknown> & WorkloadSpec {
  return { ...spec }
}

export class Admission {
  private readonly admitted = new Map<string, string | null>()

  constructor (private readonly trust: Trust, private readonly selfId: string) {}

  /**
   * An applied spec, parsed, signed and checked: the manifest's signature and
   * deployer hold under the policy, its apply window is open, and it may
   * subscribe to its topics. Throws InvalidWorkloadError or TrustError.
   */
  async check (specInput: unknown): Promise<WorkloadSpec> {
    const parsed = WorkloadSpecSchema.safeParse(specInput)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      throw new InvalidWorkloadError(`${issue?.path.join('.') || 'spec'}: ${issue?.message ?? 'invalid'}`)
    }
    const spec = await this.attest(parsed.data)
    const provenance = await this.trust.checkManifest(manifestOf(spec))
    // The signature binds this apply, not the workload's life: an old manifest is not applied again.
    checkApplyWindow(spec.id, provenance)
    for (const topic of spec.topics) this.trust.authorize(workloadPrincipal(spec), 'subscribe', { kind: 'topic', name: topic })
    return spec
  }

  /** A rescaled spec signed again (for the deployer of the original when no deployer calls) and checked. */
  async resign (spec: WorkloadSpec, createdAt: number, fallbackDeployer: string | undefined): Promise<WorkloadSpec> {
    const signed = await this.attest({ ...spec, createdAt, provenance: undefined }, spec.provenance?.deployer ?? fallbackDeployer)
    await this.trust.checkManifest(manifestOf(signed))
    return signed
  }

  /**
   * A spec as the API caller deploys it: signed already by the deployer's own
   * key (which must be the caller's), or signed here by this node vouching
   * for the deployer it authenticated.
   */
  private async attest (spec: WorkloadSpec, fallbackDeployer?: string): Promise<WorkloadSpec> {
    const caller = currentPrincipal()
    const deployer = caller?.kind === 'deployer' ? caller.key : fallbackDeployer
    if (spec.provenance != null) {
      if (caller?.kind === 'deployer' && spec.provenance.deployer !== caller.key) throw new TrustError('wrong-subject', `manifest of ${spec.id} is signed for deployer ${spec.provenance.deployer}, but the request is authenticated as ${caller.key}`)
      return spec
    }
    if (deployer == null) throw new TrustError('unsigned', `manifest of ${spec.id} is not signed and no deployer is authenticated for it`)
    const { provenance: _drop, ...unsigned } = spec
    const body = WorkloadSpecSchema.parse(unsigned)
    return { ...body, provenance: await this.trust.attest(manifestOf(body), deployer) }
  }

  /**
   * Whether this node may run a workload: the manifest's signature and
   * deployer check out under the policy in force, the policy lets this node
   * host it, and (stateless) the workload subscribe to its topics. Undefined
   * when admissible, else the reason, logged and counted once per spec and policy version.
   */
  async admissible (spec: WorkloadSpec): Promise<string | undefined> {
    const key = `${this.trust.policy.version}|${spec.id}|${spec.provenance?.sig ?? 'unsigned'}`
    const known = this.admitted.get(key)
    if (known !== undefined) return known ?? undefined
    let reason: string | undefined
    let kind = 'denied'
    try {
      await this.trust.checkManifest(manifestOf(spec))
      const host = this.trust.decide(this.trust.nodePrincipal(this.selfId), 'host', workloadResource(spec))
      if (!host.allowed) reason = `this node may not host ${spec.id}: ${host.reason}`
      for (const topic of spec.topics) {
        if (reason != null) break
        const sub = this.trust.decide(workloadPrincipal(spec), 'subscribe', { kind: 'topic', name: topic })
        if (!sub.allowed) reason = `${spec.id} may not subscribe to ${topic}: ${sub.reason}`
      }
    } catch (err) {
      reason = describeError(err)
      if (err instanceof TrustError) kind = err.reason
    }
    if (this.admitted.size > 2_000) this.admitted.clear()
    this.admitted.set(key, reason ?? null)
    if (reason != null) this.trust.noteRefusal('manifest', kind, `refused to run ${spec.id}: ${reason}`)
    return reason
  }
}
