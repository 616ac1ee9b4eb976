/**
 * A stateful workload: a turnstile. A coin unlocks it, a push (or 10 s
 * without one) locks it again, and `retire` ends it, with the takings as
 * its output. Its state lives only as long as the workload: journaled on the
 * owner and two holders while it runs, erased everywhere when it completes.
 *
 *   beemesh apply examples/turnstile/turnstile.ts
 *   beemesh send turnstile coin          # → unlocked
 *   beemesh state turnstile
 *   beemesh trace turnstile -f
 */
import { assign, setup } from 'xstate'
import { defineWorkload } from 'beemesh'

const machine = setup({
  types: {} as {
    context: { coins: number, passes: number }
    events: { type: 'coin' } | { type: 'push' } | { type: 'retire' }
  }
}).createMachine({
  id: 'turnstile',
  initial: 'locked',
  context: { coins: 0, passes: 0 },
  states: {
    locked: {
      on: {
        coin: { target: 'unlocked', actions: assign({ coins: ({ context }) => context.coins + 1 }) },
        retire: 'retired'
      }
    },
    unlocked: {
      on: { push: { target: 'locked', actions: assign({ passes: ({ context }) => context.passes + 1 }) } },
      after: { 10_000: 'locked' }
    },
    retired: { type: 'final' }
  },
  output: ({ context }) => ({ coins: context.coins, passes: context.passes })
})

export default defineWorkload({ name: 'turnstile', kind: 'stateful', machine })
