import { assign, setup } from 'xstate'

/**
 * The chaos counters' machine: counts `inc` events (by `by`, default 1). Its
 * context stays small (no list of ids) so snapshots stay cheap under load;
 * the ids of applied events are read back from the workload's trace.
 */
export const counterMachine = setup({
  types: {} as {
    context: { count: number }
    events: { type: 'inc', by?: number } | { type: 'finish' }
  }
}).createMachine({
  id: 'chaos-counter',
  initial: 'counting',
  context: { count: 0 },
  states: {
    counting: {
      on: {
        inc: { actions: assign({ count: ({ context, event }) => context.count + (event.by ?? 1) }) },
        finish: 'done'
      }
    },
    done: { type: 'final' }
  },
  output: ({ context }) => ({ total: context.count })
})
