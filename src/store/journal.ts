// longer than 700 lines: the journal layout with its encode, checksum, decode and verify beside each other, so that they cannot drift apart
import { createHash } from 'node:crypto'
import { describeError } from '../errors.js'
import { CorruptJournalError, JournalError } from './errors.js'
import type { NodeStore } from './node-store.js'
import type { StateValue } from 'xstate'
import type { TraceEntry, TraceEvent } from './trace.js'

export type { TraceEntry, TraceEvent, TraceStatus } from './trace.js'

/**
 * Durable state of stateful workloads: an event journal plus the latest XState
 * persisted snapshot, per workload, in the node's LevelDB.
 *
 * Layout, inside the `journal` sublevel (root keys `!journal!<key>`), for a
 * workload id `<id>` (e.g. `default/counter`):
 *
 * - `<id>!e!<seq>`  one journal entry; `<seq>` zero-padded to 16 digits so keys
 *                   sort numerically (covers every safe integer)
 * - `<id>!m`        the head: `{ seq, epoch, snapshotSeq? }`, last seq, highest
 *                   epoch written, seq of the stored snapshot if any
 * - `<id>!s`        the latest snapshot record (only one is kept)
 *
 * and in the nested `trace` sublevel (root keys `!journal!!trace!<key>`), the
 * workload's trace, which compaction does not touch:
 *
 * - `<id>!<seq>`    one TraceEntry: the event, its sender, the state value
 *                   and context it led to; seq 0 is the workload's start. The
 *                   newest `traceLimit` records are kept.
 *
 * Every value is utf8 text `<checksum> <json>`: `json` is the canonical JSON of
 * the record (object keys sorted, no whitespace) and `checksum` the first 16
 * hex digits of the SHA-256 of `<key>\n<json>` (the key is covered so that a
 * value moved under another key is caught too). Workload ids never contain
 * `!` or characters below it, so `[<id>!, <id>")` holds exactly one
 * workload's keys.
 *
 * Invariants kept by every write (each one LevelDB batch, fsynced by default):
 * entry seqs start at 1 and have no gaps; the stored entries are exactly
 * `snapshotSeq + 1 ..= seq` (`1 ..= seq` without a snapshot); epochs never go
 * down. Reads re-check all of it and throw CorruptJournalError rather than
 * return anything they cannot vouch for.
 */

/** The keyspace a WorkloadJournal writes to: a utf8 sublevel of the node database. */
export type JournalDatabase = ReturnType<NodeStore['sublevel']>

/** Name of the node database sublevel that holds workload journals. */
export const JOURNAL_SUBLEVEL = 'journal'

/** One event applied to a workload's machine, with the state value it led to. */
export interface JournalEntry {
  /** 1 for a workload's first entry, then exactly one more than the previous entry. */
  seq: number
  /** Ownership epoch of the node that applied the event (fencing token). */
  epoch: number
  /** When the event was applied, ms since the Unix epoch. */
  ts: number
  /** The event sent to the machine; plain JSON. */
  event: unknown
  /** Peer id (or other origin) of the event's sender. */
  sender?: string
  /** The sender's idempotency key for the event: a retried send with the same id is not applied twice. */
  id?: string
  /** The machine's state value after the event; plain JSON. */
  state: unknown
  /** Delayed events pending after the event, with their due times; plain JSON. */
  timers?: unknown
  /** The transition failed the machine (an action or guard threw): the error, so a replay ends failed too. */
  error?: string
  /**
   * Trace fields: given on an append, the entry's TraceEntry is written in
   * the same batch (the entry itself keeps none of them). `context`: the
   * machine's context after the event; `owner`: the node that applied it.
   */
  context?: unknown
  owner?: string
  status?: TraceEntry['status']
  output?: unknown
}

/** An XState persisted snapshot (`actor.getPersistedSnapshot()`) and the last journal entry it includes. */
export interface SnapshotRecord {
  /** Seq of the last entry reflected in the snapshot; 0 for a snapshot taken before any event. */
  seq: number
  epoch: number
  ts: number
  /** The persisted snapshot; plain JSON. */
  snapshot: unknown
}

/** Last seq and highest epoch of a workload's journal. */
export interface JournalHead {
  seq: number
  epoch: number
}

/** What a workload needs to resume: start from `snapshot` (or the machine's initial state), then replay `entries`. */
export interface RestoredJournal {
  snapshot?: SnapshotRecord
  entries: JournalEntry[]
}

