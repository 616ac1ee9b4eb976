/**
 * Failure detection whose cost per node does not grow with the mesh: SWIM
 * (Das, Gupta, Motivala, DSN 2002) over a bounded partial view, with
 * Lifeguard's refutation by incarnation.
 *
 * Every period a node probes one member of its view (a shuffled round):
 * a ping, answered by an ack. No ack within the probe timeout: it asks a few
 * other members to probe the target for it (ping-req). Still nothing by the
 * end of the period: the target is suspect, and is told so directly; a
 * suspect that is alive refutes with a higher incarnation, one that stays
 * silent is dead after the suspicion timeout. A refused probe (the target's
 * host answers but nothing listens: the process is gone) is proof, and a
 * dropped connection triggers a probe at once, so a killed node is known in
 * about one round trip and a silent one within a few periods, at any size.
 *
 * The view is partial: at most `viewSize` members, kept mixed by the probes
 * themselves (every ping and ack carries its sender and a small sample of
 * its view, and a full view makes room at random), so every node is in about
 * `viewSize` views and is probed about once a period. Membership changes
 * ride on the probes too (infection-style, each a bounded number of times),
 * and so does `offer`: what the sender can host, kept per member with when it
 * was heard, so a node knows the capacity of its view without another
 * message. Messages per node per period are constant (a ping and an ack each
 * way, ping-reqs only on a missed ack); nothing is sent to the whole mesh.
 *
 * Pure decision code: the transport (`send`, and `refused`/`linkDown` calls
 * back in), time and randomness are inputs, so the node and the simulation
 * (sim/membership.ts) run this same class.
 */
import type { MachineClock } from '../clock.js'

export type MemberState = 'alive' | 'suspect' | 'dead'

/** A membership change, piggybacked on probes: `incarnation` orders what is said of one member. */
export interface SwimUpdate { id: string, state: MemberState, incarnation: number }
/** A member as a sample of a view carries it. */
export interface SwimEntry { id: string, incarnation: number }

/** `joining`: the sender's view is less than half full, so a receiver makes room for it. */
interface Piggyback { updates: SwimUpdate[], sample: SwimEntry[], incarnation: number, joining?: true }

export type SwimMessage<O> =
  | ({ type: 'ping', seq: number, offer?: O } & Piggyback)
  | ({ type: 'ack', seq: number, offer?: O } & Piggyback)
  /** Probe `target` for me: answer with an indirect-ack (or indirect-refused) carrying `seq`. */
  | ({ type: 'ping-req', seq: number, target: string } & Piggyback)
  | ({ type: 'indirect-ack', seq: number, target: string, targetIncarnation: number } & Piggyback)
  | ({ type: 'indirect-refused', seq: number, target: string } & Piggyback)

export interface SwimOptions {
  /** One probe per period. */
  periodMs: number
  /** A direct ping unanswered this long goes indirect. */
  probeTimeoutMs: number
  /** Members asked to probe for a node whose direct ping went unanswered. */
  indirectProbes: number
  /** A suspect that does not refute within this long is dead. */
  suspicionMs: number
  /** The most members a node keeps in its view. */
  viewSize: number
  /** View entries carried by each ping and ack. */
  sampleSize: number
  /** With a full view, the chance that a member heard of in a sample takes a random member's place (mixing, against staying put). */
  sampleAdmitProbability: number
  /** The same for the sender of a message (every node is in about viewSize views, and so probed about once a period). */
  senderAdmitProbability: number
  /** Updates carried by each message. */
  updatesPerMessage: number
  /** Each update is sent this many times × log2(viewSize + 1). */
  retransmitMultiplier: number
  /** A dead member is not taken back into the view below a higher incarnation for this long. */
  tombstoneMs: number
  /** An offer heard longer ago than this is not reported by offers(). */
  offerTtlMs: number
  /** Each period, with this chance, a node also pings one member it holds dead (a healed partition rejoins). */
  reviveProbability: number
}

export const SWIM_DEFAULTS: SwimOptions = {
  periodMs: 500,
  probeTimeoutMs: 200,
  indirectProbes: 3,
  suspicionMs: 1_000,
  viewSize: 24,
  sampleSize: 3,
  sampleAdmitProbability: 0.1,
  senderAdmitProbability: 0.25,
  updatesPerMessage: 6,
  retransmitMultiplier: 3,
  tombstoneMs: 60_000,
  offerTtlMs: 30_000,
  reviveProbability: 0.1
}

