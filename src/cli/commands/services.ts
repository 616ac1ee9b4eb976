import { InvalidArgumentError } from '../../errors.js'
import type { PublishedRecord, ServiceSpec } from '../../services/directory.js'
import { ApiClient } from '../api-client.js'
import { formatAge, printObject, printRows, type OutputFormat } from '../output.js'
import { workloadId, type WorkloadCliOptions } from './workloads.js'

/** What the API says of a service (GET /v1/services[/<ns>/<name>]). */
interface ServiceView {
  service: ServiceSpec
  address?: string
  replicas: Array<{ workloadId: string, replica: number, peerId: string, ready: boolean, status: string }>
  records: PublishedRecord[]
}

function short (peerId: string): string {
  return peerId.length > 16 ? `…${peerId.slice(-8)}` : peerId
}

function ports (s: ServiceSpec): string {
  return s.ports.length === 0 ? '<call>' : s.ports.map(p => `${p.port}${p.targetPort !== p.port ? `→${p.targetPort}` : ''}/TCP`).join(',')
}

function backs (s: ServiceSpec): string {
  if (s.workload != null) return s.workload
  return Object.entries(s.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(',')
}

/** `beemesh services [name]`: every service with its address and ready replicas; one service with its replicas and DHT records. */
export async function services (name: string | undefined, opts: WorkloadCliOptions): Promise<void> {
  const api = new ApiClient(opts.api)
  if (name == null) {
    const list = await api.request<ServiceView[]>('/v1/services')
    if (opts.output === 'json' || opts.output === 'yaml') { printRows(list, [], opts.output); return }
    printRows(list, [
      { header: 'NAMESPACE', value: v => v.service.namespace },
      { header: 'NAME', value: v => v.service.name },
      { header: 'ADDRESS', value: v => v.address ?? '-' },
      { header: 'PORTS', value: v => ports(v.service) },
      { header: 'READY', value: v => `${v.replicas.filter(r => r.ready).length}/${v.replicas.length}` },
      { header: 'SELECTS', value: v => backs(v.service) },
      { header: 'AGE', value: v => formatAge(Date.now() - v.service.createdAt) }
    ], 'table')
    return
  }
  const id = workloadId(name)
  const view = await api.request<ServiceView>(`/v1/services/${id}`, { timeoutMs: 20_000 })
  if (opts.output === 'json' || opts.output === 'yaml') { printObject(view as unknown as Record<string, unknown>, opts.output); return }
  printObject({
    Name: view.service.name,
    Namespace: view.service.namespace,
    Origin: view.service.origin === 'kube' ? 'Kubernetes Service' : `offered by workload ${view.service.workload ?? '?'}`,
    Selects: backs(view.service),
    Address: view.address ?? '-',
    Ports: ports(view.service),
    Replicas: view.replicas.length === 0 ? ['<none>'] : view.replicas.map(r => `${r.workloadId}#${r.replica} on ${short(r.peerId)}: ${r.ready ? 'ready' : `not ready (${r.status})`}`),
    Records: view.records.length === 0 ? ['<none in the DHT>'] : view.records.map(r => `${short(r.node)}: ${r.endpoints.map(e => `${e.workload}#${e.replica}`).join(', ')} (${r.protocol}, expires in ${Math.max(0, Math.round((r.expiresAt - Date.now()) / 1000))}s)`)
  }, 'table')
}

export interface CallCliOptions extends WorkloadCliOptions {
  timeout?: string
  idempotent?: boolean
  retries?: string
}

/** `beemesh call <service> [json]`: calls a service as the CLI's deployer and prints the reply. */
export async function call (name: string, json: string | undefined, opts: CallCliOptions): Promise<void> {
  const id = workloadId(name)
  let data: unknown = null
  if (json != null) {
    try {
      data = JSON.parse(json)
    } catch (err) {
      throw new InvalidArgumentError(`the request is not valid JSON (${err instanceof Error ? err.message : String(err)}); quote it like '{"sku":"a1"}'`)
    }
  }
  const timeoutMs = opts.timeout != null ? Number(opts.timeout) : 5_000
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) throw new InvalidArgumentError(`--timeout must be a whole number of milliseconds from 1 to 600000, got "${opts.timeout}"`)
  const retries = opts.retries != null ? Number(opts.retries) : undefined
  if (retries != null && (!Number.isInteger(retries) || retries < 0 || retries > 10)) throw new InvalidArgumentError(`--retries must be a whole number from 0 to 10, got "${opts.retries}"`)
  const reply = await new ApiClient(opts.api).request<{ value: unknown }>(`/v1/services/${id}/call`, {
    method: 'POST',
    body: { data, timeoutMs, ...(opts.idempotent === true ? { idempotent: true } : {}), ...(retries != null ? { retries } : {}) },
    timeoutMs: timeoutMs + 5_000
  })
  if (opts.output === 'yaml') { printObject({ value: reply.value }, 'yaml'); return }
  process.stdout.write(`${JSON.stringify(reply.value, null, opts.output === 'json' ? 2 : undefined)}\n`)
}

export type { OutputFormat }
