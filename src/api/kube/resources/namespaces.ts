import type { WorkloadStatus } from '../../../workloads/views.js'
import { age, type KubeObject, type TableColumn } from '../table.js'

/**
 * `default`, and every namespace a workload lives in; a namespace exists as
 * long as it is used. `since`: when `default` came to be (the node's start).
 */
export function toNamespaces (workloads: readonly WorkloadStatus[], since: number): KubeObject[] {
  const first = new Map<string, number>([['default', since]])
  for (const w of workloads) first.set(w.namespace, Math.min(first.get(w.namespace) ?? Infinity, w.createdAt))
  return [...first].sort(([a], [b]) => a.localeCompare(b)).map(([name, createdAt]) => toNamespace(name, createdAt))
}

export function toNamespace (name: string, createdAt: number): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, uid: `namespace-${name}`, resourceVersion: '1', creationTimestamp: new Date(createdAt).toISOString(), labels: { 'kubernetes.io/metadata.name': name } },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' }
  }
}

export const NAMESPACE_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Status', type: 'string', priority: 0, description: 'Namespace phase.', cell: () => 'Active' },
  { name: 'Age', type: 'string', priority: 0, description: 'Time since its first workload.', cell: (o, now) => age(o.metadata.creationTimestamp, now) }
]
