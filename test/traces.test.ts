/**
 * Recorded histories as regression tests: every trace under test/traces/ was
 * recorded from a real run of real nodes (scripts/record-trace.ts: a local
 * mesh of four `beemesh node start` processes, the workload applied with the
 * CLI, the trace taken with `beemesh trace export`) and must replay, with the
 * public API of `beemesh/testing`, against the workload's machine as it is
 * now. A copy tampered with here (one event, or one context value, changed in
 * the middle) must fail, with a divergence at that step.
 *
 * Versions: a trace is `test/traces/<workload>_<version>.jsonl`, `<version>`
 * the first 12 hex digits of the sha256 of the workload's module source (the
 * file applied: examples/turnstile/turnstile.ts, the counter fixture) that
 * produced it, so a file names the definition that recorded it (`sha256sum
 * <file>` shows it). Not the artifact's hash: the bundle carries the paths of
 * its dependencies, so the same code bundles differently in another checkout.
 * A trace stays a test when the code changes: a new version is recorded next
 * to the old ones, and an old trace is removed only with a change that means
 * to alter what the machine does for those events (docs/testing.md,
 * "Recorded traces in this repository").
 *
 * - turnstile (examples/turnstile): coin, push, coin, its 10 s `after` timer,
 *   coin, push, on one owner.
 * - counter (test/fixtures/workloads/machines/counter.ts): three incs, its
 *   owner SIGKILLed, two incs on the new owner at a higher epoch.
 *
 * Container workloads record no trace (only machine workloads have one), so
 * there is none of a pod here.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AssertionError } from 'node:assert'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import type { AnyStateMachine } from 'xstate'
import turnstile from '../examples/turnstile/turnstile.js'
import counter from './fixtures/workloads/machines/counter.js'
import { assertReplays, describeDivergence, parseTrace, replayTrace, type TraceEntry } from '../src/testing/index.js'

const DIR = fileURLToPath(new URL('./traces', import.meta.url))
const FILE_NAME = /^([a-z0-9-]+)_([0-9a-f]{12})\.jsonl$/

/** The workloads whose traces are kept, with their current machines. */
const MACHINES: Record<string, AnyStateMachine> = { turnstile: turnstile.machine, counter: counter.machine }

const files = (await readdir(DIR)).filter(f => f.endsWith('.jsonl')).sort()

async function recorded (file: string): Promise<{ text: string, trace: TraceEntry[], machine: AnyStateMachine }> {
  const workload = FILE_NAME.exec(file)?.[1] ?? ''
  const text = await readFile(join(DIR, file), 'utf8')
  return { text, trace: parseTrace(text, file), machine: MACHINES[workload]! }
}

/** The recorded file with line `index` rewritten by `change`: the tampered copy. */
function tamper (text: string, index: number, change: (entry: TraceEntry) => void): string {
  const lines = text.split('\n').filter(line => line !== '')
  const entry = JSON.parse(lines[index]!) as TraceEntry
  change(entry)
  lines[index] = JSON.stringify(entry)
  return lines.join('\n') + '\n'
}

async function expectDivergence (machine: AnyStateMachine, trace: TraceEntry[], index: number, reason: RegExp): Promise<void> {
  const result = await replayTrace(machine, trace)
  if (result.ok) return assert.unreachable(`the tampered trace replayed (${result.steps} steps)`)
  assert.is(result.divergence.index, index)
  assert.is(result.divergence.step, trace[index]!.seq)
  assert.match(result.divergence.reason, reason)
  assert.match(describeDivergence(result.divergence), new RegExp(`^diverged at seq ${trace[index]!.seq} \\(trace entry ${index}\\)`))
  try {
    await assertReplays(machine, trace)
    assert.unreachable('assertReplays passed a tampered trace')
  } catch (err) {
    assert.instance(err, AssertionError)
    assert.match((err as Error).message, `diverged at seq ${trace[index]!.seq}`)
  }
}

test('test/traces holds versioned traces of every kept workload, one workload each', async () => {
  assert.ok(files.length >= 2, `expected at least 2 traces, found ${files.join(', ')}`)
  for (const file of files) {
    const name = FILE_NAME.exec(file)
    assert.ok(name != null, `${file} is not named <workload>_<12 hex digits of its source's sha256>.jsonl`)
    assert.ok(MACHINES[name[1]!] != null, `${file}: no machine is known for ${name[1]!}; add it to MACHINES`)
    const { trace } = await recorded(file)
    assert.ok(trace.every(e => e.workloadId === `default/${name[1]!}`), `${file} holds another workload's steps`)
    assert.is(trace[0]!.seq, 0, `${file} starts at the workload's start`)
  }
  for (const workload of Object.keys(MACHINES)) assert.ok(files.some(f => f.startsWith(`${workload}_`)), `no recorded trace of ${workload}`)
})

test('the turnstile trace went through its 10 s timer; the counter trace through a failover', async () => {
  for (const file of files) {
    const { trace } = await recorded(file)
    if (file.startsWith('turnstile_')) {
      assert.ok(trace.some(e => e.event.type === 'xstate.after.10000.turnstile.unlocked' && e.sender == null), `${file} has the timer step`)
    }
    if (file.startsWith('counter_')) {
      const first = trace[0]!
      const moved = trace.findIndex(e => e.epoch > first.epoch)
      assert.ok(moved > 0, `${file} has steps at a higher epoch`)
      assert.ok(trace.slice(moved).every(e => e.owner !== first.owner), `${file}: the steps after the failover are another owner's`)
      assert.ok(trace.slice(0, moved).every(e => e.owner === first.owner), `${file}: the steps before it are the first owner's`)
    }
  }
})

for (const file of files) {
  test(`${file} replays against the current machine`, async () => {
    const { trace, machine } = await recorded(file)
    assert.equal(await replayTrace(machine, trace), { ok: true, steps: trace.length })
  })

  test(`${file} with one context value changed in the middle diverges at that step`, async () => {
    const { text, machine } = await recorded(file)
    const index = Math.floor(parseTrace(text).length / 2)
    const tampered = parseTrace(tamper(text, index, (entry) => {
      const context = entry.context as Record<string, unknown>
      const key = Object.keys(context).find(k => typeof context[k] === 'number')!
      context[key] = (context[key] as number) + 1
    }), `${file} (tampered)`)
    await expectDivergence(machine, tampered, index, /a different context/)
  })

  test(`${file} with one event changed diverges at that step`, async () => {
    const { text, trace, machine } = await recorded(file)
    // the last sent event: after the failover, in the counter's trace
    const index = trace.findLastIndex(e => e.sender != null)
    const tampered = parseTrace(tamper(text, index, (entry) => { entry.event = { ...entry.event, type: 'tampered' } }), `${file} (tampered)`)
    await expectDivergence(machine, tampered, index, /does not handle tampered/)
  })
}

test.run()