/**
 * Lifeguard's local health: a node whose own timers run late (its event loop
 * is starved, so acks sit unread) or that was suspected itself stretches its
 * probe timeout, indirect window and suspicion by (1 + health), up to this;
 * each on-time period takes one off.
 */
export const MAX_HEALTH = 8

/** Why a member of the view was found dead: a refused probe (here or by a helper), or a suspicion that ran out. */
export type DeathCause = 'refused' | 'timeout'

export interface SwimInit<O> {
  selfId: string
  /** Sends a message; the transport calls `refused(to)` when the peer's host refused it. */
  send: (to: string, message: SwimMessage<O>) => void
  clock: MachineClock
  now: () => number
  random: () => number
  /** What this node offers, carried on its pings and acks. */
  offer?: () => O
  /** A member of this node's view was found dead, first-hand. */
  onDead?: (id: string, cause: DeathCause) => void
  /** A member joined this node's knowledge, or came back. */
  onAlive?: (id: string) => void
  /** This node was suspected (or declared dead) by another and refuted it. */
  onRefute?: () => void
  /** Whether a member heard of only in a sample may join the view (the node: only peers it is connected to). */
  admissible?: (id: string) => boolean
  options?: Partial<SwimOptions>
}

interface Member<O> {
  incarnation: number
  state: 'alive' | 'suspect'
  suspectTimer?: unknown
  offer?: O
  offerAt: number
}

interface Probe {
  target: string
  timers: unknown[]
  /** Set on a relayed probe (ping-req): who asked, and their sequence number. */
  relayFor?: { requester: string, seq: number }
}

interface Queued { update: SwimUpdate, sent: number }

export class Swim<O = unknown> {
  readonly options: SwimOptions
  private readonly view = new Map<string, Member<O>>()
  private keysCache?: string[]
  private readonly dead = new Map<string, { incarnation: number, until: number }>()
  private readonly probes = new Map<number, Probe>()
  private readonly queue = new Map<string, Queued>()
  private order: string[] = []
  private incarnation: number
  private seq = 0
  private periodTimer: unknown
  private stopped = true
  /** Lifeguard's local health multiplier (see MAX_HEALTH). */
  private health = 0
  /** When the period timer should fire: how late it does is this node's own slowness. */
  private periodDueAt = 0
  private readonly retransmits: number

  constructor (private readonly init: SwimInit<O>) {
    this.options = { ...SWIM_DEFAULTS, ...init.options }
    // A restarted node outranks what was said of its previous life: its incarnation starts at its start time.
    this.incarnation = Math.floor(init.now())
    this.retransmits = Math.ceil(this.options.retransmitMultiplier * Math.log2(this.options.viewSize + 1))
  }

  get selfId (): string { return this.init.selfId }

  /** Starts probing; `contacts` (bootstrap peers) are pinged at once. The first period starts at a random phase. */
  start (contacts: string[] = []): void {
    if (!this.stopped) return
    this.stopped = false
    for (const id of contacts) if (id !== this.selfId) this.ping(id)
    const first = this.init.random() * this.options.periodMs
    this.periodDueAt = this.init.now() + first
    this.periodTimer = this.init.clock.setTimeout(() => { this.period() }, first)
  }

  stop (): void {
    this.stopped = true
    this.init.clock.clearTimeout(this.periodTimer)
    for (const p of this.probes.values()) for (const t of p.timers) this.init.clock.clearTimeout(t)
    this.probes.clear()
    for (const m of this.view.values()) this.init.clock.clearTimeout(m.suspectTimer)
  }

  /** Lifeguard's local health multiplier now: 0 on time, up to MAX_HEALTH when this node runs late. */
  get localHealth (): number { return this.health }

  /** Members in the view (alive or suspect). */
  members (): string[] { return [...this.view.keys()] }

  state (id: string): MemberState | undefined {
    if (this.view.has(id)) return this.view.get(id)!.state
    return this.dead.has(id) ? 'dead' : undefined
  }

  /** The offers of view members heard within offerTtlMs, with how old each is. */
  offers (): Array<{ id: string, offer: O, ageMs: number }> {
    const now = this.init.now()
    const out: Array<{ id: string, offer: O, ageMs: number }> = []
    for (const [id, m] of this.view) {
      if (m.offer != null && m.state === 'alive' && now - m.offerAt <= this.options.offerTtlMs) out.push({ id, offer: m.offer, ageMs: now - m.offerAt })
    }
    return out
  }

  /** Seeds the view (a peer's sample, or a simulation's mesh at rest); full views keep what they hold. */
  seed (ids: string[]): void {
    for (const id of ids) this.admit(id, 0, 0)
  }

