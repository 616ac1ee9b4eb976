/**
 * The patches kubectl sends, applied to a plain object. Pure.
 *
 * - `application/merge-patch+json` (RFC 7386): objects merge, `null` deletes,
 *   anything else (lists too) replaces.
 * - `application/strategic-merge-patch+json`: the same, except that lists of
 *   objects with a `name` (containers, env, ports …; ports by `containerPort`)
 *   merge item by item on that key, `$patch: delete` in an item removes it,
 *   `$patch: replace` replaces the list, and the `$setElementOrder/<list>` and
 *   `$retainKeys` directives are honoured as far as ordering goes or ignored.
 */
import { KubeStatusError } from './errors.js'

export type PatchType = 'merge' | 'strategic'

const CONTENT_TYPES: Record<string, PatchType> = {
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic'
}

/** The patch type of a Content-Type; 415 for JSON patch and anything else. */
export function patchType (contentType: string | undefined): PatchType {
  const base = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  const type = CONTENT_TYPES[base]
  if (type == null) throw new KubeStatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${Object.keys(CONTENT_TYPES).join(', ')}${base !== '' ? ` (got ${base})` : ''}`)
  return type
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

function isObject (v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v != null && !Array.isArray(v)
}

export function applyPatch (target: unknown, patch: unknown, type: PatchType): unknown {
  if (!isObject(patch)) throw new KubeStatusError(400, 'BadRequest', 'the patch must be a JSON object')
  return merge(target as Json, patch, type === 'strategic')
}

function merge (target: Json, patch: Json, strategic: boolean): Json {
  if (!isObject(patch)) return patch
  const out: Record<string, Json> = isObject(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (strategic && key.startsWith('$')) continue
    if (value === null) { delete out[key]; continue }
    if (strategic && Array.isArray(value)) {
      out[key] = mergeList(out[key], value, (patch[`$setElementOrder/${key}`] as Json[] | undefined))
      continue
    }
    out[key] = isObject(value) ? merge(out[key] ?? null, value, strategic) : value
  }
  return out
}

function keyOf (item: Json): string | undefined {
  if (!isObject(item)) return undefined
  if (typeof item.name === 'string') return `name=${item.name}`
  if (typeof item.containerPort === 'number') return `containerPort=${item.containerPort}`
  return undefined
}

function mergeList (current: Json | undefined, patch: Json[], order: Json[] | undefined): Json[] {
  if (patch.some(i => isObject(i) && i.$patch === 'replace')) return patch.filter(i => !(isObject(i) && i.$patch === 'replace'))
  const keyed = patch.length > 0 && patch.every(i => keyOf(i) != null)
  if (!keyed || !Array.isArray(current) || !current.every(i => keyOf(i) != null)) return patch
  const out = current.map(i => i)
  for (const item of patch) {
    const k = keyOf(item)
    const at = out.findIndex(i => keyOf(i) === k)
    if (isObject(item) && item.$patch === 'delete') { if (at >= 0) out.splice(at, 1); continue }
    if (at >= 0) out[at] = merge(out[at]!, item, true)
    else out.push(merge(null, item, true))
  }
  if (order == null) return out
  const rank = new Map(order.map((o, i) => [keyOf(o), i]))
  return [...out].sort((a, b) => (rank.get(keyOf(a)) ?? Infinity) - (rank.get(keyOf(b)) ?? Infinity))
}
