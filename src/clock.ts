/**
 * What runs delayed work (an actor's delayed transitions, a detector's probe
 * timeouts): the real timers, or a simulation's virtual clock (sim/engine.ts).
 * XState's own interface, so a machine and plain code share one clock.
 */
import type { ActorOptions, AnyActorLogic } from 'xstate'

export type MachineClock = NonNullable<ActorOptions<AnyActorLogic>['clock']>