  /** The transport's word that a message to `to` was refused: its process is gone. */
  refused (to: string): void {
    for (const [seq, p] of this.probes) {
      if (p.target !== to) continue
      this.endProbe(seq)
      if (p.relayFor != null) this.send(p.relayFor.requester, { type: 'indirect-refused', seq: p.relayFor.seq, target: to, ...this.piggyback(p.relayFor.requester) })
    }
    this.declareDead(to, this.view.get(to)?.incarnation ?? this.dead.get(to)?.incarnation ?? 0, 'refused')
  }

  /** A connection to `peer` dropped: probe it now rather than at its turn. */
  linkDown (peer: string): void {
    if (this.stopped || !this.view.has(peer)) return
    for (const p of this.probes.values()) if (p.target === peer && p.relayFor == null) return
    this.probe(peer)
  }

  receive (from: string, m: SwimMessage<O>): void {
    if (this.stopped || from === this.selfId) return
    this.heardFrom(from, m.incarnation, m.joining === true)
    for (const u of m.updates) this.apply(u)
    switch (m.type) {
      case 'ping':
        this.takeOffer(from, m.offer)
        this.mix(m.sample)
        this.send(from, { type: 'ack', seq: m.seq, ...this.withOffer(), ...this.piggyback(from) })
        return
      case 'ack': {
        this.takeOffer(from, m.offer)
        this.mix(m.sample)
        const p = this.probes.get(m.seq)
        if (p == null || p.target !== from) return
        this.endProbe(m.seq)
        if (p.relayFor != null) this.send(p.relayFor.requester, { type: 'indirect-ack', seq: p.relayFor.seq, target: from, targetIncarnation: m.incarnation, ...this.piggyback(p.relayFor.requester) })
        return
      }
      case 'ping-req': {
        const seq = ++this.seq
        const timer = this.init.clock.setTimeout(() => { this.endProbe(seq) }, this.options.periodMs)
        this.probes.set(seq, { target: m.target, timers: [timer], relayFor: { requester: from, seq: m.seq } })
        this.send(m.target, { type: 'ping', seq, ...this.withOffer(), ...this.piggyback(m.target) })
        return
      }
      case 'indirect-ack': {
        const p = this.probes.get(m.seq)
        if (p == null || p.target !== m.target) return
        this.endProbe(m.seq)
        this.heardFrom(m.target, m.targetIncarnation)
        return
      }
      case 'indirect-refused': {
        // Another member's word, not proof (a compromised member could say it of anyone): a suspicion, checked first-hand.
        const p = this.probes.get(m.seq)
        if (p == null || p.target !== m.target) return
        this.endProbe(m.seq)
        this.suspect(m.target)
      }
    }
  }

  private period (): void {
    if (this.stopped) return
    const now = this.init.now()
    // A period that fired late by more than half a probe timeout: this node is the slow one, so it waits longer on others.
    this.health = now - this.periodDueAt > this.options.probeTimeoutMs / 2 ? Math.min(MAX_HEALTH, this.health + 1) : Math.max(0, this.health - 1)
    this.periodDueAt = now + this.options.periodMs
    this.periodTimer = this.init.clock.setTimeout(() => { this.period() }, this.options.periodMs)
    for (const [id, t] of this.dead) if (t.until < now) this.dead.delete(id)
    // A healed partition: both sides hold the other dead, and only a probe across tells them otherwise.
    if (this.dead.size > 0 && this.init.random() < this.options.reviveProbability) {
      const ids = [...this.dead.keys()]
      this.ping(ids[Math.floor(this.init.random() * ids.length)]!)
    }
    const target = this.nextTarget()
    if (target != null) this.probe(target)
  }

