import { parseServiceCidr } from '../../services/directory.js'
import { resolve } from 'node:path'
import { NodeRuntime, type NodeTrustConfig } from '../../node/node-runtime.js'
import { keyId, MeshTrustSchema, readJsonFile, readKeyFile, SignedCredentialSchema } from '../../policy/credentials.js'
import { resolveEngineSocket } from '../../containers/container-engine.js'
import { ControlApi } from '../../api/control-api.js'
import { MetricsListener, parseListen } from '../../api/metrics-listener.js'
import { describeError, InvalidArgumentError } from '../../errors.js'
import { createLogger } from '../logging.js'
import { parsePort } from '../defaults.js'
import { daemonStarted } from '../launch.js'
import { setFlagsFromString } from 'node:v8'
import { flagsAtRest } from '../../node/process-flags.js'
import { DEFAULT_INSPECT_URL, nodeSuffix } from '../../actors/inspection.js'
import { isLoopbackHost, loadServingTls, type ServingTls } from '../../policy/tls.js'
import { formatCpu, formatMemory, parseCpu, parseMemory } from '../../workloads/quantities.js'

export interface NodeStartOptions {
  listen: string[]
  announce: string[]
  bootstrap: string[]
  dataDir: string
  apiHost: string
  apiPort: string
  privateAddresses?: boolean
  logLevel: string
  cpu: string
  memory: string
  label: Record<string, string>
  tenderWindowMs: string
  serviceCidr: string
  /** `--container-socket`; DOCKER_HOST when absent; `false` with --no-containers. */
  containerSocket?: string | false
  /** The mesh's trust file (`beemesh init`). */
  trust?: string
  credential?: string
  issueWith?: string
  /** `--tls-cert`/`--tls-key`: the API's serving certificate (chain) and key (`beemesh cert issue`). */
  tlsCert?: string
  tlsKey?: string
  /** `--api-insecure-http`: also answer plain HTTP, to loopback callers only. */
  apiInsecureHttp?: boolean
  /** `--metrics-listen host:port`: a separate listener serving only /metrics, without a token. */
  metricsListen?: string
  /** `--inspect [ws-url]`: true without a URL (the default relay). */
  inspect?: string | boolean
  /** `--allow-unconfined`: run workload code in worker threads where the host cannot confine it. */
  allowUnconfined?: boolean
  /** `--warm-sandboxes <n>`: blank confined sandboxes kept ready per kind in use. */
  warmSandboxes?: string
  /** `--message-max-age <seconds>`: how old a sealed message may be. */
  messageMaxAge?: string
}

/** Reads the trust material named by the flags; every problem names the file and the flag. */
export async function loadTrustConfig (opts: Pick<NodeStartOptions, 'trust' | 'credential' | 'issueWith'>): Promise<NodeTrustConfig> {
  const trustFile = opts.trust ?? (process.env.BEEMESH_TRUST !== '' ? process.env.BEEMESH_TRUST : undefined)
  if (trustFile == null) throw new InvalidArgumentError('a node needs its mesh\'s trust file: pass --trust <mesh.json> (made by `beemesh init`), or run `beemesh up` for a local mesh')
  const mesh = await readJsonFile(trustFile, MeshTrustSchema, 'mesh trust file (--trust)')
  const credential = opts.credential != null ? await readJsonFile(opts.credential, SignedCredentialSchema, 'membership credential (--credential)') : undefined
  const issueWith = opts.issueWith != null ? (await readKeyFile(opts.issueWith)).key : undefined
  if (issueWith != null && keyId(issueWith) !== mesh.root) throw new InvalidArgumentError(`--issue-with ${opts.issueWith}: that key is not the root of mesh ${mesh.name} (${mesh.root})`)
  return { mesh, ...(credential != null ? { credential } : {}), ...(issueWith != null ? { issueWith } : {}) }
}

/**
 * The API's transport from the flags: TLS with a certificate, plain HTTP for
 * loopback callers only when asked for, and never plain HTTP on a host
 * other machines can reach.
 */
