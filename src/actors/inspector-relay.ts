/**
 * The node's connection to the inspector relay (`beemesh inspect`): the
 * node's Inspection (inspection.ts) sent over one reconnecting WebSocket.
 * Loaded only by a node started with `--inspect`, never by machine workers.
 */
import WebSocket from 'ws'
import type { StatelyInspectionEvent } from '@statelyai/inspect'
import type { Logger } from '../transport/logger.js'
import { inspection, type Inspection } from './inspection.js'

export interface ConnectInspectorInit {
  /** The relay's WebSocket URL (`beemesh inspect`). */
  url: string
  peerId: string
  log: Logger
}

/**
 * The node's Inspection, sent to the relay at `url` (`beemesh inspect`) over
 * a RelaySocket. Never rejects: a URL that is not ws:// or wss:// gives no
 * inspection and a warning.
 */
export async function connectInspector ({ url, peerId, log }: ConnectInspectorInit): Promise<Inspection | undefined> {
  let socket: RelaySocket
  try {
    socket = new RelaySocket(url, log)
  } catch (err) {
    log.warn({ url, err: err instanceof Error ? err.message : String(err) }, 'cannot start the inspector; the node runs without it')
    return undefined
  }
  const inspection_ = inspection({
    peerId,
    send: event => { socket.send(event) },
    onError: err => { log.warn({ url, err: err instanceof Error ? err.message : String(err) }, 'sending to the inspector failed; inspection may be incomplete') }
  })
  return { ...inspection_, stop: () => { inspection_.stop(); socket.stop() } }
}

/** Events kept while the relay is unreachable (the oldest go first), as `@statelyai/inspect` keeps 200. */
const MAX_BUFFERED = 200
const RECONNECT_MIN_MS = 1_000
const RECONNECT_MAX_MS = 10_000

/**
 * A WebSocket to the relay that stays connected: it reconnects with backoff
 * whenever the relay goes away (a relay restarted by the user included), and
 * keeps the newest events while disconnected, sending each of them once.
 * `@statelyai/inspect`'s own WebSocket inspector (0.7.2) retries only after a
 * connection error, never after a relay that closed, and re-sends its whole
 * buffer on every reconnect; the events are the same Stately inspection
 * events either way. Nothing here throws or blocks the caller.
 */
export class RelaySocket {
  private ws?: WebSocket
  private open = false
  private stopped = false
  private buffered: string[] = []
  private delay = RECONNECT_MIN_MS
  private retry?: NodeJS.Timeout
  /** Whether this connection attempt should log its failure (the first, and the first after a drop). */
  private announceFailure = true

  constructor (private readonly url: string, private readonly log: Logger) {
    const u = new URL(url)
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`the inspector URL must be ws:// or wss://, got ${url}`)
    this.connect()
  }

  send (event: StatelyInspectionEvent): void {
    const text = JSON.stringify(event)
    if (this.open && this.ws != null) {
      this.ws.send(text, err => { if (err != null) this.keep(text) })
      return
    }
    this.keep(text)
  }

  stop (): void {
    this.stopped = true
    clearTimeout(this.retry)
    this.ws?.terminate()
  }

  private keep (text: string): void {
    this.buffered.push(text)
    if (this.buffered.length > MAX_BUFFERED) this.buffered.shift()
  }

  private connect (): void {
    if (this.stopped) return
    const ws = new WebSocket(this.url)
    this.ws = ws
    ws.on('open', () => {
      this.open = true
      this.delay = RECONNECT_MIN_MS
      this.announceFailure = true
      this.log.info({ url: this.url }, 'inspection events of this node\'s actors go to the inspector relay')
      const pending = this.buffered
      this.buffered = []
      for (const text of pending) ws.send(text, err => { if (err != null) this.keep(text) })
    })
    ws.on('error', err => {
      if (!this.open && this.announceFailure) {
        this.announceFailure = false
        this.log.warn({ url: this.url, err: (err as NodeJS.ErrnoException).code ?? err.message }, 'the inspector relay is not reachable; the node runs normally and keeps trying (start one with `beemesh inspect`)')
      }
    })
    ws.on('close', () => {
      if (this.open) this.log.warn({ url: this.url }, 'the inspector relay went away; reconnecting')
      this.open = false
      if (this.stopped) return
      this.retry = setTimeout(() => { this.connect() }, this.delay)
      this.retry.unref()
      this.delay = Math.min(this.delay * 2, RECONNECT_MAX_MS)
    })
  }
}
