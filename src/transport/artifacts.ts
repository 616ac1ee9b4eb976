import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import type { AbortOptions } from '@libp2p/interface'
import { describeError } from '../errors.js'
import { ArtifactStore, SHA256_HEX, sha256Hex } from '../store/artifact-store.js'
import { ArtifactError } from '../store/errors.js'
import type { Logger } from './logger.js'
import type { MeshNode } from './mesh-node.js'
import { callRpc, serveRpc } from './rpc.js'

export const ARTIFACT_PROTOCOL = '/beemesh/artifact/1.0.0'
const RAW_CODEC = 0x55
const SHA2_256 = 0x12

/** The CID (v1, raw, sha2-256) a bundle is announced under in the DHT. */
export function artifactCid (sha256: string): CID {
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, Buffer.from(sha256, 'hex')))
}

/**
 * Distributes content-addressed bundles: a node holding one announces itself as
 * a DHT provider; others find providers and fetch the bytes over
 * `/beemesh/artifact/1.0.0`, verifying the hash before use. A provider whose
 * bytes do not match is skipped and the next one is tried.
 */
export class ArtifactService {
  /** Fetches under way, so concurrent callers share one. */
  private readonly inFlight = new Map<string, Promise<string>>()

  constructor (private readonly mesh: MeshNode, readonly store: ArtifactStore, private readonly log: Logger) {}

  async start (): Promise<void> {
    await serveRpc(this.mesh, ARTIFACT_PROTOCOL, async request => {
      const sha256 = (request as { sha256?: unknown } | null)?.sha256
      if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) throw new Error('request must be {"sha256": "<64 hex digits>"}')
      if (!await this.store.has(sha256)) throw new Error(`artifact ${sha256.slice(0, 12)} is not stored here`)
      return { result: { sha256 }, blob: await this.store.get(sha256) }
    }, this.log)
  }

  /**
   * Stores a bundle; with `announce` (default) also announces it as a DHT
   * provider. Announcement failures are logged, not fatal: peers fetch from
   * the tenderer first.
   */
  async publish (bytes: Uint8Array, expected?: string, { announce = true } = {}): Promise<string> {
    const sha256 = await this.store.put(bytes, expected)
    if (announce) this.announce(sha256)
    return sha256
  }

  /** Announces in the background that this node provides the artifact. */
  announce (sha256: string): void {
    this.mesh.provide(artifactCid(sha256), { signal: AbortSignal.timeout(15_000) }).catch(err => {
      this.log.debug({ sha256, err: describeError(err) }, 'provider announcement failed')
    })
  }

  /**
   * Makes sure the artifact is stored locally: from `hints` first (e.g. the
   * tenderer), then DHT providers. Returns the local file path.
   */
  async ensure (sha256: string, hints: string[] = [], options: AbortOptions = {}): Promise<string> {
    if (await this.store.has(sha256)) return this.store.path(sha256)
    const pending = this.inFlight.get(sha256)
    if (pending != null) return await pending
    const fetching = this.fetch(sha256, hints, options).finally(() => { this.inFlight.delete(sha256) })
    this.inFlight.set(sha256, fetching)
    return await fetching
  }

  private async fetch (sha256: string, hints: string[], options: AbortOptions): Promise<string> {
    const tried = new Set<string>()
    const failures: string[] = []
    const tryPeers = async (peers: string[]): Promise<string | undefined> => {
      for (const peer of peers) {
        if (tried.has(peer) || peer === this.mesh.peerId) continue
        tried.add(peer)
        try {
          const { blob } = await callRpc(this.mesh, peer, ARTIFACT_PROTOCOL, { sha256 }, { signal: options.signal, timeoutMs: 15_000 })
          if (blob == null) throw new Error('no content in reply')
          const actual = sha256Hex(blob)
          if (actual !== sha256) {
            this.log.warn({ sha256, peer, actual }, 'artifact hash mismatch: rejected, trying another provider')
            failures.push(`${peer.slice(-8)}: hash mismatch (${actual.slice(0, 12)})`)
            continue
          }
          await this.store.put(blob, sha256)
          this.announce(sha256)
          return this.store.path(sha256)
        } catch (err) {
          failures.push(`${peer.slice(-8)}: ${describeError(err)}`)
        }
      }
      return undefined
    }
    const fromHints = await tryPeers(hints)
    if (fromHints != null) return fromHints
    const providers = await this.mesh.findProviders(artifactCid(sha256), { signal: options.signal ?? AbortSignal.timeout(10_000) }).catch(() => [])
    const fromDht = await tryPeers(providers)
    if (fromDht != null) return fromDht
    throw new ArtifactError(sha256, `could not fetch from any provider${failures.length > 0 ? ` (${failures.join('; ')})` : ' (none found)'}`)
  }
}