export async function loadApiTls (opts: Pick<NodeStartOptions, 'apiHost' | 'tlsCert' | 'tlsKey' | 'apiInsecureHttp'>): Promise<{ tls?: ServingTls, insecureHttp: boolean }> {
  if ((opts.tlsCert == null) !== (opts.tlsKey == null)) throw new InvalidArgumentError('--tls-cert and --tls-key go together: the serving certificate (chain) and its private key, made by `beemesh cert issue`')
  const insecureHttp = opts.apiInsecureHttp === true
  if (insecureHttp && !isLoopbackHost(opts.apiHost)) throw new InvalidArgumentError(`--api-insecure-http: plain HTTP is only served on loopback, but --api-host is ${opts.apiHost}; give the API a certificate (--tls-cert, --tls-key from \`beemesh cert issue\`) instead`)
  if (opts.tlsCert == null) {
    if (!insecureHttp) throw new InvalidArgumentError('the API needs a TLS certificate: pass --tls-cert and --tls-key (made by `beemesh cert issue` with the mesh CA), or --api-insecure-http for plain HTTP on loopback only')
    return { insecureHttp }
  }
  return { tls: await loadServingTls(opts.tlsCert, opts.tlsKey!), insecureHttp }
}

/** A hard deadline for a graceful stop: the brief asks for under 2 s. */
const STOP_DEADLINE_MS = 1_700

function quantity (parse: () => number, flag: string): number {
  try {
    return parse()
  } catch (err) {
    throw new InvalidArgumentError(`${flag}: ${describeError(err)}`)
  }
}

function resolveSocket (flag: string | undefined): string | undefined {
  try {
    return resolveEngineSocket(flag)
  } catch (err) {
    throw new InvalidArgumentError(`--container-socket: ${describeError(err)}`)
  }
}

/** The relay URL of `--inspect [ws-url]`, or undefined without the flag. */
export function parseInspectUrl (value: string | boolean | undefined): string | undefined {
  if (value == null || value === false) return undefined
  if (value === true) return DEFAULT_INSPECT_URL
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidArgumentError(`--inspect must be a WebSocket URL such as ${DEFAULT_INSPECT_URL}, got "${value}"`)
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new InvalidArgumentError(`--inspect must be a ws:// or wss:// URL (the relay of \`beemesh inspect\`), got "${value}"`)
  return value
}


/**
 * `beemesh node start`: runs one node in the foreground until SIGTERM/SIGINT
 * (or, when started by `beemesh up`, until the parent goes away).
 */
