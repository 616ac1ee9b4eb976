import { and, assign, emit, enqueueActions, fromPromise, setup } from 'xstate'
import type { ContainerSpec, ImagePullPolicy, RestartBackoff, RestartPolicy } from '../workloads/types.js'

/**
 * The lifecycle of one container replica (a one-container pod), as pure data.
 * Every effect is an actor the runtime provides with
 * `podMachine.provide({ actors })`; time is the `backOff` delay (so a
 * SimulatedClock drives the tests) and the `now` input.
 *
 *   Pending ──▶ ContainerCreating ──▶ Running ──exit──▶ Succeeded  (policy says done)
 *   (pull)      creating → starting     (wait)    ├───▶ Failed     (policy says give up)
 *                            ▲                    └───▶ CrashLoopBackOff ──after backOff──┐
 *                            └────────────────────────────────────────────────────────────┘
 *   adoption: Pending ──▶ Running (container running) or straight to the policy decision (exited)
 *   STOP in ContainerCreating, Running, CrashLoopBackOff ──▶ Terminating (stop → remove) ──▶ Terminated
 *   STOP in Pending (no container yet) ──▶ Terminated
 *
 * - A restart starts the SAME container again (`docker start`), so its logs stay:
 *   after the back-off the machine goes to `ContainerCreating.starting`, which
 *   skips `createContainer`. `ContainerCreating` therefore means "a start is in
 *   flight", for a first start and a restart alike.
 * - A failed start (`PortInUse`, …) is a failed run: it goes through the
 *   restart policy like a non-zero exit, with no exit code.
 * - `EngineUnavailable` from any engine call ends in `Failed` with
 *   `nodeFault: true`, whatever the policy: the runtime reschedules the
 *   replica elsewhere.
 * - STOP while the container is being created waits for `createContainer`, so
 *   the new container is stopped and removed rather than leaked. With no
 *   container at all, STOP goes straight to `Terminated`.
 * - An adopted exited container is decided by `adopt.exitCode` when the
 *   runtime knows it; otherwise the exit counts as unknown (reason
 *   `ContainerStatusUnknown`, not a success): Always and OnFailure restart it
 *   after `initialMs`, Never fails it.
 * - Pulling is told when entering `Pending` only under `imagePullPolicy:
 *   Always` (sure to pull); otherwise together with Pulled once `ensureImage`
 *   says `{ pulled: true }`, or Pulled ("already present on machine", as the kubelet says) when it did not pull.
 * - `Pending` and `ContainerCreating` have substates; the top-level state is
 *   always one of {@link POD_STATES}, read it with {@link podStateName}.
 */

export type PodStateName =
  | 'Pending'
  | 'ContainerCreating'
  | 'Running'
  | 'CrashLoopBackOff'
  | 'Succeeded'
  | 'Failed'
  | 'Terminating'
  | 'Terminated'

export const POD_STATES: readonly PodStateName[] = [
  'Pending', 'ContainerCreating', 'Running', 'CrashLoopBackOff', 'Succeeded', 'Failed', 'Terminating', 'Terminated'
]

/** An existing container the runtime found (after a node restart) and hands to a new machine. */
export interface PodAdoption {
  containerId: string
  running: boolean
  /** Restarts before adoption; counting goes on from here. */
  restarts?: number
  /** For an exited container, its exit code when the engine still knows it. */
  exitCode?: number
  oomKilled?: boolean
}

export interface PodInput {
  spec: ContainerSpec
  /** Name of the container to create. */
  name: string
  adopt?: PodAdoption
  /** The clock for run durations (the back-off reset); default `Date.now`. Not persisted. */
  now?: () => number
}

export interface PodContext {
  spec: ContainerSpec
  name: string
  /** Set once created (or adopted); the runtime removes the container of a final pod with it. */
  containerId?: string
  /** Restarts done, as `kubectl get pods` counts them. */
  restarts: number
  /** Of the last exit; absent when the last run never started or its exit is unknown. */
  exitCode?: number
  /** Why the last run or step ended: Completed, Error, OOMKilled, ErrImagePull, PortInUse, EngineUnavailable… */
  reason?: string
  message?: string
  /** In CrashLoopBackOff: the delay being waited. Otherwise: the delay of the next back-off. */
  backoffMs: number
  lastStartedAt?: number
  /** How long the last run lasted (0 when it did not start or is unknown); decides the back-off reset. */
  lastRunMs?: number
  /** The engine went away: the replica failed because of its node, not of itself. */
  nodeFault: boolean
  adopt?: PodAdoption
  /** STOP arrived while `createContainer` was in flight. */
  stopRequested?: boolean
  /** From STOP: overrides `spec.terminationGracePeriodSeconds`. */
  graceSeconds?: number
  now?: () => number
}

