import type { NodeSummary } from '../../../workloads/views.js'
import { sandboxOf } from '../../../protocol/messages.js'
import { age, type KubeObject, type TableColumn } from '../table.js'

/** A mesh peer as a `v1 Node`: its peer id is its name. */
export function toNode (n: NodeSummary, now: number): KubeObject {
  const resources = (r: NodeSummary['capacity']): Record<string, string> => ({ cpu: `${r.cpuMillis}m`, memory: `${Math.floor(r.memoryBytes / 1024)}Ki`, pods: '110' })
  const free = { cpuMillis: Math.max(0, n.capacity.cpuMillis - n.allocated.cpuMillis), memoryBytes: Math.max(0, n.capacity.memoryBytes - n.allocated.memoryBytes) }
  // Whole 10 s steps, so that an object (and its resourceVersion) changes only that often, not with every heartbeat.
  const heard = new Date(Math.floor((now - n.lastSeenMs) / 10_000) * 10_000).toISOString()
  const started = new Date(Math.floor((now - n.uptimeMs) / 1000) * 1000).toISOString()
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.peerId,
      uid: n.peerId,
      resourceVersion: '',
      creationTimestamp: started,
      labels: { ...n.labels, 'kubernetes.io/hostname': n.peerId, 'beemesh.io/peer-id': n.peerId, 'beemesh.io/sandbox': sandboxOf(n.capabilities) }
    },
    spec: {},
    status: {
      capacity: resources(n.capacity),
      allocatable: resources(free),
      conditions: [{
        type: 'Ready',
        status: n.ready ? 'True' : 'Unknown',
        reason: n.ready ? 'PeerHeartbeating' : 'PeerSilent',
        message: n.ready ? 'the peer heartbeats' : 'no heartbeat from the peer lately',
        lastHeartbeatTime: heard,
        lastTransitionTime: n.ready ? started : heard
      }],
      addresses: [{ type: 'Hostname', address: n.peerId }],
      nodeInfo: { kubeletVersion: 'beemesh', containerRuntimeVersion: '', osImage: '', kernelVersion: '', operatingSystem: '', architecture: '', machineID: '', systemUUID: '', bootID: '', kubeProxyVersion: '' }
    }
  }
}

export const NODE_COLUMNS: ReadonlyArray<TableColumn<KubeObject>> = [
  { name: 'Status', type: 'string', priority: 0, description: 'Ready when the peer heartbeats.', cell: o => ((o.status as { conditions: Array<{ status: string }> }).conditions[0]?.status === 'True' ? 'Ready' : 'NotReady') },
  { name: 'Roles', type: 'string', priority: 0, description: 'Every peer is equal.', cell: () => '<none>' },
  { name: 'Age', type: 'string', priority: 0, description: 'Time since the peer started.', cell: (o, now) => age(o.metadata.creationTimestamp, now) },
  { name: 'Version', type: 'string', priority: 0, description: 'Node version.', cell: () => 'beemesh' },
  { name: 'CPU', type: 'string', priority: 1, description: 'CPU capacity.', cell: o => (o.status as { capacity: { cpu: string } }).capacity.cpu },
  { name: 'Memory', type: 'string', priority: 1, description: 'Memory capacity.', cell: o => (o.status as { capacity: { memory: string } }).capacity.memory }
]
