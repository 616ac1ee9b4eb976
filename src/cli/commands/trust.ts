/**
 * The trust commands: deployer keys (`keygen`, `identity`, `token`), a mesh's
 * trust root (`init`), membership credentials (`credential issue`), a node's
 * peer id (`node id`) and root-signed policies (`policy sign|apply|get`).
 * Key material never leaves this machine: only signed statements are printed
 * or sent to a node.
 */
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import {
  generateKey,
  issueCredential,
  issueToken,
  MAX_TOKEN_TTL_MS,
  readJsonFile,
  readKeyFile,
  SignedCredentialSchema,
  signPolicy,
  SignedPolicySchema,
  writeKeyFile,
  type MeshTrust,
  type SignedPolicy
} from '../../policy/credentials.js'
import { defaultPolicyText } from '../../policy/defaults.js'
import { parsePolicy } from '../../policy/engine.js'
import { TrustError } from '../../policy/errors.js'
import { loadOrCreateIdentity } from '../../transport/identity.js'
import { BeeMeshError, describeError, InvalidArgumentError } from '../../errors.js'
import { ApiClient } from '../api-client.js'
import { printObject, type OutputFormat } from '../output.js'
import { DEFAULT_CERT_TTL, DEFAULT_CREDENTIAL_TTL, DEFAULT_KEY_PATH, DEFAULT_MESH_NAME, DEFAULT_TOKEN_TTL, DEFAULT_TRUST_DIR } from '../defaults.js'

/** A file named on the command line cannot be read or written. */
export class TrustFileError extends BeeMeshError {
  constructor (readonly path: string, detail: string, options?: ErrorOptions) {
    super(`${path}: ${detail}`, options)
    this.name = 'TrustFileError'
  }
}

const UNITS: Record<string, number> = { s: 1000, m: 60 * 1000, h: 60 * 60 * 1000, d: 24 * 60 * 60 * 1000 }

/** `30d`, `12h`, `90m`, `3600s` in milliseconds; anything else is a usage error naming `flag` and the value. */
export function parseDuration (value: string, flag = '--ttl'): number {
  const m = /^([1-9][0-9]{0,8})([dhms])$/.exec(value.trim())
  if (m == null) throw new InvalidArgumentError(`${flag} must be a positive whole number of days, hours, minutes or seconds (e.g. 30d, 12h, 90m, 3600s), got "${value}"`)
  return Number(m[1]) * UNITS[m[2]!]!
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new TrustFileError(path, `cannot check: ${describeError(err)}`, { cause: err })
  }
}

async function readText (path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
    throw new TrustFileError(path, missing ? `no such ${what}` : `cannot read ${what}: ${describeError(err)}`, { cause: err })
  }
}

/** Writes a non-secret file (a credential, a signed policy, the mesh file), mode 0644. */
async function writePublic (path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text, { mode: 0o644 })
    await chmod(path, 0o644)
  } catch (err) {
    throw new TrustFileError(path, `cannot write: ${describeError(err)}`, { cause: err })
  }
}

const json = (value: unknown): string => JSON.stringify(value, null, 2) + '\n'

// ---------------------------------------------------------------- deployer keys

/** `beemesh keygen`: a new Ed25519 deployer key file (mode 0600); refuses to replace one without `force`. */
export async function keygen ({ out, force = false, output = 'table' }: { out?: string, force?: boolean, output?: OutputFormat }): Promise<{ id: string, path: string }> {
  const path = resolve(out ?? DEFAULT_KEY_PATH())
  const id = await writeKeyFile(path, await generateKey(), { overwrite: force })
  if (output === 'table') process.stdout.write(`created deployer key ${id}\n  file ${path}\n`)
  else printObject({ id, path }, output)
  return { id, path }
}

/** `beemesh identity`: the deployer key id (the principal policies name) of a key file. */
export async function identity ({ key, output = 'table' }: { key?: string, output?: OutputFormat }): Promise<void> {
  const path = resolve(key ?? DEFAULT_KEY_PATH())
  const { id } = await readKeyFile(path)
  if (output === 'table') process.stdout.write(`${id}\n`)
  else printObject({ id, path }, output)
}

