/**
 * The policy a new mesh starts with (`beemesh init`, `beemesh up`): the engine
 * denies whatever no rule allows, so this names what a fresh mesh may do.
 * Operators tighten it and push a newer version with `beemesh policy apply`.
 */
import { stringify } from 'yaml'

/** The namespace mesh-level operations (raw DHT records, policy) are authorised against. */
export const SYSTEM_NAMESPACE = 'beemesh-system'

export interface DefaultPolicyOptions {
  /** Deployer key ids allowed everything. */
  admins: string[]
  version?: number
  name?: string
}

export function defaultPolicyText ({ admins, version = 1, name = 'default' }: DefaultPolicyOptions): string {
  const everything = [{ kind: 'namespace' }, { kind: 'workload' }, { kind: 'topic' }, { kind: 'service' }, { kind: 'host' }]
  const rules: unknown[] = []
  const deployers = admins.map(key => ({ kind: 'deployer', key }))
  if (deployers.length > 0) rules.push({ id: 'admins', effect: 'allow', principals: deployers, actions: ['*'], resources: everything })
  rules.push(
    { id: 'members-host', effect: 'allow', principals: [{ kind: 'node' }], actions: ['host'], resources: [{ kind: 'workload' }] },
    { id: 'workloads-talk', effect: 'allow', principals: [{ kind: 'workload' }], actions: ['publish', 'subscribe'], resources: [{ kind: 'topic' }] },
    { id: 'workloads-send', effect: 'allow', principals: [{ kind: 'workload' }], actions: ['send'], resources: [{ kind: 'workload' }] },
    // Any service; egress to hosts outside the mesh is granted by the operator, host by host (docs/services.md).
    { id: 'workloads-call', effect: 'allow', principals: [{ kind: 'workload' }], actions: ['call'], resources: [{ kind: 'service' }] }
  )
  const doc = { apiVersion: 'beemesh.io/v1', kind: 'Policy', metadata: { name, version }, rules }
  return `# BeeMesh policy: default deny, an explicit deny wins. See docs/security.md.\n${stringify(doc)}`
}
