/**
 * This node's copies across its hosts (src/node/local-copies.ts), wired to a
 * real record catalog as the runtime wires them, with in-memory hosts: what
 * the catalog's events stop (a deleted workload everywhere, scaled-down
 * ordinals, an older generation once a newer one runs), and fencing.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { ReplicaReport } from '../../src/protocol/messages.js'
import { LocalCopies, type LocalContainer, type LocalContainers, type LocalMachine, type LocalMachines, type LocalReplicas } from '../../src/node/local-copies.js'
import * as lifecycle from '../../src/scheduling/record-lifecycle.js'
import type { LocalReplica } from '../../src/stateless/replica-host.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { Resources, WorkloadSpec } from '../../src/workloads/types.js'
import { A, SELF, catalog, record, spec } from '../scheduling/fakes.js'

const none = (): Resources => ({ cpuMillis: 0, memoryBytes: 0 })

class Replicas implements LocalReplicas {
  readonly running: LocalReplica[] = []
  readonly stopped: string[] = []
  list (): LocalReplica[] { return this.running }
  of (id: string): LocalReplica[] { return this.running.filter(r => r.workloadId === id) }
  get (id: string, replica: number): LocalReplica | undefined { return this.of(id).find(r => r.replica === replica) }
  reports (): ReplicaReport[] { return [] }
  allocated (): Resources { return none() }
  async start (): Promise<void> {}
  /** Stops synchronously (a real host forgets the replica at once too). */
  async stop (id: string, replica?: number): Promise<void> {
    this.stopped.push(replica == null ? id : `${id}#${replica}`)
    this.running.splice(0, this.running.length, ...this.running.filter(r => r.workloadId !== id || (replica != null && r.replica !== replica)))
  }

  add (s: WorkloadSpec, replica: number, epoch = 1): void {
    this.running.push({ workloadId: s.id, spec: s, replica, epoch, status: 'running', handled: 0, failures: 0, startedAt: 0, backlog: [] })
  }
}

class Containers implements LocalContainers {
  readonly available = true
  readonly pods: LocalContainer[] = []
  readonly stopped: string[] = []
  of (id: string): LocalContainer[] { return this.pods.filter(p => p.workloadId === id) }
  get (id: string, replica: number): LocalContainer | undefined { return this.of(id).find(p => p.replica === replica) }
  reports (id?: string): ReplicaReport[] { return (id != null ? this.of(id) : this.pods).map(p => ({ workloadId: p.workloadId, replica: p.replica, epoch: p.epoch, status: 'running', handled: 0, failures: 0 })) }
  allocated (): Resources { return none() }
  isSorting (): boolean { return false }
  async start (): Promise<void> {}
  async stop (id: string, replica?: number): Promise<void> {
    this.stopped.push(replica == null ? id : `${id}#${replica}`)
    this.pods.splice(0, this.pods.length, ...this.pods.filter(p => p.workloadId !== id || (replica != null && p.replica !== replica)))
  }
}

class Machines implements LocalMachines {
  readonly owned = new Map<string, LocalMachine>()
  readonly stopped: string[] = []
  get (id: string): LocalMachine | undefined { return this.owned.get(id) }
  list (): LocalMachine[] { return [...this.owned.values()] }
  reports (): ReplicaReport[] { return [] }
  async start (): Promise<void> {}
  async stop (id: string, { erase = false }: { erase?: boolean } = {}): Promise<void> { this.stopped.push(`${id}${erase ? ' (erased)' : ''}`) }
}

function harness () {
  const { catalog: c } = catalog()
  const host = new Replicas()
  const containers = new Containers()
  const machines = new Machines()
  const forgotten: string[] = []
  const local = new LocalCopies({ selfId: SELF, host, containers, machines, view: { forgetWorkload: id => { forgotten.push(id) } }, log: silentLogger, artifacts: { ensure: async () => '/dev/null' } })
  c.on(e => { local.onCatalogEvent(e) })
  return { catalog: c, local, host, containers, machines, forgotten }
}

test('a Deleted record stops every local copy of the workload, and the view forgets it', () => {
  const h = harness()
  const s = spec()
  h.host.add(s, 0)
  h.catalog.merge(record(s))
  h.catalog.merge(lifecycle.deleted(record(s), { now: 2, by: A }))
  assert.equal(h.host.stopped, ['default/web'])
  assert.equal(h.containers.stopped, ['default/web'])
  assert.equal(h.forgotten, ['default/web'])
  assert.equal(h.machines.stopped, [], 'a stateless workload has no machine state to erase')
})

test('a Completed stateful workload stops its machine here and erases its state', () => {
  const h = harness()
  const s = spec({ name: 'light', kind: 'stateful', topics: [], replicas: 1 })
  h.machines.owned.set(s.id, { spec: s, epoch: 1, status: 'running' })
  h.catalog.merge(lifecycle.completed(record(s), 1, 'done', { now: 2, by: A }))
  assert.equal(h.machines.stopped, ['default/light (erased)'])
})

test('scaled down: ordinals at or above the count stop; a newer generation, once Running, replaces the older one', () => {
  const h = harness()
  const s = spec({ replicas: 3 })
  for (const i of [0, 1, 2]) h.host.add(s, i)
  h.containers.pods.push({ workloadId: s.id, spec: s, replica: 2, epoch: 1 })
  h.catalog.merge(record(s))
  h.catalog.merge(record(spec({ replicas: 2 }), { epoch: 2 }))
  assert.equal(h.host.stopped, ['default/web#2'])
  assert.equal(h.containers.stopped, ['default/web#2'])
  const next = spec({ replicas: 2, artifact: { sha256: 'c'.repeat(64), size: 1 } })
  h.catalog.merge(record(next, { epoch: 3, status: 'Pending' }))
  assert.equal(h.host.stopped, ['default/web#2'], 'the old generation keeps running while the new one is placed')
  h.catalog.merge(record(next, { epoch: 3, updatedAt: 5 }))
  assert.equal(h.host.stopped, ['default/web#2', 'default/web#0', 'default/web#1'])
})

test('fencing: a copy superseded by a newer epoch elsewhere stops; an older one elsewhere does not matter', () => {
  const h = harness()
  const s = spec()
  h.host.add(s, 0, 2)
  h.local.fence(s.id, 0, 1, A)
  assert.equal(h.host.stopped, [])
  h.local.fence(s.id, 0, 3, A)
  assert.equal(h.host.stopped, ['default/web#0'])
  const m = spec({ name: 'light', kind: 'stateful', topics: [], replicas: 1 })
  h.machines.owned.set(m.id, { spec: m, epoch: 2, status: 'running' })
  h.local.fence(m.id, 0, 3, A)
  assert.equal(h.machines.stopped, ['default/light (erased)'])
})

test('copies: one list across hosts, a machine as replica 0; hosted leaves machines out', () => {
  const h = harness()
  const s = spec()
  const m = spec({ name: 'light', kind: 'stateful', topics: [], replicas: 1 })
  h.host.add(s, 0)
  h.containers.pods.push({ workloadId: s.id, spec: s, replica: 1, epoch: 1 })
  h.machines.owned.set(m.id, { spec: m, epoch: 4, status: 'starting' })
  assert.equal(h.local.copies(s.id).map(c => `${c.kind}#${c.replica}`), ['replica#0', 'container#1'])
  assert.equal(h.local.copies(m.id).map(c => `${c.kind}#${c.replica}@${c.epoch}:${c.status}`), ['machine#0@4:starting'])
  assert.equal(h.local.hosted(), [s.id])
  assert.equal(h.local.capabilities(), ['container', 'code'])
})

test.run()
