/**
 * Replays a trace recorded from a real run of this workload, the way you
 * would in your own tests: if a change to the machine makes it take another
 * path for the same events, this test names the step where it diverges.
 *
 * The trace was recorded on a local mesh (`beemesh up`):
 *
 *   beemesh apply examples/turnstile/turnstile.ts
 *   beemesh send turnstile coin; beemesh send turnstile push
 *   beemesh send turnstile coin            # …then 10 s without a push: locked again
 *   beemesh send turnstile coin; beemesh send turnstile push
 *   beemesh trace export turnstile > examples/turnstile/turnstile.trace.jsonl
 *
 * `npm test` runs it with the rest of the suite.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createMachine } from 'xstate'
import { assertReplays, loadTrace, replayTrace } from 'beemesh/testing'
import turnstile from './turnstile.js'

const TRACE = new URL('./turnstile.trace.jsonl', import.meta.url).pathname

test('the turnstile replays its recorded trace, the 10 s timer included, instantly', async () => {
  const trace = await loadTrace(TRACE)
  assert.ok(trace.some(step => (step.event as { type: string }).type.startsWith('xstate.after.')), 'the recording has a timer step')
  await assertReplays(turnstile.machine, trace)
})

test('a turnstile that forgets to count passes diverges at the first push', async () => {
  const trace = await loadTrace(TRACE)
  // the same machine, but a push no longer counts a pass
  const broken = createMachine({
    ...turnstile.machine.config,
    states: {
      ...turnstile.machine.config.states,
      unlocked: { ...turnstile.machine.config.states!.unlocked, on: { push: { target: 'locked' } } }
    }
  })
  const result = await replayTrace(broken, trace)
  const firstPush = trace.find(step => (step.event as { type: string }).type === 'push')!
  if (result.ok) assert.unreachable('the broken machine must diverge')
  else {
    assert.is(result.divergence.step, firstPush.seq)
    assert.equal(result.divergence.expected.context, { coins: 1, passes: 1 })
    assert.equal(result.divergence.actual.context, { coins: 1, passes: 0 })
  }
})

test.run()
