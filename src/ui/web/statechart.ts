/**
 * A machine workload's statechart: the XState v5 definition (its JSON, as
 * `machine.toJSON()` gives it) read into states and transitions, laid out by
 * ELK with compound states as boxes inside boxes, drawn as SVG, and the
 * current state value highlighted as transitions arrive.
 *
 * Test hooks: the <svg> has `data-workload="<ns/name>"`; each state is a
 * `<g data-state-id="<state node id>" data-active="true|false">`; each
 * transition a `<g class="transition" data-event="<event type>">`.
 */
import type { StateDefinition, TransitionDefinition } from './api.js'
import { s, textWidth } from './dom.js'
import { absolutePositions, allEdges, edgePath, LAYERED, layout, round, type ElkExtendedEdge, type ElkNode } from './layout.js'

export type TransitionKind = 'event' | 'after' | 'always' | 'done' | 'error'

export interface ChartTransition {
  id: string
  source: string
  /** Target state ids; the source itself for a targetless transition (drawn as a loop). */
  targets: string[]
  kind: TransitionKind
  /** The event type that triggers it (for `always`, none). */
  eventType?: string
  guard?: string
  label: string
}

export interface ChartState {
  id: string
  key: string
  type: StateDefinition['type']
  parent?: ChartState
  children: ChartState[]
  /** The initial child's id (compound states). */
  initial?: string
  transitions: ChartTransition[]
  history?: 'shallow' | 'deep'
}

/** A machine definition as the view uses it. */
export interface Statechart {
  root: ChartState
  states: Map<string, ChartState>
  transitions: ChartTransition[]
}

const LABEL_FONT = '13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
const TITLE_FONT = '600 13px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
const EDGE_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'
const INITIAL_SUFFIX = '::initial'

/** A delay in milliseconds as people say it: 10s, 1.5s, 250ms, 2m. */
function delayText (ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms >= 1000) return `${round(ms / 1000)}s`
  return `${ms}ms`
}

/**
 * How an event type reads in the diagram and the log: XState's internal
 * events by what they mean (`after 10s`, `done`, `error: fetch`).
 */
export function eventLabel (type: string): string {
  const after = /^xstate\.after\.(\d+)\./.exec(type)
  if (after != null) return `after ${delayText(Number(after[1]))}`
  if (/^xstate\.after\./.test(type)) return `after ${type.split('.')[2] ?? ''}`.trim()
  if (type.startsWith('xstate.done.state.')) return 'done'
  if (type.startsWith('xstate.done.actor.')) return `done: ${type.slice('xstate.done.actor.'.length)}`
  if (type.startsWith('xstate.error.actor.')) return `error: ${type.slice('xstate.error.actor.'.length)}`
  if (type === 'xstate.init') return 'init'
  return type
}

function guardName (guard: TransitionDefinition['guard']): string | undefined {
  if (guard == null) return undefined
  if (typeof guard === 'string') return guard
  return typeof guard.type === 'string' ? guard.type : 'guard'
}

function asList<T> (value: T | T[] | undefined | null): T[] {
  if (value == null) return []
  return Array.isArray(value) ? value : [value]
}

