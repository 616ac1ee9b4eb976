import { BeeMeshError } from '../errors.js'

export class StoreOpenError extends BeeMeshError {
  constructor (readonly path: string, reason: string, options?: ErrorOptions) {
    super(`cannot open the node database at ${path}: ${reason}`, options)
    this.name = 'StoreOpenError'
  }
}
