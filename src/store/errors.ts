import { BeeMeshError } from '../errors.js'

export class StoreOpenError extends BeeMeshError {
  constructor (readonly path: string, reason: string, options?: ErrorOptions) {
    super(`cannot open the node database at ${path}: ${reason}`, options)
    this.name = 'StoreOpenError'
  }
}

/**
 * A workload journal refused a write or a read argument: a sequence number
 * that does not follow the head, an epoch below the journal's (a deposed
 * owner is fenced off), a snapshot older than the stored one, or a value
 * that is not plain JSON. Nothing was written.
 */
export class JournalError extends BeeMeshError {
  constructor (readonly workloadId: string, reason: string, options?: ErrorOptions) {
    super(`journal of ${workloadId}: ${reason}`, options)
    this.name = 'JournalError'
  }
}

/**
 * What a workload journal holds on disk cannot be trusted: a value fails its
 * checksum, does not parse, has the wrong shape, or the entries have a gap.
 * `key` is the LevelDB key (inside the journal sublevel) of the bad value,
 * `seq` the entry's sequence number when the problem is with an entry. The
 * caller recovers from a replicated snapshot instead.
 */
export class CorruptJournalError extends BeeMeshError {
  constructor (readonly workloadId: string, readonly key: string, readonly seq: number | undefined, problem: string, options?: ErrorOptions) {
    super(`corrupt journal of ${workloadId} at ${seq != null ? `seq ${seq} (key ${JSON.stringify(key)})` : `key ${JSON.stringify(key)}`}: ${problem}`, options)
    this.name = 'CorruptJournalError'
  }
}

/**
 * A workload artifact (the bundled code, content-addressed by sha256) could
 * not be stored, read or fetched: missing here and on every member asked, or
 * its bytes do not match its hash.
 */
export class ArtifactError extends BeeMeshError {
  constructor (readonly sha256: string, reason: string, options?: ErrorOptions) {
    super(`artifact ${sha256.slice(0, 12)}: ${reason}`, options)
    this.name = 'ArtifactError'
  }
}