/** Reads a machine's JSON definition into states and transitions. */
export function readStatechart (definition: StateDefinition): Statechart {
  const states = new Map<string, ChartState>()
  const transitions: ChartTransition[] = []

  const build = (def: StateDefinition, parent?: ChartState): ChartState => {
    const state: ChartState = {
      id: def.id,
      key: def.key,
      type: def.type,
      ...(parent != null ? { parent } : {}),
      children: [],
      transitions: [],
      ...(def.type === 'history' ? { history: def.history === 'deep' ? 'deep' as const : 'shallow' as const } : {})
    }
    states.set(state.id, state)
    const children = Object.values(def.states ?? {}).sort((a, b) => (a.order ?? 0) - (b.order ?? 0))
    state.children = children.map(child => build(child, state))
    return state
  }
  const root = build(definition)

  /** A transition target: `#id`, or a sibling key, or a `.child` path, as XState resolves them. */
  const resolve = (source: ChartState, ref: string): string | undefined => {
    if (ref.startsWith('#')) return states.has(ref.slice(1)) ? ref.slice(1) : undefined
    if (ref.startsWith('.')) {
      let node: ChartState | undefined = source
      for (const key of ref.slice(1).split('.')) node = node?.children.find(c => c.key === key)
      return node?.id
    }
    let node: ChartState | undefined = source.parent ?? source
    for (const key of ref.split('.')) node = node?.children.find(c => c.key === key)
    return node?.id
  }

  const add = (source: ChartState, def: TransitionDefinition, kind: TransitionKind, eventType?: string): void => {
    const targets = asList(def.target).map(t => resolve(source, t)).filter((t): t is string => t != null)
    const guard = guardName(def.guard)
    let label = kind === 'always' ? 'always' : eventLabel(eventType ?? '')
    if (kind === 'after' && def.delay != null) label = `after ${typeof def.delay === 'number' ? delayText(def.delay) : def.delay}`
    if (guard != null) label += ` [${guard}]`
    const t: ChartTransition = {
      id: `t${transitions.length}`,
      source: source.id,
      targets: targets.length > 0 ? targets : [source.id],
      kind,
      ...(eventType != null ? { eventType } : {}),
      ...(guard != null ? { guard } : {}),
      label
    }
    source.transitions.push(t)
    transitions.push(t)
  }

  const collect = (def: StateDefinition): void => {
    const state = states.get(def.id)!
    const initial = def.initial
    const initialRef = typeof initial === 'string' ? initial : initial?.target?.[0]
    if (initialRef != null && state.children.length > 0) {
      state.initial = resolve(state, initialRef.startsWith('#') || initialRef.startsWith('.') ? initialRef : `.${initialRef}`)
    }
    for (const [eventType, list] of Object.entries(def.on ?? {})) {
      const kind: TransitionKind = eventType.startsWith('xstate.after.') ? 'after' : eventType.startsWith('xstate.done.') ? 'done' : eventType.startsWith('xstate.error.') ? 'error' : 'event'
      for (const t of asList(list)) add(state, t, kind, eventType)
    }
    // Older or hand-written definitions keep delayed transitions apart from `on`.
    const after = def.after
    if (Array.isArray(after)) {
      for (const t of after) add(state, t, 'after', t.eventType ?? undefined)
    } else if (after != null) {
      for (const [delay, list] of Object.entries(after)) for (const t of asList(list)) add(state, { delay: Number.isFinite(Number(delay)) ? Number(delay) : delay, ...t }, 'after')
    }
    for (const t of asList(def.always)) add(state, t, 'always')
    for (const child of Object.values(def.states ?? {})) collect(child)
  }
  collect(definition)
  // Delayed transitions read from `on` and `after` both: keep one of each.
  const seen = new Set<string>()
  for (const state of states.values()) {
    state.transitions = state.transitions.filter(t => {
      const key = `${t.kind}|${t.label}|${t.targets.join(',')}`
      if (t.kind === 'after' && seen.has(`${state.id}|${key}`)) return false
      seen.add(`${state.id}|${key}`)
      return true
    })
  }
  return { root, states, transitions: [...states.values()].flatMap(st => st.transitions) }
}

/**
 * The states a value makes active: the value is a state key (a simple state)
 * or an object of keys to child values (compound and parallel states); the
 * root is always active while the machine runs.
 */
export function activeStates (chart: Statechart, value: unknown): Set<string> {
  const out = new Set<string>([chart.root.id])
  const walk = (node: ChartState, v: unknown): void => {
    if (typeof v === 'string') {
      const child = node.children.find(c => c.key === v)
      if (child != null) out.add(child.id)
      return
    }
    if (v == null || typeof v !== 'object') return
    for (const [key, sub] of Object.entries(v)) {
      const child = node.children.find(c => c.key === key)
      if (child == null) continue
      out.add(child.id)
      walk(child, sub)
    }
  }
  walk(chart.root, value)
  return out
}

/** Event types the active states (innermost first) have a transition for, XState's internal ones left out. */
export function acceptedEvents (chart: Statechart, active: Set<string>): string[] {
  const out = new Set<string>()
  for (const id of active) {
    for (const t of chart.states.get(id)?.transitions ?? []) {
      if (t.kind === 'event' && t.eventType != null && !t.eventType.startsWith('xstate.') && t.eventType !== '*') out.add(t.eventType)
    }
  }
  return [...out]
}

/** The deepest state that contains both `a` and `b` (strictly: an edge to an ancestor lives above it). */
function container (chart: Statechart, a: string, b: string): string {
  const ancestors = (id: string): string[] => {
    const out: string[] = []
    for (let node = chart.states.get(id)?.parent; node != null; node = node.parent) out.push(node.id)
    return out
  }
  const above = new Set(ancestors(a))
  for (const id of ancestors(b)) if (above.has(id)) return id
  return GRAPH_ROOT
}

const GRAPH_ROOT = '::graph'

function isComposite (state: ChartState): boolean {
  return state.children.length > 0
}

