import { BeeMeshError, InvalidArgumentError } from '../errors.js'

export class InvalidMultiaddrError extends InvalidArgumentError {
  constructor (readonly address: string, reason: string) {
    super(`invalid multiaddr "${address}": ${reason}`)
    this.name = 'InvalidMultiaddrError'
  }
}

export class AddressInUseError extends BeeMeshError {
  constructor (readonly address: string, options?: ErrorOptions) {
    super(`cannot listen on ${address}: address already in use`, options)
    this.name = 'AddressInUseError'
  }
}

export class IdentityKeyError extends BeeMeshError {
  constructor (readonly path: string, reason: string, options?: ErrorOptions) {
    super(`identity key file ${path}: ${reason}`, options)
    this.name = 'IdentityKeyError'
  }
}

export class InvalidRecordError extends BeeMeshError {
  constructor (reason: string, options?: ErrorOptions) {
    super(`invalid record: ${reason}`, options)
    this.name = 'InvalidRecordError'
  }
}

export class RecordNotFoundError extends BeeMeshError {
  constructor (readonly key: string, options?: ErrorOptions) {
    super(`no record found for key ${key}`, options)
    this.name = 'RecordNotFoundError'
  }
}

export class NotStartedError extends BeeMeshError {
  constructor () {
    super('mesh node is not started')
    this.name = 'NotStartedError'
  }
}

export class RpcError extends BeeMeshError {
  constructor (readonly peer: string, readonly protocol: string, reason: string, options?: ErrorOptions) {
    super(`${protocol} call to ${peer} failed: ${reason}`, options)
    this.name = 'RpcError'
  }
}