/** A bearer token's `--ttl` in ms: a duration no longer than tokens may live. */
export function tokenTtl (ttl: string): number {
  const ttlMs = parseDuration(ttl)
  if (ttlMs > MAX_TOKEN_TTL_MS) throw new InvalidArgumentError(`--ttl ${ttl}: a token may live at most ${MAX_TOKEN_TTL_MS / UNITS.d!}d`)
  return ttlMs
}

/** `beemesh token`: a bearer token for the control API, signed by the deployer key; only the token is printed. */
export async function token ({ key, ttl = DEFAULT_TOKEN_TTL, mesh, api, credential }: { key?: string, ttl?: string, mesh?: string, api?: string, credential?: string }): Promise<void> {
  const ttlMs = tokenTtl(ttl)
  const { key: deployerKey } = await readKeyFile(resolve(key ?? DEFAULT_KEY_PATH()))
  const { meshFor, resolveApiUrl } = await import('../api-client.js')
  const cred = credential != null ? await readJsonFile(credential, SignedCredentialSchema, 'deployer credential (--credential)') : undefined
  process.stdout.write(`${await issueToken(deployerKey, { ttlMs, mesh: await meshFor(resolveApiUrl(api), mesh), ...(cred != null ? { credential: cred } : {}) })}\n`)
}

// ---------------------------------------------------------------- a mesh's trust root

export interface InitMeshOptions {
  /** Where root.key, policy.yaml and mesh.json go (created if missing). */
  dir: string
  name?: string
  /** The admin's deployer key file; created if missing. */
  deployerKeyPath?: string
  /** Replace an existing root key (and the policy and mesh files next to it). */
  force?: boolean
}

export interface InitMeshResult {
  /** The root key id: it signs node credentials and policies. */
  root: string
  /** The admin's deployer key id. */
  deployer: string
  dir: string
  meshFile: string
  rootKeyFile: string
  policyFile: string
  deployerKeyFile: string
  deployerCreated: boolean
  name: string
  /** The mesh CA (ECDSA P-256) that signs the nodes' API certificates. */
  caCertFile: string
  caKeyFile: string
}

const MESH_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/**
 * Creates a mesh's trust root in `dir`: `root.key` (mode 0600, keep it
 * offline), `policy.yaml` (the default policy, the deployer is admin) and
 * `mesh.json` (the root key id and the root-signed policy: what every node
 * gets with --trust). Refuses when `dir/root.key` exists, unless `force`.
 */
