/**
 * In-memory neighbours for the scheduling planes' unit tests: a clock the
 * test moves, a mesh that records what was gossiped and put, a mesh view with
 * the live peers and remote copies the test sets, and this node's copies.
 * Nothing here spawns a process or opens a socket.
 */
import type { SchedulerMessage } from '../../src/protocol/messages.js'
import { RecordCatalog, type CatalogMesh } from '../../src/scheduling/catalog.js'
import type { GuardianView } from '../../src/scheduling/guardian.js'
import type { LocalCopy, RemoteCopy } from '../../src/scheduling/status.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { WorkloadRecord } from '../../src/workloads/records.js'
import type { WorkloadSpec } from '../../src/workloads/types.js'

/** Peer ids, sorted as written. */
export const SELF = '12D3KooWSelfSelfSelfSelf'
export const A = '12D3KooWAaaaAaaaAaaaAaaa'
export const B = '12D3KooWBbbbBbbbBbbbBbbb'
export const C = '12D3KooWCcccCcccCcccCccc'

export class Clock {
  constructor (public t = 1_000_000) {}
  readonly now = (): number => this.t
  advance (ms: number): void { this.t += ms }
}

export function spec (overrides: Partial<WorkloadSpec> = {}): WorkloadSpec {
  const name = overrides.name ?? 'web'
  const namespace = overrides.namespace ?? 'default'
  return {
    id: `${namespace}/${name}`,
    name,
    namespace,
    kind: 'stateless',
    topics: ['orders'],
    replicas: 2,
    resources: { cpuMillis: 100, memoryBytes: 64 * 1024 * 1024 },
    nodeSelector: {},
    delivery: 'queue',
    retries: 0,
    timeoutMs: 1_000,
    memoryLimitMb: 64,
    source: 'test',
    createdAt: 1,
    artifact: { sha256: 'a'.repeat(64), size: 10 },
    ...overrides
  }
}

export function record (s: WorkloadSpec, overrides: Partial<WorkloadRecord> = {}): WorkloadRecord {
  return { spec: s, epoch: 1, status: 'Running', placement: [], events: [], updatedAt: 1, updatedBy: A, ...overrides }
}

/** The mesh as the catalog sees it: gossip and DHT records kept in memory. */
export class FakeCatalogMesh implements CatalogMesh {
  readonly gossiped: SchedulerMessage[] = []
  readonly dht = new Map<string, Uint8Array>()
  readonly gets: string[] = []
  gossip = async (m: SchedulerMessage): Promise<void> => { this.gossiped.push(m) }
  putRecord = async (key: string, value: Uint8Array): Promise<void> => { this.dht.set(key, value) }
  getRecord = async (key: string): Promise<{ value: Uint8Array }> => {
    this.gets.push(key)
    const value = this.dht.get(key)
    if (value == null) throw new Error(`no record under ${key}`)
    return { value }
  }
}

export function catalog (clock = new Clock()): { catalog: RecordCatalog, mesh: FakeCatalogMesh, clock: Clock } {
  const mesh = new FakeCatalogMesh()
  return { catalog: new RecordCatalog({ mesh, log: silentLogger, now: clock.now }), mesh, clock }
}

/** A mesh view the test fills: who is live, which copies peers report, which connections dropped. */
export class FakeView implements GuardianView {
  /** Live nodes, this one included (as MeshView.livePeerIds). */
  live = new Set<string>([SELF])
  /** Every copy peers ever reported, live or not. */
  remote = new Map<string, RemoteCopy[]>()
  disconnected = new Set<string>()
  livePeerIds (): string[] { return [...this.live].sort() }
  isLive (peerId: string): boolean { return this.live.has(peerId) }
  /** As MeshView: only the copies of live peers. */
  remoteReplicas (workloadId: string): RemoteCopy[] { return (this.remote.get(workloadId) ?? []).filter(r => this.isLive(r.peerId)) }
  /** As MeshView: where a replica was last heard, live or not. */
  lastHost (workloadId: string, replica: number): { peerId: string, epoch: number } | undefined {
    return (this.remote.get(workloadId) ?? []).filter(r => r.replica === replica).sort((a, b) => b.epoch - a.epoch)[0]
  }

  hasDisconnected (peerId: string): boolean { return this.disconnected.has(peerId) }
  lossReason (): string { return 'stopped heartbeating' }
}

export function copy (s: WorkloadSpec, replica: number, epoch = 1, overrides: Partial<LocalCopy> = {}): LocalCopy {
  return { kind: 'replica', spec: s, replica, epoch, status: 'running', handled: 0, failures: 0, ...overrides }
}

export function remote (peerId: string, replica: number, epoch = 1, status: RemoteCopy['status'] = 'running'): RemoteCopy {
  return { peerId, replica, epoch, status, handled: 0, failures: 0 }
}

/** Resolves once `check` holds, polling every few milliseconds; fails after `timeoutMs`. */
export async function until (check: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 2))
  }
}