/** STOP stops and removes the container; `graceSeconds` overrides the spec's terminationGracePeriodSeconds. */
export type PodMachineEvent = { type: 'STOP', graceSeconds?: number }

/** Emitted (`actor.on('pod.event', …)`) at each step, for `beemesh describe`. */
export interface PodEvent {
  type: 'pod.event'
  kind: 'Normal' | 'Warning'
  reason: string
  message: string
}

/** How an engine call fails: `reason` is machine-readable (`ErrImagePull`, `PortInUse`, `EngineUnavailable`…). */
export interface EngineError {
  reason?: string
  message: string
}

export interface EnsureImageInput { image: string, pullPolicy: ImagePullPolicy }
/** `pulled: false` when the image was already present; void when the runtime does not say. */
export type EnsureImageOutput = { pulled: boolean } | void
export interface CreateContainerInput { name: string, spec: ContainerSpec }
export interface ContainerRef { containerId: string }
export interface StopContainerInput { containerId: string, graceSeconds: number }
/** What `waitContainer` resolves with once the container stops. */
export interface ContainerExit { exitCode: number, oomKilled: boolean }

/** How a run ended: it exited, it failed to start (or was lost track of), or nobody saw it end. */
export type RunOutcome =
  | { kind: 'exited', exitCode: number, oomKilled: boolean }
  | { kind: 'failed', stage: 'start' | 'wait', reason: string, message: string }
  | { kind: 'unknown' }

export type RestartDecision = 'succeed' | 'restart' | 'fail'

/**
 * Kubernetes' restart policy. Only a clean exit (code 0, not OOM-killed)
 * succeeds; a failed start and an unknown exit count as failures.
 */
export function decideRestart (policy: RestartPolicy, outcome: RunOutcome): RestartDecision {
  if (policy === 'Always') return 'restart'
  const clean = outcome.kind === 'exited' && outcome.exitCode === 0 && !outcome.oomKilled
  if (clean) return 'succeed'
  return policy === 'OnFailure' ? 'restart' : 'fail'
}

/** The delay of the back-off about to start: reset to `initialMs` after a run of at least `resetAfterMs`. */
export function backoffDelay (backoff: RestartBackoff, currentMs: number, lastRunMs: number): number {
  const base = lastRunMs >= backoff.resetAfterMs ? backoff.initialMs : currentMs
  return Math.min(base, backoff.maxMs)
}

/** The delay of the back-off after this one. */
export function nextBackoff (backoff: RestartBackoff, currentMs: number): number {
  return Math.min(currentMs * 2, backoff.maxMs)
}

/** `400ms`, `10s`, `1m20s`, `5m0s`: Go's durations, as kubectl prints them. */
export function formatDuration (ms: number): string {
  const whole = Math.max(0, Math.round(ms))
  if (whole < 1000) return `${whole}ms`
  const seconds = whole / 1000
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  const rest = Math.round((seconds - minutes * 60) * 1000) / 1000
  if (minutes < 60) return `${minutes}m${rest}s`
  return `${Math.floor(minutes / 60)}h${minutes % 60}m${rest}s`
}

