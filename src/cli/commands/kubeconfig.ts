import { writeFile } from 'node:fs/promises'
import { stringify as toYaml } from 'yaml'
import { InvalidArgumentError } from '../../errors.js'
import { MAX_TOKEN_TTL_MS } from '../../policy/credentials.js'
import { bearerFor } from '../api-client.js'

/**
 * A kubeconfig whose one cluster is a BeeMesh node's Kubernetes-compatible
 * API (the node's control API URL), context `beemesh`, namespace `default`,
 * and, given one, the bearer token its user sends.
 */
export function kubeconfig (api: string, token?: string): Record<string, unknown> {
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
    clusters: [{ name: 'beemesh', cluster: { server: url.origin } }],
    users: [{ name: 'beemesh', user: token != null ? { token } : {} }],
    contexts: [{ name: 'beemesh', context: { cluster: 'beemesh', user: 'beemesh', namespace: 'default' } }],
    'current-context': 'beemesh',
    preferences: {}
  }
}

/** How long a token made from a deployer key for a kubeconfig lasts (the longest a token may). */
const KUBECONFIG_TOKEN_TTL_MS = MAX_TOKEN_TTL_MS

/**
 * `beemesh kubeconfig`: prints the kubeconfig, or writes it to `write` (mode
 * 0600). Its user's token is the CLI's for that API: `--token`, the one
 * `beemesh up` wrote for its mesh, or one made from the deployer key.
 */
export async function printKubeconfig (api: string, { write }: { write?: string } = {}): Promise<void> {
  kubeconfig(api)
  const token = await bearerFor(api.replace(/\/+$/, ''), { ttlMs: KUBECONFIG_TOKEN_TTL_MS })
  if (token == null) process.stderr.write('no token for this API (no `beemesh up` mesh serves it, no deployer key): the kubeconfig has no credentials and the API will answer 401\n')
  const text = toYaml(kubeconfig(api, token))
  if (write == null) { process.stdout.write(text); return }
  await writeFile(write, text, { mode: 0o600 })
  process.stdout.write(`wrote ${write}: kubectl --kubeconfig ${write} get nodes\n`)
}
