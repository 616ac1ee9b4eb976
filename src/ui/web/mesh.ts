/**
 * The mesh: one box per node (peer id, state, labels, what it hosts), one line
 * per connection between two nodes, laid out by ELK and drawn as SVG.
 *
 * Test hooks: the <svg> has `data-mesh` and `data-node-count`; each node is a
 * `<g data-peer-id="…" data-ready="true|false">`.
 */
import type { NodeSummary, NodeStatus, WorkloadStatus } from './api.js'
import { s, shortPeer, textWidth } from './dom.js'
import { absolutePositions, allEdges, edgePath, LAYERED, layout, round, type ElkNode } from './layout.js'

const TITLE_FONT = '600 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace'
const LINE_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
const LINE_HEIGHT = 17
const PAD = 10

/** What a node box says, line by line after its title. */
interface NodeLines { title: string, state: string, lines: Array<{ text: string, kind: 'label' | 'hosted' | 'info' }> }

/** The links to draw: each node's `links` when it reports them, else every node linked to the serving node. */
export function meshLinks (nodes: NodeSummary[], self: string): Array<[string, string]> {
  const known = new Set(nodes.map(n => n.peerId))
  const pairs = new Map<string, [string, string]>()
  const add = (a: string, b: string): void => {
    if (a === b || !known.has(a) || !known.has(b)) return
    const [x, y] = a < b ? [a, b] : [b, a]
    pairs.set(`${x} ${y}`, [x, y])
  }
  const reporting = nodes.filter(n => Array.isArray(n.links))
  if (reporting.length > 0) {
    for (const n of reporting) for (const peer of n.links ?? []) add(n.peerId, peer)
  } else {
    for (const n of nodes) add(self, n.peerId)
  }
  return [...pairs.values()]
}

/** The workloads placed on each node: `name` (stateless and containers: `name #replica`; stateful: `name (owner)`). */
export function hosted (workloads: WorkloadStatus[]): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const w of workloads) {
    for (const p of w.placement) {
      const what = w.kind === 'stateful' ? `${w.name} (owner)` : w.replicas > 1 ? `${w.name} #${p.replica}` : w.name
      out.set(p.peerId, [...out.get(p.peerId) ?? [], what])
    }
  }
  return out
}

function describeNode (node: NodeSummary, status: NodeStatus | undefined, hostedHere: string[]): NodeLines {
  const state = node.self && status != null ? status.state : node.ready ? 'Ready' : 'NotReady'
  const lines: NodeLines['lines'] = []
  lines.push({ text: `${round(node.capacity.cpuMillis / 1000)} cpu · ${round(node.capacity.memoryBytes / 2 ** 30)} GiB memory`, kind: 'info' })
  for (const [k, v] of Object.entries(node.labels)) lines.push({ text: `${k}=${v}`, kind: 'label' })
  if (node.self && status?.sandbox != null) lines.push({ text: status.sandbox.isolation === 'confined' ? 'workload code confined' : `workload code ${status.sandbox.isolation === 'thread' ? 'NOT confined (worker threads)' : 'refused (host cannot confine)'}`, kind: 'info' })
  for (const h of hostedHere) lines.push({ text: `▸ ${h}`, kind: 'hosted' })
  return { title: `${shortPeer(node.peerId)}${node.self ? '  (this node)' : ''}`, state, lines }
}

/** Lays out and draws the mesh as an SVG element. */
export async function renderMesh (nodes: NodeSummary[], status: NodeStatus | undefined, workloads: WorkloadStatus[]): Promise<SVGSVGElement> {
  const self = status?.peerId ?? nodes.find(n => n.self)?.peerId ?? ''
  const where = hosted(workloads)
  const sorted = [...nodes].sort((a, b) => Number(b.self) - Number(a.self) || a.peerId.localeCompare(b.peerId))
  const text = new Map(sorted.map(n => [n.peerId, describeNode(n, n.self ? status : undefined, where.get(n.peerId) ?? [])]))
  const graph: ElkNode = {
    id: 'mesh',
    layoutOptions: { ...LAYERED, 'elk.direction': 'DOWN', 'elk.edgeRouting': 'POLYLINE', 'elk.layered.spacing.nodeNodeBetweenLayers': '48', 'elk.spacing.nodeNode': '40', 'elk.padding': '[top=8,left=8,bottom=8,right=8]' },
    children: sorted.map(n => {
      const t = text.get(n.peerId)!
      const width = Math.max(textWidth(t.title, TITLE_FONT), textWidth(t.state, LINE_FONT) + 22, ...t.lines.map(l => textWidth(l.text, LINE_FONT))) + 2 * PAD
      return { id: n.peerId, width: Math.max(170, width), height: 2 * PAD + LINE_HEIGHT * (2 + t.lines.length) }
    }),
    edges: meshLinks(sorted, self).map(([a, b], i) => ({ id: `link${i}`, sources: [a], targets: [b] }))
  }
  const laid = await layout(graph)
  const width = Math.ceil(laid.width ?? 0)
  const height = Math.ceil(laid.height ?? 0)
  const svg = s('svg', { class: 'mesh', 'data-mesh': '', 'data-node-count': nodes.length, viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': `The mesh: ${nodes.length} node${nodes.length === 1 ? '' : 's'}` },
    s('title', {}, `The mesh: ${nodes.length} node${nodes.length === 1 ? '' : 's'}`))
  const positions = absolutePositions(laid)
  const links = s('g', { class: 'links' })
  for (const { edge, container } of allEdges(laid)) {
    const origin = positions.get(container) ?? { x: 0, y: 0 }
    links.append(s('path', { class: 'link', d: edgePath(edge, container === 'mesh' ? 0 : origin.x, container === 'mesh' ? 0 : origin.y), 'data-link': `${edge.sources[0] ?? ''} ${edge.targets[0] ?? ''}` }))
  }
  svg.append(links)
  for (const child of laid.children ?? []) {
    const node = sorted.find(n => n.peerId === child.id)!
    const t = text.get(child.id)!
    const w = round(child.width ?? 0)
    const h = round(child.height ?? 0)
    const g = s('g', { class: `node${node.self ? ' self' : ''}${node.ready ? ' ready' : ' not-ready'}`, 'data-peer-id': node.peerId, 'data-ready': String(node.ready), transform: `translate(${round(child.x ?? 0)},${round(child.y ?? 0)})` },
      s('title', {}, `${node.peerId}\n${t.state}, seen ${Math.round(node.lastSeenMs / 1000)}s ago`),
      s('rect', { class: 'frame', width: w, height: h, rx: 8 }),
      s('text', { class: 'peer', x: PAD, y: PAD + LINE_HEIGHT / 2, 'dominant-baseline': 'central' }, t.title),
      s('circle', { class: 'dot', cx: PAD + 5, cy: PAD + LINE_HEIGHT * 1.5, r: 5 }),
      s('text', { class: 'state', x: PAD + 16, y: PAD + LINE_HEIGHT * 1.5, 'dominant-baseline': 'central' }, t.state))
    t.lines.forEach((line, i) => {
      g.append(s('text', { class: `line ${line.kind}`, x: PAD, y: PAD + LINE_HEIGHT * (2.5 + i), 'dominant-baseline': 'central' }, line.text))
    })
    svg.append(g)
  }
  return svg
}
