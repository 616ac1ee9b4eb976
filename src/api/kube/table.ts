/**
 * Server-side printing: kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io`
 * and prints the columns it gets (without it, only NAME and AGE). Pure: the
 * same objects and `now` give the same Table.
 */

export interface TableColumn<T> {
  name: string
  type: 'string' | 'integer' | 'date'
  description: string
  /** 0: always shown; 1: with `-o wide` only. */
  priority: 0 | 1
  cell: (object: T, now: number) => string | number
}

export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: { name: string, namespace?: string, resourceVersion?: string, creationTimestamp?: string, labels?: Record<string, string>, [k: string]: unknown }
  [k: string]: unknown
}

export interface Table {
  kind: 'Table'
  apiVersion: 'meta.k8s.io/v1'
  metadata: { resourceVersion?: string }
  columnDefinitions: Array<{ name: string, type: string, format: string, description: string, priority: number }>
  rows: Array<{ cells: Array<string | number>, object: unknown }>
}

/** Does an Accept header ask for a Table (kubectl get)? */
export function wantsTable (accept: string | undefined): boolean {
  if (accept == null) return false
  return accept.split(',').some(part => {
    const params = part.split(';').map(s => s.trim())
    return params.includes('as=Table') && params.includes('g=meta.k8s.io') && (params.includes('v=v1') || params.includes('v=v1beta1'))
  })
}

/** The version of Table the client asked for first (kubectl 1.20 may ask for v1beta1). */
export function tableVersion (accept: string | undefined): 'v1' | 'v1beta1' {
  const first = (accept ?? '').split(',').find(p => p.includes('as=Table'))
  return first?.includes('v=v1beta1') === true ? 'v1beta1' : 'v1'
}

/**
 * A Table of `objects` with `columns` (NAME first, then the rest). Each row
 * carries the object, partial metadata as kubectl expects by default
 * (`includeObject=Object` gets the whole object).
 */
export function buildTable<T extends KubeObject> (objects: readonly T[], columns: ReadonlyArray<TableColumn<T>>, opts: { now: number, resourceVersion?: string, includeObject?: string, version?: 'v1' | 'v1beta1' }): Table {
  const all: ReadonlyArray<TableColumn<T>> = [{ name: 'Name', type: 'string', description: 'Name must be unique within a namespace.', priority: 0, cell: o => o.metadata.name }, ...columns]
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${opts.version ?? 'v1'}` as 'meta.k8s.io/v1',
    metadata: opts.resourceVersion != null ? { resourceVersion: opts.resourceVersion } : {},
    columnDefinitions: all.map(c => ({ name: c.name, type: c.type === 'date' ? 'string' : c.type, format: c.name === 'Name' ? 'name' : c.type === 'date' ? 'date' : '', description: c.description, priority: c.priority })),
    rows: objects.map(o => ({
      cells: all.map(c => c.cell(o, opts.now)),
      object: opts.includeObject === 'None' ? undefined : opts.includeObject === 'Object' ? o : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata }
    }))
  }
}

/** kubectl's AGE: 45s, 3m12s, 2h5m, 4d5h, 400d (`duration.HumanDuration`). */
export function age (since: string | undefined, now: number): string {
  if (since == null) return '<unknown>'
  const s = Math.max(0, Math.floor((now - Date.parse(since)) / 1000))
  if (s < 120) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`
  if (m < 180) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`
  if (h < 48) return `${h}h`
  const d = Math.floor(h / 24)
  if (d < 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`
  if (d < 365 * 2) return `${d}d`
  return `${Math.floor(d / 365)}y`
}