function formatBytes (bytes: number): string {
  const units: Array<[string, number]> = [['Gi', 1024 ** 3], ['Mi', 1024 ** 2], ['Ki', 1024]]
  for (const [unit, size] of units) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`
  }
  return `${bytes} bytes`
}

export function engineError (err: unknown): EngineError {
  const reason = err != null && typeof err === 'object' && typeof (err as { reason?: unknown }).reason === 'string'
    ? (err as { reason: string }).reason
    : undefined
  const message = err instanceof Error
    ? err.message
    : err != null && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string'
      ? (err as { message: string }).message
      : String(err)
  return reason != null ? { reason, message } : { message }
}

function isEngineLost (err: unknown): boolean {
  return engineError(err).reason === 'EngineUnavailable'
}

function now (context: PodContext): number {
  return (context.now ?? Date.now)()
}

interface AnyEvent { type: string, output?: unknown, error?: unknown }

/**
 * How the run ended, from the event that says so: the `wait` actor's result,
 * a `start` or `wait` failure, or, for an adopted exited container (the
 * initial decision, no such event), what the adoption says.
 */
export function runOutcome (context: PodContext, event: AnyEvent): RunOutcome {
  switch (event.type) {
    case 'xstate.done.actor.wait': {
      const exit = event.output as Partial<ContainerExit> | undefined
      if (exit == null || !Number.isInteger(exit.exitCode)) return { kind: 'unknown' }
      return { kind: 'exited', exitCode: exit.exitCode as number, oomKilled: exit.oomKilled === true }
    }
    case 'xstate.error.actor.start': {
      const e = engineError(event.error)
      return { kind: 'failed', stage: 'start', reason: e.reason ?? 'RunContainerError', message: e.message }
    }
    case 'xstate.error.actor.wait': {
      const e = engineError(event.error)
      return { kind: 'failed', stage: 'wait', reason: e.reason ?? 'ContainerStatusUnknown', message: e.message }
    }
    default: {
      const adopt = context.adopt
      if (adopt?.exitCode == null || !Number.isInteger(adopt.exitCode)) return { kind: 'unknown' }
      return { kind: 'exited', exitCode: adopt.exitCode, oomKilled: adopt.oomKilled === true }
    }
  }
}

function outcomeEvent (context: PodContext, outcome: RunOutcome): PodEvent {
  const name = context.name
  switch (outcome.kind) {
    case 'exited': {
      if (outcome.oomKilled) {
        const limit = context.spec.limits.memoryBytes
        return {
          type: 'pod.event',
          kind: 'Warning',
          reason: 'OOMKilled',
          message: `Container ${name} was killed: out of memory${limit != null ? ` (limit ${formatBytes(limit)})` : ''}, exit code ${outcome.exitCode}`
        }
      }
      if (outcome.exitCode === 0) {
        return { type: 'pod.event', kind: 'Normal', reason: 'Completed', message: `Container ${name} completed (exit code 0)` }
      }
      return { type: 'pod.event', kind: 'Warning', reason: 'Failed', message: `Container ${name} exited with code ${outcome.exitCode}` }
    }
    case 'failed':
      return {
        type: 'pod.event',
        kind: 'Warning',
        reason: 'Failed',
        message: outcome.stage === 'start'
          ? `Error: failed to start container "${name}": ${outcome.message}`
          : `Error: lost track of container "${name}": ${outcome.message}`
      }
    case 'unknown':
      return { type: 'pod.event', kind: 'Warning', reason: 'Failed', message: `Container ${name} exited while unsupervised; exit code unknown` }
  }
}

function outcomeFields (context: PodContext, outcome: RunOutcome): Partial<PodContext> {
  switch (outcome.kind) {
    case 'exited': {
      const ran = context.lastStartedAt != null ? Math.max(0, now(context) - context.lastStartedAt) : 0
      const reason = outcome.oomKilled ? 'OOMKilled' : outcome.exitCode === 0 ? 'Completed' : 'Error'
      return { exitCode: outcome.exitCode, reason, message: `exited with code ${outcome.exitCode}`, lastRunMs: ran }
    }
    case 'failed':
      return { exitCode: undefined, reason: outcome.reason, message: outcome.message, lastRunMs: 0 }
    case 'unknown':
      return { exitCode: undefined, reason: 'ContainerStatusUnknown', message: 'exited while unsupervised; exit code unknown', lastRunMs: 0 }
  }
}

function warning (reason: string, message: string): PodEvent {
  return { type: 'pod.event', kind: 'Warning', reason, message }
}

function normal (reason: string, message: string): PodEvent {
  return { type: 'pod.event', kind: 'Normal', reason, message }
}

function pulling (context: PodContext): PodEvent {
  return normal('Pulling', `Pulling image "${context.spec.image}"`)
}

type Failure = 'pull' | 'create' | 'engine'

function failureEvent (context: PodContext, err: unknown, stage: Failure): PodEvent {
  const e = engineError(err)
  if (e.reason === 'EngineUnavailable' || stage === 'engine') return warning('Failed', `Container engine unavailable: ${e.message}`)
  if (stage === 'pull') return warning('Failed', `Failed to pull image "${context.spec.image}": ${e.message}`)
  return warning('Failed', `Error: failed to create container "${context.name}": ${e.message}`)
}

export const podMachine = setup({
  types: {
    input: {} as PodInput,
    context: {} as PodContext,
    events: {} as PodMachineEvent,
    emitted: {} as PodEvent
  },
  actors: {
    ensureImage: fromPromise<EnsureImageOutput, EnsureImageInput>(async () => {
      throw new Error('ensureImage must be provided')
    }),
    createContainer: fromPromise<ContainerRef, CreateContainerInput>(async () => {
      throw new Error('createContainer must be provided')
    }),
    startContainer: fromPromise<void, ContainerRef>(async () => {
      throw new Error('startContainer must be provided')
    }),
    waitContainer: fromPromise<ContainerExit, ContainerRef>(async () => {
      throw new Error('waitContainer must be provided')
    }),
    stopContainer: fromPromise<void, StopContainerInput>(async () => {
      throw new Error('stopContainer must be provided')
    }),
    removeContainer: fromPromise<void, ContainerRef>(async () => {
      throw new Error('removeContainer must be provided')
    })
  },
  delays: {
    backOff: ({ context }) => context.backoffMs
  },
  guards: {
    adopted: ({ context }) => context.adopt != null,
    adoptedRunning: ({ context }) => context.adopt?.running === true,
    stopRequested: ({ context }) => context.stopRequested === true,
    engineLost: ({ event }) => isEngineLost((event as AnyEvent).error),
    policy: ({ context, event }, params: { decision: RestartDecision }) =>
      decideRestart(context.spec.restartPolicy, runOutcome(context, event as AnyEvent)) === params.decision
  },
  actions: {
    /** Only `Always` is sure to pull; with `IfNotPresent` Pulling is told once the pull is known to have happened. */
    emitPulling: enqueueActions(({ context, enqueue }) => {
      if (context.spec.imagePullPolicy === 'Always') enqueue.emit(pulling(context))
    }),
    emitImageReady: enqueueActions(({ context, event, enqueue }) => {
      const out = (event as AnyEvent).output as { pulled?: unknown } | undefined
      if (out?.pulled !== true) {
        enqueue.emit(normal('Pulled', `Container image "${context.spec.image}" already present on machine`))
        return
      }
      if (context.spec.imagePullPolicy !== 'Always') enqueue.emit(pulling(context))
      enqueue.emit(normal('Pulled', `Successfully pulled image "${context.spec.image}"`))
    }),
    recordFailure: assign(({ event }, params: { defaultReason: string }) => {
      const e = engineError((event as AnyEvent).error)
      const reason = e.reason ?? params.defaultReason
      return { reason, message: e.message, nodeFault: reason === 'EngineUnavailable' }
    }),
    emitFailure: emit(({ context, event }, params: { stage: Failure }) => failureEvent(context, (event as AnyEvent).error, params.stage)),
    recordCreated: assign({
      containerId: ({ event }) => ((event as AnyEvent).output as ContainerRef).containerId
    }),
    emitCreated: emit(({ context }) => normal('Created', `Created container ${context.name}`)),
    requestStop: assign({ stopRequested: true }),
    recordGrace: assign(({ event }) => event.type === 'STOP' && event.graceSeconds != null && Number.isFinite(event.graceSeconds) && event.graceSeconds >= 0
      ? { graceSeconds: event.graceSeconds }
      : {}),
    recordStarted: assign(({ context }) => ({ lastStartedAt: now(context) })),
    emitStarted: emit(({ context }) => normal('Started', `Started container ${context.name}`)),
    recordOutcome: assign(({ context, event }) => outcomeFields(context, runOutcome(context, event as AnyEvent))),
    emitOutcome: emit(({ context, event }) => outcomeEvent(context, runOutcome(context, event as AnyEvent))),
    recordAdoptedRunning: assign(({ context }) => ({ lastStartedAt: now(context) })),
    scheduleBackOff: assign(({ context }) => ({
      backoffMs: backoffDelay(context.spec.backoff, context.backoffMs, context.lastRunMs ?? 0)
    })),
    emitBackOff: emit(({ context }) => {
      const failed = context.reason !== 'Completed'
      const detail = context.exitCode != null ? `exit code ${context.exitCode}` : context.reason ?? 'exit code unknown'
      return warning('BackOff', `Back-off ${formatDuration(context.backoffMs)} restarting ${failed ? 'failed ' : ''}container (restart ${context.restarts + 1}, ${detail})`)
    }),
    countRestart: assign(({ context }) => ({
      restarts: context.restarts + 1,
      backoffMs: nextBackoff(context.spec.backoff, context.backoffMs)
    })),
    emitKilling: emit(({ context }) => normal('Killing', `Stopping container ${context.name}`)),
    recordTerminationError: assign(({ context, event }, params: { step: 'stop' | 'remove' }) => {
      const text = `${params.step} failed: ${engineError((event as AnyEvent).error).message}`
      return { message: context.message?.startsWith('stop failed: ') === true ? `${context.message}; ${text}` : text }
    }),
    emitTerminationError: emit(({ context, event }, params: { step: 'stop' | 'remove' }) =>
      warning('FailedKillPod', `error ${params.step === 'stop' ? 'killing' : 'removing'} container ${context.name}: ${engineError((event as AnyEvent).error).message}`))
  }
}).createMachine({
  id: 'pod',
  context: ({ input }) => ({
    spec: input.spec,
    name: input.name,
    restarts: input.adopt?.restarts ?? 0,
    backoffMs: Math.min(input.spec.backoff.initialMs, input.spec.backoff.maxMs),
    nodeFault: false,
    ...(input.adopt != null ? { adopt: input.adopt, containerId: input.adopt.containerId } : {}),
    ...(input.now != null ? { now: input.now } : {})
  }),
  initial: 'Pending',
  states: {
    Pending: {
      initial: 'admitting',
      states: {
        /** Transient: an adopted container skips the pull; anything else pulls. */
        admitting: {
          always: [
            { guard: 'adoptedRunning', target: '#pod.Running', actions: 'recordAdoptedRunning' },
            { guard: and(['adopted', { type: 'policy', params: { decision: 'succeed' as const } }]), target: '#pod.Succeeded', actions: ['recordOutcome', 'emitOutcome'] },
            { guard: and(['adopted', { type: 'policy', params: { decision: 'restart' as const } }]), target: '#pod.CrashLoopBackOff', actions: ['recordOutcome', 'emitOutcome'] },
            { guard: 'adopted', target: '#pod.Failed', actions: ['recordOutcome', 'emitOutcome'] },
            { target: 'pulling' }
          ]
        },
        pulling: {
          entry: 'emitPulling',
          invoke: {
            id: 'image',
            src: 'ensureImage',
            input: ({ context }) => ({ image: context.spec.image, pullPolicy: context.spec.imagePullPolicy }),
            onDone: { target: '#pod.ContainerCreating', actions: 'emitImageReady' },
            onError: {
              target: '#pod.Failed',
              actions: [
                { type: 'recordFailure', params: { defaultReason: 'ErrImagePull' } },
                { type: 'emitFailure', params: { stage: 'pull' } }
              ]
            }
          }
        }
      },
      on: { STOP: '#pod.Terminated' }
    },
    ContainerCreating: {
      initial: 'creating',
      states: {
        creating: {
          invoke: {
            id: 'create',
            src: 'createContainer',
            input: ({ context }) => ({ name: context.name, spec: context.spec }),
            onDone: [
              { guard: 'stopRequested', target: '#pod.Terminating', actions: 'recordCreated' },
              { target: 'starting', actions: ['recordCreated', 'emitCreated'] }
            ],
            onError: [
              { guard: 'stopRequested', target: '#pod.Terminated' },
              {
                target: '#pod.Failed',
                actions: [
                  { type: 'recordFailure', params: { defaultReason: 'CreateContainerError' } },
                  { type: 'emitFailure', params: { stage: 'create' } }
                ]
              }
            ]
          },
          // the container id arrives with createContainer's result: wait for it, then stop
          on: { STOP: { actions: ['requestStop', 'recordGrace'] } }
        },
        starting: {
          invoke: {
            id: 'start',
            src: 'startContainer',
            input: ({ context }) => ({ containerId: context.containerId as string }),
            onDone: { target: '#pod.Running', actions: ['recordStarted', 'emitStarted'] },
            onError: [
              {
                guard: 'engineLost',
                target: '#pod.Failed',
                actions: [
                  { type: 'recordFailure', params: { defaultReason: 'EngineUnavailable' } },
                  { type: 'emitFailure', params: { stage: 'engine' } }
                ]
              },
              { guard: { type: 'policy', params: { decision: 'restart' } }, target: '#pod.CrashLoopBackOff', actions: ['recordOutcome', 'emitOutcome'] },
              { target: '#pod.Failed', actions: ['recordOutcome', 'emitOutcome'] }
            ]
          },
          on: { STOP: { target: '#pod.Terminating', actions: 'recordGrace' } }
        }
      }
    },
    Running: {
      invoke: {
        id: 'wait',
        src: 'waitContainer',
        input: ({ context }) => ({ containerId: context.containerId as string }),
        onDone: [
          { guard: { type: 'policy', params: { decision: 'succeed' } }, target: 'Succeeded', actions: ['recordOutcome', 'emitOutcome'] },
          { guard: { type: 'policy', params: { decision: 'restart' } }, target: 'CrashLoopBackOff', actions: ['recordOutcome', 'emitOutcome'] },
          { target: 'Failed', actions: ['recordOutcome', 'emitOutcome'] }
        ],
        onError: [
          {
            guard: 'engineLost',
            target: 'Failed',
            actions: [
              { type: 'recordFailure', params: { defaultReason: 'EngineUnavailable' } },
              { type: 'emitFailure', params: { stage: 'engine' } }
            ]
          },
          { guard: { type: 'policy', params: { decision: 'restart' } }, target: 'CrashLoopBackOff', actions: ['recordOutcome', 'emitOutcome'] },
          { target: 'Failed', actions: ['recordOutcome', 'emitOutcome'] }
        ]
      },
      on: { STOP: { target: 'Terminating', actions: 'recordGrace' } }
    },
    CrashLoopBackOff: {
      entry: ['scheduleBackOff', 'emitBackOff'],
      after: {
        backOff: { target: '#pod.ContainerCreating.starting', actions: 'countRestart' }
      },
      on: { STOP: { target: 'Terminating', actions: 'recordGrace' } }
    },
    Terminating: {
      entry: 'emitKilling',
      initial: 'stopping',
      states: {
        stopping: {
          invoke: {
            id: 'stop',
            src: 'stopContainer',
            input: ({ context }) => ({ containerId: context.containerId as string, graceSeconds: context.graceSeconds ?? context.spec.terminationGracePeriodSeconds }),
            onDone: 'removing',
            onError: {
              target: 'removing',
              actions: [
                { type: 'recordTerminationError', params: { step: 'stop' } },
                { type: 'emitTerminationError', params: { step: 'stop' } }
              ]
            }
          }
        },
        removing: {
          invoke: {
            id: 'remove',
            src: 'removeContainer',
            input: ({ context }) => ({ containerId: context.containerId as string }),
            onDone: '#pod.Terminated',
            onError: {
              target: '#pod.Terminated',
              actions: [
                { type: 'recordTerminationError', params: { step: 'remove' } },
                { type: 'emitTerminationError', params: { step: 'remove' } }
              ]
            }
          }
        }
      }
    },
    Succeeded: { type: 'final' },
    Failed: { type: 'final' },
    Terminated: { type: 'final' }
  }
})

/** The top-level state of a snapshot's value: `{ Pending: 'pulling' }` → `Pending`. */
export function podStateName (value: unknown): PodStateName {
  const name = typeof value === 'string' ? value : value != null && typeof value === 'object' ? Object.keys(value)[0] : undefined
  return POD_STATES.includes(name as PodStateName) ? name as PodStateName : 'Pending'
}

/** The final states: the machine is done, the runtime removes what is left. */
export function isFinal (state: PodStateName | { value: unknown }): boolean {
  const name = typeof state === 'string' ? state : podStateName(state.value)
  return name === 'Succeeded' || name === 'Failed' || name === 'Terminated'
}

export interface PodPhase {
  /** The top-level state, as `beemesh get` shows it. */
  phase: PodStateName
  /** Why, when it matters: the last exit of a crash loop (Error, OOMKilled, PortInUse…), Completed, or why it failed. */
  reason?: string
  /** `Failed/ErrImagePull`, `CrashLoopBackOff`, `Running`: one word for a table cell. */
  display: string
}

/** How to show a pod: works on a live or a persisted snapshot. */
export function podPhase (snapshot: { value: unknown, context: Pick<PodContext, 'reason'> }): PodPhase {
  const phase = podStateName(snapshot.value)
  const reason = phase === 'CrashLoopBackOff'
    ? snapshot.context.reason
    : phase === 'Succeeded'
      ? 'Completed'
      : phase === 'Failed'
        ? snapshot.context.reason ?? 'Error'
        : undefined
  return {
    phase,
    ...(reason != null ? { reason } : {}),
    display: phase === 'Failed' ? `Failed/${reason ?? 'Error'}` : phase
  }
}
