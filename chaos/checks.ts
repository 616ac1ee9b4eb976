/**
 * The chaos run's checks: pure functions over what the run recorded
 * (acknowledgements, ownership samples, final views, handled events, faults).
 * No I/O here, so test/chaos-checks.test.ts can feed them fabricated records
 * and show that each one fails when it should.
 */

/** One acknowledged send, as the sender saw it. */
export interface AckRecord {
  workload: string
  id: string
  seq: number
  epoch: number
  owner: string
  duplicate: boolean
  /** When the attempt that got this acknowledgement was sent (ms since epoch). */
  attemptAt: number
  /** When the acknowledgement arrived. */
  ackAt: number
}

/** One node's own report (every 250 ms) that it runs a replica of a workload. */
export interface OwnershipSample {
  round: number
  at: number
  workload: string
  replica: number
  peerId: string
  epoch: number
  status: string
}

/** A stateful workload's final state and the ids its trace holds, seq by seq. */
export interface FinalMachine {
  workload: string
  count: number
  /** `owner@epoch#seq` as each live node reported it. */
  reports: string[]
  /** seq → event id from the exported trace (undefined: the trace could not be read). */
  trace?: Array<{ seq: number, id?: string }>
}

/** What one node showed for a workload at the end: its running replicas. */
export interface FinalView {
  workload: string
  observer: string
  desired: number
  running: Array<{ replica: number, peerId: string, epoch: number }>
}

/** One handling of a queue-group event, as the handler recorded it. */
export interface HandledRecord {
  id: string
  n: number
  replica: number
  node: string
  epoch: number
  attempt: number
  ts: number
}

export interface PublishedRecord {
  n: number
  id?: string
  at: number
  recipients?: number
  error?: string
}

export interface FaultRecord {
  index: number
  kind: string
  target: string
  at: number
  /** What recovery means for this fault. */
  measure: string
  /** ms from the fault (or heal) to recovery; null when it did not recover within the bound. */
  recoveredMs: number | null
  boundMs: number
  note?: string
}

export interface CheckResult {
  name: string
  pass: boolean
  /** One line for the summary table. */
  summary: string
  details: Record<string, unknown>
}

/** (a) Acknowledged transitions lost: each counter's final count equals its distinct acknowledged ids, and every acknowledged id is in the final history at its seq. */
export function checkLostAcks (acks: AckRecord[], finals: FinalMachine[], { unresolved = [] }: { unresolved?: Array<{ workload: string, id: string }> } = {}): CheckResult {
  const per: Record<string, unknown> = {}
  let lost = 0
  let failed = false
  const workloads = new Set([...acks.map(a => a.workload), ...finals.map(f => f.workload)])
  for (const w of [...workloads].sort()) {
    const mine = acks.filter(a => a.workload === w)
    const ids = new Set(mine.map(a => a.id))
    const final = finals.find(f => f.workload === w)
    const entry: Record<string, unknown> = { acknowledged: ids.size }
    if (final == null) {
      entry.error = 'no final state'
      failed = true
      per[w] = entry
      continue
    }
    entry.count = final.count
    entry.agreeing = new Set(final.reports).size === 1
    // From the exported trace (the merged history, newest records only): an acknowledged id whose seq
    // holds another event was overwritten by another history; one absent from a trace covering its seq was dropped.
    const missing: string[] = []
    if (final.trace != null && final.trace.length > 0) {
      const bySeq = new Map(final.trace.map(r => [r.seq, r.id]))
      const traced = new Set(final.trace.map(r => r.id).filter((x): x is string => x != null))
      const lo = Math.min(...final.trace.map(r => r.seq))
      const hi = Math.max(...final.trace.map(r => r.seq))
      entry.trace = { from: lo, to: hi, records: final.trace.length }
      for (const a of mine) {
        if (a.duplicate || a.seq < lo || a.seq > hi || traced.has(a.id)) continue
        if (bySeq.get(a.seq) !== a.id && !missing.includes(a.id)) missing.push(a.id)
      }
    }
    const unresolvedHere = unresolved.filter(u => u.workload === w).map(u => u.id)
    const deficit = ids.size - final.count
    entry.missing = missing
    entry.unresolved = unresolvedHere
    const wLost = Math.max(missing.length, deficit)
    lost += Math.max(0, wLost)
    const ok = final.count === ids.size && missing.length === 0 && unresolvedHere.length === 0 && entry.agreeing === true
    if (!ok) failed = true
    entry.pass = ok
    per[w] = entry
  }
  const summary = `${lost} lost` + (failed ? ` (${Object.entries(per).filter(([, e]) => (e as { pass?: boolean }).pass !== true).map(([w, e]) => { const x = e as { count?: number, acknowledged: number, missing?: string[], unresolved?: string[] }; return `${w}: count ${String(x.count)} vs ${x.acknowledged} acked, missing ${x.missing?.length ?? '?'}${(x.unresolved?.length ?? 0) > 0 ? `, ${String(x.unresolved?.length)} unresolved` : ''}` }).join('; ')})` : '')
  return { name: 'acknowledged transitions lost', pass: !failed, summary, details: { lost, workloads: per } }
}