/** The ELK graph of a statechart: one node per state (children inside), one edge per transition target. */
function elkGraph (chart: Statechart): ElkNode {
  const nodes = new Map<string, ElkNode>()
  const toNode = (state: ChartState): ElkNode => {
    const title = state.key
    if (state.type === 'history') {
      const node: ElkNode = { id: state.id, width: 30, height: 30 }
      nodes.set(state.id, node)
      return node
    }
    if (!isComposite(state)) {
      const w = textWidth(title, LABEL_FONT)
      const node: ElkNode = {
        id: state.id,
        width: Math.max(84, w + 36),
        height: 38,
        labels: [{ id: `${state.id}::label`, text: title, width: w, height: 16 }],
        layoutOptions: { 'elk.nodeLabels.placement': 'H_CENTER V_CENTER INSIDE' }
      }
      nodes.set(state.id, node)
      return node
    }
    const w = textWidth(title + (state.type === 'parallel' ? '  (parallel)' : ''), TITLE_FONT)
    const children = state.children.map(toNode)
    if (state.initial != null && state.type !== 'parallel') children.unshift({ id: state.id + INITIAL_SUFFIX, width: 12, height: 12 })
    const node: ElkNode = {
      id: state.id,
      labels: [{ id: `${state.id}::label`, text: title, width: w, height: 16 }],
      layoutOptions: {
        'elk.padding': '[top=36,left=18,bottom=18,right=18]',
        'elk.nodeLabels.placement': 'H_LEFT V_TOP INSIDE',
        'elk.nodeSize.constraints': 'NODE_LABELS MINIMUM_SIZE',
        'elk.nodeSize.minimum': `(${w + 40},60)`,
        ...(state.type === 'parallel' ? { 'elk.direction': 'DOWN' } : {})
      },
      children
    }
    nodes.set(state.id, node)
    return node
  }
  const rootNode = toNode(chart.root)
  const graph: ElkNode = {
    id: GRAPH_ROOT,
    layoutOptions: { ...LAYERED, 'elk.hierarchyHandling': 'INCLUDE_CHILDREN', 'elk.padding': '[top=8,left=8,bottom=8,right=8]' },
    children: [rootNode],
    edges: []
  }
  const addEdge = (where: string, edge: ElkExtendedEdge): void => {
    const holder = where === GRAPH_ROOT ? graph : nodes.get(where)!
    ;(holder.edges ??= []).push(edge)
  }
  for (const state of chart.states.values()) {
    if (state.initial != null && state.type !== 'parallel' && nodes.has(state.initial)) {
      addEdge(state.id, { id: `${state.id}::initial-edge`, sources: [state.id + INITIAL_SUFFIX], targets: [state.initial] })
    }
    for (const t of state.transitions) {
      t.targets.forEach((target, i) => {
        const w = textWidth(t.label, EDGE_FONT)
        addEdge(container(chart, t.source, target), {
          id: `${t.id}:${i}`,
          sources: [t.source],
          targets: [target],
          labels: [{ id: `${t.id}:${i}::label`, text: t.label, width: w + 8, height: 18 }]
        })
      })
    }
  }
  return graph
}

let diagrams = 0

/** A drawn statechart whose highlighted state follows `setValue`. */
export class StatechartView {
  private active = new Set<string>()

  private constructor (readonly chart: Statechart, readonly element: SVGSVGElement) {}

