import { BeeMeshError } from '../errors.js'

/** A CPU or memory quantity that is not a valid Kubernetes quantity. */
export class InvalidQuantityError extends BeeMeshError {
  constructor (readonly value: unknown, readonly resource: 'cpu' | 'memory', expected: string) {
    super(`invalid ${resource === 'cpu' ? 'CPU' : 'memory'} quantity ${typeof value === 'string' ? JSON.stringify(value) : String(value)}: ${expected}`)
    this.name = 'InvalidQuantityError'
  }
}

/**
 * A workload definition (a module's default export) that does not validate.
 * The message is `<source>: <detail>`, where the detail usually starts with
 * the field path, e.g. `examples/orders.ts: topics: expected a non-empty array of topic names`.
 */
export class InvalidDefinitionError extends BeeMeshError {
  constructor (readonly source: string, readonly detail: string, options?: ErrorOptions) {
    super(`${source}: ${detail}`, options)
    this.name = 'InvalidDefinitionError'
  }
}

/** A YAML or JSON manifest that cannot be parsed or does not validate. */
export class InvalidManifestError extends BeeMeshError {
  constructor (readonly source: string, readonly detail: string, options?: ErrorOptions) {
    super(`${source}: ${detail}`, options)
    this.name = 'InvalidManifestError'
  }
}

/** esbuild could not bundle a workload module; the message is `file:line:column: message` of the first error. */
export class BundleError extends BeeMeshError {
  constructor (readonly entry: string, detail: string, options?: ErrorOptions) {
    super(detail, options)
    this.name = 'BundleError'
  }
}

/** A file given to `apply` (or named by a manifest's `spec.module`) does not exist. */
export class WorkloadFileNotFoundError extends BeeMeshError {
  constructor (readonly path: string, context?: string) {
    super(`${path}: file not found${context != null ? ` (${context})` : ''}`)
    this.name = 'WorkloadFileNotFoundError'
  }
}

/** A file given to `apply` is neither a module nor a manifest. */
export class UnsupportedWorkloadFileError extends BeeMeshError {
  constructor (readonly path: string) {
    super(`${path}: unsupported file type; expected a module (.ts, .mts, .js, .mjs) or a manifest (.yaml, .yml, .json)`)
    this.name = 'UnsupportedWorkloadFileError'
  }
}

/** The detail of an InvalidDefinitionError for a module without a default export. */
export const NO_DEFAULT_EXPORT = 'the module has no default export; export default defineWorkload({...})'