/**
 * (b) Workloads with two owners. Two owners means two nodes acknowledging
 * events for one workload at the same time; the evidence:
 * - two first-time acknowledgements with one seq but different ids (two histories),
 *   or one id acknowledged first-time at two seqs (applied twice);
 * - an acknowledgement at a lower epoch for an attempt sent after an
 *   acknowledgement at a higher epoch had arrived (the deposed owner still acknowledging);
 * - in one sampling round, two nodes each reporting themselves running the workload at the same epoch;
 * - at the end, the nodes not agreeing on one owner@epoch.
 * Two nodes at different epochs both reporting running in one round is not
 * by itself two owners (a deposed owner steps down on the next heartbeat or
 * refused batch, and cannot get anything acknowledged): it is counted as
 * `overlappingRounds` for information.
 */
export function checkTwoOwners (acks: AckRecord[], samples: OwnershipSample[], finalViews: FinalView[], statefulWorkloads: string[]): CheckResult {
  const violations: string[] = []
  const fresh = acks.filter(a => !a.duplicate)
  const bad = new Set<string>()
  for (const w of statefulWorkloads) {
    const mine = fresh.filter(a => a.workload === w)
    const bySeq = new Map<number, AckRecord>()
    const byId = new Map<string, AckRecord>()
    for (const a of mine) {
      const other = bySeq.get(a.seq)
      if (other != null && other.id !== a.id) { violations.push(`${w}: seq ${a.seq} acknowledged for ${other.id} by …${other.owner.slice(-8)}@${other.epoch} and for ${a.id} by …${a.owner.slice(-8)}@${a.epoch}`); bad.add(w) }
      bySeq.set(a.seq, a)
      const same = byId.get(a.id)
      if (same != null && same.seq !== a.seq) { violations.push(`${w}: ${a.id} applied twice, at seq ${same.seq} (…${same.owner.slice(-8)}@${same.epoch}) and ${a.seq} (…${a.owner.slice(-8)}@${a.epoch})`); bad.add(w) }
      byId.set(a.id, a)
    }
    // Earliest arrival of an acknowledgement at an epoch above e, for each e.
    const epochs = [...new Set(mine.map(a => a.epoch))].sort((x, y) => x - y)
    const firstAt = new Map<number, AckRecord>()
    for (const a of mine) { const f = firstAt.get(a.epoch); if (f == null || a.ackAt < f.ackAt) firstAt.set(a.epoch, a) }
    const newerFirst = new Map<number, AckRecord | undefined>()
    let best: AckRecord | undefined
    for (let i = epochs.length - 1; i >= 0; i--) {
      newerFirst.set(epochs[i]!, best)
      const f = firstAt.get(epochs[i]!)!
      if (best == null || f.ackAt < best.ackAt) best = f
    }
    for (const a of mine) {
      const newer = newerFirst.get(a.epoch)
      if (newer != null && a.attemptAt > newer.ackAt) {
        violations.push(`${w}: …${a.owner.slice(-8)} acknowledged ${a.id} (seq ${a.seq}) at epoch ${a.epoch}, sent ${a.attemptAt - newer.ackAt} ms after …${newer.owner.slice(-8)} had acknowledged ${newer.id} (seq ${newer.seq}) at epoch ${newer.epoch}`)
        bad.add(w)
      }
    }
  }
  // Sampling rounds.
  let overlappingRounds = 0
  const rounds = new Map<string, OwnershipSample[]>()
  for (const s of samples) {
    if (s.status !== 'running' || !statefulWorkloads.includes(s.workload)) continue
    const key = `${s.round}/${s.workload}`
    rounds.set(key, [...(rounds.get(key) ?? []), s])
  }
  for (const [key, list] of rounds) {
    const peers = new Set(list.map(s => s.peerId))
    if (peers.size < 2) continue
    const byEpoch = new Map<number, Set<string>>()
    for (const s of list) byEpoch.set(s.epoch, (byEpoch.get(s.epoch) ?? new Set()).add(s.peerId))
    const same = [...byEpoch.entries()].filter(([, p]) => p.size > 1)
    if (same.length > 0) {
      const w = list[0]!.workload
      violations.push(`${w}: round ${key.split('/')[0]!}: ${same.map(([e, p]) => `${[...p].map(x => `…${x.slice(-8)}`).join(' and ')} both running at epoch ${e}`).join('; ')}`)
      bad.add(w)
    } else {
      overlappingRounds++
    }
  }
  // The end: every node shows one and the same owner.
  for (const w of statefulWorkloads) {
    const owners = new Set(finalViews.filter(v => v.workload === w).flatMap(v => v.running.map(r => `${r.peerId}@${r.epoch}`)))
    if (owners.size !== 1) { violations.push(`${w}: at the end the nodes show ${owners.size} owners (${[...owners].map(o => `…${o.slice(-12)}`).join(', ')})`); bad.add(w) }
  }
  return {
    name: 'workloads with two owners',
    pass: bad.size === 0,
    summary: `${bad.size}` + (bad.size > 0 ? ` (${[...bad].join(', ')})` : '') + `; ${fresh.length} first-time acks, ${new Set(samples.map(s => s.round)).size} sampling rounds, ${overlappingRounds} rounds with a deposed owner not yet stopped`,
    details: { workloads: [...bad], violations: violations.slice(0, 50), violationCount: violations.length, overlappingRounds }
  }
}

