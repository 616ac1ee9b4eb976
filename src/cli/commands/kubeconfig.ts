import { writeFile } from 'node:fs/promises'
import { stringify as toYaml } from 'yaml'
import { InvalidArgumentError } from '../../errors.js'

/**
 * A kubeconfig whose one cluster is a BeeMesh node's Kubernetes-compatible
 * API (the node's control API URL), context `beemesh`, namespace `default`,
 * no credentials (the API listens on loopback by default).
 */
export function kubeconfig (api: string): Record<string, unknown> {
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
    users: [{ name: 'beemesh', user: {} }],
    contexts: [{ name: 'beemesh', context: { cluster: 'beemesh', user: 'beemesh', namespace: 'default' } }],
    'current-context': 'beemesh',
    preferences: {}
  }
}

/** `beemesh kubeconfig`: prints the kubeconfig, or writes it to `write` (mode 0600). */
export async function printKubeconfig (api: string, { write }: { write?: string } = {}): Promise<void> {
  const text = toYaml(kubeconfig(api))
  if (write == null) { process.stdout.write(text); return }
  await writeFile(write, text, { mode: 0o600 })
  process.stdout.write(`wrote ${write}: kubectl --kubeconfig ${write} get nodes\n`)
}