export async function nodeStart (opts: NodeStartOptions): Promise<void> {
  const apiPort = parsePort(opts.apiPort, '--api-port')
  const dataDir = resolve(opts.dataDir)
  const capacity = { cpuMillis: quantity(() => parseCpu(opts.cpu), '--cpu'), memoryBytes: quantity(() => parseMemory(opts.memory), '--memory') }
  const tenderWindowMs = Number(opts.tenderWindowMs)
  if (!Number.isInteger(tenderWindowMs) || tenderWindowMs < 1 || tenderWindowMs > 60_000) throw new InvalidArgumentError(`--tender-window-ms must be a whole number from 1 to 60000, got "${opts.tenderWindowMs}"`)
  const warmSandboxes = Number(opts.warmSandboxes ?? '1')
  if (!Number.isInteger(warmSandboxes) || warmSandboxes < 0 || warmSandboxes > 16) throw new InvalidArgumentError(`--warm-sandboxes must be a whole number from 0 to 16, got "${opts.warmSandboxes ?? ''}"`)
  const messageMaxAge = Number(opts.messageMaxAge ?? '30')
  if (!Number.isInteger(messageMaxAge) || messageMaxAge < 5 || messageMaxAge > 3600) throw new InvalidArgumentError(`--message-max-age must be a whole number of seconds from 5 to 3600, got "${opts.messageMaxAge ?? ''}"`)
  const serviceCidr = parseServiceCidr(opts.serviceCidr)
  if (serviceCidr == null) throw new InvalidArgumentError(`--service-cidr must be a /16 written a.b.0.0/16 (not loopback or multicast), got "${opts.serviceCidr}"`)
  const containerSocket = opts.containerSocket === false ? undefined : resolveSocket(opts.containerSocket)
  const inspectUrl = parseInspectUrl(opts.inspect)
  const trust = await loadTrustConfig(opts)
  const apiTls = await loadApiTls(opts)
  const log = createLogger(opts.logLevel, { component: 'node' })
  const runtime = new NodeRuntime({
    trust,
    dataDir,
    listen: opts.listen,
    announce: opts.announce,
    bootstrap: opts.bootstrap,
    privateAddresses: opts.privateAddresses,
    logger: log,
    capacity,
    labels: opts.label,
    tenderWindowMs,
    serviceCidr,
    ...(containerSocket != null ? { containerSocket } : {}),
    allowUnconfined: opts.allowUnconfined ?? false,
    warmSandboxes,
    messageMaxAgeMs: messageMaxAge * 1000,
    ...(inspectUrl != null ? { inspectUrl } : {})
  })
  const api = new ControlApi({ node: runtime, host: opts.apiHost, port: apiPort, logger: log, ...apiTls })
  const metricsAt = opts.metricsListen != null ? parseListen(opts.metricsListen) : undefined
  const metrics = metricsAt != null ? new MetricsListener({ render: async () => await runtime.metrics.render(), ...metricsAt, logger: log }) : undefined

  // The API port is claimed first so a conflict fails fast, before joining the mesh.
  await api.listen()
  try {
    await metrics?.listen()
    await runtime.start()
  } catch (err) {
    await Promise.allSettled([api.close(), metrics?.close()])
    throw err
  }

  process.on('unhandledRejection', reason => {
    log.error({ err: describeError(reason) }, 'unhandled rejection (node keeps running)')
  })

  const status = runtime.status()
  process.stdout.write(`node ${status.peerId} running\n`)
  for (const addr of status.addresses) process.stdout.write(`  listening  ${addr}\n`)
  process.stdout.write(`  api        ${api.url}\n`)
  if (apiTls.tls != null) process.stdout.write(`  api tls    certificate ${opts.tlsCert!}${apiTls.tls.ca != null ? ' (mesh CA at GET /v1/ca)' : ''}${apiTls.insecureHttp ? `; plain HTTP too, for loopback callers only (${api.url.replace('https:', 'http:')})` : ''}\n`)
  else process.stdout.write('  api tls    none: plain HTTP, for loopback callers only (--api-insecure-http)\n')
  if (metrics != null) process.stdout.write(`  metrics    ${metrics.url} (no token: this listener serves only /metrics)\n`)
  process.stdout.write(`  data dir   ${dataDir}\n`)
  process.stdout.write(`  offers     cpu ${formatCpu(capacity.cpuMillis)}, memory ${formatMemory(capacity.memoryBytes)}${Object.keys(opts.label).length > 0 ? `, labels ${Object.entries(opts.label).map(([k, v]) => `${k}=${v}`).join(',')}` : ''}\n`)
  process.stdout.write(`  mesh       ${trust.mesh.name} (root ${trust.mesh.root}); ${status.trust.member ? 'member' : 'NOT a member: no valid credential, the mesh ignores this node'}; policy ${status.trust.policy.name} v${status.trust.policy.version}\n`)
  if (status.containers != null) process.stdout.write(`  containers ${status.containers.socket} (${status.containers.available ? 'engine answers' : 'engine does not answer yet: no container workloads until it does'})\n`)
  if (opts.bootstrap.length > 0) process.stdout.write(`  joining    ${opts.bootstrap.join(', ')}\n`)
  if (inspectUrl != null) process.stdout.write(`  inspector  ${inspectUrl} (this node's actors show as <name>@${nodeSuffix(status.peerId)})\n`)
  // CPU from spawn until here, where the node is in the mesh and its API answers (issue: lean processes)
  const cpu = process.cpuUsage()
  const compiled = daemonStarted()
  // after the code cache is saved: V8 stamps a cache with the flags of the moment, and checks them at the next start
  for (const flag of flagsAtRest()) setFlagsFromString(flag)
  process.stdout.write(`  start      ${Math.round((cpu.user + cpu.system) / 1000)} ms of CPU${compiled != null ? `; ${compiled}` : ''}\n`)

  await new Promise<void>(resolveStop => {
    let stopping = false
    const stop = (why: string): void => {
      if (stopping) return
      stopping = true
      log.info({ why }, 'stopping')
      const deadline = setTimeout(() => {
        log.warn({ deadlineMs: STOP_DEADLINE_MS }, 'graceful stop took too long; exiting')
        process.exit(0)
      }, STOP_DEADLINE_MS)
      deadline.unref()
      Promise.allSettled([api.close(), metrics?.close(), runtime.stop()]).then(() => {
        clearTimeout(deadline)
        resolveStop()
      }, () => {})
    }
    process.once('SIGTERM', () => { stop('SIGTERM') })
    process.once('SIGINT', () => { stop('SIGINT') })
    // Started by `beemesh up` with an IPC channel: stop when the parent goes away.
    if (process.send != null) process.once('disconnect', () => { stop('parent exited') })
  })
  // Stopped: leave now rather than wait on handles that libraries keep open.
  process.exit(0)
}
