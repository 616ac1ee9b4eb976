import { createHash, randomUUID } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ArtifactError } from './errors.js'

export const SHA256_HEX = /^[0-9a-f]{64}$/

export function sha256Hex (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * Content-addressed workload bundles on disk: `<dataDir>/artifacts/<sha256>.mjs`.
 * Bytes are verified against their hash before they are stored, so a file
 * here is always what its name says.
 */
export class ArtifactStore {
  readonly dir: string

  constructor (dataDir: string) {
    this.dir = join(dataDir, 'artifacts')
  }

  path (sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new ArtifactError(sha256, 'not a sha256 hex digest')
    return join(this.dir, `${sha256}.mjs`)
  }

  async has (sha256: string): Promise<boolean> {
    try {
      await stat(this.path(sha256))
      return true
    } catch {
      return false
    }
  }

  /** Stores bytes under their hash; rejects if `expected` is given and does not match. */
  async put (bytes: Uint8Array, expected?: string): Promise<string> {
    const actual = sha256Hex(bytes)
    if (expected != null && actual !== expected) {
      throw new ArtifactError(expected, `content hash mismatch: received bytes hash to ${actual.slice(0, 12)}`)
    }
    const path = this.path(actual)
    if (await this.has(actual)) return actual
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    // a name of its own per write: two stores of the same bundle at once must not share a temp file
    const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`
    await writeFile(tmp, bytes, { mode: 0o600 })
    await rename(tmp, path)
    return actual
  }

  async get (sha256: string): Promise<Uint8Array> {
    try {
      return await readFile(this.path(sha256))
    } catch (err) {
      throw new ArtifactError(sha256, 'not stored on this node', { cause: err })
    }
  }
}
