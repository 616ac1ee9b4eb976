import { describeError } from '../../errors.js'
import { TrustError } from '../../policy/errors.js'
import { InvalidWorkloadError, UnschedulableError, WorkloadNotFoundError, OwnerUnavailableError } from '../../actors/errors.js'
import { NotStartedError } from '../../transport/errors.js'
import { HttpError } from '../http.js'
import { KubeStatusError } from './errors.js'

/** A `v1 Status` object, the body of every failed Kubernetes API request. */
export interface KubeStatus {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, never>
  status: 'Success' | 'Failure'
  message: string
  reason: string
  details?: { name?: string, group?: string, kind?: string, causes?: Array<{ reason: string, message: string, field: string }> }
  code: number
}

/** The Status a failed request answers with; errors of the runtime map to their Kubernetes reasons. */
export function toStatus (err: unknown): KubeStatus {
  const e = toKubeError(err)
  const details = { ...stripEmpty(e.target), ...(e.causes.length > 0 ? { causes: e.causes } : {}) }
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    ...(Object.keys(details).length > 0 ? { details } : {}),
    code: e.code
  }
}

/** A success Status, as DELETE answers when the object is gone. */
export function successStatus (target: { name: string, kind: string, group?: string }): KubeStatus & { status: 'Success' } {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', message: '', reason: '', details: stripEmpty(target), code: 200 } as KubeStatus & { status: 'Success' }
}

export function toKubeError (err: unknown): KubeStatusError {
  if (err instanceof KubeStatusError) return err
  if (err instanceof HttpError) return new KubeStatusError(err.status, err.status === 413 ? 'RequestEntityTooLarge' : err.reason, err.message)
  if (err instanceof WorkloadNotFoundError) return new KubeStatusError(404, 'NotFound', err.message)
  if (err instanceof TrustError) return new KubeStatusError(403, 'Forbidden', err.message)
  // A tender in flight for the same workload: try again later, as for a conflicting write.
  if (err instanceof InvalidWorkloadError && err.message.includes('being placed right now')) return new KubeStatusError(409, 'Conflict', err.message)
  if (err instanceof InvalidWorkloadError) return new KubeStatusError(422, 'Invalid', err.message)
  if (err instanceof UnschedulableError) return new KubeStatusError(409, 'Conflict', err.message)
  if (err instanceof OwnerUnavailableError) return new KubeStatusError(503, 'ServiceUnavailable', err.message)
  if (err instanceof NotStartedError) return new KubeStatusError(503, 'ServiceUnavailable', err.message)
  if (err instanceof Error && err.name === 'TimeoutError') return new KubeStatusError(504, 'Timeout', `timed out: ${err.message}`)
  return new KubeStatusError(500, 'InternalError', describeError(err))
}

function stripEmpty<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v != null && v !== '')) as Partial<T>
}
