import { BeeMeshError } from '../errors.js'

export class WorkloadNotFoundError extends BeeMeshError {
  constructor (readonly workloadId: string) {
    super(`workload ${workloadId} not found`)
    this.name = 'WorkloadNotFoundError'
  }
}

export class UnschedulableError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string) {
    super(`workload ${workloadId} cannot be placed: ${reason}`)
    this.name = 'UnschedulableError'
  }
}

export class NoSubscribersError extends BeeMeshError {
  constructor (readonly topic: string) {
    super(`no actor or subscriber listens on topic "${topic}": the message would be lost, so it was not sent`)
    this.name = 'NoSubscribersError'
  }
}

export class InvalidWorkloadError extends BeeMeshError {
  constructor (reason: string) {
    super(`invalid workload: ${reason}`)
    this.name = 'InvalidWorkloadError'
  }
}

/** An event that is not a JSON object with a string `type`, or sent to a workload that takes no events. */
export class InvalidEventError extends BeeMeshError {
  constructor (reason: string) {
    super(`invalid event: ${reason}`)
    this.name = 'InvalidEventError'
  }
}

/** The machine has no transition for the event in its current state: nothing was applied. */
export class EventNotHandledError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string, readonly value?: unknown) {
    super(`event not handled: ${reason}`)
    this.name = 'EventNotHandledError'
  }
}

/** The workload's machine reached its final state; it takes no more events. */
export class WorkloadCompletedError extends BeeMeshError {
  constructor (readonly workloadId: string, readonly output?: unknown) {
    super(`workload ${workloadId} has completed${output !== undefined ? ` with output ${JSON.stringify(output)}` : ''}; it takes no more events`)
    this.name = 'WorkloadCompletedError'
  }
}

/** The machine failed (an action or guard threw); it takes no more events. */
export class MachineFailedError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string) {
    super(`the machine of ${workloadId} failed: ${reason}`)
    this.name = 'MachineFailedError'
  }
}

/** No owner could take the event in time (failing over, partitioned, or too few holders). Nothing was acknowledged. */
export class OwnerUnavailableError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string) {
    super(`${workloadId}: ${reason}`)
    this.name = 'OwnerUnavailableError'
  }
}

/** A workload has no trace to export: it is not stateful, it completed (and its trace was erased), or nothing was recorded. */
export class NoTraceError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string) {
    super(`no trace of ${workloadId}: ${reason}`)
    this.name = 'NoTraceError'
  }
}
