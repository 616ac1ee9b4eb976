import { VERSION } from '../version.js'
import { createActor, fromPromise, type ActorRefFrom } from 'xstate'
import { sandboxMode, warmPool } from '../sandbox/confine.js'
import type { NodeStatus, SandboxMode } from '../workloads/views.js'
import { describeError } from '../errors.js'
import { nodeMachine, nodeStateName } from '../machines/node-machine.js'
import { NodeStore } from '../store/node-store.js'
import { loadOrCreateIdentity } from '../transport/identity.js'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { silentLogger, type Logger } from '../transport/logger.js'
import { NotStartedError } from '../transport/errors.js'
import { TrustError } from '../policy/errors.js'
import { recordGuard } from '../actors/record-writers.js'
import { MeshNode, type MeshMessage, type MeshPeer, type PutResult } from '../transport/mesh-node.js'
import type { DecodedRecord } from '../transport/records.js'
import type { AbortOptions } from '@libp2p/interface'
import { ArtifactStore } from '../store/artifact-store.js'
import { ArtifactService } from '../transport/artifacts.js'
import type { Resources } from '../workloads/types.js'
import { WorkloadRuntime } from './workload-runtime.js'
import { NodeMetrics } from '../actors/metrics.js'
import type { ServiceCidr } from '../services/directory.js'
import { ContainerEngine } from '../containers/container-engine.js'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { credentialExpiryWarning, issueCredential, SignedCredentialSchema, verifyCredential, type MeshTrust, type SignedCredential } from '../policy/credentials.js'
import { isWorkloadIdentity, Trust } from '../policy/trust.js'
import { sealingGuard, setRpcGuard } from '../transport/rpc.js'
import { HEARTBEAT_TOPIC, SCHEDULER_TOPIC } from '../protocol/messages.js'
import { POLICY_TOPIC, PolicySync } from '../actors/policy-sync.js'
import type { Inspection } from '../actors/inspection.js'
import { connectInspector } from '../actors/inspector-relay.js'

/** Where a node keeps the membership credential it issued itself with `issueWith`. */
export const CREDENTIAL_FILE = 'credential.json'

