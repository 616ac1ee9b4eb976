/**
 * The Kubernetes-compatible API, served by every node on its control API port
 * (ControlApi hands it every path under /api, /apis, /version and /openapi).
 * Each node answers from its own copy of the mesh-wide catalog, so any node
 * shows the same objects. Failures are `v1 Status` objects.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { WorkloadApi } from '../../node/workload-api.js'
import type { Logger } from '../../transport/logger.js'
import { describeError } from '../../errors.js'
import { apiGroup, coreVersions, findGroupVersion, findResource, groupList, resourceList, versionInfo, type ApiResource } from './discovery.js'
import { alreadyExists, badRequest, conflict, invalid, KubeStatusError, methodNotSupported, notFound } from './errors.js'
import { applyPatch, patchType, type PatchType } from './patch.js'
import { decodePathSegment, readBody } from '../http.js'
import { parseDocument } from 'yaml'
import { firstAlias } from '../../yaml.js'
import { nameOf, specFromObject } from './resources/create.js'
import { EVENT_COLUMNS, eventsOf, matchesFields, parseFieldSelector } from './resources/events.js'
import { ACTOR_COLUMNS, actorSpecFromObject, toActor, type ReadArtifact } from './resources/actors.js'
import { SYSTEM_NAMESPACE } from '../../policy/defaults.js'
import { NAMESPACE_COLUMNS, toNamespaces } from './resources/namespaces.js'
import { NODE_COLUMNS, toNode } from './resources/nodes.js'
import { DEPLOYMENT_COLUMNS, POD_COLUMNS, podName, REPLICA_ANNOTATION, toDeployment, toPods, toScale, WORKLOAD_ID_ANNOTATION } from './resources/workloads.js'
import { matches, parseSelector } from './selectors.js'
import { ENDPOINT_SLICE_COLUMNS, ENDPOINTS_COLUMNS, SERVICE_COLUMNS, serviceFromObject, toEndpointSlice, toEndpoints, toService, type ServiceState } from './resources/services.js'
import { successStatus, toStatus } from './status.js'
import { buildTable, tableVersion, wantsTable, type KubeObject, type TableColumn } from './table.js'

import type { Action, Resource } from '../../policy/engine.js'

export interface KubeApiComponents {
  /** Read at each request: the node's runtime exists only once it started. */
  workloads: () => WorkloadApi
  logger: Logger
  /** The server's own URL, for /api's serverAddressByClientCIDRs. */
  url: () => string
  /** Reads the uploaded bundle an Actor or Machine names by sha256 (never a file of this node's). */
  readArtifact: ReadArtifact
  now?: () => number
}

/** Paths the Kubernetes API serves. */
export function isKubePath (path: string): boolean {
  return path === '/version' || path === '/api' || path === '/apis' || path.startsWith('/api/') || path.startsWith('/apis/') || path.startsWith('/openapi/')
}

export type Authorize = (action: Action, resource: Resource) => void
/** Whether the caller may do `action` on the resource, without logging a denial (lists show only what the caller may read). */
export type Allows = (action: Action, resource: Resource) => boolean

/** The caller's checks for one request. */
interface Access { authorize: Authorize, allows: Allows }

interface Target { group: string, version: string, namespace?: string, resource: ApiResource, name?: string, sub?: string }

interface Kind {
  list: (namespace: string | undefined) => KubeObject[]
  columns: ReadonlyArray<TableColumn<KubeObject>>
}

const CREATABLE: Readonly<Record<string, 'Pod' | 'Deployment' | 'Actor' | 'Machine'>> = { pods: 'Pod', deployments: 'Deployment', actors: 'Actor', machines: 'Machine' }
const WATCH_POLL_MS = 250
const LOG_POLL_MS = 500

export class KubeApi {
  private readonly c: KubeApiComponents
  private readonly now: () => number
  private readonly streams = new Set<ServerResponse>()
  private readonly started: number

  constructor (components: KubeApiComponents) {
    this.c = components
    this.now = components.now ?? Date.now
    this.started = Math.floor(this.now() / 1000) * 1000
  }

  /** Ends watches and followed logs (the server is closing). */
  close (): void {
    for (const res of this.streams) res.end()
  }

  /** A 401 Status for a request without valid credentials. */
  unauthorized (res: ServerResponse, message: string): void {
    send(res, 401, toStatus(new KubeStatusError(401, 'Unauthorized', message)))
  }

