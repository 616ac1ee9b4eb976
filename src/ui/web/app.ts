/**
 * The web view every node serves at /ui/ (docs/web-view.md): the mesh, the
 * workloads and where they run, and for a machine workload its statechart
 * with the current state highlighted live and its transition log.
 *
 * All data comes from the node's control API, with the bearer token the page
 * was opened with (`beemesh ui` puts it in the URL fragment).
 */
import { Api, ApiError, takeToken, workloadPath, type MachineDefinition, type MachineState, type NodeSummary, type NodeStatus, type TransitionRecord, type WorkloadStatus } from './api.js'
import { age, byId, clock, h, shortPeer } from './dom.js'
import { hosted, meshLinks, renderMesh } from './mesh.js'
import { eventLabel, StatechartView } from './statechart.js'

const REFRESH_MS = 2_000
const STATE_REFRESH_MS = 5_000
const LOG_LIMIT = 200

const api = new Api(takeToken())

const page = {
  serving: byId('serving'),
  connection: byId('connection'),
  alert: byId('alert'),
  mesh: byId('mesh'),
  meshSummary: byId('mesh-summary'),
  workloads: byId<HTMLTableElement>('workloads'),
  workloadsSummary: byId('workloads-summary'),
  workloadsEmpty: byId('workloads-empty'),
  detail: byId('detail'),
  detailTitle: byId('detail-title'),
  detailLive: byId('detail-live'),
  detailClose: byId<HTMLButtonElement>('detail-close'),
  facts: byId('facts'),
  send: byId('send'),
  sendButtons: byId('send-buttons'),
  sendResult: byId('send-result'),
  chart: byId('chart'),
  logSection: byId('log-section'),
  log: byId<HTMLTableElement>('log'),
  placementSection: byId('placement-section'),
  events: byId('events')
}

let status: NodeStatus | undefined
let nodes: NodeSummary[] = []
let workloads: WorkloadStatus[] = []
let selected: string | undefined
let detail: MachineDetail | WorkloadDetail | undefined

/** Shows a problem the user must act on (or clears it). */
function alert (message?: string): void {
  page.alert.hidden = message == null
  page.alert.textContent = message ?? ''
}

function explain (err: unknown): string {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    return api.authenticated
      ? `The node refused the page's token (${err.message}). Open a fresh link with \`beemesh ui\`.`
      : `The node wants a token (${err.message}). Open the page with \`beemesh ui\`, which puts one in the link.`
  }
  return err instanceof Error ? err.message : String(err)
}

// ---------------------------------------------------------------- the mesh and the workloads

let meshKey = ''
let meshDrawing: Promise<void> = Promise.resolve()

/** Redraws the mesh when what it shows changed (a layout per poll would make it flicker). */
function drawMesh (): void {
  const where = hosted(workloads)
  const key = JSON.stringify([status?.peerId, status?.state, nodes.map(n => [n.peerId, n.ready, n.labels, n.replicas, n.allocated.cpuMillis, n.links ?? null]), [...where]])
  if (key === meshKey) return
  meshKey = key
  meshDrawing = meshDrawing.then(async () => {
    const svg = await renderMesh(nodes, status, workloads)
    page.mesh.replaceChildren(svg)
  }).catch(err => { page.mesh.replaceChildren(h('p', { class: 'muted' }, `could not draw the mesh: ${explain(err)}`)) })
  const ready = nodes.filter(n => n.ready).length
  const links = meshLinks(nodes, status?.peerId ?? '').length
  page.meshSummary.textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}, ${ready} ready, ${links} link${links === 1 ? '' : 's'}${nodes.some(n => Array.isArray(n.links)) ? '' : ' (seen from this node)'}`
}

function statusClass (value: string): string {
  if (/^(Running|Succeeded|Completed|running|active|done)$/.test(value)) return 'ok'
  if (/^(Pending|Degraded|starting|ContainerCreating|stopped)$/.test(value)) return 'warn'
  return 'bad'
}

function placementCell (w: WorkloadStatus): HTMLElement {
  if (w.placement.length === 0) return h('span', { class: 'muted' }, '—')
  return h('ul', { class: 'placement' }, ...w.placement.map(p => {
    const phase = p.pod?.phase ?? p.status
    const who = w.kind === 'stateful' ? 'owner' : `#${p.replica}`
    return h('li', {}, `${who} → `, h('code', { title: p.peerId }, shortPeer(p.peerId)), ' ', h('span', { class: `badge ${statusClass(phase)}` }, phase))
  }))
}

