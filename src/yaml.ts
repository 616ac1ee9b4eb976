/**
 * YAML from outside the node (policies, Kubernetes API bodies) is parsed
 * without aliases: refusing `*name` outright rules out alias bombs, which
 * make yaml's toJS take cubic time even under maxAliasCount (a 1,209-byte
 * document stalled a node 4.6 s).
 */
import { isAlias, visit, type Document } from 'yaml'

/** The offset of the document's first alias (`*name`), or undefined when it has none. */
export function firstAlias (doc: Document.Parsed | Document): number | undefined {
  let at: number | undefined
  visit(doc, { Alias (_key, node) { if (isAlias(node)) { at = node.range?.[0] ?? 0; return visit.BREAK } } })
  return at
}