  /**
   * `authorize` throws (a TrustError: 403 Forbidden) when the caller may not
   * do `action` on the resource; the control API binds it to the caller.
   */
  async handle (req: IncomingMessage, res: ServerResponse, url: URL, authorize: Authorize = () => {}, allows: Allows = () => true): Promise<void> {
    try {
      await this.route(req, res, url, { authorize, allows })
    } catch (err) {
      const status = toStatus(err)
      if (status.code >= 500) this.c.logger.error({ err: describeError(err), url: req.url }, 'kubernetes API request failed')
      if (res.headersSent) { res.end(); return }
      send(res, status.code, status)
    }
  }

  private async route (req: IncomingMessage, res: ServerResponse, url: URL, access: Access): Promise<void> {
    const path = url.pathname.replace(/\/+$/, '') || '/'
    const method = req.method ?? 'GET'
    if (path === '/version') { send(res, 200, versionInfo()); return }
    if (path === '/openapi/v2') { openApiV2(req, res); return }
    // No OpenAPI v3: kubectl then falls back to v2 (for client-side validation and patch metadata).
    if (path.startsWith('/openapi/')) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${path})`)
    if (path === '/api') { send(res, 200, coreVersions(new URL(this.c.url()).host)); return }
    if (path === '/apis') { send(res, 200, groupList()); return }
    const parts = path.split('/').slice(1).map(decodePathSegment)
    const core = parts[0] === 'api'
    const group = core ? '' : parts[1] ?? ''
    const rest = core ? parts.slice(1) : parts.slice(2)
    if (!core && rest.length === 0) {
      const g = apiGroup(group)
      if (g == null) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (group ${group})`)
      send(res, 200, g)
      return
    }
    const version = rest[0] ?? ''
    const gv = findGroupVersion(group, version)
    if (gv == null) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${core ? '' : `${group}/`}${version})`)
    if (rest.length === 1) { send(res, 200, resourceList(gv)); return }
    const target = this.target(group, version, rest.slice(1), path)
    // A dry run must change nothing: refused rather than carried out.
    if (method !== 'GET' && url.searchParams.has('dryRun')) throw badRequest('dryRun: server-side dry runs are not supported by BeeMesh; use --dry-run=client')
    if (target.resource.namespaced) {
      const action = method === 'GET' ? 'read' : method === 'DELETE' ? 'delete' : 'deploy'
      // A named object is decided on what owns it, with its labels (a pod on its workload);
      // a POST names its object in the body: create checks that once it is read.
      for (const resource of this.resourcesOf(target)) access.authorize(action, resource)
    } else {
      // Nodes and namespaces are mesh-level: reading them is a read of the system namespace.
      access.authorize(method === 'GET' ? 'read' : 'admin', { kind: 'namespace', name: SYSTEM_NAMESPACE })
    }
    if (method === 'GET') { await this.get(target, req, res, url, access); return }
    if (method === 'DELETE') { await this.remove(target, res); return }
    if (method === 'POST') { await this.create(target, req, res, access); return }
    if (method === 'PATCH' || method === 'PUT') {
      if (target.sub === 'scale') await this.updateScale(target, req, res, method)
      else await this.update(target, req, res, method, access)
      return
    }
    throw methodNotSupported(method, path)
  }

  /** `<resource>[/<name>[/<sub>]]` or `namespaces/<ns>/<resource>[/<name>[/<sub>]]`. */
  private target (group: string, version: string, segs: string[], path: string): Target {
    let namespace: string | undefined
    let rest = segs
    if (segs[0] === 'namespaces' && segs.length >= 3) { namespace = segs[1]; rest = segs.slice(2) }
    const [resourceName = '', name, sub, ...extra] = rest
    const resource = findResource(group, version, resourceName)
    if (resource == null || extra.length > 0) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${path})`)
    if (sub != null && findResource(group, version, `${resourceName}/${sub}`) == null) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${path})`)
    if (namespace != null && !resource.namespaced) throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${path})`)
    return { group, version, resource, ...(namespace != null ? { namespace } : {}), ...(name != null ? { name } : {}), ...(sub != null ? { sub } : {}) }
  }

  /**
   * What a request on `t` is authorized against: for a named object, what
   * owns it, with its labels (a Deployment, Actor or Machine is its workload,
   * a pod the workload it is a replica of, endpoints their service); for a
   * list, its namespace. An unknown name is decided on the name alone (and
   * then not found).
   */
  private resourcesOf (t: Target): Resource[] {
    const namespace = t.namespace ?? '*'
    if (t.name == null || t.resource.name === 'events') return [{ kind: 'namespace', name: namespace }]
    const name = t.name
    const inNamespace = (ns: string): boolean => t.namespace == null || ns === t.namespace
    if (t.resource.name === 'services' || t.resource.name === 'endpoints' || t.resource.name === 'endpointslices') {
      const service = t.resource.name === 'endpointslices' ? name.replace(/-beemesh$/, '') : name
      const found = this.c.workloads().services.directory.services().filter(s => s.name === service && inNamespace(s.namespace))
      return found.length > 0 ? found.map(serviceResource) : [{ kind: 'service', namespace, name: service, labels: {} }]
    }
    const owners = this.c.workloads().list().filter(w => inNamespace(w.namespace) && (t.resource.name === 'pods' ? ownsPod(w, name) : w.name === name))
    return owners.length > 0 ? owners.map(workloadResource) : [{ kind: 'workload', namespace, name, labels: {} }]
  }

  /** What the caller may read of `items` (objects of `resource`): each decided on what owns it, with its labels. */
  private readable (resource: string, items: KubeObject[], allows: Allows): KubeObject[] {
    if (resource === 'nodes' || resource === 'namespaces') return items
    const runtime = this.c.workloads()
    if (resource === 'services' || resource === 'endpoints' || resource === 'endpointslices') {
      const services = new Map(runtime.services.directory.services().map(s => [s.id, s]))
      return items.filter(o => {
        const name = resource === 'endpointslices' ? o.metadata.name.replace(/-beemesh$/, '') : o.metadata.name
        const s = services.get(`${o.metadata.namespace ?? ''}/${name}`)
        return allows('read', s != null ? serviceResource(s) : { kind: 'service', namespace: o.metadata.namespace ?? '', name, labels: {} })
      })
    }
    const workloads = new Map(runtime.list().map(w => [w.id, w]))
    return items.filter(o => {
      const id = resource === 'pods' ? (o.metadata.annotations as Record<string, string> | undefined)?.[WORKLOAD_ID_ANNOTATION] ?? '' : `${o.metadata.namespace ?? ''}/${o.metadata.name}`
      const w = workloads.get(id)
      return allows('read', w != null ? workloadResource(w) : { kind: 'workload', namespace: o.metadata.namespace ?? '', name: o.metadata.name, labels: {} })
    })
  }

  private kind (resource: string): Kind {
    const now = this.now()
    const workloads = (ns: string | undefined) => this.c.workloads().list().filter(w => w.kind === 'container' && (ns == null || w.namespace === ns))
    switch (resource) {
      case 'nodes': return { list: () => this.c.workloads().nodes().map(n => toNode(n, now)), columns: NODE_COLUMNS }
      case 'namespaces': return { list: () => toNamespaces(this.c.workloads().list(), this.started), columns: NAMESPACE_COLUMNS }
      case 'pods': return { list: ns => workloads(ns).flatMap(toPods), columns: POD_COLUMNS }
      case 'actors': return { list: ns => this.c.workloads().list().filter(w => w.kind === 'stateless' && (ns == null || w.namespace === ns)).map(w => toActor(w)), columns: ACTOR_COLUMNS }
      case 'machines': return { list: ns => this.c.workloads().list().filter(w => w.kind === 'stateful' && (ns == null || w.namespace === ns)).map(w => toActor(w)), columns: ACTOR_COLUMNS }
      case 'events': return { list: () => [], columns: EVENT_COLUMNS }
      case 'deployments': return { list: ns => workloads(ns).filter(w => w.kubeKind !== 'Pod').map(toDeployment), columns: DEPLOYMENT_COLUMNS }
      case 'services': return { list: ns => this.serviceStates(ns).map(toService), columns: SERVICE_COLUMNS }
      case 'endpoints': {
        const runtime = this.c.workloads()
        return { list: ns => this.serviceStates(ns).map(st => toEndpoints(st, peer => runtime.hostAddress(peer))), columns: ENDPOINTS_COLUMNS }
      }
      case 'endpointslices': {
        const runtime = this.c.workloads()
        return { list: ns => this.serviceStates(ns).map(st => toEndpointSlice(st, peer => runtime.hostAddress(peer))), columns: ENDPOINT_SLICE_COLUMNS }
      }
      default: throw new KubeStatusError(404, 'NotFound', `the server could not find the requested resource (${resource})`)
    }
  }

  /** Every service of a namespace (or all), with its address and replicas. */
  private serviceStates (ns: string | undefined): ServiceState[] {
    const runtime = this.c.workloads()
    const plane = runtime.services
    const addresses = plane.directory.addresses()
    const workloads = new Map(runtime.list().map(w => [w.id, w]))
    const podOf = (id: string, replica: number): string => podName(workloads.get(id) ?? { name: id.split('/')[1] ?? id }, replica)
    return plane.directory.services().filter(s => ns == null || s.namespace === ns).map(service => ({ service, address: addresses.get(service.id), replicas: plane.directory.replicas(service), podOf }))
  }

  /** Every object of a kind, each with a resourceVersion derived from its content. */
  private objects (t: Target): KubeObject[] {
    return this.kind(t.resource.name).list(t.namespace).map(withVersion)
  }

  private async get (t: Target, req: IncomingMessage, res: ServerResponse, url: URL, access: Access): Promise<void> {
    const q = url.searchParams
    if (t.sub === 'log') { await this.podLog(t, req, res, q); return }
    if (t.sub === 'scale') { send(res, 200, toScale(this.existing(t))); return }
    if (t.resource.name === 'events') { await this.events(t, req, res, q, access); return }
    const kind = this.kind(t.resource.name)
    const table = wantsTable(req.headers.accept)
    const render = (items: KubeObject[]): unknown => table
      ? buildTable(items, kind.columns, { now: this.now(), includeObject: q.get('includeObject') ?? undefined, version: tableVersion(req.headers.accept), resourceVersion: listVersion(items) })
      : undefined
    if (t.name != null) {
      let found = this.objects(t).find(o => o.metadata.name === t.name)
      if (found == null) throw notFound(t.resource.name, t.name, t.group)
      if (t.resource.name === 'machines') found = await this.withState(t, found)
      send(res, 200, render([found]) ?? found)
      return
    }
    const selector = parseSelector(q.get('labelSelector') ?? '')
    const fields = parseFieldSelector(q.get('fieldSelector'))
    const select = (): KubeObject[] => this.readable(t.resource.name, this.objects(t), access.allows).filter(o => matches(selector, o.metadata.labels) && matchesFields(o, fields))
    if (q.get('watch') === 'true' || q.get('watch') === '1') { this.watch(select, req, res, table ? kind.columns : undefined, q); return }
    const items = select()
    send(res, 200, render(items) ?? {
      kind: `${t.resource.kind}List`,
      apiVersion: t.group === '' ? t.version : `${t.group}/${t.version}`,
      metadata: { resourceVersion: listVersion(items) },
      items
    })
  }

  /**
   * `?watch=true`: a chunked stream of `{type, object}` lines, from polling the
   * local catalog and comparing resourceVersions. Without a resourceVersion to
   * start from, every current object comes first as ADDED.
   */
  private watch (select: () => KubeObject[], req: IncomingMessage, res: ServerResponse, columns: ReadonlyArray<TableColumn<KubeObject>> | undefined, q: URLSearchParams): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache' })
    const seen = new Map<string, KubeObject>()
    const from = q.get('resourceVersion')
    const emit = (type: 'ADDED' | 'MODIFIED' | 'DELETED', o: KubeObject): void => {
      const object = columns != null ? buildTable([o], columns, { now: this.now(), includeObject: q.get('includeObject') ?? undefined }) : o
      res.write(JSON.stringify({ type, object }) + '\n')
    }
    const poll = (initial: boolean): void => {
      const now = new Map(select().map(o => [`${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]))
      for (const [key, o] of now) {
        const before = seen.get(key)
        // Given a resourceVersion (kubectl get -w after its list), objects already at it are not sent again.
        if (before == null) { if (!(initial && from != null && from !== '' && from !== '0')) emit('ADDED', o) } else if (before.metadata.resourceVersion !== o.metadata.resourceVersion) emit('MODIFIED', o)
        seen.set(key, o)
      }
      for (const [key, o] of seen) if (!now.has(key)) { seen.delete(key); emit('DELETED', o) }
    }
    poll(true)
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? 1800)
    const timer = setInterval(() => { try { poll(false) } catch (err) { this.c.logger.debug({ err: describeError(err) }, 'watch poll failed') } }, WATCH_POLL_MS)
    timer.unref()
    const deadline = setTimeout(() => { res.end() }, Math.max(1, Math.min(timeoutSeconds, 3600)) * 1000)
    deadline.unref()
    this.streams.add(res)
    const end = (): void => { clearInterval(timer); clearTimeout(deadline); this.streams.delete(res) }
    req.on('close', end)
    res.on('close', end)
  }

  /** `pods/<name>/log`: the replica's lines (`tailLines`), and with `follow=true` new ones as they come. */
  private async podLog (t: Target, req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
    const name = t.name ?? ''
    const pod = this.objects(t).find(o => o.metadata.name === name)
    if (pod == null) throw notFound('pods', name)
    const annotations = pod.metadata.annotations as Record<string, string>
    const id = annotations[WORKLOAD_ID_ANNOTATION]!
    const parsed = { replica: Number(annotations[REPLICA_ANNOTATION]) }
    const tail = q.get('tailLines')
    const tailLines = tail != null ? Number(tail) : undefined
    if (tailLines != null && (!Number.isInteger(tailLines) || tailLines < 0)) throw badRequest(`tailLines: must be a non-negative integer, got "${tail ?? ''}"`)
    const linesOf = async (since?: number) => (await this.c.workloads().logs(id, since != null ? { since } : {})).filter(l => l.replica === parsed.replica)
    let lines = await linesOf()
    if (tailLines != null) lines = tailLines === 0 ? [] : lines.slice(-tailLines)
    res.writeHead(200, { 'content-type': 'text/plain', ...(q.get('follow') === 'true' ? { 'transfer-encoding': 'chunked' } : {}) })
    const sent = new Set<string>()
    const write = (ls: typeof lines): void => {
      for (const l of ls) {
        const key = `${l.ts}:${l.stream}:${l.message}`
        if (sent.has(key)) continue
        sent.add(key)
        res.write(l.message.endsWith('\n') ? l.message : `${l.message}\n`)
      }
    }
    write(lines)
    if (q.get('follow') !== 'true') { res.end(); return }
    let last = lines.at(-1)?.ts ?? 0
    let busy = false
    const timer = setInterval(() => {
      if (busy) return
      busy = true
      linesOf(last).then(more => {
        write(more)
        last = more.at(-1)?.ts ?? last
      }, () => { res.end() }).finally(() => { busy = false })
    }, LOG_POLL_MS)
    timer.unref()
    this.streams.add(res)
    const end = (): void => { clearInterval(timer); this.streams.delete(res) }
    req.on('close', end)
    res.on('close', end)
  }

  /**
   * DELETE of a Deployment, or of a Pod created as a Pod, removes its workload
   * (every replica stops). DELETE of one of a Deployment's pods stops that
   * replica; the mesh replaces it (same name), as a ReplicaSet would.
   */
  private async remove (t: Target, res: ServerResponse): Promise<void> {
    if (!t.resource.verbs.includes('delete') || t.name == null || t.sub != null) throw methodNotSupported('DELETE', `${t.resource.name}${t.name != null ? `/${t.name}` : ''}`)
    const found = this.objects(t).find(o => o.metadata.name === t.name)
    if (found == null) throw notFound(t.resource.name, t.name, t.group)
    const id = `${t.namespace ?? 'default'}/${t.name}`
    if (t.resource.name === 'services') {
      const catalog = this.c.workloads().services.catalog
      if (catalog.get(id) == null) throw new KubeStatusError(405, 'MethodNotAllowed', `service "${t.name}" is declared by workload ${String((found.metadata.annotations as Record<string, string>)['beemesh.io/origin'] ?? '').replace(/^workload /, '')}: it goes when that workload is deleted or stops declaring it`, { kind: 'services', name: t.name })
      await catalog.delete(id)
      send(res, 200, successStatus({ name: t.name, kind: t.resource.name, group: t.group }))
      return
    }
    if (t.resource.name === 'pods' && !this.c.workloads().list().some(w => w.id === id && w.kubeKind === 'Pod')) {
      const owner = (found.metadata.ownerReferences as Array<{ name: string }> | undefined)?.[0]?.name ?? ''
      const ordinal = Number(t.name.slice(owner.length + 1))
      if (owner === '' || !Number.isInteger(ordinal)) throw new KubeStatusError(405, 'MethodNotAllowed', `pod "${t.name}" belongs to no deployment BeeMesh knows`, { kind: 'pods', name: t.name })
      await this.c.workloads().stopReplica(`${t.namespace ?? 'default'}/${owner}`, ordinal)
      send(res, 200, successStatus({ name: t.name, kind: t.resource.name, group: t.group }))
      return
    }
    await this.c.workloads().delete(id)
    send(res, 200, successStatus({ name: t.name, kind: t.resource.name, group: t.group }))
  }

  /**
   * Events of a namespace (or of everything), gathered from the workloads'
   * descriptions; with `involvedObject.name` (kubectl describe) only the
   * workload that object belongs to is described.
   */
  private async events (t: Target, req: IncomingMessage, res: ServerResponse, q: URLSearchParams, access: Access): Promise<void> {
    if (q.get('watch') === 'true' || q.get('watch') === '1') throw methodNotSupported('WATCH', 'events')
    const fields = parseFieldSelector(q.get('fieldSelector'))
    const about = fields['involvedObject.name']
    const workloads = this.c.workloads()
    const chosen = workloads.list().filter(w => (t.namespace == null || w.namespace === t.namespace) && (about == null || w.name === about || about.startsWith(`${w.name}-`)) && access.allows('read', workloadResource(w)))
    const described = await Promise.all(chosen.map(async w => await workloads.describe(w.id).catch(() => undefined)))
    const selector = parseSelector(q.get('labelSelector') ?? '')
    const items = described.flatMap(d => d != null ? eventsOf(d) : []).map(withVersion).filter(o => matchesFields(o, fields) && matches(selector, o.metadata.labels))
    if (t.name != null) {
      const found = items.find(o => o.metadata.name === t.name)
      if (found == null) throw notFound('events', t.name)
      send(res, 200, found)
      return
    }
    const table = wantsTable(req.headers.accept)
    send(res, 200, table
      ? buildTable(items, EVENT_COLUMNS, { now: this.now(), includeObject: q.get('includeObject') ?? undefined, version: tableVersion(req.headers.accept), resourceVersion: listVersion(items) })
      : { kind: 'EventList', apiVersion: 'v1', metadata: { resourceVersion: listVersion(items) }, items })
  }

  /** A Machine with its state (value, context, owner, seq) read from its owner; without it if the owner does not answer. */
  private async withState (t: Target, found: KubeObject): Promise<KubeObject> {
    const id = `${t.namespace ?? 'default'}/${t.name ?? ''}`
    const w = this.c.workloads().list().find(x => x.id === id)
    if (w == null) return found
    try {
      return withVersion(toActor(w, await this.c.workloads().machineState(id)))
    } catch (err) {
      this.c.logger.debug({ workload: id, err: describeError(err) }, 'machine state unavailable')
      return found
    }
  }

  /** The named object of `t`; 404 without it. */
  private existing (t: Target): KubeObject {
    const found = t.name != null ? this.objects(t).find(o => o.metadata.name === t.name) : undefined
    if (found == null) throw notFound(t.resource.name, t.name ?? '', t.group)
    return found
  }

  /**
   * PATCH (merge or strategic merge) or PUT of a Pod or Deployment: the patch
   * applies to the object as GET shows it, the result is validated like a new
   * object and applied: only replicas (or annotations) changed → scaled in
   * place; anything else → a new generation replaces the replicas.
   */
  private async update (t: Target, req: IncomingMessage, res: ServerResponse, method: 'PATCH' | 'PUT', access: Access): Promise<void> {
    if (t.resource.name === 'services' && t.name != null && t.sub == null) { await this.updateService(t, req, res, method, access); return }
    const kind = t.resource.name === 'deployments' ? 'Deployment' : t.resource.name === 'pods' ? 'Pod' : undefined
    if (kind == null || t.name == null || t.sub != null) throw methodNotSupported(method, t.resource.name)
    const current = this.existing(t)
    const namespace = t.namespace ?? 'default'
    const id = `${namespace}/${t.name}`
    const workloads = this.c.workloads()
    if (workloads.list().find(w => w.id === id)?.manifest == null) {
      throw new KubeStatusError(409, 'Conflict', `${t.resource.name} "${t.name}" was not created through the Kubernetes API (beemesh apply); change it with beemesh apply`, { kind: t.resource.name, name: t.name })
    }
    const body = method === 'PUT' ? await readObject(req) : applyPatch(current, await readObject(req, patchType(req.headers['content-type'])), patchType(req.headers['content-type']))
    checkVersion(body, current, t)
    // The node a pod runs on is the server's to say: what GET showed is not a request.
    const spec0 = (body as { spec?: Record<string, unknown> } | null)?.spec
    if (kind === 'Pod' && spec0 != null && spec0.nodeName === (current.spec as { nodeName?: string }).nodeName) delete spec0.nodeName
    if (nameOf(body) !== t.name) throw badRequest(`metadata.name: the name of the object (${JSON.stringify(nameOf(body))}) does not match the name on the URL (${JSON.stringify(t.name)})`)
    const spec = specFromObject(body, kind, namespace, this.now())
    // Decided on the labels it will have too: a patch cannot take a workload out of a rule's reach.
    access.authorize('deploy', workloadResource(spec))
    const { placed } = await workloads.submit(spec)
    placed.catch(err => { this.c.logger.warn({ workload: spec.id, err: describeError(err) }, 'placement of an updated kubernetes object failed') })
    send(res, 200, this.objects(t).find(o => o.metadata.name === t.name) ?? body)
  }

  /** PATCH or PUT of a Service made through this API: the result replaces it everywhere. */
  private async updateService (t: Target, req: IncomingMessage, res: ServerResponse, method: 'PATCH' | 'PUT', access: Access): Promise<void> {
    const current = this.existing(t)
    const namespace = t.namespace ?? 'default'
    const plane = this.c.workloads().services
    const old = plane.catalog.get(`${namespace}/${t.name ?? ''}`)
    if (old == null) throw new KubeStatusError(409, 'Conflict', `service "${t.name ?? ''}" is declared by a workload; change that workload's services instead`, { kind: 'services', name: t.name ?? '' })
    const body = method === 'PUT' ? await readObject(req) : applyPatch(current, await readObject(req, patchType(req.headers['content-type'])), patchType(req.headers['content-type']))
    checkVersion(body, current, t)
    if (nameOf(body) !== t.name) throw badRequest(`metadata.name: the name of the object (${JSON.stringify(nameOf(body))}) does not match the name on the URL (${JSON.stringify(t.name)})`)
    // The address and status are the server's to say: what GET showed is not a request.
    const spec0 = (body as { spec?: Record<string, unknown> }).spec
    if (spec0 != null) { delete spec0.clusterIP; delete spec0.clusterIPs }
    const spec = serviceFromObject(body, namespace, old.createdAt, selector => this.selected(namespace, selector))
    access.authorize('deploy', serviceResource(spec))
    await plane.catalog.put(spec)
    send(res, 200, this.objects(t).find(o => o.metadata.name === t.name) ?? body)
  }

  private selected (namespace: string, selector: Record<string, string>): import('../../workloads/types.js').WorkloadSpec[] {
    return this.c.workloads().services.directory.selecting(namespace, selector)
  }

  /** `deployments/<name>/scale`: PUT a Scale, or PATCH one (kubectl scale). */
  private async updateScale (t: Target, req: IncomingMessage, res: ServerResponse, method: 'PATCH' | 'PUT'): Promise<void> {
    const current = toScale(this.existing(t))
    const body = method === 'PUT' ? await readObject(req) : applyPatch(current, await readObject(req, patchType(req.headers['content-type'])), patchType(req.headers['content-type']))
    checkVersion(body, current, t)
    const replicas = (body as { spec?: { replicas?: unknown } } | null)?.spec?.replicas
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > 100) {
      throw invalid('Scale', t.name ?? '', [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message: `Invalid value: ${JSON.stringify(replicas ?? null)}: must be an integer from 1 to 100 (BeeMesh cannot scale to 0)` }], 'autoscaling')
    }
    await this.c.workloads().scale(`${t.namespace ?? 'default'}/${t.name ?? ''}`, replicas)
    send(res, 200, toScale(this.existing(t)))
  }

  /** POST of a Pod, Deployment, Actor or Machine: validated, then recorded and tendered (placement goes on after the answer). */
  private async create (t: Target, req: IncomingMessage, res: ServerResponse, access: Access): Promise<void> {
    if (t.resource.name === 'services' && t.name == null && t.sub == null) {
      const namespace = t.namespace ?? 'default'
      const body = await readObject(req)
      const plane = this.c.workloads().services
      if (plane.directory.services().some(s => s.id === `${namespace}/${nameOf(body)}`)) throw alreadyExists('services', nameOf(body))
      const spec = serviceFromObject(body, namespace, this.now(), selector => this.selected(namespace, selector))
      access.authorize('deploy', serviceResource(spec))
      await plane.catalog.put(spec)
      send(res, 201, this.objects(t).find(o => o.metadata.name === spec.name) ?? body)
      return
    }
    const kind = CREATABLE[t.resource.name]
    if (kind == null || t.name != null || t.sub != null) throw methodNotSupported('POST', t.resource.name)
    const namespace = t.namespace ?? 'default'
    const body = await readObject(req)
    const workloads = this.c.workloads()
    const name = nameOf(body)
    if (name !== '' && workloads.list().some(w => w.id === `${namespace}/${name}`)) throw alreadyExists(t.resource.name, name, t.group)
    const { spec, artifact } = kind === 'Actor' || kind === 'Machine'
      ? await actorSpecFromObject(body, kind, namespace, this.now(), this.c.readArtifact)
      : { spec: specFromObject(body, kind, namespace, this.now()), artifact: undefined }
    if (workloads.list().some(w => w.id === spec.id)) throw alreadyExists(t.resource.name, spec.name, t.group)
    access.authorize('deploy', workloadResource(spec))
    const { placed } = await workloads.submit(spec, artifact)
    placed.catch(err => { this.c.logger.warn({ workload: spec.id, err: describeError(err) }, 'placement of a kubernetes object failed') })
    const created = this.objects(t).find(o => o.metadata.name === spec.name && o.metadata.namespace === namespace)
    send(res, 201, created ?? body)
  }
}

