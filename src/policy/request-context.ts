/**
 * The principal an API request is served for, carried through the calls it
 * makes (AsyncLocalStorage): the workload plane signs an unsigned manifest for
 * it (the node vouching for the deployer it authenticated) and sends events
 * in its name, without every layer passing it along.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Principal } from './engine.js'

const context = new AsyncLocalStorage<Principal>()

export function asPrincipal<T> (principal: Principal, fn: () => T): T {
  return context.run(principal, fn)
}

/** The principal of the API request being served, if any. */
export function currentPrincipal (): Principal | undefined {
  return context.getStore()
}
