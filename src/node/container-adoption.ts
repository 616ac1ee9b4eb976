/**
 * After a restart, this node's containers from before: adopted when the
 * workload's record still places that replica here at that epoch, removed
 * when it moved on or is gone. The record comes from the DHT (a node does not
 * keep the catalog across restarts); with no answer for 30 s, the container
 * is removed.
 */
import { describeError } from '../errors.js'
import type { ContainerHost } from '../containers/container-host.js'
import type { MeshView } from '../membership/mesh-view.js'
import type { Logger } from '../transport/logger.js'
import type { WorkloadRecord } from '../workloads/records.js'

export interface ContainerAdoptionInit {
  selfId: string
  mesh: { peers: () => unknown[] }
  view: MeshView
  containers: ContainerHost
  log: Logger
  /** The workload's record: this node's copy, else the mesh's (DHT). */
  known: (id: string) => Promise<WorkloadRecord | undefined>
  stopped: () => boolean
}

export async function adoptContainers ({ selfId, mesh, view, containers, log, known, stopped }: ContainerAdoptionInit): Promise<void> {
  const deadline = Date.now() + 30_000
  // Heartbeats tell where replicas run now, fresher than a DHT copy of the record:
  // give the peers this node connects to a heartbeat round to be heard (at most 5 s).
  const heard = async (): Promise<void> => {
    const until = Date.now() + 5_000
    while (!stopped() && Date.now() < until && (mesh.peers().length === 0 || view.livePeers().length < mesh.peers().length)) {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  const { adopted, removed } = await containers.adoptOrRemove(async (id, replica, epoch) => {
    for (;;) {
      const newer = view.remoteReplicas(id).find(r => r.replica === replica && r.epoch > epoch)
      if (newer != null) return { remove: `replica ${replica} of ${id} runs on ${newer.peerId} at epoch ${newer.epoch} now` }
      const record = await known(id)
      if (record != null) {
        if (record.status === 'Deleted') return { remove: `${id} was deleted` }
        const placed = record.placement.find(p => p.replica === replica)
        if (placed != null && placed.peerId === selfId && placed.epoch === epoch && record.epoch >= epoch) return { adopt: record.spec }
        if (record.epoch > epoch || (placed != null && (placed.peerId !== selfId || placed.epoch !== epoch))) return { remove: `replica ${replica} of ${id} is at epoch ${placed?.epoch ?? record.epoch} on ${placed?.peerId ?? 'no node'} now` }
      }
      if (stopped() || Date.now() > deadline) return { remove: `no record of ${id} found within 30 s` }
      await new Promise(resolve => setTimeout(resolve, 1_000))
    }
  }, { before: heard }).catch(err => { log.warn({ err: describeError(err) }, 'could not list containers from before the restart'); return { adopted: 0, removed: 0 } })
  if (adopted + removed > 0) log.info({ adopted, removed }, 'containers from before the restart sorted out')
}