function drawWorkloads (): void {
  const body = page.workloads.tBodies[0]!
  const sorted = [...workloads].sort((a, b) => a.id.localeCompare(b.id))
  body.replaceChildren(...sorted.map(w => {
    const button = h('button', { type: 'button', class: 'link-button', 'data-workload': w.id, 'aria-pressed': String(w.id === selected), title: w.kind === 'stateful' ? 'show its statechart and transition log' : 'show its placement and events' }, w.namespace === 'default' ? w.name : w.id)
    button.addEventListener('click', () => { select(w.id === selected ? undefined : w.id) })
    return h('tr', { class: w.id === selected ? 'selected' : '' },
      h('th', { scope: 'row' }, button),
      h('td', {}, w.kind === 'stateful' ? 'machine' : w.kind),
      h('td', {}, h('span', { class: `badge ${statusClass(w.status)}` }, w.status)),
      h('td', {}, `${w.ready}/${w.replicas}`),
      h('td', {}, placementCell(w)),
      h('td', {}, String(w.epoch)))
  }))
  page.workloadsEmpty.hidden = workloads.length > 0
  page.workloadsSummary.textContent = `${workloads.length} workload${workloads.length === 1 ? '' : 's'}`
}

function drawHeader (): void {
  if (status == null) return
  page.serving.replaceChildren('node ', h('code', { title: status.peerId }, shortPeer(status.peerId)), ` · ${status.state} · ${status.peerCount} peer${status.peerCount === 1 ? '' : 's'} · up ${age(status.uptimeMs)}${status.version != null ? ` · v${status.version}` : ''}`)
}

/** Polls the node every REFRESH_MS (sooner after a failure is cleared) and redraws. */
async function refresh (): Promise<void> {
  try {
    const [s, n, w] = await Promise.all([
      api.get<NodeStatus>('/v1/status'),
      api.get<NodeSummary[]>('/v1/nodes'),
      api.get<WorkloadStatus[]>('/v1/workloads')
    ])
    status = s
    nodes = n
    workloads = w
    alert()
    page.connection.textContent = `updated ${clock(Date.now())}`
    page.connection.className = 'connection ok'
    drawHeader()
    drawMesh()
    drawWorkloads()
    if (detail instanceof WorkloadDetail) detail.update(workloads.find(x => x.id === detail?.id))
  } catch (err) {
    page.connection.textContent = 'node unreachable, retrying…'
    page.connection.className = 'connection bad'
    if (err instanceof ApiError) alert(explain(err))
  } finally {
    setTimeout(() => { void refresh() }, REFRESH_MS)
  }
}

// ---------------------------------------------------------------- a selected workload

function fact (dl: HTMLElement, name: string, ...value: Array<Node | string>): void {
  dl.append(h('div', {}, h('dt', {}, name), h('dd', {}, ...value)))
}

function stateText (value: unknown): string {
  if (typeof value === 'string') return value
  return JSON.stringify(value)
}

/** Who sent an event, short: `deployer:…LBNPjG`, `…x7Yz9a` for a node, `machine` for its own timers. */
function senderText (sender: string): string {
  const colon = sender.lastIndexOf(':')
  const who = sender.slice(colon + 1)
  return who.length > 16 ? `${sender.slice(0, colon + 1)}${shortPeer(who)}` : sender
}

function eventType (event: unknown): string {
  if (event != null && typeof event === 'object' && typeof (event as { type?: unknown }).type === 'string') return (event as { type: string }).type
  return typeof event === 'string' ? event : JSON.stringify(event)
}

/** A stateful workload: facts, statechart (live), event buttons and transition log. */
class MachineDetail {
  private readonly abort = new AbortController()
  private view: StatechartView | undefined
  private readonly records = new Map<string, TransitionRecord>()
  private state: MachineState | undefined
  private current: { epoch: number, seq: number, value: unknown } | undefined
  private stateTimer: ReturnType<typeof setTimeout> | undefined

  constructor (readonly id: string) {}

