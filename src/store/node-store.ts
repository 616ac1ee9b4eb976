import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { describeError } from '../errors.js'
import { StoreOpenError } from './errors.js'

export interface KnownPeer {
  peerId: string
  addrs: string[]
  lastSeen: number
}

/**
 * The node's LevelDB (`<dataDir>/db`). One database per node, partitioned into
 * sublevels; later issues add workload journals and snapshots beside the
 * address book kept here.
 */
export class NodeStore {
  readonly path: string
  private readonly db: Level<string, string>
  private readonly peersLevel

  private constructor (path: string, db: Level<string, string>) {
    this.path = path
    this.db = db
    this.peersLevel = db.sublevel<string, KnownPeer>('peers', { valueEncoding: 'json' })
  }

  static async open (dataDir: string): Promise<NodeStore> {
    const path = join(dataDir, 'db')
    try {
      await mkdir(path, { recursive: true, mode: 0o700 })
      const db = new Level<string, string>(path)
      await db.open()
      return new NodeStore(path, db)
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause
      throw new StoreOpenError(path, describeError(cause ?? err), { cause: err })
    }
  }

  /**
   * A named partition of the node database with utf8 keys and values, for a
   * store kept beside the address book (`journal` holds the WorkloadJournal).
   * Keys written through it are prefixed `!<name>!`; `peers` is taken.
   */
  sublevel (name: string) {
    return this.db.sublevel<string, string>(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  }

  async close (): Promise<void> {
    await this.db.close()
  }

  /** Remembers where a peer can be dialled, so a restarted node rejoins without its bootstrap list. */
  async rememberPeer (peer: KnownPeer): Promise<void> {
    await this.peersLevel.put(peer.peerId, peer)
  }

  async forgetPeer (peerId: string): Promise<void> {
    await this.peersLevel.del(peerId)
  }

  /** Known peers, most recently seen first. */
  async knownPeers (limit = 16): Promise<KnownPeer[]> {
    const peers: KnownPeer[] = []
    for await (const value of this.peersLevel.values()) peers.push(value)
    return peers.sort((a, b) => b.lastSeen - a.lastSeen).slice(0, limit)
  }
}
