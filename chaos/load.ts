/**
 * Steady load while faults happen, and the ownership sampler:
 * - senders post `inc` events with unique idempotency ids through random live
 *   nodes' APIs, retrying each (same id, another node) until it is
 *   acknowledged, and record every acknowledgement;
 * - a publisher publishes numbered events on the queue group's topic;
 * - a sampler asks every live node every 250 ms which replicas it runs itself.
 */
import type { Ack } from '../src/protocol/state.js'
import type { WorkloadStatus } from '../src/workloads/views.js'
import type { AckRecord, OwnershipSample, PublishedRecord } from './checks.js'
import type { ChaosNode } from './mesh.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

export interface LoadInit {
  /** Live nodes to send through. */
  nodes: () => ChaosNode[]
  random: () => number
}

/** Sends one event until acknowledged (or `deadline`), through a random live node per attempt. */
async function sendUntilAcked (init: LoadInit, workload: string, id: string, deadline: number, errors: Map<string, number>): Promise<AckRecord | undefined> {
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const live = init.nodes()
    if (live.length === 0) { await sleep(200); continue }
    const node = live[Math.floor(init.random() * live.length)]!
    const attemptAt = Date.now()
    try {
      const ack = await node.proc!.api.request<Ack>(`/v1/workloads/default/${workload}/events`, { method: 'POST', body: { event: { type: 'inc' }, id, timeoutMs: 5_000 }, timeoutMs: 8_000 })
      return { workload, id, seq: ack.seq, epoch: ack.epoch, owner: ack.owner, duplicate: ack.duplicate === true, attemptAt, ackAt: Date.now() }
    } catch (err) {
      const key = String((err as Error).message ?? err).replace(/[0-9a-zA-Z]{40,}/g, '…').slice(0, 90)
      errors.set(key, (errors.get(key) ?? 0) + 1)
      await sleep(Math.min(1_000, 100 * 2 ** Math.min(attempt, 4)))
    }
  }
  return undefined
}

export class Senders {
  readonly acks: AckRecord[] = []
  readonly errors = new Map<string, number>()
  /** Ids sent but not acknowledged by their deadline (retried again at the end). */
  readonly unresolved: Array<{ workload: string, id: string }> = []
  private stopping = false
  private loops: Array<Promise<void>> = []

  constructor (private readonly init: LoadInit, private readonly opts: { workloads: string[], perWorkload: number, intervalMs: number, retryForMs: number }) {}

  start (): void {
    for (const w of this.opts.workloads) {
      for (let s = 0; s < this.opts.perWorkload; s++) this.loops.push(this.loop(w, s))
    }
  }

  private async loop (workload: string, sender: number): Promise<void> {
    for (let k = 0; !this.stopping; k++) {
      const id = `${workload}-s${sender}-${k}`
      const ack = await sendUntilAcked(this.init, workload, id, Date.now() + this.opts.retryForMs, this.errors)
      if (ack != null) this.acks.push(ack)
      else this.unresolved.push({ workload, id })
      await sleep(this.opts.intervalMs)
    }
  }

  /** Stops starting new events; resolves once each sender's event in flight is acknowledged or given up. */
  async stop (): Promise<void> {
    this.stopping = true
    await Promise.all(this.loops)
  }

  /** Retries every unresolved id (same id) until acknowledged or `deadline`. */
  async resolve (deadline: number): Promise<void> {
    const left = this.unresolved.splice(0)
    await Promise.all(left.map(async u => {
      const ack = await sendUntilAcked(this.init, u.workload, u.id, deadline, this.errors)
      if (ack != null) this.acks.push(ack)
      else this.unresolved.push(u)
    }))
  }
}

export class Publisher {
  readonly published: PublishedRecord[] = []
  private stopping = false
  private running: Promise<void> | undefined

  constructor (private readonly init: LoadInit, private readonly opts: { topic: string, intervalMs: number }) {}

  start (): void {
    this.running = (async () => {
      for (let n = 0; !this.stopping; n++) {
        const live = this.init.nodes()
        const node = live[Math.floor(this.init.random() * live.length)]
        const at = Date.now()
        if (node == null) { this.published.push({ n, at, error: 'no live node' }); await sleep(this.opts.intervalMs); continue }
        try {
          const out = await node.proc!.api.request<{ id: string, recipients: string[], localReplicas: number }>(`/v1/topics/${encodeURIComponent(this.opts.topic)}/messages`, { method: 'POST', body: { data: { n } }, timeoutMs: 5_000 })
          this.published.push({ n, id: out.id, at, recipients: out.recipients.length + out.localReplicas })
        } catch (err) {
          // Not retried: a publish that errors may or may not have gone out, and a retry would be a new event id.
          this.published.push({ n, at, error: String((err as Error).message ?? err).slice(0, 120) })
        }
        await sleep(this.opts.intervalMs)
      }
    })()
  }

  async stop (): Promise<void> {
    this.stopping = true
    await this.running
  }
}

/** What every live node reports about itself, every `intervalMs`. */
export class OwnershipSampler {
  readonly samples: OwnershipSample[] = []
  rounds = 0
  private stopping = false
  private running: Promise<void> | undefined

  constructor (private readonly init: LoadInit, private readonly opts: { intervalMs: number, workloads: string[] }) {}

  start (): void {
    this.running = (async () => {
      while (!this.stopping) {
        const t0 = Date.now()
        await this.sampleOnce()
        await sleep(Math.max(0, this.opts.intervalMs - (Date.now() - t0)))
      }
    })()
  }

  /** One round: each live node's own running replicas of the watched workloads. */
  async sampleOnce (): Promise<WorkloadStatus[][]> {
    const round = this.rounds++
    const live = this.init.nodes()
    return await Promise.all(live.map(async node => {
      try {
        const list = await node.proc!.api.request<WorkloadStatus[]>('/v1/workloads', { timeoutMs: 2_000 })
        const at = Date.now()
        for (const w of list) {
          if (!this.opts.workloads.includes(w.name)) continue
          for (const p of w.placement) {
            if (p.peerId === node.peerId) this.samples.push({ round, at, workload: w.name, replica: p.replica, peerId: p.peerId, epoch: p.epoch, status: p.status })
          }
        }
        return list
      } catch {
        return []
      }
    }))
  }

  async stop (): Promise<void> {
    this.stopping = true
    await this.running
  }
}
