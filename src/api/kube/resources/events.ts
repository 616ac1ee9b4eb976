/**
 * v1 Events, from what the mesh records: a workload's scheduling events
 * (about its Deployment, Pod, Actor or Machine) and its pods' events (from
 * the nodes that run them). Pure: a description gives its events.
 */
import type { WorkloadDescription } from '../../../workloads/views.js'
import { badRequest } from '../errors.js'
import { age, type KubeObject, type TableColumn } from '../table.js'
import { podName } from './workloads.js'

const KIND_OF: Record<string, { kind: string, apiVersion: string }> = {
  Pod: { kind: 'Pod', apiVersion: 'v1' },
  Deployment: { kind: 'Deployment', apiVersion: 'apps/v1' },
  Actor: { kind: 'Actor', apiVersion: 'beemesh.io/v1' },
  Machine: { kind: 'Machine', apiVersion: 'beemesh.io/v1' }
}

/** What a workload is seen as through the Kubernetes API. */
export function workloadObjectKind (d: Pick<WorkloadDescription, 'kind' | 'kubeKind'>): { kind: string, apiVersion: string } {
  if (d.kubeKind != null) return KIND_OF[d.kubeKind]!
  return d.kind === 'container' ? KIND_OF.Deployment! : d.kind === 'stateful' ? KIND_OF.Machine! : KIND_OF.Actor!
}

function toEvent (d: WorkloadDescription, involved: { kind: string, apiVersion: string, name: string, uid: string }, e: { ts: number, type: string, reason: string, message: string }, source: string, index: number): KubeObject {
  const at = new Date(e.ts).toISOString()
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: `${involved.name}.${e.ts.toString(16)}${index.toString(16)}`, namespace: d.namespace, uid: `${involved.uid}/${e.ts}/${index}`, resourceVersion: '', creationTimestamp: at },
    involvedObject: { ...involved, namespace: d.namespace },
    reason: e.reason,
    message: e.message,
    type: e.type,
    count: 1,
    firstTimestamp: at,
    lastTimestamp: at,
    source: { component: source },
    reportingComponent: source,
    reportingInstance: ''
  }
}

/** The events of one workload: scheduling ones on its object, pod ones on each pod. */
export function eventsOf (d: WorkloadDescription): KubeObject[] {
  const own = workloadObjectKind(d)
  const involved = { ...own, name: d.name, uid: d.id }
  const scheduling = d.events.map((e, i) => toEvent(d, involved, e, 'beemesh-scheduler', i))
  const pods = (d.podEvents ?? []).map((e, i) => toEvent(d, { kind: 'Pod', apiVersion: 'v1', name: podName(d, e.replica), uid: `${d.id}/${e.replica}` }, e, `beemesh-node/${e.nodeId}`, i))
  // A workload created as a Pod: its scheduling events are the pod's too.
  return [...scheduling, ...pods].sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)))
}

/** `involvedObject.name=x,involvedObject.kind=Pod,…` as kubectl describe sends it; metadata.name too. */
export function parseFieldSelector (text: string | null): Record<string, string> {
  const out: Record<string, string> = {}
  if (text == null || text === '') return out
  for (const part of text.split(',')) {
    const m = /^([A-Za-z.]+)(==|=)(.*)$/.exec(part.trim())
    if (m == null) throw badRequest(`fieldSelector: only equality (field=value) is supported, got "${part}"`)
    if (!/^(metadata\.(name|namespace)|involvedObject\.(name|namespace|kind|uid|apiVersion)|type|reason)$/.test(m[1]!)) throw badRequest(`fieldSelector: "${m[1]!}" is not a supported field selector`)
    out[m[1]!] = m[3]!
  }
  return out
}

/** Does an object match the field selector (dotted paths into the object)? */
export function matchesFields (o: KubeObject, fields: Readonly<Record<string, string>>): boolean {
  return Object.entries(fields).every(([path, want]) => {
    let v: unknown = o
    for (const key of path.split('.')) v = typeof v === 'object' && v != null ? (v as Record<string, unknown>)[key] : undefined
    return v === want
  })
}

type EventFields = { type: string, reason: string, message: string, involvedObject: { kind: string, name: string }, lastTimestamp: string }

export const EVENT_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Last Seen', type: 'string', priority: 0, description: 'Time since it happened.', cell: (o, now) => age((o as unknown as EventFields).lastTimestamp, now) },
  { name: 'Type', type: 'string', priority: 0, description: 'Normal or Warning.', cell: o => (o as unknown as EventFields).type },
  { name: 'Reason', type: 'string', priority: 0, description: 'Why.', cell: o => (o as unknown as EventFields).reason },
  { name: 'Object', type: 'string', priority: 0, description: 'What it is about.', cell: o => { const i = (o as unknown as EventFields).involvedObject; return `${i.kind.toLowerCase()}/${i.name}` } },
  { name: 'Message', type: 'string', priority: 0, description: 'What happened.', cell: o => (o as unknown as EventFields).message }
]