export interface WorkloadJournalOptions {
  /**
   * fsync every write before it resolves (LevelDB `sync`), so an acknowledged
   * event survives a power loss, not only a process crash. Default true.
   */
  sync?: boolean
  /** Trace records kept per workload: older ones are dropped as new ones come. Default 10,000. */
  traceLimit?: number
}

interface Meta {
  seq: number
  epoch: number
  snapshotSeq?: number
}

type TraceDatabase = ReturnType<typeof traceSublevel>
type BatchOp = { type: 'put', key: string, value: string, sublevel?: TraceDatabase } | { type: 'del', key: string, sublevel?: TraceDatabase }

function traceSublevel (db: JournalDatabase) {
  return db.sublevel<string, string>(TRACE_SUBLEVEL, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
}

/** The `sender` of a journal entry for a step the machine took by itself. */
export const SPONTANEOUS_SENDER = 'machine'

/** Name of the journal's nested sublevel that holds traces. */
const TRACE_SUBLEVEL = 'trace'
const DEFAULT_TRACE_LIMIT = 10_000

const SEP = '!'
/** The character right after SEP: `<id>"` is the exclusive upper bound of `<id>`'s keys. */
const AFTER_SEP = '"'
const SEQ_DIGITS = 16
const CHECKSUM_HEX = 16
const WORKLOAD_ID = /^[\x22-\x7e]{1,255}$/
const PADDED_SEQ = /^\d{16}$/

function entryPrefix (id: string): string {
  return `${id}${SEP}e${SEP}`
}

function entryKey (id: string, seq: number): string {
  return entryPrefix(id) + String(seq).padStart(SEQ_DIGITS, '0')
}

function metaKey (id: string): string {
  return `${id}${SEP}m`
}

function snapshotKey (id: string): string {
  return `${id}${SEP}s`
}

function traceKey (id: string, seq: number): string {
  return `${id}${SEP}${String(seq).padStart(SEQ_DIGITS, '0')}`
}

function encodeTrace (workloadId: string, r: TraceEntry): string {
  const record: TraceEntry = { workloadId, seq: r.seq, epoch: r.epoch, ts: r.ts, owner: r.owner, event: r.event, value: r.value, context: r.context, status: r.status }
  if (r.sender !== undefined) record.sender = r.sender
  if (r.id !== undefined) record.id = r.id
  if (r.output !== undefined) record.output = r.output
  if (r.error !== undefined) record.error = String(r.error)
  return encode(workloadId, traceKey(workloadId, r.seq), `trace record at seq ${r.seq}`, record)
}

/** The trace record of an entry that carries trace fields (`owner` and `context`), else undefined. */
function traceOfEntry (workloadId: string, e: JournalEntry): TraceEntry | undefined {
  if (e.owner === undefined || e.context === undefined) return undefined
  return {
    workloadId,
    seq: e.seq,
    epoch: e.epoch,
    ts: e.ts,
    owner: e.owner,
    // the journal keeps the owner's event and state value as plain JSON; the owner only applies typed events to its machine
    event: e.event as TraceEvent,
    value: e.state as StateValue,
    context: e.context,
    status: e.status ?? (e.error !== undefined ? 'error' : 'active'),
    // a step the machine took by itself (a timer, a delayed raise, an invoked actor's completion) has neither
    ...(e.sender !== undefined && e.sender !== SPONTANEOUS_SENDER ? { sender: e.sender } : {}),
    ...(e.id !== undefined ? { id: e.id } : {}),
    ...(e.output !== undefined ? { output: e.output } : {}),
    ...(e.error !== undefined ? { error: e.error } : {})
  }
}

/** First 16 hex digits of SHA-256 over `<key>\n<json>`: a value copied under another key fails too. */
function checksum (key: string, json: string): string {
  return createHash('sha256').update(`${key}\n${json}`, 'utf8').digest('hex').slice(0, CHECKSUM_HEX)
}

/**
 * Canonical JSON of a record and `<checksum> <json>` around it. Throws
 * JournalError for anything JSON would silently change: non-finite numbers,
 * bigints, functions, symbols, undefined array items, class instances (Date,
 * Map, Error...) and cycles. An `undefined` object property is dropped, as
 * JSON.stringify does (XState snapshots carry `output: undefined`).
 */
function encode (workloadId: string, key: string, what: string, record: object): string {
  const json = canonicalJson(workloadId, what, record, '', new Set())
  if (json === undefined) throw new JournalError(workloadId, `${what} is not JSON`)
  return `${checksum(key, json)} ${json}`
}

function canonicalJson (workloadId: string, what: string, value: unknown, path: string, ancestors: Set<object>): string | undefined {
  const fail = (problem: string, at = path): never => {
    throw new JournalError(workloadId, `${what}: ${at === '' ? 'value' : at.replace(/^\./, '')} ${problem}, not JSON`)
  }
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : fail(`is ${String(value)}`)
    case 'undefined':
      return undefined
    case 'bigint':
    case 'function':
    case 'symbol':
      return fail(`is a ${typeof value}`)
  }
  if (value === null) return 'null'
  const object = value as object
  if (ancestors.has(object)) return fail('contains itself')
  ancestors.add(object)
  let json: string
  if (Array.isArray(object)) {
    const items: string[] = []
    for (let i = 0; i < object.length; i++) {
      const at = `${path}[${i}]`
      items.push(canonicalJson(workloadId, what, object[i], at, ancestors) ?? fail('is undefined', at))
    }
    json = `[${items.join(',')}]`
  } else {
    const proto: unknown = Object.getPrototypeOf(object)
    if (proto !== Object.prototype && proto !== null) {
      const name = (object as { constructor?: { name?: unknown } }).constructor?.name
      fail(`is ${typeof name === 'string' && name !== '' ? `a ${name}` : 'a class instance'}`)
    }
    const members: string[] = []
    for (const key of Object.keys(object).sort()) {
      const member = canonicalJson(workloadId, what, (object as Record<string, unknown>)[key], `${path}.${key}`, ancestors)
      if (member !== undefined) members.push(`${JSON.stringify(key)}:${member}`)
    }
    json = `{${members.join(',')}}`
  }
  ancestors.delete(object)
  return json
}

