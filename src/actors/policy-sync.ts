/**
 * Spreads root-signed policies through the mesh: a new policy is gossiped on
 * POLICY_TOPIC; every node also says which version it enforces in its
 * heartbeat, and a node that hears of a newer one pulls it from that peer
 * (POLICY_PROTOCOL), so a node that missed the gossip (partitioned, restarted)
 * catches up within a heartbeat or two. The newest policy is kept in the
 * node's LevelDB and put back in force at restart.
 */
import { describeError } from '../errors.js'
import type { SignedPolicy } from '../policy/credentials.js'
import type { Trust } from '../policy/trust.js'
import type { NodeStore } from '../store/node-store.js'
import type { Logger } from '../transport/logger.js'
import type { MeshMessage, MeshNode } from '../transport/mesh-node.js'
import { callRpc, serveRpc } from '../transport/rpc.js'

export const POLICY_TOPIC = 'beemesh.policy.v1'
export const POLICY_PROTOCOL = '/beemesh/policy/1.0.0'
const STORE_KEY = 'current'

export class PolicySync {
  private pulling = false
  private readonly level

  constructor (private readonly mesh: MeshNode, private readonly trust: Trust, store: NodeStore, private readonly log: Logger) {
    this.level = store.sublevel('policy')
  }

  /** The persisted policy, if any (to start with). */
  async stored (): Promise<SignedPolicy | undefined> {
    const text = await this.level.get(STORE_KEY).catch(() => undefined)
    if (text == null) return undefined
    try {
      return JSON.parse(text) as SignedPolicy
    } catch {
      return undefined
    }
  }

  async start (): Promise<void> {
    this.trust.onPolicy(p => {
      this.level.put(STORE_KEY, JSON.stringify(p)).catch(err => { this.log.error({ err: describeError(err) }, 'could not persist the policy') })
    })
    this.mesh.addEventListener('message', this.onMessage)
    this.mesh.subscribe(POLICY_TOPIC)
    await serveRpc(this.mesh, POLICY_PROTOCOL, async () => ({ result: this.trust.currentSignedPolicy ?? null }), this.log)
  }

  stop (): void {
    this.mesh.removeEventListener('message', this.onMessage)
  }

  /** Puts a policy in force here and gossips it; throws (TrustError, PolicyError) when it is refused. */
  async apply (value: unknown, source: string): Promise<void> {
    await this.trust.applyPolicy(value, source)
    await this.mesh.publish(POLICY_TOPIC, new TextEncoder().encode(JSON.stringify(this.trust.currentSignedPolicy)))
  }

  /** A peer enforces `version`: pull it when newer than ours. */
  noteVersion (peerId: string, version: number | undefined): void {
    if (version == null || version <= this.trust.policy.version || this.pulling) return
    this.pulling = true
    callRpc(this.mesh, peerId, POLICY_PROTOCOL, {}, { timeoutMs: 5_000 })
      .then(async ({ result }) => { if (result != null) await this.accept(result, `peer ${peerId}`) })
      .catch(err => { this.log.debug({ peer: peerId, err: describeError(err) }, 'could not pull a newer policy') })
      .finally(() => { this.pulling = false })
  }

  private readonly onMessage = (evt: CustomEvent<MeshMessage>): void => {
    if (evt.detail.topic !== POLICY_TOPIC) return
    let value: unknown
    try {
      value = JSON.parse(new TextDecoder().decode(evt.detail.data))
    } catch {
      return
    }
    void this.accept(value, `gossip from ${evt.detail.from}`)
  }

  private async accept (value: unknown, source: string): Promise<void> {
    try {
      await this.trust.applyPolicy(value, source)
    } catch (err) {
      // An older or equal version is the normal echo of gossip; anything else is worth a warning.
      if (/not newer/.test(describeError(err))) return
      this.log.warn({ source, err: describeError(err) }, 'policy update refused; the policy in force stays')
    }
  }
}
