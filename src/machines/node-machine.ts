import { assign, fromPromise, setup } from 'xstate'

/**
 * The lifecycle of one mesh node, as pure data: starting → running (isolated or
 * connected, by peer count) → stopping → stopped, or failed. The effects
 * (`startNode`, `stopNode`) are placeholders here and are provided by
 * src/node/node-runtime.ts; this file does no I/O.
 */
export interface NodeMachineContext {
  peerCount: number
  error?: string
}

export type NodeMachineEvent =
  | { type: 'node.peerConnected', peerCount: number }
  | { type: 'node.peerDisconnected', peerCount: number }
  | { type: 'node.stopRequested' }

export const nodeMachine = setup({
  types: {
    context: {} as NodeMachineContext,
    events: {} as NodeMachineEvent
  },
  actors: {
    startNode: fromPromise<void>(async () => {
      throw new Error('startNode must be provided')
    }),
    stopNode: fromPromise<void>(async () => {
      throw new Error('stopNode must be provided')
    })
  },
  guards: {
    hasPeers: ({ event }) => 'peerCount' in event && event.peerCount > 0
  },
  actions: {
    setPeerCount: assign({
      peerCount: ({ event, context }) => 'peerCount' in event ? event.peerCount : context.peerCount
    })
  }
}).createMachine({
  id: 'node',
  context: { peerCount: 0 },
  initial: 'starting',
  states: {
    starting: {
      invoke: {
        src: 'startNode',
        onDone: 'running',
        onError: {
          target: 'failed',
          actions: assign({ error: ({ event }) => event.error instanceof Error ? event.error.message : String(event.error) })
        }
      },
      on: { 'node.stopRequested': 'stopping' }
    },
    running: {
      initial: 'isolated',
      states: {
        isolated: {
          on: {
            'node.peerConnected': { guard: 'hasPeers', target: 'connected', actions: 'setPeerCount' }
          }
        },
        connected: {
          on: {
            'node.peerConnected': { actions: 'setPeerCount' },
            'node.peerDisconnected': [
              { guard: 'hasPeers', actions: 'setPeerCount' },
              { target: 'isolated', actions: 'setPeerCount' }
            ]
          }
        }
      },
      on: { 'node.stopRequested': 'stopping' }
    },
    stopping: {
      invoke: {
        src: 'stopNode',
        onDone: 'stopped',
        onError: {
          target: 'stopped',
          actions: assign({ error: ({ event }) => event.error instanceof Error ? event.error.message : String(event.error) })
        }
      }
    },
    stopped: { type: 'final' },
    failed: { type: 'final' }
  }
})

/** The state value as one dotted word for status output: `running.connected`. */
export function nodeStateName (value: unknown): string {
  if (typeof value === 'string') return value
  if (value != null && typeof value === 'object') {
    const [k, v] = Object.entries(value)[0] ?? []
    return k == null ? '' : `${k}.${nodeStateName(v)}`
  }
  return String(value)
}
