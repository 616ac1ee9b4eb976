import { BeeMeshError } from '../../errors.js'

/** A workload module could not be loaded in a worker thread (it threw, hung, crashed or is not a stateless workload). */
export class ArtifactLoadError extends BeeMeshError {
  constructor (readonly what: string, reason: string, options?: ErrorOptions) {
    super(`cannot load ${what}: ${reason}`, options)
    this.name = 'ArtifactLoadError'
  }
}

/** The sandbox was stopped (or never started) while a call needed it running. */
export class SandboxStoppedError extends BeeMeshError {
  constructor (readonly workloadId: string, readonly replica: number) {
    super(`the sandbox of ${workloadId} replica ${replica} is stopped`)
    this.name = 'SandboxStoppedError'
  }
}