  async open (): Promise<void> {
    page.logSection.hidden = false
    page.chart.replaceChildren(h('p', { class: 'muted' }, 'laying out the statechart…'))
    const signal = this.abort.signal
    const [definition, state] = await Promise.allSettled([
      api.get<MachineDefinition>(workloadPath(this.id, '/machine'), signal),
      api.get<MachineState>(workloadPath(this.id, '/state'), signal)
    ])
    if (signal.aborted) return
    if (definition.status === 'fulfilled' && typeof definition.value?.definition?.id !== 'string') {
      page.chart.replaceChildren(h('p', { class: 'muted' }, 'the owner has no definition of this machine to draw (larger than 512 KiB as JSON, or not JSON), so there is no diagram'))
    } else if (definition.status === 'fulfilled') {
      try {
        this.view = await StatechartView.render(this.id, definition.value.definition)
        if (signal.aborted) return
        page.chart.replaceChildren(this.view.element)
      } catch (err) {
        page.chart.replaceChildren(h('p', { class: 'muted' }, `could not draw the statechart: ${explain(err)}`))
      }
    } else {
      const err = definition.reason
      const missing = err instanceof ApiError && (err.status === 404 || err.status === 400) && !/workload/i.test(err.reason ?? '')
      page.chart.replaceChildren(h('p', { class: 'muted' }, missing ? 'this node does not serve machine definitions (an older version), so there is no diagram' : `no statechart: ${explain(err)}`))
    }
    if (state.status === 'fulfilled') this.applyState(state.value)
    else page.facts.replaceChildren(h('p', { class: 'muted' }, `state unavailable: ${explain(state.reason)}`))
    void api.follow(workloadPath(this.id, '/trace?follow=true'), {
      signal,
      onEvent: e => {
        if (e.event !== 'transition') return
        try { this.addRecord(JSON.parse(e.data) as TransitionRecord, true) } catch {}
      },
      onConnection: (c, why) => {
        page.detailLive.textContent = c === 'open' ? '● live' : c === 'refused' ? `not allowed to follow (${why ?? ''})` : 'reconnecting…'
        page.detailLive.className = `live ${c}`
      }
    })
    this.pollState()
  }

  close (): void {
    this.abort.abort()
    clearTimeout(this.stateTimer)
  }

  /** Re-reads the state (owner, context, holders) every few seconds, and soon after each transition. */
  private pollState (delayMs = STATE_REFRESH_MS): void {
    clearTimeout(this.stateTimer)
    this.stateTimer = setTimeout(() => {
      api.get<MachineState>(workloadPath(this.id, '/state'), this.abort.signal)
        .then(s => { this.applyState(s) }, () => {})
        .finally(() => { if (!this.abort.signal.aborted) this.pollState() })
    }, delayMs)
  }

  private applyState (s: MachineState): void {
    this.state = s
    for (const r of s.recent) this.addRecord(r, false)
    this.advance({ epoch: s.epoch, seq: s.seq, value: s.value })
    this.drawFacts()
    this.drawLog()
  }

  /** Moves the highlighted state forward (never back to an older transition arriving late). */
  private advance (next: { epoch: number, seq: number, value: unknown }, lastEvent?: string): void {
    const cur = this.current
    if (cur != null && (next.seq < cur.seq || (next.seq === cur.seq && next.epoch <= cur.epoch && lastEvent == null))) return
    this.current = next
    this.view?.setValue(next.value, lastEvent)
    this.drawSendButtons()
    this.drawFacts()
  }

  private addRecord (r: TransitionRecord, live: boolean): void {
    const key = `${r.seq}`
    const known = this.records.has(key)
    this.records.set(key, r)
    if (known) return
    if (this.records.size > LOG_LIMIT) {
      const oldest = [...this.records.values()].sort((a, b) => a.seq - b.seq)[0]
      if (oldest != null) this.records.delete(`${oldest.seq}`)
    }
    if (live) {
      this.advance({ epoch: r.epoch, seq: r.seq, value: r.value }, eventType(r.event))
      this.drawLog()
      this.pollState(50)
    }
  }

  private drawFacts (): void {
    const s = this.state
    if (s == null) return
    const dl = page.facts
    dl.replaceChildren()
    fact(dl, 'State', h('strong', { class: 'current-state', 'data-value': stateText(this.current?.value ?? s.value) }, stateText(this.current?.value ?? s.value)))
    fact(dl, 'Status', h('span', { class: `badge ${statusClass(s.status)}` }, s.status), ...(s.stale === true ? [' ', h('span', { class: 'badge warn' }, 'stale copy')] : []))
    fact(dl, 'Owner', h('code', { title: s.owner }, shortPeer(s.owner)))
    fact(dl, 'Epoch · seq', `${this.current?.epoch ?? s.epoch} · ${Math.max(this.current?.seq ?? 0, s.seq)}`)
    fact(dl, 'Holders', ...s.holders.flatMap((p, i) => [...(i > 0 ? [' '] : []), h('code', { title: p }, shortPeer(p))]), ...(s.holders.length === 0 ? ['none'] : []), ` (${s.durability})`)
    fact(dl, 'Context', h('code', { class: 'context' }, JSON.stringify(s.context)))
    if (s.output !== undefined) fact(dl, 'Output', h('code', {}, JSON.stringify(s.output)))
    if (s.error != null) fact(dl, 'Error', s.error)
  }