function isSeq (n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0
}

function isEpoch (n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0
}

/** Checks an entry's fields and encodes it; JournalError naming the entry on any bad field. */
function encodeEntry (workloadId: string, e: JournalEntry, index: number): { seq: number, epoch: number, value: string } {
  const what = `entry #${index}${isSeq(e?.seq) ? ` (seq ${e.seq})` : ''}`
  const bad = (problem: string): never => { throw new JournalError(workloadId, `${what}: ${problem}`) }
  if (typeof e !== 'object' || e === null) return bad('not an object')
  if (!isSeq(e.seq) || e.seq < 1) bad(`seq must be an integer >= 1, got ${String(e.seq)}`)
  if (!isEpoch(e.epoch)) bad(`epoch must be an integer >= 0, got ${String(e.epoch)}`)
  if (typeof e.ts !== 'number' || !Number.isFinite(e.ts)) bad(`ts must be a finite number, got ${String(e.ts)}`)
  if (e.event === undefined) bad('event is missing')
  if (e.state === undefined) bad('state is missing')
  if (e.sender !== undefined && typeof e.sender !== 'string') bad('sender must be a string')
  if (e.id !== undefined && typeof e.id !== 'string') bad('id must be a string')
  const record: JournalEntry = { seq: e.seq, epoch: e.epoch, ts: e.ts, event: e.event, state: e.state }
  if (e.sender !== undefined) record.sender = e.sender
  if (e.id !== undefined) record.id = e.id
  if (e.timers !== undefined) record.timers = e.timers
  if (e.error !== undefined) record.error = String(e.error)
  return { seq: e.seq, epoch: e.epoch, value: encode(workloadId, entryKey(workloadId, e.seq), what, record) }
}

function encodeSnapshot (workloadId: string, s: SnapshotRecord): { seq: number, epoch: number, value: string } {
  const what = `snapshot${isSeq(s?.seq) ? ` at seq ${s.seq}` : ''}`
  const bad = (problem: string): never => { throw new JournalError(workloadId, `${what}: ${problem}`) }
  if (typeof s !== 'object' || s === null) return bad('not an object')
  if (!isSeq(s.seq)) bad(`seq must be an integer >= 0, got ${String(s.seq)}`)
  if (!isEpoch(s.epoch)) bad(`epoch must be an integer >= 0, got ${String(s.epoch)}`)
  if (typeof s.ts !== 'number' || !Number.isFinite(s.ts)) bad(`ts must be a finite number, got ${String(s.ts)}`)
  if (s.snapshot === undefined) bad('snapshot is missing')
  const record: SnapshotRecord = { seq: s.seq, epoch: s.epoch, ts: s.ts, snapshot: s.snapshot }
  return { seq: s.seq, epoch: s.epoch, value: encode(workloadId, snapshotKey(workloadId), what, record) }
}

