/**
 * Who may write which DHT record. Every node runs this guard before it
 * stores a record for the mesh (kad-dht's validator) and before it believes
 * one it read (MeshNode.getRecord), so a record that fails it is neither
 * kept nor acted on anywhere:
 *
 * - the publisher is a member: the record carries its root-signed credential;
 * - its version and time are not ahead of the clock (a record at
 *   seq MAX_SAFE_INTEGER would win every later comparison);
 * - the writer is the one its kind allows:
 *   | key | writer |
 *   | --- | --- |
 *   | `/beemesh/workload/<ns>/<name>` | the node named `updatedBy`, for a spec whose manifest signature holds (by its deployer or a member vouching for one) |
 *   | `/beemesh/location/<ns>/<name>` | the owner it names |
 *   | `/beemesh/snapshot/<ns>/<name>` | the owner it names |
 *   | `/beemesh/svc/<ns>/<name>/<peer>` | that peer |
 *   | anything else | any member |
 */
import * as z from 'zod'
import { verifyManifest } from '../policy/credentials.js'
import type { Trust } from '../policy/trust.js'
import { InvalidRecordError } from '../transport/errors.js'
import type { DecodedRecord, RecordGuard } from '../transport/records.js'
import { describeError } from '../errors.js'

/** How far ahead of this node's clock a record's seq (milliseconds since the epoch, as MeshNode.putRecord sets it) or ts may be. */
export const MAX_RECORD_SKEW_MS = 60_000

const Owned = z.object({ workloadId: z.string(), owner: z.string() })
const Workload = z.object({ spec: z.object({ id: z.string(), provenance: z.unknown() }).passthrough(), updatedBy: z.string() })

export function recordGuard (trust: Trust, onRefused?: (reason: string) => void): RecordGuard {
  return async (record: DecodedRecord) => {
    try {
      await check(trust, record)
    } catch (err) {
      onRefused?.(err instanceof InvalidRecordError ? 'writer' : 'not-a-member')
      throw err instanceof InvalidRecordError ? err : new InvalidRecordError(`record ${record.key} from ${record.publisher}: ${describeError(err)}`)
    }
  }
}

async function check (trust: Trust, r: DecodedRecord): Promise<void> {
  if (r.cred == null) throw new InvalidRecordError(`record ${r.key} from ${r.publisher} carries no membership credential`)
  await trust.admit(r.cred, r.publisher)
  const limit = Date.now() + MAX_RECORD_SKEW_MS
  if (r.seq > limit || r.ts > limit) throw new InvalidRecordError(`record ${r.key} from ${r.publisher} is dated ahead of the clock (seq ${r.seq}, ts ${r.ts})`)
  const [, , kind, ...rest] = r.key.split('/')
  const id = rest.slice(0, 2).join('/')
  const value = (): unknown => {
    try {
      return JSON.parse(new TextDecoder().decode(r.value))
    } catch {
      throw new InvalidRecordError(`record ${r.key} is not JSON`)
    }
  }
  const refuse = (why: string): never => { throw new InvalidRecordError(`record ${r.key} refused: ${why}`) }
  switch (kind) {
    case 'workload': {
      const w = Workload.safeParse(value())
      if (!w.success) refuse('not a workload record')
      const { spec, updatedBy } = w.data!
      if (spec.id !== id) refuse(`it describes ${spec.id}`)
      if (updatedBy !== r.publisher) refuse(`written by ${r.publisher} but names ${updatedBy} as its writer`)
      const p = await verifyManifest(spec, spec.provenance).catch(err => refuse(`its manifest does not verify: ${describeError(err)}`))
      if (p.signer !== p.deployer && p.signer !== r.publisher && trust.memberOf(p.signer) == null) refuse(`its manifest is signed by ${p.signer}, neither its deployer nor a known member`)
      return
    }
    case 'location':
    case 'snapshot': {
      const o = Owned.safeParse(value())
      if (!o.success) refuse(`not a ${kind} record`)
      if (o.data!.workloadId !== id) refuse(`it names ${o.data!.workloadId}`)
      if (o.data!.owner !== r.publisher) refuse(`written by ${r.publisher}, not by the owner it names (${o.data!.owner})`)
      return
    }
    case 'svc': {
      const host = rest.at(-1)
      if (host !== r.publisher) refuse(`written by ${r.publisher}, not by the host it names (${host ?? 'none'})`)
    }
  }
}
