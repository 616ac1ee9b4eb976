/**
 * The raw substrates of the services bench (bench/services.ts), each run as
 * its own OS process so that both ends are separate processes, as two
 * BeeMesh nodes are. It speaks one JSON line per event on stdout.
 *
 *   server                 a plain libp2p peer (MeshNode, no guard) serving
 *                          RAW_ECHO_PROTOCOL: one length-prefixed JSON request
 *                          per stream, its JSON echo back, as a call does
 *                          without sealing, policy or a worker;
 *                          prints {"event":"listening","address"}.
 *   client <addr> <runs>   dials the server; for each run of the JSON array
 *                          `runs` ({ run, n, concurrency, warmup }) makes
 *                          `warmup` unmeasured requests, then `n` measured ones,
 *                          one new stream each; prints {"event":"done",…} per
 *                          run, then exits.
 *   sink                   a TCP server on loopback that counts what each
 *                          connection sends; prints {"event":"listening","port"},
 *                          then {"event":"received","bytes","ended","firstAt","endAt"}
 *                          per connection when it ends (`ended` false: it was
 *                          reset or closed without a FIN).
 *   send <host> <port> <bytes>
 *                          streams `bytes` to host:port (64 KiB writes, with
 *                          backpressure), half-closes, prints
 *                          {"event":"sent","startedAt"} once the far end closed
 *                          too, then exits.
 *
 * Times between processes (`…At`) are epoch milliseconds from
 * performance.timeOrigin + performance.now(): one clock on one machine.
 */
import { connect, createServer } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { MeshNode } from '../src/transport/mesh-node.js'
import { concurrently, summary } from './lib.js'

export const RAW_ECHO_PROTOCOL = '/beemesh-bench/echo/1.0.0'
/** As many concurrent streams per connection as a node serves calls. */
const MAX_STREAMS = 512
const REQUEST_TIMEOUT_MS = 10_000
const CHUNK_BYTES = 64 * 1024
const SEND_TIMEOUT_MS = 300_000

export interface RawRun { run: string, n: number, concurrency: number, warmup: number }

const enc = new TextEncoder()
const dec = new TextDecoder()

function say (event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function now (): number {
  return performance.timeOrigin + performance.now()
}

async function meshNode (): Promise<MeshNode> {
  const node = new MeshNode({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'] })
  await node.start()
  return node
}

async function serve (stream: Stream): Promise<void> {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  try {
    const lp = lpStream(stream)
    const request = JSON.parse(dec.decode((await lp.read({ signal })).subarray())) as { data: unknown }
    await lp.write(enc.encode(JSON.stringify({ ok: true, value: { echo: request.data } })), { signal })
    await stream.close({ signal })
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}

async function server (): Promise<void> {
  const node = await meshNode()
  await node.handle(RAW_ECHO_PROTOCOL, stream => { void serve(stream) }, { maxInboundStreams: MAX_STREAMS, maxOutboundStreams: MAX_STREAMS })
  process.once('SIGTERM', () => { void node.stop().finally(() => process.exit(0)) })
  say({ event: 'listening', address: node.addresses()[0] })
}

/** One request on a new stream, as CallRouter.remoteAttempt does it (optimistic negotiation, one frame each way). */
async function request (node: MeshNode, peer: string, i: number): Promise<void> {
  const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS)
  const stream = await node.dialProtocol(peer, RAW_ECHO_PROTOCOL, { signal, negotiateFully: false })
  try {
    const lp = lpStream(stream)
    await lp.write(enc.encode(JSON.stringify({ data: { i } })), { signal })
    const reply = JSON.parse(dec.decode((await lp.read({ signal })).subarray())) as { ok: boolean, value: { echo: { i: number } } }
    await stream.close({ signal }).catch(() => {})
    if (!reply.ok || reply.value.echo.i !== i) throw new Error(`reply to ${i} carried ${JSON.stringify(reply)}`)
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    throw err
  }
}

async function client (address: string, runs: RawRun[]): Promise<void> {
  const node = await meshNode()
  const peer = address.split('/p2p/')[1]!
  await node.dialProtocol(address, RAW_ECHO_PROTOCOL, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }).then(async s => { s.abort(new Error('connected')) })
  for (const { run, n, concurrency, warmup } of runs) {
    await concurrently(concurrency, warmup, async i => { await request(node, peer, i) })
    const latencies: number[] = []
    const t0 = performance.now()
    await concurrently(concurrency, n, async i => {
      const s = performance.now()
      await request(node, peer, i)
      latencies.push(performance.now() - s)
    })
    const ms = performance.now() - t0
    say({ event: 'done', run, ...summary(latencies), concurrency, ms, perSecond: n / (ms / 1000) })
  }
  await node.stop()
}

async function sink (): Promise<void> {
  const tcp = createServer(socket => {
    let bytes = 0
    let firstAt = 0
    socket.on('data', (chunk: Buffer) => {
      if (bytes === 0) firstAt = now()
      bytes += chunk.byteLength
    })
    let ended = false
    socket.on('end', () => {
      ended = true
      say({ event: 'received', bytes, ended, firstAt, endAt: now() })
      socket.end()
    })
    socket.on('error', () => {})
    // One line per connection, also for one that was reset: the bench pairs them with its sends.
    socket.on('close', () => { if (!ended) say({ event: 'received', bytes, ended, firstAt, endAt: now() }) })
  })
  await new Promise<void>(resolve => tcp.listen(0, '127.0.0.1', resolve))
  process.once('SIGTERM', () => { tcp.close(); process.exit(0) })
  say({ event: 'listening', port: (tcp.address() as { port: number }).port })
}

async function send (host: string, port: number, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a)
  const startedAt = now()
  const socket = connect({ host, port })
  const timer = setTimeout(() => { socket.destroy(new Error(`not done within ${SEND_TIMEOUT_MS} ms`)) }, SEND_TIMEOUT_MS)
  const failed = new Promise<never>((_resolve, reject) => socket.once('error', reject))
  const closed = new Promise<void>(resolve => socket.once('close', () => { resolve() }))
  try {
    await Promise.race([new Promise(resolve => socket.once('connect', resolve)), failed])
    for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
      const piece = bytes - sent < chunk.byteLength ? chunk.subarray(0, bytes - sent) : chunk
      if (!socket.write(piece)) await Promise.race([new Promise(resolve => socket.once('drain', resolve)), failed])
    }
    socket.end()
    socket.resume()
    await Promise.race([closed, failed])
    say({ event: 'sent', bytes, startedAt })
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
}

const [role, ...args] = process.argv.slice(2)
try {
  switch (role) {
    case 'server': await server(); break
    case 'sink': await sink(); break
    case 'client': await client(args[0]!, JSON.parse(args[1]!) as RawRun[]); process.exit(0)
    case 'send': await send(args[0]!, Number(args[1]), Number(args[2])); process.exit(0)
    default: throw new Error(`usage: svc-raw-peer.ts server | client <address> <runs JSON> | sink | send <host> <port> <bytes> (got ${String(role)})`)
  }
} catch (err) {
  process.stderr.write(`svc-raw-peer ${String(role)}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
}
