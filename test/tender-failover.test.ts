/**
 * No centre even during placement: when the node running a tender stops
 * answering mid-way (frozen with SIGSTOP), the workload's guardian takes the
 * Pending workload over, and it ends up running on the other nodes.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { WorkloadDescription } from '../src/workloads/views.js'
import { cli, startMesh, waitUntil, type NodeProcess } from './helpers/processes.js'

let nodes: NodeProcess[] = []

test.before(async () => {
  nodes = await startMesh(4)
})

test.after(async () => {
  for (const n of nodes) n.child.kill('SIGCONT')
  await Promise.all(nodes.map(async n => await n.kill('SIGKILL')))
})

test('a tenderer frozen mid-tender: the Pending workload is taken over and runs without it', async () => {
  const tenderer = nodes[3]!
  // The replicas take 1.5 s to load, so the tender is still waiting for their confirmations when the tenderer freezes.
  const r = await cli(['apply', 'test/fixtures/workloads/slow-start.ts', '--no-wait', '--api', tenderer.apiUrl], { timeoutMs: 60_000 })
  assert.is(r.code, 0, r.stderr)
  tenderer.child.kill('SIGSTOP')
  const observer = nodes[0]!
  const pending = await waitUntil(async () => {
    try {
      return await observer.api.request<WorkloadDescription>('/v1/workloads/default/slow-start')
    } catch {
      return undefined
    }
  }, { what: 'the Pending record to reach the other nodes' })
  assert.is(pending.status, 'Pending')

  const running = await waitUntil(async () => {
    const d = await observer.api.request<WorkloadDescription>('/v1/workloads/default/slow-start')
    return d.status === 'Running' && d.ready === 2 && !d.placement.some(p => p.peerId === tenderer.peerId) ? d : undefined
  }, { timeoutMs: 25_000, intervalMs: 250, what: 'slow-start running on 2 nodes other than the frozen tenderer' })
  assert.is(new Set(running.placement.map(p => p.peerId)).size, 2)
  assert.ok(running.events.some(e => e.reason === 'Adopted' || e.reason === 'Rescheduled'), `a guardian took over: ${running.events.map(e => e.reason).join(', ')}`)

  // And it works: an event is handled by one of its replicas.
  await observer.api.request('/v1/topics/slow/messages', { method: 'POST', body: { data: { n: 1 } } })
  await waitUntil(async () => (await observer.api.request<Array<{ message: string }>>('/v1/workloads/default/slow-start/logs')).some(l => l.message === 'handled 1'), { what: 'the event to be handled' })
})

test.run()
