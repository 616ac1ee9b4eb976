/**
 * In-memory neighbours for the stateful plane's unit tests: an owner node and
 * three peers, each with a real StateHolder on its own LevelDB (in a temporary
 * directory), reached through a fake StatePeers that can hold a request back
 * or drop it, and a fake mesh. No process is spawned.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StatefulComponents, StatefulJournal, StatefulMesh, StatePeers } from '../../src/stateful/owner.js'
import { StateHolder, type HolderReply } from '../../src/stateful/state-holder.js'
import { NodeStore } from '../../src/store/node-store.js'
import { WorkloadJournal } from '../../src/store/journal.js'
import { silentLogger } from '../../src/transport/logger.js'
import type { StateRequest } from '../../src/protocol/state.js'

export const OWNER = '12D3KooWOwnerOwnerOwnerOwnerOwnerOwnerOwnerOwner'
export const CLAIMER = '12D3KooWClaimClaimClaimClaimClaimClaimClaimClaim'
export const A = '12D3KooWHoldAHoldAHoldAHoldAHoldAHoldAHoldAHoldA'
export const B = '12D3KooWHoldBHoldBHoldBHoldBHoldBHoldBHoldBHoldB'
export const C = '12D3KooWHoldCHoldCHoldCHoldCHoldCHoldCHoldCHoldC'

/** A promise opened by hand. */
export function gate (): { wait: Promise<void>, open: () => void } {
  let open!: () => void
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

export interface Node { store: NodeStore, journal: WorkloadJournal, holder: StateHolder, dir: string }

export async function node (): Promise<Node> {
  const dir = await mkdtemp(join(tmpdir(), 'beemesh-replication-'))
  const store = await NodeStore.open(dir)
  const journal = WorkloadJournal.fromStore(store)
  return { store, journal, holder: new StateHolder(journal, store, silentLogger), dir }
}

/** The owner's node and three peers, with the owner's requests to them passing through `net`. */
export async function cluster (): Promise<{
  owner: Node
  peers: Record<string, Node>
  net: {
    /** Peers that do not answer. */
    down: Set<string>
    /** Per peer, a gate an append waits on before the holder handles it. */
    holdAppend: Map<string, Promise<void>>
    /** Per peer, resolved with each append request as it arrives. */
    arrived: Map<string, Array<(req: StateRequest) => void>>
  }
  components: StatefulComponents
  /** What the owner's journal appended, in order (after the gate). */
  localAppends: number[]
  localGate: { current?: Promise<void> }
  close: () => Promise<void>
}> {
  const owner = await node()
  const peers: Record<string, Node> = { [A]: await node(), [B]: await node(), [C]: await node() }
  const net = { down: new Set<string>(), holdAppend: new Map<string, Promise<void>>(), arrived: new Map<string, Array<(req: StateRequest) => void>>() }
  const statePeers: StatePeers = {
    state: async (peer, req): Promise<HolderReply> => {
      if (net.down.has(peer)) throw new Error(`${peer} does not answer`)
      if (req.op === 'append') {
        for (const f of net.arrived.get(peer)?.splice(0) ?? []) f(req)
        await net.holdAppend.get(peer)
      }
      return await peers[peer]!.holder.handle(req, OWNER)
    },
    send: async () => { throw new Error('no sends here') }
  }
  const localAppends: number[] = []
  const localGate: { current?: Promise<void> } = {}
  const journal: StatefulJournal = {
    append: async (id, entries, snapshot, start) => {
      await localGate.current
      await owner.journal.append(id, entries, snapshot, start)
      localAppends.push(...entries.map(e => e.seq))
    },
    putSnapshot: async (id, s) => { await owner.journal.putSnapshot(id, s) },
    head: async id => await owner.journal.head(id),
    restore: async id => await owner.journal.restore(id),
    trace: async (id, after) => await owner.journal.trace(id, after),
    erase: async (id, o) => { await owner.journal.erase(id, o) }
  }
  const mesh: StatefulMesh = {
    peerId: OWNER,
    putRecord: async () => {},
    getRecord: async () => { throw new Error('no records here') },
    deleteLocalRecord: async () => {},
    topicPeers: () => [],
    publish: async () => {}
  }
  const components: StatefulComponents = { mesh, peers: statePeers, journal, holder: owner.holder, log: silentLogger, livePeers: () => [A, B, C] }
  const close = async (): Promise<void> => {
    for (const n of [owner, ...Object.values(peers)]) { await n.store.close(); await rm(n.dir, { recursive: true, force: true }) }
  }
  return { owner, peers, net, components, localAppends, localGate, close }
}

