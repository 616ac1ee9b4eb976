import { randomUUID } from 'node:crypto'
import type { Ack, MachineStateReport, TransitionRecord } from '../../protocol/state.js'
import { BeeMeshError, InvalidArgumentError } from '../../errors.js'
import { ApiClient, sseEvents } from '../api-client.js'
import { formatAge, printObject, type OutputFormat } from '../output.js'
import { workloadId, type WorkloadCliOptions } from './workloads.js'

function short (peerId: string): string {
  return peerId.length > 16 ? `…${peerId.slice(-8)}` : peerId
}

/** A state value as one line: `open`, `{"door":"locked"}`. */
function showValue (value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

/** Parses the event argument: JSON `{"type":"inc"}`, or a bare event type `inc` as a shorthand. */
export function parseEvent (text: string): Record<string, unknown> {
  const trimmed = text.trim()
  if (/^[A-Za-z_][\w.:-]*$/.test(trimmed)) return { type: trimmed }
  let value: unknown
  try {
    value = JSON.parse(trimmed)
  } catch (err) {
    throw new InvalidArgumentError(`the event is not valid JSON (${err instanceof Error ? err.message : String(err)}); write it like '{"type":"inc","by":2}' or just an event type`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidArgumentError(`the event must be a JSON object with a string "type", got ${JSON.stringify(value)}`)
  if (typeof (value as { type?: unknown }).type !== 'string' || (value as { type: string }).type === '') throw new InvalidArgumentError('the event needs a string "type", e.g. {"type":"inc"}')
  return value as Record<string, unknown>
}

/** `beemesh send <name> <event>`: applies an event and prints the state it led to once it is durable. */
export async function send (name: string, eventText: string, opts: WorkloadCliOptions & { id?: string, timeout?: string }): Promise<void> {
  const id = workloadId(name)
  const event = parseEvent(eventText)
  const timeoutMs = opts.timeout != null ? Number(opts.timeout) : 15_000
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100) throw new InvalidArgumentError(`--timeout must be a whole number of milliseconds >= 100, got "${opts.timeout}"`)
  const ack = await new ApiClient(opts.api).request<Ack>(`/v1/workloads/${id}/events`, { method: 'POST', body: { event, id: opts.id ?? randomUUID(), timeoutMs }, timeoutMs: timeoutMs + 5_000 })
  if (opts.output === 'json' || opts.output === 'yaml') { printObject(ack as unknown as Record<string, unknown>, opts.output); return }
  process.stdout.write(`${showValue(ack.value)}\n`)
  process.stderr.write(`acknowledged: ${id} seq ${ack.seq} epoch ${ack.epoch} on ${short(ack.owner)}${ack.duplicate === true ? ' (already applied before: same event id)' : ''}${ack.status === 'done' ? `; the machine completed with output ${JSON.stringify(ack.output)}` : ''}\n`)
}

/** `beemesh state <name>`: the machine's state value, context, owner, epoch and sequence. */
export async function state (name: string, opts: WorkloadCliOptions): Promise<void> {
  const id = workloadId(name)
  const s = await new ApiClient(opts.api).request<MachineStateReport>(`/v1/workloads/${id}/state`, { timeoutMs: 20_000 })
  if (opts.output === 'json' || opts.output === 'yaml') { printObject(s as unknown as Record<string, unknown>, opts.output); return }
  printObject({
    Workload: s.workloadId,
    State: showValue(s.value),
    Status: s.status,
    ...(s.output !== undefined ? { Output: JSON.stringify(s.output) } : {}),
    ...(s.error != null ? { Error: s.error } : {}),
    Context: JSON.stringify(s.context),
    Owner: s.owner,
    Epoch: s.epoch,
    Sequence: s.seq,
    Durability: s.durability,
    Holders: s.holders.length > 0 ? s.holders.join(', ') : '-',
    'Owned for': formatAge(Date.now() - s.startedAt)
  }, 'table')
}

function printTransition (t: TransitionRecord, format: OutputFormat | 'wide'): void {
  if (format === 'json') { process.stdout.write(JSON.stringify(t) + '\n'); return }
  const type = typeof (t.event as { type?: unknown })?.type === 'string' ? (t.event as { type: string }).type : JSON.stringify(t.event)
  process.stdout.write(`${new Date(t.ts).toISOString()}  #${t.seq} e${t.epoch}  ${type} → ${showValue(t.value)}\n`)
}

/** `beemesh trace <name> [-f]`: the machine's recent transitions, then (with -f) each one as it becomes durable. */
export async function trace (name: string, opts: WorkloadCliOptions & { follow: boolean }): Promise<void> {
  const id = workloadId(name)
  const client = new ApiClient(opts.api)
  if (!opts.follow) {
    const recent = await client.request<TransitionRecord[]>(`/v1/workloads/${id}/trace`, { timeoutMs: 20_000 })
    for (const t of recent) printTransition(t, opts.output)
    return
  }
  const res = await client.fetch(`/v1/workloads/${id}/trace?follow=true`)
  if (!res.ok || res.body == null) {
    const body = await res.json().catch(() => undefined) as { error?: string } | undefined
    throw new BeeMeshError(`cannot trace ${id}: ${body?.error ?? `HTTP ${res.status}`}`)
  }
  for await (const { event, data } of sseEvents(res.body)) {
    if (event === 'transition' && data != null) printTransition(JSON.parse(data) as TransitionRecord, opts.output)
  }
}

/** `beemesh trace export <name>`: the whole trace as JSONL on stdout (for `replayTrace` in tests), a summary on stderr. */
export async function exportTrace (name: string, opts: WorkloadCliOptions): Promise<void> {
  const id = workloadId(name)
  const res = await new ApiClient(opts.api).fetch(`/v1/workloads/${id}/trace/export`)
  const text = await res.text()
  if (!res.ok) {
    let message = `HTTP ${res.status}`
    try { message = (JSON.parse(text) as { error?: string }).error ?? message } catch {}
    throw new BeeMeshError(`cannot export the trace of ${id}: ${message}`)
  }
  process.stdout.write(text)
  const records = text.split('\n').filter(line => line !== '').map(line => JSON.parse(line) as { seq: number, epoch: number })
  const first = records[0]
  const last = records.at(-1)
  const sources = res.headers.get('x-beemesh-trace-sources')
  if (first != null && last != null) {
    process.stderr.write(`exported ${records.length} steps of ${id}: seq ${first.seq}..${last.seq}, epoch ${first.epoch}${last.epoch !== first.epoch ? `..${last.epoch}` : ''}${sources != null ? `, gathered from ${sources} node${sources === '1' ? '' : 's'}` : ''}\n`)
  }
}
