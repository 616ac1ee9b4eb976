import { BeeMeshError } from '../errors.js'

/**
 * Failures of the container engine (Podman's or Docker's API), one class per
 * failure. `code` is fixed per class; `reason` is the Kubernetes-style word the
 * pod machine records (`ErrImagePull`, `RunContainerError`, …) and branches on
 * (`EngineUnavailable` means the node, not the workload, failed).
 */
export type ContainerErrorReason =
  | 'EngineUnavailable'
  | 'ErrImagePull'
  | 'ImageNotFound'
  | 'PortInUse'
  | 'RunContainerError'
  | 'CreateContainerError'
  | 'ContainerNotFound'

/**
 * The engine cannot be reached or stopped answering: socket missing, connection
 * refused or reset, the service died mid-call, or a call timed out.
 */
export class EngineUnavailableError extends BeeMeshError {
  readonly code = 'ENGINE_UNAVAILABLE'
  readonly reason = 'EngineUnavailable'
  readonly socket: string | undefined

  /**
   * With `socket`, the message reads `container engine at <socket> is
   * unreachable: <detail>`; without, `detail` is the whole message.
   */
  constructor (detail: string, options: ErrorOptions & { socket?: string } = {}) {
    super(options.socket != null ? `container engine at ${options.socket} is unreachable: ${detail}` : detail, options)
    this.name = 'EngineUnavailableError'
    this.socket = options.socket
  }
}

/** An image could not be pulled (`ErrImagePull`) or is not there to create from (`ImageNotFound`). */
export class ImagePullError extends BeeMeshError {
  readonly code = 'IMAGE_PULL_FAILED'

  constructor (readonly image: string, readonly reason: 'ErrImagePull' | 'ImageNotFound', detail: string, options?: ErrorOptions) {
    super(reason === 'ImageNotFound'
      ? `image ${image} is not present on the engine: ${detail}`
      : `failed to pull image ${image}: ${detail}`, options)
    this.name = 'ImagePullError'
  }
}

/** A host port the container publishes is already bound on this node. */
export class PortInUseError extends BeeMeshError {
  readonly code = 'PORT_IN_USE'
  readonly reason = 'PortInUse'

  constructor (readonly container: string, readonly port: number | undefined, readonly protocol: 'TCP' | 'UDP', detail: string, options?: ErrorOptions) {
    super(`container ${container} cannot start: host port ${port ?? '(unknown)'}/${protocol} is already in use (${detail})`, options)
    this.name = 'PortInUseError'
  }
}

/** The engine refused to start the container, or the runtime failed to run its process. */
export class ContainerStartError extends BeeMeshError {
  readonly code = 'CONTAINER_START_FAILED'
  readonly reason = 'RunContainerError'

  constructor (readonly container: string, detail: string, options?: ErrorOptions) {
    super(`container ${container} failed to start: ${detail}`, options)
    this.name = 'ContainerStartError'
  }
}

/** The engine refused to create the container (bad configuration, runtime refusal). */
export class ContainerCreateError extends BeeMeshError {
  readonly code = 'CONTAINER_CREATE_FAILED'
  readonly reason = 'CreateContainerError'

  constructor (readonly container: string, detail: string, options?: ErrorOptions) {
    super(`container ${container} could not be created: ${detail}`, options)
    this.name = 'ContainerCreateError'
  }
}

/** A container with that name already exists on the engine. */
export class ContainerNameConflictError extends BeeMeshError {
  readonly code = 'CONTAINER_NAME_CONFLICT'
  readonly reason = 'CreateContainerError'

  constructor (readonly container: string, detail: string, options?: ErrorOptions) {
    super(`a container named ${container} already exists: ${detail}`, options)
    this.name = 'ContainerNameConflictError'
  }
}

/** The container the call names does not exist (any more) on the engine. */
export class ContainerNotFoundError extends BeeMeshError {
  readonly code = 'CONTAINER_NOT_FOUND'
  readonly reason = 'ContainerNotFound'

  constructor (readonly container: string, detail: string, options?: ErrorOptions) {
    super(`container ${container} not found on the engine: ${detail}`, options)
    this.name = 'ContainerNotFoundError'
  }
}

/** Any other answer the engine gave that the call does not expect. */
export class ContainerEngineError extends BeeMeshError {
  readonly code = 'CONTAINER_ENGINE_ERROR'

  constructor (readonly operation: string, readonly statusCode: number | undefined, readonly detail: string, options?: ErrorOptions) {
    super(`container engine ${operation} failed${statusCode != null ? ` (HTTP ${statusCode})` : ''}: ${detail}`, options)
    this.name = 'ContainerEngineError'
  }
}
