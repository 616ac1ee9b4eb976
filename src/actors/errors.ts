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