export async function initMesh ({ dir, name = DEFAULT_MESH_NAME, deployerKeyPath, force = false }: InitMeshOptions): Promise<InitMeshResult> {
  if (!MESH_NAME.test(name)) throw new InvalidArgumentError(`--name must be a lower-case DNS label (a-z, 0-9, -; at most 63 characters), got "${name}"`)
  const absDir = resolve(dir)
  const rootKeyFile = join(absDir, 'root.key')
  const policyFile = join(absDir, 'policy.yaml')
  const meshFile = join(absDir, 'mesh.json')
  const deployerKeyFile = resolve(deployerKeyPath ?? DEFAULT_KEY_PATH())
  if (!force && await exists(rootKeyFile)) {
    throw new TrustError('key-file', `${rootKeyFile}: a mesh trust root is already there; refusing to replace it (pass --force to make a new root: every node credential and policy it signed stops being valid)`)
  }

  let deployer: string
  const deployerCreated = !await exists(deployerKeyFile)
  if (deployerCreated) deployer = await writeKeyFile(deployerKeyFile, await generateKey())
  else deployer = (await readKeyFile(deployerKeyFile)).id

  try {
    await mkdir(absDir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new TrustFileError(absDir, `cannot create directory: ${describeError(err)}`, { cause: err })
  }
  const rootKey = await generateKey()
  const root = await writeKeyFile(rootKeyFile, rootKey, { overwrite: force })
  const policyText = defaultPolicyText({ admins: [deployer] })
  await writePublic(policyFile, policyText)
  const mesh: MeshTrust = { apiVersion: 'beemesh.io/v1', kind: 'Mesh', name, root, policy: await signPolicy(rootKey, policyText) }
  await writePublic(meshFile, json(mesh))
  const { createMeshCa, writePemPair, CA_CERT_FILE, CA_KEY_FILE } = await import('../../policy/tls-issue.js')
  const caCertFile = join(absDir, CA_CERT_FILE)
  const caKeyFile = join(absDir, CA_KEY_FILE)
  await writePemPair(caCertFile, caKeyFile, await createMeshCa(name))
  return { root, deployer, dir: absDir, meshFile, rootKeyFile, policyFile, deployerKeyFile, deployerCreated, name, caCertFile, caKeyFile }
}

/** `beemesh init`: prints what `initMesh` created and the next steps. */
export async function init (opts: InitMeshOptions & { output?: OutputFormat }): Promise<void> {
  const { output = 'table', ...rest } = opts
  const r = await initMesh(rest)
  if (output !== 'table') { printObject(r as unknown as Record<string, unknown>, output); return }
  const keyFlag = opts.deployerKeyPath != null ? ` --key ${r.deployerKeyFile}` : ''
  process.stdout.write(`created mesh ${r.name} in ${r.dir}
  root key      ${r.rootKeyFile}
                ${r.root}
                signs node credentials and policies: keep it offline, never copy it to a node
  policy        ${r.policyFile} (default deny; the deployer below is admin)
  mesh file     ${r.meshFile} (give it to every node)
  mesh CA       ${r.caCertFile} (public: clients verify node APIs with it)
                ${r.caKeyFile} (signs node API certificates: keep it offline with the root key)
  deployer key  ${r.deployerKeyFile} (${r.deployerCreated ? 'created' : 'existing'})
                ${r.deployer}

Next steps:
  1. on each node, print its peer id:
       beemesh node id --data-dir <node data dir>
  2. issue the node its membership credential (on this machine, with the root key):
       beemesh credential issue --root ${r.rootKeyFile} --node <peer id> --label zone=eu --out node.cred
  3. issue the node's API certificate for the names clients reach it by:
       beemesh cert issue --ca-dir ${r.dir} --host <node ip or name> --out node-api
  4. copy ${r.meshFile}, node.cred, node-api.crt and node-api.key to the node and start it:
       beemesh node start --trust mesh.json --credential node.cred --tls-cert node-api.crt --tls-key node-api.key --data-dir <node data dir>
  5. make a bearer token for the node's API (deployer key, 1h):
       beemesh token${keyFlag}
  6. change the policy: edit ${r.policyFile}, raise metadata.version, then
       beemesh policy apply ${r.policyFile} --root ${r.rootKeyFile}
`)
}

// ---------------------------------------------------------------- credentials and node ids

function nodePeerId (value: string): string {
  try {
    const peerId = peerIdFromString(value)
    if (peerId.type === 'Ed25519' && peerId.publicKey != null) return peerId.toString()
  } catch {}
  throw new InvalidArgumentError(`--node must be a node's peer id (an Ed25519 libp2p peer id such as 12D3KooW…; \`beemesh node id\` prints it), got "${value.slice(0, 80)}"`)
}

/** `beemesh credential issue`: the root vouches for a node (peer id) with labels, until the TTL runs out. */
export async function credentialIssue ({ root, node, deployer, label = {}, ttl, out }: { root: string, node?: string, deployer?: string, label?: Record<string, string>, ttl?: string, out?: string }): Promise<void> {
  if ((node == null) === (deployer == null)) throw new InvalidArgumentError('pass --node <peer id> (a member node) or --deployer <key id> (an API caller), one of them')
  const subject = nodePeerId((node ?? deployer)!)
  // A deployer credential rides in bearer tokens, which live at most 30 days: it defaults to that.
  const ttlMs = parseDuration(ttl ?? (deployer != null ? '30d' : DEFAULT_CREDENTIAL_TTL))
  const { key } = await readKeyFile(resolve(root))
  const credential = await issueCredential(key, subject, { labels: label, ttlMs, ...(deployer != null ? { kind: 'deployer' as const } : {}) })
  if (out == null) { process.stdout.write(json(credential)); return }
  await writePublic(out, json(credential))
  process.stdout.write(`wrote the credential of ${subject} to ${out} (expires ${new Date(credential.credential.expiresAt).toISOString()})\n`)
}

/** `beemesh node id`: the peer id of the node using `dataDir`, creating its identity key on first use. */
export async function nodeId ({ dataDir }: { dataDir: string }): Promise<void> {
  const { privateKey, path, created } = await loadOrCreateIdentity(resolve(dataDir))
  if (created) process.stderr.write(`created node identity key ${path}\n`)
  process.stdout.write(`${peerIdFromPrivateKey(privateKey).toString()}\n`)
}

// ---------------------------------------------------------------- API certificates


/**
 * `beemesh cert issue`: a serving certificate for a node's API, signed by the
 * mesh CA of `caDir` (ca.crt, ca.key), for `hosts` (IP addresses and DNS
 * names). Writes `<out>.crt` (the certificate, then the CA) and `<out>.key` (0600).
 */
export async function certIssue ({ caDir = DEFAULT_TRUST_DIR, host = [], ttl = DEFAULT_CERT_TTL, out }: { caDir?: string, host?: string[], ttl?: string, out: string }): Promise<{ certFile: string, keyFile: string }> {
  const ttlMs = parseDuration(ttl)
  const { checkHosts, issueServingCert, readMeshCa, writePemPair } = await import('../../policy/tls-issue.js')
  const hosts = checkHosts(host)
  const ca = await readMeshCa(resolve(caDir))
  const pair = await issueServingCert(ca, hosts, { ttlMs })
  const certFile = resolve(`${out}.crt`)
  const keyFile = resolve(`${out}.key`)
  await writePemPair(certFile, keyFile, pair)
  process.stdout.write(`wrote the API certificate for ${hosts.join(', ')} to ${certFile} (key ${keyFile}; expires ${new Date(Date.now() + ttlMs).toISOString().slice(0, 10)})
  start the node with: --tls-cert ${certFile} --tls-key ${keyFile}
`)
  return { certFile, keyFile }
}

// ---------------------------------------------------------------- policies

/** Parses a policy (PolicyError with line and column), then signs it with the root key in `root`. */
async function signPolicyFile (file: string, text: string, root: string): Promise<SignedPolicy> {
  parsePolicy(text, file)
  const { key } = await readKeyFile(resolve(root))
  return await signPolicy(key, text)
}

/** `beemesh policy sign`: nothing is signed (or printed) unless the policy parses. */
export async function policySign (file: string, { root, out }: { root: string, out?: string }): Promise<void> {
  const signed = await signPolicyFile(file, await readText(file, 'policy file'), root)
  if (out == null) { process.stdout.write(json(signed)); return }
  await writePublic(out, json(signed))
  process.stdout.write(`wrote the policy signed by ${signed.signer} to ${out}\n`)
}

/** A SignedPolicy JSON file as it is, or undefined when `text` is something else (a policy). */
function asSignedPolicy (file: string, text: string): SignedPolicy | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value == null || (value as { kind?: unknown }).kind !== 'SignedPolicy') return undefined
  const parsed = SignedPolicySchema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new TrustError('malformed', `${file}: not a valid signed policy: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`)
  }
  parsePolicy(parsed.data.text, `${file} (text)`)
  return parsed.data
}

