/**
 * `beemesh/testing`: replay a stateful workload's recorded trace against its
 * machine in your own tests (see docs/testing.md).
 *
 *   import { loadTrace, assertReplays } from 'beemesh/testing'
 *   import turnstile from '../turnstile.js'
 *
 *   test('turnstile still replays its recorded trace', async () => {
 *     await assertReplays(turnstile.machine, await loadTrace('test/traces/turnstile-0.1.0.jsonl'))
 *   })
 *
 * Replay is deterministic: pure transitions on a simulated clock, no action
 * executed, no invoked or spawned actor started (their recorded results are
 * applied instead); replay.ts says how.
 */
export { assertReplays, DEFAULT_TIMER_TOLERANCE_MS, describeDivergence, loadTrace, parseTrace, replayTrace } from './replay.js'
export { InvalidTraceError } from './errors.js'
export type { Divergence, ReplayedState, ReplayOptions, ReplayResult, TraceEntry, TraceEvent, TraceStatus } from './replay.js'
