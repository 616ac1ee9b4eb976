/** Shared by the fuzz tests: a seeded PRNG, and a policy that uses every feature of the format. */

/** xorshift32: a tiny seeded PRNG, so a failing input reproduces from its seed. */
export function prng (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >> 17
    x ^= x << 5; x >>>= 0
    return x / 2 ** 32
  }
}

/** The rules of an example policy: allow and deny, every principal kind, globs, labels and a `when`. */
export function exampleRules (key: string): string {
  return `  - id: ops-deploy
    effect: allow
    principals: [{ kind: deployer, key: "${key}" }]
    actions: [deploy, delete]
    resources: [{ kind: namespace, name: shop }]
  - id: eu-nodes-host
    effect: allow
    principals: [{ kind: node, labels: { zone: eu } }]
    actions: [host]
    resources: [{ kind: workload, name: "*" }]
  - id: shop-publish
    effect: allow
    principals: [{ kind: workload, namespace: shop, name: "*" }]
    actions: [publish, subscribe]
    resources: [{ kind: topic, name: "orders.*" }]
  - id: no-prod-for-eu
    effect: deny
    principals: [{ kind: node, labels: { zone: eu } }]
    actions: [host]
    resources: [{ kind: workload }]
    when: { resource.labels.tier: prod, principal.labels.class: small }
`
}