/** Whom a node trusts and how it proves it belongs (docs/security.md). */
export interface NodeTrustConfig {
  /** The mesh's trust file (`beemesh init`): the root key id and the starting policy. */
  mesh: MeshTrust
  /** This node's membership credential, issued by the root (`beemesh credential issue`). */
  credential?: SignedCredential
  /**
   * The root key, to issue this node its own credential at start (`beemesh up`
   * and tests): used once, then dropped. Production nodes get theirs offline.
   */
  issueWith?: PrivateKey
}

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
  /** The block of service addresses (`--service-cidr`). */
  serviceCidr?: ServiceCidr
  /** Path of a Docker Engine API socket (dockerd or Podman's service): container workloads run there. */
  containerSocket?: string
  trust: NodeTrustConfig
  /** The Stately inspector relay (`beemesh inspect`) every actor of this node reports to; absent: no inspection. */
  inspectUrl?: string
  /** `--allow-unconfined`: on a host that cannot confine workload code, run it in worker threads instead of refusing it. */
  allowUnconfined?: boolean
  /** `--warm-sandboxes`: blank confined sandboxes kept ready per kind of sandbox in use, so a replica starts without booting one (0: none). Default 1. */
  warmSandboxes?: number
  /** `--message-max-age`: sealed messages older than this are stale; the replay window is this plus 10 s. Default 30 s. */
  messageMaxAgeMs?: number
}



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
  private trustService?: Trust
  private policySync?: PolicySync
  private inspection?: Inspection
  /** This node keeps the process's warm sandboxes filled (confine.ts). */
  private warmRetained = false
  /** How workload code runs on this node: decided once, at construction. */
  readonly sandbox: SandboxMode
  /** Prometheus metrics of this node (`GET /metrics`). */
  readonly metrics = new NodeMetrics({
    peers: () => this.mesh?.started === true ? this.mesh.peers().length : 0,
    workloads: () => this.runtime?.list().length ?? 0,
    replicas: () => this.runtime?.host.list().length ?? 0,
    replayWindow: () => this.trustService?.replayWindowSize ?? 0,
    warmSandboxes: () => Object.values(warmPool.warm()).reduce((n, pids) => n + pids.length, 0)
  })

  constructor (init: NodeRuntimeInit) {
    this.init = init
    this.log = init.logger ?? silentLogger
    this.sandbox = sandboxMode(init.allowUnconfined ?? false)
  }

  /** Starts the node; resolves once the mesh transport listens, rejects with the reason it could not. */
  async start (): Promise<void> {
    const identity = await loadOrCreateIdentity(this.init.dataDir)
    if (identity.created) this.log.info({ path: identity.path }, 'created a new node identity')
    if (this.sandbox.isolation === 'thread') this.log.warn({ sandbox: this.sandbox }, 'WORKLOAD CODE IS NOT CONFINED on this node (--allow-unconfined): it runs in worker threads of the node process, with the node\'s files, network and environment')
    else if (this.sandbox.isolation === 'refused') this.log.warn({ sandbox: this.sandbox }, 'this host cannot confine workload code: actor workloads will fail to start here (start the node with --allow-unconfined to run them unconfined)')
    const store = await NodeStore.open(this.init.dataDir)
    this.store = store
    const known = await store.knownPeers().catch(() => [])
    let trust: Trust
    try {
      trust = await this.openTrust(identity.privateKey)
    } catch (err) {
      await store.close()
      throw err
    }
    this.trustService = trust
    let mesh: MeshNode
    try {
      mesh = new MeshNode({
        guard: {
          seal: async (topic, data, as) => {
            // The mesh passes `as` through untyped: only a workload identity may sign in a workload's name.
            if (as != null && !isWorkloadIdentity(as)) throw new TypeError(`a message can be sealed as a workload identity only, got ${typeof as}`)
            return await trust.seal(topic, new TextDecoder().decode(data), as ?? undefined)
          },
          open: async (topic, data, options) => {
            const { body, sender, nonce, ts } = await trust.open(topic, data, { replay: options?.relayed !== true, ...(options?.maxAgeMs != null ? { maxAgeMs: options.maxAgeMs } : {}) })
            return { data: new TextEncoder().encode(body), sender, author: sender.node, id: `${sender.signer}:${nonce}`, ts }
          },
          onBanned: () => { this.metrics.bans.inc() }
        },
        recordGuard: recordGuard(trust, reason => { this.metrics.refusals.inc({ what: 'record', reason }) }),
        membership: {
          proof: () => trust.credential,
          admit: async (peerId, proof) => {
            try {
              if (proof == null) throw new TrustError('not-a-member', `${peerId} presented no membership credential`)
              return { expiresAt: (await trust.admit(proof, peerId)).expiresAt }
            } catch (err) {
              this.metrics.refusals.inc({ what: 'connection', reason: err instanceof TrustError ? err.reason : 'malformed' })
              this.metrics.bans.inc()
              throw err
            }
          }
        },
        scoredTopics: [SCHEDULER_TOPIC, HEARTBEAT_TOPIC, POLICY_TOPIC],
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
    // never fails: an unreachable relay or a refused URL is a warning, and the node runs without it
    const inspection = this.init.inspectUrl != null ? await connectInspector({ url: this.init.inspectUrl, peerId: mesh.peerId, log: this.log }) : undefined
    this.inspection = inspection

    let startError: unknown
    const logic = nodeMachine.provide({
      actors: {
        // Neither the mesh, the policy sync nor the workload runtime takes a signal when it
        // starts or stops: each step is awaited only until the signal aborts (a stop requested
        // while starting), and no later step begins after that. The step still under way is
        // ended by stopNode, which stops whatever was started.
        startNode: fromPromise(async ({ signal }) => {
          try {
            await untilAborted(async () => await mesh.start(), signal)
            setRpcGuard(mesh, sealingGuard(trust, (protocol, reason) => { this.metrics.refusals.inc({ what: protocol, reason }) }))
            const policySync = new PolicySync(mesh, trust, store, this.log)
            const persisted = await untilAborted(async () => await policySync.stored(), signal)
            if (persisted != null) await untilAborted(async () => { await trust.applyPolicy(persisted, 'the node store').catch(err => { if (!(err instanceof Error && /not newer/.test(err.message))) this.log.warn({ err: describeError(err) }, 'persisted policy refused') }) }, signal)
            await untilAborted(async () => { await policySync.start() }, signal)
            this.policySync = policySync
            const artifacts = new ArtifactService(mesh, new ArtifactStore(this.init.dataDir), this.log)
            await untilAborted(async () => { await artifacts.start() }, signal)
            const engine = this.init.containerSocket != null ? new ContainerEngine({ socketPath: this.init.containerSocket, log: this.log }) : undefined
            const runtime = new WorkloadRuntime({ mesh, artifacts, store, trust, policySync, log: this.log, capacity: this.init.capacity, labels: this.init.labels ?? {}, tenderWindowMs: this.init.tenderWindowMs, metrics: this.metrics, ...(this.init.serviceCidr != null ? { serviceCidr: this.init.serviceCidr } : {}), ...(engine != null ? { engine } : {}), ...(inspection != null ? { inspection } : {}), isolation: this.sandbox.isolation })
            await untilAborted(async () => { await runtime.start() }, signal)
            this.runtime = runtime
          } catch (err) {
            startError = err
            throw err
          }
        }),
        // Stops every part, each awaited until the signal aborts (the node machine itself
        // stopped); the store is closed in any case.
        stopNode: fromPromise(async ({ signal }) => {
          try {
            this.policySync?.stop()
            await untilAborted(async () => { await this.runtime?.stop() }, signal)
            await untilAborted(async () => { await mesh.stop() }, signal)
          } finally {
            await store.close()
          }
        })
      }
    })
    const actor = createActor(logic, { id: `node:${mesh.peerId}`, ...(inspection != null ? { inspect: inspection.observer('node') } : {}) })
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
      inspection?.stop()
      throw err
    }
    const warm = this.init.warmSandboxes ?? 1
    if (this.sandbox.isolation === 'confined' && warm > 0) {
      warmPool.retain({ size: warm })
      this.warmRetained = true
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
    this.inspection?.stop()
    if (this.warmRetained) {
      this.warmRetained = false
      await warmPool.release()
    }
  }

  /**
   * The node's trust service: its own credential (given, read from the data
   * dir, or issued with the root key in `issueWith`) checked against the root,
   * and the starting policy in force.
   */
  private async openTrust (key: PrivateKey): Promise<Trust> {
    const cfg = this.init.trust
    const peerId = peerIdFromPrivateKey(key).toString()
    let credential = cfg.credential
    const file = join(this.init.dataDir, CREDENTIAL_FILE)
    if (credential == null) {
      const saved = await readFile(file, 'utf8').then(t => SignedCredentialSchema.parse(JSON.parse(t)), () => undefined)
      if (saved != null && await verifyCredential(saved, { issuer: cfg.mesh.root, subject: peerId, kind: 'node', now: Date.now() + 24 * 3600_000 }).then(() => true, () => false)) credential = saved
    }
    if (credential == null && cfg.issueWith != null) {
      credential = await issueCredential(cfg.issueWith, peerId, { labels: this.init.labels ?? {} })
      await writeFile(file, JSON.stringify(credential, null, 2) + '\n', { mode: 0o600 })
      this.log.info({ path: file }, 'issued this node its membership credential with the root key (dev mode)')
    }
    const expiring = credential != null ? credentialExpiryWarning(credential.credential) : undefined
    if (expiring != null) this.log.warn({ expiresAt: credential?.credential.expiresAt }, expiring)
    const metrics = this.metrics
    const trust = new Trust({
      root: cfg.mesh.root,
      key,
      ...(credential != null ? { credential } : {}),
      policies: cfg.mesh.policy != null ? [cfg.mesh.policy] : [],
      log: this.log,
      ...(this.init.messageMaxAgeMs != null ? { maxAgeMs: this.init.messageMaxAgeMs } : {}),
      metrics: {
        refused: (what, reason) => { metrics.refusals.inc({ what, reason }) },
        decided: (action, allowed, rule) => { metrics.decisions.inc({ action, decision: allowed ? 'allow' : 'deny', rule }) }
      }
    })
    await trust.start()
    return trust
  }

  /** Whom this node trusts and what it allows; throws until started. */
  get trust (): Trust {
    if (this.trustService == null) throw new NotStartedError()
    return this.trustService
  }

  get policies (): PolicySync {
    if (this.policySync == null) throw new NotStartedError()
    return this.policySync
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
      ...(mesh.started ? (({ routingTable, topicMesh }) => ({ dht: { routingTable }, topicMesh }))(mesh.stats()) : {}),
      ...(this.runtime?.membershipStatus() ?? {}),
      capacity: this.init.capacity,
      allocated: this.runtime?.allocated() ?? { cpuMillis: 0, memoryBytes: 0 },
      labels: this.init.labels ?? {},
      replicas: (this.runtime?.host.list().length ?? 0) + (this.runtime?.containers.list().length ?? 0) + (this.runtime?.machines.list().length ?? 0),
      ...(this.init.containerSocket != null ? { containers: { socket: this.init.containerSocket, available: this.runtime?.containers.available ?? false } } : {}),
      dataDir: this.init.dataDir,
      sandbox: this.sandbox,
      trust: {
        root: this.init.trust.mesh.root,
        member: this.trustService?.isMember ?? false,
        labels: { ...this.trustService?.labels },
        policy: { name: this.trustService?.policy.name ?? 'empty', version: this.trustService?.policy.version ?? -1 }
      },
      pid: process.pid,
      version: VERSION
    }
  }

  peers (): MeshPeer[] {
    return this.meshNode().peers()
  }

  /** What this node knows of one peer: connected, admitted as a member, in its address book. */
  async peer (peerId: string): Promise<{ peerId: string, connected: boolean, admitted: boolean, addressBook: boolean }> {
    const mesh = this.meshNode()
    return { peerId, connected: mesh.isConnected(peerId), admitted: mesh.isAdmitted(peerId), addressBook: await mesh.knowsPeer(peerId) }
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

/**
 * Runs `step` and awaits it until `signal` aborts, then rejects with the
 * signal's reason (the step itself goes on: it takes no signal). With the
 * signal aborted already, the step is not begun.
 */
async function untilAborted<T> (step: () => Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  const running = step()
  // A step that fails after the abort won the race is not awaited by anyone: its failure is not news.
  running.catch(() => {})
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([running, aborted])
  } finally {
    if (onAbort != null) signal.removeEventListener('abort', onAbort)
  }
}
