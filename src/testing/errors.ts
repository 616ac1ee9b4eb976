import { BeeMeshError } from '../errors.js'

/** A trace that cannot be replayed as it stands: not JSON, a field missing, entries out of sequence. */
export class InvalidTraceError extends BeeMeshError {
  override name = 'InvalidTraceError'
  readonly source: string
  /** 1-based line (parseTrace) or 0-based index (replayTrace); undefined for the trace as a whole. */
  readonly line: number | undefined

  constructor (source: string, line: number | undefined, problem: string) {
    super(`${source}${line !== undefined ? `:${line}` : ''}: ${problem}`)
    this.source = source
    this.line = line
  }
}
