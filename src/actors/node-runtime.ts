import { createActor, fromPromise, type ActorRefFrom } from 'xstate'
import { describeError } from '../errors.js'
import { nodeMachine, nodeStateName } from '../machines/node-machine.js'
import { NodeStore } from '../store/node-store.js'
import { loadOrCreateIdentity } from '../transport/identity.js'
import { silentLogger, type Logger } from '../transport/logger.js'
import { NotStartedError } from '../transport/errors.js'
import { MeshNode, type MeshMessage, type MeshPeer, type PutResult } from '../transport/mesh-node.js'
import type { DecodedRecord } from '../transport/records.js'
import type { AbortOptions } from '@libp2p/interface'
import { ArtifactStore } from '../store/artifact-store.js'
import { ArtifactService } from '../transport/artifacts.js'
import type { Resources } from '../workloads/types.js'
import { WorkloadRuntime } from './workload-runtime.js'
import { NodeMetrics } from './metrics.js'
import { ContainerEngine } from './container-engine.js'

export interface NodeRuntimeInit {
  dataDir: string
  listen: string[]
  announce?: string[]
  bootstrap?: string[]
  privateAddresses?: boolean
  logger?: Logger
  /** What this node offers to workloads. */
  capacity: Resources
  labels?: Record<string, string>
  tenderWindowMs?: number
  /** Path of a Docker Engine API socket (dockerd or Podman's service): container workloads run there. */
  containerSocket?: string
}

export interface NodeStatus {
  peerId: string
  state: string
  addresses: string[]
  uptimeMs: number
  peerCount: number
  capacity: Resources
  allocated: Resources
  labels: Record<string, string>
  replicas: number
  /** The container engine's socket and whether it answers (absent: none configured). */
  containers?: { socket: string, available: boolean }
  dataDir: string
  pid: number
  version: string
}

export const VERSION = '0.1.0'

/**
 * Hosts one node: identity, store and mesh transport, driven by the node
 * machine (src/machines/node-machine.ts) whose effects are provided here.
 */
export class NodeRuntime {
  readonly init: NodeRuntimeInit
  private readonly log: Logger
  private mesh?: MeshNode
  private store?: NodeStore
  private actor?: ActorRefFrom<typeof nodeMachine>
  private runtime?: WorkloadRuntime
  /** Prometheus metrics of this node (`GET /metrics`). */
  readonly metrics = new NodeMetrics({
    peers: () => this.mesh?.started === true ? this.mesh.peers().length : 0,
    workloads: () => this.runtime?.list().length ?? 0,
    replicas: () => this.runtime?.host.list().length ?? 0
  })

  constructor (init: NodeRuntimeInit) {
    this.init = init
    this.log = init.logger ?? silentLogger
  }

  /** Starts the node; resolves once the mesh transport listens, rejects with the reason it could not. */
  async start (): Promise<void> {
    const identity = await loadOrCreateIdentity(this.init.dataDir)
    if (identity.created) this.log.info({ path: identity.path }, 'created a new node identity')
    const store = await NodeStore.open(this.init.dataDir)
    this.store = store
    const known = await store.knownPeers().catch(() => [])
    let mesh: MeshNode
    try {
      mesh = new MeshNode({
        privateKey: identity.privateKey,
        listen: this.init.listen,
        announce: this.init.announce,
        bootstrap: this.init.bootstrap,
        knownPeers: known.flatMap(p => p.addrs),
        privateAddresses: this.init.privateAddresses,
        logger: this.log
      })
    } catch (err) {
      await store.close()
      throw err
    }
    this.mesh = mesh

    let startError: unknown
    const logic = nodeMachine.provide({
      actors: {
        startNode: fromPromise(async () => {
          try {
            await mesh.start()
            const artifacts = new ArtifactService(mesh, new ArtifactStore(this.init.dataDir), this.log)
            await artifacts.start()
            const engine = this.init.containerSocket != null ? new ContainerEngine({ socketPath: this.init.containerSocket, log: this.log }) : undefined
            const runtime = new WorkloadRuntime({ mesh, artifacts, store, log: this.log, capacity: this.init.capacity, labels: this.init.labels ?? {}, tenderWindowMs: this.init.tenderWindowMs, metrics: this.metrics, ...(engine != null ? { engine } : {}) })
            await runtime.start()
            this.runtime = runtime
          } catch (err) {
            startError = err
            throw err
          }
        }),
        stopNode: fromPromise(async () => {
          try {
            await this.runtime?.stop()
            await mesh.stop()
          } finally {
            await store.close()
          }
        })
      }
    })
    const actor = createActor(logic, { id: `node:${mesh.peerId}` })
    this.actor = actor
    const peerCount = (): number => mesh.started ? mesh.peers().length : 0
    mesh.addEventListener('peer:connect', () => { actor.send({ type: 'node.peerConnected', peerCount: peerCount() }) })
    mesh.addEventListener('peer:disconnect', () => { actor.send({ type: 'node.peerDisconnected', peerCount: peerCount() }) })
    mesh.addEventListener('peer:identified', evt => {
      store.rememberPeer({ ...evt.detail, lastSeen: Date.now() }).catch(err => {
        this.log.debug({ err: describeError(err) }, 'could not remember peer')
      })
    })

    const settled = new Promise<void>((resolve, reject) => {
      const sub = actor.subscribe(snapshot => {
        if (snapshot.matches('running')) { sub.unsubscribe(); resolve() }
        if (snapshot.matches('failed')) { sub.unsubscribe(); reject(startError ?? new Error(snapshot.context.error)) }
      })
    })
    actor.start()
    try {
      await settled
    } catch (err) {
      await store.close().catch(() => {})
      throw err
    }
  }

