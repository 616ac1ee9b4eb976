/**
 * The base of every BeeMesh error. Each folder has an `errors.ts` with one class
 * per failure and a fixed `name`; the CLI prints `message` as one line and exits
 * with `exitCode`.
 */
export class BeeMeshError extends Error {
  /** Process exit code the CLI uses when this error ends a command. */
  readonly exitCode: number = 1

  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'BeeMeshError'
  }
}

/** Input the user gave is not acceptable (flag values, file contents). */
export class InvalidArgumentError extends BeeMeshError {
  override readonly exitCode = 2

  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'InvalidArgumentError'
  }
}

/** Short description of any thrown value, for one-line error reports. */
export function describeError (err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code
    return code != null && !err.message.includes(code) ? `${err.message} (${code})` : err.message
  }
  return String(err)
}
