/**
 * A discrete-event simulation: a virtual clock, an event queue, a seeded
 * random source and a network that delivers messages after a latency drawn
 * from a profile, loses some, and counts them all. The decision code runs on
 * it unchanged: it is handed `now` and a Clock (XState's interface: the
 * scheduler machine's windows and timeouts), never the real timers.
 *
 * Time advances only between events. After each event the microtask queue is
 * drained (XState's promise actors resolve there), so an event and all the
 * synchronous and promise work it starts happen at one virtual instant.
 */
import { setImmediate as nextMacrotask } from 'node:timers/promises'
import { seededRandom } from '../src/random.js'
import type { MachineClock } from '../src/clock.js'

interface Scheduled { at: number, seq: number, fn: () => void }

/** A binary min-heap of events by (time, sequence): same-time events run in the order they were scheduled. */
class EventQueue {
  private readonly heap: Scheduled[] = []

  get size (): number { return this.heap.length }

  push (e: Scheduled): void {
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(h[i]!, h[parent]!)) break
      ;[h[i], h[parent]] = [h[parent]!, h[i]!]
      i = parent
    }
  }

  pop (): Scheduled | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (top == null || last == null || h.length === 0) return top
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && before(h[l]!, h[m]!)) m = l
      if (r < h.length && before(h[r]!, h[m]!)) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m]!, h[i]!]
      i = m
    }
    return top
  }
}

function before (a: Scheduled, b: Scheduled): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

export class Simulation implements MachineClock {
  /** Virtual milliseconds since the start. */
  now = 0
  readonly random: () => number
  private readonly queue = new EventQueue()
  private readonly cancelled = new Set<number>()
  private seq = 0
  /** Events run so far. */
  events = 0

  /**
   * `promises: false` for code that does all its work synchronously (the
   * membership plane): no macrotask turn after each event, which is most of
   * the wall time of a large run.
   */
  constructor (seed: number, private readonly o: { promises?: boolean } = {}) {
    this.random = seededRandom(seed)
  }

  /** Runs `fn` `ms` from now; the id cancels it. */
  setTimeout (fn: () => void, ms: number): number {
    const id = ++this.seq
    this.queue.push({ at: this.now + Math.max(0, ms), seq: id, fn: () => { if (!this.cancelled.delete(id)) fn() } })
    return id
  }

  clearTimeout (id: unknown): void {
    if (typeof id === 'number') this.cancelled.add(id)
  }

  /** Runs events until none are left or virtual time passes `until`. */
  async run (until = Infinity): Promise<void> {
    for (;;) {
      const e = this.queue.pop()
      if (e == null) return
      if (e.at > until) {
        this.queue.push(e)
        this.now = until
        return
      }
      this.now = e.at
      e.fn()
      this.events++
      // Promise work the event started runs at this instant too (and a synchronous run still yields now and then).
      if (this.o.promises !== false || this.events % 100_000 === 0) await nextMacrotask()
    }
  }

  /** A sample from a log-normal distribution with the given median and p99 (both > 0). */
  logNormal (median: number, p99: number): number {
    const sigma = Math.log(p99 / median) / 2.326
    return median * Math.exp(sigma * this.gaussian())
  }

  private gaussian (): number {
    const u = Math.max(this.random(), Number.EPSILON)
    const v = this.random()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
  }
}

/** One-way latency between two nodes, and how often a message is lost. */
export interface NetworkProfile {
  name: string
  /** Median and p99 one-way latency of a message on an open connection, in ms. */
  medianMs: number
  p99Ms: number
  /** The share of messages lost (a retransmitted TCP segment shows up as latency, so this is what a dropped connection or an overloaded peer loses). */
  loss: number
}

export const PROFILES: Record<string, NetworkProfile> = {
  loopback: { name: 'loopback', medianMs: 0.2, p99Ms: 2, loss: 0 },
  lan: { name: 'lan', medianMs: 0.5, p99Ms: 5, loss: 0.0001 },
  // The public IPFS DHT: a walk of 4–5 hops has a median of ~600 ms, so ~130 ms a hop.
  wan: { name: 'wan', medianMs: 130, p99Ms: 900, loss: 0.001 }
}

/** Counts of messages sent, by kind. */
export class MessageCounter {
  readonly byKind = new Map<string, number>()
  total = 0

  count (kind: string, n = 1): void {
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + n)
    this.total += n
  }

  snapshot (): { total: number, byKind: Record<string, number> } {
    return { total: this.total, byKind: Object.fromEntries([...this.byKind].sort()) }
  }
}

/**
 * Delivers messages between simulated nodes after a profile's latency. A
 * message to or from a node that is down (or across a partition) is lost, as
 * is a `loss` share of the rest; `deliver` runs at the receiver's arrival
 * time. Every message sent is counted by kind, delivered or not.
 */
export class SimNetwork {
  readonly sent = new MessageCounter()
  private readonly down = new Set<string>()
  /** Nodes cut off from the rest, by group: messages between groups are lost (a node in no group is in the main one). */
  private readonly group = new Map<string, number>()
  private groups = 0

  constructor (private readonly sim: Simulation, private readonly profile: NetworkProfile) {}

  latency (): number {
    return this.sim.logNormal(this.profile.medianMs, this.profile.p99Ms)
  }

  isUp (node: string): boolean {
    return !this.down.has(node)
  }

  kill (node: string): void { this.down.add(node) }
  revive (node: string): void { this.down.delete(node) }
  /** Cuts `side` off from everyone else (a group of its own); returns the group. */
  partition (side: Iterable<string>): number {
    const g = ++this.groups
    for (const n of side) this.group.set(n, g)
    return g
  }

  /** Heals the cut around `side` (or every cut): its nodes rejoin the main group. */
  heal (side?: Iterable<string>): void {
    if (side == null) this.group.clear()
    else for (const n of side) this.group.delete(n)
  }

  /** Whether `a` and `b` can talk now: both up and on the same side. */
  reachable (a: string, b: string): boolean {
    return this.isUp(a) && this.isUp(b) && (this.group.get(a) ?? 0) === (this.group.get(b) ?? 0)
  }

  /** Sends one message; `deliver` runs on arrival unless it is lost. Returns false when it will not arrive. */
  send (kind: string, from: string, to: string, deliver: () => void): boolean {
    this.sent.count(kind)
    if (!this.reachable(from, to) || this.sim.random() < this.profile.loss) return false
    this.sim.setTimeout(() => { if (this.reachable(from, to)) deliver() }, this.latency())
    return true
  }
}