/** (c) Desired replicas restored: every node shows every ordinal running, on live distinct peers, and all nodes show the same placement. */
export function checkReplicas (views: FinalView[], live: string[], workloads: Array<{ workload: string, desired: number }>): CheckResult {
  const per: Record<string, { restored: boolean, reason?: string, placement?: string[] }> = {}
  for (const { workload, desired } of workloads) {
    const mine = views.filter(v => v.workload === workload)
    per[workload] = { restored: true }
    const reason = replicaProblem(mine, live, desired)
    if (reason != null) per[workload] = { restored: false, reason }
    else per[workload]!.placement = [...mine[0]!.running].sort((a, b) => a.replica - b.replica).map(r => `${r.replica}:…${r.peerId.slice(-8)}@${r.epoch}`)
  }
  const missing = Object.entries(per).filter(([, v]) => !v.restored)
  return {
    name: 'desired replicas restored',
    pass: missing.length === 0,
    summary: Object.entries(per).map(([w, v]) => `${w} ${v.restored ? 'yes' : 'NO'}`).join(', '),
    details: per
  }
}

/** Why the views do not show `desired` replicas restored (undefined when they do). Also used while waiting for recovery. */
export function replicaProblem (views: FinalView[], live: string[], desired: number): string | undefined {
  if (views.length === 0) return 'no node reported it'
  const liveSet = new Set(live)
  let reference: string | undefined
  for (const v of views) {
    const running = v.running.filter(r => liveSet.has(r.peerId))
    const ordinals = new Set(running.map(r => r.replica))
    const peers = new Set(running.map(r => r.peerId))
    if (ordinals.size < desired) return `…${v.observer.slice(-8)} sees ${ordinals.size}/${desired} running on live nodes`
    if (peers.size < desired) return `…${v.observer.slice(-8)} sees replicas sharing a node`
    if (v.running.length > running.length) return `…${v.observer.slice(-8)} still shows a replica on a dead node`
    const key = [...running].sort((a, b) => a.replica - b.replica || a.epoch - b.epoch).map(r => `${r.replica}:${r.peerId}@${r.epoch}`).join(',')
    if (reference == null) reference = key
    else if (key !== reference) return 'nodes disagree on the placement'
  }
  return undefined
}

