/**
 * A node acting for someone else on another node (docs/security.md, "Members
 * within bounds"): who the serving node believes the request is for.
 *
 * - No `onBehalfOf`: the requesting node itself (a node principal).
 * - `workload:<ns>/<name>`: only where the caller allows it (tunnels and calls
 *   relayed by the node for its own container's workload).
 * - `deployer:<key>`: only with that deployer's bearer token, authenticated
 *   here exactly as this node's API would (Trust.authenticate: made for this
 *   mesh, unexpired, not revoked, a deployer the policy names or the root
 *   vouched for); a member cannot claim an arbitrary deployer: it would need
 *   the deployer's key. The principal (with a deployer credential's labels)
 *   is the one the token proves.
 * - anything else (another node): refused.
 */
import { currentBearer, currentPrincipal } from './request-context.js'
import type { Principal } from './engine.js'
import { TrustError } from './errors.js'
import { principalOfSender, senderOf } from './trust.js'

/** What a relayed request carries: for whom, and the deployer's proof. */
export interface Relay { onBehalfOf?: string, token?: string }

/** The relay fields for a request made while serving an API caller (empty outside one, or for a non-deployer). */
export function relayOfCurrentRequest (): Relay {
  const p = currentPrincipal()
  if (p?.kind !== 'deployer') return {}
  const token = currentBearer()
  return { onBehalfOf: senderOf(p), ...(token != null ? { token } : {}) }
}

/**
 * The principal a request from node `node` (its principal `sender`) is served
 * for. Throws TrustError naming the problem when the claim is not proven.
 */
/** What checking a relay needs: the API's authentication of a bearer token (Trust is one). */
export interface Authenticator {
  authenticate: (authorization: string | undefined) => Promise<Principal>
}

export async function relayedPrincipal (trust: Authenticator, sender: Principal, relay: Relay, { workloads = false }: { workloads?: boolean } = {}): Promise<Principal> {
  if (relay.onBehalfOf == null) return sender
  const who = sender.kind === 'node' ? sender.id : senderOf(sender)
  if (sender.kind !== 'node') throw new TrustError('denied', `${who} may not act on behalf of ${relay.onBehalfOf}: only a node may relay`)
  const claimed = principalOfSender(relay.onBehalfOf)
  if (claimed.kind === 'workload') {
    if (!workloads || claimed.namespace === '' || claimed.name === '') throw new TrustError('denied', `${who} may not act on behalf of ${relay.onBehalfOf} here`)
    return claimed
  }
  if (claimed.kind === 'deployer') {
    if (relay.token == null) throw new TrustError('unsigned', `${who} claims to act for deployer ${claimed.key} without the deployer's token`)
    let proven: Principal
    try {
      proven = await trust.authenticate(`Bearer ${relay.token}`)
    } catch (err) {
      throw new TrustError(err instanceof TrustError ? err.reason : 'malformed', `${who} claims to act for deployer ${claimed.key}, but the token it relays does not verify: ${err instanceof Error ? err.message : String(err)}`)
    }
    const sub = proven.kind === 'deployer' ? proven.key : senderOf(proven)
    if (sub !== claimed.key) throw new TrustError('wrong-subject', `${who} claims to act for deployer ${claimed.key} with a token of ${sub}`)
    return proven
  }
  throw new TrustError('denied', `${who} may not act on behalf of ${relay.onBehalfOf} (another node)`)
}