const OPENAPI_V2_PROTOBUF = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf'

/**
 * `/openapi/v2` with no definitions. kubectl asks for protobuf and cannot do
 * without a document (apply's validation fails with "failed to download
 * openapi"): an empty protobuf message is a valid empty Document, and kubectl
 * skips validation of kinds the document does not describe. JSON for anyone else.
 */
function openApiV2 (req: IncomingMessage, res: ServerResponse): void {
  if ((req.headers.accept ?? '').includes('protobuf')) {
    res.writeHead(200, { 'content-type': OPENAPI_V2_PROTOBUF, 'content-length': 0 })
    res.end()
    return
  }
  send(res, 200, { swagger: '2.0', info: { title: 'BeeMesh', version: versionInfo().gitVersion }, paths: {}, definitions: {} })
}

/** A workload as the policy sees it: its namespace, name and labels. */
function workloadResource (w: { namespace: string, name: string, labels?: Record<string, string> }): Resource {
  return { kind: 'workload', namespace: w.namespace, name: w.name, labels: w.labels ?? {} }
}

function serviceResource (s: { namespace: string, name: string, labels?: Record<string, string> }): Resource {
  return { kind: 'service', namespace: s.namespace, name: s.name, labels: s.labels ?? {} }
}

/** Whether `pod` is a replica of `w`: a workload created as a Pod is its own pod, a Deployment's are `<name>-<ordinal>`. */
function ownsPod (w: { kind: string, name: string, kubeKind?: string }, pod: string): boolean {
  if (w.kind !== 'container') return false
  return w.kubeKind === 'Pod' ? pod === w.name : pod.startsWith(`${w.name}-`) && /^\d+$/.test(pod.slice(w.name.length + 1))
}