  private nextTarget (): string | undefined {
    while (this.order.length > 0) {
      const id = this.order.pop()!
      if (this.view.has(id)) return id
    }
    this.order = [...this.view.keys()]
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = Math.floor(this.init.random() * (i + 1))
      ;[this.order[i], this.order[j]] = [this.order[j]!, this.order[i]!]
    }
    return this.order.pop()
  }

  /** A direct ping to a member; indirect after probeTimeoutMs; suspect at the end of the period. */
  private probe (target: string): void {
    const seq = this.ping(target, false)
    const p = this.probes.get(seq)!
    p.timers.push(this.init.clock.setTimeout(() => {
      if (!this.probes.has(seq)) return
      const helpers = this.pick(this.viewKeys().filter(id => id !== target), this.options.indirectProbes)
      for (const h of helpers) this.send(h, { type: 'ping-req', seq, target, ...this.piggyback(h) })
      p.timers = [this.init.clock.setTimeout(() => {
        if (!this.probes.has(seq)) return
        this.probes.delete(seq)
        this.suspect(target)
      }, (Math.max(this.options.periodMs, this.options.probeTimeoutMs * 2) - this.options.probeTimeoutMs) * (1 + this.health))]
    }, this.options.probeTimeoutMs * (1 + this.health)))
  }

  /** Pings `target`; a lone ping (a contact, a member held dead: `forget`) is dropped after two periods. */
  private ping (target: string, forget = true): number {
    const seq = ++this.seq
    const probe: Probe = { target, timers: [] }
    this.probes.set(seq, probe)
    this.send(target, { type: 'ping', seq, ...this.withOffer(), ...this.piggyback(target) })
    if (forget) probe.timers.push(this.init.clock.setTimeout(() => { this.probes.delete(seq) }, this.options.periodMs * 2))
    return seq
  }

  private endProbe (seq: number): void {
    const p = this.probes.get(seq)
    if (p == null) return
    for (const t of p.timers) this.init.clock.clearTimeout(t)
    this.probes.delete(seq)
  }

  private suspect (id: string): void {
    const m = this.view.get(id)
    if (m == null || m.state === 'suspect') return
    m.state = 'suspect'
    this.enqueue({ id, state: 'suspect', incarnation: m.incarnation })
    m.suspectTimer = this.init.clock.setTimeout(() => { this.declareDead(id, m.incarnation, 'timeout') }, this.options.suspicionMs * (1 + this.health))
    // Told directly, so a live member refutes at once.
    this.send(id, { type: 'ping', seq: ++this.seq, ...this.withOffer(), ...this.piggyback(id) })
  }

  private declareDead (id: string, incarnation: number, cause: DeathCause): void {
    if (id === this.selfId) return
    const m = this.view.get(id)
    if (m != null && m.incarnation > incarnation) return
    const known = this.dead.get(id)
    if (known != null && known.incarnation >= incarnation) return
    if (m != null) {
      this.init.clock.clearTimeout(m.suspectTimer)
      this.view.delete(id)
      this.keysCache = undefined
    }
    this.dead.set(id, { incarnation, until: this.init.now() + this.options.tombstoneMs })
    this.enqueue({ id, state: 'dead', incarnation })
    this.init.onDead?.(id, cause)
  }

  /** What another node said of a member. */
  private apply (u: SwimUpdate): void {
    if (u.id === this.selfId) {
      // Suspected or declared dead while alive: refute with a higher incarnation.
      if (u.state !== 'alive' && u.incarnation >= this.incarnation) {
        this.incarnation = u.incarnation + 1
        this.enqueue({ id: this.selfId, state: 'alive', incarnation: this.incarnation })
        // Suspected: this node may be the slow one (Lifeguard), and its other planes may want to say it is alive.
        this.health = Math.min(MAX_HEALTH, this.health + 1)
        this.init.onRefute?.()
      }
      return
    }
    const m = this.view.get(u.id)
    if (u.state === 'alive') {
      // Only a member's own messages clear a suspicion of it or bring it back from the dead (heardFrom):
      // another's claim that it is alive is taken as a sample entry, or not at all.
      if (m == null && !this.dead.has(u.id) && this.init.admissible?.(u.id) !== false) this.admit(u.id, u.incarnation)
      return
    }
    if (u.state === 'suspect') {
      if (m == null || u.incarnation < m.incarnation) return
      m.incarnation = u.incarnation
      if (m.state === 'alive') this.suspect(u.id)
      return
    }
    if (m == null) {
      // Not this node's to watch: remembered (and passed on) without acting on it.
      const d = this.dead.get(u.id)
      if (d != null && d.incarnation >= u.incarnation) return
      this.dead.set(u.id, { incarnation: u.incarnation, until: this.init.now() + this.options.tombstoneMs })
      this.enqueue(u)
      return
    }
    // A member of this node's view reported dead is checked first-hand (a stale report from the far side of
    // a healed partition must not take down a live node): suspect, and told so, it refutes if alive.
    if (u.incarnation < m.incarnation) return
    m.incarnation = u.incarnation
    if (m.state === 'alive') this.suspect(u.id)
  }

  private refuted (id: string, m: Member<O>, incarnation: number): void {
    m.incarnation = incarnation
    if (m.state === 'suspect') {
      this.init.clock.clearTimeout(m.suspectTimer)
      m.state = 'alive'
      m.suspectTimer = undefined
      this.enqueue({ id, state: 'alive', incarnation })
    }
  }

  /** A message came from `id` (any kind): it is alive, at `incarnation` at least. */
  private heardFrom (id: string, incarnation: number, joining = false): void {
    const m = this.view.get(id)
    if (m != null) {
      if (incarnation > m.incarnation || m.state === 'suspect') this.refuted(id, m, Math.max(incarnation, m.incarnation))
      return
    }
    const d = this.dead.get(id)
    if (d != null) {
      if (incarnation <= d.incarnation) return
      this.dead.delete(id)
      this.enqueue({ id, state: 'alive', incarnation })
    }
    this.admit(id, incarnation, joining ? 1 : this.options.senderAdmitProbability)
  }

  /** Takes a member into the view: into a free place, or with `chance` in place of a random one, which keeps views mixed. */
  private admit (id: string, incarnation: number, chance = this.options.sampleAdmitProbability): void {
    if (id === this.selfId || this.view.has(id)) return
    const d = this.dead.get(id)
    if (d != null && incarnation <= d.incarnation) return
    if (this.view.size >= this.options.viewSize) {
      if (this.init.random() >= chance) return
      const victims = [...this.view].filter(([, m]) => m.state === 'alive')
      if (victims.length === 0) return
      const [out] = victims[Math.floor(this.init.random() * victims.length)]!
      this.view.delete(out)
      this.keysCache = undefined
    }
    this.view.set(id, { incarnation, state: 'alive', offerAt: -Infinity })
    this.keysCache = undefined
    this.init.onAlive?.(id)
  }

  private mix (sample: SwimEntry[]): void {
    for (const e of sample) if (this.init.admissible?.(e.id) !== false) this.admit(e.id, e.incarnation)
  }

  private takeOffer (from: string, offer: O | undefined): void {
    const m = this.view.get(from)
    if (m == null || offer == null) return
    m.offer = offer
    m.offerAt = this.init.now()
  }

  private withOffer (): { offer?: O } {
    return this.init.offer != null ? { offer: this.init.offer() } : {}
  }

  private enqueue (update: SwimUpdate): void {
    this.queue.set(update.id, { update, sent: 0 })
    // Bounded: the most-sent go first.
    if (this.queue.size > this.options.updatesPerMessage * 8) {
      let worst: string | undefined
      let most = -1
      for (const [id, q] of this.queue) if (q.sent > most) { most = q.sent; worst = id }
      if (worst != null) this.queue.delete(worst)
    }
  }

  /** The updates least sent so far (each at most `retransmits` times), a sample of the view, and this node's incarnation. */
  private piggyback (to: string): Piggyback {
    // A member held dead is told so (a revived one, or one back from a restart), and refutes with a higher incarnation if it is alive.
    const dead = this.dead.get(to)
    const updates: SwimUpdate[] = dead != null ? [{ id: to, state: 'dead', incarnation: dead.incarnation }] : []
    if (this.queue.size > 0) {
      const ranked = [...this.queue.values()].filter(q => q.update.id !== to || q.update.state !== 'alive').sort((a, b) => a.sent - b.sent).slice(0, this.options.updatesPerMessage)
      for (const q of ranked) {
        updates.push(q.update)
        if (++q.sent >= this.retransmits) this.queue.delete(q.update.id)
      }
    }
    const sample: SwimEntry[] = []
    const keys = this.viewKeys()
    for (let tries = 0; sample.length < this.options.sampleSize && tries < this.options.sampleSize * 3 && keys.length > 0; tries++) {
      const id = keys[Math.floor(this.init.random() * keys.length)]!
      if (id !== to && !sample.some(e => e.id === id)) sample.push({ id, incarnation: this.view.get(id)!.incarnation })
    }
    return { updates, sample, incarnation: this.incarnation, ...(this.view.size < this.options.viewSize / 2 ? { joining: true as const } : {}) }
  }

  /** The view's member ids (cached until the view changes). */
  private viewKeys (): string[] {
    if (this.keysCache == null) this.keysCache = [...this.view.keys()]
    return this.keysCache
  }

  private pick (ids: string[], k: number): string[] {
    const out: string[] = []
    for (let i = 0; i < ids.length && out.length < k; i++) {
      const j = i + Math.floor(this.init.random() * (ids.length - i))
      ;[ids[i], ids[j]] = [ids[j]!, ids[i]!]
      out.push(ids[i]!)
    }
    return out
  }

  private send (to: string, m: SwimMessage<O>): void {
    if (!this.stopped) this.init.send(to, m)
  }
}
