import { writeFile } from 'node:fs/promises'
import { stringify as toYaml } from 'yaml'
import { describeError, InvalidArgumentError } from '../../errors.js'
import { MAX_TOKEN_TTL_MS } from '../../policy/credentials.js'
import { ApiClient, bearerFor } from '../api-client.js'
import { ApiRequestError } from '../../api/errors.js'

/**
 * A kubeconfig whose one cluster is a BeeMesh node's Kubernetes-compatible
 * API (the node's control API URL), context `beemesh`, namespace `default`,
 * and, given them, the bearer token its user sends and the mesh CA (PEM):
 * then the server is the same host and port over https, verified with it.
 */
export function kubeconfig (api: string, { ca, token }: { ca?: string, token?: string } = {}): Record<string, unknown> {
  let url: URL
  try {
    url = new URL(api)
  } catch {
    throw new InvalidArgumentError(`--api must be a URL such as http://127.0.0.1:7700, got "${api}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`--api must be an http(s) URL, got "${api}"`)
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'beemesh', cluster: ca != null ? { server: `https://${url.host}`, 'certificate-authority-data': Buffer.from(ca).toString('base64') } : { server: url.origin } }],
    users: [{ name: 'beemesh', user: token != null ? { token } : {} }],
    contexts: [{ name: 'beemesh', context: { cluster: 'beemesh', user: 'beemesh', namespace: 'default' } }],
    'current-context': 'beemesh',
    preferences: {}
  }
}

/**
 * The mesh CA a node's API serves with (`GET /v1/ca`; the CA is public), or
 * undefined when the node has no TLS. Over https the answer is verified with
 * the CLI's CA (--ca); over http only loopback answers (plain HTTP is served
 * nowhere else).
 */
async function nodeCa (api: string): Promise<string | undefined> {
  const res = await new ApiClient(api).fetch('/v1/ca', { timeoutMs: 5_000 })
  if (res.status === 404) { await res.body?.cancel(); return undefined }
  const text = await res.text()
  if (!res.ok || !text.includes('-----BEGIN CERTIFICATE-----')) throw new ApiRequestError(res.status, `${api}/v1/ca did not answer a CA certificate (HTTP ${res.status})`)
  return text
}

/** How long a token made from a deployer key for a kubeconfig lasts (the longest a token may). */
const KUBECONFIG_TOKEN_TTL_MS = MAX_TOKEN_TTL_MS

/**
 * `beemesh kubeconfig`: prints the kubeconfig, or writes it to `write` (mode
 * 0600). Its cluster is the node's API over https with the mesh CA when the
 * node serves TLS; its user's token is the CLI's for that API: `--token`, the
 * one `beemesh up` wrote for its mesh, or one made from the deployer key.
 */
export async function printKubeconfig (api: string, { write }: { write?: string } = {}): Promise<void> {
  kubeconfig(api)
  let ca: string | undefined
  try {
    ca = await nodeCa(api)
  } catch (err) {
    // An https server needs its CA in the kubeconfig: no kubeconfig that cannot verify it.
    if (err instanceof ApiRequestError || api.startsWith('https:')) throw err
    process.stderr.write(`warning: could not ask ${api} for its mesh CA (${describeError(err)}); the kubeconfig points at ${api} as given\n`)
  }
  const token = await bearerFor(api.replace(/\/+$/, ''), { ttlMs: KUBECONFIG_TOKEN_TTL_MS })
  if (token == null) process.stderr.write('no token for this API (no `beemesh up` mesh serves it, no deployer key): the kubeconfig has no credentials and the API will answer 401\n')
  const text = toYaml(kubeconfig(api, { ...(ca != null ? { ca } : {}), ...(token != null ? { token } : {}) }))
  if (write == null) { process.stdout.write(text); return }
  await writeFile(write, text, { mode: 0o600 })
  process.stdout.write(`wrote ${write}: kubectl --kubeconfig ${write} get nodes\n`)
}