/**
 * (d) Queue-group events handled more than once. docs/workloads.md promises
 * exactly-once while the replicas agree on who is alive and at-most-once
 * across a failure, so an event id handled by two replicas (or twice by one,
 * other than a retry after a failed attempt) breaks the promise: a failing
 * check unless `allowDuplicates`. Events published but never handled are
 * reported too; at-most-once allows them across a failure, so they do not fail.
 */
export function checkQueueDuplicates (handled: HandledRecord[], published: PublishedRecord[], { allowDuplicates = false }: { allowDuplicates?: boolean } = {}): CheckResult {
  const byId = new Map<string, HandledRecord[]>()
  for (const h of handled) byId.set(h.id, [...(byId.get(h.id) ?? []), h])
  const duplicates: Array<{ id: string, n: number, handlings: string[] }> = []
  let extra = 0
  for (const [id, list] of byId) {
    // A retry after a failed attempt (attempt > 1 on the same replica) is not a second delivery.
    const deliveries = list.filter(h => h.attempt === 1 || !list.some(o => o !== h && o.replica === h.replica && o.node === h.node && o.attempt < h.attempt))
    if (deliveries.length > 1) {
      duplicates.push({ id, n: list[0]!.n, handlings: deliveries.map(h => `replica ${h.replica} on …${h.node.slice(-8)}@${h.epoch} at ${h.ts}`) })
      extra += deliveries.length - 1
    }
  }
  const sent = published.filter(p => p.id != null)
  const handledNs = new Set(handled.map(h => h.n))
  const unhandled = sent.filter(p => !handledNs.has(p.n)).map(p => p.n)
  // Nothing handled at all while events went out is no evidence of anything: the handlers' records are missing.
  const vacuous = sent.length > 0 && handled.length === 0
  const pass = !vacuous && (allowDuplicates || duplicates.length === 0)
  return {
    name: 'queue events handled more than once',
    pass,
    summary: `${vacuous ? 'no handling recorded at all: the check saw nothing; ' : ''}${duplicates.length} events (${extra} extra handlings) of ${byId.size} handled, ${sent.length} published; ${unhandled.length} never handled (at-most-once allows)`,
    details: { duplicates: duplicates.slice(0, 50), duplicateCount: duplicates.length, extraHandlings: extra, handledDistinct: byId.size, handlings: handled.length, published: sent.length, publishFailed: published.length - sent.length, unhandled: unhandled.slice(0, 200), unhandledCount: unhandled.length, allowDuplicates }
  }
}

/** (e) Time to recover: every fault recovered within its bound. */
export function checkRecovery (faults: FaultRecord[]): CheckResult {
  const late = faults.filter(f => f.recoveredMs == null || f.recoveredMs > f.boundMs)
  const times = faults.filter(f => f.recoveredMs != null).map(f => f.recoveredMs!)
  return {
    name: 'time to recover',
    pass: late.length === 0 && faults.length > 0,
    summary: faults.length === 0 ? 'no faults ran' : `${faults.length - late.length}/${faults.length} recovered within bounds; max ${times.length > 0 ? (Math.max(...times) / 1000).toFixed(1) : '-'} s` + (late.length > 0 ? ` (not recovered: ${late.map(f => `#${f.index} ${f.kind}`).join(', ')})` : ''),
    details: { faults }
  }
}
