/**
 * `beemesh inspect`: the local relay of the Stately inspector
 * (`@statelyai/inspect/server`). Nodes started with `--inspect ws://host:port`
 * send it the inspection events of their actors; it forwards every message
 * from one client to all the others (and replays its last 200 to a client
 * that connects), so a browser page or any WebSocket client sees the actors
 * of every connected node. Its HTTP page embeds the hosted inspector.
 *
 * The library's server takes no host: it listens on every interface, and
 * reports a taken port as an uncaught error. So the port is tried first, to
 * fail with a clear message, and `--host` is the address printed for nodes
 * and browsers to use.
 */
import { createServer, connect, type Server } from 'node:net'
import { BeeMeshError, describeError } from '../../errors.js'
import { parsePort } from '../defaults.js'

/** Where the library's page points its frame: the inspector it documents, hosted on the internet. */
export const HOSTED_INSPECTOR_URL = 'https://stately.ai/inspect'
const READY_TIMEOUT_MS = 5_000

/** The relay's port is taken. */
export class InspectorPortInUseError extends BeeMeshError {
  constructor (port: number, options?: ErrorOptions) {
    super(`port ${port} is in use: another \`beemesh inspect\` or another program listens there; pick a free one with --port`, options)
    this.name = 'InspectorPortInUseError'
  }
}

/** The relay could not start (other than a taken port). */
export class InspectorStartError extends BeeMeshError {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'InspectorStartError'
  }
}

export interface InspectOptions {
  port: string
  host: string
}

/** Binds `port` as the library's server will (every interface), then lets it go. */
async function claimable (port: number): Promise<void> {
  const server: Server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', err => {
      const code = (err as NodeJS.ErrnoException).code
      reject(code === 'EADDRINUSE' ? new InspectorPortInUseError(port, { cause: err }) : new InspectorStartError(`cannot listen on port ${port}: ${describeError(err)}`, { cause: err }))
    })
    server.listen(port, () => { server.close(() => { resolve() }) })
  })
}

/** Resolves once something accepts connections on loopback `port`; rejects after `timeoutMs`. */
async function listening (port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>(resolve => {
      const socket = connect({ host: '127.0.0.1', port })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => { socket.destroy(); resolve(false) })
    })
    if (ok) return
    if (Date.now() > deadline) throw new InspectorStartError(`the relay did not start listening on port ${port} within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** Runs the relay in the foreground until SIGINT or SIGTERM. */
export async function inspect (opts: InspectOptions): Promise<void> {
  const port = parsePort(opts.port, '--port')
  if (port === 0) throw new InspectorStartError('--port must name a port (the nodes need to know it), got 0')
  await claimable(port)
  // The library's server throws a listen failure (a port taken since) out of an event emitter: end with it as one line.
  process.once('uncaughtException', err => {
    const code = (err as NodeJS.ErrnoException).code
    process.stderr.write(`beemesh: error: ${code === 'EADDRINUSE' ? new InspectorPortInUseError(port).message : `the inspector relay failed: ${describeError(err)}`}\n`)
    process.exit(1)
  })
  const { createInspectorServer } = await import('@statelyai/inspect/server')
  const server = createInspectorServer({ port, url: HOSTED_INSPECTOR_URL, autoOpen: false })
  await listening(port, READY_TIMEOUT_MS)

  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  const ws = `ws://${host}:${port}`
  process.stdout.write(`inspector relay listening on ${ws} (port ${port}, every interface)\n`)
  process.stdout.write(`  connect nodes  beemesh node start --inspect ${ws} …\n`)
  process.stdout.write(`  view           http://localhost:${port} in a browser on this machine: the hosted Stately inspector (${HOSTED_INSPECTOR_URL}), needs internet\n`)
  process.stdout.write('                 offline: `beemesh ui`, each node\'s built-in web view (/ui/ on its API address)\n')
  process.stdout.write('  actor ids      node@<node>, scheduler:<ns>/<name>@<node>, pod:<ns>/<name>#<replica>@<node>, <ns>/<name>@<node> (a stateful workload\'s machine)\n')
  process.stdout.write('  stop           Ctrl-C\n')

  await new Promise<void>(resolve => {
    const stop = (): void => {
      server.stop()
      resolve()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  // connected nodes keep their sockets open; do not wait for them
  process.exit(0)
}

/** Registers `beemesh inspect`, and `--inspect [ws-url]` on `beemesh node start`. */