  /** Lays out and draws the statechart of `workloadId` from its machine definition. */
  static async render (workloadId: string, definition: StateDefinition): Promise<StatechartView> {
    const chart = readStatechart(definition)
    const laid = await layout(elkGraph(chart))
    const marker = `arrow-${++diagrams}`
    const width = Math.ceil(laid.width ?? 0)
    const height = Math.ceil(laid.height ?? 0)
    const svg = s('svg', {
      class: 'statechart',
      'data-workload': workloadId,
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': `Statechart of ${workloadId}`
    },
    s('title', {}, `Statechart of ${workloadId}`),
    s('defs', {},
      s('marker', { id: marker, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse' },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))))

    const drawState = (node: ElkNode): SVGGElement => {
      const x = round(node.x ?? 0)
      const y = round(node.y ?? 0)
      const w = round(node.width ?? 0)
      const h = round(node.height ?? 0)
      if (node.id.endsWith(INITIAL_SUFFIX)) {
        return s('g', { class: 'initial', transform: `translate(${x},${y})`, 'aria-hidden': 'true' }, s('circle', { cx: w / 2, cy: h / 2, r: w / 2 }))
      }
      const state = chart.states.get(node.id)!
      const g = s('g', {
        class: `state ${state.type}${isComposite(state) ? ' composite' : ''}`,
        'data-state-id': state.id,
        'data-state-type': state.type,
        'data-active': 'false',
        transform: `translate(${x},${y})`
      }, s('title', {}, `${state.id} (${state.type})`))
      if (state.type === 'history') {
        g.append(s('circle', { class: 'frame', cx: w / 2, cy: h / 2, r: w / 2 }),
          s('text', { class: 'history-mark', x: w / 2, y: h / 2, 'text-anchor': 'middle', 'dominant-baseline': 'central' }, state.history === 'deep' ? 'H*' : 'H'))
        return g
      }
      g.append(s('rect', { class: 'frame', width: w, height: h, rx: isComposite(state) ? 10 : 18 }))
      if (state.type === 'final') g.append(s('rect', { class: 'final-ring', x: 4, y: 4, width: w - 8, height: h - 8, rx: 14 }))
      const label = node.labels?.[0]
      if (label != null) {
        const text = state.type === 'parallel' ? [state.key, s('tspan', { class: 'kind' }, '  (parallel)')] : [state.key]
        g.append(s('text', { class: isComposite(state) ? 'title' : 'name', x: round((label.x ?? 0) + (isComposite(state) ? 0 : (label.width ?? 0) / 2)), y: round((label.y ?? 0) + (label.height ?? 0) / 2), 'text-anchor': isComposite(state) ? 'start' : 'middle', 'dominant-baseline': 'central' }, ...text))
      }
      if (isComposite(state)) g.append(s('line', { class: 'divider', x1: 0, x2: w, y1: 30, y2: 30 }))
      for (const child of node.children ?? []) g.append(drawState(child))
      return g
    }
    const root = laid.children?.[0]
    if (root != null) svg.append(s('g', { class: 'states' }, drawState(root)))

    const positions = absolutePositions(laid)
    const edges = s('g', { class: 'transitions' })
    const byId = new Map(chart.transitions.map(t => [t.id, t]))
    for (const { edge, container: where } of allEdges(laid)) {
      const origin = where === GRAPH_ROOT ? { x: 0, y: 0 } : positions.get(where) ?? { x: 0, y: 0 }
      const path = s('path', { class: 'edge', d: edgePath(edge, origin.x, origin.y), 'marker-end': `url(#${marker})` })
      if (edge.id.endsWith('::initial-edge')) {
        edges.append(s('g', { class: 'transition initial-edge', 'aria-hidden': 'true' }, path))
        continue
      }
      const t = byId.get(edge.id.split(':')[0]!)
      if (t == null) continue
      const g = s('g', { class: `transition ${t.kind}`, 'data-transition': t.id, 'data-source': t.source, 'data-event': t.eventType ?? 'always' }, s('title', {}, `${t.source} → ${edge.targets.join(', ')} on ${t.label}`), path)
      for (const label of edge.labels ?? []) {
        const lx = round(origin.x + (label.x ?? 0))
        const ly = round(origin.y + (label.y ?? 0))
        g.append(s('rect', { class: 'edge-label-bg', x: lx, y: ly, width: round(label.width ?? 0), height: round(label.height ?? 0), rx: 4 }),
          s('text', { class: 'edge-label', x: round(lx + (label.width ?? 0) / 2), y: round(ly + (label.height ?? 0) / 2), 'text-anchor': 'middle', 'dominant-baseline': 'central' }, label.text ?? ''))
      }
      edges.append(g)
    }
    svg.append(edges)
    return new StatechartView(chart, svg)
  }

  /** The active states now. */
  get activeStates (): Set<string> { return this.active }

  /**
   * Highlights the states `value` makes active: the innermost ones strongly,
   * their ancestors lightly; marks the transitions they enable, and, when
   * `lastEvent` is given, the ones that event just took from the previous state.
   */
  setValue (value: unknown, lastEvent?: string): void {
    const before = this.active
    this.active = activeStates(this.chart, value)
    for (const g of this.element.querySelectorAll<SVGGElement>('g[data-state-id]')) {
      const id = g.dataset.stateId ?? ''
      const on = this.active.has(id)
      const state = this.chart.states.get(id)
      const leaf = on && (state == null || !state.children.some(c => this.active.has(c.id)))
      g.dataset.active = String(on)
      g.classList.toggle('current', leaf)
      g.classList.toggle('within', on && !leaf)
      if (leaf) g.setAttribute('aria-current', 'true')
      else g.removeAttribute('aria-current')
    }
    for (const g of this.element.querySelectorAll<SVGGElement>('g[data-transition]')) {
      const source = g.dataset.source ?? ''
      g.classList.toggle('enabled', this.active.has(source))
      g.classList.toggle('taken', lastEvent != null && before.has(source) && g.dataset.event === lastEvent)
    }
  }

  /** The user events the current state accepts. */
  acceptedEvents (): string[] {
    return acceptedEvents(this.chart, this.active)
  }
}