  /** Stops the node gracefully; resolves when the machine reached `stopped`. */
  async stop (): Promise<void> {
    const actor = this.actor
    if (actor == null) return
    const snapshot = actor.getSnapshot()
    if (snapshot.status === 'done') return
    const done = new Promise<void>(resolve => {
      const sub = actor.subscribe({ complete: () => { sub.unsubscribe(); resolve() } })
      if (actor.getSnapshot().status === 'done') resolve()
    })
    actor.send({ type: 'node.stopRequested' })
    await done
  }

  get peerId (): string {
    return this.meshNode().peerId
  }

  status (): NodeStatus {
    const mesh = this.meshNode()
    return {
      peerId: mesh.peerId,
      state: nodeStateName(this.actor?.getSnapshot().value ?? 'starting'),
      addresses: mesh.started ? mesh.addresses() : [],
      uptimeMs: mesh.uptimeMs,
      peerCount: mesh.started ? mesh.peers().length : 0,
      capacity: this.init.capacity,
      allocated: this.runtime?.allocated() ?? { cpuMillis: 0, memoryBytes: 0 },
      labels: this.init.labels ?? {},
      replicas: (this.runtime?.host.list().length ?? 0) + (this.runtime?.containers.list().length ?? 0) + (this.runtime?.machines.list().length ?? 0),
      ...(this.init.containerSocket != null ? { containers: { socket: this.init.containerSocket, available: this.runtime?.containers.available ?? false } } : {}),
      dataDir: this.init.dataDir,
      pid: process.pid,
      version: VERSION
    }
  }

  peers (): MeshPeer[] {
    return this.meshNode().peers()
  }

  async putRecord (key: string, value: Uint8Array, options?: AbortOptions): Promise<PutResult> {
    return await this.meshNode().putRecord(key, value, options)
  }

  async getRecord (key: string, options?: AbortOptions): Promise<DecodedRecord> {
    return await this.meshNode().getRecord(key, options)
  }

  topicPeers (topic: string): string[] {
    return this.meshNode().topicPeers(topic)
  }

  /**
   * Subscribes to a topic and calls `onMessage` for each message until the
   * returned function is called. Subscriptions are reference counted by the mesh node.
   */
  /** Whether this node's own DHT store holds `key`. */
  async hasLocalRecord (key: string): Promise<boolean> {
    return await this.meshNode().hasLocalRecord(key)
  }

  watchTopic (topic: string, onMessage: (msg: MeshMessage) => void): () => void {
    const mesh = this.meshNode()
    const listener = (evt: CustomEvent<MeshMessage>): void => {
      if (evt.detail.topic === topic) onMessage(evt.detail)
    }
    mesh.subscribe(topic)
    mesh.addEventListener('message', listener)
    let active = true
    return () => {
      if (!active) return
      active = false
      mesh.removeEventListener('message', listener)
      mesh.unsubscribe(topic)
    }
  }

  /** The workload plane; throws until the node has started. */
  get workloads (): WorkloadRuntime {
    if (this.runtime == null) throw new NotStartedError()
    return this.runtime
  }

  private meshNode (): MeshNode {
    if (this.mesh == null) throw new Error('node runtime is not started')
    return this.mesh
  }
}
