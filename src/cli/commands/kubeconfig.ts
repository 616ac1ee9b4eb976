import { writeFile } from 'node:fs/promises'
import { stringify as toYaml } from 'yaml'
import { describeError, InvalidArgumentError } from '../../errors.js'
import { ApiClient } from '../api-client.js'
import { ApiRequestError } from '../../api/errors.js'

/**
 * A kubeconfig whose one cluster is a BeeMesh node's Kubernetes-compatible
 * API (the node's control API URL), context `beemesh`, namespace `default`,
 * no credentials (the API listens on loopback by default). With the mesh CA
 * (PEM), the server is the same host and port over https, verified with it.
 */
export function kubeconfig (api: string, { ca }: { ca?: string } = {}): Record<string, unknown> {
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
    users: [{ name: 'beemesh', user: {} }],
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

/** `beemesh kubeconfig`: prints the kubeconfig, or writes it to `write` (mode 0600). */
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
  const text = toYaml(kubeconfig(api, ca != null ? { ca } : {}))
  if (write == null) { process.stdout.write(text); return }
  await writeFile(write, text, { mode: 0o600 })
  process.stdout.write(`wrote ${write}: kubectl --kubeconfig ${write} get nodes\n`)
}