  private drawSendButtons (): void {
    const accepted = this.view?.acceptedEvents() ?? []
    const done = this.state?.status != null && this.state.status !== 'active'
    page.send.hidden = accepted.length === 0 || done
    page.sendButtons.replaceChildren(...accepted.map(type => {
      const button = h('button', { type: 'button', class: 'event', 'data-event': type }, type)
      button.addEventListener('click', () => { void this.send(type, button) })
      return button
    }))
  }

  private async send (type: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true
    page.sendResult.textContent = `sending ${type}…`
    try {
      const ack = await api.post<{ value: unknown, seq: number, epoch: number }>(workloadPath(this.id, '/events'), { event: { type } }, this.abort.signal)
      page.sendResult.textContent = `${type} → ${stateText(ack.value)} (seq ${ack.seq})`
    } catch (err) {
      page.sendResult.textContent = `${type} failed: ${explain(err)}`
    } finally {
      button.disabled = false
    }
  }

  private drawLog (): void {
    const rows = [...this.records.values()].sort((a, b) => b.seq - a.seq)
    page.log.tBodies[0]!.replaceChildren(...rows.map(r => {
      const type = eventType(r.event)
      return h('tr', { 'data-seq': r.seq, 'data-event': type },
        h('td', { class: 'num' }, String(r.seq)),
        h('td', { class: 'num' }, String(r.epoch)),
        h('td', {}, h('code', { title: JSON.stringify(r.event) }, eventLabel(type))),
        h('td', {}, r.sender != null ? h('code', { title: r.sender }, senderText(r.sender)) : h('span', { class: 'muted' }, '—')),
        h('td', {}, h('code', {}, stateText(r.value))),
        h('td', {}, h('time', { datetime: new Date(r.ts).toISOString() }, clock(r.ts))))
    }))
    if (rows.length === 0) page.log.tBodies[0]!.replaceChildren(h('tr', { class: 'empty' }, h('td', { colspan: 6, class: 'muted' }, 'no transitions yet')))
  }
}

/** A stateless or container workload: its placement and scheduling events. */
class WorkloadDetail {
  private readonly abort = new AbortController()
  constructor (readonly id: string) {}

  async open (): Promise<void> {
    page.placementSection.hidden = false
    this.update(workloads.find(w => w.id === this.id))
    try {
      const d = await api.get<WorkloadStatus & { events?: Array<{ ts: number, type: string, reason: string, message: string }> }>(workloadPath(this.id), this.abort.signal)
      page.events.replaceChildren(...(d.events ?? []).slice().reverse().map(e => h('li', { class: e.type === 'Warning' ? 'warning' : '' }, h('time', {}, clock(e.ts)), ' ', h('strong', {}, e.reason), ' ', e.message)))
      if ((d.events ?? []).length === 0) page.events.replaceChildren(h('li', { class: 'muted' }, 'no events'))
    } catch (err) {
      if (!this.abort.signal.aborted) page.events.replaceChildren(h('li', { class: 'muted' }, explain(err)))
    }
  }

  update (w: WorkloadStatus | undefined): void {
    const dl = page.facts
    dl.replaceChildren()
    if (w == null) { fact(dl, 'Status', 'gone'); return }
    fact(dl, 'Status', h('span', { class: `badge ${statusClass(w.status)}` }, w.status))
    fact(dl, 'Kind', w.kind)
    fact(dl, 'Ready', `${w.ready}/${w.replicas}`)
    fact(dl, 'Placement', placementCell(w))
  }

  close (): void { this.abort.abort() }
}

/** Opens the detail panel of workload `id` (or closes it). */
function select (id: string | undefined): void {
  detail?.close()
  detail = undefined
  selected = id
  drawWorkloads()
  page.detail.hidden = id == null
  page.chart.replaceChildren()
  page.facts.replaceChildren()
  page.send.hidden = true
  page.sendResult.textContent = ''
  page.detailLive.textContent = ''
  page.logSection.hidden = true
  page.placementSection.hidden = true
  page.log.tBodies[0]!.replaceChildren()
  if (id == null) return
  const w = workloads.find(x => x.id === id)
  page.detailTitle.textContent = w != null ? `${w.kind === 'stateful' ? 'Machine' : 'Workload'} ${w.namespace === 'default' ? w.name : w.id}` : id
  detail = w?.kind === 'stateful' ? new MachineDetail(id) : new WorkloadDetail(id)
  void detail.open()
  page.detail.scrollIntoView({ behavior: 'smooth', block: 'start' })
}

page.detailClose.addEventListener('click', () => { select(undefined) })
void refresh()
