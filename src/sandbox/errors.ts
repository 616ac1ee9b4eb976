import { BeeMeshError, InvalidArgumentError } from '../errors.js'

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

/** An event sent to a machine is not a JSON object with a non-empty string `type` (or uses a type reserved by XState). */
export class InvalidMachineEventError extends InvalidArgumentError {
  constructor (reason: string) {
    super(`invalid machine event: ${reason}`)
    this.name = 'InvalidMachineEventError'
  }
}

/** A machine's stored state (persisted snapshot, replayed events, timers) cannot be restored. */
export class MachineRestoreError extends BeeMeshError {
  constructor (readonly what: string, reason: string, options?: ErrorOptions) {
    super(`cannot restore ${what}: ${reason}`, options)
    this.name = 'MachineRestoreError'
  }
}

/** The machine is done, failed (status `error`) or stopped: it takes no more events. */
export class MachineNotActiveError extends BeeMeshError {
  constructor (readonly what: string, readonly status: string, detail?: string) {
    super(`${what} takes no more events: ${status === 'done' ? 'it has reached its final state' : status === 'error' ? `it failed${detail != null ? ` (${detail})` : ''}` : `its status is ${status}`}`)
    this.name = 'MachineNotActiveError'
  }
}

/**
 * A transition did not complete: it ran past its timeout, exhausted its heap
 * or ended its thread. The event was not applied; the thread was replaced.
 */
export class TransitionFailedError extends BeeMeshError {
  constructor (readonly reason: 'timeout' | 'crashed' | 'out-of-memory', message: string) {
    super(message)
    this.name = 'TransitionFailedError'
  }
}

/** This host cannot confine workload code (no bubblewrap or user namespaces) and the node was not started with --allow-unconfined. */
export class UnconfinedHostError extends BeeMeshError {
  constructor (readonly reason: string) {
    super(`this node refuses to run workload code unconfined: ${reason}; start it with --allow-unconfined to run workloads in worker threads of the node process (no security boundary)`)
    this.name = 'UnconfinedHostError'
  }
}
