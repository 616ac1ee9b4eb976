/**
 * The principal an API request is served for, carried through the calls it
 * makes (AsyncLocalStorage): the workload plane signs an unsigned manifest for
 * it (the node vouching for the deployer it authenticated) and sends events
 * in its name, without every layer passing it along. The request's bearer
 * token rides along too: a node that asks another node to act for the
 * deployer (a service call, a replica stop, logs) relays it as proof
 * (src/policy/relay.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { Principal } from './engine.js'

interface RequestContext { principal: Principal, bearer?: string }

const context = new AsyncLocalStorage<RequestContext>()

export function asPrincipal<T> (principal: Principal, fn: () => T): T {
  return context.run({ principal }, fn)
}

/** The principal of the API request being served, if any. */
export function currentPrincipal (): Principal | undefined {
  return context.getStore()?.principal
}

/** Remembers the bearer token (from an `Authorization: Bearer …` header) the current request was authenticated with. */
export function attachBearer (authorization: string | undefined): void {
  const store = context.getStore()
  const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')
  if (store != null && m != null) store.bearer = m[1]
}

/** The bearer token of the API request being served, if it came with one. */
export function currentBearer (): string | undefined {
  return context.getStore()?.bearer
}
