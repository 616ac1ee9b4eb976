import { BeeMeshError } from '../errors.js'

export class ApiListenError extends BeeMeshError {
  constructor (readonly host: string, readonly port: number, reason: string, options?: ErrorOptions) {
    super(`cannot serve the API on ${host}:${port}: ${reason}`, options)
    this.name = 'ApiListenError'
  }
}

export class ApiUnreachableError extends BeeMeshError {
  constructor (readonly url: string, reason: string, options?: ErrorOptions) {
    super(`cannot reach the BeeMesh node API at ${url}: ${reason} (is the node running? pick another with --api or BEEMESH_API)`, options)
    this.name = 'ApiUnreachableError'
  }
}

export class ApiRequestError extends BeeMeshError {
  constructor (readonly status: number, message: string) {
    super(message)
    this.name = 'ApiRequestError'
  }
}