interface PolicyApplied { name: string, version: number, peerId: string }
interface PolicyInForce { name: string, version: number, signer: string, signedAt: number, text: string, peerId: string }

/** `beemesh policy apply`: sends a signed policy (signing a plain one with `root`) to the node, which spreads it. */
export async function policyApply (file: string, { root, api }: { root?: string, api: string }): Promise<void> {
  const text = await readText(file, 'policy file')
  let signed = asSignedPolicy(file, text)
  if (signed == null) {
    parsePolicy(text, file)
    if (root == null) throw new InvalidArgumentError(`${file} is not signed: pass --root <root.key> to sign it, or apply a SignedPolicy made by \`beemesh policy sign\``)
    signed = await signPolicyFile(file, text, root)
  }
  const r = await new ApiClient(api).request<PolicyApplied>('/v1/policy', { method: 'PUT', body: signed, timeoutMs: 15_000 })
  process.stdout.write(`policy ${r.name} v${r.version} in force on ${r.peerId}\n`)
}

/** `beemesh policy get`: the policy in force on the node. */
export async function policyGet ({ api, output = 'table' }: { api: string, output?: OutputFormat }): Promise<void> {
  const p = await new ApiClient(api).request<PolicyInForce>('/v1/policy', { timeoutMs: 5_000 })
  if (output !== 'table') { printObject(p as unknown as Record<string, unknown>, output); return }
  printObject({ name: p.name, version: p.version, signer: p.signer, signed: new Date(p.signedAt).toISOString(), node: p.peerId }, 'table')
  process.stdout.write(`\n${p.text}${p.text.endsWith('\n') ? '' : '\n'}`)
}