/** The largest request body accepted, as the Kubernetes API server's limit. */
export const MAX_OBJECT_BYTES = 3 * 1024 * 1024

/** A JSON (or YAML) request body: 413 past MAX_OBJECT_BYTES, 400 when it does not parse. */
async function readObject (req: IncomingMessage, patch?: PatchType): Promise<unknown> {
  const raw = await readBody(req, MAX_OBJECT_BYTES)
  if (raw.length === 0) throw badRequest('the request body is empty; expected a JSON object')
  const type = req.headers['content-type'] ?? ''
  // kubectl's typed clients send protobuf (and CBOR) first; 415 makes them fall back to JSON.
  if (/protobuf|cbor/i.test(type)) throw new KubeStatusError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format (${type}) - accepted media types include: application/json, application/yaml`)
  const text = raw.toString('utf8')
  const yaml = patch == null && /yaml/.test(req.headers['content-type'] ?? '')
  try {
    return yaml ? parseYamlObject(text) : JSON.parse(text)
  } catch (err) {
    if (err instanceof KubeStatusError) throw err
    throw badRequest(`the request body is not valid ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message.split('\n')[0] ?? ''}`)
  }
}

/** A YAML body, refused (400) when it has aliases (`*name`): no object needs them, and they make alias bombs. */
function parseYamlObject (text: string): unknown {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true })
  const e = doc.errors[0]
  if (e != null) throw e
  if (firstAlias(doc) != null) throw badRequest('the request body is not accepted: YAML aliases (*name) are not allowed; write the values out')
  return doc.toJS()
}

/** An update naming a resourceVersion must name the current one (optimistic concurrency). */
function checkVersion (body: unknown, current: KubeObject, t: Target): void {
  const rv = (body as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion
  if (rv == null || rv === '' || rv === current.metadata.resourceVersion) return
  throw conflict(t.resource.name, t.name ?? '', 'the object has been modified; please apply your changes to the latest version and try again', t.group)
}

function send (res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** The resourceVersion of an object: a number derived from what it says (without its metadata's version). */
export function contentVersion (o: KubeObject): string {
  const { resourceVersion: _rv, ...metadata } = o.metadata
  const digest = createHash('sha256').update(JSON.stringify({ ...o, metadata })).digest()
  return String(digest.readUInt32BE(0) * 1024 + (digest.readUInt16BE(4) & 1023) + 1)
}

function withVersion (o: KubeObject): KubeObject {
  return { ...o, metadata: { ...o.metadata, resourceVersion: contentVersion(o) } }
}

/** A list's resourceVersion: changes whenever any item does. */
function listVersion (items: readonly KubeObject[]): string {
  const digest = createHash('sha256').update(items.map(o => `${o.metadata.namespace ?? ''}/${o.metadata.name}@${o.metadata.resourceVersion ?? ''}`).join(',')).digest()
  return String(digest.readUInt32BE(0) + 1)
}

