/**
 * A loopback HTTP proxy that adds a bearer token to every request, for the
 * real kubectl while the API speaks plain HTTP: kubectl (client-go) sends a
 * kubeconfig's credentials only over TLS, as `kubectl proxy` users know.
 * It forwards method, path, headers and body unchanged otherwise, streaming
 * both ways (watches and logs follow through it).
 */
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface AuthProxy { url: string, close: () => Promise<void> }

export async function authProxy (target: string, token: string): Promise<AuthProxy> {
  const to = new URL(target)
  const server: Server = createServer((req, res) => {
    const headers = { ...req.headers, host: to.host, authorization: `Bearer ${token}` }
    const out = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers }, upstream => {
      res.writeHead(upstream.statusCode ?? 502, upstream.headers)
      upstream.pipe(res)
    })
    out.on('error', err => { if (!res.headersSent) res.writeHead(502); res.end(String(err)) })
    req.pipe(out)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) }
  }
}
