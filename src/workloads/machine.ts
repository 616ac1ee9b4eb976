import type { MachineLogic } from './types.js'

/**
 * Structurally an XState v5 machine (`setup(...).createMachine(...)`): what
 * createActor needs of it. Checked by shape, not `instanceof`, because a
 * workload bundle carries its own copy of xstate.
 */
export function isMachine (value: unknown): value is MachineLogic {
  if (typeof value !== 'object' || value === null) return false
  const m = value as Record<string, unknown>
  return typeof m.transition === 'function' && typeof m.getInitialSnapshot === 'function' && typeof m.getPersistedSnapshot === 'function' && typeof m.config === 'object'
}