/** Verifies `<checksum> <json>` and parses it to an object, or throws CorruptJournalError. */
function decode (workloadId: string, key: string, seq: number | undefined, raw: string): Record<string, unknown> {
  const corrupt = (problem: string): CorruptJournalError => new CorruptJournalError(workloadId, key, seq, problem)
  if (raw.length <= CHECKSUM_HEX || raw[CHECKSUM_HEX] !== ' ') throw corrupt('value has no checksum envelope')
  const stored = raw.slice(0, CHECKSUM_HEX)
  const json = raw.slice(CHECKSUM_HEX + 1)
  const actual = checksum(key, json)
  if (stored !== actual) throw corrupt(`checksum mismatch (stored ${stored}, computed ${actual})`)
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (err) {
    throw corrupt(`value does not parse: ${describeError(err)}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw corrupt('value is not a JSON object')
  return parsed as Record<string, unknown>
}

function decodeEntry (workloadId: string, key: string, seq: number, raw: string): JournalEntry {
  const r = decode(workloadId, key, seq, raw)
  const bad = (problem: string): never => { throw new CorruptJournalError(workloadId, key, seq, problem) }
  if (r.seq !== seq) bad(`value holds seq ${String(r.seq)}`)
  if (!isEpoch(r.epoch)) bad(`epoch is ${String(r.epoch)}`)
  if (typeof r.ts !== 'number') bad(`ts is ${String(r.ts)}`)
  if (!('event' in r)) bad('event is missing')
  if (!('state' in r)) bad('state is missing')
  if (r.sender !== undefined && typeof r.sender !== 'string') bad('sender is not a string')
  if (r.id !== undefined && typeof r.id !== 'string') bad('id is not a string')
  const entry: JournalEntry = { seq, epoch: r.epoch as number, ts: r.ts as number, event: r.event, state: r.state }
  if (typeof r.sender === 'string') entry.sender = r.sender
  if (typeof r.id === 'string') entry.id = r.id
  if (r.timers !== undefined) entry.timers = r.timers
  if (typeof r.error === 'string') entry.error = r.error
  return entry
}

function decodeSnapshot (workloadId: string, key: string, raw: string): SnapshotRecord {
  const r = decode(workloadId, key, undefined, raw)
  const bad = (problem: string): never => { throw new CorruptJournalError(workloadId, key, undefined, `snapshot ${problem}`) }
  if (!isSeq(r.seq)) bad(`seq is ${String(r.seq)}`)
  if (!isEpoch(r.epoch)) bad(`epoch is ${String(r.epoch)}`)
  if (typeof r.ts !== 'number') bad(`ts is ${String(r.ts)}`)
  if (!('snapshot' in r)) bad('is missing its snapshot')
  return { seq: r.seq as number, epoch: r.epoch as number, ts: r.ts as number, snapshot: r.snapshot }
}

function decodeMeta (workloadId: string, key: string, raw: string): Meta {
  const r = decode(workloadId, key, undefined, raw)
  const bad = (problem: string): never => { throw new CorruptJournalError(workloadId, key, undefined, `head ${problem}`) }
  if (!isSeq(r.seq)) bad(`seq is ${String(r.seq)}`)
  if (!isEpoch(r.epoch)) bad(`epoch is ${String(r.epoch)}`)
  if (r.snapshotSeq !== undefined && (!isSeq(r.snapshotSeq) || r.snapshotSeq > (r.seq as number))) bad(`snapshotSeq is ${String(r.snapshotSeq)}`)
  const meta: Meta = { seq: r.seq as number, epoch: r.epoch as number }
  if (r.snapshotSeq !== undefined) meta.snapshotSeq = r.snapshotSeq as number
  return meta
}

/** The seq encoded in an entry key, or undefined if `key` is not `<id>!e!<16 digits>`. */
function seqOfKey (id: string, key: string): number | undefined {
  const prefix = entryPrefix(id)
  if (!key.startsWith(prefix)) return undefined
  const digits = key.slice(prefix.length)
  return PADDED_SEQ.test(digits) ? Number(digits) : undefined
}

/**
 * Checks that `entries` (sorted by key) are exactly `from ..= meta.seq`, with
 * epochs that never go down from `minEpoch` and never exceed the head's.
 */
function checkRun (workloadId: string, entries: JournalEntry[], from: number, minEpoch: number, meta: Meta): void {
  let expected = from
  let epoch = minEpoch
  for (const e of entries) {
    const key = entryKey(workloadId, e.seq)
    if (e.seq > meta.seq) throw new CorruptJournalError(workloadId, key, e.seq, `entry is past the head at seq ${meta.seq}`)
    if (e.seq !== expected) throw new CorruptJournalError(workloadId, entryKey(workloadId, expected), expected, `entry missing (next stored entry is seq ${e.seq})`)
    if (e.epoch < epoch) throw new CorruptJournalError(workloadId, key, e.seq, `epoch ${e.epoch} is below the preceding epoch ${epoch}`)
    if (e.epoch > meta.epoch) throw new CorruptJournalError(workloadId, key, e.seq, `epoch ${e.epoch} is above the head's epoch ${meta.epoch}`)
    epoch = e.epoch
    expected++
  }
  if (expected <= meta.seq) {
    const missing = expected === meta.seq ? 'entry missing' : `entries ${expected}..${meta.seq} missing`
    throw new CorruptJournalError(workloadId, entryKey(workloadId, expected), expected, `${missing} (head is at seq ${meta.seq})`)
  }
}

/**
 * Per-workload event journal and snapshot store on the node's LevelDB, the
 * persistence behind "acknowledged means durable": a runtime appends the
 * entries (and optionally a snapshot) for an event, and acknowledges the event
 * only once `append` resolves.
 *
 * Writes to one workload are serialised inside an instance; keep a single
 * WorkloadJournal per database. Reads never wait for writes: each one reads
 * a single key or a single iterator, which LevelDB serves from one consistent
 * snapshot.
 */
export class WorkloadJournal {
  private readonly db: JournalDatabase
  private readonly traces: TraceDatabase
  private readonly sync: boolean
  private readonly traceLimit: number
  private readonly queues = new Map<string, Promise<void>>()
  /** Heads this instance wrote, so a write need not read the head back first (it is the only writer). */
  private readonly heads = new Map<string, Meta>()

  /** `db` is the journal's own keyspace, normally `store.sublevel('journal')` (see `fromStore`). */
  constructor (db: JournalDatabase, options: WorkloadJournalOptions = {}) {
    this.db = db
    this.traces = traceSublevel(db)
    this.sync = options.sync ?? true
    this.traceLimit = options.traceLimit ?? DEFAULT_TRACE_LIMIT
  }

  /** The journal in the node database's `journal` sublevel. */
  static fromStore (store: NodeStore, options?: WorkloadJournalOptions): WorkloadJournal {
    return new WorkloadJournal(store.sublevel(JOURNAL_SUBLEVEL), options)
  }

  /**
   * Writes `entries` (and `snapshot`, if given) in one atomic batch; on any
   * rejection nothing is written. Each entry's seq must be exactly one past
   * the journal's last (the first entry of a workload is seq 1, or one past
   * an adopted snapshot), and no epoch may be below the highest epoch already
   * written: a deposed owner gets JournalError.
   *
   * With a snapshot, the snapshot replaces the stored one and every entry it
   * covers (seq <= snapshot.seq) is compacted away in the same batch, entries
   * of this very call included: the journal then holds only entries after the
   * snapshot. The snapshot's seq may not be below the stored snapshot's nor
   * past the last entry once `entries` are applied.
   */
  async append (workloadId: string, entries: JournalEntry[], snapshot?: SnapshotRecord, start?: TraceEntry): Promise<void> {
    checkWorkloadId(workloadId)
    if (!Array.isArray(entries)) throw new JournalError(workloadId, 'entries must be an array')
    const encoded = entries.map((e, i) => encodeEntry(workloadId, e, i))
    const traced = [...(start != null ? [{ ...start, seq: 0 }] : []), ...entries.map(e => traceOfEntry(workloadId, e)).filter(r => r != null)]
      .map(r => ({ seq: r.seq, value: encodeTrace(workloadId, r) }))
    const snap = snapshot !== undefined ? encodeSnapshot(workloadId, snapshot) : undefined
    if (encoded.length === 0 && snap === undefined) {
      // only a trace start (an owner records it as the workload starts): no entry, no head
      if (traced.length > 0) await this.exclusive(workloadId, async () => { await this.write(traced.map(t => ({ type: 'put', key: traceKey(workloadId, t.seq), value: t.value, sublevel: this.traces }))) })
      return
    }
    // The lock covers checking and issuing the write, not waiting for it: LevelDB
    // applies writes in the order they are issued and syncs a queue of them at
    // once, so back-to-back appends share an fsync (group commit).
    const written = await this.exclusive(workloadId, async () => {
      const meta = await this.headForWrite(workloadId)
      let seq = meta?.seq ?? 0
      let epoch = meta?.epoch ?? 0
      for (const e of encoded) {
        if (e.seq !== seq + 1) {
          throw new JournalError(workloadId, `entry seq ${e.seq} rejected: the journal is at seq ${seq}, so the next entry must be seq ${seq + 1}`)
        }
        if (e.epoch < epoch) throw fenced(workloadId, `entry seq ${e.seq}`, e.epoch, epoch)
        seq = e.seq
        epoch = e.epoch
      }
      if (snap !== undefined && snap.seq > seq) {
        throw new JournalError(workloadId, `snapshot at seq ${snap.seq} rejected: it is past the last entry (seq ${seq}); putSnapshot adopts a snapshot ahead of the journal`)
      }
      const ops: BatchOp[] = []
      const covered = snap?.seq ?? 0
      for (const e of encoded) {
        if (e.seq > covered) ops.push({ type: 'put', key: entryKey(workloadId, e.seq), value: e.value })
      }
      for (const t of traced) {
        ops.push({ type: 'put', key: traceKey(workloadId, t.seq), value: t.value, sublevel: this.traces })
        if (t.seq >= this.traceLimit) ops.push({ type: 'del', key: traceKey(workloadId, t.seq - this.traceLimit), sublevel: this.traces })
      }
      return { done: this.commit(workloadId, meta, ops, seq, epoch, snap) }
    })
    await written.done
  }

  /**
   * Stores `s` as the workload's snapshot and compacts the entries it covers
   * (seq <= s.seq), in one batch. A snapshot ahead of the journal (adopted
   * from a replica) moves the head to `s.seq`; the next entry is then
   * `s.seq + 1`. Rejected if older than the stored snapshot or below the
   * journal's epoch.
   */
  async putSnapshot (workloadId: string, s: SnapshotRecord): Promise<void> {
    checkWorkloadId(workloadId)
    const snap = encodeSnapshot(workloadId, s)
    await this.exclusive(workloadId, async () => {
      const meta = await this.headForWrite(workloadId)
      await this.commit(workloadId, meta, [], Math.max(meta?.seq ?? 0, snap.seq), meta?.epoch ?? 0, snap)
    })
  }

  /** The stored snapshot, or undefined if none was written. */
  async latestSnapshot (workloadId: string): Promise<SnapshotRecord | undefined> {
    checkWorkloadId(workloadId)
    const key = snapshotKey(workloadId)
    const raw = await this.db.get(key)
    return raw === undefined ? undefined : decodeSnapshot(workloadId, key, raw)
  }

  /** Last seq and highest epoch written, or undefined for a workload without a journal. */
  async head (workloadId: string): Promise<JournalHead | undefined> {
    checkWorkloadId(workloadId)
    const meta = await this.readMeta(workloadId)
    return meta === undefined ? undefined : { seq: meta.seq, epoch: meta.epoch }
  }

  /**
   * Entries with seq > `afterSeq`, in order. JournalError if `afterSeq` is
   * below the stored snapshot's seq: those entries were compacted, so the
   * caller has to start from the snapshot (`restore`).
   */
  async tail (workloadId: string, afterSeq: number): Promise<JournalEntry[]> {
    checkWorkloadId(workloadId)
    if (!isSeq(afterSeq)) throw new JournalError(workloadId, `tail: afterSeq must be an integer >= 0, got ${String(afterSeq)}`)
    const { meta, entries } = await this.scan(workloadId, entryKey(workloadId, afterSeq + 1))
    if (meta === undefined) {
      if (entries.length > 0) throw missingHead(workloadId)
      return []
    }
    const base = meta.snapshotSeq ?? 0
    if (afterSeq < base) {
      throw new JournalError(workloadId, `tail after seq ${afterSeq}: entries up to seq ${base} were compacted into the snapshot; restore from it`)
    }
    checkRun(workloadId, entries, afterSeq + 1, entries[0]?.epoch ?? 0, meta)
    return entries
  }

  /**
   * The latest snapshot and every entry after it: start an actor from
   * `snapshot.snapshot` (or the machine's initial state if there is none) and
   * replay `entries`. Undefined if the workload has no journal. Throws
   * CorruptJournalError on a checksum mismatch, an unparsable or malformed
   * value, a gap in seqs or an inconsistent head: the caller then recovers
   * from a replicated snapshot instead.
   */
  async restore (workloadId: string): Promise<RestoredJournal | undefined> {
    checkWorkloadId(workloadId)
    const { meta, entries, snapshot, found } = await this.scan(workloadId, `${workloadId}${SEP}`)
    if (!found) return undefined
    if (meta === undefined) throw missingHead(workloadId)
    if ((meta.snapshotSeq === undefined) !== (snapshot === undefined)) {
      throw new CorruptJournalError(workloadId, snapshotKey(workloadId), undefined, meta.snapshotSeq === undefined
        ? 'snapshot stored but the head records none'
        : `snapshot at seq ${meta.snapshotSeq} missing`)
    }
    if (snapshot !== undefined && snapshot.seq !== meta.snapshotSeq) {
      throw new CorruptJournalError(workloadId, snapshotKey(workloadId), undefined, `snapshot is at seq ${snapshot.seq} but the head records seq ${String(meta.snapshotSeq)}`)
    }
    if (snapshot !== undefined && snapshot.epoch > meta.epoch) {
      throw new CorruptJournalError(workloadId, snapshotKey(workloadId), undefined, `snapshot epoch ${snapshot.epoch} is above the head's epoch ${meta.epoch}`)
    }
    const base = meta.snapshotSeq ?? 0
    const stale = entries.find(e => e.seq <= base)
    if (stale !== undefined) {
      throw new CorruptJournalError(workloadId, entryKey(workloadId, stale.seq), stale.seq, `entry is covered by the snapshot at seq ${base} but was not compacted`)
    }
    checkRun(workloadId, entries, base + 1, snapshot?.epoch ?? 0, meta)
    return snapshot !== undefined ? { snapshot, entries } : { entries }
  }

  /**
   * The workload's trace records with seq > `afterSeq`, in order (seq 0 is
   * the start). Records are checked like entries: CorruptJournalError on a
   * bad checksum or a value under the wrong key.
   */
  async trace (workloadId: string, afterSeq = -1): Promise<TraceEntry[]> {
    checkWorkloadId(workloadId)
    const records: TraceEntry[] = []
    const gte = afterSeq < 0 ? `${workloadId}${SEP}` : traceKey(workloadId, afterSeq + 1)
    for await (const [key, raw] of this.traces.iterator({ gte, lt: `${workloadId}${AFTER_SEP}` })) {
      const digits = key.slice(workloadId.length + 1)
      if (!PADDED_SEQ.test(digits)) throw new CorruptJournalError(workloadId, key, undefined, 'unexpected key in the trace')
      const seq = Number(digits)
      const r = decode(workloadId, key, seq, raw)
      if (r.seq !== seq) throw new CorruptJournalError(workloadId, key, seq, `trace record holds seq ${String(r.seq)}`)
      records.push(r as unknown as TraceEntry)
    }
    return records
  }

  /** Removes every key of the workload (entries, snapshot, head and, unless `keepTrace`, its trace) in one batch. */
  async erase (workloadId: string, { keepTrace = false } = {}): Promise<void> {
    checkWorkloadId(workloadId)
    await this.exclusive(workloadId, async () => {
      const ops: BatchOp[] = []
      for await (const key of this.db.keys({ gte: `${workloadId}${SEP}`, lt: `${workloadId}${AFTER_SEP}` })) {
        ops.push({ type: 'del', key })
      }
      if (!keepTrace) {
        for await (const key of this.traces.keys({ gte: `${workloadId}${SEP}`, lt: `${workloadId}${AFTER_SEP}` })) {
          ops.push({ type: 'del', key, sublevel: this.traces })
        }
      }
      this.heads.delete(workloadId)
      if (ops.length > 0) await this.write(ops)
    })
  }

  /** Ids of the workloads that have any journal or trace key, in key order. */
  async list (): Promise<string[]> {
    // the journal's keyspace also holds the trace sublevel's keys, which start with the separator: left out by the range
    const ids = new Set([...await workloadIds(this.db.keys({ gte: AFTER_SEP })), ...await workloadIds(this.traces.keys({ gte: AFTER_SEP }))])
    return [...ids].sort()
  }

  /** Adds the snapshot (with compaction) and the new head to `ops` and writes them in one batch. */
  private async commit (workloadId: string, meta: Meta | undefined, ops: BatchOp[], seq: number, epoch: number, snap?: { seq: number, epoch: number, value: string }): Promise<void> {
    const next: Meta = { seq, epoch }
    if (meta?.snapshotSeq !== undefined) next.snapshotSeq = meta.snapshotSeq
    if (snap !== undefined) {
      if (meta?.snapshotSeq !== undefined && snap.seq < meta.snapshotSeq) {
        throw new JournalError(workloadId, `snapshot at seq ${snap.seq} rejected: the stored snapshot is at seq ${meta.snapshotSeq}`)
      }
      if (snap.epoch < epoch) throw fenced(workloadId, `snapshot at seq ${snap.seq}`, snap.epoch, epoch)
      const oldBase = meta?.snapshotSeq ?? 0
      const lastStored = Math.min(meta?.seq ?? 0, snap.seq)
      for (let s = oldBase + 1; s <= lastStored; s++) ops.push({ type: 'del', key: entryKey(workloadId, s) })
      ops.push({ type: 'put', key: snapshotKey(workloadId), value: snap.value })
      next.epoch = snap.epoch
      next.snapshotSeq = snap.seq
    }
    ops.push({ type: 'put', key: metaKey(workloadId), value: encode(workloadId, metaKey(workloadId), 'head', next) })
    // The next write builds on this head as soon as this one is issued; if this one
    // fails, the head is read back from disk before anything else is written.
    this.heads.set(workloadId, next)
    try {
      await this.write(ops)
    } catch (err) {
      this.heads.delete(workloadId)
      throw err
    }
  }

  /** The head as this instance last wrote it, or as stored (checked) if it has not written this workload yet. */
  private async headForWrite (workloadId: string): Promise<Meta | undefined> {
    return this.heads.get(workloadId) ?? await this.readMeta(workloadId)
  }

  private async write (ops: BatchOp[]): Promise<void> {
    // `sync` is a classic-level option: the sublevel's batch options do not declare
    // it, but it forwards them to the root database, which honours it.
    const options = { keyEncoding: 'utf8', valueEncoding: 'utf8', sync: this.sync }
    await this.db.batch(ops, options)
  }

  private async readMeta (workloadId: string): Promise<Meta | undefined> {
    const key = metaKey(workloadId)
    const raw = await this.db.get(key)
    return raw === undefined ? undefined : decodeMeta(workloadId, key, raw)
  }

  /** Decodes every key of the workload from `gte` on, through one iterator (one consistent view). */
  private async scan (workloadId: string, gte: string): Promise<{ found: boolean, meta?: Meta, snapshot?: SnapshotRecord, entries: JournalEntry[] }> {
    const entries: JournalEntry[] = []
    let meta: Meta | undefined
    let snapshot: SnapshotRecord | undefined
    let found = false
    for await (const [key, raw] of this.db.iterator({ gte, lt: `${workloadId}${AFTER_SEP}` })) {
      found = true
      const seq = seqOfKey(workloadId, key)
      if (seq !== undefined) entries.push(decodeEntry(workloadId, key, seq, raw))
      else if (key === metaKey(workloadId)) meta = decodeMeta(workloadId, key, raw)
      else if (key === snapshotKey(workloadId)) snapshot = decodeSnapshot(workloadId, key, raw)
      else throw new CorruptJournalError(workloadId, key, undefined, 'unexpected key in the journal')
    }
    return { found, meta, snapshot, entries }
  }

  /** Runs `fn` after every earlier write to the same workload has settled. */
  private async exclusive<T> (workloadId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(workloadId) ?? Promise.resolve()
    const run = previous.then(fn)
    const settled = run.then(() => {}, () => {})
    this.queues.set(workloadId, settled)
    try {
      return await run
    } finally {
      if (this.queues.get(workloadId) === settled) this.queues.delete(workloadId)
    }
  }
}

/** The workload ids of the keys `it` walks (`<id>!…`), seeking past each workload's keys. */
async function workloadIds (it: { next: () => Promise<string | undefined>, seek: (target: string) => void, close: () => Promise<void> }): Promise<string[]> {
  const ids: string[] = []
  try {
    for (let key = await it.next(); key !== undefined; key = await it.next()) {
      const end = key.indexOf(SEP)
      if (end <= 0) continue
      const id = key.slice(0, end)
      ids.push(id)
      it.seek(`${id}${AFTER_SEP}`)
    }
  } finally {
    await it.close()
  }
  return ids
}

function checkWorkloadId (workloadId: string): void {
  if (typeof workloadId !== 'string' || !WORKLOAD_ID.test(workloadId)) {
    throw new JournalError(String(workloadId), 'not a workload id (1 to 255 printable ASCII characters, without spaces or "!")')
  }
}

function fenced (workloadId: string, what: string, epoch: number, current: number): JournalError {
  return new JournalError(workloadId, `${what} rejected: epoch ${epoch} is below the journal's epoch ${current} (a deposed owner cannot write)`)
}

function missingHead (workloadId: string): CorruptJournalError {
  return new CorruptJournalError(workloadId, metaKey(workloadId), undefined, 'head record missing while other keys of the workload exist')
}
