import { BeeMeshError } from '../../errors.js'

/** One cause of a 422 Invalid: the field and what is wrong with it (`metav1.StatusCause`). */
export interface StatusCause {
  reason: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueNotSupported' | 'FieldValueTypeInvalid' | 'FieldValueDuplicate'
  message: string
  field: string
}

/** What a Status names: the object the request was about. */
export interface StatusTarget {
  group?: string
  kind?: string
  name?: string
}

/**
 * A failed Kubernetes API request: answered as a `v1 Status` with `code`,
 * `reason` and the message the client (kubectl) prints.
 */
export class KubeStatusError extends BeeMeshError {
  constructor (readonly code: number, readonly reason: string, message: string, readonly target: StatusTarget = {}, readonly causes: StatusCause[] = []) {
    super(message)
    this.name = 'KubeStatusError'
  }
}

export function notFound (resource: string, name: string, group = ''): KubeStatusError {
  return new KubeStatusError(404, 'NotFound', `${resource}${group !== '' ? `.${group}` : ''} "${name}" not found`, { group, kind: resource, name })
}

export function alreadyExists (resource: string, name: string, group = ''): KubeStatusError {
  return new KubeStatusError(409, 'AlreadyExists', `${resource}${group !== '' ? `.${group}` : ''} "${name}" already exists`, { group, kind: resource, name })
}

export function conflict (resource: string, name: string, why: string, group = ''): KubeStatusError {
  return new KubeStatusError(409, 'Conflict', `Operation cannot be fulfilled on ${resource}${group !== '' ? `.${group}` : ''} "${name}": ${why}`, { group, kind: resource, name })
}

export function badRequest (message: string): KubeStatusError {
  return new KubeStatusError(400, 'BadRequest', message)
}

/** 422: `<Kind> "<name>" is invalid: <field>: <problem>` as the API server words it. */
export function invalid (kind: string, name: string, causes: StatusCause[], group = ''): KubeStatusError {
  const text = causes.map(c => `${c.field}: ${c.message}`).join(', ')
  return new KubeStatusError(422, 'Invalid', `${kind}${group !== '' ? `.${group}` : ''} "${name}" is invalid: ${text}`, { group, kind, name }, causes)
}

export function methodNotSupported (method: string, path: string): KubeStatusError {
  return new KubeStatusError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method} ${path})`)
}
