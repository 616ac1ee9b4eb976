import { BeeMeshError } from '../errors.js'

/**
 * Why a call failed. `UNKNOWN_SERVICE`: no workload offers it;
 * `NO_HEALTHY_REPLICA`: none is running and answering its probe; `TIMEOUT`:
 * the call's time ran out; `DENIED`: the policy refused it (at the caller's
 * node or the callee's); `TOO_LARGE`: the request exceeds the limit;
 * `UNAVAILABLE`: the replicas tried could not be reached or vanished
 * mid-call; `FAILED`: the called handler threw (its message follows).
 */
export type CallErrorCode = 'UNKNOWN_SERVICE' | 'NO_HEALTHY_REPLICA' | 'TIMEOUT' | 'DENIED' | 'TOO_LARGE' | 'UNAVAILABLE' | 'FAILED' | 'BAD_REQUEST'

export const CALL_ERROR_CODES: readonly CallErrorCode[] = ['UNKNOWN_SERVICE', 'NO_HEALTHY_REPLICA', 'TIMEOUT', 'DENIED', 'TOO_LARGE', 'UNAVAILABLE', 'FAILED', 'BAD_REQUEST']

export class CallError extends BeeMeshError {
  /** The message without the `call to <service>: ` prefix. */
  readonly detail: string
  /** Whether the call may have run on a replica (false: safe to retry on another, idempotent or not). */
  readonly ran: boolean

  constructor (readonly code: CallErrorCode, readonly service: string, message: string, options?: ErrorOptions & { ran?: boolean }) {
    super(`call to ${service}: ${message}`, options)
    this.name = 'CallError'
    this.detail = message
    this.ran = options?.ran ?? true
  }
}

/** What the HTTP API answers a failed call with. */
export function callErrorStatus (code: CallErrorCode): number {
  switch (code) {
    case 'UNKNOWN_SERVICE': return 404
    case 'DENIED': return 403
    case 'TOO_LARGE': return 413
    case 'TIMEOUT': return 504
    case 'BAD_REQUEST': return 400
    case 'FAILED': return 502
    case 'NO_HEALTHY_REPLICA':
    case 'UNAVAILABLE': return 503
  }
}

/** An egress request the policy refused, or a URL that is not one. */
export class EgressError extends BeeMeshError {
  constructor (readonly url: string, reason: string) {
    super(`egress to ${url}: ${reason}`)
    this.name = 'EgressError'
  }
}
