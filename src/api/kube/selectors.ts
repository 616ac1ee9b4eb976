/**
 * Label selectors as kubectl sends them in `labelSelector`: `a=b`, `a==b`,
 * `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, joined by commas. Pure.
 */
import { badRequest } from './errors.js'

export type Requirement =
  | { key: string, op: 'in' | 'notin', values: string[] }
  | { key: string, op: 'exists' | 'absent' }

const KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/

/** Parses a selector; 400 BadRequest naming the part that is wrong. */
export function parseSelector (text: string): Requirement[] {
  const parts: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of text) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) { parts.push(cur); cur = '' } else cur += ch
  }
  parts.push(cur)
  return parts.map(p => p.trim()).filter(p => p !== '').map(parseRequirement)
}

function parseRequirement (part: string): Requirement {
  const set = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part)
  if (set != null) return checked({ key: set[1]!, op: set[2] as 'in' | 'notin', values: set[3]!.split(',').map(v => v.trim()) }, part)
  const eq = /^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(part)
  if (eq != null) return checked({ key: eq[1]!, op: eq[2] === '!=' ? 'notin' : 'in', values: [eq[3]!] }, part)
  if (part.startsWith('!')) return checked({ key: part.slice(1).trim(), op: 'absent' }, part)
  return checked({ key: part, op: 'exists' }, part)
}

function checked (r: Requirement, part: string): Requirement {
  if (!KEY.test(r.key)) throw badRequest(`unable to parse requirement: labelSelector: invalid label key "${r.key}" in "${part}"`)
  if ('values' in r) for (const v of r.values) if (!VALUE.test(v)) throw badRequest(`unable to parse requirement: labelSelector: invalid label value "${v}" in "${part}"`)
  return r
}

export function matches (selector: readonly Requirement[], labels: Readonly<Record<string, string>> = {}): boolean {
  return selector.every(r => {
    const has = Object.hasOwn(labels, r.key)
    switch (r.op) {
      case 'exists': return has
      case 'absent': return !has
      case 'in': return has && r.values.includes(labels[r.key]!)
      case 'notin': return !has || !r.values.includes(labels[r.key]!)
    }
  })
}
