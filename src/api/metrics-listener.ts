/**
 * `node start --metrics-listen <host:port>`: a second HTTP listener that
 * serves nothing but `GET /metrics`, without a token, for a Prometheus that
 * cannot send one. The operator opts in and picks where it listens; the
 * control API's `/metrics` still needs a token with `read` (docs/security.md).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describeError, InvalidArgumentError } from '../errors.js'
import type { Logger } from '../transport/logger.js'
import { ApiListenError } from './errors.js'

export interface MetricsListenerInit {
  render: () => Promise<{ contentType: string, body: string }>
  host: string
  port: number
  logger: Logger
}

/** `host:port` (`[::1]:9464` for IPv6) as given to --metrics-listen. */
export function parseListen (value: string): { host: string, port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value)
  const port = Number(m?.[3])
  if (m == null || port > 65535) throw new InvalidArgumentError(`--metrics-listen must be host:port (e.g. 127.0.0.1:9464), got "${value}"`)
  return { host: m[1] ?? m[2]!, port }
}

export class MetricsListener {
  private readonly server: Server

  constructor (private readonly init: MetricsListenerInit) {
    this.server = createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end('this listener serves only GET /metrics\n')
        return
      }
      init.render().then(({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
        res.end(req.method === 'HEAD' ? undefined : body)
      }, err => {
        init.logger.error({ err: describeError(err) }, 'metrics rendering failed')
        res.writeHead(500)
        res.end()
      })
    })
    this.server.keepAliveTimeout = 1_000
  }

  async listen (): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ApiListenError(this.init.host, this.init.port, err.code === 'EADDRINUSE' ? 'address already in use' : describeError(err), { cause: err }))
      }
      this.server.once('error', onError)
      this.server.listen(this.init.port, this.init.host, () => { this.server.off('error', onError); resolve() })
    })
    return this.url
  }

  get url (): string {
    const addr = this.server.address() as AddressInfo
    return `http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/metrics`
  }

  async close (): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>(resolve => this.server.close(() => { resolve() }))
  }
}
