/**
 * Graph layout with ELK (elkjs, the bundled build: it runs in the page, no
 * worker script to fetch): the layered algorithm places nodes, routes edges
 * and places edge labels; the views draw SVG from the geometry it returns.
 */
import ELK from 'elkjs/lib/elk.bundled.js'
import type { ElkExtendedEdge, ElkNode, ElkPoint, LayoutOptions } from 'elkjs/lib/elk-api.js'

export type { ElkExtendedEdge, ElkLabel, ElkNode } from 'elkjs/lib/elk-api.js'

const elk = new ELK()

/** Options every diagram shares: layered, left to right, orthogonal edges. */
export const LAYERED: LayoutOptions = {
  'elk.algorithm': 'layered',
  'elk.direction': 'RIGHT',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.layered.spacing.nodeNodeBetweenLayers': '56',
  'elk.spacing.nodeNode': '32',
  'elk.spacing.edgeNode': '16',
  'elk.spacing.edgeEdge': '12',
  'elk.spacing.edgeLabel': '4',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES'
}

/** Lays `graph` out; the result carries x, y, width, height on nodes and sections on edges. */
export async function layout (graph: ElkNode): Promise<ElkNode> {
  return await elk.layout(graph)
}

/** Absolute position of every node in a laid-out graph (ELK's are relative to the parent). */
export function absolutePositions (root: ElkNode): Map<string, ElkPoint> {
  const out = new Map<string, ElkPoint>()
  const walk = (node: ElkNode, dx: number, dy: number): void => {
    const x = dx + (node.x ?? 0)
    const y = dy + (node.y ?? 0)
    out.set(node.id, { x, y })
    for (const child of node.children ?? []) walk(child, x, y)
  }
  walk(root, 0, 0)
  return out
}

/** Every edge of a laid-out graph with the id of the node whose coordinates it is drawn in. */
export function allEdges (root: ElkNode): Array<{ edge: ElkExtendedEdge, container: string }> {
  const out: Array<{ edge: ElkExtendedEdge, container: string }> = []
  const walk = (node: ElkNode): void => {
    for (const edge of node.edges ?? []) out.push({ edge, container: edge.container ?? node.id })
    for (const child of node.children ?? []) walk(child)
  }
  walk(root)
  return out
}

/** The SVG path of an edge's sections, shifted by (dx, dy). */
export function edgePath (edge: ElkExtendedEdge, dx: number, dy: number): string {
  const parts: string[] = []
  for (const section of edge.sections ?? []) {
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint]
    parts.push(points.map((p, i) => `${i === 0 ? 'M' : 'L'}${round(p.x + dx)},${round(p.y + dy)}`).join(' '))
  }
  return parts.join(' ')
}

export function round (n: number): number {
  return Math.round(n * 10) / 10
}
